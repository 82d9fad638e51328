//! Patch policies (RFD 0021): a canary ring and ring 2, each an
//! install-patches schedule signed once on the operators' machines and
//! checked here with the schedules' own checks; the rings' states; revoke.
//!
//! The server's part is withholding: ring 2's occurrences are delivered
//! only after the canary soaked healthy (`patch_rings`). What installs,
//! where, inside which window and not before when is signed, and every
//! agent checks it at every run.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use bulwark_api::error::ErrorBody;
use bulwark_api::patch_policies::{
    PatchPolicyRequest, PatchPolicyView, PatchRingView, RevokePatchPolicyRequest,
};
use bulwark_api::schedules::ScheduleView;
use bulwark_policy::JobAction;
use bulwark_store::{AuditAction, PatchPolicy, Store, StoreError, TargetState, TenantScope};

use super::error::ApiError;
use super::schedules::{check_schedule, single_schedule};
use super::tenants::tenant_for;
use super::trust::now_secs;
use super::{ApiJson, ApiPath, audit_event};
use crate::auth::{Action, Caller};
use crate::patch_rings::{CanaryResult, CanaryRun, canary_state, ring_two_state};
use crate::presence::Presence;
use crate::state::AppState;
use crate::{now_millis, rfc3339};

/// Most policies a list returns.
const LIST_LIMIT: i64 = 100;
/// Most canary runs the release decision looks at (the latest soaked one
/// decides).
const CANARY_RUNS: i64 = 50;
/// The longest soak (30 days): a schedule lives at most 90.
const MAX_SOAK_SECS: u64 = 30 * 86_400;

/// The canary's delivered runs with each device's result and whether it
/// is online now: what the release of ring 2 is decided from.
pub(crate) async fn canary_runs(
    store: &Store,
    presence: &Presence,
    scope: &TenantScope,
    canary_schedule: &str,
) -> Result<Vec<CanaryRun>, StoreError> {
    let mut runs = Vec::new();
    for run in store
        .schedule_runs(scope, canary_schedule, CANARY_RUNS)
        .await?
    {
        let results = store
            .job_targets(scope, &run.job_id)
            .await?
            .into_iter()
            .map(|t| CanaryResult {
                online: presence.is_online(&t.device_id),
                hostname: t.hostname,
                state: t.state,
                exit_code: t.exit_code,
                refusal_code: t.refusal_code,
            })
            .collect();
        runs.push(CanaryRun {
            occurrence: u64::try_from(run.occurrence).unwrap_or(0),
            results,
        });
    }
    Ok(runs)
}

fn ms_to_secs(ms: i64) -> u64 {
    u64::try_from(ms / 1000).unwrap_or(0)
}

async fn policy_view(
    state: &AppState,
    caller: &Caller,
    row: &PatchPolicy,
) -> Result<PatchPolicyView, ApiError> {
    let scope = caller.scope();
    let canary = state
        .store
        .schedule(&scope, &row.id)
        .await?
        .ok_or_else(|| ApiError::not_found("patch policy"))?;
    let rest = state
        .store
        .schedule(&scope, &row.rest_schedule_id)
        .await?
        .ok_or_else(|| ApiError::not_found("patch policy"))?;
    let canary_view: ScheduleView = single_schedule(state, caller, &canary).await?;
    let rest_view: ScheduleView = single_schedule(state, caller, &rest).await?;
    let runs = canary_runs(&state.store, &state.presence, &scope, &row.id).await?;
    let now = now_secs();
    let soak = u64::try_from(row.soak_secs).unwrap_or(0);
    let (canary_state, rest_state) = if row.revoked_at.is_some() {
        let revoked = crate::patch_rings::RingState {
            state: "revoked",
            detail: String::new(),
        };
        (revoked.clone(), revoked)
    } else {
        let running = rest_view.runs.first().is_some_and(|r| {
            r.results.iter().any(|t| {
                t.state == TargetState::Waiting.as_str()
                    || t.state == TargetState::Delivered.as_str()
            })
        });
        (
            canary_state(now, soak, &runs),
            ring_two_state(now, ms_to_secs(rest.not_before), soak, &runs, running),
        )
    };
    Ok(PatchPolicyView {
        id: row.id.clone(),
        tenant_id: row.tenant_id.clone(),
        name: row.name.clone(),
        installs: canary_view.action.clone(),
        soak_secs: soak,
        ring_two_not_before: rfc3339(rest.not_before),
        created_by: row.created_by_username.clone(),
        created_at: rfc3339(row.created_at),
        revoked_at: row.revoked_at.map(rfc3339),
        rings: vec![
            PatchRingView {
                ring: "canary".into(),
                state: canary_state.state.into(),
                detail: canary_state.detail,
                schedule: canary_view,
            },
            PatchRingView {
                ring: "ring 2".into(),
                state: rest_state.state.into(),
                detail: rest_state.detail,
                schedule: rest_view,
            },
        ],
    })
}

/// Stores a patch policy: the canary's and ring 2's schedules, each signed
/// once with the install-patches quorum. Both install every pending
/// security update, on disjoint devices, at the same times; ring 2's
/// signed `not_before` is at least the soak after the canary's.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/patch-policies", tag = "schedules",
    params(("tenant" = String, Path, description = "Tenant name")), request_body = PatchPolicyRequest,
    responses((status = 201, body = PatchPolicyView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn create_patch_policy(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(req): ApiJson<PatchPolicyRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let tenant = tenant_for(&state, &caller, &tenant, Action::RequestJob).await?;
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "name must be 1 to 100 characters, no control characters",
        ));
    }
    if req.soak_secs > MAX_SOAK_SECS {
        return Err(ApiError::bad_request(format!(
            "the soak is at most {MAX_SOAK_SECS} s"
        )));
    }
    let canary = check_schedule(&state, &caller, &tenant, &req.canary).await?;
    let rest = check_schedule(&state, &caller, &tenant, &req.rest).await?;
    let (c, r) = (&canary.statement, &rest.statement);
    for s in [c, r] {
        if !matches!(&s.action, JobAction::InstallPatches { packages } if packages.is_empty()) {
            return Err(ApiError::bad_request(
                "a patch policy's rings install every pending security update (install-patches, no package named)",
            ));
        }
    }
    if (&c.cron, &c.zone, c.window) != (&r.cron, &r.zone, r.window) {
        return Err(ApiError::bad_request(
            "both rings run at the same times: the same cron, zone and window",
        ));
    }
    if c.targets
        .iter()
        .any(|t| r.targets.iter().any(|u| u.device_id == t.device_id))
    {
        return Err(ApiError::bad_request("a device is in one ring only"));
    }
    if r.not_before < c.not_before.saturating_add(req.soak_secs) {
        return Err(ApiError::bad_request(format!(
            "ring 2 must be signed not before the canary's start plus the soak ({} s)",
            req.soak_secs
        )));
    }
    let soak = i64::try_from(req.soak_secs).unwrap_or(i64::MAX);
    let detail = format!(
        "{name}: canary {} device(s), ring 2 {} device(s) after {} s, {}",
        c.targets.len(),
        r.targets.len(),
        req.soak_secs,
        c.action.describe()
    );
    let events = [
        canary.event.clone(),
        rest.event.clone(),
        audit_event(
            &caller,
            Some(&tenant.id),
            AuditAction::PatchPolicyCreated,
            &canary.new.id,
        )
        .with_detail(detail),
    ];
    let created = state
        .store
        .create_patch_policy(name, &canary.new, &rest.new, soak, now_millis(), &events)
        .await;
    let row = match created {
        Ok(row) => row,
        Err(StoreError::Conflict(what)) => return Err(ApiError::conflict(what)),
        Err(e) => return Err(e.into()),
    };
    let view = policy_view(&state, &caller, &row).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// A tenant's patch policies with their rings' states, newest first.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/patch-policies", tag = "schedules",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, body = [PatchPolicyView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list_patch_policies(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<Vec<PatchPolicyView>>, ApiError> {
    Ok(Json(patch_policy_views(&state, &caller, &tenant).await?))
}

/// A tenant's patch policies (the API route and the console's patch page).
pub(crate) async fn patch_policy_views(
    state: &AppState,
    caller: &Caller,
    tenant: &str,
) -> Result<Vec<PatchPolicyView>, ApiError> {
    let tenant = tenant_for(state, caller, tenant, Action::ViewJobs).await?;
    let rows = state
        .store
        .list_patch_policies(&caller.scope(), &tenant.id, LIST_LIMIT)
        .await?;
    let mut views = Vec::with_capacity(rows.len());
    for row in &rows {
        views.push(policy_view(state, caller, row).await?);
    }
    Ok(views)
}

async fn policy_in_scope(
    state: &AppState,
    caller: &Caller,
    id: &str,
    action: Action,
) -> Result<PatchPolicy, ApiError> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::not_found("patch policy"));
    }
    let row = state
        .store
        .patch_policy(&caller.scope(), &id.to_ascii_lowercase())
        .await?
        .ok_or_else(|| ApiError::not_found("patch policy"))?;
    caller.require_in(action, &row.tenant_id)?;
    Ok(row)
}

/// One patch policy: what installs, its rings, their states and runs.
#[utoipa::path(get, path = "/api/v1/patch-policies/{id}", tag = "schedules",
    params(("id" = String, Path, description = "Patch policy id (its canary schedule's, 32 hex characters)")),
    responses((status = 200, body = PatchPolicyView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn get_patch_policy(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<PatchPolicyView>, ApiError> {
    let row = policy_in_scope(&state, &caller, &id, Action::ViewJobs).await?;
    Ok(Json(policy_view(&state, &caller, &row).await?))
}

/// Revokes a patch policy and both its schedules: nothing more is
/// delivered. Privileged, as revoking a schedule; recorded in the log.
#[utoipa::path(post, path = "/api/v1/patch-policies/{id}/revoke", tag = "schedules",
    params(("id" = String, Path, description = "Patch policy id (32 hex characters)")), request_body = RevokePatchPolicyRequest,
    responses((status = 200, body = PatchPolicyView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn revoke_patch_policy(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<RevokePatchPolicyRequest>,
) -> Result<Json<PatchPolicyView>, ApiError> {
    let row = policy_in_scope(&state, &caller, &id, Action::CancelJob).await?;
    let reason = req.reason.trim();
    if reason.is_empty() || reason.len() > 1000 {
        return Err(ApiError::bad_request("reason must be 1 to 1000 characters"));
    }
    let detail = format!("by {}: {reason}", caller.operator.username);
    let tenant = Some(row.tenant_id.as_str());
    let events = [
        audit_event(&caller, tenant, AuditAction::PatchPolicyRevoked, &row.id)
            .with_detail(detail.clone()),
        audit_event(&caller, tenant, AuditAction::ScheduleRevoked, &row.id)
            .with_detail(detail.clone()),
        audit_event(
            &caller,
            tenant,
            AuditAction::ScheduleRevoked,
            &row.rest_schedule_id,
        )
        .with_detail(detail),
    ];
    let revoked = state
        .store
        .revoke_patch_policy(
            &row.tenant_id,
            &row.id,
            &caller.operator.id,
            now_millis(),
            &events,
        )
        .await;
    let row = match revoked {
        Ok(row) => row,
        Err(StoreError::Conflict(what)) => return Err(ApiError::conflict(what)),
        Err(e) => return Err(e.into()),
    };
    Ok(Json(policy_view(&state, &caller, &row).await?))
}
