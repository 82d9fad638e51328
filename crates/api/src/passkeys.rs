//! Passkeys (WebAuthn): registering, naming and removing them, the
//! ceremonies the browser runs, and the owners' passkey policy.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PasskeyView {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    /// A syncable passkey (true) or a credential bound to one device.
    pub backup_eligible: bool,
    /// The credential id (base64url), for `allowCredentials`.
    pub credential_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrationRequest {
    /// From the options.
    pub ceremony: String,
    /// What to call it ("laptop"), unique among the caller's passkeys: at
    /// most 64 characters, no control characters, not only spaces.
    #[schema(
        max_length = 64,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub name: String,
    /// `response.attestationObject`, base64url.
    #[serde(rename = "attestationObject")]
    pub attestation_object: String,
    /// `response.clientDataJSON`, base64url.
    #[serde(rename = "clientDataJSON")]
    pub client_data_json: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameRequest {
    /// At most 64 characters, no control characters, not only spaces.
    #[schema(
        max_length = 64,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginOptionsRequest {
    #[schema(min_length = 1, max_length = 64)]
    pub username: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PasskeyLoginResponse {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    pub expires_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyLoginRequest {
    pub username: String,
    pub password: String,
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

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssertionRequest {
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

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyPolicy {
    /// Roles whose holders must sign in with a passkey (any of `owner`,
    /// `security_officer`, `technician`, `read_only`, `tenant_auditor`). An
    /// account holding such a role on any tenant is covered.
    #[schema(value_type = Vec<crate::operators::Role>)]
    pub roles: Vec<String>,
}

/// A credential named in `excludeCredentials` or `allowCredentials`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CredentialDescriptor {
    /// Always `public-key`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The credential id, base64url without padding.
    pub id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RelyingParty {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserEntity {
    /// The user handle, base64url: the operator's id (a random UUID, stable
    /// for the account's life, nothing personal in it).
    pub id: String,
    pub name: String,
    pub display_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CredentialParameter {
    /// Always `public-key`.
    #[serde(rename = "type")]
    pub kind: String,
    /// COSE algorithm: -7 (ES256) or -8 (EdDSA).
    pub alg: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticatorSelection {
    pub resident_key: String,
    pub user_verification: String,
}

/// `PublicKeyCredentialCreationOptions` as JSON (binary fields base64url).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreationOptions {
    pub challenge: String,
    pub rp: RelyingParty,
    pub user: UserEntity,
    pub pub_key_cred_params: Vec<CredentialParameter>,
    /// Milliseconds.
    pub timeout: u64,
    pub exclude_credentials: Vec<CredentialDescriptor>,
    pub authenticator_selection: AuthenticatorSelection,
    pub attestation: String,
}

/// `PublicKeyCredentialRequestOptions` as JSON (binary fields base64url).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestOptions {
    pub challenge: String,
    pub rp_id: String,
    /// Milliseconds.
    pub timeout: u64,
    pub allow_credentials: Vec<CredentialDescriptor>,
    pub user_verification: String,
}

/// A registration ceremony: give `publicKey` to `navigator.credentials.create`,
/// then send the result with `ceremony`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegistrationCeremony {
    pub ceremony: String,
    #[serde(rename = "publicKey")]
    pub public_key: CreationOptions,
}

/// A login or step-up ceremony: give `publicKey` to `navigator.credentials.get`,
/// then send the assertion with `ceremony`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AssertionCeremony {
    pub ceremony: String,
    #[serde(rename = "publicKey")]
    pub public_key: RequestOptions,
}
