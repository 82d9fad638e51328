//! Operator accounts: listing them, inviting one by a one-time link (and
//! the invited person redeeming it), disabling one, and the owners'
//! management of grants and passkey resets (the logic is `auth::grants`
//! and `auth::invite`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use bulwark_api::error::ErrorBody;
use bulwark_api::operators::{
    GrantView, GrantsChanged, GrantsRequest, InvitationCreated, InvitationRequest, InvitationView,
    OperatorSummary, RedeemRequest,
};
use bulwark_api::setup::{OperatorView, SetupConfirmRequest, SetupResponse};

use super::error::ApiError;
use super::{ApiJson, ApiPath};
use crate::auth::grants::{self, GrantRequest};
use crate::auth::{Action, Caller};
use crate::state::AppState;

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
    let (before, after) = grants::set_grants(&state.auth, &caller, &id, &requested).await?;
    Ok(Json(GrantsChanged {
        before: before.into_iter().map(crate::api::views::grant).collect(),
        after: after.into_iter().map(crate::api::views::grant).collect(),
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
    grants::reset_passkeys(&state.auth, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Operators as `caller` may see them: owners see every account; a security
/// officer sees the owners and the operators holding a role on a tenant where
/// it is security officer, with only those tenants' grants.
pub async fn operator_summaries(
    state: &AppState,
    caller: &Caller,
) -> Result<Vec<OperatorSummary>, ApiError> {
    caller.require(Action::ListOperators)?;
    let operators = state.store.list_operators().await?;
    Ok(operators
        .into_iter()
        .filter_map(|(operator, grants)| {
            let owner = operator.role == bulwark_store::ACCOUNT_OWNER;
            let grants: Vec<GrantView> = grants
                .into_iter()
                .filter(|g| caller.allows_in(Action::ListOperators, &g.tenant_id))
                .map(crate::api::views::grant)
                .collect();
            (caller.is_owner() || owner || !grants.is_empty()).then(|| OperatorSummary {
                id: operator.id,
                username: operator.username,
                account: operator.role,
                disabled: operator.disabled_at.is_some(),
                created_at: crate::rfc3339(operator.created_at),
                grants,
            })
        })
        .collect())
}

/// Operator accounts and their grants (owners and security officers).
#[utoipa::path(get, path = "/api/v1/operators", tag = "operators",
    responses((status = 200, body = [OperatorSummary]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list_operators(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<OperatorSummary>>, ApiError> {
    Ok(Json(operator_summaries(&state, &caller).await?))
}

/// Invites an operator by a one-time, expiring link (owners only).
#[utoipa::path(post, path = "/api/v1/invitations", tag = "operators", request_body = InvitationRequest,
    responses((status = 201, body = InvitationCreated), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn create_invitation(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<InvitationRequest>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Action::InviteOperator)?;
    let role = crate::auth::Role::parse(&req.role).ok_or_else(|| {
        ApiError::bad_request(
            "role must be owner, security_officer, technician, read_only or tenant_auditor",
        )
    })?;
    let issued = crate::auth::invite::invite(
        &state.auth,
        &caller,
        crate::auth::invite::InviteRequest {
            username: req.username,
            role,
            tenants: req.tenants,
            ttl_hours: req.ttl_hours,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(InvitationCreated {
            path: crate::auth::invite::invite_path(&issued.token),
            token: issued.token,
            invitation: crate::api::views::invitation(issued.invitation),
        }),
    ))
}

/// Invitations not yet redeemed, revoked or expired (owners only).
#[utoipa::path(get, path = "/api/v1/invitations", tag = "operators",
    responses((status = 200, body = [InvitationView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list_invitations(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<InvitationView>>, ApiError> {
    let pending = crate::auth::invite::pending(&state.auth, &caller).await?;
    Ok(Json(
        pending
            .into_iter()
            .map(crate::api::views::invitation)
            .collect(),
    ))
}

/// Revokes a pending invitation: its link stops working at once (owners only).
#[utoipa::path(delete, path = "/api/v1/invitations/{id}", tag = "operators",
    params(("id" = String, Path, description = "Invitation id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn revoke_invitation(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    crate::auth::invite::revoke(&state.auth, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Step 1 of accepting an invitation: choose a password, receive a TOTP secret.
#[utoipa::path(post, path = "/api/v1/invitations/redeem", tag = "operators", request_body = RedeemRequest,
    responses((status = 201, body = SetupResponse), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn redeem_invitation(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RedeemRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let started = crate::auth::invite::redeem(&state.auth, &req.token, &req.password).await?;
    Ok((
        StatusCode::CREATED,
        Json(super::views::totp_enrolment(started)),
    ))
}

/// Step 2: proves the TOTP enrolment; creates the operator with its grants and consumes the invitation.
#[utoipa::path(post, path = "/api/v1/invitations/confirm", tag = "operators", request_body = SetupConfirmRequest,
    responses((status = 201, body = OperatorView), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn confirm_invitation(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SetupConfirmRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let (operator, _grants, recovery_codes) =
        crate::auth::invite::confirm(&state.auth, &req.enrolment_id, &req.otp).await?;
    Ok((
        StatusCode::CREATED,
        Json(super::views::created_operator(operator, recovery_codes)),
    ))
}

/// Disables an operator: every session it holds ends at once, its remote
/// shells too (owners only; step-up required).
#[utoipa::path(post, path = "/api/v1/operators/{id}/disable", tag = "operators",
    params(("id" = String, Path, description = "Operator id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn disable_operator(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    crate::auth::account::disable_operator(&state.auth, &caller, &id).await?;
    // Their live remote shells end too (RFD 0015).
    state.presence.shells().end_operator(&id);
    Ok(StatusCode::NO_CONTENT)
}
