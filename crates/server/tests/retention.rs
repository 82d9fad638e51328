//! The archiver in process, on a real SQLite store and data directory: a
//! large due prefix is archived, verified and pruned (the rate is printed),
//! and an archive that cannot be written removes nothing. Then the attacker
//! who holds the database (SQLite and PostgreSQL): `log_entries.at` edited
//! to make fresh entries look old archives none of them (retention reads
//! the time signed inside each leaf), edited the other way keeps none, and
//! a leaf that cannot be trusted stops its log's archiving there.

use std::time::Instant;

use bulwark_server::transparency_log::checkpoints::LogSigner;
use std::path::Path;

use bulwark_server::transparency_log::retention::{
    ARCHIVE_README, Archived, Refused, RetentionRun, archive_due,
};
use bulwark_store::testing::{postgres_test_url, sqlite_test_url, tamper};
use bulwark_store::{AuditLeaf, MSP_LOG, Store};
use bulwark_translog::NoteSigner;

const DAY: i64 = 86_400_000;
const T0: i64 = 1_700_000_000_000;
const LOG: &str = "4f8c7f1e-0000-4000-8000-000000000001";

fn signer() -> LogSigner {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    LogSigner::from_signer(NoteSigner::new("localhost/bulwark-log", key).expect("a key name"))
}

/// An audit event leaf of `log` signed at `at` (what the server appends).
fn audit_leaf(log: &str, i: usize, at: i64) -> Vec<u8> {
    let tenant = (log != MSP_LOG).then(|| log.to_owned());
    AuditLeaf::new(at, tenant, "test", "test.entry", format!("entry {i}"), "").encode()
}

/// Appends entries `from..from + n` to `LOG`, each an audit event leaf
/// signed at `at`, appended at `at` (the `log_entries.at` column).
async fn fill(store: &Store, from: usize, n: usize, at: i64) {
    fill_log(store, LOG, from, n, at).await;
}

async fn fill_log(store: &Store, log: &str, from: usize, n: usize, at: i64) {
    let leaves: Vec<Vec<u8>> = (from..from + n).map(|i| audit_leaf(log, i, at)).collect();
    for chunk in leaves.chunks(5000) {
        store
            .append_log_entries(log, chunk, at)
            .await
            .expect("append");
    }
}

/// What a run archived, as `(log, from, below)`.
fn ranges(run: &RetentionRun) -> Vec<(&str, u64, u64)> {
    run.archived
        .iter()
        .map(|a: &Archived| (a.log_id.as_str(), a.from, a.below))
        .collect()
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
    assert_eq!(none, RetentionRun::default());

    let started = Instant::now();
    let run = archive_due(&signer, &store, dir.path(), 365, &[], T0 + 400 * DAY)
        .await
        .expect("archive");
    let elapsed = started.elapsed();
    assert!(run.refused.is_empty(), "{:?}", run.refused);
    let done = run.archived;
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
        (OLD as u64 + 1001, OLD as u64),
        "the archived log gained its own log.archived entry"
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
    let root = store.log_root_at(LOG, OLD as u64).await.expect("root");
    assert_eq!(
        bulwark_api::log::parse_archived_detail(&event.detail),
        Some((0, OLD as u64, root)),
        "{}",
        event.detail
    );
    // The same entry in the archived log itself, for its own auditor.
    let own = store
        .log_entries(LOG, OLD as u64 + 1000, 1)
        .await
        .expect("own log");
    let own = bulwark_store::AuditLeaf::decode(&own[0].leaf).expect("an audit leaf");
    assert_eq!(own.action, "log.archived");
    assert_eq!(own.tenant.as_deref(), Some(LOG));
    assert_eq!(
        bulwark_api::log::parse_archived_detail(&own.detail),
        Some((0, OLD as u64, root))
    );

    // Run again at the same time: nothing more is due.
    let again = archive_due(&signer, &store, dir.path(), 365, &[], T0 + 400 * DAY)
        .await
        .expect("archive");
    assert_eq!(again, RetentionRun::default());
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
    assert_eq!(ranges(&done), [(LOG, 0, 40)]);

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
    assert_eq!(ranges(&done), [(LOG, 40, 100)]);
    store.close().await;
}

/// Runs each `async fn test(store: &Store, data_dir: &Path)` named on
/// SQLite (a temporary file) and on PostgreSQL (a fresh schema in the
/// database `bulwark_store::testing` names; fails, never skips, when that
/// server is unreachable).
macro_rules! both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    let dir = tempfile::tempdir().expect("temporary directory");
                    let store = bulwark_store::Store::open(&super::sqlite_test_url(dir.path()))
                        .await
                        .expect("open");
                    super::$test(&store, dir.path()).await;
                    store.close().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    let dir = tempfile::tempdir().expect("temporary directory");
                    let (url, guard) = super::postgres_test_url().await.unwrap_or_else(|error| {
                        panic!(
                            "PostgreSQL is required for these tests (set BULWARK_TEST_POSTGRES_URL; \
                             default postgres://postgres@127.0.0.1:5432/test): {error:?}"
                        )
                    });
                    let store = bulwark_store::Store::open(&url).await.expect("open");
                    super::$test(&store, dir.path()).await;
                    store.close().await;
                    guard.drop().await;
                }
            )*
        }
    };
}

both_backends! {
    fresh_entries_made_to_look_old_in_the_database_stay,
    old_entries_made_to_look_fresh_in_the_database_still_go,
    an_entry_that_cannot_be_trusted_stops_its_log,
}

const OTHER: &str = "4f8c7f1e-0000-4000-8000-000000000002";
const THIRD: &str = "4f8c7f1e-0000-4000-8000-000000000003";
const FOURTH: &str = "4f8c7f1e-0000-4000-8000-000000000004";
/// When the tests below run the archiver.
const NOW: i64 = T0 + 400 * DAY;

fn sorted(mut ranges: Vec<(&str, u64, u64)>) -> Vec<(&str, u64, u64)> {
    ranges.sort();
    ranges
}

async fn archived_below(store: &Store, log: &str) -> u64 {
    store
        .log_head(log)
        .await
        .expect("head")
        .expect("a log")
        .archived_below
}

async fn first_held(store: &Store, log: &str) -> Option<u64> {
    let entries = store.log_entries(log, 0, 1).await.expect("entries");
    entries.first().map(|e| e.idx)
}

/// The auditor's finding (issue 14): with the database in hand, setting
/// `log_entries.at` back made fresh entries due at once. Retention reads
/// the time signed inside each leaf, so only the entries signed long ago
/// go, and fresh ones go when their own time comes.
async fn fresh_entries_made_to_look_old_in_the_database_stay(store: &Store, data_dir: &Path) {
    let signer = signer();
    // LOG: 20 entries signed 400 days ago, 30 signed 10 days ago.
    fill(store, 0, 20, T0).await;
    fill(store, 20, 30, NOW - 10 * DAY).await;
    // OTHER: 10 entries signed yesterday.
    fill_log(store, OTHER, 0, 10, NOW - DAY).await;

    // The attacker makes every entry of both logs look 800 days old.
    let changed = tamper(
        store,
        &format!(
            "UPDATE log_entries SET at = {} WHERE log_id IN ('{LOG}', '{OTHER}')",
            NOW - 800 * DAY
        ),
    )
    .await
    .expect("tamper");
    assert_eq!(changed, 60);

    let run = archive_due(&signer, store, data_dir, 365, &[], NOW)
        .await
        .expect("archive");
    assert_eq!(
        ranges(&run),
        [(LOG, 0, 20)],
        "only the entries signed 400 days ago go"
    );
    assert!(run.refused.is_empty(), "{:?}", run.refused);
    assert_eq!(archived_below(store, LOG).await, 20);
    assert_eq!(first_held(store, LOG).await, Some(20));
    assert_eq!(
        store.log_entries(LOG, 0, 100).await.expect("entries").len(),
        31,
        "30 kept, and the log's own log.archived entry"
    );
    assert_eq!(archived_below(store, OTHER).await, 0);
    assert_eq!(
        store
            .log_entries(OTHER, 0, 100)
            .await
            .expect("entries")
            .len(),
        10
    );
    assert!(!data_dir.join("archive").join(OTHER).exists());

    // Again: nothing more.
    let again = archive_due(&signer, store, data_dir, 365, &[], NOW)
        .await
        .expect("archive");
    assert_eq!(again, RetentionRun::default());

    // A year later, by their own signed times, the rest goes (and the
    // `log.archived` events the first run appended to the MSP log and to
    // the archived log itself, its entry 50).
    let later = archive_due(&signer, store, data_dir, 365, &[], NOW + 400 * DAY)
        .await
        .expect("archive");
    assert_eq!(
        sorted(ranges(&later)),
        sorted(vec![(LOG, 20, 51), (OTHER, 0, 10), (MSP_LOG, 0, 1)])
    );
    assert!(later.refused.is_empty(), "{:?}", later.refused);
}

/// The reverse edit (`log_entries.at` set far in the future, to keep
/// entries in the database forever) changes nothing either: the column is
/// not read, and entries signed long ago go on time.
async fn old_entries_made_to_look_fresh_in_the_database_still_go(store: &Store, data_dir: &Path) {
    fill(store, 0, 20, T0).await;
    tamper(
        store,
        &format!(
            "UPDATE log_entries SET at = {} WHERE log_id = '{LOG}'",
            NOW + 100 * 365 * DAY
        ),
    )
    .await
    .expect("tamper");
    let run = archive_due(&signer(), store, data_dir, 365, &[], NOW)
        .await
        .expect("archive");
    assert_eq!(ranges(&run), [(LOG, 0, 20)]);
    assert!(run.refused.is_empty(), "{:?}", run.refused);
    // Only the log's own log.archived entry is left.
    assert_eq!(first_held(store, LOG).await, Some(20));
}

/// An entry retention cannot trust stops its log there, loudly (logged and
/// returned as refused at every run), whatever its `at` column says; the
/// entries before it still go.
async fn an_entry_that_cannot_be_trusted_stops_its_log(store: &Store, data_dir: &Path) {
    let signer = signer();
    // LOG: entry 10 is not an audit event leaf.
    fill(store, 0, 10, T0).await;
    store
        .append_log_entries(LOG, &[b"not an audit event".to_vec()], T0)
        .await
        .expect("append");
    fill(store, 11, 10, T0).await;
    // OTHER: 10 old entries, 10 fresh ones whose rows the attacker gives
    // the bytes of old entry 0 and an old `at` (the tree still holds the
    // fresh leaves).
    fill_log(store, OTHER, 0, 10, T0).await;
    fill_log(store, OTHER, 10, 10, NOW - DAY).await;
    let swapped = tamper(
        store,
        &format!(
            "UPDATE log_entries SET at = {T0}, \
             leaf = (SELECT l.leaf FROM log_entries l WHERE l.log_id = '{OTHER}' AND l.idx = 0) \
             WHERE log_id = '{OTHER}' AND idx >= 10"
        ),
    )
    .await
    .expect("tamper");
    assert_eq!(swapped, 10);
    // THIRD: entry 5 is an old audit event of another tenant's log.
    fill_log(store, THIRD, 0, 5, T0).await;
    store
        .append_log_entries(THIRD, &[audit_leaf(LOG, 5, T0)], T0)
        .await
        .expect("append");
    fill_log(store, THIRD, 6, 5, T0).await;
    // FOURTH: old entries, entry 5 deleted from the database.
    fill_log(store, FOURTH, 0, 10, T0).await;
    let deleted = tamper(
        store,
        &format!("DELETE FROM log_entries WHERE log_id = '{FOURTH}' AND idx = 5"),
    )
    .await
    .expect("tamper");
    assert_eq!(deleted, 1);

    for round in 0..2 {
        let run = archive_due(&signer, store, data_dir, 365, &[], NOW)
            .await
            .expect("archive");
        let expected: Vec<(&str, u64, u64)> = if round == 0 {
            vec![(LOG, 0, 10), (OTHER, 0, 10), (THIRD, 0, 5), (FOURTH, 0, 5)]
        } else {
            vec![]
        };
        assert_eq!(sorted(ranges(&run)), sorted(expected), "round {round}");
        let mut refused: Vec<&Refused> = run.refused.iter().collect();
        refused.sort_by(|a, b| a.log_id.cmp(&b.log_id));
        let found: Vec<(&str, u64)> = refused.iter().map(|r| (r.log_id.as_str(), r.idx)).collect();
        assert_eq!(
            found,
            [(LOG, 10), (OTHER, 10), (THIRD, 5), (FOURTH, 5)],
            "round {round}: {refused:#?}"
        );
        assert!(
            refused[0].reason.contains("not an audit event leaf"),
            "{}",
            refused[0].reason
        );
        assert!(
            refused[1].reason.contains("not the leaf the tree holds"),
            "{}",
            refused[1].reason
        );
        assert!(
            refused[2].reason.contains("another log"),
            "{}",
            refused[2].reason
        );
        assert!(
            refused[3].reason.contains("missing"),
            "{}",
            refused[3].reason
        );
    }
    assert_eq!(archived_below(store, LOG).await, 10);
    assert_eq!(archived_below(store, OTHER).await, 10);
    assert_eq!(first_held(store, OTHER).await, Some(10));
    assert_eq!(archived_below(store, THIRD).await, 5);
    assert_eq!(archived_below(store, FOURTH).await, 5);
    assert_eq!(first_held(store, FOURTH).await, Some(6));
}
