//! `tenant init`, `policy show`, publishing a policy and the kill switch.

use super::*;

pub(super) async fn init(args: InitArgs) -> Result<()> {
    let InitArgs {
        tenant,
        threshold,
        root_keys,
        customer_keys,
        operator_keys,
        otp,
        json,
    } = args;
    let otp = otp.as_deref();

    // 1. Everything that can be refused is refused before anything is created.
    ensure!(
        (1..=16).contains(&root_keys),
        "--root-keys must be between 1 and 16"
    );
    ensure!(threshold >= 1, "--threshold must be at least 1");
    let customer_count = u32::try_from(customer_keys.len()).unwrap_or(u32::MAX);
    ensure!(
        threshold <= root_keys.saturating_add(customer_count),
        "a threshold of {threshold} needs at least {threshold} root keys, but there would be \
         {root_keys} on this machine and {customer_count} held by the customer"
    );
    let mut customers: Vec<(String, PublicKey)> = Vec::new();
    for (i, text) in customer_keys.iter().enumerate() {
        let key = parse_public_key(text).with_context(|| format!("--customer-key {text}"))?;
        ensure!(
            !customers.iter().any(|(_, k)| *k == key),
            "--customer-key {text} is given twice"
        );
        customers.push((format!("customer-{}", i + 1), key));
    }
    let total = usize::try_from(root_keys).unwrap_or(usize::MAX) + customers.len();
    ensure!(
        total <= Limits::default().max_root_keys,
        "a root may hold at most {} keys",
        Limits::default().max_root_keys
    );
    let store = KeyStore::open_default()?;
    let session = Session::load()?;
    let tenant_id = lookup_tenant_id(&session, &tenant).await?;
    let trust = fetch_trust(&session, &tenant).await?;
    ensure!(
        trust.tenant_id == tenant_id,
        "the server gives tenant {tenant} two ids ({tenant_id} and {})",
        trust.tenant_id
    );
    if let (Some(root), Some(policy)) = (&trust.root, &trust.policy) {
        bail!(
            "tenant {tenant} already has a trust root (version {}) and a policy (version {}): \
             change the policy with `bulwark policy …`",
            root.version,
            policy.version
        );
    }

    // Operator keys: existing local keys, or the default one, created below.
    let default_operator = operator_keys.is_empty();
    let mut operator_names: Vec<String> = Vec::new();
    if default_operator {
        operator_names.push(DEFAULT_OPERATOR_KEY.to_owned());
    }
    for name in operator_keys {
        if !operator_names.contains(&name) {
            operator_names.push(name);
        }
    }
    let mut operators: Vec<KeyInfo> = Vec::new();
    let mut create_operator = None;
    for name in &operator_names {
        if store.exists(name)? {
            operators.push(store.info(name)?);
        } else if default_operator {
            store.check_new(name, "operator")?;
            create_operator = Some(name.clone());
        } else {
            bail!(
                "no key named {name} on this machine: create it with `bulwark keys new --name {name}`"
            );
        }
    }

    // Root keys: new ones (reusing keys a failed earlier run made for this
    // tenant), or, if the root is on the server already, the local threshold.
    let role = format!("root:{tenant_id}");
    let mut root_slots: Vec<RootSlot> = Vec::new();
    match &trust.root {
        Some(root) => {
            if !json {
                eprintln!(
                    "Tenant {tenant} already has a trust root (version {}): signing its first \
                     policy with it (--threshold, --root-keys and --customer-key are ignored).",
                    root.version
                );
            }
        }
        None => {
            for i in 1..=root_keys {
                let name = format!("root-{tenant}-{i}");
                if store.exists(&name)? {
                    let info = store.info(&name)?;
                    ensure!(
                        info.role == role,
                        "a key named {name} already exists for something else (role {}); \
                         move {} away first",
                        info.role,
                        info.path.display()
                    );
                    root_slots.push(RootSlot::Reuse(info));
                } else {
                    store.check_new(&name, &role)?;
                    root_slots.push(RootSlot::Create(name));
                }
            }
        }
    }

    // 2. One passphrase for every key this command creates.
    let mut unlocker = Unlocker::new();
    let creates =
        create_operator.is_some() || root_slots.iter().any(|s| matches!(s, RootSlot::Create(_)));
    let passphrase = if creates {
        Some(new_passphrase(&mut unlocker, json, "new keys")?)
    } else {
        None
    };
    let mut created: Vec<KeyInfo> = Vec::new();
    if let (Some(name), Some(passphrase)) = (&create_operator, &passphrase) {
        let (info, _) = store.create_with(name, "operator", passphrase)?;
        created.push(info.clone());
        operators.push(info);
    }
    let policy_operators: Vec<OperatorKey> = operators
        .iter()
        .map(|k| msp_operator(&k.name, k.public_key.clone()))
        .collect();
    let now = unix_now();

    // 3. Sign and publish.
    let mut published_fingerprint = trust.fingerprint;
    match &trust.root {
        None => {
            let mut signers: Vec<(String, SigningKey)> = Vec::new();
            for slot in root_slots {
                match slot {
                    RootSlot::Reuse(info) => {
                        let key = unlocker.unlock(&store, &info.name)?;
                        signers.push((info.name, key));
                    }
                    RootSlot::Create(name) => {
                        let passphrase = passphrase
                            .as_ref()
                            .context("no passphrase for the new root keys")?;
                        let (info, key) = store.create_with(&name, &role, passphrase)?;
                        created.push(info);
                        signers.push((name, key));
                    }
                }
            }
            if usize::try_from(threshold).unwrap_or(usize::MAX) > signers.len() {
                // The first root must be signed by its own threshold, and
                // this machine does not hold it: the other holders co-sign
                // it, then this command, run again, signs the first policy
                // (a proposal too).
                let root = first_root(&tenant_id, threshold, &signers, &customers);
                let mut signed = Signed::new(&root);
                for (_, key) in &signers {
                    signed.sign(key);
                }
                let id = propose(
                    &session,
                    &tenant,
                    &signed,
                    "Trust root version 1",
                    signers.len(),
                    root.threshold(),
                    otp,
                )
                .await?;
                println!();
                println!(
                    "Root fingerprint (agents pin it at enrolment; compare it with the customer's copy):"
                );
                println!("  {}", grouped_hex(&root_fingerprint(&signed)));
                println!(
                    "Once proposal {id} is published, run `bulwark tenant init --tenant {tenant}` \
                     again here: it signs the first policy, which needs the same co-signers."
                );
                return Ok(());
            }
            let genesis = genesis(
                &tenant_id,
                &tenant,
                threshold,
                &signers,
                &customers,
                policy_operators,
                now,
            )?;
            published_fingerprint = Some(genesis.fingerprint);
            post_envelope(&session, &tenant, "roots", &genesis.root, otp)
                .await
                .context("publishing the trust root")?;
            // The root signed here is this machine's pin of the tenant.
            let path = crate::pins::record_tenant(
                session.server(),
                &tenant,
                &crate::pins::TenantPin {
                    tenant_id: tenant_id.clone(),
                    root: genesis.fingerprint,
                },
            )?;
            println!(
                "Pinned tenant {tenant} with trust root {} in {}.",
                fingerprint_text(&genesis.fingerprint),
                path.display()
            );
            post_envelope(&session, &tenant, "policy", &genesis.policy, otp)
                .await
                .context(
                    "the trust root is published, but not the first policy; run this command again",
                )?;
        }
        Some(root) => {
            let (keys, complete) = held_signing_keys(&store, root, &mut unlocker)?;
            let keys: Vec<&SigningKey> = keys.iter().collect();
            let policy = default_policy(&tenant_id, &tenant, policy_operators, now);
            if !complete {
                let mut signed = Signed::new(&policy);
                for key in &keys {
                    signed.sign(key);
                }
                for info in &operators {
                    if let Err(error) = keys::register(&session, info).await {
                        eprintln!(
                            "warning: {error:#}; run `bulwark keys register --name {}`",
                            info.name
                        );
                    }
                }
                propose(
                    &session,
                    &tenant,
                    &signed,
                    "Policy version 1",
                    keys.len(),
                    root.threshold(),
                    otp,
                )
                .await?;
                return Ok(());
            }
            let signed = sign_policy(root, None, &policy, &keys, now)?;
            post_envelope(&session, &tenant, "policy", &signed, otp)
                .await
                .context("publishing the first policy")?;
        }
    }

    // 4. The operator keys sign jobs as this account.
    let mut registration = Vec::new();
    for info in &operators {
        match keys::register(&session, info).await {
            Ok(Registered::New(_)) => registration.push((info.name.clone(), "registered")),
            Ok(Registered::Already) => {
                registration.push((info.name.clone(), "already registered"));
            }
            Err(error) => {
                eprintln!(
                    "warning: {error:#}; run `bulwark keys register --name {}`",
                    info.name
                );
                registration.push((info.name.clone(), "not registered"));
            }
        }
    }

    // 5. What the server serves now, verified from scratch.
    let trust = fetch_trust(&session, &tenant)
        .await
        .context("reading back the published trust")?;
    let root = trust
        .root
        .as_ref()
        .context("the server does not show the trust root just published")?;
    let fingerprint = trust
        .fingerprint
        .context("the server does not show the trust root just published")?;
    ensure!(
        Some(fingerprint) == published_fingerprint,
        "the server shows another trust root than the one just published (fingerprint {})",
        grouped_hex(&fingerprint)
    );
    let policy = trust
        .policy
        .as_ref()
        .context("the server does not show the policy just published")?;
    let local = store.list()?;
    let local_name = |key: &PublicKey| {
        local
            .iter()
            .find(|k| k.public_key == *key)
            .map(|k| (k.name.clone(), k.path.display().to_string()))
    };
    if json {
        return print_json(&json!({
            "tenant": tenant,
            "tenant_id": tenant_id,
            "root_fingerprint": hex::encode(fingerprint),
            "root": root_json(root, &local),
            "policy_version": policy.version,
            "policy_expires_at": policy.expires_at,
            "created_keys": created.iter().map(KeyInfo::to_json).collect::<Vec<_>>(),
            "operator_keys": registration.iter().map(|(name, state)| json!({"name": name, "registration": state})).collect::<Vec<_>>(),
        }));
    }
    println!("Tenant {tenant} (id {tenant_id}) has a trust root and a policy.");
    println!();
    println!("Root fingerprint (agents pin it at enrolment; compare it with the customer's copy):");
    println!("  {}", grouped_hex(&fingerprint));
    println!();
    println!(
        "Root version {}: {} of {} keys must sign a policy or a new root.",
        root.version,
        root.threshold,
        root.keys.len()
    );
    for key in &root.keys {
        let where_ = local_name(&key.key).map_or_else(
            || "held by the customer".to_owned(),
            |(_, path)| format!("on this machine: {path}"),
        );
        println!(
            "  {:<20} {:<8} {}  {where_}",
            key.name,
            holder_name(key.holder),
            key.key.id()
        );
    }
    println!();
    println!(
        "Policy version {}, expires {}; operator keys (every class):",
        policy.version,
        date_text(policy.expires_at)
    );
    for (name, state) in &registration {
        let path = store.path_of(name)?;
        println!("  {name:<20} {state}, {}", path.display());
    }
    let warnings = policy_warnings(policy, now);
    for warning in &warnings {
        println!("Note: {warning}.");
    }
    if warnings.iter().any(|w| w.contains("distinct signers")) {
        println!(
            "      Authorise a second person's key with `bulwark policy add-operator --tenant {tenant} …`."
        );
    }
    println!();
    println!(
        "Keep the root key files offline when you can: whoever holds {} of them controls what \
         this tenant's agents accept.",
        root.threshold
    );
    Ok(())
}

pub(super) enum RootSlot {
    Reuse(KeyInfo),
    Create(String),
}

pub(super) async fn show(tenant: &str, json: bool, toml: bool) -> Result<()> {
    let session = Session::load()?;
    let trust = fetch_trust(&session, tenant).await?;
    let local = KeyStore::open_default()?.list()?;
    let now = unix_now();
    if toml {
        let policy = trust.policy.as_ref().with_context(|| {
            format!(
                "tenant {tenant} has no policy yet: run `bulwark tenant init --tenant {tenant}`"
            )
        })?;
        print!("{}", policy_toml(tenant, &trust.tenant_id, policy, now)?);
        return Ok(());
    }
    if json {
        return print_json(&trust_json(tenant, &trust, &local, now));
    }
    print!("{}", render_trust(tenant, &trust, &local, now));
    Ok(())
}

/// The current policy, to be changed and published as the next version.
pub(super) fn next_policy(trust: &Trust, tenant: &str) -> Result<Policy> {
    let mut policy = trust.policy.clone().with_context(|| {
        format!("tenant {tenant} has no policy yet: run `bulwark tenant init --tenant {tenant}`")
    })?;
    ensure!(
        policy.expires_at > unix_now(),
        "tenant {tenant}'s policy expired {}: write a new one with `bulwark policy show --tenant \
         {tenant} --toml > policy.toml`, set expires_in_days, then `bulwark policy sign`",
        date_text(policy.expires_at)
    );
    policy.version += 1;
    // Agents refuse jobs that name the tenant otherwise (RFD 0005).
    policy.tenant_name = Some(tenant.to_owned());
    Ok(policy)
}

pub(super) async fn publish_policy(
    session: &Session,
    tenant: &str,
    trust: &Trust,
    policy: &Policy,
    otp: Option<&str>,
) -> Result<()> {
    let root = trust.root.as_ref().with_context(|| {
        format!(
            "tenant {tenant} has no trust root yet: run `bulwark tenant init --tenant {tenant}`"
        )
    })?;
    let now = unix_now();
    let warnings = policy_warnings(policy, now);
    let store = KeyStore::open_default()?;
    let mut unlocker = Unlocker::new();
    let (keys, complete) = held_signing_keys(&store, root, &mut unlocker)?;
    let keys: Vec<&SigningKey> = keys.iter().collect();
    if !complete {
        let mut signed = Signed::new(policy);
        for key in &keys {
            signed.sign(key);
        }
        propose(
            session,
            tenant,
            &signed,
            &format!("Policy version {}", policy.version),
            keys.len(),
            root.threshold(),
            otp,
        )
        .await?;
        for warning in warnings {
            println!("Note: {warning}.");
        }
        return Ok(());
    }
    let signed = sign_policy(root, trust.policy.as_ref(), policy, &keys, now)?;
    post_envelope(session, tenant, "policy", &signed, otp)
        .await
        .context("publishing the policy")?;
    println!(
        "Published policy version {} for tenant {tenant} (expires {}); agents apply it when they next hear from the server.",
        policy.version,
        date_text(policy.expires_at)
    );
    for warning in warnings {
        println!("Note: {warning}.");
    }
    Ok(())
}

pub(super) async fn kill_switch(
    tenant: &str,
    frozen: bool,
    key: Option<&str>,
    reason: String,
    otp: Option<&str>,
) -> Result<()> {
    let reason = reason.trim().to_owned();
    ensure!(!reason.is_empty(), "--reason is empty: say why");
    ensure!(reason.len() <= 4096, "--reason is longer than 4096 bytes");
    let session = Session::load()?;
    let trust = fetch_trust(&session, tenant).await?;
    let root = trust.root.as_ref().with_context(|| {
        format!(
            "tenant {tenant} has no trust root yet: run `bulwark tenant init --tenant {tenant}`"
        )
    })?;
    let current = trust.freeze_state();
    ensure!(
        frozen || current.frozen,
        "tenant {tenant} is not frozen (sequence {})",
        current.sequence
    );
    let store = KeyStore::open_default()?;
    let mut unlocker = Unlocker::new();
    let keys = match key {
        Some(name) => {
            let info = store.info(name)?;
            let Some(root_key) = root.keys.iter().find(|k| k.key == info.public_key) else {
                bail!("key {name} is not one of tenant {tenant}'s root keys");
            };
            if root_key.holder == Holder::Msp && root.threshold() > 1 {
                bail!(
                    "key {name} is an MSP root key: only a customer-held root key freezes alone; \
                     otherwise {} root keys must sign (leave out --key to use those held here)",
                    root.threshold()
                );
            }
            (vec![unlocker.unlock(&store, name)?], true)
        }
        None => held_signing_keys(&store, root, &mut unlocker)?,
    };
    let (keys, complete) = keys;
    let keys: Vec<&SigningKey> = keys.iter().collect();
    if !complete {
        let statement = FreezeStatement {
            tenant: root.tenant.clone(),
            sequence: current.sequence + 1,
            frozen,
            reason,
        };
        let mut signed = Signed::new(&statement);
        for key in &keys {
            signed.sign(key);
        }
        let what = if frozen { "A freeze" } else { "An unfreeze" };
        propose(
            &session,
            tenant,
            &signed,
            &format!("{what} (sequence {})", statement.sequence),
            keys.len(),
            root.threshold(),
            otp,
        )
        .await?;
        return Ok(());
    }
    let (statement, signed) = sign_freeze(root, current, frozen, reason, &keys)?;
    // The root chain the witnesses check it from, read before the server
    // hears of the statement (RFD 0006).
    let chain = witness_freeze::root_chain(&session, tenant, &trust).await;
    let published = post_envelope(&session, tenant, "freeze", &signed, otp)
        .await
        .context("publishing the freeze statement");
    if published.is_ok() && frozen {
        println!(
            "Tenant {tenant} is frozen (sequence {}): its agents refuse every job from the moment \
             they receive this, until the root threshold unfreezes it.",
            statement.sequence
        );
    } else if published.is_ok() {
        println!(
            "Tenant {tenant} is unfrozen (sequence {}): its agents accept jobs again under the policy.",
            statement.sequence
        );
    }
    // Whatever the server did: a server that refuses or drops the freeze
    // must not keep it from the witnesses.
    witness_freeze::give_to_witnesses(tenant, &trust, chain, &signed, frozen).await;
    published
}

/// The next freeze (or unfreeze) statement after `current`, signed by
/// `keys` and checked as an agent would check it.
pub(super) fn sign_freeze(
    root: &TrustRoot,
    current: FreezeState,
    frozen: bool,
    reason: String,
    keys: &[&SigningKey],
) -> Result<(FreezeStatement, Signed)> {
    let statement = FreezeStatement {
        tenant: root.tenant.clone(),
        sequence: current.sequence + 1,
        frozen,
        reason,
    };
    let mut signed = Signed::new(&statement);
    for key in keys {
        signed.sign(key);
    }
    current
        .apply(root, &signed, &Limits::default())
        .map_err(refused("the freeze statement"))?;
    Ok((statement, signed))
}
