//! The transparency logs' storage: each body below runs against SQLite (a
//! temporary file) and PostgreSQL (a fresh schema per test), like
//! `suite.rs`. The PostgreSQL half fails, never skips, when the server is
//! unreachable. Every proof the store serves is checked with the pure
//! crate's verifiers against a root computed from scratch.

#![allow(clippy::unwrap_used)]

use bulwark_store::AuditAction;
use bulwark_store::{
    AuditLeaf, LogCheckpoint, LogEntry, MSP_LOG, NewAuditEvent, Store, StoreError, TenantScope,
};
use bulwark_translog::{Hash, leaf_hash, root_of, verify_consistency, verify_inclusion};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[macro_use]
mod support;

both_backends! {
    log_appends_and_inclusion_proofs,
    log_consistency_proofs,
    log_concurrent_appenders,
    log_refuses_what_it_does_not_hold,
    log_checkpoints,
    audit_events_are_logged,
    audit_log_entry_rolls_back_with_its_change,
    log_archive_prunes_a_prefix,
}

const T0: i64 = 1_700_000_000_000;

fn leaf(log: &str, i: usize) -> Vec<u8> {
    format!("{log} entry {i}").into_bytes()
}

/// Appends `batches` (sizes) of fresh leaves to `log`, extending `leaves`,
/// and checks what each append reports.
async fn append(store: &Store, log: &str, leaves: &mut Vec<Vec<u8>>, batches: &[usize]) {
    for &n in batches {
        let batch: Vec<Vec<u8>> = (leaves.len()..leaves.len() + n)
            .map(|i| leaf(log, i))
            .collect();
        let appended = store
            .append_log_entries(log, &batch, T0 + leaves.len() as i64)
            .await
            .unwrap();
        assert_eq!(appended.first_idx, leaves.len() as u64);
        leaves.extend(batch);
        assert_eq!(appended.size, leaves.len() as u64);
        assert_eq!(Hash(appended.root), root_of(leaves));
    }
}

async fn check_inclusion(store: &Store, log: &str, leaves: &[Vec<u8>], idx: usize, size: usize) {
    let proof = store
        .inclusion_proof(log, idx as u64, size as u64)
        .await
        .unwrap();
    let proof: Vec<Hash> = proof.into_iter().map(Hash).collect();
    let root = root_of(&leaves[..size]);
    verify_inclusion(
        &leaf_hash(&leaves[idx]),
        idx as u64,
        size as u64,
        &proof,
        &root,
    )
    .unwrap_or_else(|e| panic!("inclusion of {idx} in {size}: {e}"));
    // A proof is at most ceil(log2(size)) hashes.
    assert!(proof.len() <= 64 - (size as u64 - 1).leading_zeros() as usize);
}

async fn log_appends_and_inclusion_proofs(store: Store) {
    let log = "tenant-a";
    assert_eq!(store.log_head(log).await.unwrap(), None);
    let mut leaves = Vec::new();
    append(&store, log, &mut leaves, &[1, 1, 2, 5, 13, 1, 47]).await;
    assert_eq!(leaves.len(), 70);

    // Every entry in every tree size up to 70, against roots from scratch.
    for size in 1..=70 {
        assert_eq!(
            Hash(store.log_root_at(log, size as u64).await.unwrap()),
            root_of(&leaves[..size])
        );
        for idx in 0..size {
            check_inclusion(&store, log, &leaves, idx, size).await;
        }
    }
    assert_eq!(
        Hash(store.log_root_at(log, 0).await.unwrap()),
        Hash::empty_tree()
    );

    // Larger trees, in batches of every shape, then random proofs.
    append(&store, log, &mut leaves, &[1000, 1, 999, 2, 1024, 500]).await;
    for _ in 0..20 {
        append(&store, log, &mut leaves, &[1]).await;
    }
    let n = leaves.len();
    let head = store.log_head(log).await.unwrap().unwrap();
    assert_eq!(head.size, n as u64);
    assert_eq!(Hash(head.root), root_of(&leaves));
    let mut rng = StdRng::seed_from_u64(6);
    for _ in 0..300 {
        let size = rng.gen_range(1..=n);
        let idx = rng.gen_range(0..size);
        check_inclusion(&store, log, &leaves, idx, size).await;
    }
    for idx in [0, 1, n / 2, n - 2, n - 1] {
        check_inclusion(&store, log, &leaves, idx, n).await;
    }

    // Entries come back as appended, page by page.
    let page = store.log_entries(log, 68, 5).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.idx).collect::<Vec<_>>(),
        [68, 69, 70, 71, 72]
    );
    assert_eq!(page[0].leaf, leaves[68]);
    assert_eq!(page[0].at, T0 + 23);
    let mut all = Vec::new();
    let mut from = 0;
    loop {
        let page = store.log_entries(log, from, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        from = last.idx + 1;
        all.extend(page.into_iter().map(|e: LogEntry| e.leaf));
    }
    assert_eq!(all, leaves);
    assert!(
        store
            .log_entries(log, u64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Another log is another tree.
    assert_eq!(store.log_head("tenant-b").await.unwrap(), None);
    assert!(
        store
            .log_entries("tenant-b", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn log_consistency_proofs(store: Store) {
    let log = "tenant-c";
    let mut leaves = Vec::new();
    append(
        &store,
        log,
        &mut leaves,
        &[3, 1, 16, 20, 1, 1, 1, 2000, 1, 77],
    )
    .await;
    let n = leaves.len();
    let roots: Vec<Hash> = (0..=n).map(|s| root_of(&leaves[..s])).collect();
    let check = |old: usize, new: usize, proof: Vec<[u8; 32]>| {
        let proof: Vec<Hash> = proof.into_iter().map(Hash).collect();
        verify_consistency(old as u64, new as u64, &roots[old], &roots[new], &proof)
            .unwrap_or_else(|e| panic!("consistency {old} -> {new}: {e}"));
    };
    // Every pair up to 40, then random pairs.
    for new in 1..=40 {
        for old in 1..=new {
            let proof = store
                .consistency_proof(log, old as u64, new as u64)
                .await
                .unwrap();
            check(old, new, proof);
        }
    }
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..300 {
        let new = rng.gen_range(1..=n);
        let old = rng.gen_range(1..=new);
        let proof = store
            .consistency_proof(log, old as u64, new as u64)
            .await
            .unwrap();
        check(old, new, proof);
    }
    for (old, new) in [(1, n), (n - 1, n), (1024, 2048), (2047, n), (n, n)] {
        let proof = store
            .consistency_proof(log, old as u64, new as u64)
            .await
            .unwrap();
        check(old, new, proof);
    }
}

async fn log_concurrent_appenders(store: Store) {
    let log = "tenant-d";
    let tasks: Vec<_> = (0..2)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for round in 0..40usize {
                    let batch: Vec<Vec<u8>> = (0..1 + round % 4)
                        .map(|i| format!("task {task} round {round} leaf {i}").into_bytes())
                        .collect();
                    let appended = store.append_log_entries(log, &batch, T0).await.unwrap();
                    assert_eq!(appended.size, appended.first_idx + batch.len() as u64);
                    mine.push((appended.first_idx, batch));
                    // Another log alongside, to interleave with.
                    store
                        .append_log_entries(&format!("other-{task}"), &[vec![task]], T0)
                        .await
                        .unwrap();
                }
                mine
            })
        })
        .collect();
    let mut placed: Vec<(u64, Vec<u8>)> = Vec::new();
    for task in tasks {
        for (first, batch) in task.await.unwrap() {
            placed.extend((first..).zip(batch));
        }
    }
    placed.sort();
    let n = placed.len();
    // No index lost or given twice: the reported indices are exactly 0..n.
    assert!(
        placed
            .iter()
            .enumerate()
            .all(|(i, (idx, _))| *idx == i as u64)
    );
    let expected: Vec<Vec<u8>> = placed.into_iter().map(|(_, leaf)| leaf).collect();
    let mut stored = Vec::new();
    for entry in store.log_entries(log, 0, 10_000).await.unwrap() {
        assert_eq!(entry.idx, stored.len() as u64);
        stored.push(entry.leaf);
    }
    assert_eq!(stored, expected);
    let head = store.log_head(log).await.unwrap().unwrap();
    assert_eq!(head.size, n as u64);
    assert_eq!(Hash(head.root), root_of(&expected));
    // The stored subtrees agree with the entries.
    for size in [1, n / 3, n / 2, n - 1, n] {
        assert_eq!(
            Hash(store.log_root_at(log, size as u64).await.unwrap()),
            root_of(&expected[..size])
        );
        for idx in [0, size / 2, size - 1] {
            check_inclusion(&store, log, &expected, idx, size).await;
        }
    }
    for task in 0..2u8 {
        let head = store
            .log_head(&format!("other-{task}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(head.size, 40);
    }
}

fn assert_invalid<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::Invalid(_))),
        "expected Invalid, got {result:?}"
    );
}

async fn log_refuses_what_it_does_not_hold(store: Store) {
    let log = "tenant-e";
    assert_invalid(store.append_log_entries(log, &[], T0).await);
    assert_eq!(store.log_head(log).await.unwrap(), None);
    assert_invalid(store.inclusion_proof(log, 0, 1).await);
    assert_invalid(store.log_root_at(log, 1).await);
    let mut leaves = Vec::new();
    append(&store, log, &mut leaves, &[10]).await;
    assert_invalid(store.inclusion_proof(log, 10, 10).await);
    assert_invalid(store.inclusion_proof(log, 3, 11).await);
    assert_invalid(store.inclusion_proof(log, 10, 11).await);
    assert_invalid(store.inclusion_proof(log, 0, u64::MAX).await);
    assert_invalid(store.consistency_proof(log, 0, 5).await);
    assert_invalid(store.consistency_proof(log, 6, 5).await);
    assert_invalid(store.consistency_proof(log, 5, 11).await);
    assert_invalid(store.log_root_at(log, 11).await);
    // A one-entry tree: the proof is empty; between equal sizes too.
    assert!(store.inclusion_proof(log, 0, 1).await.unwrap().is_empty());
    assert!(store.consistency_proof(log, 7, 7).await.unwrap().is_empty());
    // Nothing was changed by the refusals.
    assert_eq!(store.log_head(log).await.unwrap().unwrap().size, 10);
}

async fn log_checkpoints(store: Store) {
    let log = "tenant-f";
    assert_eq!(store.latest_checkpoint(log).await.unwrap(), None);
    // The empty tree may be checkpointed; a size the log lacks may not.
    store.add_checkpoint(log, 0, "note 0\n", T0).await.unwrap();
    assert_invalid(store.add_checkpoint(log, 1, "note 1\n", T0).await);
    let mut leaves = Vec::new();
    append(&store, log, &mut leaves, &[5]).await;
    store
        .add_checkpoint(log, 5, "note 5\n", T0 + 5)
        .await
        .unwrap();
    store
        .add_checkpoint(log, 3, "note 3\n", T0 + 6)
        .await
        .unwrap();
    assert!(matches!(
        store.add_checkpoint(log, 5, "other\n", T0 + 7).await,
        Err(StoreError::Conflict(_))
    ));
    assert_invalid(store.add_checkpoint(log, 6, "note 6\n", T0).await);
    let five = LogCheckpoint {
        log_id: log.to_owned(),
        size: 5,
        note: "note 5\n".to_owned(),
        at: T0 + 5,
    };
    assert_eq!(
        store.latest_checkpoint(log).await.unwrap(),
        Some(five.clone())
    );
    assert_eq!(store.checkpoint_at(log, 5).await.unwrap(), Some(five));
    assert_eq!(
        store.checkpoint_at(log, 3).await.unwrap().unwrap().note,
        "note 3\n"
    );
    assert_eq!(store.checkpoint_at(log, 4).await.unwrap(), None);
    assert_eq!(store.checkpoint_at(log, u64::MAX).await.unwrap(), None);
    assert_eq!(store.latest_checkpoint("tenant-g").await.unwrap(), None);
}

/// The leaves of `log`, decoded as audit events.
async fn audit_leaves(store: &Store, log: &str) -> Vec<AuditLeaf> {
    store
        .log_entries(log, 0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| AuditLeaf::decode(&e.leaf).unwrap())
        .collect()
}

async fn audit_events_are_logged(store: Store) {
    let tenant = store
        .create_tenant("acme", T0, |_| Vec::new())
        .await
        .unwrap();
    let msp_before = store.log_head(MSP_LOG).await.unwrap().map_or(0, |h| h.size);

    let in_tenant = NewAuditEvent::new(T0 + 1, "alice", AuditAction::JobCreated, "job-1")
        .in_tenant(Some(&tenant.id))
        .with_detail("{\"n\":1}");
    let msp_wide = NewAuditEvent::new(T0 + 2, "bob", AuditAction::LoginSucceeded, "bob");
    store.append_audit(in_tenant.clone()).await.unwrap();
    store.append_audit(msp_wide.clone()).await.unwrap();
    store.append_audit(in_tenant.clone()).await.unwrap();

    let leaves = audit_leaves(&store, &tenant.id).await;
    assert_eq!(leaves, [in_tenant.leaf(), in_tenant.leaf()]);
    assert_eq!(leaves[0].tenant.as_deref(), Some(tenant.id.as_str()));
    assert_eq!(leaves[0].detail, "{\"n\":1}");
    let msp = audit_leaves(&store, MSP_LOG).await;
    assert_eq!(msp.len() as u64, msp_before + 1);
    assert_eq!(msp.last(), Some(&msp_wide.leaf()));
    assert_eq!(msp.last().unwrap().tenant, None);

    // The leaf bytes are exactly the documented encoding, and the tree
    // commits to them.
    let entries = store.log_entries(&tenant.id, 0, 10).await.unwrap();
    assert_eq!(entries[0].leaf, in_tenant.leaf().encode());
    assert_eq!(entries[0].at, T0 + 1);
    let head = store.log_head(&tenant.id).await.unwrap().unwrap();
    assert_eq!(
        Hash(head.root),
        root_of(&[entries[0].leaf.clone(), entries[1].leaf.clone()])
    );

    // Events recorded by the store's own transactions are logged too.
    let before = store.log_head(MSP_LOG).await.unwrap().map_or(0, |h| h.size);
    let audit_before = store
        .list_audit(&TenantScope::All, None, 1000)
        .await
        .unwrap()
        .len();
    store
        .create_operator(
            &bulwark_store::NewOperator {
                username: "carol".to_owned(),
                password_hash: "$argon2id$x".to_owned(),
                totp_secret: "SECRET".to_owned(),
            },
            "owner",
            "test",
            T0 + 3,
        )
        .await
        .unwrap();
    let audit_after = store
        .list_audit(&TenantScope::All, None, 1000)
        .await
        .unwrap();
    let new_events = audit_after.len() - audit_before;
    assert!(new_events >= 1);
    let after = store.log_head(MSP_LOG).await.unwrap().unwrap().size;
    assert_eq!(after - before, new_events as u64);
    let last = audit_leaves(&store, MSP_LOG).await.pop().unwrap();
    assert_eq!(last.action, audit_after[0].action);
    assert_eq!(last.at, T0 + 3);
}

async fn audit_log_entry_rolls_back_with_its_change(store: Store) {
    let tenant = store
        .create_tenant("acme", T0, |_| Vec::new())
        .await
        .unwrap();
    let log = tenant.id.as_str();
    store
        .append_audit(
            NewAuditEvent::new(T0, "alice", AuditAction::TenantCreated, "x").in_tenant(Some(log)),
        )
        .await
        .unwrap();
    let before = store.log_head(log).await.unwrap().unwrap();

    // A change that fails after its event was recorded: the caller returns
    // the error and the transaction is dropped, so nothing remains.
    let failing = async {
        let mut tx = store.begin().await?;
        Store::append_audit_tx(
            &mut tx,
            &NewAuditEvent::new(T0 + 1, "alice", AuditAction::JobCreated, "x").in_tenant(Some(log)),
        )
        .await?;
        // The change itself, refused.
        Store::append_log_entries_tx(&mut tx, log, &[], T0 + 1).await?;
        tx.commit().await?;
        Ok::<(), StoreError>(())
    };
    assert_invalid(failing.await);
    assert_eq!(store.log_head(log).await.unwrap().unwrap(), before);
    assert_eq!(store.log_entries(log, 0, 10).await.unwrap().len(), 1);
    let actions: Vec<String> = store
        .list_audit(&TenantScope::All, Some(log), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["tenant.created"]);

    // The same change, succeeding: both commit together.
    let mut tx = store.begin().await.unwrap();
    let seq = Store::append_audit_tx(
        &mut tx,
        &NewAuditEvent::new(T0 + 2, "alice", AuditAction::JobApproved, "x").in_tenant(Some(log)),
    )
    .await
    .unwrap();
    let appended = Store::append_log_entries_tx(&mut tx, log, &[b"change".to_vec()], T0 + 2)
        .await
        .unwrap();
    assert_eq!(appended.first_idx, 2);
    // Not visible to others before the commit.
    assert_eq!(store.log_head(log).await.unwrap().unwrap(), before);
    tx.commit().await.unwrap();
    let head = store.log_head(log).await.unwrap().unwrap();
    assert_eq!(head.size, 3);
    assert_eq!(head.root, appended.root);
    let leaves = store.log_entries(log, 0, 10).await.unwrap();
    assert_eq!(
        AuditLeaf::decode(&leaves[1].leaf).unwrap().action,
        "job.approved"
    );
    assert_eq!(leaves[2].leaf, b"change");
    assert!(seq > 0);
}

/// Archiving removes a prefix of entries and nothing else: the head, every
/// subtree hash and every signed head stay, so proofs of archived entries
/// still verify; the prune moves `archived_below` only from where it was,
/// and records its event in the same transaction.
async fn log_archive_prunes_a_prefix(store: Store) {
    let log = "tenant-archive";
    let mut leaves = Vec::new();
    append(&store, log, &mut leaves, &[10, 7]).await;
    // Entries 0..10 at T0, 10..17 at T0 + 10 (see `append`).
    let head = store.log_head(log).await.unwrap().unwrap();
    assert_eq!(head.archived_below, 0);
    let root = head.root;
    store.add_checkpoint(log, 17, "note 17", T0).await.unwrap();

    // Candidates: from archived_below, appended before the cutoff.
    let c = store
        .archive_candidates(log, T0 + 5, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((c.archived_below, c.size), (0, 17));
    assert_eq!(
        c.entries.iter().map(|e| e.idx).collect::<Vec<_>>(),
        (0..10).collect::<Vec<u64>>()
    );
    assert_eq!(c.entries[3].leaf, leaves[3]);
    let limited = store
        .archive_candidates(log, T0 + 5, 4)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(limited.entries.len(), 4);
    assert_eq!(
        store
            .archive_candidates("no-such-log", T0, 4)
            .await
            .unwrap(),
        None
    );

    // Bad ranges change nothing.
    let event = |n: u64| {
        NewAuditEvent::new(T0 + 100, "server", AuditAction::LogArchived, log)
            .with_detail(format!("entries 0..{n}"))
    };
    assert!(matches!(
        store.prune_log_entries(log, 0, 0, &[event(0)]).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.prune_log_entries(log, 0, 18, &[event(18)]).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.prune_log_entries(log, 3, 6, &[event(6)]).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.log_entries(log, 0, 100).await.unwrap().len(), 17);

    let msp_before = store.log_head(MSP_LOG).await.unwrap().map_or(0, |h| h.size);
    assert_eq!(
        store
            .prune_log_entries(log, 0, 6, &[event(6)])
            .await
            .unwrap(),
        6
    );
    let head = store.log_head(log).await.unwrap().unwrap();
    assert_eq!((head.size, head.archived_below, head.root), (17, 6, root));
    let rest = store.log_entries(log, 0, 100).await.unwrap();
    assert_eq!(rest.first().unwrap().idx, 6);
    assert_eq!(rest.len(), 11);
    // The event is in the MSP log, in the same transaction.
    let msp = audit_leaves(&store, MSP_LOG).await;
    assert_eq!(msp.len() as u64, msp_before + 1);
    assert_eq!(msp.last().unwrap().action, "log.archived");

    // Proofs of archived entries still verify; the root at any size and
    // the frontier at the archived size are still there.
    for idx in 0..17 {
        check_inclusion(&store, log, &leaves, idx, 17).await;
    }
    let proof: Vec<Hash> = store
        .consistency_proof(log, 6, 17)
        .await
        .unwrap()
        .into_iter()
        .map(Hash)
        .collect();
    verify_consistency(6, 17, &root_of(&leaves[..6]), &root_of(&leaves), &proof).unwrap();
    let frontier = store.log_frontier_at(log, 6).await.unwrap();
    assert_eq!(frontier.len(), 2); // 6 = 4 + 2
    assert_eq!(
        bulwark_translog::tree::fold_frontier(&frontier.into_iter().map(Hash).collect::<Vec<_>>()),
        root_of(&leaves[..6])
    );
    assert!(store.checkpoint_at(log, 17).await.unwrap().is_some());

    // The next prune starts where the last ended; candidates too.
    let c = store
        .archive_candidates(log, T0 + 5, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.archived_below, 6);
    assert_eq!(c.entries.first().unwrap().idx, 6);
    assert!(matches!(
        store.prune_log_entries(log, 0, 8, &[event(8)]).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .prune_log_entries(log, 6, 10, &[event(10)])
            .await
            .unwrap(),
        4
    );
    // Appends go on after a prune.
    append(&store, log, &mut leaves, &[3]).await;
    let head = store.log_head(log).await.unwrap().unwrap();
    assert_eq!((head.size, head.archived_below), (20, 10));
    check_inclusion(&store, log, &leaves, 2, 20).await;
}
