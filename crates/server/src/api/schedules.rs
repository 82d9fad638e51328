//! Scheduled jobs (RFD 0019): create from a statement signed on the
//! operator's machine, list, show with the next occurrences and past runs,
//! revoke.
//!
//! The server's checks are a courtesy, with the agents' own code
//! (`bulwark_policy::schedule`): every agent checks the envelope again at
//! every run, under its current policy, by its own clock and zone rules.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use bulwark_api::error::{ErrorBody, ErrorCode};
use bulwark_api::jobs::QuorumView;
use bulwark_api::schedules::{
    RevokeScheduleRequest, ScheduleRequest, ScheduleRunResultView, ScheduleRunView,
    ScheduleTargetView, ScheduleView,
};
use bulwark_policy::schedule::{ScheduleStatement, Timetable};
use bulwark_policy::{Policy, PublicKey, Signed, check_quorum, derive_class, quorum_progress};
use bulwark_protocol::audit_leaf::job_released_detail;
use bulwark_store::{
    AuditAction, JobTarget, NewAuditEvent, NewSchedule, Schedule, ScheduleRun, StoreError, Tenant,
};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::jobs::{MAX_SCRIPT_BYTES, check_targets, secs_to_ms};
use super::signing_keys::own_keys;
use super::tenants::tenant_for;
use super::trust::{TenantTrust, decode_envelope, limits, load_trust, now_secs};
use super::{ApiJson, ApiPath, audit_event};
use crate::auth::{Action, Caller};
use crate::state::AppState;
use crate::{now_millis, rfc3339};

/// Most schedules a list returns.
const LIST_LIMIT: i64 = 200;
/// Most past runs a single view shows.
const RUNS_SHOWN: i64 = 50;
/// How many next occurrences a view shows.
const NEXT_SHOWN: usize = 5;

/// The zone rules the server uses to show (and, later, deliver)
/// occurrences: the system tz database, as the agent's.
pub(crate) fn zone_named(name: &str) -> Option<jiff::tz::TimeZone> {
    jiff::tz::db().get(name).ok()
}

fn secs_text(secs: u64) -> String {
    rfc3339(secs_to_ms(secs))
}

/// The statement of a stored schedule, if its envelope still decodes.
fn statement_of(row: &Schedule) -> Option<(Signed, ScheduleStatement)> {
    let limits = limits();
    let signed = Signed::from_bytes(&row.envelope, &limits).ok()?;
    let statement = signed.statement::<ScheduleStatement>(&limits).ok()?;
    Some((signed, statement))
}

pub(crate) fn schedule_view(
    row: &Schedule,
    runs: &[(ScheduleRun, Vec<JobTarget>)],
    policy: Option<&Policy>,
    now: u64,
) -> ScheduleView {
    let parsed = statement_of(row);
    let statement = parsed.as_ref().map(|(_, s)| s);
    let quorum = match (&parsed, policy) {
        (Some((signed, s)), Some(p)) => {
            quorum_progress(signed, &s.job_for(s.not_before), p).map(|q| QuorumView {
                have: q.have,
                need: q.need,
                customer_required: q.customer_required,
                customer_signed: q.customer_signed,
            })
        }
        _ => None,
    };
    let next_occurrences = match statement {
        Some(s) if row.revoked_at.is_none() => s
            .timetable(&limits(), zone_named)
            .map(|t| t.upcoming(now, NEXT_SHOWN))
            .unwrap_or_default()
            .into_iter()
            .map(secs_text)
            .collect(),
        _ => Vec::new(),
    };
    ScheduleView {
        id: row.id.clone(),
        tenant_id: row.tenant_id.clone(),
        class: row.class.clone(),
        action: statement.map(|s| s.action.describe()).unwrap_or_default(),
        reason: row.reason.clone(),
        cron: statement.map(|s| s.cron.clone()).unwrap_or_default(),
        zone: statement.map(|s| s.zone.clone()).unwrap_or_default(),
        window: statement.and_then(|s| s.window).map(|w| w.to_string()),
        not_before: rfc3339(row.not_before),
        not_after: rfc3339(row.not_after),
        targets: statement
            .map(|s| {
                s.targets
                    .iter()
                    .map(|t| ScheduleTargetView {
                        device_id: t.device_id.clone(),
                        hostname: t.hostname.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        created_by: row.created_by_username.clone(),
        created_at: rfc3339(row.created_at),
        revoked_at: row.revoked_at.map(rfc3339),
        quorum,
        next_occurrences,
        runs: runs
            .iter()
            .map(|(r, targets)| ScheduleRunView {
                occurrence: rfc3339(r.occurrence.saturating_mul(1000)),
                job_id: r.job_id.clone(),
                claimed_by: r.claimed_by.clone(),
                claimed_at: rfc3339(r.claimed_at),
                results: targets
                    .iter()
                    .map(|t| ScheduleRunResultView {
                        device_id: t.device_id.clone(),
                        hostname: t.hostname.clone(),
                        state: t.state.as_str().to_owned(),
                        exit_code: t.exit_code,
                        refusal_code: t.refusal_code.clone(),
                        refusal_reason: t.refusal_reason.clone(),
                        stdout: t
                            .stdout
                            .as_ref()
                            .map(|b| String::from_utf8_lossy(b).into_owned()),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// The schedule with this id in the caller's scope, then the role check:
/// a foreign or unknown id is the same 404.
pub(crate) async fn schedule_in_scope(
    state: &AppState,
    caller: &Caller,
    id: &str,
    action: Action,
) -> Result<Schedule, ApiError> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::not_found("schedule"));
    }
    let row = state
        .store
        .schedule(&caller.scope(), &id.to_ascii_lowercase())
        .await?
        .ok_or_else(|| ApiError::not_found("schedule"))?;
    caller.require_in(action, &row.tenant_id)?;
    Ok(row)
}

pub(crate) async fn single_schedule(
    state: &AppState,
    caller: &Caller,
    row: &Schedule,
) -> Result<ScheduleView, ApiError> {
    let mut runs = Vec::new();
    for run in state
        .store
        .schedule_runs(&caller.scope(), &row.id, RUNS_SHOWN)
        .await?
    {
        let targets = state
            .store
            .job_targets(&caller.scope(), &run.job_id)
            .await?;
        runs.push((run, targets));
    }
    let set = state
        .store
        .trust_statements(&caller.scope(), &row.tenant_id)
        .await?;
    let trust = TenantTrust::load(&row.tenant_id, &set);
    Ok(schedule_view(row, &runs, trust.policy(), now_secs()))
}

/// Stores a schedule its signers signed on their own machines, once, with
/// the quorum the policy demands for its class. Its occurrences go to its
/// targets, which check every run themselves.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/schedules", tag = "schedules",
    params(("tenant" = String, Path, description = "Tenant name")), request_body = ScheduleRequest,
    responses((status = 201, body = ScheduleView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn create_schedule(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(req): ApiJson<ScheduleRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let tenant = tenant_for(&state, &caller, &tenant, Action::RequestJob).await?;
    let checked = check_schedule(&state, &caller, &tenant, &req).await?;
    let created = state
        .store
        .create_schedule(&checked.new, now_millis(), &[checked.event])
        .await;
    let row = match created {
        Ok(row) => row,
        Err(StoreError::Conflict(what)) => return Err(ApiError::conflict(what)),
        Err(e) => return Err(e.into()),
    };
    let view = single_schedule(&state, &caller, &row).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// A schedule request checked as the agents will check its runs (with
/// their code), ready to store: the statement, the row and its
/// `schedule.created` leaf (what agents check inclusion of).
pub(crate) struct CheckedSchedule {
    pub statement: ScheduleStatement,
    pub new: NewSchedule,
    pub event: NewAuditEvent,
}

/// Checks a schedule signed on its signers' machines for `tenant`: its own
/// payload type, limits, zone, script, targets of the tenant, a signature
/// by the caller's own key, and its class's quorum now.
pub(crate) async fn check_schedule(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    req: &ScheduleRequest,
) -> Result<CheckedSchedule, ApiError> {
    let limits = limits();
    let signed = decode_envelope(&req.envelope)?;
    let schedule: ScheduleStatement = signed
        .statement(&limits)
        .map_err(|e| ApiError::bad_request(format!("not a schedule statement: {e}")))?;
    let timetable: Timetable = schedule
        .timetable(&limits, zone_named)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if req.script.len() > MAX_SCRIPT_BYTES {
        return Err(ApiError::bad_request(format!(
            "the script is larger than {MAX_SCRIPT_BYTES} bytes"
        )));
    }
    if schedule.tenant != tenant.id || schedule.tenant_name != tenant.name {
        return Err(ApiError::bad_request(format!(
            "the statement names tenant {:?} ({}), this is {:?}",
            schedule.tenant_name, schedule.tenant, tenant.name
        )));
    }
    let script_sha256: [u8; 32] = Sha256::digest(req.script.as_bytes()).into();
    match schedule.action.script_sha256() {
        Some(hash) if hash.0 != script_sha256 => {
            return Err(ApiError::bad_request(
                "the script does not match the signed script_sha256",
            ));
        }
        None if !req.script.is_empty() => {
            return Err(ApiError::bad_request(
                "this action runs no script: send an empty script",
            ));
        }
        _ => {}
    }
    if schedule.targets.is_empty() {
        return Err(ApiError::bad_request(
            "a schedule needs at least one target",
        ));
    }
    let now = now_secs();
    if timetable.next_after(now).is_none() {
        return Err(ApiError::bad_request(
            "the schedule has no occurrence left before it ends",
        ));
    }
    // The requester signs with a key registered to their own account.
    let own: Vec<PublicKey> = own_keys(state, caller).await?;
    if signed.tally(own.iter()).valid.is_empty() {
        return Err(ApiError::bad_request(
            "the schedule must carry a valid signature by one of your registered signing keys (`bulwark keys register`)",
        ));
    }
    let trust = load_trust(state, caller, tenant).await?;
    trust.require_intact()?;
    let Some(policy) = trust.policy() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::NoPolicy,
            "the tenant has no policy yet: run `bulwark tenant init`",
        ));
    };
    // Signed once: the quorum must be there now (agents count it again
    // under their policy at every run).
    let job = schedule.job_for(schedule.not_before);
    let class = derive_class(&job, policy).map_err(|e| ApiError::bad_request(e.to_string()))?;
    check_quorum(&signed, &job, policy, now).map_err(|e| {
        ApiError::bad_request(format!(
            "a schedule is signed once, with its class's quorum: {e}"
        ))
    })?;
    check_targets(state, caller, tenant, &job).await?;
    let id = hex::encode(schedule.schedule_id);
    // The leaf agents check (RFD 0019 step 11): the schedule id and exactly
    // the signed bytes, as a job's release entry binds a job.
    Ok(CheckedSchedule {
        new: NewSchedule {
            id: id.clone(),
            tenant_id: tenant.id.clone(),
            created_by: caller.operator.id.clone(),
            class: class.name().to_owned(),
            reason: schedule.reason.clone(),
            script: req.script.as_bytes().to_vec(),
            envelope: signed.to_bytes(),
            not_before: secs_to_ms(schedule.not_before),
            not_after: secs_to_ms(schedule.not_after),
        },
        event: audit_event(caller, Some(&tenant.id), AuditAction::ScheduleCreated, &id)
            .with_detail(job_released_detail(&signed.digest())),
        statement: schedule,
    })
}

/// A tenant's schedules, newest first.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/schedules", tag = "schedules",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, body = [ScheduleView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list_schedules(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<Vec<ScheduleView>>, ApiError> {
    Ok(Json(schedule_views(&state, &caller, &tenant).await?))
}

/// A tenant's schedules (the API route and the console's tenant page).
pub(crate) async fn schedule_views(
    state: &AppState,
    caller: &Caller,
    tenant: &str,
) -> Result<Vec<ScheduleView>, ApiError> {
    let tenant = tenant_for(state, caller, tenant, Action::ViewJobs).await?;
    let rows = state
        .store
        .list_schedules(&caller.scope(), &tenant.id, LIST_LIMIT)
        .await?;
    let set = state
        .store
        .trust_statements(&caller.scope(), &tenant.id)
        .await?;
    let trust = TenantTrust::load(&tenant.id, &set);
    let now = now_secs();
    Ok(rows
        .iter()
        .map(|row| schedule_view(row, &[], trust.policy(), now))
        .collect())
}

/// One schedule with its next occurrences and the runs delivered.
#[utoipa::path(get, path = "/api/v1/schedules/{id}", tag = "schedules",
    params(("id" = String, Path, description = "Schedule id (32 hex characters)")),
    responses((status = 200, body = ScheduleView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn get_schedule(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    let row = schedule_in_scope(&state, &caller, &id, Action::ViewJobs).await?;
    Ok(Json(single_schedule(&state, &caller, &row).await?))
}

/// Revokes a schedule: no occurrence of it is delivered any more. Whoever
/// may cancel jobs may revoke schedules; privileged (a fresh MFA check),
/// recorded in the tenant's log.
#[utoipa::path(post, path = "/api/v1/schedules/{id}/revoke", tag = "schedules",
    params(("id" = String, Path, description = "Schedule id (32 hex characters)")), request_body = RevokeScheduleRequest,
    responses((status = 200, body = ScheduleView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn revoke_schedule(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<RevokeScheduleRequest>,
) -> Result<Json<ScheduleView>, ApiError> {
    let row = schedule_in_scope(&state, &caller, &id, Action::CancelJob).await?;
    let reason = req.reason.trim();
    if reason.is_empty() || reason.len() > 1000 {
        return Err(ApiError::bad_request("reason must be 1 to 1000 characters"));
    }
    let event = audit_event(
        &caller,
        Some(&row.tenant_id),
        AuditAction::ScheduleRevoked,
        &row.id,
    )
    .with_detail(format!("by {}: {reason}", caller.operator.username));
    let revoked = state
        .store
        .revoke_schedule(
            &row.tenant_id,
            &row.id,
            &caller.operator.id,
            now_millis(),
            &[event],
        )
        .await;
    let row = match revoked {
        Ok(row) => row,
        Err(StoreError::Conflict(what)) => return Err(ApiError::conflict(what)),
        Err(e) => return Err(e.into()),
    };
    Ok(Json(single_schedule(&state, &caller, &row).await?))
}
