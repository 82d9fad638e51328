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
use bulwark_policy::envelope::SignatureEntry;
use bulwark_policy::root::root_fingerprint;
use bulwark_policy::webauthn::WebAuthnSignature;
use bulwark_policy::{
    APPROVAL_RP_ID, FreezeState, JobStatement, KeyId, Limits, Policy, PublicKey, Refusal, Signed,
    TrustHistory, TrustOutcome, TrustRoot, check_quorum, derive_class, quorum_progress,
    same_hostname,
};
use bulwark_store::{
    Job as JobRow, JobState, JobTarget as JobTargetRow, NewJob, NewSigningKey, SigningKeyKind,
    StoreError, Tenant, TrustKind, TrustSet,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::refusals::{base64_field, base64url_field};
use super::{ApiJson, ApiPath, audit_event};
use crate::auth::{Action, Caller};
use crate::state::AppState;
use crate::{now_millis, rfc3339};

/// Largest script a job may carry (the agent's limit is the same).
pub const MAX_SCRIPT_BYTES: usize = 256 * 1024;

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
        "refused",
        format!("{what} refused ({}): {refusal}", refusal.code()),
    )
}

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

/// A tenant's trust as storage holds it, replayed with the agents' rules.
pub struct Trust {
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

impl std::ops::Deref for Trust {
    type Target = TrustHistory;

    fn deref(&self) -> &TrustHistory {
        &self.history
    }
}

impl Trust {
    /// Replays what storage holds. A statement that does not verify is left
    /// out and named in `problems`, so operators still see their jobs and
    /// the reason nothing new can be published.
    pub fn load(tenant_id: &str, set: &TrustSet) -> Trust {
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
        Trust {
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
                "trust_broken",
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
) -> Result<Trust, ApiError> {
    let set = state
        .store
        .trust_statements(&caller.scope(), &tenant.id)
        .await?;
    Ok(Trust::load(&tenant.id, &set))
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
                "no_trust_root",
                format!(
                    "tenant {} has no trust root yet: run `bulwark tenant init --tenant {}` first",
                    tenant.name, tenant.name
                ),
            )
        })
}

#[derive(Serialize, ToSchema)]
pub struct TrustView {
    pub tenant_id: String,
    /// SHA-256 of the first root's payload (hex): what agents pin.
    pub root_fingerprint: Option<String>,
    pub root_version: Option<u64>,
    pub root_threshold: Option<u32>,
    pub policy_version: Option<u64>,
    /// RFC 3339.
    pub policy_expires_at: Option<String>,
    pub frozen: bool,
    pub freeze_sequence: u64,
    /// Every root envelope, oldest first (base64 of canonical CBOR).
    pub roots: Vec<String>,
    pub policy: Option<String>,
    pub freeze: Option<String>,
    /// Stored statements that do not verify (a security alert).
    pub problems: Vec<String>,
}

impl TrustView {
    pub(crate) fn new(tenant_id: &str, trust: &Trust) -> Self {
        Self {
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
    Ok(Json(TrustView::new(&tenant.id, &trust)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeRequest {
    /// A signed statement: base64 of its canonical CBOR envelope.
    pub envelope: String,
}

/// The checks a statement must pass before it is stored, whichever way it
/// came (a publish route, or the last signature on a proposal): the ones an
/// agent makes. Returns its version and the audit action of publishing it.
pub(crate) fn check_statement(
    trust: &Trust,
    tenant: &Tenant,
    kind: TrustKind,
    signed: &Signed,
) -> Result<(u64, &'static str), ApiError> {
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
                TrustKind::Root => "trust.root_published",
                TrustKind::Policy => "trust.policy_published",
                TrustKind::Freeze if next.freeze().frozen => "trust.frozen",
                TrustKind::Freeze => "trust.unfrozen",
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
    action: &str,
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
    Ok(Json(TrustView::new(&tenant.id, &trust)))
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
    trust: &Trust,
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
            "rotation_orphans_trust",
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
        "no_trust_root",
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

// ---- operators' public signing keys ----

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyRequest {
    /// A name the operator recognises ("laptop"): at most 64 characters, no
    /// control characters, not only spaces.
    #[schema(
        max_length = 64,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub name: String,
    /// Ed25519 public key, base64 of its 32 bytes.
    pub public_key: Option<String>,
    /// Or an approval passkey: base64 of the canonical CBOR of its
    /// `WebAuthnCredential` (RP id `bulwark-approve.localhost`, public key),
    /// as the operator's `bulwark keys add-passkey` read it from the
    /// authenticator.
    pub webauthn_credential: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SigningKeyView {
    /// SHA-256 of the key's canonical encoding (hex): how signatures name it.
    pub key_id: String,
    pub name: String,
    pub kind: String,
    /// Base64 of the canonical CBOR of the public key.
    pub public_key: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl From<bulwark_store::SigningKey> for SigningKeyView {
    fn from(k: bulwark_store::SigningKey) -> Self {
        Self {
            key_id: k.key_id,
            name: k.name,
            kind: k.kind.to_string(),
            public_key: B64.encode(&k.public_key),
            created_at: rfc3339(k.created_at),
            revoked_at: k.revoked_at.map(rfc3339),
        }
    }
}

/// Registers the public half of one of the caller's signing keys (made on
/// the operator's own machine by `bulwark keys new`; the private half never
/// comes here).
#[utoipa::path(post, path = "/api/v1/signing-keys", tag = "trust", request_body = SigningKeyRequest,
    responses((status = 201, body = SigningKeyView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn register_signing_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<SigningKeyRequest>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Action::ManageOwnSigningKeys)?;
    let name = req.name.trim();
    if name.is_empty() || req.name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "name must be 1 to 64 printable characters",
        ));
    }
    let (key, kind) = match (&req.public_key, &req.webauthn_credential) {
        (Some(public_key), None) => {
            let bytes: [u8; 32] = base64_field("public_key", public_key)?
                .try_into()
                .map_err(|_| ApiError::bad_request("public_key must be 32 bytes (Ed25519)"))?;
            if ed25519_dalek::VerifyingKey::from_bytes(&bytes).is_err() {
                return Err(ApiError::bad_request("public_key is not an Ed25519 point"));
            }
            (PublicKey::Ed25519(bytes), SigningKeyKind::Ed25519)
        }
        (None, Some(credential)) => {
            let bytes = base64_field("webauthn_credential", credential)?;
            let credential = bulwark_protocol::codec::from_canonical::<
                bulwark_policy::webauthn::WebAuthnCredential,
            >(&bytes)
            .map_err(|e| {
                ApiError::bad_request(format!("webauthn_credential is not a credential: {e}"))
            })?;
            if credential.rp_id != APPROVAL_RP_ID {
                return Err(ApiError::bad_request(format!(
                    "an approval passkey has RP id {APPROVAL_RP_ID:?} (made by `bulwark keys \
                     add-passkey`), not {:?}",
                    credential.rp_id
                )));
            }
            (PublicKey::WebAuthn(credential), SigningKeyKind::Webauthn)
        }
        _ => {
            return Err(ApiError::bad_request(
                "send exactly one of `public_key` (Ed25519) and `webauthn_credential` (an approval passkey)",
            ));
        }
    };
    let key_id = hex::encode(key.id().0);
    let row = state
        .store
        .add_signing_key(
            &NewSigningKey {
                key_id: key_id.clone(),
                operator_id: caller.operator.id.clone(),
                name: name.to_owned(),
                kind,
                public_key: bulwark_protocol::codec::to_canonical(&key),
            },
            now_millis(),
            &[audit_event(
                &caller,
                None,
                "signing_key.registered",
                &key_id,
            )],
        )
        .await?;
    Ok((StatusCode::CREATED, Json(SigningKeyView::from(row))))
}

/// The caller's own registered signing keys.
#[utoipa::path(get, path = "/api/v1/signing-keys", tag = "trust",
    responses((status = 200, body = [SigningKeyView]), (status = 401, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list_signing_keys(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<SigningKeyView>>, ApiError> {
    caller.require(Action::ManageOwnSigningKeys)?;
    let keys = state.store.signing_keys_of(&caller.operator.id).await?;
    Ok(Json(keys.into_iter().map(SigningKeyView::from).collect()))
}

// ---- jobs ----

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// The signed job statement: base64 of its canonical CBOR envelope.
    pub envelope: String,
    /// The script body whose SHA-256 the statement names.
    pub script: String,
}

#[derive(Serialize, ToSchema)]
pub struct QuorumView {
    pub have: usize,
    pub need: usize,
    pub customer_required: bool,
    pub customer_signed: bool,
}

#[derive(Serialize, ToSchema)]
pub struct SignerView {
    pub key_id: String,
    /// The policy's name for the key, when the current policy lists it.
    pub name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct JobTargetView {
    pub device_id: String,
    pub hostname: String,
    /// waiting, delivered, succeeded, failed, timed_out or refused.
    pub state: String,
    pub exit_code: Option<i32>,
    pub refusal_code: Option<String>,
    pub refusal_reason: Option<String>,
    pub output_sha256: Option<String>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    /// When the server first sent the job to the device.
    pub delivered_at: Option<String>,
    /// The agent's clock: when the script started and ended.
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct JobView {
    /// The job id (32 hex characters).
    pub id: String,
    pub tenant: String,
    pub class: String,
    /// What the job does, from its signed statement ("run a bash script, sha256 …").
    pub action: Option<String>,
    pub reason: String,
    pub requested_by: String,
    pub script_sha256: String,
    /// pending, approved, rejected or expired.
    pub state: String,
    pub quorum: Option<QuorumView>,
    pub signers: Vec<SignerView>,
    pub not_before: String,
    pub expires_at: String,
    pub created_at: String,
    /// When the quorum was met (or the job rejected or expired).
    pub decided_at: Option<String>,
    pub timeout_secs: u32,
    pub decision_note: Option<String>,
    pub targets: Vec<JobTargetView>,
    /// Only on a single job: the exact script text.
    pub script: Option<String>,
    /// Only on a single job: the envelope with every signature (base64).
    pub envelope: Option<String>,
    /// Only on a single job: SHA-256 of the envelope's signing bytes (hex),
    /// which the job's `job.released` log entry names.
    pub challenge: Option<String>,
}

fn text(bytes: &Option<Vec<u8>>) -> Option<String> {
    bytes
        .as_ref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

pub fn job_view(
    job: &JobRow,
    targets: &[JobTargetRow],
    policy: Option<&Policy>,
    full: bool,
) -> JobView {
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
    JobView {
        id: job.id.clone(),
        tenant: job.tenant_name.clone(),
        class: job.class.clone(),
        action: statement.as_ref().map(|j| j.action.describe()),
        reason: job.reason.clone(),
        requested_by: job.requested_by_username.clone(),
        script_sha256: hex::encode(job.script_sha256),
        state: job.state.to_string(),
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
            .map(|t| JobTargetView {
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
            "no_policy",
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
        audit_event(&caller, Some(&tenant.id), "job.requested", &id).with_detail(format!(
            "{} on {} device(s): {}",
            class.name(),
            job.targets.len(),
            job.action.describe()
        )),
    ];
    if approved {
        events.push(audit_event(&caller, Some(&tenant.id), "job.approved", &id));
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
async fn check_targets(
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

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000)
}

/// The caller's unrevoked signing keys: Ed25519 keys and approval passkeys
/// (RP id [`APPROVAL_RP_ID`]), both registered by the operator's `bulwark`
/// (`keys register`, `keys add-passkey`). The console's sign-in passkeys
/// are not among them: no credential a server page can use approves a job.
pub async fn own_keys(state: &AppState, caller: &Caller) -> Result<Vec<PublicKey>, ApiError> {
    let registered = state.store.signing_keys_of(&caller.operator.id).await?;
    Ok(registered
        .iter()
        .filter(|k| k.revoked_at.is_none())
        .filter_map(|k| bulwark_protocol::codec::from_canonical::<PublicKey>(&k.public_key).ok())
        .filter(|key| match key {
            PublicKey::WebAuthn(credential) => credential.rp_id == APPROVAL_RP_ID,
            _ => true,
        })
        .collect())
}

async fn single_job(state: &AppState, caller: &Caller, id: &str) -> Result<JobView, ApiError> {
    let (job, tenant_id) = job_in_scope(state, caller, id, Action::ViewJobs).await?;
    let targets = state.store.job_targets(&caller.scope(), &job.id).await?;
    let set = state
        .store
        .trust_statements(&caller.scope(), &tenant_id)
        .await?;
    let trust = Trust::load(&tenant_id, &set);
    Ok(job_view(&job, &targets, trust.policy(), true))
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
        views.push(job_view(&job, &targets, policy, false));
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRequest {
    /// The signing key (hex key id, as `bulwark keys list` shows it).
    pub key_id: String,
    /// Ed25519 signature over the envelope's signing bytes (base64 of 64
    /// bytes). Either this or `webauthn`.
    #[serde(default)]
    pub signature: Option<String>,
    /// An approval passkey's assertion over the job's approval challenge
    /// (made in the page of the approver's own `bulwark`, RFD 0005), as the
    /// browser returned it. Either this or `signature`.
    #[serde(default)]
    pub webauthn: Option<WebAuthnApproval>,
}

/// `navigator.credentials.get`'s response fields, base64url (padding tolerated).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebAuthnApproval {
    pub authenticator_data: String,
    pub client_data_json: String,
    pub signature: String,
}

impl WebAuthnApproval {
    fn decode(&self) -> Result<WebAuthnSignature, ApiError> {
        use bulwark_policy::webauthn as w;
        Ok(WebAuthnSignature {
            authenticator_data: base64url_field(
                "authenticator_data",
                &self.authenticator_data,
                w::MAX_AUTHENTICATOR_DATA,
            )?,
            client_data_json: base64url_field(
                "client_data_json",
                &self.client_data_json,
                w::MAX_CLIENT_DATA_JSON,
            )?,
            signature: base64url_field("signature", &self.signature, w::MAX_SIGNATURE)?,
        })
    }
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
            let assertion = webauthn.decode()?;
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
    let trust = Trust::load(&tenant_id, &set);
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
                "job.signed",
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
                    "job.approved",
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

fn parse_key_id(text: &str) -> Result<KeyId, ApiError> {
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ApiError::bad_request("key_id must be 64 hex characters"))?;
    Ok(KeyId(bytes))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectRequest {
    pub reason: String,
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
                "job.rejected",
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
