//! Tenant trust statements, operators' public signing keys, and jobs
//! (RFD 0002).
//!
//! The server relays what people signed elsewhere. It checks each statement
//! with the same `bulwark_policy` code the agent runs, so a mistake is
//! caught at the desk and not on a thousand endpoints, but its checks are a
//! courtesy: every agent checks again and trusts nothing the server says.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bulwark_api::error::ErrorBody;
use bulwark_api::error::ErrorCode;
use bulwark_api::job_status::{TargetFacts, TargetStatus, job_status, target_status};
use bulwark_api::jobs::{
    ApprovalRequest, CancelRequest, JobOutputView, JobRequest, JobTargetView, JobView,
    MassActionDelayView, OutputChunkView, OutputStreamView, QuorumView, RejectRequest, SignerView,
    WebAuthnApproval,
};
use bulwark_policy::envelope::SignatureEntry;
use bulwark_policy::webauthn::WebAuthnSignature;
use bulwark_policy::{
    JobStatement, Policy, PublicKey, Signed, check_quorum, derive_class, quorum_progress,
    same_hostname,
};
use bulwark_store::AuditAction;
use bulwark_store::{
    Job as JobRow, JobState, JobTarget as JobTargetRow, NewJob, StoreError, Tenant,
};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::refusals::{base64_field, base64url_field};
use super::signing_keys::{own_keys, parse_key_id};
use super::tenants::tenant_for;
use super::trust::{TenantTrust, decode_envelope, limits, load_trust, now_secs};
use super::{ApiJson, ApiPath, audit_event};
use crate::auth::{Action, Caller};
use crate::state::AppState;
use crate::{now_millis, rfc3339};

/// Largest script a job may carry (the agent's limit is the same).
pub const MAX_SCRIPT_BYTES: usize = bulwark_protocol::limits::statement::MAX_SCRIPT_BYTES;

// ---- jobs ----

fn text(bytes: &Option<Vec<u8>>) -> Option<String> {
    bytes
        .as_ref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// Facts of one stored target for [`target_status`], with its device's
/// presence (`presence` is `None` when not known).
fn status_of(
    job: &JobRow,
    t: &JobTargetRow,
    presence: Option<&crate::presence::Presence>,
) -> TargetStatus {
    target_status(TargetFacts {
        state: t.state.as_str(),
        job_state: job.state.as_str(),
        job_cancelled: job.cancelled_at.is_some(),
        refusal_code: t.refusal_code.as_deref(),
        exit_code: t.exit_code.and_then(|c| i32::try_from(c).ok()),
        started: t.running_at.is_some(),
        online: presence.map(|p| p.is_online(&t.device_id)),
    })
}

pub fn job_view(
    job: &JobRow,
    targets: &[JobTargetRow],
    policy: Option<&Policy>,
    full: bool,
    presence: Option<&crate::presence::Presence>,
) -> JobView {
    let statuses: Vec<TargetStatus> = targets
        .iter()
        .map(|t| status_of(job, t, presence))
        .collect();
    let limits = limits();
    let signed = Signed::from_bytes(&job.envelope, &limits).ok();
    let statement = signed
        .as_ref()
        .and_then(|s| s.statement::<JobStatement>(&limits).ok());
    let quorum = match (&signed, &statement, policy) {
        (Some(s), Some(j), Some(p)) => quorum_progress(s, j, p).map(|q| QuorumView {
            have: q.have,
            need: q.need,
            customer_required: q.customer_required,
            customer_signed: q.customer_signed,
        }),
        _ => None,
    };
    let signers = signed
        .as_ref()
        .map(|s| {
            s.signatures
                .iter()
                .map(|e| SignerView {
                    key_id: hex::encode(e.key_id.0),
                    name: policy.and_then(|p| {
                        p.operators
                            .iter()
                            .find(|o| o.key.id() == e.key_id)
                            .map(|o| o.name.clone())
                    }),
                })
                .collect()
        })
        .unwrap_or_default();
    let mass_action_delay = match (&statement, policy) {
        (Some(j), Some(p)) => p.mass_action_delay.as_ref().and_then(|rule| {
            let class = derive_class(j, p).unwrap_or(j.class);
            rule.applies(j, class).then(|| MassActionDelayView {
                delay_secs: rule.delay_secs,
                runs_from: job
                    .decided_at
                    .filter(|_| job.state == JobState::Approved)
                    .map(|at| {
                        rfc3339(at.saturating_add(
                            i64::try_from(rule.delay_secs * 1000).unwrap_or(i64::MAX),
                        ))
                    }),
            })
        }),
        _ => None,
    };
    JobView {
        mass_action_delay,
        id: job.id.clone(),
        tenant: job.tenant_name.clone(),
        class: job.class.clone(),
        action: statement.as_ref().map(|j| j.action.describe()),
        reason: job.reason.clone(),
        requested_by: job.requested_by_username.clone(),
        script_sha256: hex::encode(job.script_sha256),
        state: job.state.to_string(),
        status: job_status(job.state.as_str(), job.cancelled_at.is_some(), &statuses),
        cancelled_at: job.cancelled_at.map(rfc3339),
        cancelled_by: job.cancelled_by.clone(),
        cancel_reason: job.cancel_reason.clone(),
        quorum,
        signers,
        not_before: rfc3339(job.not_before),
        expires_at: rfc3339(job.expires_at),
        created_at: rfc3339(job.created_at),
        decided_at: job.decided_at.map(rfc3339),
        timeout_secs: statement
            .as_ref()
            .map(|j| j.timeout_secs)
            .unwrap_or_default(),
        decision_note: job.decision_note.clone(),
        targets: targets
            .iter()
            .zip(&statuses)
            .map(|(t, status)| JobTargetView {
                status: *status,
                running_at: t.running_at.map(rfc3339),
                duration_ms: t
                    .started_at
                    .zip(t.finished_at)
                    .map(|(s, f)| f.saturating_sub(s).max(0)),
                protocol_version: presence.and_then(|p| p.protocol_version(&t.device_id)),
                live_bytes: t.live_bytes,
                live_truncated: t.live_truncated,
                device_id: t.device_id.clone(),
                hostname: t.hostname.clone(),
                state: t.state.to_string(),
                exit_code: t.exit_code.and_then(|c| i32::try_from(c).ok()),
                refusal_code: t.refusal_code.clone(),
                refusal_reason: t.refusal_reason.clone(),
                output_sha256: t.output_sha256.map(hex::encode),
                stdout: if full { text(&t.stdout) } else { None },
                stderr: if full { text(&t.stderr) } else { None },
                delivered_at: t.delivered_at.map(rfc3339),
                started_at: t.started_at.map(rfc3339),
                finished_at: t.finished_at.map(rfc3339),
                patches: t.patches.as_ref().map(crate::api::views::patch_report),
            })
            .collect(),
        script: full.then(|| String::from_utf8_lossy(&job.script).into_owned()),
        envelope: full.then(|| B64.encode(&job.envelope)),
        challenge: if full {
            signed.as_ref().map(|s| hex::encode(s.digest()))
        } else {
            None
        },
    }
}

/// Does the current policy's quorum hold for this envelope now?
fn quorum_met(signed: &Signed, job: &JobStatement, policy: Option<&Policy>) -> bool {
    policy.is_some_and(|p| check_quorum(signed, job, p, now_secs()).is_ok())
}

/// Submits a job the requester signed on their own machine. It waits as
/// pending until the policy's quorum of signatures is met, then goes to
/// its targets, which check everything again.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/jobs", tag = "jobs",
    params(("tenant" = String, Path, description = "Tenant name")), request_body = JobRequest,
    responses((status = 201, body = JobView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn create_job(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(req): ApiJson<JobRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let tenant = tenant_for(&state, &caller, &tenant, Action::RequestJob).await?;
    let limits = limits();
    let signed = decode_envelope(&req.envelope)?;
    let job: JobStatement = signed
        .statement(&limits)
        .map_err(|e| ApiError::bad_request(format!("not a job statement: {e}")))?;
    job.validate(&limits)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if req.script.len() > MAX_SCRIPT_BYTES {
        return Err(ApiError::bad_request(format!(
            "the script is larger than {MAX_SCRIPT_BYTES} bytes"
        )));
    }
    if job.tenant != tenant.id {
        return Err(ApiError::bad_request(
            "the statement names another tenant (statements name the tenant id)",
        ));
    }
    if job.tenant_name != tenant.name {
        return Err(ApiError::bad_request(format!(
            "the statement names tenant {:?}, this is {:?}",
            job.tenant_name, tenant.name
        )));
    }
    let script_sha256: [u8; 32] = Sha256::digest(req.script.as_bytes()).into();
    match job.action.script_sha256() {
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
    if job.targets.is_empty() {
        return Err(ApiError::bad_request(format!(
            "a job needs 1 to {} targets",
            limits.max_targets
        )));
    }
    let now = now_secs();
    if job.expires_at <= now || job.expires_at <= job.not_before {
        return Err(ApiError::bad_request("the job has already expired"));
    }
    if job.expires_at - job.not_before > limits.max_job_validity_secs {
        return Err(ApiError::bad_request(
            "the job's validity window is too long",
        ));
    }
    if job.timeout_secs == 0 || job.timeout_secs > bulwark_policy::job::MAX_TIMEOUT_SECS {
        return Err(ApiError::bad_request("timeout_secs out of range"));
    }
    // The requester signs with a key registered to their own account.
    let own: Vec<PublicKey> = own_keys(&state, &caller).await?;
    let signed_with: Vec<String> = signed
        .tally(own.iter())
        .valid
        .iter()
        .map(|id| hex::encode(id.0))
        .collect();
    if signed_with.is_empty() {
        return Err(ApiError::bad_request(
            "the job must carry a valid signature by one of your registered signing keys (`bulwark keys register`)",
        ));
    }
    let trust = load_trust(&state, &caller, &tenant).await?;
    trust.require_intact()?;
    let policy = trust.policy();
    if policy.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::NoPolicy,
            "the tenant has no policy yet: run `bulwark tenant init`",
        ));
    }
    // The agents check these again; refusing here saves a round trip.
    let class = policy
        .map(|p| derive_class(&job, p))
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?
        .unwrap_or(job.class);
    check_targets(&state, &caller, &tenant, &job).await?;
    let approved = quorum_met(&signed, &job, policy);
    let id = hex::encode(job.job_id);
    let mut events = vec![
        audit_event(&caller, Some(&tenant.id), AuditAction::JobRequested, &id).with_detail(
            format!(
                "{} on {} device(s): {}",
                class.name(),
                job.targets.len(),
                job.action.describe()
            ),
        ),
    ];
    if approved {
        events.push(audit_event(
            &caller,
            Some(&tenant.id),
            AuditAction::JobApproved,
            &id,
        ));
    }
    let created = state
        .store
        .create_job(
            &NewJob {
                id: id.clone(),
                tenant_id: tenant.id.clone(),
                requested_by: caller.operator.id.clone(),
                class: class.name().to_owned(),
                reason: job.reason.clone(),
                script: req.script.as_bytes().to_vec(),
                script_sha256,
                envelope: signed.to_bytes(),
                signed_sha256: signed.digest(),
                state: if approved {
                    JobState::Approved
                } else {
                    JobState::Pending
                },
                not_before: secs_to_ms(job.not_before),
                expires_at: secs_to_ms(job.expires_at),
                signed_with,
            },
            &job.device_ids().map(str::to_owned).collect::<Vec<_>>(),
            now_millis(),
            &events,
        )
        .await;
    match created {
        Ok(_) => {}
        Err(StoreError::ForeignTarget(target)) => {
            return Err(ApiError::bad_request(format!(
                "{target} is not a device of this tenant"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    if approved {
        for target in job.device_ids() {
            state.presence.nudge_device(target);
        }
    }
    let view = single_job(&state, &caller, &id).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Each target names a device of this tenant by its current host name and
/// (where given) its key: what the agent will check, told at the desk.
pub(super) async fn check_targets(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    job: &JobStatement,
) -> Result<(), ApiError> {
    let devices = state
        .store
        .list_devices(&caller.scope(), &tenant.id)
        .await?;
    for target in &job.targets {
        let Some(device) = devices.iter().find(|d| d.id == target.device_id) else {
            return Err(ApiError::bad_request(format!(
                "{} is not a device of this tenant",
                target.device_id
            )));
        };
        if !same_hostname(&device.hostname, &target.hostname) {
            return Err(ApiError::bad_request(format!(
                "device {} is called {:?}, not {:?}: its agent would refuse the job",
                device.id, device.hostname, target.hostname
            )));
        }
        if let Some(key) = target.device_key
            && <[u8; 32]>::from(Sha256::digest(&device.public_key)) != key
        {
            return Err(ApiError::bad_request(format!(
                "device {} has another key than the job names",
                device.id
            )));
        }
    }
    Ok(())
}

pub(super) fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000)
}

async fn single_job(state: &AppState, caller: &Caller, id: &str) -> Result<JobView, ApiError> {
    let (job, tenant_id) = job_in_scope(state, caller, id, Action::ViewJobs).await?;
    let targets = state.store.job_targets(&caller.scope(), &job.id).await?;
    let set = state
        .store
        .trust_statements(&caller.scope(), &tenant_id)
        .await?;
    let trust = TenantTrust::load(&tenant_id, &set);
    Ok(job_view(
        &job,
        &targets,
        trust.policy(),
        true,
        Some(&state.presence),
    ))
}

async fn job_in_scope(
    state: &AppState,
    caller: &Caller,
    id: &str,
    action: Action,
) -> Result<(JobRow, String), ApiError> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::not_found("job"));
    }
    let job = state
        .store
        .job(&caller.scope(), &id.to_ascii_lowercase())
        .await?
        .ok_or_else(|| ApiError::not_found("job"))?;
    caller.require_in(action, &job.tenant_id)?;
    let tenant_id = job.tenant_id.clone();
    Ok((job, tenant_id))
}

/// A tenant's jobs, newest first.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/jobs", tag = "jobs",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, body = [JobView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list_jobs(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<Vec<JobView>>, ApiError> {
    let tenant = tenant_for(&state, &caller, &tenant, Action::ViewJobs).await?;
    Ok(Json(job_views(&state, &caller, &tenant).await?))
}

pub async fn job_views(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
) -> Result<Vec<JobView>, ApiError> {
    let scope = caller.scope();
    let trust = load_trust(state, caller, tenant).await?;
    let policy = trust.policy();
    let jobs = state.store.list_jobs(&scope, &tenant.id, 200).await?;
    let mut views = Vec::with_capacity(jobs.len());
    for job in jobs {
        let targets = state.store.job_targets(&scope, &job.id).await?;
        views.push(job_view(
            &job,
            &targets,
            policy,
            false,
            Some(&state.presence),
        ));
    }
    Ok(views)
}

/// One job: the exact script, every signature and each target's result.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "Job id (32 hex characters)")),
    responses((status = 200, body = JobView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn get_job(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(single_job(&state, &caller, &id).await?))
}

/// The approval passkey's assertion, decoded and size-capped.
fn decode_webauthn_approval(approval: &WebAuthnApproval) -> Result<WebAuthnSignature, ApiError> {
    use bulwark_policy::webauthn as w;
    Ok(WebAuthnSignature {
        authenticator_data: base64url_field(
            "authenticator_data",
            &approval.authenticator_data,
            w::MAX_AUTHENTICATOR_DATA,
        )?,
        client_data_json: base64url_field(
            "client_data_json",
            &approval.client_data_json,
            w::MAX_CLIENT_DATA_JSON,
        )?,
        signature: base64url_field("signature", &approval.signature, w::MAX_SIGNATURE)?,
    })
}

/// Adds the caller's signature to a pending job: an Ed25519 signature or an
/// approval passkey's assertion, both made by the approver's own `bulwark
/// job approve`. The job goes out once the policy's quorum is met.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/approvals", tag = "jobs",
    params(("id" = String, Path, description = "Job id (32 hex characters)")), request_body = ApprovalRequest,
    responses((status = 200, body = JobView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn approve_job(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<ApprovalRequest>,
) -> Result<Json<JobView>, ApiError> {
    let (job, tenant_id) = job_in_scope(&state, &caller, &id, Action::ApproveJob).await?;
    if job.state != JobState::Pending {
        return Err(ApiError::conflict(format!("the job is {}", job.state)));
    }
    if job.requested_by == caller.operator.id {
        return Err(ApiError::conflict(
            "the requester cannot approve their own job: another person must",
        ));
    }
    let limits = limits();
    let mut signed = Signed::from_bytes(&job.envelope, &limits).map_err(ApiError::internal)?;
    let statement: JobStatement = signed.statement(&limits).map_err(ApiError::internal)?;
    let key_id = parse_key_id(&req.key_id)?;
    let own = own_keys(&state, &caller).await?;
    let signer = own.iter().find(|k| k.id() == key_id).ok_or_else(|| {
        ApiError::bad_request(
            "key_id is not one of your registered signing keys or approval passkeys \
             (console sign-in passkeys never approve jobs)",
        )
    })?;
    if signed.signatures.iter().any(|e| e.key_id == key_id) {
        return Err(ApiError::conflict("this key has already signed the job"));
    }
    // One more would make an envelope the agents refuse as too large.
    if signed.signatures.len() >= limits.max_signatures {
        return Err(ApiError::conflict(format!(
            "the job already carries {} signatures, the most an envelope may hold",
            limits.max_signatures
        )));
    }
    match (&req.signature, &req.webauthn, signer) {
        (Some(signature), None, PublicKey::Ed25519(_)) => {
            let signature: [u8; 64] = base64_field("signature", signature)?
                .try_into()
                .map_err(|_| ApiError::bad_request("signature must be 64 bytes"))?;
            signed.signatures.push(SignatureEntry {
                key_id,
                signature,
                webauthn: None,
            });
        }
        (None, Some(webauthn), PublicKey::WebAuthn(credential)) => {
            // The agent checks all of this again; this check only keeps a
            // bad approval from being stored and counted here, and says why.
            let assertion = decode_webauthn_approval(webauthn)?;
            assertion
                .verify(credential, &signed.approval_challenge(), true)
                .map_err(|e| {
                    ApiError::bad_request(format!("the passkey approval does not verify: {e}"))
                })?;
            signed.add_webauthn(key_id, assertion);
        }
        (Some(_), None, _) => {
            return Err(ApiError::bad_request(
                "key_id names a passkey: send `webauthn` (an assertion), not `signature`",
            ));
        }
        (None, Some(_), _) => {
            return Err(ApiError::bad_request(
                "key_id names an Ed25519 key: send `signature`, not `webauthn`",
            ));
        }
        _ => {
            return Err(ApiError::bad_request(
                "send exactly one of `signature` (Ed25519) and `webauthn` (a passkey assertion)",
            ));
        }
    }
    if signed.tally(std::iter::once(signer)).valid.is_empty() {
        return Err(ApiError::bad_request(
            "the signature does not verify over this job's envelope",
        ));
    }
    let set = state
        .store
        .trust_statements(&caller.scope(), &tenant_id)
        .await?;
    let trust = TenantTrust::load(&tenant_id, &set);
    let policy = trust.policy();
    state
        .store
        .record_approval(
            &job.id,
            &caller.operator.id,
            &hex::encode(key_id.0),
            &job.envelope,
            &signed.to_bytes(),
            now_millis(),
            &[audit_event(
                &caller,
                Some(&tenant_id),
                AuditAction::JobSigned,
                &job.id,
            )],
        )
        .await?;
    if quorum_met(&signed, &statement, policy)
        && state
            .store
            .set_job_state(
                &job.id,
                JobState::Approved,
                Some(&caller.operator.id),
                None,
                now_millis(),
                &[audit_event(
                    &caller,
                    Some(&tenant_id),
                    AuditAction::JobApproved,
                    &job.id,
                )],
            )
            .await?
    {
        for target in statement.device_ids() {
            state.presence.nudge_device(target);
        }
    }
    Ok(Json(single_job(&state, &caller, &job.id).await?))
}

/// Rejects a pending job; it will never be delivered.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/reject", tag = "jobs",
    params(("id" = String, Path, description = "Job id (32 hex characters)")), request_body = RejectRequest,
    responses((status = 200, body = JobView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn reject_job(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<RejectRequest>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(reject(&state, &caller, &id, &req.reason).await?))
}

/// Rejects a pending job (the API route and the console's form).
pub async fn reject(
    state: &AppState,
    caller: &Caller,
    id: &str,
    reason: &str,
) -> Result<JobView, ApiError> {
    let (job, tenant_id) = job_in_scope(state, caller, id, Action::ApproveJob).await?;
    let reason = reason.trim();
    if reason.is_empty() || reason.len() > 1000 {
        return Err(ApiError::bad_request("reason must be 1 to 1000 characters"));
    }
    if !state
        .store
        .set_job_state(
            &job.id,
            JobState::Rejected,
            Some(&caller.operator.id),
            Some(reason),
            now_millis(),
            &[audit_event(
                caller,
                Some(&tenant_id),
                AuditAction::JobRejected,
                &job.id,
            )],
        )
        .await?
    {
        return Err(ApiError::conflict(format!("the job is {}", job.state)));
    }
    single_job(state, caller, &job.id).await
}

/// One job for the console: its view and its tenant id (for the caller's
/// role there).
pub async fn job_for_console(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<(JobView, String), ApiError> {
    let (_, tenant_id) = job_in_scope(state, caller, id, Action::ViewJobs).await?;
    Ok((single_job(state, caller, id).await?, tenant_id))
}

/// Cancels a job: devices not sent it yet never get it; devices running it
/// are sent a cancel (protocol version 3 and later: an older agent runs it
/// to its end). Whoever may run jobs may cancel them; privileged (a fresh
/// MFA check), recorded in the tenant's log before it takes effect.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, description = "Job id (32 hex characters)")), request_body = CancelRequest,
    responses((status = 200, body = JobView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn cancel_job(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<CancelRequest>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(cancel(&state, &caller, &id, &req.reason).await?))
}

/// Cancels a job (the API route and the console's form).
pub async fn cancel(
    state: &AppState,
    caller: &Caller,
    id: &str,
    reason: &str,
) -> Result<JobView, ApiError> {
    let (job, tenant_id) = job_in_scope(state, caller, id, Action::CancelJob).await?;
    let reason = reason.trim();
    if reason.is_empty() || reason.len() > 1000 {
        return Err(ApiError::bad_request("reason must be 1 to 1000 characters"));
    }
    let event = audit_event(caller, Some(&tenant_id), AuditAction::JobCancelled, &job.id)
        .with_detail(format!("by {}: {reason}", caller.operator.username));
    let cancelled = state
        .store
        .cancel_job(&job.id, &caller.operator.id, reason, now_millis(), &[event])
        .await?;
    // Each device running it is told now (its session sends the cancel).
    for device in &cancelled.delivered {
        state.presence.nudge_device(device);
    }
    single_job(state, caller, &job.id).await
}

/// Most pieces one call returns.
const OUTPUT_PAGE: i64 = 256;

/// A job's live output on one device, after a cursor: poll it while the
/// job runs (`bulwark job show --follow`, the console's job page).
#[utoipa::path(get, path = "/api/v1/jobs/{id}/output", tag = "jobs",
    params(("id" = String, Path, description = "Job id (32 hex characters)"), bulwark_api::jobs::OutputQuery),
    responses((status = 200, body = JobOutputView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn job_output(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    q: Result<
        axum::extract::Query<bulwark_api::jobs::OutputQuery>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<Json<JobOutputView>, ApiError> {
    let query = super::log::query(q)?;
    Ok(Json(
        output(&state, &caller, &id, &query.device, query.after).await?,
    ))
}

/// [`job_output`] for the API and the console's JSON.
pub async fn output(
    state: &AppState,
    caller: &Caller,
    id: &str,
    device: &str,
    after: Option<i64>,
) -> Result<JobOutputView, ApiError> {
    let (job, _) = job_in_scope(state, caller, id, Action::ViewJobs).await?;
    if after.is_some_and(|a| a < 0) {
        return Err(ApiError::bad_request("after must be 0 or more"));
    }
    let scope = caller.scope();
    let targets = state.store.job_targets(&scope, &job.id).await?;
    let statuses: Vec<TargetStatus> = targets
        .iter()
        .map(|t| status_of(&job, t, Some(&state.presence)))
        .collect();
    let (target, status) = targets
        .iter()
        .zip(&statuses)
        .find(|(t, _)| t.device_id == device)
        .ok_or_else(|| ApiError::not_found("job target"))?;
    let chunks = state
        .store
        .job_output(&scope, &job.id, Some(device), after, OUTPUT_PAGE)
        .await?;
    let next = chunks.last().map(|c| c.seq).or(after);
    Ok(JobOutputView {
        job_id: job.id.clone(),
        device_id: target.device_id.clone(),
        status: *status,
        job_status: job_status(job.state.as_str(), job.cancelled_at.is_some(), &statuses),
        chunks: chunks
            .into_iter()
            .map(|c| OutputChunkView {
                seq: c.seq,
                stream: if c.stream == "stderr" {
                    OutputStreamView::Stderr
                } else {
                    OutputStreamView::Stdout
                },
                text: String::from_utf8_lossy(&c.data).into_owned(),
                skipped: c.skipped,
            })
            .collect(),
        next,
        truncated_bytes: target.live_truncated,
        agent_too_old: state
            .presence
            .protocol_version(device)
            .is_some_and(|v| v < 3),
    })
}
