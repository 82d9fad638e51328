//! The archiver in process, on a real SQLite store and data directory: a
//! large due prefix is archived, verified and pruned (the rate is printed),
//! and an archive that cannot be written removes nothing.

use std::time::Instant;

use bulwark_server::transparency_log::checkpoints::LogSigner;
use bulwark_server::transparency_log::retention::{ARCHIVE_README, archive_due};
use bulwark_store::testing::sqlite_test_url;
use bulwark_store::{MSP_LOG, Store};
use bulwark_translog::NoteSigner;

const DAY: i64 = 86_400_000;
const T0: i64 = 1_700_000_000_000;
const LOG: &str = "4f8c7f1e-0000-4000-8000-000000000001";

fn signer() -> LogSigner {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    LogSigner::from_signer(NoteSigner::new("localhost/bulwark-log", key).expect("a key name"))
}

async fn fill(store: &Store, from: usize, n: usize, at: i64) {
    let leaves: Vec<Vec<u8>> = (from..from + n)
        .map(|i| format!("entry {i}").into_bytes())
        .collect();
    for chunk in leaves.chunks(5000) {
        store
            .append_log_entries(LOG, chunk, at)
            .await
            .expect("append");
    }
}

#[tokio::test]
async fn a_due_prefix_is_archived_verified_and_pruned() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::open(&sqlite_test_url(dir.path()))
        .await
        .expect("open");
    let signer = signer();
    const OLD: usize = 30_000;
    fill(&store, 0, OLD, T0).await;
    fill(&store, OLD, 1000, T0 + 300 * DAY).await;

    // Nothing is due yet at T0 + 364 days.
    let none = archive_due(&signer, &store, dir.path(), 365, &[], T0 + 364 * DAY)
        .await
        .expect("archive");
    assert!(none.is_empty());

    let started = Instant::now();
    let done = archive_due(&signer, &store, dir.path(), 365, &[], T0 + 400 * DAY)
        .await
        .expect("archive");
    let elapsed = started.elapsed();
    eprintln!(
        "archived {OLD} entries in {elapsed:.2?}: {:.0} entries/s (write, fsync, read back, verify, prune)",
        OLD as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].from, done[0].below), (0, OLD as u64));
    let archive = dir
        .path()
        .join("archive")
        .join(LOG)
        .join(format!("0-{}", OLD - 1));
    assert_eq!(done[0].dir, archive);
    assert_eq!(
        std::fs::read_to_string(archive.join("README.txt")).expect("README"),
        ARCHIVE_README
    );
    let lines = std::fs::read_to_string(archive.join("entries.ndjson")).expect("entries");
    assert_eq!(lines.lines().count(), OLD);
    let head = store.log_head(LOG).await.expect("head").expect("a log");
    assert_eq!(
        (head.size, head.archived_below),
        (OLD as u64 + 1000, OLD as u64)
    );
    assert_eq!(
        store.log_entries(LOG, 0, 1).await.expect("entries")[0].idx,
        OLD as u64
    );
    assert!(
        store
            .checkpoint_at(LOG, OLD as u64)
            .await
            .expect("head")
            .is_some()
    );
    let msp = store.log_entries(MSP_LOG, 0, 1000).await.expect("msp log");
    let event = bulwark_store::AuditLeaf::decode(&msp.last().expect("an event").leaf)
        .expect("an audit leaf");
    assert_eq!(
        (event.action.as_str(), event.target.as_str()),
        ("log.archived", LOG)
    );
    assert!(
        event.detail.contains(&format!("entries 0..{}", OLD - 1)),
        "{}",
        event.detail
    );

    // Run again at the same time: nothing more is due.
    let again = archive_due(&signer, &store, dir.path(), 365, &[], T0 + 400 * DAY)
        .await
        .expect("archive");
    assert!(again.is_empty());
    store.close().await;
}

#[tokio::test]
async fn an_archive_that_cannot_be_written_removes_nothing() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::open(&sqlite_test_url(dir.path()))
        .await
        .expect("open");
    fill(&store, 0, 50, T0).await;
    // `archive` is a file, not a directory.
    std::fs::write(dir.path().join("archive"), b"in the way").expect("write");
    let failed = archive_due(&signer(), &store, dir.path(), 180, &[], T0 + 400 * DAY).await;
    assert!(failed.is_err());
    let head = store.log_head(LOG).await.expect("head").expect("a log");
    assert_eq!(head.archived_below, 0);
    assert_eq!(
        store.log_entries(LOG, 0, 100).await.expect("entries").len(),
        50
    );
    store.close().await;
}

/// A SIEM sink that has not acknowledged an entry holds it in the database,
/// however old: archiving stops at the slowest configured sink's cursor.
#[tokio::test]
async fn entries_not_yet_exported_to_a_siem_stay() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::open(&sqlite_test_url(dir.path()))
        .await
        .expect("open");
    let signer = signer();
    fill(&store, 0, 100, T0).await;
    let sinks = ["soc".to_owned(), "archive".to_owned()];
    store
        .advance_siem_cursor("soc", LOG, 60, T0)
        .await
        .expect("cursor");
    store
        .advance_siem_cursor("archive", LOG, 40, T0)
        .await
        .expect("cursor");

    let done = archive_due(&signer, &store, dir.path(), 365, &sinks, T0 + 400 * DAY)
        .await
        .expect("archive");
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].from, done[0].below), (0, 40));

    // Once both sinks caught up, the rest goes too.
    for sink in &sinks {
        store
            .advance_siem_cursor(sink, LOG, 100, T0)
            .await
            .expect("cursor");
    }
    let done = archive_due(&signer, &store, dir.path(), 365, &sinks, T0 + 400 * DAY)
        .await
        .expect("archive");
    assert_eq!((done[0].from, done[0].below), (40, 100));
    store.close().await;
}
