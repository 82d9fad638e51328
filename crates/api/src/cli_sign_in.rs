//! The CLI's sign-in through the console (RFC 8628 device authorization):
//! the CLI asks for a code, the operator approves it in the browser.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DeviceAuthorizationRequest {
    /// Ignored (RFC 8628 §3.1); the session gets the approving operator's roles.
    #[serde(default)]
    pub client_id: Option<String>,
}

/// RFC 8628 §3.2.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceAuthorization {
    /// The CLI's secret for polling; stored hashed, works once.
    pub device_code: String,
    /// What the person types on the console's `/device` page.
    pub user_code: String,
    /// The console path to open (`/device`), relative to the server's URL.
    pub verification_uri: String,
    /// `verification_uri` with the code filled in.
    pub verification_uri_complete: String,
    /// Seconds until both codes expire (600).
    pub expires_in: u64,
    /// Seconds to wait between polls (5).
    pub interval: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceTokenRequest {
    /// From `POST /api/v1/auth/device`.
    pub device_code: String,
    /// `urn:ietf:params:oauth:grant-type:device_code`, if given (any other
    /// is answered `unsupported_grant_type`).
    #[serde(default)]
    #[schema(pattern = "^urn:ietf:params:oauth:grant-type:device_code$")]
    pub grant_type: Option<String>,
}

/// RFC 8628 §3.5 success: a CLI session's bearer token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceToken {
    /// Send as `Authorization: Bearer <token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the session's absolute expiry.
    pub expires_in: i64,
    pub expires_at: String,
}

/// RFC 8628 §3.5 / RFC 6749 §5.2 error (not the API's usual error shape).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceTokenError {
    /// `authorization_pending`, `slow_down`, `access_denied`, `expired_token`,
    /// `invalid_grant`, `unsupported_grant_type`, or `invalid_request` for a
    /// body that is not JSON of this request's schema.
    #[schema(
        pattern = "^(authorization_pending|slow_down|access_denied|expired_token|invalid_grant|unsupported_grant_type|invalid_request)$"
    )]
    pub error: String,
    pub error_description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserCodeRequest {
    /// The code the CLI printed (case, spaces and dashes do not matter).
    #[schema(
        pattern = "^[BCDFGHJKLMNPQRSTVWXZbcdfghjklmnpqrstvwxz]{4}-?[BCDFGHJKLMNPQRSTVWXZbcdfghjklmnpqrstvwxz]{4}$"
    )]
    pub user_code: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceApprovalRequest {
    /// The code the CLI printed (case, spaces and dashes do not matter).
    #[schema(
        pattern = "^[BCDFGHJKLMNPQRSTVWXZbcdfghjklmnpqrstvwxz]{4}-?[BCDFGHJKLMNPQRSTVWXZbcdfghjklmnpqrstvwxz]{4}$"
    )]
    pub user_code: String,
    /// From the options.
    pub ceremony: String,
    /// `rawId`, base64url.
    #[serde(rename = "credentialId")]
    pub credential_id: String,
    /// `response.authenticatorData`, base64url.
    #[serde(rename = "authenticatorData")]
    pub authenticator_data: String,
    /// `response.clientDataJSON`, base64url.
    #[serde(rename = "clientDataJSON")]
    pub client_data_json: String,
    /// `response.signature`, base64url.
    pub signature: String,
}
