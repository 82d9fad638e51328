//! Alerts and the channels they are sent to (RFD 0007).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// One alert: raised from a log entry, handled by people.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertView {
    pub id: String,
    /// The tenant's name; null for an MSP-wide alert.
    pub tenant: Option<String>,
    pub device_id: Option<String>,
    /// What raised it: a log action (`alert.log_refused`) or a rule
    /// (`mass_action.delayed`).
    pub kind: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    pub summary: String,
    pub detail: String,
    /// `open`, `acknowledged` or `resolved`.
    pub state: String,
    pub opened_at: String,
    pub last_seen_at: String,
    /// How many times its source fired while it was unresolved.
    pub occurrences: i64,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<String>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<String>,
    /// The log entry that raised it: `GET /api/v1/tenants/{tenant}/log`
    /// (or the MSP log) proves it. Null for what the server observed
    /// itself (`device.offline`).
    pub log_id: Option<String>,
    pub log_idx: Option<u64>,
    /// Why it was sent nowhere (opened in a maintenance window); null when
    /// its channels were told.
    #[serde(default)]
    pub silenced: Option<String>,
    /// Where it was sent (on `GET /api/v1/alerts/{id}` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<NotificationView>,
}

/// One notification of an alert.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NotificationView {
    /// `email` or `webhook`.
    pub channel: String,
    pub target: String,
    /// `pending`, `sent` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
}

/// Which alerts a list shows, by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertStateFilter {
    Open,
    Acknowledged,
    Resolved,
    /// Open or acknowledged.
    Unresolved,
}

/// Filters of `GET /api/v1/alerts`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// Only this tenant's (by name).
    pub tenant: Option<String>,
    /// Every state when absent.
    #[param(inline)]
    pub state: Option<AlertStateFilter>,
    /// At most this many (default 200).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// A channel's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKindView {
    Email,
    Webhook,
    /// PagerDuty Events API v2: a trigger when an alert opens, an
    /// acknowledge and a resolve as it moves, deduplicated by the alert.
    Pagerduty,
}

/// When a channel is told: always, or only when an alert opens (or
/// escalates) inside or outside the tenant's business hours (its SLA
/// calendar: `bulwark sla set`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChannelHoursView {
    Always,
    Business,
    After,
}

/// An alert's severity, as a channel's minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SeverityView {
    Info,
    Warning,
    Critical,
}

fn always() -> String {
    "always".to_owned()
}

/// A channel: where a tenant's alerts (or every alert) go.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChannelView {
    pub id: String,
    /// The tenant's name; null for an MSP-wide channel.
    pub tenant: Option<String>,
    /// `email`, `webhook` or `pagerduty`.
    pub kind: String,
    /// An e-mail address or an `https://` URL (for `pagerduty`, the Events
    /// API's).
    pub target: String,
    /// A PagerDuty channel's routing key, all but its last four characters
    /// hidden: it lets whoever holds it open incidents.
    #[serde(default)]
    pub routing_key_hint: Option<String>,
    /// `always`, `business` (inside the tenant's business hours only) or
    /// `after` (outside them only).
    #[serde(default = "always")]
    pub hours: String,
    /// Alerts from this severity on are sent.
    pub min_severity: String,
    pub created_by: String,
    pub created_at: String,
    /// An escalation channel: told only of alerts still open this many
    /// seconds after they opened.
    #[serde(default)]
    pub escalate_after_secs: Option<u64>,
}

/// `POST /api/v1/tenants/{tenant}/alert-channels` (and the MSP-wide route).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelRequest {
    pub kind: ChannelKindView,
    /// An e-mail address for `email`; an `https://` URL (`http://` only to
    /// a loopback address) for `webhook`, and for `pagerduty` the Events
    /// API v2 URL (`https://events.pagerduty.com/v2/enqueue`, or the EU
    /// service's).
    #[schema(min_length = 1, max_length = 512)]
    pub target: String,
    /// The PagerDuty integration's routing key (`pagerduty` only).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64)]
    pub routing_key: Option<String>,
    /// `always` when absent; `business` or `after` need the tenant's
    /// business hours set (`PUT /api/v1/tenants/{tenant}/sla`).
    #[serde(default)]
    pub hours: Option<ChannelHoursView>,
    /// `warning` when absent.
    #[serde(default)]
    pub min_severity: Option<SeverityView>,
    /// Makes it an escalation channel: told only of alerts nobody
    /// acknowledged this many seconds (1 to 7 days) after they opened.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 604800)]
    pub escalate_after_secs: Option<u64>,
}
