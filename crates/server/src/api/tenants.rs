//! Tenants (customers): listing and creating them, enrolment tokens for
//! their devices, and their audit log.

use super::error::ApiError;
use super::{ApiJson, ApiPath, audit_event};
use crate::auth::{Action, Caller};
use crate::now_millis;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use bulwark_api::error::ErrorBody;
use bulwark_api::tenants::{
    AuditEventView, CreateTenantRequest, EnrollmentTokenRequest, EnrollmentTokenView, TenantView,
};
use bulwark_protocol::token::{EnrollToken, fingerprint_text};
use bulwark_store::AuditAction;
use bulwark_store::Tenant;
use rand::RngCore;
/// The tenant named in the path, if the caller may see it, with `action` checked on it.
pub async fn tenant_for(
    state: &AppState,
    caller: &Caller,
    name: &str,
    action: Action,
) -> Result<Tenant, ApiError> {
    let tenant = state
        .store
        .tenant_by_name(&caller.scope(), name)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    caller.require_in(action, &tenant.id)?;
    Ok(tenant)
}

/// Longest lifetime an enrolment token may be given.
const MAX_TOKEN_TTL_MINUTES: u32 = 7 * 24 * 60;

pub async fn tenant_views(state: &AppState, caller: &Caller) -> Result<Vec<TenantView>, ApiError> {
    let tenants = state.store.list_tenants(&caller.scope()).await?;
    Ok(tenants
        .into_iter()
        .map(|t| TenantView {
            online_count: i64::try_from(state.presence.online_in_tenant(&t.id)).unwrap_or_default(),
            id: t.id,
            name: t.name,
            device_count: t.device_count,
        })
        .collect())
}

/// Tenants the caller may see.
#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants",
    responses((status = 200, body = [TenantView]), (status = 401, body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list_tenants(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<TenantView>>, ApiError> {
    caller.require(Action::ListTenants)?;
    Ok(Json(tenant_views(&state, &caller).await?))
}

pub fn check_tenant_name(name: &str) -> Result<(), ApiError> {
    let ok = (2..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "a tenant name is 2 to 63 lower-case letters, digits or '-'",
        ))
    }
}

/// Creates a tenant (a customer).
#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", request_body = CreateTenantRequest,
    responses((status = 201, body = TenantView), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn create_tenant(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateTenantRequest>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Action::CreateTenant)?;
    check_tenant_name(&req.name)?;
    let tenant = state
        .store
        .create_tenant(&req.name, now_millis(), |tenant| {
            vec![audit_event(
                &caller,
                Some(&tenant.id),
                AuditAction::TenantCreated,
                &tenant.name,
            )]
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TenantView {
            id: tenant.id,
            name: tenant.name,
            device_count: 0,
            online_count: 0,
        }),
    ))
}

/// Issues a one-time token; its tenant, expiry and hash are stored. The raw token is only in this response.
pub async fn issue_enrollment_token(
    state: &AppState,
    caller: &Caller,
    tenant_name: &str,
    ttl_minutes: u32,
) -> Result<EnrollmentTokenView, ApiError> {
    let tenant = tenant_for(state, caller, tenant_name, Action::IssueEnrollmentToken).await?;
    if !(1..=MAX_TOKEN_TTL_MINUTES).contains(&ttl_minutes) {
        return Err(ApiError::bad_request(format!(
            "ttl_minutes must be between 1 and {MAX_TOKEN_TTL_MINUTES}"
        )));
    }
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    // The agent pins the tenant's first root before the server shows it anything.
    let root_fingerprint = super::trust::root_fingerprint_for(state, caller, &tenant).await?;
    let token = EnrollToken {
        secret,
        ca_fingerprint: state.ca_fingerprint,
        root_fingerprint,
    };
    let now = now_millis();
    let expires_at = now + i64::from(ttl_minutes) * 60_000;
    state
        .store
        .create_enrollment_token(
            token.secret_hash(),
            &tenant.id,
            Some(&caller.operator.id),
            now,
            expires_at,
            &[audit_event(
                caller,
                Some(&tenant.id),
                AuditAction::EnrollmentTokenIssued,
                &tenant.name,
            )],
        )
        .await?;
    Ok(EnrollmentTokenView {
        token: token.to_string(),
        tenant: tenant.name,
        expires_at: crate::rfc3339(expires_at),
        ca_fingerprint: fingerprint_text(&state.ca_fingerprint),
        root_fingerprint: fingerprint_text(&root_fingerprint),
    })
}

/// Issues a one-time enrolment token for a tenant. 409 `no_trust_root`: the
/// tenant has no trust root yet (`bulwark tenant init` first), so a device
/// could not know what to obey.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/enrollment-tokens", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant name")), request_body = EnrollmentTokenRequest,
    responses((status = 201, body = EnrollmentTokenView), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn create_enrollment_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(req): ApiJson<EnrollmentTokenRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let view =
        issue_enrollment_token(&state, &caller, &tenant, req.ttl_minutes.unwrap_or(60)).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// How many events one audit listing returns, newest first.
const AUDIT_PAGE: i64 = 200;

/// A tenant's audit log, newest first (owners, security officers and the tenant's auditors).
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/audit", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, body = [AuditEventView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<Vec<AuditEventView>>, ApiError> {
    let scope = caller.scope();
    let tenant = state
        .store
        .tenant_by_name(&scope, &tenant)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    caller.require_in(Action::ViewAudit, &tenant.id)?;
    let events = state
        .store
        .list_audit(&scope, Some(&tenant.id), AUDIT_PAGE)
        .await?;
    Ok(Json(
        events
            .into_iter()
            .map(|e| AuditEventView {
                seq: e.seq,
                at: crate::rfc3339(e.at),
                actor: e.actor,
                action: e.action,
                target: e.target,
                detail: e.detail,
            })
            .collect(),
    ))
}
