//! TenantTrust statements signed by several people on different machines
//! (RFD 0002, "Proposals").
//!
//! With a root threshold above one, and root keys held by different people
//! (MSP security officers, the customer), nobody can sign a policy, a root
//! rotation or an unfreeze alone. One of them proposes the statement with
//! the signatures they hold; the others add theirs from their own machines.
//! The server only collects signatures: it never signs, it checks each one
//! against the tenant's root, and after each it runs the very checks of the
//! publish routes ([`trust::check_statement`]). When they pass, it publishes
//! the statement as those routes would. Agents verify everything again.

use bulwark_api::error::ErrorBody;
use bulwark_api::error::ErrorCode;
use bulwark_api::proposals::{
    ProposalRequest, ProposalSignatureRequest, ProposalSignerView, ProposalView, ThresholdView,
};
use bulwark_store::AuditAction;
use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bulwark_policy::envelope::{SignatureEntry, Statement};
use bulwark_policy::{
    FreezeStatement, Holder, KeyId, Policy, PublicKey, RootKey, Signed, TrustRoot,
};
use bulwark_store::{
    Companions, NewTrustProposal, ProposalState, Tenant, TrustKind, TrustProposal,
};
use rand::RngCore;
use serde_json::{Value, json};

use super::error::ApiError;
use super::refusals::base64_field;
use super::tenants::tenant_for;
use super::trust::{
    TenantTrust, check_statement, decode_envelope, limits, load_trust, now_secs, published_event,
    refused,
};
use super::{ApiJson, ApiPath, audit_event};
use crate::auth::policy::trust_signature_action;
use crate::auth::{Action, Caller};
use crate::state::AppState;
use crate::{now_millis, rfc3339};

/// How long a proposal gathers signatures.
pub const PROPOSAL_TTL_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// A proposed statement, decoded (signatures aside).
struct Proposed {
    kind: TrustKind,
    version: u64,
    /// For a root: the proposed root, whose keys may sign it too.
    next_root: Option<TrustRoot>,
    frozen: bool,
    summary: Value,
}

fn key_json(key: &PublicKey, name: &str, holder: Holder) -> Value {
    json!({
        "key_id": hex::encode(key.id().0),
        "name": name,
        "holder": holder_name(holder),
    })
}

fn holder_name(holder: Holder) -> &'static str {
    match holder {
        Holder::Msp => "msp",
        Holder::Customer => "customer",
    }
}

/// Decodes the statement an envelope carries and checks it is for `tenant`.
fn decode_statement(signed: &Signed, tenant: &Tenant) -> Result<Proposed, ApiError> {
    let limits = limits();
    let bad = |e| refused("proposed statement", &e);
    let wrong_tenant = || {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Refused,
            format!("the statement is for another tenant than {}", tenant.name),
        )
    };
    match signed.payload_type.as_str() {
        TrustRoot::PAYLOAD_TYPE => {
            let root: TrustRoot = signed.statement(&limits).map_err(bad)?;
            if root.tenant != tenant.id {
                return Err(wrong_tenant());
            }
            let summary = json!({
                "version": root.version,
                "threshold": root.threshold,
                "keys": root.keys.iter().map(|k| key_json(&k.key, &k.name, k.holder)).collect::<Vec<_>>(),
            });
            Ok(Proposed {
                kind: TrustKind::Root,
                version: root.version,
                next_root: Some(root),
                frozen: false,
                summary,
            })
        }
        Policy::PAYLOAD_TYPE => {
            let policy: Policy = signed.statement(&limits).map_err(bad)?;
            if policy.tenant != tenant.id {
                return Err(wrong_tenant());
            }
            let summary = json!({
                "version": policy.version,
                "expires_at": rfc3339(i64::try_from(policy.expires_at).unwrap_or(i64::MAX / 1000).saturating_mul(1000)),
                "operators": policy.operators.iter().map(|o| {
                    let mut key = key_json(&o.key, &o.name, o.holder);
                    key["classes"] = o.classes.iter().map(|c| c.name()).collect::<Vec<_>>().into();
                    key
                }).collect::<Vec<_>>(),
                "quorums": policy.quorums.iter().map(|q| json!({
                    "class": q.class.name(),
                    "signers": q.signers,
                    "customer_required": q.customer_required,
                    "in_window_only": q.in_window_only,
                })).collect::<Vec<_>>(),
                "fan_out_limit": policy.fan_out_limit,
                "allowed_scripts": policy.allowed_scripts.iter().map(|h| hex::encode(h.0)).collect::<Vec<_>>(),
                "maintenance_windows": policy.maintenance_windows.len(),
                "witnesses": policy.witnessing.as_ref().map(|w| json!({
                    "required": w.threshold,
                    "freshness_secs": w.freshness_secs,
                    "vkeys": w.witnesses.iter().map(|k| k.vkey.as_str()).collect::<Vec<_>>(),
                })),
                "mass_action_delay": policy.mass_action_delay.as_ref().map(|d| json!({
                    "more_than_targets": d.more_than_targets,
                    "classes": d.classes.iter().map(|c| c.name()).collect::<Vec<_>>(),
                    "delay_secs": d.delay_secs,
                })),
                "shell_notice": policy.shell_notice.as_ref().map(|n| json!({
                    "at_start": n.at_start,
                    "at_end": n.at_end,
                    "message": n.message,
                })),
            });
            Ok(Proposed {
                kind: TrustKind::Policy,
                version: policy.version,
                next_root: None,
                frozen: false,
                summary,
            })
        }
        FreezeStatement::PAYLOAD_TYPE => {
            let statement: FreezeStatement = signed.statement(&limits).map_err(bad)?;
            if statement.tenant != tenant.id {
                return Err(wrong_tenant());
            }
            let summary = json!({
                "sequence": statement.sequence,
                "frozen": statement.frozen,
                "reason": statement.reason,
            });
            Ok(Proposed {
                kind: TrustKind::Freeze,
                version: statement.sequence,
                next_root: None,
                frozen: statement.frozen,
                summary,
            })
        }
        other => Err(ApiError::bad_request(format!(
            "{other:?} is not a trust statement (a root, a policy or a freeze statement)"
        ))),
    }
}

/// The root keys that may sign a proposed statement: the current root's,
/// and for a root, the proposed root's too (a rotation needs both; a first
/// root only its own).
fn signer_keys<'a>(trust: &'a TenantTrust, proposed: &'a Proposed) -> Vec<&'a RootKey> {
    let mut keys: Vec<&RootKey> = Vec::new();
    for key in trust
        .root()
        .into_iter()
        .flat_map(|r| &r.keys)
        .chain(proposed.next_root.iter().flat_map(|r| &r.keys))
    {
        if !keys.iter().any(|k| k.key == key.key) {
            keys.push(key);
        }
    }
    keys
}

/// The statement must be the next one of its kind for this tenant.
fn check_next(trust: &TenantTrust, proposed: &Proposed) -> Result<(), ApiError> {
    let (ok, expected) = match proposed.kind {
        TrustKind::Root => {
            let next = trust.root().map_or(1, |r| r.version + 1);
            (proposed.version == next, format!("root version {next}"))
        }
        TrustKind::Policy => {
            let current = trust.policy().map_or(0, |p| p.version);
            (
                proposed.version > current,
                format!("a policy version above {current}"),
            )
        }
        TrustKind::Freeze => {
            let current = trust.freeze_state.sequence;
            (
                proposed.version > current,
                format!("a freeze sequence above {current}"),
            )
        }
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::conflict(format!(
            "{} version {} is not the next: expected {expected}",
            proposed.kind, proposed.version
        )))
    }
}

/// Every signature on a proposal verifies, by a distinct key of `keys`.
fn check_signatures(signed: &Signed, keys: &[&RootKey]) -> Result<(), ApiError> {
    let tally = signed.tally(keys.iter().map(|k| &k.key));
    let distinct: BTreeSet<KeyId> = signed.signatures.iter().map(|s| s.key_id).collect();
    let problem = if tally.unknown > 0 {
        Some("a signature is by a key that is not a root key of the tenant")
    } else if tally.bad > 0 {
        Some("a signature does not verify")
    } else if distinct.len() != signed.signatures.len() {
        Some("a key signed twice")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Refused,
            problem,
        )),
        None => Ok(()),
    }
}

/// A root rotation's companions, decoded: the current policy re-signed as
/// the next version and the freeze statement re-signed as the next
/// sequence, which must verify under the new root once it is published.
#[derive(Default)]
struct Companion {
    policy: Option<(Signed, Policy)>,
    freeze: Option<(Signed, FreezeStatement)>,
}

impl Companion {
    fn envelopes(&self) -> impl Iterator<Item = &Signed> {
        self.policy
            .iter()
            .map(|(s, _)| s)
            .chain(self.freeze.iter().map(|(s, _)| s))
    }

    fn to_store(&self) -> Companions {
        Companions {
            policy: self.policy.as_ref().map(|(s, _)| s.to_bytes()),
            policy_version: self.policy.as_ref().map_or(0, |(_, p)| p.version),
            freeze: self.freeze.as_ref().map(|(s, _)| s.to_bytes()),
            freeze_sequence: self.freeze.as_ref().map_or(0, |(_, f)| f.sequence),
        }
    }
}

/// Decodes a root rotation's companions and checks each is the next of its
/// kind for the tenant (signatures aside).
fn decode_companions(
    trust: &TenantTrust,
    tenant: &Tenant,
    proposed: &Proposed,
    policy: Option<Signed>,
    freeze: Option<Signed>,
) -> Result<Companion, ApiError> {
    if policy.is_none() && freeze.is_none() {
        return Ok(Companion::default());
    }
    if proposed.kind != TrustKind::Root || trust.root().is_none() {
        return Err(ApiError::bad_request(
            "only a root rotation carries a policy or freeze statement with it",
        ));
    }
    let limits = limits();
    let policy = match policy {
        None => None,
        Some(signed) => {
            let statement: Policy = match signed.payload_type.as_str() {
                Policy::PAYLOAD_TYPE => signed
                    .statement(&limits)
                    .map_err(|e| refused("policy companion", &e))?,
                _ => return Err(ApiError::bad_request("policy_envelope is not a policy")),
            };
            let current = trust.policy().map_or(0, |p| p.version);
            if statement.tenant != tenant.id || statement.version != current + 1 {
                return Err(ApiError::conflict(format!(
                    "the policy companion must be this tenant's policy version {}",
                    current + 1
                )));
            }
            Some((signed, statement))
        }
    };
    let freeze = match freeze {
        None => None,
        Some(signed) => {
            let statement: FreezeStatement = match signed.payload_type.as_str() {
                FreezeStatement::PAYLOAD_TYPE => signed
                    .statement(&limits)
                    .map_err(|e| refused("freeze companion", &e))?,
                _ => {
                    return Err(ApiError::bad_request(
                        "freeze_envelope is not a freeze statement",
                    ));
                }
            };
            let current = trust.freeze_state;
            if statement.tenant != tenant.id
                || statement.sequence != current.sequence + 1
                || statement.frozen != current.frozen
            {
                return Err(ApiError::conflict(format!(
                    "the freeze companion must be this tenant's kill switch as it is ({}), \
                     sequence {}",
                    if current.frozen {
                        "frozen"
                    } else {
                        "not frozen"
                    },
                    current.sequence + 1
                )));
            }
            Some((signed, statement))
        }
    };
    Ok(Companion { policy, freeze })
}

/// Whether each companion verifies both under the current root and under
/// the proposed one (so it is valid when stored and after the rotation).
fn companions_verify(trust: &TenantTrust, proposed: &Proposed, companion: &Companion) -> bool {
    let (Some(current), Some(next)) = (trust.root(), &proposed.next_root) else {
        return companion.policy.is_none() && companion.freeze.is_none();
    };
    let limits = limits();
    let now = now_secs();
    let held = trust.policy();
    let policy_ok = companion.policy.as_ref().is_none_or(|(signed, _)| {
        [current, next]
            .iter()
            .all(|root| Policy::verify_update(root, held, signed, now, &limits).is_ok())
    });
    let freeze_ok = companion.freeze.as_ref().is_none_or(|(signed, _)| {
        [current, next]
            .iter()
            .all(|root| trust.freeze_state.apply(root, signed, &limits).is_ok())
    });
    policy_ok && freeze_ok
}

fn stored_envelope(bytes: &Option<Vec<u8>>) -> Result<Option<Signed>, ApiError> {
    bytes
        .as_deref()
        .map(|b| {
            Signed::from_bytes(b, &limits())
                .map_err(|e| ApiError::internal(anyhow::anyhow!("stored proposal unreadable: {e}")))
        })
        .transpose()
}

fn proposal_view(
    tenant: &Tenant,
    trust: &TenantTrust,
    row: &TrustProposal,
) -> Result<ProposalView, ApiError> {
    let signed = Signed::from_bytes(&row.envelope, &limits())
        .map_err(|e| ApiError::internal(anyhow::anyhow!("stored proposal unreadable: {e}")))?;
    let proposed = decode_statement(&signed, tenant)?;
    let keys = signer_keys(trust, &proposed);
    let valid = signed.tally(keys.iter().map(|k| &k.key)).valid;
    let signed_by = keys
        .iter()
        .filter(|k| valid.contains(&k.key.id()))
        .map(|k| ProposalSignerView {
            key_id: hex::encode(k.key.id().0),
            name: k.name.clone(),
            holder: holder_name(k.holder).to_owned(),
        })
        .collect();
    let mut thresholds = Vec::new();
    if let Some(root) = trust.root() {
        thresholds.push(ThresholdView {
            what: format!("root v{}", root.version),
            have: signed.tally(root.public_keys()).valid.len(),
            need: root.threshold(),
        });
        if proposed.frozen {
            thresholds.push(ThresholdView {
                what: "customer root key".into(),
                have: signed.tally(root.customer_keys()).valid.len(),
                need: 1,
            });
        }
    }
    if let Some(next) = &proposed.next_root {
        thresholds.push(ThresholdView {
            what: format!("new root v{}", next.version),
            have: signed.tally(next.public_keys()).valid.len(),
            need: next.threshold(),
        });
    }
    Ok(ProposalView {
        id: row.id.clone(),
        tenant: tenant.name.clone(),
        tenant_id: tenant.id.clone(),
        kind: row.kind.to_string(),
        version: row.version,
        state: row.state.to_string(),
        proposed_by: row.proposed_by.clone(),
        created_at: rfc3339(row.created_at),
        expires_at: rfc3339(row.expires_at),
        published_at: row.published_at.map(rfc3339),
        envelope: B64.encode(&row.envelope),
        policy_envelope: row.policy_envelope.as_ref().map(|b| B64.encode(b)),
        freeze_envelope: row.freeze_envelope.as_ref().map(|b| B64.encode(b)),
        signed_by,
        thresholds,
        summary: proposed.summary,
    })
}

/// Publishes the proposal's statement if it now passes the publish routes'
/// checks (and a rotation's companions pass theirs under both roots);
/// leaves it open otherwise. Returns whether it was published.
#[allow(clippy::too_many_arguments)]
async fn try_publish(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    trust: &TenantTrust,
    id: &str,
    proposed: &Proposed,
    signed: &Signed,
    companion: &Companion,
) -> Result<bool, ApiError> {
    let kind = proposed.kind;
    let Ok((version, action)) = check_statement(trust, tenant, kind, signed) else {
        return Ok(false);
    };
    if !companions_verify(trust, proposed, companion) {
        return Ok(false);
    }
    // Each statement's event, companions first (the order they are stored).
    let mut events = Vec::new();
    if let Some((_, policy)) = &companion.policy {
        events.push(published_event(
            caller,
            tenant,
            policy.version,
            AuditAction::TrustPolicyPublished,
        ));
    }
    if let Some((_, freeze)) = &companion.freeze {
        let action = if freeze.frozen {
            AuditAction::TrustFrozen
        } else {
            AuditAction::TrustUnfrozen
        };
        events.push(published_event(caller, tenant, freeze.sequence, action));
    }
    events.push(published_event(caller, tenant, version, action));
    events.push(audit_event(
        caller,
        Some(&tenant.id),
        AuditAction::TrustProposalPublished,
        &format!("{} {kind} v{version} proposal {id}", tenant.name),
    ));
    state
        .store
        .publish_trust_proposal(
            id,
            &signed.to_bytes(),
            &companion.to_store(),
            now_millis(),
            &events,
        )
        .await?;
    state.presence.nudge_tenant(&tenant.id);
    Ok(true)
}

/// Proposes a trust statement (a root, a policy or a freeze statement) that
/// needs more signatures than its proposer holds. Every signature on it
/// must verify against a root key; it is published at once if it already
/// passes the publish route's checks. A root rotation may carry the current
/// policy and freeze statement re-signed (`policy_envelope`,
/// `freeze_envelope`): they are published with it, first.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/trust/proposals", tag = "trust",
    params(("tenant" = String, Path, description = "Tenant name")), request_body = ProposalRequest,
    responses((status = 201, body = ProposalView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn create_proposal(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(req): ApiJson<ProposalRequest>,
) -> Result<impl IntoResponse, ApiError> {
    // The widest action a proposal may need first, then the one its kind needs.
    let tenant = tenant_for(&state, &caller, &tenant, Action::FreezeTenant).await?;
    let signed = decode_envelope(&req.envelope)?;
    let proposed = decode_statement(&signed, &tenant)?;
    caller.require_in(
        if proposed.kind == TrustKind::Freeze {
            Action::FreezeTenant
        } else {
            Action::ManageTrust
        },
        &tenant.id,
    )?;
    let trust = load_trust(&state, &caller, &tenant).await?;
    trust.require_intact()?;
    check_next(&trust, &proposed)?;
    let keys = signer_keys(&trust, &proposed);
    check_signatures(&signed, &keys)?;
    let companion = decode_companions(
        &trust,
        &tenant,
        &proposed,
        req.policy_envelope
            .as_deref()
            .map(decode_envelope)
            .transpose()?,
        req.freeze_envelope
            .as_deref()
            .map(decode_envelope)
            .transpose()?,
    )?;
    for envelope in companion.envelopes() {
        check_signatures(envelope, &keys)?;
    }
    if proposed.kind == TrustKind::Root {
        super::trust::refuse_orphaning_rotation(
            &trust,
            &signed,
            companion.policy.is_some(),
            companion.freeze.is_some(),
        )?;
    }
    let stored = companion.to_store();
    let mut id = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut id);
    let id = hex::encode(id);
    let now = now_millis();
    state
        .store
        .create_trust_proposal(
            &NewTrustProposal {
                id: id.clone(),
                tenant_id: tenant.id.clone(),
                kind: proposed.kind,
                version: proposed.version,
                envelope: signed.to_bytes(),
                policy_envelope: stored.policy,
                freeze_envelope: stored.freeze,
                proposed_by: caller.operator.id.clone(),
                created_at: now,
                expires_at: now + PROPOSAL_TTL_MS,
            },
            &[audit_event(
                &caller,
                Some(&tenant.id),
                AuditAction::TrustProposed,
                &format!(
                    "{} {} v{} proposal {id}",
                    tenant.name, proposed.kind, proposed.version
                ),
            )],
        )
        .await?;
    try_publish(
        &state, &caller, &tenant, &trust, &id, &proposed, &signed, &companion,
    )
    .await?;
    let view = single(&state, &caller, &id).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// A tenant's open proposals, with their signatures against each threshold.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/trust/proposals", tag = "trust",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, body = [ProposalView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list_proposals(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<Vec<ProposalView>>, ApiError> {
    let tenant = tenant_for(&state, &caller, &tenant, Action::ViewTrust).await?;
    let trust = load_trust(&state, &caller, &tenant).await?;
    let rows = state
        .store
        .open_trust_proposals(&caller.scope(), &tenant.id, now_millis())
        .await?;
    let views = rows
        .iter()
        .map(|row| proposal_view(&tenant, &trust, row))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(views))
}

/// A proposal and its tenant, if the caller may see it (404 otherwise).
async fn proposal_in_scope(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<(TrustProposal, Tenant), ApiError> {
    let row = state
        .store
        .trust_proposal(&caller.scope(), id, now_millis())
        .await?
        .ok_or_else(|| ApiError::not_found("proposal"))?;
    let tenant = state
        .store
        .list_tenants(&caller.scope())
        .await?
        .into_iter()
        .find(|t| t.id == row.tenant_id)
        .map(|t| Tenant {
            id: t.id,
            name: t.name,
            created_at: t.created_at,
        })
        .ok_or_else(|| ApiError::not_found("proposal"))?;
    caller.require_in(Action::ViewTrust, &tenant.id)?;
    Ok((row, tenant))
}

async fn single(state: &AppState, caller: &Caller, id: &str) -> Result<ProposalView, ApiError> {
    let (row, tenant) = proposal_in_scope(state, caller, id).await?;
    let trust = load_trust(state, caller, &tenant).await?;
    proposal_view(&tenant, &trust, &row)
}

/// One proposal: its envelope, a decoded summary and the signatures so far.
#[utoipa::path(get, path = "/api/v1/trust-proposals/{id}", tag = "trust",
    params(("id" = String, Path, description = "Proposal id")),
    responses((status = 200, body = ProposalView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn get_proposal(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ProposalView>, ApiError> {
    Ok(Json(single(&state, &caller, &id).await?))
}

/// Adds one root key's signature to a proposal, made on the signer's own
/// machine; publishes the statement once it passes the publish route's checks.
#[utoipa::path(post, path = "/api/v1/trust-proposals/{id}/signatures", tag = "trust",
    params(("id" = String, Path, description = "Proposal id")), request_body = ProposalSignatureRequest,
    responses((status = 200, body = ProposalView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn sign_proposal(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<ProposalSignatureRequest>,
) -> Result<Json<ProposalView>, ApiError> {
    let (row, tenant) = proposal_in_scope(&state, &caller, &id).await?;
    let freeze = row.kind == TrustKind::Freeze;
    // The widest action for this kind first (before anything is read from
    // the body); the signing key's own below.
    caller.require_in(trust_signature_action(freeze, true), &tenant.id)?;
    if row.state != ProposalState::Open {
        return Err(ApiError::conflict(format!("proposal is {}", row.state)));
    }
    let key_id: [u8; 32] = hex::decode(req.key_id.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ApiError::bad_request("key_id must be 64 hex characters"))?;
    let signature = signature_bytes(&req.signature)?;
    let mut companion_signatures: Vec<(TrustKind, [u8; 64])> = Vec::new();
    for c in &req.companions {
        let kind = match c.kind.as_str() {
            "policy" => TrustKind::Policy,
            "freeze" => TrustKind::Freeze,
            _ => return Err(ApiError::bad_request("a companion is a policy or a freeze")),
        };
        if companion_signatures.iter().any(|(k, _)| *k == kind) {
            return Err(ApiError::bad_request(format!(
                "two {kind} companion signatures"
            )));
        }
        companion_signatures.push((kind, signature_bytes(&c.signature)?));
    }
    let previous = Signed::from_bytes(&row.envelope, &limits())
        .map_err(|e| ApiError::internal(anyhow::anyhow!("stored proposal unreadable: {e}")))?;
    let proposed = decode_statement(&previous, &tenant)?;
    let trust = load_trust(&state, &caller, &tenant).await?;
    trust.require_intact()?;
    let keys = signer_keys(&trust, &proposed);
    let key = keys
        .iter()
        .find(|k| k.key.id().0 == key_id)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::Refused,
                "the key is not a root key of the tenant (current or proposed)",
            )
        })?;
    caller.require_in(
        trust_signature_action(freeze, key.holder == Holder::Customer),
        &tenant.id,
    )?;
    if previous.signatures.iter().any(|s| s.key_id.0 == key_id) {
        return Err(ApiError::conflict("key already signed this proposal"));
    }
    let entry = |signature| SignatureEntry {
        key_id: key.key.id(),
        signature,
        webauthn: None,
    };
    let mut signed = previous.clone();
    signed.signatures.push(entry(signature));
    check_signatures(&signed, &keys)?;
    // The same key signs each companion, in the same call: the rotation
    // publishes only when all of them reach their thresholds.
    let mut companion = decode_companions(
        &trust,
        &tenant,
        &proposed,
        stored_envelope(&row.policy_envelope)?,
        stored_envelope(&row.freeze_envelope)?,
    )?;
    let wanted: Vec<TrustKind> = companion
        .policy
        .iter()
        .map(|_| TrustKind::Policy)
        .chain(companion.freeze.iter().map(|_| TrustKind::Freeze))
        .collect();
    let given: BTreeSet<&str> = companion_signatures
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    if given != wanted.iter().map(|k| k.as_str()).collect() {
        return Err(ApiError::bad_request(format!(
            "this proposal needs a signature on each of its companions: [{}]",
            wanted
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    for (kind, signature) in companion_signatures {
        let envelope = match kind {
            TrustKind::Policy => companion.policy.as_mut().map(|(s, _)| s),
            _ => companion.freeze.as_mut().map(|(s, _)| s),
        };
        if let Some(envelope) = envelope {
            if envelope.signatures.iter().any(|s| s.key_id.0 == key_id) {
                return Err(ApiError::conflict("key already signed this proposal"));
            }
            envelope.signatures.push(entry(signature));
            check_signatures(envelope, &keys)?;
        }
    }
    let now = now_millis();
    state
        .store
        .add_proposal_signature(
            &id,
            &previous.to_bytes(),
            &signed.to_bytes(),
            &companion.to_store(),
            now,
            &[audit_event(
                &caller,
                Some(&tenant.id),
                AuditAction::TrustProposalSigned,
                &format!(
                    "proposal {id} by key {} ({})",
                    hex::encode(key_id),
                    key.name
                ),
            )],
        )
        .await?;
    try_publish(
        &state, &caller, &tenant, &trust, &id, &proposed, &signed, &companion,
    )
    .await?;
    Ok(Json(single(&state, &caller, &id).await?))
}

fn signature_bytes(text: &str) -> Result<[u8; 64], ApiError> {
    base64_field("signature", text)?
        .try_into()
        .map_err(|_| ApiError::bad_request("signature must be 64 bytes (Ed25519)"))
}
