//! `bulwark login --device` (RFC 8628): the public device authorization
//! and token endpoints the CLI calls, and the approval routes the console's
//! `/device` page calls. The logic is `auth::cli_sign_in`.

use bulwark_api::cli_sign_in::{
    DeviceApprovalRequest, DeviceAuthorization, DeviceAuthorizationRequest, DeviceToken,
    DeviceTokenError, DeviceTokenRequest, UserCodeRequest,
};
use bulwark_api::error::ErrorBody;
use bulwark_api::passkeys::AssertionCeremony;
use std::net::SocketAddr;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::{ApiJson, client_info};
use crate::auth::Caller;
use crate::auth::cli_sign_in::{self as device, VERIFICATION_PATH};
use crate::auth::passkey::Assertion;
use crate::state::AppState;

/// RFC 8628 §3.4: the grant type a token request names (optional here).
pub const DEVICE_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Starts a CLI sign-in to be approved in the console with a passkey (RFC 8628 device
/// authorization). Public; at most 32 waiting per client address (429 beyond).
#[utoipa::path(post, path = "/api/v1/auth/device", tag = "auth", request_body = DeviceAuthorizationRequest,
    responses((status = 200, body = DeviceAuthorization), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn device_authorization(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<DeviceAuthorizationRequest>,
) -> Result<Response, ApiError> {
    let _ = req.client_id;
    let client = client_info(Some(peer), &headers);
    let started = device::start(&state.auth, &client).await?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(DeviceAuthorization {
            verification_uri: VERIFICATION_PATH.to_owned(),
            verification_uri_complete: format!("{VERIFICATION_PATH}?code={}", started.user_code),
            device_code: started.device_code,
            user_code: started.user_code,
            expires_in: started.expires_in,
            interval: started.interval,
        }),
    )
        .into_response())
}

fn token_error(code: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CACHE_CONTROL, "no-store")],
        Json(DeviceTokenError {
            error: code.to_owned(),
            error_description: description.to_owned(),
        }),
    )
        .into_response()
}

/// Polled by the CLI (RFC 8628 device access token request): 400 with an RFC 8628 error
/// until approved, then (once) the new CLI session's token. A body that is
/// not JSON of this schema is an RFC 6749 `invalid_request` too, in the same
/// shape; only a body too large (413) or not `application/json` (415) gets
/// the API's usual `ErrorBody`.
#[utoipa::path(post, path = "/api/v1/auth/device/token", tag = "auth", request_body = DeviceTokenRequest,
    responses((status = 200, body = DeviceToken), (status = 400, description = "RFC 8628 §3.5: not approved (yet), or refused; or (`invalid_request`) a body that is not this schema", body = DeviceTokenError), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn device_token(
    State(state): State<AppState>,
    req: Result<Json<DeviceTokenRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = match req {
        Ok(Json(req)) => req,
        Err(rejection) => {
            let error = ApiError::from(rejection);
            if error.status != StatusCode::BAD_REQUEST {
                return Err(error);
            }
            return Ok(token_error("invalid_request", &error.message));
        }
    };
    if req
        .grant_type
        .as_deref()
        .is_some_and(|g| g != DEVICE_GRANT_TYPE)
    {
        return Ok(token_error(
            "unsupported_grant_type",
            "only the device_code grant is served here",
        ));
    }
    Ok(match device::poll(&state.auth, &req.device_code).await? {
        Ok(login) => {
            let now = crate::now_millis();
            (
                [(header::CACHE_CONTROL, "no-store")],
                Json(DeviceToken {
                    access_token: login.token,
                    token_type: "Bearer".to_owned(),
                    expires_in: (login.expires_at - now) / 1000,
                    expires_at: crate::rfc3339(login.expires_at),
                }),
            )
                .into_response()
        }
        Err(e) => token_error(e.code(), e.description()),
    })
}

/// Options for approving a CLI sign-in with one of the caller's passkeys. The code must name a
/// pending sign-in (404; 429 after 5 wrong codes in 15 minutes); 409 without a passkey.
#[utoipa::path(post, path = "/api/v1/auth/device/approve/options", tag = "auth", request_body = UserCodeRequest,
    responses((status = 200, body = AssertionCeremony), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn device_approval_options(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<UserCodeRequest>,
) -> Result<Json<AssertionCeremony>, ApiError> {
    Ok(Json(
        device::approval_options(&state.auth, &caller, &req.user_code).await?,
    ))
}

/// Approves a CLI sign-in with a fresh passkey assertion made for this session and code: the
/// CLI's next poll gets a session of the caller. Audited as `session.device_approved`.
#[utoipa::path(post, path = "/api/v1/auth/device/approve", tag = "auth", request_body = DeviceApprovalRequest,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn device_approve(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<DeviceApprovalRequest>,
) -> Result<StatusCode, ApiError> {
    caller.require(crate::auth::Action::ApproveDevice)?;
    let assertion = Assertion::decode(
        &req.ceremony,
        &req.credential_id,
        &req.authenticator_data,
        &req.client_data_json,
        &req.signature,
    )?;
    device::approve(&state.auth, &caller, &req.user_code, &assertion).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Denies a CLI sign-in: its next poll is `access_denied`. Audited as `session.device_denied`.
#[utoipa::path(post, path = "/api/v1/auth/device/deny", tag = "auth", request_body = UserCodeRequest,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn device_deny(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<UserCodeRequest>,
) -> Result<StatusCode, ApiError> {
    device::deny(&state.auth, &caller, &req.user_code).await?;
    Ok(StatusCode::NO_CONTENT)
}
