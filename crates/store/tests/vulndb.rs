//! The vulnerability database's generations: each body runs against SQLite
//! and PostgreSQL (a fresh schema per test), like `siem.rs`.

#![allow(clippy::unwrap_used)]

use bulwark_store::{
    AuditAction, MSP_LOG, NewAuditEvent, NewVulnAdvisory, NewVulnAffected, Store, StoreError,
    VulnSeverity,
};

#[macro_use]
mod support;

both_backends! {
    an_import_is_invisible_until_it_switches_in,
    at_most_two_generations_are_kept,
    a_superseded_or_empty_import_cannot_switch_in,
}

const T0: i64 = 1_700_000_000_000;

fn advisory(id: &str, package: &str, fixed: &str) -> NewVulnAdvisory {
    NewVulnAdvisory {
        id: id.to_owned(),
        modified: "2024-09-04T05:12:25Z".to_owned(),
        published: None,
        aliases: vec![format!("CVE-{id}"), "CVE-x".to_owned()],
        summary: format!("{package} - security update"),
        affected: vec![NewVulnAffected {
            ecosystem: "Debian:12".to_owned(),
            package: package.to_owned(),
            ranges: format!(r#"{{"r":[[["i","0"],["f","{fixed}"]]]}}"#),
            severity: Some(VulnSeverity {
                kind: "CVSS_V3".to_owned(),
                vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N".to_owned(),
                score_tenths: Some(75),
                rating: Some("high".to_owned()),
            }),
        }],
    }
}

fn imported(records: i64) -> Vec<NewAuditEvent> {
    vec![
        NewAuditEvent::new(T0, "owner", AuditAction::VulnDbImported, "vulndb")
            .with_detail(format!("{records} advisories")),
    ]
}

async fn import(store: &Store, batch: &[NewVulnAdvisory]) -> i64 {
    let generation = store.vulndb_begin_import(T0, "owner").await.unwrap();
    store.vulndb_add_records(generation, batch).await.unwrap();
    store
        .vulndb_commit_import(generation, T0 + 1, imported)
        .await
        .unwrap();
    generation
}

async fn an_import_is_invisible_until_it_switches_in(store: Store) {
    assert!(store.vulndb_status().await.unwrap().current.is_none());
    let first = import(&store, &[advisory("DSA-1", "openssl", "3.0.15-1~deb12u1")]).await;
    let staging = store.vulndb_begin_import(T0, "owner").await.unwrap();
    store
        .vulndb_add_records(staging, &[advisory("DSA-2", "openssl", "3.0.16-1~deb12u1")])
        .await
        .unwrap();
    let seen = store
        .vulndb_candidates("Debian:12", "openssl")
        .await
        .unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].advisory_id, "DSA-1");
    assert_eq!(seen[0].aliases, ["CVE-DSA-1", "CVE-x"]);
    assert_eq!(seen[0].severity.as_ref().unwrap().score_tenths, Some(75));
    let status = store.vulndb_status().await.unwrap();
    assert_eq!(status.current.as_ref().unwrap().id, first);
    assert_eq!(status.ecosystems.len(), 1);
    assert_eq!(
        (
            status.ecosystems[0].advisories,
            status.ecosystems[0].packages
        ),
        (1, 1)
    );
    store
        .vulndb_commit_import(staging, T0 + 2, imported)
        .await
        .unwrap();
    let seen = store
        .vulndb_candidates("Debian:12", "openssl")
        .await
        .unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].advisory_id, "DSA-2");
    let status = store.vulndb_status().await.unwrap();
    assert_eq!(status.current.unwrap().id, staging);
    assert_eq!(status.previous.unwrap().id, first);
    // Each switch is in the MSP log.
    let head = store.log_head(MSP_LOG).await.unwrap();
    assert!(head.unwrap().size >= 2);
}

async fn at_most_two_generations_are_kept(store: Store) {
    for i in 0..4 {
        import(&store, &[advisory(&format!("DSA-{i}"), "curl", "8.0")]).await;
    }
    let generations =
        bulwark_store::testing::tamper(&store, "UPDATE vulndb_generations SET records = records")
            .await
            .unwrap();
    assert_eq!(generations, 2);
    let rows =
        bulwark_store::testing::tamper(&store, "UPDATE vulndb_advisories SET summary = summary")
            .await
            .unwrap();
    assert_eq!(rows, 2);
}

async fn a_superseded_or_empty_import_cannot_switch_in(store: Store) {
    let empty = store.vulndb_begin_import(T0, "owner").await.unwrap();
    assert!(matches!(
        store.vulndb_commit_import(empty, T0, imported).await,
        Err(StoreError::Invalid(_))
    ));
    let newer = store.vulndb_begin_import(T0, "owner").await.unwrap();
    assert!(matches!(
        store
            .vulndb_add_records(empty, &[advisory("A", "x", "1")])
            .await,
        Err(StoreError::NotFound)
    ));
    let twice = [advisory("A", "x", "1"), advisory("A", "y", "1")];
    assert!(matches!(
        store.vulndb_add_records(newer, &twice).await,
        Err(StoreError::Conflict(_))
    ));
    // The refused batch left nothing behind.
    store
        .vulndb_add_records(newer, &[advisory("A", "x", "1")])
        .await
        .unwrap();
    assert_eq!(
        store
            .vulndb_commit_import(newer, T0, imported)
            .await
            .unwrap(),
        1
    );
    assert!(store.vulndb_status().await.unwrap().current.is_some());
}
