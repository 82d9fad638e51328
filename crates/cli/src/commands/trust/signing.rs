//! Signing roots, policies and proposals with keys from the local key store.

use super::*;

/// A tenant's first root and policy, signed and checked.
pub(crate) struct Genesis {
    pub root: Signed,
    pub policy: Signed,
    /// What agents pin at enrolment.
    pub fingerprint: [u8; 32],
}

/// A tenant's first root: the MSP keys in `msp_root`, then `customers`.
pub(super) fn first_root(
    tenant_id: &str,
    threshold: u32,
    msp_root: &[(String, SigningKey)],
    customers: &[(String, PublicKey)],
) -> TrustRoot {
    let keys = msp_root
        .iter()
        .map(|(name, key)| RootKey {
            key: public_of(key),
            holder: Holder::Msp,
            name: name.clone(),
        })
        .chain(customers.iter().map(|(name, key)| RootKey {
            key: key.clone(),
            holder: Holder::Customer,
            name: name.clone(),
        }))
        .collect();
    TrustRoot {
        tenant: tenant_id.to_owned(),
        version: 1,
        threshold,
        keys,
    }
}

/// Builds, signs and checks a tenant's first root (the MSP keys in
/// `msp_root`, held here, plus `customers`) and its default first policy.
/// Pure: `tenant init` publishes the result; `up` may store it directly.
pub(crate) fn genesis(
    tenant_id: &str,
    tenant_name: &str,
    threshold: u32,
    msp_root: &[(String, SigningKey)],
    customers: &[(String, PublicKey)],
    operators: Vec<OperatorKey>,
    now: u64,
) -> Result<Genesis> {
    let need = usize::try_from(threshold).unwrap_or(usize::MAX);
    ensure!(
        need >= 1 && need <= msp_root.len(),
        "a root threshold of {threshold} needs that many root keys on this machine; there are {}",
        msp_root.len()
    );
    let root = first_root(tenant_id, threshold, msp_root, customers);
    let signers: Vec<&SigningKey> = msp_root.iter().take(need).map(|(_, k)| k).collect();
    let mut root_envelope = Signed::new(&root);
    for key in &signers {
        root_envelope.sign(key);
    }
    let fingerprint = root_fingerprint(&root_envelope);
    let root =
        TrustRoot::verify_pinned(&root_envelope, &fingerprint, tenant_id, &Limits::default())
            .map_err(refused("the new trust root"))?;
    let policy = sign_policy(
        &root,
        None,
        &default_policy(tenant_id, tenant_name, operators, now),
        &signers,
        now,
    )?;
    Ok(Genesis {
        root: root_envelope,
        policy,
        fingerprint,
    })
}

/// Signs `policy` with `keys` and checks it as an agent would before it leaves this machine.
pub(super) fn sign_policy(
    root: &TrustRoot,
    current: Option<&Policy>,
    policy: &Policy,
    keys: &[&SigningKey],
    now: u64,
) -> Result<Signed> {
    let mut signed = Signed::new(policy);
    for key in keys {
        signed.sign(key);
    }
    Policy::verify_update(root, current, &signed, now, &Limits::default())
        .map_err(refused("the new policy"))?;
    Ok(signed)
}

pub(super) fn public_of(key: &SigningKey) -> PublicKey {
    PublicKey::Ed25519(key.verifying_key().to_bytes())
}

/// The local keys of `root`, in the root's order.
pub(crate) fn held_root_keys(store: &KeyStore, root: &TrustRoot) -> Result<Vec<KeyInfo>> {
    let mut held = Vec::new();
    for root_key in &root.keys {
        if let Some(info) = store.find_by_public(&root_key.key)? {
            held.push(info);
        }
    }
    Ok(held)
}

/// Asks once for the passphrase that will encrypt the `keys` this command
/// creates, and lets `unlocker` try it first from now on.
pub(super) fn new_passphrase(
    unlocker: &mut Unlocker,
    json: bool,
    keys: &str,
) -> Result<zeroize::Zeroizing<String>> {
    if !json {
        eprintln!(
            "Choose a passphrase for the {keys} (it encrypts them on this machine; \
             nobody can recover it)."
        );
    }
    let passphrase = KeyStore::passphrase(true)?;
    unlocker.remember(passphrase.clone());
    Ok(passphrase)
}

/// The root keys of `root` held here, unlocked: the threshold if this
/// machine holds it (`true`), else every one it holds (`false`: the
/// statement becomes a proposal others co-sign).
pub(super) fn held_signing_keys(
    store: &KeyStore,
    root: &TrustRoot,
    unlocker: &mut Unlocker,
) -> Result<(Vec<SigningKey>, bool)> {
    let held = held_root_keys(store, root)?;
    let need = root.threshold();
    let keys = held
        .iter()
        .take(need)
        .map(|k| unlocker.unlock(store, &k.name))
        .collect::<Result<Vec<_>>>()?;
    let complete = keys.len() >= need;
    Ok((keys, complete))
}

/// Sends a statement this machine cannot complete (its signatures so far,
/// `have` of `need`) as a proposal, and says what the other key holders run.
/// Returns the proposal id.
pub(super) async fn propose(
    session: &Session,
    tenant: &str,
    signed: &Signed,
    what: &str,
    have: usize,
    need: usize,
    otp: Option<&str>,
) -> Result<String> {
    let body = ProposalRequest {
        envelope: base64::engine::general_purpose::STANDARD.encode(signed.to_bytes()),
        policy_envelope: None,
        freeze_envelope: None,
    };
    propose_body(session, tenant, &body, what, have, need, otp).await
}

/// [`propose`] with the request body given (a rotation carries companions).
pub(super) async fn propose_body(
    session: &Session,
    tenant: &str,
    body: &ProposalRequest,
    what: &str,
    have: usize,
    need: usize,
    otp: Option<&str>,
) -> Result<String> {
    let reply: ProposalView = session
        .post_privileged(&trust_path(tenant, "/proposals")?, body, otp)
        .await
        .with_context(|| format!("proposing {what}"))?;
    let id = reply.id;
    if reply.state == "published" {
        println!("Published {what} for tenant {tenant} (proposal {id}).");
        return Ok(id);
    }
    println!(
        "{what} for tenant {tenant} needs {need} root key signature(s); this machine holds {have}."
    );
    println!(
        "Proposed as {id} (open for 7 days). Each other root key holder checks and signs it on \
         their own machine:"
    );
    println!("  bulwark trust show {id}");
    println!("  bulwark trust sign {id}");
    println!("The server publishes it once the signatures reach the threshold.");
    Ok(id)
}

pub(super) fn refused(what: &'static str) -> impl Fn(Refusal) -> anyhow::Error {
    move |refusal| anyhow!("{what} does not verify: {refusal} ({})", refusal.code())
}
