//! State that holds across nodes (RFD 0018): passkey ceremonies, device
//! sign-ins, duty leases and node heartbeats. Each body below runs against
//! SQLite (a temporary file) and PostgreSQL (a fresh schema per test), like
//! `suite.rs`. The PostgreSQL half fails, never skips, when the server is
//! unreachable.

#![allow(clippy::unwrap_used)]

use bulwark_store::{
    CeremonyBudgets, CeremonyOwner, DeviceAnswer, DeviceSignIn, DeviceStartRefused, Lease,
    NewCeremony, Store, StoreError,
};

#[macro_use]
mod support;

both_backends! {
    a_ceremony_is_answered_once,
    ceremony_budgets_give_way_oldest_first,
    a_device_sign_in_is_answered_and_taken_once,
    device_sign_ins_are_limited_per_address_and_in_all,
    leases_follow_the_pure_rule,
    two_nodes_claiming_at_once_get_one_lease,
    a_dead_node_is_seen_by_the_others,
}

const T0: i64 = 1_700_000_000_000;
const TTL: i64 = 180_000;

const BUDGETS: CeremonyBudgets = CeremonyBudgets {
    logins: 6,
    logins_per_address: 3,
    logins_per_username: 2,
    sessions: 3,
    per_session: 2,
};

fn id(n: u32) -> [u8; 32] {
    let mut id = [0xee; 32];
    id[..4].copy_from_slice(&n.to_be_bytes());
    id
}

fn login(n: u32, addr: &str, username: &str, at: i64) -> NewCeremony {
    NewCeremony {
        id_hash: id(n),
        challenge: id(n + 1_000_000),
        purpose: format!("login:{username}"),
        owner: CeremonyOwner::Login {
            addr: addr.to_owned(),
            username: username.to_owned(),
        },
        created_at: at,
        expires_at: at + TTL,
    }
}

fn session(n: u32, session: u8, at: i64) -> NewCeremony {
    NewCeremony {
        id_hash: id(n),
        challenge: id(n + 1_000_000),
        purpose: format!("step-up:{session}"),
        owner: CeremonyOwner::Session([session; 32]),
        created_at: at,
        expires_at: at + TTL,
    }
}

/// Which of ceremonies `ns` wait, looked up behind the store's back (a
/// take would delete them): an update that changes nothing counts them.
async fn waiting(store: &Store, ns: &[u32]) -> Vec<bool> {
    let mut out = Vec::new();
    for n in ns {
        let hex: String = id(*n).iter().map(|b| format!("{b:02x}")).collect();
        let literal = match store.backend() {
            bulwark_store::Backend::Sqlite => format!("x'{hex}'"),
            bulwark_store::Backend::Postgres => format!("'\\x{hex}'::bytea"),
        };
        let sql = format!("UPDATE auth_ceremonies SET purpose = purpose WHERE id_hash = {literal}");
        out.push(bulwark_store::testing::tamper(store, &sql).await.unwrap() == 1);
    }
    out
}

async fn a_ceremony_is_answered_once(store: Store) {
    store
        .start_ceremony(&login(1, "addr:a", "dana", T0), &BUDGETS)
        .await
        .unwrap();
    let taken = store.take_ceremony(&id(1)).await.unwrap().unwrap();
    assert_eq!(taken.challenge, id(1_000_001));
    assert_eq!(taken.purpose, "login:dana");
    assert_eq!(taken.expires_at, T0 + TTL);
    // A replayed answer finds nothing, through this node or any other.
    assert_eq!(store.take_ceremony(&id(1)).await.unwrap(), None);
    assert_eq!(store.take_ceremony(&id(2)).await.unwrap(), None);

    // Many answers of one ceremony at once: exactly one gets it.
    store
        .start_ceremony(&login(3, "addr:a", "dana", T0), &BUDGETS)
        .await
        .unwrap();
    let mut answers = Vec::new();
    for _ in 0..8 {
        let s = store.clone();
        answers.push(tokio::spawn(async move {
            s.take_ceremony(&id(3)).await.unwrap()
        }));
    }
    let mut got = 0;
    for a in answers {
        got += usize::from(a.await.unwrap().is_some());
    }
    assert_eq!(got, 1);

    // The same id twice is a conflict, not a second row.
    store
        .start_ceremony(&login(4, "addr:a", "dana", T0), &BUDGETS)
        .await
        .unwrap();
    assert!(matches!(
        store
            .start_ceremony(&login(4, "addr:b", "erin", T0), &BUDGETS)
            .await,
        Err(StoreError::Conflict(_))
    ));
    // A purpose too long to keep is refused.
    let mut long = login(5, "addr:a", "dana", T0);
    long.purpose = "x".repeat(513);
    assert!(matches!(
        store.start_ceremony(&long, &BUDGETS).await,
        Err(StoreError::Invalid(_))
    ));
    // Expired ceremonies leave at the next start, and at the sweep.
    store
        .start_ceremony(&login(6, "addr:c", "finn", T0 + TTL), &BUDGETS)
        .await
        .unwrap();
    assert_eq!(waiting(&store, &[4, 6]).await, [false, true]);
    assert_eq!(store.sweep_sign_in_state(T0 + 2 * TTL, 0).await.unwrap(), 1);
    assert_eq!(store.ceremony_count().await.unwrap(), 0);
}

async fn ceremony_budgets_give_way_oldest_first(store: Store) {
    // A username over its budget: the oldest of that name from the same
    // address goes first, else the name's oldest.
    store
        .start_ceremony(&login(1, "addr:a", "dana", T0), &BUDGETS)
        .await
        .unwrap();
    store
        .start_ceremony(&login(2, "addr:b", "dana", T0 + 1), &BUDGETS)
        .await
        .unwrap();
    store
        .start_ceremony(&login(3, "addr:b", "dana", T0 + 2), &BUDGETS)
        .await
        .unwrap();
    assert_eq!(waiting(&store, &[1, 2, 3]).await, [true, false, true]);
    store
        .start_ceremony(&login(4, "addr:c", "dana", T0 + 3), &BUDGETS)
        .await
        .unwrap();
    assert_eq!(waiting(&store, &[1, 3, 4]).await, [false, true, true]);

    // An address over its budget loses its own oldest; others keep theirs.
    store
        .start_ceremony(&login(10, "addr:x", "n10", T0 + 10), &BUDGETS)
        .await
        .unwrap();
    store
        .start_ceremony(&login(11, "addr:x", "n11", T0 + 11), &BUDGETS)
        .await
        .unwrap();
    store
        .start_ceremony(&login(12, "addr:x", "n12", T0 + 12), &BUDGETS)
        .await
        .unwrap();
    store
        .start_ceremony(&login(13, "addr:x", "n13", T0 + 13), &BUDGETS)
        .await
        .unwrap();
    assert_eq!(
        waiting(&store, &[3, 4, 10, 11, 12, 13]).await,
        [true, true, false, true, true, true]
    );
    // All logins over their budget (6): the oldest login of all goes.
    store
        .start_ceremony(&login(20, "addr:y", "n20", T0 + 20), &BUDGETS)
        .await
        .unwrap();
    store
        .start_ceremony(&login(21, "addr:z", "n21", T0 + 21), &BUDGETS)
        .await
        .unwrap();
    assert_eq!(
        waiting(&store, &[3, 4, 11, 12, 13, 20, 21]).await,
        [false, true, true, true, true, true, true]
    );

    // Signed-in ceremonies have their own budgets, which logins never use.
    store
        .start_ceremony(&session(30, 1, T0 + 30), &BUDGETS)
        .await
        .unwrap();
    store
        .start_ceremony(&session(31, 1, T0 + 31), &BUDGETS)
        .await
        .unwrap();
    store
        .start_ceremony(&session(32, 1, T0 + 32), &BUDGETS)
        .await
        .unwrap();
    assert_eq!(waiting(&store, &[30, 31, 32]).await, [false, true, true]);
    for n in 40..50 {
        store
            .start_ceremony(
                &login(n, &format!("addr:{n}"), &format!("n{n}"), T0 + 40),
                &BUDGETS,
            )
            .await
            .unwrap();
    }
    assert_eq!(waiting(&store, &[31, 32]).await, [true, true]);
    store
        .start_ceremony(&session(50, 2, T0 + 50), &BUDGETS)
        .await
        .unwrap();
    store
        .start_ceremony(&session(51, 3, T0 + 51), &BUDGETS)
        .await
        .unwrap();
    assert_eq!(
        waiting(&store, &[31, 32, 50, 51]).await,
        [false, true, true, true]
    );
    assert_eq!(
        store.ceremony_count().await.unwrap(),
        BUDGETS.logins + BUDGETS.sessions
    );
}

fn request(n: u8, ip: &str, code: &str, at: i64) -> DeviceSignIn {
    DeviceSignIn {
        device_hash: [n; 32],
        user_code: code.to_owned(),
        ip: ip.to_owned(),
        user_agent: "bulwark-cli".to_owned(),
        created_at: at,
        expires_at: at + 600_000,
        interval_ms: 5_000,
        last_poll_at: None,
        answer: DeviceAnswer::Pending,
    }
}

async fn a_device_sign_in_is_answered_and_taken_once(store: Store) {
    let asked = request(1, "192.0.2.1", "BCDF-GHJK", T0);
    store
        .start_device_sign_in(&asked, 0, 4, 10)
        .await
        .unwrap()
        .unwrap();
    // A user code in use is a conflict (the server draws another).
    assert!(matches!(
        store
            .start_device_sign_in(&request(2, "192.0.2.1", "BCDF-GHJK", T0), 0, 4, 10)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let found = store
        .device_sign_in_by_code("BCDF-GHJK")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, asked);
    assert_eq!(
        store.device_sign_in(&[1; 32]).await.unwrap(),
        Some(asked.clone())
    );
    // Still pending: taking it gives nothing.
    assert_eq!(store.take_device_sign_in(&found).await.unwrap(), None);
    store
        .record_device_poll(&[1; 32], T0 + 1, 10_000)
        .await
        .unwrap();
    let polled = store.device_sign_in(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(
        (polled.last_poll_at, polled.interval_ms),
        (Some(T0 + 1), 10_000)
    );

    let approved = DeviceAnswer::Approved {
        operator_id: "op".into(),
        passkey_id: "pk".into(),
        approved_at: T0 + 5,
    };
    // Expired: no answer.
    assert!(
        !store
            .answer_device_sign_in("BCDF-GHJK", &approved, T0 + 600_000)
            .await
            .unwrap()
    );
    assert!(
        store
            .answer_device_sign_in("BCDF-GHJK", &approved, T0 + 5)
            .await
            .unwrap()
    );
    // Answered once: a denial after the approval changes nothing.
    assert!(
        !store
            .answer_device_sign_in("BCDF-GHJK", &DeviceAnswer::Denied, T0 + 6)
            .await
            .unwrap()
    );
    let seen = store.device_sign_in(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(seen.answer, approved);
    // Two polls at once (two nodes): one session.
    let (a, b) = tokio::join!(
        store.take_device_sign_in(&seen),
        store.take_device_sign_in(&seen)
    );
    assert_eq!(
        usize::from(a.unwrap().is_some()) + usize::from(b.unwrap().is_some()),
        1
    );
    assert_eq!(store.device_sign_in(&[1; 32]).await.unwrap(), None);

    // A denial is taken once too.
    store
        .start_device_sign_in(&request(3, "192.0.2.1", "CDFG-HJKL", T0), 0, 4, 10)
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .answer_device_sign_in("CDFG-HJKL", &DeviceAnswer::Denied, T0 + 1)
            .await
            .unwrap()
    );
    let seen = store.device_sign_in(&[3; 32]).await.unwrap().unwrap();
    assert_eq!(
        store
            .take_device_sign_in(&seen)
            .await
            .unwrap()
            .unwrap()
            .answer,
        DeviceAnswer::Denied
    );
    assert_eq!(store.take_device_sign_in(&seen).await.unwrap(), None);
}

async fn device_sign_ins_are_limited_per_address_and_in_all(store: Store) {
    let codes = [
        "BBBB-BBBB",
        "CCCC-CCCC",
        "DDDD-DDDD",
        "FFFF-FFFF",
        "GGGG-GGGG",
        "HHHH-HHHH",
    ];
    for (n, code) in codes.iter().take(2).enumerate() {
        let n = u8::try_from(n).unwrap();
        store
            .start_device_sign_in(&request(n, "192.0.2.1", code, T0), 0, 2, 4)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(
        store
            .start_device_sign_in(&request(9, "192.0.2.1", codes[2], T0), 0, 2, 4)
            .await
            .unwrap(),
        Err(DeviceStartRefused::Address)
    );
    for (n, code) in codes.iter().enumerate().skip(2).take(2) {
        let n = u8::try_from(n).unwrap();
        store
            .start_device_sign_in(&request(n, &format!("192.0.2.{n}"), code, T0), 0, 2, 4)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(
        store
            .start_device_sign_in(&request(9, "198.51.100.1", codes[4], T0), 0, 2, 4)
            .await
            .unwrap(),
        Err(DeviceStartRefused::Total)
    );
    // Once they expire they count no more, and are forgotten later.
    let later = T0 + 600_000;
    store
        .start_device_sign_in(&request(9, "192.0.2.1", codes[5], later), 0, 2, 4)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.sweep_sign_in_state(later, later + 1).await.unwrap(),
        4
    );
    assert!(store.device_sign_in(&[9; 32]).await.unwrap().is_some());
}

async fn leases_follow_the_pure_rule(store: Store) {
    // A fixed walk through claims by three nodes; the store must agree
    // with `Lease::claim` at every step.
    let steps: [(&str, i64); 12] = [
        ("a", 0),
        ("b", 1_000),
        ("a", 5_000),
        ("b", 19_999),
        ("b", 20_000),
        ("a", 20_001),
        ("c", 35_000),
        ("a", 40_000),
        ("c", 41_000),
        ("b", 56_000),
        ("b", 56_001),
        ("a", 56_002),
    ];
    let mut model: Option<Lease> = None;
    for (node, at) in steps {
        let expect = Lease::claim(model.as_ref(), "alert-mail", node, T0 + at, 15_000);
        let got = store
            .claim_lease("alert-mail", node, T0 + at, 15_000)
            .await
            .unwrap();
        assert_eq!(got, expect, "{node} at {at}");
        if got.is_some() {
            model = got;
        }
        assert_eq!(store.lease("alert-mail").await.unwrap(), model);
    }
    let held = model.unwrap();
    assert_eq!((held.holder.as_str(), held.fencing), ("b", 4));
    assert!(store.lease_holds(&held, T0 + 56_001).await.unwrap());
    // An old token, another holder, or an expired lease does not hold.
    let old = Lease {
        fencing: 3,
        ..held.clone()
    };
    assert!(!store.lease_holds(&old, T0 + 56_001).await.unwrap());
    assert!(!store.lease_holds(&held, held.expires_at).await.unwrap());
    // A release by a stale token changes nothing; the holder's lets the
    // next claim take over at once, with the next token.
    store.release_lease(&old, T0 + 56_002).await.unwrap();
    assert_eq!(
        store
            .claim_lease("alert-mail", "c", T0 + 56_003, 15_000)
            .await
            .unwrap(),
        None
    );
    store.release_lease(&held, T0 + 56_004).await.unwrap();
    let next = store
        .claim_lease("alert-mail", "c", T0 + 56_004, 15_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((next.holder.as_str(), next.fencing), ("c", 5));
    // Duties are independent.
    let other = store
        .claim_lease("siem:x", "a", T0, 15_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.fencing, 1);

    // Whoever owns the database can hand the lease to anyone: that gets it
    // at most the duty (sending mail twice), never an agent's trust.
    bulwark_store::testing::tamper(
        &store,
        "UPDATE duty_leases SET holder = 'z', fencing = fencing + 10 WHERE duty = 'alert-mail'",
    )
    .await
    .unwrap();
    assert!(!store.lease_holds(&next, T0 + 56_005).await.unwrap());
}

async fn two_nodes_claiming_at_once_get_one_lease(store: Store) {
    let mut last: Option<Lease> = None;
    for round in 0..5_i64 {
        let at = T0 + round * 100_000;
        let mut claims = Vec::new();
        for node in ["a", "b", "c", "d"] {
            let s = store.clone();
            claims.push(tokio::spawn(async move {
                s.claim_lease("offline-watch", node, at, 15_000)
                    .await
                    .unwrap()
            }));
        }
        let mut won = Vec::new();
        for c in claims {
            if let Some(lease) = c.await.unwrap() {
                won.push(lease);
            }
        }
        assert_eq!(won.len(), 1, "round {round}: {won:?}");
        // The token moves by one when the holder changes, not otherwise.
        let expect = match &last {
            None => 1,
            Some(l) if l.holder == won[0].holder => l.fencing,
            Some(l) => l.fencing + 1,
        };
        assert_eq!(won[0].fencing, expect, "round {round}");
        last = Some(won[0].clone());
    }
}

async fn a_dead_node_is_seen_by_the_others(store: Store) {
    assert_eq!(
        store.node_heartbeat("a", T0, T0 + 10_000).await.unwrap(),
        None
    );
    assert_eq!(
        store.node_heartbeat("b", T0, T0 + 10_000).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .node_heartbeat("a", T0 + 3_000, T0 + 13_000)
            .await
            .unwrap(),
        Some(T0 + 10_000)
    );
    let dead: Vec<String> = store
        .expired_nodes(T0 + 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.node)
        .collect();
    assert_eq!(dead, ["b"]);
    // b comes back: it learns it had expired.
    assert_eq!(
        store
            .node_heartbeat("b", T0 + 11_000, T0 + 21_000)
            .await
            .unwrap(),
        Some(T0 + 10_000)
    );
    assert!(store.expired_nodes(T0 + 12_000).await.unwrap().is_empty());
    // A node leaving is forgotten at once; long-dead ones later.
    assert_eq!(store.forget_nodes(T0, Some("a")).await.unwrap(), 1);
    assert_eq!(store.forget_nodes(T0 + 21_001, None).await.unwrap(), 1);
    assert!(store.expired_nodes(i64::MAX).await.unwrap().is_empty());
}
