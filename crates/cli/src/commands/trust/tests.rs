use super::*;

const NOW: u64 = 1_750_000_000;

fn key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

fn rich_policy() -> Policy {
    let mut policy = default_policy(
        "0b6e0c8e-0000-4000-8000-000000000001",
        "acme",
        vec![msp_operator("alice", public_of(&key()))],
        NOW,
    );
    policy.operators.push(OperatorKey {
        key: public_of(&key()),
        name: "customer ciso".into(),
        holder: Holder::Customer,
        classes: vec![ActionClass::OpenAdminShell, ActionClass::RestoreBackup],
    });
    policy
        .quorums
        .retain(|q| q.class != ActionClass::UpdateAgent);
    if let Some(q) = policy
        .quorums
        .iter_mut()
        .find(|q| q.class == ActionClass::RestoreBackup)
    {
        q.customer_required = true;
        q.in_window_only = true;
    }
    policy.allowed_scripts = vec![ScriptHash([7; 32]), ScriptHash([1; 32])];
    policy.maintenance_windows = vec![
        MaintenanceWindow {
            weekdays: 0b0100_0001,
            start_minute: 22 * 60 + 30,
            duration_minutes: 180,
        },
        MaintenanceWindow {
            weekdays: 0b0001_1111,
            start_minute: 0,
            duration_minutes: 60,
        },
    ];
    policy.fan_out_limit = 7;
    let witness =
        bulwark_translog::Cosigner::new("witness.example/acme", SigningKey::from_bytes(&[5; 32]))
            .expect("witness");
    policy.witnessing = Some(Witnessing {
        witnesses: vec![WitnessKey {
            vkey: witness.verifier().to_vkey(),
            url: Some("https://witness.example/acme".into()),
        }],
        threshold: 1,
        freshness_secs: 900,
    });
    policy.shell_notice = Some(ShellNotice {
        at_start: true,
        at_end: false,
        message: Some("Questions? Call 555-0100.".into()),
    });
    policy
}

#[test]
fn the_default_policy_is_what_a_security_officer_would_pick() {
    let operator = public_of(&key());
    let policy = default_policy(
        "t-1",
        "acme",
        vec![msp_operator("operator", operator.clone())],
        NOW,
    );
    assert_eq!(policy.tenant, "t-1");
    assert_eq!(policy.version, 1);
    assert_eq!(policy.expires_at, NOW + 365 * DAY);
    assert_eq!(policy.fan_out_limit, 25);
    assert!(policy.allowed_scripts.is_empty());
    assert!(policy.maintenance_windows.is_empty());
    assert_eq!(policy.operators.len(), 1);
    assert_eq!(policy.operators[0].key, operator);
    assert_eq!(policy.operators[0].holder, Holder::Msp);
    assert_eq!(policy.operators[0].classes, ALL_CLASSES.to_vec());
    let signers: Vec<(ActionClass, u32)> = policy
        .quorums
        .iter()
        .map(|q| (q.class, q.signers))
        .collect();
    assert_eq!(signers, DEFAULT_QUORUMS.to_vec());
    assert_eq!(
        policy
            .quorum(ActionClass::OpenAdminShell)
            .map(|q| q.signers),
        Some(2)
    );
    assert_eq!(
        policy.quorum(ActionClass::RunScript).map(|q| q.signers),
        Some(1)
    );
    assert!(
        policy
            .quorums
            .iter()
            .all(|q| !q.customer_required && !q.in_window_only)
    );
    // With one operator key, the two-signer classes cannot be approved: say so.
    let warnings = policy_warnings(&policy, NOW);
    assert_eq!(warnings.len(), 4, "{warnings:?}");
    assert!(
        warnings
            .iter()
            .all(|w| w.contains("needs 2 distinct signers"))
    );
}

#[test]
fn genesis_signs_a_root_and_policy_an_agent_accepts() {
    let root_keys = vec![
        ("root-acme-1".to_owned(), key()),
        ("root-acme-2".to_owned(), key()),
    ];
    let customer = public_of(&key());
    let operator = public_of(&key());
    let g = genesis(
        "tenant-id",
        "acme",
        2,
        &root_keys,
        &[("customer-1".to_owned(), customer.clone())],
        vec![msp_operator("operator", operator.clone())],
        NOW,
    )
    .expect("genesis");
    let limits = Limits::default();
    let root = TrustRoot::verify_pinned(&g.root, &g.fingerprint, "tenant-id", &limits)
        .expect("root verifies");
    assert_eq!(root.threshold, 2);
    assert_eq!(root.keys.len(), 3);
    assert_eq!(root.customer_keys().collect::<Vec<_>>(), vec![&customer]);
    let policy =
        Policy::verify_update(&root, None, &g.policy, NOW, &limits).expect("policy verifies");
    assert_eq!(policy.operators[0].key, operator);

    // What `policy show` does with the server's reply.
    let b64 = |s: &Signed| base64::engine::general_purpose::STANDARD.encode(s.to_bytes());
    let reply = TrustView {
        tenant_id: "tenant-id".into(),
        roots: vec![b64(&g.root)],
        policy: Some(b64(&g.policy)),
        root_fingerprint: Some(hex::encode(g.fingerprint)),
        ..TrustView::default()
    };
    let trust = verify_trust(&reply).expect("verify");
    assert_eq!(trust.policy.as_ref(), Some(&policy));
    assert_eq!(trust.freeze_state(), FreezeState::default());
    let text = render_trust("acme", &trust, &[], NOW);
    assert!(text.contains(&grouped_hex(&g.fingerprint)), "{text}");
    assert!(text.contains("open-admin-shell"), "{text}");

    // A server naming another fingerprint, or another tenant, is caught.
    let lying = TrustView {
        root_fingerprint: Some(hex::encode([0u8; 32])),
        ..reply
    };
    assert!(verify_trust(&lying).is_err());
    let other_tenant = TrustView {
        tenant_id: "other".into(),
        roots: vec![b64(&g.root)],
        ..TrustView::default()
    };
    assert!(verify_trust(&other_tenant).is_err());

    // Too high a threshold for the keys held here is refused.
    assert!(genesis("tenant-id", "acme", 3, &root_keys, &[], vec![], NOW).is_err());
}

#[test]
fn toml_round_trips_a_policy() {
    let policy = rich_policy();
    let text = policy_toml("acme", &policy.tenant, &policy, NOW).expect("toml");
    let doc: PolicyDoc = toml::from_str(&text).expect("parse");
    assert_eq!(doc, policy_to_doc(&policy, NOW));
    assert!(
        text.contains(
            "\nopen-admin-shell = { signers = 2, customer_required = false, in_window_only = false }\n"
        ),
        "{text}"
    );
    assert!(text.contains("start = \"22:30\""), "{text}");
    assert!(
        text.contains("[shell_notice]\nat_start = true\nat_end = false\nmessage = \"Questions? Call 555-0100.\"\n"),
        "{text}"
    );
    assert!(text.contains("\"sun\""), "{text}");
    let back = doc_to_policy(&doc, &policy.tenant, "acme", policy.version, NOW).expect("policy");
    assert_eq!(back, policy);
    // Signed as the next version, later.
    let next = doc_to_policy(&doc, &policy.tenant, "acme", 2, NOW + 10).expect("policy");
    assert_eq!(next.version, 2);
    assert_eq!(next.expires_at, policy.expires_at + 10);
}

#[test]
fn toml_mistakes_are_refused_with_a_reason() {
    let base = policy_to_doc(&rich_policy(), NOW);
    let tenant = "t";
    let check = |edit: &dyn Fn(&mut PolicyDoc), expected: &str| {
        let mut doc = base.clone();
        edit(&mut doc);
        let error = doc_to_policy(&doc, tenant, "acme", 2, NOW).expect_err(expected);
        assert!(format!("{error:#}").contains(expected), "{error:#}");
    };
    check(&|d| d.expires_in_days = 0, "expires_in_days");
    check(
        &|d| d.operators[0].classes.push("reboot".into()),
        "unknown action class",
    );
    check(
        &|d| d.operators[0].holder = "vendor".into(),
        "unknown holder",
    );
    check(&|d| d.operators[0].public_key = "abcd".into(), "64 hex");
    check(
        &|d| {
            let dup = d.operators[0].clone();
            d.operators.push(dup);
        },
        "already in the policy",
    );
    check(
        &|d| {
            d.quorums.insert(
                "run-script".into(),
                QuorumDoc {
                    signers: 0,
                    customer_required: false,
                    in_window_only: false,
                },
            );
        },
        "at least 1 signer",
    );
    check(
        &|d| d.maintenance_windows[0].start = "24:00".into(),
        "HH:MM",
    );
    check(
        &|d| d.maintenance_windows[0].days = vec!["funday".into()],
        "unknown day",
    );
    check(&|d| d.allowed_scripts.push("zz".into()), "SHA-256");
    check(
        &|d| {
            if let Some(n) = d.shell_notice.as_mut() {
                n.message = Some("call \u{1b}[2J now".into());
            }
        },
        "control character",
    );
    assert!(
        toml::from_str::<PolicyDoc>("expires_in_days = 1\nfan_out_limit = 1\ntypo = 3\n").is_err()
    );
}

#[test]
fn operators_are_added_and_removed_by_name() {
    let mut policy = rich_policy();
    let key = public_of(&key());
    add_operator(&mut policy.operators, msp_operator("bob", key.clone())).expect("add");
    assert!(add_operator(&mut policy.operators, msp_operator("bob2", key.clone())).is_err());
    let other = public_of(&super::tests::key());
    assert!(add_operator(&mut policy.operators, msp_operator("bob", other)).is_err());
    remove_operator(&mut policy, "bob").expect("remove");
    assert!(!policy.operators.iter().any(|o| o.key == key));
    let error = remove_operator(&mut policy, "bob").expect_err("gone");
    assert!(error.to_string().contains("alice"), "{error}");
}

#[test]
fn customers_freeze_alone_and_only_the_threshold_unfreezes() {
    let (msp1, msp2, customer) = (key(), key(), key());
    let root = TrustRoot {
        tenant: "t".into(),
        version: 1,
        threshold: 2,
        keys: vec![
            RootKey {
                key: public_of(&msp1),
                holder: Holder::Msp,
                name: "root-t-1".into(),
            },
            RootKey {
                key: public_of(&msp2),
                holder: Holder::Msp,
                name: "root-t-2".into(),
            },
            RootKey {
                key: public_of(&customer),
                holder: Holder::Customer,
                name: "customer-1".into(),
            },
        ],
    };
    let none = FreezeState::default();
    let (statement, _) =
        sign_freeze(&root, none, true, "incident".into(), &[&customer]).expect("freeze");
    assert_eq!((statement.sequence, statement.frozen), (1, true));
    assert_eq!(statement.tenant, "t");
    let frozen = FreezeState {
        sequence: 1,
        frozen: true,
    };
    assert!(sign_freeze(&root, none, true, "r".into(), &[&msp1]).is_err());
    assert!(sign_freeze(&root, frozen, false, "r".into(), &[&customer]).is_err());
    assert!(sign_freeze(&root, frozen, false, "r".into(), &[&msp1, &customer]).is_ok());
    let (statement, signed) =
        sign_freeze(&root, frozen, false, "over".into(), &[&msp1, &msp2]).expect("unfreeze");
    assert_eq!((statement.sequence, statement.frozen), (2, false));
    // What `policy show` makes of it.
    assert_eq!(
        FreezeState::default()
            .apply(&root, &signed, &Limits::default())
            .map(|s| s.sequence),
        Ok(2)
    );
}

#[test]
fn an_unlocker_tries_the_passphrases_it_was_given() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = KeyStore::open(dir.path().to_owned())
        .expect("store")
        .with_kdf(keys::KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        });
    let (a, _) = store
        .create_with("a", "operator", "first passphrase")
        .expect("a");
    let (b, _) = store
        .create_with("b", "operator", "second passphrase")
        .expect("b");
    let mut unlocker = Unlocker::default();
    unlocker.remember(zeroize::Zeroizing::new("first passphrase".to_owned()));
    unlocker.remember(zeroize::Zeroizing::new("second passphrase".to_owned()));
    for info in [a, b] {
        let key = unlocker.unlock(&store, &info.name).expect("unlock");
        assert_eq!(public_of(&key), info.public_key);
    }
}

fn root_key(name: &str, key: &SigningKey, holder: Holder) -> RootKey {
    RootKey {
        key: public_of(key),
        holder,
        name: name.into(),
    }
}

#[test]
fn a_rotation_plan_resolves_the_key_set() {
    let (a, b, c) = (key(), key(), key());
    let current = TrustRoot {
        tenant: "t".into(),
        version: 3,
        threshold: 1,
        keys: vec![
            root_key("root-acme-1", &a, Holder::Msp),
            root_key("root-acme-2", &b, Holder::Msp),
            root_key("customer-1", &c, Holder::Customer),
        ],
    };
    // a and b are held here (b under another local name); c is the customer's.
    let (pa, pb) = (public_of(&a), public_of(&b));
    let local = move |k: &PublicKey| {
        if *k == pa {
            Some("root-acme-1".to_owned())
        } else if *k == pb {
            Some("laptop-root".to_owned())
        } else {
            None
        }
    };
    let none = |_: &PublicKey| None;
    let names = |keys: &[RootKey]| keys.iter().map(|k| k.name.clone()).collect::<Vec<_>>();
    let s = |v: &[&str]| v.iter().map(|&x| x.to_owned()).collect::<Vec<_>>();
    let ask = RotationAsk {
        tenant: "acme",
        ..RotationAsk::default()
    };
    let error = |ask: &RotationAsk<'_>, local: &dyn Fn(&PublicKey) -> Option<String>| {
        format!(
            "{:#}",
            plan_rotation(&current, ask, local).expect_err("refused")
        )
    };

    // Two new keys, threshold 2, every old key kept by default.
    let plan = plan_rotation(
        &current,
        &RotationAsk {
            threshold: Some(2),
            new_root_keys: 2,
            ..ask
        },
        &local,
    )
    .expect("plan");
    assert_eq!(plan.version, 4);
    assert_eq!(plan.threshold, 2);
    assert_eq!(
        names(&plan.kept),
        s(&["root-acme-1", "root-acme-2", "customer-1"])
    );
    assert!(plan.dropped.is_empty());
    assert_eq!(plan.new_names, s(&["root-acme-4-1", "root-acme-4-2"]));

    // --drop by root name or by local name; --keep keeps only those named.
    let drop = s(&["root-acme-1", "laptop-root"]);
    let plan = plan_rotation(
        &current,
        &RotationAsk {
            new_root_keys: 1,
            drop: &drop,
            ..ask
        },
        &local,
    )
    .expect("plan");
    assert_eq!(names(&plan.kept), s(&["customer-1"]));
    assert_eq!(names(&plan.dropped), s(&["root-acme-1", "root-acme-2"]));
    assert_eq!(plan.threshold, 1, "the current threshold by default");
    let keep = s(&["customer-1"]);
    let by_keep = plan_rotation(
        &current,
        &RotationAsk {
            new_root_keys: 1,
            keep: &keep,
            ..ask
        },
        &local,
    )
    .expect("plan");
    assert_eq!(by_keep, plan);

    // A customer key added, named after the version; the next root is in order.
    let customer = public_of(&key());
    let customers = [customer.clone()];
    let plan = plan_rotation(
        &current,
        &RotationAsk {
            new_root_keys: 2,
            drop: &drop,
            customers: &customers,
            threshold: Some(2),
            ..ask
        },
        &local,
    )
    .expect("plan");
    let (new1, new2) = (public_of(&key()), public_of(&key()));
    let next = plan.root(
        &current,
        &[
            ("root-acme-4-1".into(), new1.clone()),
            ("root-acme-4-2".into(), new2),
        ],
    );
    assert_eq!((next.version, next.threshold), (4, 2));
    assert_eq!(
        next.keys
            .iter()
            .map(|k| (k.name.as_str(), k.holder))
            .collect::<Vec<_>>(),
        vec![
            ("customer-1", Holder::Customer),
            ("root-acme-4-1", Holder::Msp),
            ("root-acme-4-2", Holder::Msp),
            ("customer-4-1", Holder::Customer),
        ]
    );
    assert_eq!(next.keys[1].key, new1);
    assert_eq!(next.keys[3].key, customer);
    // Mistakes, each refused with a reason before anything is created.
    let unknown = s(&["nobody"]);
    let text = error(
        &RotationAsk {
            drop: &unknown,
            new_root_keys: 1,
            ..ask
        },
        &local,
    );
    assert!(
        text.contains("no key of that name") && text.contains("customer-1"),
        "{text}"
    );
    let existing = [public_of(&c)];
    let twice = [customer.clone(), customer.clone()];
    let all = s(&["root-acme-1", "root-acme-2", "customer-1"]);
    let mistakes = [
        (
            RotationAsk {
                customers: &existing,
                ..ask
            },
            "already root key customer-1",
        ),
        (
            RotationAsk {
                customers: &twice,
                ..ask
            },
            "twice",
        ),
        (
            RotationAsk {
                threshold: Some(5),
                new_root_keys: 1,
                ..ask
            },
            "needs at least 5 keys",
        ),
        (
            RotationAsk {
                threshold: Some(0),
                new_root_keys: 1,
                ..ask
            },
            "at least 1",
        ),
        (RotationAsk { drop: &all, ..ask }, "no keys"),
        (RotationAsk { ..ask }, "nothing would change"),
        (
            RotationAsk {
                new_root_keys: 17,
                ..ask
            },
            "at most 16",
        ),
    ];
    for (mistake, says) in &mistakes {
        let text = error(mistake, &local);
        assert!(text.contains(says), "{says:?}: {text}");
    }

    // Thresholds not held here are no longer refused by the plan: such
    // a rotation becomes a proposal (`rotate_root`).
    assert!(
        plan_rotation(
            &current,
            &RotationAsk {
                new_root_keys: 1,
                ..ask
            },
            &none,
        )
        .is_ok()
    );
}

#[test]
fn a_rotation_is_signed_by_both_thresholds_and_agents_accept_it() {
    let old = key();
    let g = genesis(
        "tenant-id",
        "acme",
        1,
        &[("root-acme-1".to_owned(), old.clone())],
        &[],
        vec![msp_operator("operator", public_of(&key()))],
        NOW,
    )
    .expect("genesis");
    let limits = Limits::default();
    let current =
        TrustRoot::verify_pinned(&g.root, &g.fingerprint, "tenant-id", &limits).expect("v1");
    let policy = Policy::verify_update(&current, None, &g.policy, NOW, &limits).expect("p1");
    // A freeze by the key about to be dropped: the new root would not verify it.
    let (_, freeze) = sign_freeze(
        &current,
        FreezeState::default(),
        true,
        "incident".into(),
        &[&old],
    )
    .expect("freeze");
    let freeze_view = FreezeView {
        statement: freeze.statement(&limits).expect("statement"),
        signed: freeze.clone(),
        verified: true,
    };

    let drop = vec!["root-acme-1".to_owned()];
    let old_public = public_of(&old);
    let plan = plan_rotation(
        &current,
        &RotationAsk {
            tenant: "acme",
            threshold: Some(2),
            new_root_keys: 2,
            drop: &drop,
            ..RotationAsk::default()
        },
        &|k: &PublicKey| (*k == old_public).then(|| "root-acme-1".to_owned()),
    )
    .expect("plan");
    let (n1, n2) = (key(), key());
    let next = plan.root(
        &current,
        &[
            (plan.new_names[0].clone(), public_of(&n1)),
            (plan.new_names[1].clone(), public_of(&n2)),
        ],
    );
    let everyone = [old.clone(), n1.clone(), n2.clone()];
    let signers = rotation_signers(&current, &next, &|k: &PublicKey| {
        everyone.iter().any(|s| public_of(s) == *k)
    })
    .expect("signers");
    assert_eq!(
        signers,
        vec![public_of(&old), public_of(&n1), public_of(&n2)]
    );
    // Not enough of the new root held here.
    assert!(rotation_signers(&current, &next, &|k: &PublicKey| *k != public_of(&n2)).is_err());

    let rotation = sign_rotation(
        &current,
        &next,
        Some(&policy),
        Some(&freeze_view),
        &[&old, &n1, &n2],
        NOW,
    )
    .expect("rotation");
    // An agent's view: the chain from the pinned root, then the policy and freeze.
    let (history, refused) = TrustHistory::replay(
        "tenant-id",
        Some(g.fingerprint),
        &[g.root.clone(), rotation.root.clone()],
        None,
        None,
        &limits,
    );
    assert_eq!(refused, vec![]);
    let root = history.root().expect("chain").clone();
    assert_eq!(root, next);
    let (resigned, signed) = rotation.policy.expect("policy re-signed");
    assert_eq!(resigned.version, 2);
    assert_eq!(
        Policy {
            version: 1,
            ..resigned.clone()
        },
        policy
    );
    // Published first, under the old root; still valid under the new one.
    Policy::verify_update(&current, Some(&policy), &signed, NOW, &limits).expect("old root");
    Policy::verify_update(&root, Some(&policy), &signed, NOW, &limits).expect("new root");
    // The old policy does not verify under the new root: why it is re-signed.
    assert_eq!(
        Policy::verify_update(&root, None, &g.policy, NOW, &limits),
        Err(Refusal::RootThresholdNotMet)
    );
    let (statement, freeze) = rotation.freeze.expect("freeze re-signed");
    assert_eq!((statement.sequence, statement.frozen), (2, true));
    assert_eq!(
        FreezeState::default().apply(&root, &freeze, &limits),
        Ok(FreezeState {
            sequence: 2,
            frozen: true
        })
    );

    // Without the old threshold, or without the new one: refused here.
    for keys in [vec![&n1, &n2], vec![&old, &n1], vec![&old]] {
        let error = sign_rotation(&current, &next, Some(&policy), None, &keys, NOW)
            .err()
            .expect("refused");
        assert!(
            error.to_string().contains("root_threshold_not_met"),
            "{error:#}"
        );
    }
    // Kept keys need no freeze re-signing.
    let plain =
        sign_rotation(&current, &next, None, None, &[&old, &n1, &n2], NOW).expect("rotation");
    assert!(plain.policy.is_none() && plain.freeze.is_none());
}

#[test]
fn classes_and_fingerprints_read_well() {
    for class in ALL_CLASSES {
        assert_eq!(parse_class(class_name(class)).ok(), Some(class));
    }
    assert!(parse_class("RunScript").is_err());
    assert_eq!(grouped_hex(&[0xab, 0xcd, 0xef, 0x01, 0x23]), "abcd ef01 23");
    assert_eq!(parse_minute("07:05").ok(), Some(425));
    assert!(parse_public_key(&"00".repeat(31)).is_err());
}
