//! Passkey routes: registration and management of one's own passkeys, login
//! and step-up with a passkey, and the owner's passkey policy. The logic is
//! `auth::passkey`; these handlers only read and write JSON.
//!
//! Binary WebAuthn values travel base64url without padding, under the
//! names the browser's `PublicKeyCredential` gives them (`attestationObject`,
//! `clientDataJSON`, ...); the options are the WebAuthn JSON forms a script
//! hands to `navigator.credentials.create`/`get` after decoding them.

use bulwark_api::error::ErrorBody;
use bulwark_api::passkeys::{
    AssertionCeremony, AssertionRequest, LoginOptionsRequest, PasskeyLoginRequest,
    PasskeyLoginResponse, PasskeyPolicy, PasskeyView, RegistrationCeremony, RegistrationRequest,
    RenameRequest,
};
use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;

use super::error::ApiError;
use super::{ApiJson, ApiPath, client_info};
use crate::auth::flows::{self, SecondFactor, SessionKind};
use crate::auth::passkey::{self, Assertion};
use crate::auth::{Action, Caller};
use crate::state::AppState;

/// The caller's passkeys, oldest first.
#[utoipa::path(get, path = "/api/v1/passkeys", tag = "auth",
    responses((status = 200, body = [PasskeyView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list_passkeys(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<PasskeyView>>, ApiError> {
    let passkeys = passkey::list(&state.auth, &caller).await?;
    Ok(Json(
        passkeys
            .into_iter()
            .map(crate::api::views::passkey)
            .collect(),
    ))
}

/// Starts registering a passkey (step-up required): options for `navigator.credentials.create`.
#[utoipa::path(post, path = "/api/v1/passkeys/registration/options", tag = "auth",
    responses((status = 200, body = RegistrationCeremony), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn registration_options(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<RegistrationCeremony>, ApiError> {
    Ok(Json(
        passkey::registration_options(&state.auth, &caller).await?,
    ))
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
        &state.auth,
        &caller,
        passkey::Registration {
            ceremony: &req.ceremony,
            name: &req.name,
            attestation_object: &req.attestation_object,
            client_data_json: &req.client_data_json,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(crate::api::views::passkey(added))))
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
    let renamed = passkey::rename(&state.auth, &caller, &id, &req.name).await?;
    Ok(Json(crate::api::views::passkey(renamed)))
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
    passkey::remove(&state.auth, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
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
        passkey::login_options(&state.auth, &req.username, peer.ip()).await?,
    ))
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
        &state.auth,
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
    Ok(Json(passkey::step_up_options(&state.auth, &caller).await?))
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
    crate::auth::account::step_up_with(
        &state.auth,
        &caller,
        SecondFactor::Passkey(&assertion),
        &client,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
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
    let roles = passkey::required_roles(&state.auth).await?;
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
    let roles = passkey::set_required_roles(&state.auth, &caller, &req.roles).await?;
    Ok(Json(PasskeyPolicy {
        roles: roles.into_iter().map(|r| r.as_str().to_owned()).collect(),
    }))
}
