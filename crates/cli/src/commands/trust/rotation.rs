//! Root rotation: the plan, the co-signers' proposals and `tenant rotate-root`.

use super::*;

/// What `tenant rotate-root` was asked for.
#[derive(Debug, Default)]
pub(crate) struct RotationAsk<'a> {
    /// The tenant's name (new keys are named after it).
    pub tenant: &'a str,
    pub threshold: Option<u32>,
    pub new_root_keys: u32,
    pub keep: &'a [String],
    pub drop: &'a [String],
    pub customers: &'a [PublicKey],
}

/// The next root's key set, resolved against the current root and checked
/// before any key is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RotationPlan {
    pub version: u64,
    pub threshold: u32,
    /// Keys of the current root that stay, in its order.
    pub kept: Vec<RootKey>,
    /// Keys of the current root that go.
    pub dropped: Vec<RootKey>,
    /// MSP keys to create on this machine: `root-<tenant>-<version>-<i>`.
    pub new_names: Vec<String>,
    /// Customer-held keys to add.
    pub customers: Vec<RootKey>,
}

impl RotationPlan {
    /// The next root, once the new keys exist (`created`: name and public key,
    /// in `new_names` order).
    pub fn root(&self, current: &TrustRoot, created: &[(String, PublicKey)]) -> TrustRoot {
        let keys = self
            .kept
            .iter()
            .cloned()
            .chain(created.iter().map(|(name, key)| RootKey {
                key: key.clone(),
                holder: Holder::Msp,
                name: name.clone(),
            }))
            .chain(self.customers.iter().cloned())
            .collect();
        TrustRoot {
            tenant: current.tenant.clone(),
            version: self.version,
            threshold: self.threshold,
            keys,
        }
    }
}

/// Resolves and checks a rotation: which keys stay, go and come, the new
/// threshold, and that this machine holds the current root's threshold and
/// (with the keys it will create) the new one's. `local_name` names the
/// local key holding a public key, if any. Pure: nothing is created here.
pub(crate) fn plan_rotation(
    current: &TrustRoot,
    ask: &RotationAsk<'_>,
    local_name: &dyn Fn(&PublicKey) -> Option<String>,
) -> Result<RotationPlan> {
    let limits = Limits::default();
    ensure!(
        ask.new_root_keys <= 16,
        "--new-root-keys must be at most 16"
    );
    let version = current.version + 1;
    // A name given on the command line: the root's name for a key, or the
    // name of the local key holding it.
    let find = |name: &str, flag: &str| -> Result<usize> {
        let matches: Vec<usize> = current
            .keys
            .iter()
            .enumerate()
            .filter(|(_, k)| k.name == name || local_name(&k.key).as_deref() == Some(name))
            .map(|(i, _)| i)
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => bail!(
                "{flag} {name}: root version {} has no key of that name (its keys: {})",
                current.version,
                current
                    .keys
                    .iter()
                    .map(|k| k.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => bail!(
                "{flag} {name}: several keys of root version {} have that name",
                current.version
            ),
        }
    };
    let mut keep = vec![ask.keep.is_empty(); current.keys.len()];
    for name in ask.keep {
        keep[find(name, "--keep")?] = true;
    }
    for name in ask.drop {
        keep[find(name, "--drop")?] = false;
    }
    let mut kept: Vec<RootKey> = Vec::new();
    let mut dropped: Vec<RootKey> = Vec::new();
    for (key, keep) in current.keys.iter().zip(keep) {
        if keep {
            kept.push(key.clone());
        } else {
            dropped.push(key.clone());
        }
    }

    let mut customers: Vec<RootKey> = Vec::new();
    for key in ask.customers {
        if let Some(existing) = current.keys.iter().find(|k| k.key == *key) {
            bail!(
                "--add-customer-key {}: it is already root key {} (keep or drop it with --keep/--drop)",
                public_hex(key),
                existing.name
            );
        }
        ensure!(
            !customers.iter().any(|c| c.key == *key),
            "--add-customer-key {} is given twice",
            public_hex(key)
        );
        customers.push(RootKey {
            key: key.clone(),
            holder: Holder::Customer,
            name: format!("customer-{version}-{}", customers.len() + 1),
        });
    }
    let new_names: Vec<String> = (1..=ask.new_root_keys)
        .map(|i| format!("root-{}-{version}-{i}", ask.tenant))
        .collect();

    let total = kept.len() + new_names.len() + customers.len();
    ensure!(
        total >= 1,
        "the new root would have no keys: keep some or add some with --new-root-keys"
    );
    ensure!(
        total <= limits.max_root_keys,
        "the new root would have {total} keys; a root holds at most {}",
        limits.max_root_keys
    );
    let threshold = ask.threshold.unwrap_or(current.threshold);
    let need = usize::try_from(threshold).unwrap_or(usize::MAX);
    ensure!(threshold >= 1, "--threshold must be at least 1");
    ensure!(
        need <= total,
        "{} of {threshold} needs at least {threshold} keys, but the new root would have {total}{}",
        if ask.threshold.is_some() {
            "a threshold"
        } else {
            "the current threshold"
        },
        if ask.threshold.is_some() {
            ""
        } else {
            ": pass --threshold"
        }
    );
    ensure!(
        !(new_names.is_empty()
            && customers.is_empty()
            && dropped.is_empty()
            && threshold == current.threshold),
        "nothing would change: say what the new root is with --new-root-keys, --add-customer-key, \
         --drop, --keep or --threshold"
    );

    // Whether this machine holds the current root's threshold and the new
    // one's is `rotate_root`'s question: what it cannot sign becomes a
    // proposal the other key holders co-sign.
    Ok(RotationPlan {
        version,
        threshold,
        kept,
        dropped,
        new_names,
        customers,
    })
}

/// The keys that sign a rotation: a threshold of the current root and one of
/// the next, from those `held` here, a key in both counting for both.
pub(crate) fn rotation_signers(
    current: &TrustRoot,
    next: &TrustRoot,
    held: &dyn Fn(&PublicKey) -> bool,
) -> Result<Vec<PublicKey>> {
    let in_next = |k: &PublicKey| next.keys.iter().any(|n| n.key == *k);
    let mut old: Vec<&PublicKey> = current.public_keys().filter(|k| held(k)).collect();
    // Keys in both roots first: fewer keys to unlock.
    old.sort_by_key(|k| !in_next(k));
    ensure!(
        old.len() >= current.threshold(),
        "this machine holds {} of the {} keys the current root's threshold needs",
        old.len(),
        current.threshold()
    );
    let mut chosen: Vec<PublicKey> = old.into_iter().take(current.threshold()).cloned().collect();
    let mut new: Vec<&PublicKey> = next.public_keys().filter(|k| held(k)).collect();
    new.sort_by_key(|k| !chosen.contains(k));
    ensure!(
        new.len() >= next.threshold(),
        "this machine holds {} of the {} keys the new root's threshold needs",
        new.len(),
        next.threshold()
    );
    for key in new.into_iter().take(next.threshold()) {
        if !chosen.contains(key) {
            chosen.push(key.clone());
        }
    }
    Ok(chosen)
}

/// A signed rotation, and what goes with it, checked as agents check them.
pub(crate) struct Rotation {
    pub root: Signed,
    /// The current policy's content as the next version, signed by both
    /// thresholds: valid under the current root when published (before the
    /// root) and under the new one after.
    pub policy: Option<(Policy, Signed)>,
    /// The kill switch's current state as the next sequence, when the stored
    /// statement would not verify against the new root (signed by keys it drops).
    pub freeze: Option<(FreezeStatement, Signed)>,
}

/// Signs `next` with `keys` (thresholds of the current and next roots), and
/// re-signs the policy and, if the new root would not verify it, the freeze
/// statement; each is checked against both roots before it leaves here.
pub(crate) fn sign_rotation(
    current: &TrustRoot,
    next: &TrustRoot,
    policy: Option<&Policy>,
    freeze: Option<&FreezeView>,
    keys: &[&SigningKey],
    now: u64,
) -> Result<Rotation> {
    sign_rotation_with(current, next, policy, freeze, keys, now, true)
}

/// [`sign_rotation`]; with `complete` false, `keys` are only those held
/// here (a proposal others co-sign), so the thresholds are not checked.
pub(super) fn sign_rotation_with(
    current: &TrustRoot,
    next: &TrustRoot,
    policy: Option<&Policy>,
    freeze: Option<&FreezeView>,
    keys: &[&SigningKey],
    now: u64,
    complete: bool,
) -> Result<Rotation> {
    let limits = Limits::default();
    let sign = |signed: &mut Signed| {
        for key in keys {
            signed.sign(key);
        }
    };
    let mut root = Signed::new(next);
    sign(&mut root);
    if complete {
        let verified = current
            .verify_rotation(&root, &limits)
            .map_err(refused("the new trust root"))?;
        ensure!(
            verified == *next,
            "the new trust root reads back differently"
        );
    }

    let policy = match policy {
        None => None,
        Some(held) => {
            let mut statement = held.clone();
            statement.version += 1;
            let mut signed = Signed::new(&statement);
            sign(&mut signed);
            if complete {
                Policy::verify_update(current, Some(held), &signed, now, &limits)
                    .map_err(refused("the re-signed policy (under the current root)"))?;
                Policy::verify_update(next, Some(held), &signed, now, &limits)
                    .map_err(refused("the re-signed policy (under the new root)"))?;
            }
            Some((statement, signed))
        }
    };

    let freeze = match freeze {
        Some(view)
            if FreezeState::default()
                .apply(next, &view.signed, &limits)
                .is_err() =>
        {
            let held = FreezeState {
                sequence: view.statement.sequence,
                frozen: view.statement.frozen,
            };
            let suffix = format!(" (re-signed for root version {})", next.version);
            let mut reason = view.statement.reason.clone();
            if reason.len() + suffix.len() <= 4096 {
                reason.push_str(&suffix);
            }
            let statement = FreezeStatement {
                tenant: current.tenant.clone(),
                sequence: held.sequence + 1,
                frozen: held.frozen,
                reason,
            };
            let mut signed = Signed::new(&statement);
            sign(&mut signed);
            if complete {
                held.apply(current, &signed, &limits).map_err(refused(
                    "the re-signed freeze statement (under the current root)",
                ))?;
                held.apply(next, &signed, &limits).map_err(refused(
                    "the re-signed freeze statement (under the new root)",
                ))?;
                FreezeState::default()
                    .apply(next, &signed, &limits)
                    .map_err(refused(
                        "the re-signed freeze statement (under the new root)",
                    ))?;
            }
            Some((statement, signed))
        }
        _ => None,
    };
    Ok(Rotation {
        root,
        policy,
        freeze,
    })
}

pub(super) async fn rotate_root(args: RotateRootArgs) -> Result<()> {
    let RotateRootArgs {
        tenant,
        threshold,
        new_root_keys,
        keep,
        drop,
        add_customer_keys,
        otp,
        json,
    } = args;
    let otp = otp.as_deref();

    // 1. Everything that can be refused is refused before anything is created.
    let customers = add_customer_keys
        .iter()
        .map(|text| parse_public_key(text).with_context(|| format!("--add-customer-key {text}")))
        .collect::<Result<Vec<_>>>()?;
    let store = KeyStore::open_default()?;
    let session = Session::load()?;
    let trust = fetch_trust(&session, &tenant).await?;
    let current = trust.root.as_ref().with_context(|| {
        format!(
            "tenant {tenant} has no trust root yet: run `bulwark tenant init --tenant {tenant}`"
        )
    })?;
    let now = unix_now();
    if let Some(policy) = &trust.policy {
        ensure!(
            policy.expires_at > now,
            "tenant {tenant}'s policy expired {}: the rotation re-signs it, so sign a new one \
             first (`bulwark policy show --tenant {tenant} --toml > policy.toml`, set \
             expires_in_days, `bulwark policy sign`), then rotate",
            date_text(policy.expires_at)
        );
    }
    if let Some(freeze) = &trust.freeze {
        ensure!(
            freeze.verified,
            "tenant {tenant}'s freeze statement (sequence {}) does not verify against its \
             current root: the server refuses changes until that is resolved",
            freeze.statement.sequence
        );
    }
    let local = store.list()?;
    let local_name = |key: &PublicKey| {
        local
            .iter()
            .find(|k| k.public_key == *key)
            .map(|k| k.name.clone())
    };
    let plan = plan_rotation(
        current,
        &RotationAsk {
            tenant: &tenant,
            threshold,
            new_root_keys,
            keep: &keep,
            drop: &drop,
            customers: &customers,
        },
        &local_name,
    )?;
    // New keys: reuse those a failed earlier run made for this tenant.
    let role = format!("root:{}", trust.tenant_id);
    let mut slots: Vec<RootSlot> = Vec::new();
    for name in &plan.new_names {
        if store.exists(name)? {
            let info = store.info(name)?;
            ensure!(
                info.role == role,
                "a key named {name} already exists for something else (role {}); move {} away first",
                info.role,
                info.path.display()
            );
            ensure!(
                !current.keys.iter().any(|k| k.key == info.public_key),
                "key {name} is already a key of the current root"
            );
            slots.push(RootSlot::Reuse(info));
        } else {
            store.check_new(name, &role)?;
            slots.push(RootSlot::Create(name.clone()));
        }
    }

    // 2. New keys (one passphrase for all), then every signer unlocked.
    let mut unlocker = Unlocker::new();
    let mut created: Vec<KeyInfo> = Vec::new();
    let mut unlocked: Vec<(PublicKey, SigningKey)> = Vec::new();
    let passphrase = if slots.iter().any(|s| matches!(s, RootSlot::Create(_))) {
        Some(new_passphrase(&mut unlocker, json, "new root keys")?)
    } else {
        None
    };
    let mut new_keys: Vec<(String, PublicKey)> = Vec::new();
    for slot in slots {
        let (name, key) = match slot {
            RootSlot::Reuse(info) => {
                let key = unlocker.unlock(&store, &info.name)?;
                (info.name, key)
            }
            RootSlot::Create(name) => {
                let passphrase = passphrase
                    .as_ref()
                    .context("no passphrase for the new root keys")?;
                let (info, key) = store.create_with(&name, &role, passphrase)?;
                created.push(info);
                (name, key)
            }
        };
        new_keys.push((name, public_of(&key)));
        unlocked.push((public_of(&key), key));
    }
    let next = plan.root(current, &new_keys);
    let held =
        |key: &PublicKey| unlocked.iter().any(|(k, _)| k == key) || local_name(key).is_some();
    let Ok(signers) = rotation_signers(current, &next, &held) else {
        // Not both thresholds here: sign the root and its companions with
        // every key of either root held here, and propose them together.
        let mut keys: Vec<SigningKey> = Vec::new();
        let mut signed_by: Vec<PublicKey> = Vec::new();
        for public in current.public_keys().chain(next.public_keys()) {
            if signed_by.contains(public) || !held(public) {
                continue;
            }
            let key = match unlocked.iter().find(|(k, _)| k == public) {
                Some((_, key)) => key.clone(),
                None => {
                    let name = local_name(public).context("a signer is not held here")?;
                    unlocker.unlock(&store, &name)?
                }
            };
            signed_by.push(public.clone());
            keys.push(key);
        }
        let keys: Vec<&SigningKey> = keys.iter().collect();
        let rotation = sign_rotation_with(
            current,
            &next,
            trust.policy.as_ref(),
            trust.freeze.as_ref(),
            &keys,
            now,
            false,
        )?;
        let have = current
            .public_keys()
            .filter(|k| signed_by.contains(k))
            .count();
        let b64 =
            |signed: &Signed| base64::engine::general_purpose::STANDARD.encode(signed.to_bytes());
        let body = ProposalRequest {
            envelope: b64(&rotation.root),
            policy_envelope: rotation.policy.as_ref().map(|(_, signed)| b64(signed)),
            freeze_envelope: rotation.freeze.as_ref().map(|(_, signed)| b64(signed)),
        };
        let what = format!(
            "Trust root version {} ({} of {} keys{})",
            next.version,
            next.threshold,
            next.keys.len(),
            if rotation.policy.is_some() {
                ", with the current policy re-signed"
            } else {
                ""
            }
        );
        if !created.is_empty() && !json {
            for info in &created {
                println!(
                    "Created root key {} ({}): {}",
                    info.name,
                    info.public_key.id(),
                    info.path.display()
                );
            }
        }
        let id = propose_body(
            &session,
            &tenant,
            &body,
            &what,
            have,
            current.threshold(),
            otp,
        )
        .await?;
        if json {
            return print_json(&json!({
                "tenant": tenant,
                "proposal": id,
                "root": root_json(&next, &store.list()?),
                "created_keys": created.iter().map(KeyInfo::to_json).collect::<Vec<_>>(),
                "policy_version": rotation.policy.as_ref().map(|(p, _)| p.version),
                "freeze_resigned": rotation.freeze.as_ref().map(|(s, _)| s.sequence),
            }));
        }
        return Ok(());
    };
    let mut keys: Vec<SigningKey> = Vec::new();
    for public in &signers {
        let key = match unlocked.iter().find(|(k, _)| k == public) {
            Some((_, key)) => key.clone(),
            None => {
                let name = local_name(public).context("a signer is not held here")?;
                unlocker.unlock(&store, &name)?
            }
        };
        keys.push(key);
    }
    let keys: Vec<&SigningKey> = keys.iter().collect();
    let rotation = sign_rotation(
        current,
        &next,
        trust.policy.as_ref(),
        trust.freeze.as_ref(),
        &keys,
        now,
    )?;

    // 3. Publish: the policy and freeze statement first (valid under the
    // current root, and under the new one), then the root. The server and
    // the agents check a stored policy against the latest root, so at no
    // moment does the tenant hold a policy its latest root did not sign.
    if let Some((policy, signed)) = &rotation.policy {
        post_envelope(&session, &tenant, "policy", signed, otp)
            .await
            .with_context(|| {
                format!(
                    "publishing policy version {} (the current policy, signed by both roots); \
                     nothing was rotated: run this command again",
                    policy.version
                )
            })?;
    }
    if let Some((statement, signed)) = &rotation.freeze {
        post_envelope(&session, &tenant, "freeze", signed, otp)
            .await
            .with_context(|| {
                format!(
                    "publishing freeze statement {} (the kill switch as it is, signed by both \
                     roots); the root was not rotated: run this command again",
                    statement.sequence
                )
            })?;
    }
    post_envelope(&session, &tenant, "roots", &rotation.root, otp)
        .await
        .context("publishing the new trust root; it was not rotated: run this command again")?;

    // 4. What the server serves now, verified from the first root.
    let after = fetch_trust(&session, &tenant)
        .await
        .context("reading back the rotated trust")?;
    let root = after
        .root
        .as_ref()
        .context("the server does not show a trust root")?;
    ensure!(
        *root == next,
        "the server shows root version {} instead of the one just published",
        root.version
    );
    let local = store.list()?;
    let policy_version = after.policy.as_ref().map(|p| p.version);
    if json {
        return print_json(&json!({
            "tenant": tenant,
            "tenant_id": after.tenant_id,
            "root_fingerprint": after.fingerprint.map(hex::encode),
            "previous_root": root_json(current, &local),
            "root": root_json(root, &local),
            "dropped_keys": plan.dropped.iter().map(|k| json!({
                "name": k.name,
                "holder": holder_name(k.holder),
                "key_id": hex::encode(k.key.id().0),
            })).collect::<Vec<_>>(),
            "created_keys": created.iter().map(KeyInfo::to_json).collect::<Vec<_>>(),
            "policy_version": policy_version,
            "freeze_resigned": rotation.freeze.as_ref().map(|(s, _)| s.sequence),
        }));
    }
    println!(
        "Tenant {tenant}: trust root version {} published, signed by {} of the {} keys of version \
         {} and {} of its own {}.",
        root.version,
        current.threshold,
        current.keys.len(),
        current.version,
        root.threshold,
        root.keys.len()
    );
    println!();
    println!(
        "Root version {}: {} of {} keys must sign a policy or a new root.",
        root.version,
        root.threshold,
        root.keys.len()
    );
    for key in &root.keys {
        let status = if created.iter().any(|c| c.public_key == key.key) {
            "new"
        } else if plan.customers.iter().any(|c| c.key == key.key) {
            "added"
        } else {
            "kept"
        };
        let where_ = local.iter().find(|k| k.public_key == key.key).map_or_else(
            || "not on this machine".to_owned(),
            |k| format!("on this machine: {}", k.path.display()),
        );
        println!(
            "  {:<24} {:<8} {} {status:<5}  {where_}",
            key.name,
            holder_name(key.holder),
            key.key.id()
        );
    }
    for key in &plan.dropped {
        println!(
            "  {:<24} {:<8} {} dropped: signs nothing for this tenant once agents hold version {}",
            key.name,
            holder_name(key.holder),
            key.key.id(),
            root.version
        );
    }
    println!();
    if let Some(version) = policy_version {
        println!(
            "Policy version {version}: the same policy, re-signed so the new root's keys vouch for it."
        );
    }
    if let Some((statement, _)) = &rotation.freeze {
        println!(
            "Kill switch re-signed as sequence {} ({}).",
            statement.sequence,
            if statement.frozen {
                "still FROZEN"
            } else {
                "not frozen"
            }
        );
    }
    println!(
        "Agents take the new root over their normal connection (the root fingerprint they \
         pinned, {}, does not change): nothing to reinstall.",
        after
            .fingerprint
            .map_or_else(String::new, |f| grouped_hex(&f))
    );
    if !plan.dropped.is_empty() {
        println!(
            "Keep the dropped key files until every agent reports root version {} (`bulwark \
             policy show` shows the server's view), then destroy them.",
            root.version
        );
    }
    Ok(())
}
