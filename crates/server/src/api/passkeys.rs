//! Passkey routes: registration and management of one's own passkeys, login
//! and step-up with a passkey, and the owner's passkey policy. The logic is
//! `auth::passkey`; these handlers only read and write JSON.
//!
//! Binary WebAuthn values travel base64url without padding, under the
//! names the browser's `PublicKeyCredential` gives them (`attestationObject`,
//! `clientDataJSON`, ...); the options are the WebAuthn JSON forms a script
//! hands to `navigator.credentials.create`/`get` after decoding them.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::{ApiJson, ApiPath, client_info};
use crate::auth::flows::{self, SecondFactor, SessionKind};
use crate::auth::passkey::{self, Assertion, AssertionCeremony, RegistrationCeremony};
use crate::auth::{Action, Caller};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
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

impl From<bulwark_store::Passkey> for PasskeyView {
    fn from(p: bulwark_store::Passkey) -> Self {
        Self {
            created_at: crate::rfc3339(p.created_at),
            last_used_at: p.last_used_at.map(crate::rfc3339),
            backup_eligible: p.backup_eligible,
            credential_id: URL_SAFE_NO_PAD.encode(&p.credential_id),
            id: p.id,
            name: p.name,
        }
    }
}

/// The caller's passkeys, oldest first.
#[utoipa::path(get, path = "/api/v1/passkeys", tag = "auth",
    responses((status = 200, body = [PasskeyView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list_passkeys(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<PasskeyView>>, ApiError> {
    let passkeys = passkey::list(&state, &caller).await?;
    Ok(Json(passkeys.into_iter().map(PasskeyView::from).collect()))
}

/// Starts registering a passkey (step-up required): options for `navigator.credentials.create`.
#[utoipa::path(post, path = "/api/v1/passkeys/registration/options", tag = "auth",
    responses((status = 200, body = RegistrationCeremony), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn registration_options(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<RegistrationCeremony>, ApiError> {
    Ok(Json(passkey::registration_options(&state, &caller).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrationRequest {
    /// From the options.
    ceremony: String,
    /// What to call it ("laptop"), unique among the caller's passkeys: at
    /// most 64 characters, no control characters, not only spaces.
    #[schema(
        max_length = 64,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    name: String,
    /// `response.attestationObject`, base64url.
    #[serde(rename = "attestationObject")]
    attestation_object: String,
    /// `response.clientDataJSON`, base64url.
    #[serde(rename = "clientDataJSON")]
    client_data_json: String,
}

/// Completes a registration this session started (step-up required). Audited as `passkey.added`.
#[utoipa::path(post, path = "/api/v1/passkeys/registration", tag = "auth", request_body = RegistrationRequest,
    responses((status = 201, body = PasskeyView), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn register_passkey(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<RegistrationRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let added = passkey::register(
        &state,
        &caller,
        passkey::Registration {
            ceremony: &req.ceremony,
            name: &req.name,
            attestation_object: &req.attestation_object,
            client_data_json: &req.client_data_json,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(PasskeyView::from(added))))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameRequest {
    /// At most 64 characters, no control characters, not only spaces.
    #[schema(
        max_length = 64,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    name: String,
}

/// Renames one of the caller's passkeys (another operator's is a 404). Audited as `passkey.renamed`.
#[utoipa::path(patch, path = "/api/v1/passkeys/{id}", tag = "auth", request_body = RenameRequest,
    params(("id" = String, Path, description = "Passkey id")),
    responses((status = 200, body = PasskeyView), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn rename_passkey(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<RenameRequest>,
) -> Result<Json<PasskeyView>, ApiError> {
    let renamed = passkey::rename(&state, &caller, &id, &req.name).await?;
    Ok(Json(renamed.into()))
}

/// Removes one of the caller's passkeys (step-up required; another operator's is a 404). The
/// last one stays while the caller's role requires a passkey (409). Audited as `passkey.removed`.
#[utoipa::path(delete, path = "/api/v1/passkeys/{id}", tag = "auth",
    params(("id" = String, Path, description = "Passkey id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn remove_passkey(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    passkey::remove(&state, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginOptionsRequest {
    #[schema(min_length = 1, max_length = 64)]
    username: String,
}

/// Starts a passkey login: options for `navigator.credentials.get`. Reveals nothing about the
/// account (an unknown one gets options too); the password is checked with the answer. Pending
/// login ceremonies are capped per client address and per username: past a cap the oldest one
/// stops working, so asking again always gives a working ceremony.
#[utoipa::path(post, path = "/api/v1/auth/passkey/options", tag = "auth", request_body = LoginOptionsRequest,
    responses((status = 200, body = AssertionCeremony), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn login_options(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<LoginOptionsRequest>,
) -> Result<Json<AssertionCeremony>, ApiError> {
    Ok(Json(
        passkey::login_options(&state, &req.username, peer.ip()).await?,
    ))
}

#[derive(Serialize, ToSchema)]
pub struct PasskeyLoginResponse {
    /// Send as `Authorization: Bearer <token>`.
    token: String,
    expires_at: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyLoginRequest {
    username: String,
    password: String,
    /// From the options.
    ceremony: String,
    /// `rawId`, base64url.
    #[serde(rename = "credentialId")]
    credential_id: String,
    /// `response.authenticatorData`, base64url.
    #[serde(rename = "authenticatorData")]
    authenticator_data: String,
    /// `response.clientDataJSON`, base64url.
    #[serde(rename = "clientDataJSON")]
    client_data_json: String,
    /// `response.signature`, base64url.
    signature: String,
}

/// Signs in with password and passkey, in one step like `POST /api/v1/auth/login`; returns a
/// bearer token. Throttled and answered like it: any failure is the same 401.
#[utoipa::path(post, path = "/api/v1/auth/passkey/login", tag = "auth", request_body = PasskeyLoginRequest,
    responses((status = 200, body = PasskeyLoginResponse), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn passkey_login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<PasskeyLoginRequest>,
) -> Result<Json<PasskeyLoginResponse>, ApiError> {
    let client = client_info(Some(peer), &headers);
    let assertion = Assertion::decode(
        &req.ceremony,
        &req.credential_id,
        &req.authenticator_data,
        &req.client_data_json,
        &req.signature,
    )?;
    let login = flows::login_with(
        &state,
        &req.username,
        &req.password,
        SecondFactor::Passkey(&assertion),
        SessionKind::Cli,
        &client,
    )
    .await?;
    Ok(Json(PasskeyLoginResponse {
        token: login.token,
        expires_at: crate::rfc3339(login.expires_at),
    }))
}

/// Starts a step-up with one of the caller's passkeys (409 if it holds none).
#[utoipa::path(post, path = "/api/v1/auth/step-up/passkey/options", tag = "auth",
    responses((status = 200, body = AssertionCeremony), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn step_up_options(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<AssertionCeremony>, ApiError> {
    Ok(Json(passkey::step_up_options(&state, &caller).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssertionRequest {
    /// From the options.
    ceremony: String,
    /// `rawId`, base64url.
    #[serde(rename = "credentialId")]
    credential_id: String,
    /// `response.authenticatorData`, base64url.
    #[serde(rename = "authenticatorData")]
    authenticator_data: String,
    /// `response.clientDataJSON`, base64url.
    #[serde(rename = "clientDataJSON")]
    client_data_json: String,
    /// `response.signature`, base64url.
    signature: String,
}

/// Confirms a passkey: privileged actions are allowed on this session for five minutes.
#[utoipa::path(post, path = "/api/v1/auth/step-up/passkey", tag = "auth", request_body = AssertionRequest,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn step_up_passkey(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    caller: Caller,
    ApiJson(req): ApiJson<AssertionRequest>,
) -> Result<StatusCode, ApiError> {
    let client = client_info(Some(peer), &headers);
    caller.require(Action::StepUp)?;
    let assertion = Assertion::decode(
        &req.ceremony,
        &req.credential_id,
        &req.authenticator_data,
        &req.client_data_json,
        &req.signature,
    )?;
    crate::auth::account::step_up_with(&state, &caller, SecondFactor::Passkey(&assertion), &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyPolicy {
    /// Roles whose holders must sign in with a passkey (any of `owner`,
    /// `security_officer`, `technician`, `read_only`, `tenant_auditor`). An
    /// account holding such a role on any tenant is covered.
    #[schema(value_type = Vec<crate::auth::Role>)]
    roles: Vec<String>,
}

/// Which roles must sign in with a passkey (owners only).
#[utoipa::path(get, path = "/api/v1/settings/passkey-policy", tag = "operators",
    responses((status = 200, body = PasskeyPolicy), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn get_passkey_policy(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<PasskeyPolicy>, ApiError> {
    caller.require(Action::ViewPasskeyPolicy)?;
    let roles = passkey::required_roles(&state).await?;
    Ok(Json(PasskeyPolicy {
        roles: roles.into_iter().map(|r| r.as_str().to_owned()).collect(),
    }))
}

/// Sets which roles must sign in with a passkey (owners only; step-up required). Sessions of
/// those roles signed in without a passkey may then only register one. Audited as
/// `settings.passkey_policy_changed`.
#[utoipa::path(put, path = "/api/v1/settings/passkey-policy", tag = "operators", request_body = PasskeyPolicy,
    responses((status = 200, body = PasskeyPolicy), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn set_passkey_policy(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<PasskeyPolicy>,
) -> Result<Json<PasskeyPolicy>, ApiError> {
    let roles = passkey::set_required_roles(&state, &caller, &req.roles).await?;
    Ok(Json(PasskeyPolicy {
        roles: roles.into_iter().map(|r| r.as_str().to_owned()).collect(),
    }))
}
