//! The caller's own account: password login and logout, sessions, step-up,
//! recovery codes and API tokens; and the login lockouts an owner lifts.

use super::error::ApiError;
use super::{ApiJson, ApiPath, audit_event, client_info};
use crate::auth::flows::{self, SessionKind};
use crate::auth::{Action, Caller};
use crate::now_millis;
use crate::state::AppState;
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use bulwark_api::account::{
    ApiTokenCreated, ApiTokenRequest, ApiTokenView, LockoutView, LoginRequest, LoginResponse,
    RecoveryCodes, RevokedCount, SessionView, StepUpRequest,
};
use bulwark_api::error::ErrorBody;
use bulwark_store::AuditAction;
use std::net::SocketAddr;

/// Signs in with password and TOTP; returns a bearer token for the CLI and integrations.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let client = client_info(Some(peer), &headers);
    let login = flows::login(
        &state.auth,
        &req.username,
        &req.password,
        &req.otp,
        SessionKind::Cli,
        &client,
    )
    .await?;
    Ok(Json(LoginResponse {
        token: login.token,
        expires_at: crate::rfc3339(login.expires_at),
    }))
}

/// Ends the calling session (its token stops working at once).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn logout(State(state): State<AppState>, caller: Caller) -> Result<StatusCode, ApiError> {
    flows::logout(&state.auth, &caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Usernames and client addresses locked out of logging in (too many failures).
#[utoipa::path(get, path = "/api/v1/lockouts", tag = "auth",
    responses((status = 200, body = [LockoutView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list_lockouts(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<LockoutView>>, ApiError> {
    caller.require(Action::ViewLockouts)?;
    let lockouts = state.store.list_lockouts(now_millis()).await?;
    Ok(Json(
        lockouts
            .into_iter()
            .map(|l| LockoutView {
                key: l.key,
                failures: l.counter.failures,
                locked_until: l
                    .counter
                    .locked_until
                    .map(crate::rfc3339)
                    .unwrap_or_default(),
            })
            .collect(),
    ))
}

/// Lifts a lockout: forgets the key's failures and lock at once.
#[utoipa::path(delete, path = "/api/v1/lockouts/{key}", tag = "auth",
    params(("key" = String, Path, description = "`user:<username>` or `addr:<client address>`")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn lift_lockout(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(key): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Action::LiftLockout)?;
    if !crate::auth::throttle::valid_key(&key) {
        return Err(ApiError::not_found("lockout"));
    }
    let lifted = state
        .store
        .clear_throttle(&key, now_millis(), |was_locked| {
            let action = if was_locked {
                AuditAction::LoginUnlocked
            } else {
                AuditAction::LoginThrottleCleared
            };
            vec![audit_event(&caller, None, action, &key)]
        })
        .await;
    match lifted {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(bulwark_store::StoreError::NotFound) => Err(ApiError::not_found("lockout")),
        Err(error) => Err(error.into()),
    }
}

/// The caller's own sessions that still work, newest first.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "auth",
    responses((status = 200, body = [SessionView]), (status = 401, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list_sessions(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    let sessions = crate::auth::account::sessions(&state.auth, &caller).await?;
    Ok(Json(
        sessions
            .into_iter()
            .map(crate::api::views::session)
            .collect(),
    ))
}

/// Ends one of the caller's own sessions at once (another operator's session is a 404).
#[utoipa::path(delete, path = "/api/v1/sessions/{id}", tag = "auth",
    params(("id" = String, Path, description = "Session id, as listed")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn revoke_session(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    crate::auth::account::revoke_session(&state.auth, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends every session of the caller except the one making this request.
#[utoipa::path(post, path = "/api/v1/sessions/revoke-others", tag = "auth",
    responses((status = 200, body = RevokedCount), (status = 401, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn revoke_other_sessions(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<RevokedCount>, ApiError> {
    let revoked = crate::auth::account::revoke_other_sessions(&state.auth, &caller).await?;
    Ok(Json(RevokedCount { revoked }))
}

/// Confirms a fresh TOTP code: privileged actions are allowed on this session for five minutes.
#[utoipa::path(post, path = "/api/v1/auth/step-up", tag = "auth", request_body = StepUpRequest,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn step_up(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    caller: Caller,
    ApiJson(req): ApiJson<StepUpRequest>,
) -> Result<StatusCode, ApiError> {
    let client = client_info(Some(peer), &headers);
    crate::auth::account::step_up(&state.auth, &caller, &req.otp, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces the caller's recovery codes (step-up required).
#[utoipa::path(post, path = "/api/v1/auth/recovery-codes", tag = "auth",
    responses((status = 201, body = RecoveryCodes), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn regenerate_recovery_codes(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    let recovery_codes =
        crate::auth::account::regenerate_recovery_codes(&state.auth, &caller).await?;
    Ok((StatusCode::CREATED, Json(RecoveryCodes { recovery_codes })))
}

/// Makes an API token for an integration (step-up required; never from another API token).
#[utoipa::path(post, path = "/api/v1/api-tokens", tag = "auth", request_body = ApiTokenRequest,
    responses((status = 201, body = ApiTokenCreated), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn create_api_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<ApiTokenRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let (secret, token) = crate::auth::account::create_api_token(
        &state.auth,
        &caller,
        crate::auth::account::ApiTokenRequest {
            name: req.name,
            role: req.role,
            tenants: req.tenants,
            ttl_days: req.ttl_days,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(ApiTokenCreated {
            token: crate::api::views::api_token(token),
            secret,
        }),
    ))
}

/// The caller's API tokens still in force, newest first.
#[utoipa::path(get, path = "/api/v1/api-tokens", tag = "auth",
    responses((status = 200, body = [ApiTokenView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list_api_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ApiTokenView>>, ApiError> {
    let tokens = crate::auth::account::api_tokens(&state.auth, &caller).await?;
    Ok(Json(
        tokens
            .into_iter()
            .map(crate::api::views::api_token)
            .collect(),
    ))
}

/// Revokes one of the caller's API tokens at once (another operator's is a 404).
#[utoipa::path(delete, path = "/api/v1/api-tokens/{id}", tag = "auth",
    params(("id" = String, Path, description = "API token id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn revoke_api_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    crate::auth::account::revoke_api_token(&state.auth, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
