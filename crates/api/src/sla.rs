//! A tenant's SLA: targets per alert severity in business time of the
//! tenant's calendar, and how its alerts did against them (RFD 0008).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::alerts::SeverityView;

/// Largest target, in business minutes (a year of minutes).
pub const MAX_TARGET_MINUTES: u32 = 527_040;
/// Largest patch target, in days.
pub const MAX_PATCH_DAYS: u32 = 365;
/// Most holidays one calendar holds.
pub const MAX_HOLIDAYS: usize = 200;
/// Longest report period, in days.
pub const MAX_REPORT_DAYS: u32 = 366;
/// Most breaches one report lists (`breaches_total` counts them all).
pub const MAX_BREACHES_LISTED: usize = 500;
/// Most uptime targets (groups) one SLA holds.
pub const MAX_UPTIME_TARGETS: usize = 100;

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WeekdayView {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl WeekdayView {
    pub const ALL: [WeekdayView; 7] = [
        Self::Mon,
        Self::Tue,
        Self::Wed,
        Self::Thu,
        Self::Fri,
        Self::Sat,
        Self::Sun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mon => "mon",
            Self::Tue => "tue",
            Self::Wed => "wed",
            Self::Thu => "thu",
            Self::Fri => "fri",
            Self::Sat => "sat",
            Self::Sun => "sun",
        }
    }
}

/// One weekday's business hours, local time of the tenant's zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BusinessHoursView {
    pub day: WeekdayView,
    /// `HH:MM`, e.g. `09:00`.
    #[schema(example = "09:00", pattern = "^[0-9]{2}:[0-9]{2}$")]
    pub start: String,
    /// `HH:MM`, after `start`; `24:00` for the end of the day.
    #[schema(example = "17:00", pattern = "^[0-9]{2}:[0-9]{2}$")]
    pub end: String,
}

/// The targets of one alert severity, in business minutes; null: none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlaTargetView {
    pub severity: SeverityView,
    /// From opening to acknowledgement (or resolution, if it came first).
    #[schema(minimum = 1, maximum = 527_040)]
    pub acknowledge_minutes: Option<u32>,
    /// From opening to resolution.
    #[schema(minimum = 1, maximum = 527_040)]
    pub resolve_minutes: Option<u32>,
}

/// A tenant's SLA targets and business calendar: the body of `PUT
/// /api/v1/tenants/{tenant}/sla`, and what `GET` answers inside [`SlaView`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlaSettingsView {
    /// An IANA time zone name, e.g. `Europe/Berlin`.
    #[schema(
        example = "Europe/Berlin",
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9/_+-]+$"
    )]
    pub time_zone: String,
    /// At most one entry per weekday; days not listed are closed. At
    /// least one day.
    #[schema(min_items = 1, max_items = 7)]
    pub business_hours: Vec<BusinessHoursView>,
    /// Local dates (`YYYY-MM-DD`) with no business hours.
    #[serde(default)]
    #[schema(max_items = 200)]
    pub holidays: Vec<String>,
    /// At most one entry per severity; a severity not listed has no target.
    #[serde(default)]
    #[schema(max_items = 3)]
    pub targets: Vec<SlaTargetView>,
    /// Security updates installed within this many days of first being
    /// pending (the patch SLA, measured as patch compliance).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 365)]
    pub patch_critical_days: Option<u32>,
    /// Uptime targets per device group; at most one per group.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub uptime_targets: Vec<UptimeTargetView>,
}

/// The share of time a device group's devices are to be connected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UptimeTargetView {
    /// A device group's name (as `PUT /devices/{id}/group` sets it).
    #[schema(example = "Servers", min_length = 1, max_length = 64)]
    pub group: String,
    /// Percent, above 0 and at most 100, with at most two decimals.
    #[schema(example = 99.9, exclusive_minimum = 0, maximum = 100)]
    pub percent: f64,
}

/// `GET /api/v1/tenants/{tenant}/sla`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SlaView {
    pub tenant: String,
    /// False: no SLA set yet; `settings` are the defaults (UTC, Monday to
    /// Friday 09:00-17:00, no targets).
    pub configured: bool,
    pub settings: SlaSettingsView,
    pub updated_by: Option<String>,
    pub updated_at: Option<String>,
}

/// `GET /api/v1/tenants/{tenant}/sla/report`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SlaReportQuery {
    /// The period: the last this many days (default 30).
    #[param(minimum = 1, maximum = 366)]
    pub days: Option<u32>,
}

/// Outcomes against one target. Pending: not done yet and still within
/// the target; left out of the percentage until decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SlaTallyView {
    pub met: u32,
    pub breached: u32,
    pub pending: u32,
    /// met / (met + breached) in percent; null when none is decided.
    pub attainment_percent: Option<f64>,
}

/// One severity's attainment over the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SlaSeverityView {
    /// `critical`, `warning` or `info`.
    pub severity: String,
    pub acknowledge_target_minutes: Option<u32>,
    pub resolve_target_minutes: Option<u32>,
    /// Alerts of this severity opened in the period.
    pub alerts: u32,
    pub acknowledge: SlaTallyView,
    pub resolve: SlaTallyView,
}

/// One severity in one week: alerts within every target they have (met),
/// breaching one (breached), or not decided yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SlaWeekSeverityView {
    pub severity: String,
    pub met: u32,
    pub breached: u32,
    pub pending: u32,
    pub attainment_percent: Option<f64>,
}

/// One local week (Monday first) of the tenant's time zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SlaWeekView {
    /// The week's Monday, `YYYY-MM-DD`.
    pub start: String,
    /// Critical, warning, info.
    pub severities: Vec<SlaWeekSeverityView>,
}

/// A target an alert missed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SlaBreachView {
    pub alert_id: String,
    pub kind: String,
    pub summary: String,
    pub severity: String,
    pub opened_at: String,
    /// `acknowledge` or `resolve`.
    pub measure: String,
    /// Business minutes taken (so far, when `open`).
    pub taken_minutes: u64,
    pub target_minutes: u32,
    /// Not acknowledged or resolved yet, and past its target.
    pub open: bool,
}

/// The patch SLA: devices with no security update pending longer than
/// the target (patch compliance), now and each day of the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SlaPatchView {
    pub target_days: Option<u32>,
    /// False without a target, or with no device whose pending updates
    /// are known.
    pub measured: bool,
    /// What is measured and how, or why nothing is.
    pub note: String,
    /// Devices whose pending updates are known.
    pub devices: u32,
    /// Of those, devices with no security update pending past the target.
    pub compliant: u32,
    /// compliant / devices in percent; null when not measured.
    pub compliance_percent: Option<f64>,
    /// Devices past the target now, the longest overdue first (at most 100).
    pub overdue: Vec<SlaOverdueDeviceView>,
    /// Compliance at the end of each day of the period, oldest first.
    pub days: Vec<SlaCompliancePointView>,
}

/// A device with security updates pending past the patch target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SlaOverdueDeviceView {
    pub device_id: String,
    pub hostname: String,
    /// When the oldest overdue update was first seen pending.
    pub pending_since: String,
    pub overdue_updates: u32,
    /// `package version`, oldest first, at most 10.
    pub packages: Vec<String>,
}

/// Patch compliance at one time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SlaCompliancePointView {
    pub at: String,
    pub devices: u32,
    pub compliant: u32,
    pub compliance_percent: Option<f64>,
}

/// How a tenant's alerts did against its SLA over a period. Computed by
/// the server from its own alert rows (RFD 0008, "What if the server lies").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SlaReport {
    pub tenant: String,
    /// False: no SLA set; nothing is measured.
    pub configured: bool,
    pub time_zone: String,
    pub days: u32,
    pub from: String,
    pub to: String,
    /// Critical, warning, info.
    pub severities: Vec<SlaSeverityView>,
    pub weeks: Vec<SlaWeekView>,
    /// Newest alert first, at most 500.
    pub breaches: Vec<SlaBreachView>,
    pub breaches_total: u32,
    /// More alerts were opened in the period than one report reads: the
    /// oldest are counted, the newest not.
    pub alerts_truncated: bool,
    /// The patch SLA: security updates installed within the target.
    pub patch_critical: SlaPatchView,
    /// Uptime per device group with a target, over the same period.
    pub uptime: Vec<SlaUptimeView>,
    /// More devices or outages than one report reads: uptime is computed
    /// from the first ones only.
    pub uptime_truncated: bool,
}

/// One device group's uptime over the report's period, from its
/// `device.offline` alerts (those silenced by a maintenance window are
/// planned and not counted), measured from each device's enrolment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SlaUptimeView {
    pub group: String,
    pub target_percent: f64,
    pub devices: u32,
    /// Null when nothing was measured (no device in the group).
    pub uptime_percent: Option<f64>,
    /// Null when nothing was measured.
    pub met: Option<bool>,
    /// All the group's devices together.
    pub downtime_minutes: u64,
    /// The devices down longest, longest first (at most 5).
    pub most_down: Vec<SlaDowntimeView>,
}

/// One device's downtime in the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SlaDowntimeView {
    pub device_id: String,
    pub hostname: String,
    pub downtime_minutes: u64,
    pub outages: u32,
}
