//! Creating the first owner: the setup code `bulwark up` printed, a password,
//! and a TOTP enrolment proved in a second step.

use super::ApiJson;
use super::error::ApiError;
use crate::auth::flows::{self};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use bulwark_api::error::ErrorBody;
use bulwark_api::setup::{OperatorView, SetupConfirmRequest, SetupRequest, SetupResponse};

/// Step 1 of creating the first owner. Only works while no operator exists.
#[utoipa::path(post, path = "/api/v1/setup", tag = "setup", request_body = SetupRequest,
    responses((status = 201, body = SetupResponse), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn setup_start(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SetupRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let started = flows::setup_start(&state.auth, &req.code, &req.username, &req.password).await?;
    Ok((
        StatusCode::CREATED,
        Json(super::views::totp_enrolment(started)),
    ))
}

/// Step 2: proves the TOTP enrolment and creates the owner.
#[utoipa::path(post, path = "/api/v1/setup/confirm", tag = "setup", request_body = SetupConfirmRequest,
    responses((status = 201, body = OperatorView), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn setup_confirm(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SetupConfirmRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let (operator, recovery_codes) =
        flows::setup_confirm(&state.auth, &req.enrolment_id, &req.otp).await?;
    Ok((
        StatusCode::CREATED,
        Json(super::views::created_operator(operator, recovery_codes)),
    ))
}
