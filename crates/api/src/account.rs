//! Signing in with a password and TOTP, the caller's own sessions, step-up,
//! recovery codes and API tokens, and the login lockouts.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// TOTP code: required, always.
    pub otp: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    pub expires_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionView {
    /// Public id (not a secret): name it to revoke the session.
    pub id: String,
    /// `browser` or `cli`.
    pub kind: String,
    pub created_at: String,
    pub last_seen_at: String,
    pub expires_at: String,
    pub ip: String,
    pub user_agent: String,
    /// The session this request came with.
    pub current: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RevokedCount {
    pub revoked: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepUpRequest {
    /// A current TOTP code (each time step works once).
    pub otp: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecoveryCodes {
    /// One-time codes usable in place of a TOTP code at login; shown only
    /// now, stored hashed. Every earlier code stops working.
    pub recovery_codes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiTokenView {
    pub id: String,
    pub name: String,
    /// The role held on each tenant in `tenants`.
    pub role: String,
    pub tenants: Vec<String>,
    pub created_at: String,
    pub expires_at: String,
    pub last_used_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenRequest {
    /// What the token is for, e.g. "PSA sync": at most 64 characters, no
    /// control characters, not only spaces.
    #[schema(
        max_length = 64,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub name: String,
    /// `security_officer`, `technician`, `read_only` or `tenant_auditor`:
    /// one you hold on every tenant named (owners: any).
    #[schema(pattern = "^(security_officer|technician|read_only|tenant_auditor)$")]
    pub role: String,
    /// Tenant names the role applies to (1 to 256).
    #[schema(min_items = 1, max_items = 256)]
    pub tenants: Vec<String>,
    /// Lifetime in days (default 90, at most 365).
    #[schema(minimum = 1, maximum = 365)]
    #[serde(default, deserialize_with = "crate::numbers::optional_whole_number")]
    pub ttl_days: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiTokenCreated {
    #[serde(flatten)]
    pub token: ApiTokenView,
    /// Send as `Authorization: Bearer <secret>`; shown once, stored hashed.
    pub secret: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LockoutView {
    /// `user:<username>` (whether or not the account exists) or `addr:<client address>`.
    pub key: String,
    /// Failed or refused attempts in the current window.
    pub failures: i64,
    pub locked_until: String,
}
