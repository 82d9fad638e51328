//! The server's copy of a tenant's trust, verified here as an agent verifies it.

use super::*;

/// A tenant's trust as this machine verified it.
#[derive(Debug)]
pub(crate) struct Trust {
    pub tenant_id: String,
    /// The first root's, which agents pin.
    pub fingerprint: Option<[u8; 32]>,
    /// The latest root, reached from the first by valid rotations.
    pub root: Option<TrustRoot>,
    /// Signed by the latest root's threshold.
    pub policy: Option<Policy>,
    pub freeze: Option<FreezeView>,
}

#[derive(Debug)]
pub(crate) struct FreezeView {
    pub statement: FreezeStatement,
    /// The envelope, as the server serves it.
    pub signed: Signed,
    /// Whether it verifies against the latest root.
    pub verified: bool,
}

impl Trust {
    pub(super) fn freeze_state(&self) -> FreezeState {
        self.freeze
            .as_ref()
            .map_or_else(FreezeState::default, |f| FreezeState {
                sequence: f.statement.sequence,
                frozen: f.statement.frozen,
            })
    }
}

pub(super) fn decode_envelope(text: &str, what: &str) -> Result<Signed> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .with_context(|| format!("the server's {what} is not base64"))?;
    Signed::from_bytes(&bytes, &Limits::default())
        .map_err(|r| anyhow!("the server's {what} is not an envelope: {r}"))
}

/// Verifies the server's `GET /api/v1/tenants/{tenant}/trust` reply: only
/// its envelopes (and the fingerprint it claims) are used.
pub(super) fn verify_trust(reply: &TrustView) -> Result<Trust> {
    let limits = Limits::default();
    let roots = reply
        .roots
        .iter()
        .enumerate()
        .map(|(i, r)| decode_envelope(r, &format!("root {}", i + 1)))
        .collect::<Result<Vec<_>>>()?;
    let policy = reply
        .policy
        .as_deref()
        .map(|text| decode_envelope(text, "policy"))
        .transpose()?;
    let freeze = reply
        .freeze
        .as_deref()
        .map(|text| decode_envelope(text, "freeze statement"))
        .transpose()?;
    let Some(pinned) = roots.first().map(root_fingerprint) else {
        ensure!(
            policy.is_none() && freeze.is_none(),
            "the server has a policy or freeze for this tenant but no trust root"
        );
        return Ok(Trust {
            tenant_id: reply.tenant_id.clone(),
            fingerprint: None,
            root: None,
            policy: None,
            freeze: None,
        });
    };
    if let Some(claimed) = &reply.root_fingerprint {
        ensure!(
            claimed.eq_ignore_ascii_case(&hex::encode(pinned)),
            "the server says the root fingerprint is {claimed}, but its first root hashes to {}",
            hex::encode(pinned)
        );
    }
    // The agents' replay. An expired policy is still shown (and replaced),
    // flagged as expired; a freeze that does not verify is shown as such.
    let (history, refusals) = TrustHistory::replay(
        &reply.tenant_id,
        Some(pinned),
        &roots,
        policy.as_ref(),
        freeze.as_ref(),
        &limits,
    );
    for outcome in &refusals {
        if let TrustOutcome::Refused { kind, refusal, .. } = outcome {
            match kind {
                TrustKind::Root => return Err(refused("the tenant's trust root")(refusal.clone())),
                TrustKind::Policy => return Err(refused("the tenant's policy")(refusal.clone())),
                TrustKind::Freeze => {}
            }
        }
    }
    let freeze = match freeze {
        None => None,
        Some(signed) => Some(FreezeView {
            statement: signed
                .statement(&limits)
                .map_err(refused("the tenant's freeze statement"))?,
            verified: history.freeze_signed().is_some(),
            signed,
        }),
    };
    Ok(Trust {
        tenant_id: reply.tenant_id.clone(),
        fingerprint: Some(pinned),
        root: history.root().cloned(),
        policy: history.policy().cloned(),
        freeze,
    })
}

pub(crate) fn trust_path(tenant: &str, what: &str) -> Result<String> {
    Ok(format!(
        "/api/v1/tenants/{}/trust{what}",
        path_segment(tenant)?
    ))
}

/// A tenant's trust as the server serves it, verified here (the root chain
/// replayed, the policy checked against the latest root) and compared with
/// this machine's pin of the tenant (pinned now on first contact).
pub(crate) async fn fetch_trust(session: &Session, tenant: &str) -> Result<Trust> {
    let reply: TrustView = session.get(&trust_path(tenant, "")?).await?;
    let trust = verify_trust(&reply)?;
    match trust.fingerprint {
        Some(root) => {
            let served = crate::pins::TenantPin {
                tenant_id: trust.tenant_id.clone(),
                root,
            };
            if let crate::pins::PinCheck::FirstUse(path) =
                crate::pins::check_tenant(session.server(), tenant, &served)?
            {
                eprintln!(
                    "First contact with tenant {tenant}: pinned id {} and trust root\n  {}\n  in {}. \
                     Compare the root with its holders out of band.",
                    trust.tenant_id,
                    fingerprint_text(&root),
                    path.display()
                );
            }
        }
        None => {
            if let Some(pinned) = crate::pins::tenant_pin(session.server(), tenant)? {
                bail!(
                    "STOP: the server says tenant {tenant:?} has no trust root, but this machine \
                     pinned root {} for it: the server lost or withholds it",
                    fingerprint_text(&pinned.root)
                );
            }
        }
    }
    Ok(trust)
}

/// `POST /tenants/{tenant}/trust/{what}` (a privileged action: the server
/// may ask for a fresh MFA check first).
pub(super) async fn post_envelope(
    session: &Session,
    tenant: &str,
    what: &str,
    signed: &Signed,
    otp: Option<&str>,
) -> Result<()> {
    let body = EnvelopeRequest {
        envelope: base64::engine::general_purpose::STANDARD.encode(signed.to_bytes()),
    };
    // The reply is the tenant's trust as the server now holds it; what
    // matters is read back and verified by `fetch_trust`.
    let _: TrustView = session
        .post_privileged(&trust_path(tenant, &format!("/{what}"))?, &body, otp)
        .await?;
    Ok(())
}

pub(super) async fn lookup_tenant_id(session: &Session, tenant: &str) -> Result<String> {
    let tenants: Vec<TenantView> = session.get("/api/v1/tenants").await?;
    tenants
        .into_iter()
        .find(|t| t.name == tenant)
        .map(|t| t.id)
        .with_context(|| format!("no tenant named {tenant} (see `bulwark tenant list`)"))
}
