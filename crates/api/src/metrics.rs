//! Metrics history for charts and the dashboard across tenants (RFD 0014).
//!
//! Every figure is what the server says its agents reported: charts for
//! people, never an input to a decision an agent makes.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Latest time a query may name, in Unix seconds (year 2286).
pub const MAX_TIME_SECS: u64 = 9_999_999_999;
/// Longest range one query spans: 400 days (the daily tier's retention).
pub const MAX_RANGE_SECS: u64 = 400 * 86_400;

/// `?metric=&from=&to=`: times in Unix seconds; default the last 24 hours.
/// The tier follows from the range: up to 6 hours raw samples (10 s at
/// most apart), up to 31 days 15-minute buckets, beyond that days.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MetricsQuery {
    /// One metric (the policy check's name); all of the device's otherwise.
    #[param(min_length = 1, max_length = 64, pattern = "^[a-z0-9._-]+$")]
    pub metric: Option<String>,
    /// Start of the range (Unix seconds); default `to` minus 24 hours.
    #[param(minimum = 0, maximum = 9_999_999_999_i64)]
    pub from: Option<u64>,
    /// End of the range (Unix seconds); default now. After `from`, at most
    /// 400 days after it.
    #[param(minimum = 0, maximum = 9_999_999_999_i64)]
    pub to: Option<u64>,
}

/// `?metric=&from=&to=` for a tenant's aggregate: one metric, required
/// (a tenant's devices have many; summing them would mean nothing).
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TenantMetricsQuery {
    /// The metric (the policy check's name).
    #[param(min_length = 1, max_length = 64, pattern = "^[a-z0-9._-]+$")]
    pub metric: String,
    /// Start of the range (Unix seconds); default `to` minus 24 hours.
    #[param(minimum = 0, maximum = 9_999_999_999_i64)]
    pub from: Option<u64>,
    /// End of the range (Unix seconds); default now. After `from`, at most
    /// 400 days after it.
    #[param(minimum = 0, maximum = 9_999_999_999_i64)]
    pub to: Option<u64>,
}

impl From<TenantMetricsQuery> for MetricsQuery {
    fn from(q: TenantMetricsQuery) -> Self {
        MetricsQuery {
            metric: Some(q.metric),
            from: q.from,
            to: q.to,
        }
    }
}

/// What a metric measures (the kind of its check in the policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MetricKindView {
    /// CPU busy, percent.
    Cpu,
    /// Memory used, percent.
    Memory,
    /// Disk used on one mount, percent.
    Disk,
    /// One-minute load per core, hundredths.
    Load,
    /// TCP connect latency, milliseconds.
    Latency,
}

/// The storage tier a range is answered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum TierView {
    #[serde(rename = "raw")]
    Raw,
    #[serde(rename = "15m")]
    QuarterHour,
    #[serde(rename = "1d")]
    Day,
}

/// One bucket: the average and maximum of `samples` samples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MetricPointView {
    /// The bucket's start, Unix seconds (server time).
    pub at: u64,
    pub avg: u64,
    pub max: u64,
    pub samples: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MetricSeriesView {
    /// The policy check's name.
    pub metric: String,
    /// None: the tenant's current policy no longer has this check.
    pub kind: Option<MetricKindView>,
    /// The disk check's mount, a port check's `host:port` (from the
    /// policy), or empty.
    pub label: String,
    pub points: Vec<MetricPointView>,
}

/// `GET /api/v1/devices/{id}/metrics`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceMetricsView {
    pub device_id: String,
    pub hostname: String,
    pub tenant: String,
    pub from: u64,
    pub to: u64,
    pub tier: TierView,
    /// Width of one bucket in seconds (10 for raw samples: at most one
    /// per 10 s).
    pub bucket_secs: u64,
    /// The policy's numeric checks (cpu, memory, disk, load, tcp-port);
    /// empty when it has none: nothing to chart.
    pub series: Vec<MetricSeriesView>,
}

/// A tenant-wide bucket: the devices' samples together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantMetricPointView {
    pub at: u64,
    /// Average over every sample of every device.
    pub avg: u64,
    /// The largest of any device.
    pub max: u64,
    /// Devices with a sample in the bucket.
    pub devices: u64,
}

/// `GET /api/v1/tenants/{tenant}/metrics?metric=`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantMetricsView {
    pub tenant: String,
    pub metric: String,
    pub kind: Option<MetricKindView>,
    pub from: u64,
    pub to: u64,
    pub tier: TierView,
    /// One minute for raw samples (devices sample at different times).
    pub bucket_secs: u64,
    pub points: Vec<TenantMetricPointView>,
}

/// Unresolved (open or acknowledged) alerts by severity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AlertCountView {
    pub critical: u64,
    pub warning: u64,
    pub info: u64,
}

/// One tenant's row on the dashboard.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DashboardRowView {
    pub tenant: String,
    pub devices: u64,
    /// Connected to this server now.
    pub online: u64,
    pub alerts: AlertCountView,
    /// Checks whose last reported state is warning or critical.
    pub failing_checks: u64,
}

/// `GET /api/v1/dashboard`: one row per tenant the caller may see, by name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DashboardView {
    pub tenants: Vec<DashboardRowView>,
}
