//! Owners manage operators' access: grants and passkey resets (the logic
//! is `auth::grants`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::{ApiJson, ApiPath, GrantView};
use crate::auth::Caller;
use crate::auth::grants::{self, GrantRequest};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantItem {
    /// Tenant name.
    tenant: String,
    /// `security_officer`, `technician`, `read_only` or `tenant_auditor`.
    role: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantsRequest {
    /// Every grant the operator is to hold (the others are removed); empty: none.
    grants: Vec<GrantItem>,
}

#[derive(Serialize, ToSchema)]
pub struct GrantsChanged {
    before: Vec<GrantView>,
    after: Vec<GrantView>,
}

/// Replaces an operator's tenant grants with the full list given (owners only; step-up
/// required). Takes effect on the operator's next request. Audited as
/// `operator.grants_changed` with the grants before and after.
#[utoipa::path(put, path = "/api/v1/operators/{id}/grants", tag = "operators", request_body = GrantsRequest,
    params(("id" = String, Path, description = "Operator id")),
    responses((status = 200, body = GrantsChanged), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn set_operator_grants(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<GrantsRequest>,
) -> Result<Json<GrantsChanged>, ApiError> {
    let requested: Vec<GrantRequest> = req
        .grants
        .into_iter()
        .map(|g| GrantRequest {
            tenant: g.tenant,
            role: g.role,
        })
        .collect();
    let (before, after) = grants::set_grants(&state, &caller, &id, &requested).await?;
    Ok(Json(GrantsChanged {
        before: before.into_iter().map(GrantView::from).collect(),
        after: after.into_iter().map(GrantView::from).collect(),
    }))
}

/// Removes every passkey of an operator who lost theirs, and ends its sessions (owners only;
/// step-up required). Audited as `operator.passkeys_reset`.
#[utoipa::path(delete, path = "/api/v1/operators/{id}/passkeys", tag = "operators",
    params(("id" = String, Path, description = "Operator id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn reset_operator_passkeys(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    grants::reset_passkeys(&state, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
