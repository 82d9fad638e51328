//! The agent release mirror (RFD 0017): each body runs against SQLite and
//! PostgreSQL (a fresh schema per test), like `vulndb.rs`.

#![allow(clippy::unwrap_used)]

use bulwark_store::{AuditAction, MSP_LOG, NewAuditEvent, ReleaseFileKind, Store};

#[macro_use]
mod support;

both_backends! {
    files_are_kept_byte_for_byte_and_replaced_by_name,
}

const T0: i64 = 1_700_000_000_000;

fn event(path: &str) -> NewAuditEvent {
    NewAuditEvent::new(T0, "owner", AuditAction::ReleaseImported, path)
}

async fn files_are_kept_byte_for_byte_and_replaced_by_name(store: Store) {
    let kind = ReleaseFileKind::Metadata;
    assert_eq!(
        store.release_file(kind, "timestamp.json").await.unwrap(),
        None
    );
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    store
        .put_release_file(
            ReleaseFileKind::Target,
            "bulwark-agent/0.2.0/ab.x",
            &binary,
            T0,
            &event("t"),
        )
        .await
        .unwrap();
    store
        .put_release_file(
            kind,
            "timestamp.json",
            b"{\"v\":1}",
            T0,
            &event("timestamp.json"),
        )
        .await
        .unwrap();
    store
        .put_release_file(
            kind,
            "timestamp.json",
            b"{\"v\":2}",
            T0 + 1,
            &event("timestamp.json"),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .release_file(kind, "timestamp.json")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"{\"v\":2}"[..])
    );
    assert_eq!(
        store
            .release_file(ReleaseFileKind::Target, "bulwark-agent/0.2.0/ab.x")
            .await
            .unwrap(),
        Some(binary)
    );
    // A target is not metadata of the same name.
    assert_eq!(
        store
            .release_file(kind, "bulwark-agent/0.2.0/ab.x")
            .await
            .unwrap(),
        None
    );
    // Every import is in the MSP log.
    let head = store.log_head(MSP_LOG).await.unwrap();
    assert!(head.unwrap().size >= 3);
}
