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

/// Filters of `GET /api/v1/alerts`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// Only this tenant's (by name).
    pub tenant: Option<String>,
    /// `open`, `acknowledged` or `resolved`; `unresolved` for the first two.
    pub state: Option<String>,
    /// At most this many (default 200, at most 1000).
    pub limit: Option<u32>,
}

/// A channel: where a tenant's alerts (or every alert) go.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChannelView {
    pub id: String,
    /// The tenant's name; null for an MSP-wide channel.
    pub tenant: Option<String>,
    /// `email` or `webhook`.
    pub kind: String,
    /// An e-mail address or an `https://` URL.
    pub target: String,
    /// Alerts from this severity on are sent.
    pub min_severity: String,
    pub created_by: String,
    pub created_at: String,
}

/// `POST /api/v1/tenants/{tenant}/alert-channels` (and the MSP-wide route).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelRequest {
    /// `email` or `webhook`.
    pub kind: String,
    pub target: String,
    /// `info`, `warning` (the default) or `critical`.
    #[serde(default)]
    pub min_severity: Option<String>,
}
