//! Creating the first owner (setup code, password, TOTP enrolment).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    /// The one-time setup code `bulwark up` printed.
    pub code: String,
    pub username: String,
    /// At least 12 characters.
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SetupResponse {
    pub enrolment_id: String,
    /// Base32 TOTP secret (SHA-1, 6 digits, 30 s).
    pub totp_secret: String,
    pub otpauth_url: String,
    pub qr_svg: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupConfirmRequest {
    pub enrolment_id: String,
    /// A current code from the authenticator holding the new secret.
    pub otp: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OperatorView {
    pub id: String,
    pub username: String,
    pub role: String,
    /// One-time recovery codes, usable in place of a TOTP code at login
    /// (each once). Shown only in this response; stored hashed.
    pub recovery_codes: Vec<String>,
}
