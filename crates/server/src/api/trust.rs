//! A tenant's trust state (its root history, policy and freeze) and
//! publishing a signed statement that changes it (RFD 0002).
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
use bulwark_api::trust::{EnvelopeRequest, TrustView};
use bulwark_policy::root::root_fingerprint;
use bulwark_policy::{FreezeState, Limits, Refusal, Signed, TrustHistory, TrustOutcome, TrustRoot};
use bulwark_store::AuditAction;
use bulwark_store::{Tenant, TrustKind, TrustSet};

use super::error::ApiError;
use super::refusals::base64_field;
use super::tenants::tenant_for;
use super::{ApiJson, ApiPath, audit_event};
use crate::auth::{Action, Caller};
use crate::state::AppState;
use crate::{now_millis, rfc3339};

pub(crate) fn limits() -> Limits {
    Limits::default()
}

pub(crate) fn now_secs() -> u64 {
    u64::try_from(now_millis() / 1000).unwrap_or_default()
}

pub(crate) fn decode_envelope(text: &str) -> Result<Signed, ApiError> {
    let bytes = base64_field("envelope", text)?;
    Signed::from_bytes(&bytes, &limits())
        .map_err(|e| ApiError::bad_request(format!("the envelope is not valid: {e}")))
}

pub(crate) fn refused(what: &str, refusal: &Refusal) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::Refused,
        format!("{what} refused ({}): {refusal}", refusal.code()),
    )
}

/// A tenant's trust as storage holds it, replayed with the agents' rules.
pub struct TenantTrust {
    pub roots: Vec<Signed>,
    /// What verifies of it: the one replay agents, the CLI and auditors use.
    pub history: TrustHistory,
    /// The latest freeze statement as stored (shown even if it does not verify).
    pub freeze: Option<Signed>,
    /// The kill switch as shown: a stored freeze that does not verify shows
    /// the tenant frozen, the safe side.
    pub freeze_state: FreezeState,
    /// What in storage no longer verifies (a row edited behind the server's
    /// back). Shown to people, never used: agents refuse it too.
    pub problems: Vec<String>,
}

impl std::ops::Deref for TenantTrust {
    type Target = TrustHistory;

    fn deref(&self) -> &TrustHistory {
        &self.history
    }
}

impl TenantTrust {
    /// Replays what storage holds. A statement that does not verify is left
    /// out and named in `problems`, so operators still see their jobs and
    /// the reason nothing new can be published.
    pub fn load(tenant_id: &str, set: &TrustSet) -> TenantTrust {
        let limits = limits();
        let mut problems = Vec::new();
        let mut parse = |bytes: &[u8], what: &str| {
            Signed::from_bytes(bytes, &limits)
                .map_err(|e| problems.push(format!("the stored {what} is unreadable: {e}")))
                .ok()
        };
        let roots: Vec<Signed> = set
            .roots
            .iter()
            .filter_map(|b| parse(b, "trust root"))
            .collect();
        let policy = set.policy.as_ref().and_then(|(_, b)| parse(b, "policy"));
        let freeze = set
            .freeze
            .as_ref()
            .and_then(|(_, b)| parse(b, "freeze statement"));
        let (history, refused) = TrustHistory::replay(
            tenant_id,
            None,
            &roots,
            policy.as_ref(),
            freeze.as_ref(),
            &limits,
        );
        let mut freeze_state = history.freeze();
        for outcome in &refused {
            if let TrustOutcome::Refused { kind, refusal, .. } = outcome {
                // A policy or freeze left unchecked for want of a root is
                // named by the root's own problem.
                if *refusal == Refusal::NoRoot && !roots.is_empty() {
                    continue;
                }
                problems.push(format!(
                    "the stored {} does not verify: {refusal}",
                    match kind {
                        TrustKind::Root => "trust roots",
                        TrustKind::Policy => "policy",
                        TrustKind::Freeze => "freeze statement",
                    }
                ));
            }
        }
        if freeze.is_some() && history.freeze_signed().is_none() && history.root().is_some() {
            freeze_state = FreezeState {
                sequence: 0,
                frozen: true,
            };
        }
        for problem in &problems {
            tracing::warn!(
                tenant_id,
                problem,
                "SECURITY ALERT: stored trust statements do not verify."
            );
        }
        TenantTrust {
            roots,
            history,
            freeze,
            freeze_state,
            problems,
        }
    }

    /// Refuses to build on a history that does not verify.
    pub fn require_intact(&self) -> Result<(), ApiError> {
        match self.problems.first() {
            None => Ok(()),
            Some(problem) => Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::TrustBroken,
                format!(
                    "{problem}; agents refuse it too: restore the statement or rotate the root"
                ),
            )),
        }
    }

    pub fn fingerprint(&self) -> Option<[u8; 32]> {
        self.roots.first().map(root_fingerprint)
    }
}

pub(crate) async fn load_trust(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
) -> Result<TenantTrust, ApiError> {
    let set = state
        .store
        .trust_statements(&caller.scope(), &tenant.id)
        .await?;
    Ok(TenantTrust::load(&tenant.id, &set))
}

/// The root fingerprint for enrolment tokens; 409 when the tenant has no root yet.
pub async fn root_fingerprint_for(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
) -> Result<[u8; 32], ApiError> {
    load_trust(state, caller, tenant)
        .await?
        .fingerprint()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::NoTrustRoot,
                format!(
                    "tenant {} has no trust root yet: run `bulwark tenant init --tenant {}` first",
                    tenant.name, tenant.name
                ),
            )
        })
}

/// A tenant's trust state as the API shows it.
pub(crate) fn trust_view(tenant_id: &str, trust: &TenantTrust) -> TrustView {
    TrustView {
        tenant_id: tenant_id.to_owned(),
        root_fingerprint: trust.fingerprint().map(hex::encode),
        root_version: trust.root().map(|r| r.version),
        root_threshold: trust.root().map(|r| r.threshold),
        policy_version: trust.policy().map(|p| p.version),
        policy_expires_at: trust
            .policy()
            .map(|p| rfc3339(i64::try_from(p.expires_at).unwrap_or(i64::MAX / 1000) * 1000)),
        frozen: trust.freeze_state.frozen,
        freeze_sequence: trust.freeze_state.sequence,
        roots: trust
            .roots
            .iter()
            .map(|s| B64.encode(s.to_bytes()))
            .collect(),
        policy: trust.policy_signed().map(|s| B64.encode(s.to_bytes())),
        freeze: trust.freeze.as_ref().map(|s| B64.encode(s.to_bytes())),
        problems: trust.problems.clone(),
    }
}

/// A tenant's trust root history, current policy and freeze state.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/trust", tag = "trust",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, body = TrustView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn get_trust(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<TrustView>, ApiError> {
    let tenant = tenant_for(&state, &caller, &tenant, Action::ViewTrust).await?;
    let trust = load_trust(&state, &caller, &tenant).await?;
    Ok(Json(trust_view(&tenant.id, &trust)))
}

/// The checks a statement must pass before it is stored, whichever way it
/// came (a publish route, or the last signature on a proposal): the ones an
/// agent makes. Returns its version and the audit action of publishing it.
pub(crate) fn check_statement(
    trust: &TenantTrust,
    tenant: &Tenant,
    kind: TrustKind,
    signed: &Signed,
) -> Result<(u64, AuditAction), ApiError> {
    let limits = limits();
    let mut next = match trust.root() {
        // The first root pins itself: whoever publishes it is trusted once
        // (the CLI that made it pinned its fingerprint at `tenant init`).
        None if kind == TrustKind::Root => {
            TrustHistory::new(root_fingerprint(signed), Some(&tenant.id))
        }
        _ => trust.history.clone(),
    };
    let outcome = match kind {
        TrustKind::Root => next.apply_root(signed, &limits),
        TrustKind::Policy => next.apply_policy(signed, Some(now_secs()), &limits),
        TrustKind::Freeze => next.apply_freeze(signed, &limits),
    };
    match outcome {
        TrustOutcome::Accepted { version, .. } => Ok((
            version,
            match kind {
                TrustKind::Root => AuditAction::TrustRootPublished,
                TrustKind::Policy => AuditAction::TrustPolicyPublished,
                TrustKind::Freeze if next.freeze().frozen => AuditAction::TrustFrozen,
                TrustKind::Freeze => AuditAction::TrustUnfrozen,
            },
        )),
        TrustOutcome::Refused {
            refusal: Refusal::NoRoot,
            ..
        } => Err(no_root()),
        TrustOutcome::Refused { refusal, .. } => Err(refused(
            match (kind, trust.root()) {
                (TrustKind::Root, None) => "root",
                (TrustKind::Root, Some(_)) => "root rotation",
                (TrustKind::Policy, _) => "policy",
                (TrustKind::Freeze, _) => "freeze statement",
            },
            &refusal,
        )),
    }
}

/// The audit event of a publication, recorded with the statement.
pub(crate) fn published_event(
    caller: &Caller,
    tenant: &Tenant,
    version: u64,
    action: AuditAction,
) -> bulwark_store::NewAuditEvent {
    audit_event(
        caller,
        Some(&tenant.id),
        action,
        &format!("{} v{version}", tenant.name),
    )
}

/// Checks and stores a statement brought to a publish route.
async fn publish_statement(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    kind: TrustKind,
    signed: &Signed,
) -> Result<Json<TrustView>, ApiError> {
    let trust = load_trust(state, caller, tenant).await?;
    trust.require_intact()?;
    let (version, action) = check_statement(&trust, tenant, kind, signed)?;
    state
        .store
        .add_trust_statement(
            &tenant.id,
            kind,
            version,
            &signed.to_bytes(),
            Some(&caller.operator.id),
            now_millis(),
            &[published_event(caller, tenant, version, action)],
        )
        .await?;
    state.presence.nudge_tenant(&tenant.id);
    let trust = load_trust(state, caller, tenant).await?;
    Ok(Json(trust_view(&tenant.id, &trust)))
}

/// Publishes a tenant's first root (self-signed by its threshold) or a root
/// rotation (signed by the threshold of the current root and of the new one).
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/trust/roots", tag = "trust",
    params(("tenant" = String, Path, description = "Tenant name")), request_body = EnvelopeRequest,
    responses((status = 201, body = TrustView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn publish_root(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(req): ApiJson<EnvelopeRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let tenant = tenant_for(&state, &caller, &tenant, Action::ManageTrust).await?;
    let signed = decode_envelope(&req.envelope)?;
    let trust = load_trust(&state, &caller, &tenant).await?;
    // A forged or under-signed rotation is refused as such first.
    check_statement(&trust, &tenant, TrustKind::Root, &signed)?;
    refuse_orphaning_rotation(&trust, &signed, false, false)?;
    let view = publish_statement(&state, &caller, &tenant, TrustKind::Root, &signed).await?;
    Ok((StatusCode::CREATED, view))
}

/// A root rotation must not leave the stored policy or freeze statement
/// unverifiable under the new root: new agents would get no policy, and the
/// server would refuse every later change (`trust_broken`). They are
/// re-signed under both roots first (`bulwark tenant rotate-root` does it),
/// or travel with the rotation as a proposal's companions.
pub(crate) fn refuse_orphaning_rotation(
    trust: &TenantTrust,
    rotation: &Signed,
    policy_companion: bool,
    freeze_companion: bool,
) -> Result<(), ApiError> {
    let limits = limits();
    let (Some(_), Ok(next)) = (trust.root(), rotation.statement::<TrustRoot>(&limits)) else {
        return Ok(()); // a first root, or not a root: other checks answer
    };
    let threshold_of_next = |signed: &Signed| {
        signed
            .tally(next.public_keys())
            .require(next.threshold())
            .is_ok()
    };
    let orphaned_policy = !policy_companion
        && trust
            .policy_signed()
            .is_some_and(|signed| !threshold_of_next(signed));
    let orphaned_freeze = !freeze_companion
        && trust.freeze.as_ref().is_some_and(|signed| {
            FreezeState::default()
                .apply(&next, signed, &limits)
                .is_err()
        });
    if orphaned_policy || orphaned_freeze {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::RotationOrphansTrust,
            format!(
                "root v{} would not verify the tenant's current {}: re-sign it under both the                  current and the new root first (`bulwark tenant rotate-root` does this)",
                next.version,
                if orphaned_policy {
                    "policy"
                } else {
                    "freeze statement"
                }
            ),
        ));
    }
    Ok(())
}

/// Publishes a new policy, signed by the root threshold; versions only move forward.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/trust/policy", tag = "trust",
    params(("tenant" = String, Path, description = "Tenant name")), request_body = EnvelopeRequest,
    responses((status = 201, body = TrustView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn publish_policy(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(req): ApiJson<EnvelopeRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let tenant = tenant_for(&state, &caller, &tenant, Action::ManageTrust).await?;
    let signed = decode_envelope(&req.envelope)?;
    let view = publish_statement(&state, &caller, &tenant, TrustKind::Policy, &signed).await?;
    Ok((StatusCode::CREATED, view))
}

pub(crate) fn no_root() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        ErrorCode::NoTrustRoot,
        "the tenant has no trust root yet: run `bulwark tenant init` first",
    )
}

/// Pulls or releases the kill switch: a freeze signed by one customer root
/// key (or the root threshold), an unfreeze signed by the root threshold.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/trust/freeze", tag = "trust",
    params(("tenant" = String, Path, description = "Tenant name")), request_body = EnvelopeRequest,
    responses((status = 201, body = TrustView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn publish_freeze(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(req): ApiJson<EnvelopeRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let tenant = tenant_for(&state, &caller, &tenant, Action::FreezeTenant).await?;
    let signed = decode_envelope(&req.envelope)?;
    let view = publish_statement(&state, &caller, &tenant, TrustKind::Freeze, &signed).await?;
    Ok((StatusCode::CREATED, view))
}
