//! Tenants (customers), enrolment tokens for their devices, and their audit
//! log as the API lists it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantRequest {
    /// Short name: lower-case letters, digits and '-', 2 to 63 characters.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{1,62}$")]
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentTokenRequest {
    /// Lifetime in minutes (default 60, at most 10080).
    #[schema(minimum = 1, maximum = 10080)]
    #[serde(default, deserialize_with = "crate::numbers::optional_whole_number")]
    pub ttl_minutes: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnrollmentTokenView {
    /// Give to `bulwark-agent enroll --token`; shown once, stored hashed.
    pub token: String,
    pub tenant: String,
    pub expires_at: String,
    /// The CA the agent will pin, as people compare it.
    pub ca_fingerprint: String,
    /// The tenant trust root the agent will pin (SHA-256 of the first root).
    pub root_fingerprint: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEventView {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantView {
    pub id: String,
    pub name: String,
    pub device_count: i64,
    pub online_count: i64,
}
