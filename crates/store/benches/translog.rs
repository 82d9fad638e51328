//! The transparency log's storage figures (issue 6): appends per second,
//! one entry per transaction and 1000 per transaction; inclusion and
//! consistency proof time in a log of 1,000,000 entries (median of 1000
//! random proofs); storage bytes per entry. On SQLite (a temporary file)
//! and on PostgreSQL (a fresh schema in `BULWARK_TEST_POSTGRES_URL`).
//!
//! `cargo bench -p bulwark-store --bench translog`
//! (`BENCH_LOG_ENTRIES=N` for a smaller log; `BENCH_BACKENDS=sqlite` or
//! `postgres` for one backend). A plain harness keeps criterion out of the
//! build. Every proof is checked with the pure crate's verifier.

#![allow(clippy::unwrap_used)]

use bulwark_store::AuditAction;
use std::time::{Duration, Instant};

use bulwark_store::testing::{postgres_test_url, sqlite_test_url};
use bulwark_store::{NewAuditEvent, Store};
use bulwark_translog::{Hash, leaf_hash, verify_consistency, verify_inclusion};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::Connection;

const T0: i64 = 1_800_000_000_000;
/// A tenant id, as a real tenant log's id (the storage figure depends on it).
const LOG: &str = "7d8e4f52-3b1a-4c9e-8f2d-5a6b7c8d9e0f";
const SINGLE_APPENDS: usize = 2000;
const BATCH: usize = 1000;
const PROOFS: usize = 1000;

/// A typical audit leaf (~150 bytes): what the server appends for a job.
fn audit_leaf(i: usize) -> Vec<u8> {
    let event = NewAuditEvent::new(
        T0 + i as i64,
        "3f2a1b0c-9d8e-4f7a-6b5c-4d3e2f1a0b9c",
        AuditAction::JobApproved,
        &format!("job-{i:08}-6b5c-4d3e-2f1a0b9c8d7e"),
    )
    .in_tenant(Some(LOG))
    .with_detail("approvals=2/2 class=run-script");
    event.leaf().encode()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

struct Figures {
    single_per_s: f64,
    audit_per_s: f64,
    batched_per_s: f64,
    inclusion: Duration,
    consistency: Duration,
    leaf_bytes: f64,
}

async fn measure(store: &Store, entries: usize) -> Figures {
    // One entry per transaction, in a log of its own.
    let single_log = "single";
    let start = Instant::now();
    for i in 0..SINGLE_APPENDS {
        store
            .append_log_entries(single_log, &[audit_leaf(i)], T0)
            .await
            .unwrap();
    }
    let single_per_s = SINGLE_APPENDS as f64 / start.elapsed().as_secs_f64();

    // An audit event: its row and its log entry, one transaction.
    let start = Instant::now();
    for i in 0..SINGLE_APPENDS {
        store
            .append_audit(
                NewAuditEvent::new(
                    T0 + i as i64,
                    "bench",
                    bulwark_store::AuditAction::JobResult,
                    "target",
                )
                .in_tenant(Some("audit-bench")),
            )
            .await
            .unwrap();
    }
    let audit_per_s = SINGLE_APPENDS as f64 / start.elapsed().as_secs_f64();

    // The big log, BATCH entries per transaction.
    let mut leaf_bytes = 0usize;
    let start = Instant::now();
    let mut at = 0;
    while at < entries {
        let n = BATCH.min(entries - at);
        let batch: Vec<Vec<u8>> = (at..at + n).map(audit_leaf).collect();
        leaf_bytes += batch.iter().map(Vec::len).sum::<usize>();
        store.append_log_entries(LOG, &batch, T0).await.unwrap();
        at += n;
    }
    let batched_per_s = entries as f64 / start.elapsed().as_secs_f64();
    let head = store.log_head(LOG).await.unwrap().unwrap();
    assert_eq!(head.size, entries as u64);
    let root = Hash(head.root);

    let mut rng = StdRng::seed_from_u64(6);
    let size = entries as u64;
    let mut samples = Vec::with_capacity(PROOFS);
    for _ in 0..PROOFS {
        let idx = rng.gen_range(0..size);
        let start = Instant::now();
        let proof = store.inclusion_proof(LOG, idx, size).await.unwrap();
        samples.push(start.elapsed());
        let proof: Vec<Hash> = proof.into_iter().map(Hash).collect();
        verify_inclusion(
            &leaf_hash(&audit_leaf(idx as usize)),
            idx,
            size,
            &proof,
            &root,
        )
        .unwrap();
    }
    let inclusion = median(samples);

    let mut samples = Vec::with_capacity(PROOFS);
    for _ in 0..PROOFS {
        let old = rng.gen_range(1..size);
        let start = Instant::now();
        let proof = store.consistency_proof(LOG, old, size).await.unwrap();
        samples.push(start.elapsed());
        let old_root = Hash(store.log_root_at(LOG, old).await.unwrap());
        let proof: Vec<Hash> = proof.into_iter().map(Hash).collect();
        verify_consistency(old, size, &old_root, &root, &proof).unwrap();
    }
    let consistency = median(samples);

    Figures {
        single_per_s,
        audit_per_s,
        batched_per_s,
        inclusion,
        consistency,
        leaf_bytes: leaf_bytes as f64 / entries as f64,
    }
}

fn report(backend: &str, entries: usize, f: &Figures, storage: &str) {
    println!("{backend}: log of {entries} entries");
    println!(
        "  appends, 1 entry per transaction:      {:.0}/s",
        f.single_per_s
    );
    println!(
        "  audit events (row + log entry), 1 per transaction: {:.0}/s",
        f.audit_per_s
    );
    println!(
        "  appends, {BATCH} entries per transaction: {:.0} entries/s",
        f.batched_per_s
    );
    println!(
        "  inclusion proof, median of {PROOFS}:      {}",
        micros(f.inclusion)
    );
    println!(
        "  consistency proof, median of {PROOFS}:    {}",
        micros(f.consistency)
    );
    println!(
        "  leaf size (mean):                       {:.0} bytes",
        f.leaf_bytes
    );
    println!("  storage: {storage}");
}

async fn sqlite(entries: usize) {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_test_url(dir.path());
    let store = Store::open(&url).await.unwrap();
    let figures = measure(&store, entries).await;
    store.close().await;
    // Only the big log stays, compacted, so the file holds it and the schema.
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    for sql in [
        "DELETE FROM log_entries WHERE log_id <> '7d8e4f52-3b1a-4c9e-8f2d-5a6b7c8d9e0f'",
        "DELETE FROM log_nodes WHERE log_id <> '7d8e4f52-3b1a-4c9e-8f2d-5a6b7c8d9e0f'",
        "DELETE FROM audit_events",
        "VACUUM",
        "PRAGMA wal_checkpoint(TRUNCATE)",
    ] {
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
    let bytes = std::fs::metadata(dir.path().join("bulwark.sqlite3"))
        .unwrap()
        .len();
    let storage = format!(
        "{:.0} bytes/entry (file {} MB after VACUUM)",
        bytes as f64 / entries as f64,
        bytes / 1_000_000
    );
    report("SQLite", entries, &figures, &storage);
}

async fn postgres(entries: usize) {
    let (url, guard) = postgres_test_url().await.unwrap();
    let store = Store::open(&url).await.unwrap();
    let figures = measure(&store, entries).await;
    store.close().await;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    for sql in [
        "DELETE FROM log_entries WHERE log_id <> '7d8e4f52-3b1a-4c9e-8f2d-5a6b7c8d9e0f'",
        "DELETE FROM log_nodes WHERE log_id <> '7d8e4f52-3b1a-4c9e-8f2d-5a6b7c8d9e0f'",
        "VACUUM FULL log_entries",
        "VACUUM FULL log_nodes",
        "VACUUM FULL log_heads",
    ] {
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    }
    let mut parts = Vec::new();
    let mut total = 0i64;
    for table in ["log_entries", "log_nodes", "log_heads"] {
        let bytes: i64 =
            sqlx::query_scalar(&format!("SELECT pg_total_relation_size('{table}')::BIGINT"))
                .fetch_one(&mut conn)
                .await
                .unwrap();
        total += bytes;
        parts.push(format!("{table} {:.0}", bytes as f64 / entries as f64));
    }
    conn.close().await.unwrap();
    let storage = format!(
        "{:.0} bytes/entry ({}; pg_total_relation_size after VACUUM FULL)",
        total as f64 / entries as f64,
        parts.join(", ")
    );
    report("PostgreSQL", entries, &figures, &storage);
    guard.drop().await;
}

fn main() {
    let entries: usize = std::env::var("BENCH_LOG_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for backend in backends.split(',') {
            match backend.trim() {
                "sqlite" => sqlite(entries).await,
                "postgres" => postgres(entries).await,
                other => panic!("unknown backend {other:?}"),
            }
        }
    });
}
