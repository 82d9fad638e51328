//! Metrics history figures (RFD 0014): storage bytes per device per day
//! and the compaction pass's time, for `BENCH_DEVICES` devices (default
//! 2,000) × 5 metrics × 48 h of one sample a minute, plus the hour that
//! the pass rolls up. On SQLite (a temporary file) or PostgreSQL
//! (`BENCH_BACKENDS=postgres`, a fresh schema in
//! `BULWARK_TEST_POSTGRES_URL`).
//!
//! `cargo bench -p bulwark-store --bench metrics` (`BENCH_DEVICES=200`
//! for a quick run). A plain harness keeps criterion out of the build.

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use bulwark_store::metrics_plan::MAX_ROWS_PER_DEVICE;
use bulwark_store::testing::{postgres_test_url, sqlite_test_url};
use bulwark_store::{Backend, NewDevice, Store};
use sqlx::{AnyConnection, Connection};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const METRICS: [&str; 5] = ["cpu", "memory", "disk-root", "disk-data", "app-port"];

async fn devices(store: &Store, n: usize) -> Vec<String> {
    let tenant = store
        .create_tenant("bench", 0, |_| Vec::new())
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..n {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&(i as u64).to_le_bytes());
        store
            .create_enrollment_token(key, &tenant.id, None, 0, i64::MAX / 2, &[])
            .await
            .unwrap();
        let d = store
            .enroll_device(
                key,
                NewDevice {
                    id: uuid::Uuid::new_v4().to_string(),
                    public_key: key,
                    hostname: format!("host-{i}"),
                    agent_version: "0.1.0".to_owned(),
                },
                0,
            )
            .await
            .unwrap();
        ids.push(d.id);
    }
    ids
}

/// One raw sample a minute for every device and metric in `[from, to)`.
async fn fill(conn: &mut AnyConnection, ids: &[String], from: i64, to: i64) -> u64 {
    let mut rows = 0u64;
    for id in ids {
        let mut tx = conn.begin().await.unwrap();
        let mut values: Vec<String> = Vec::new();
        let mut t = from;
        while t < to {
            for (m, metric) in METRICS.iter().enumerate() {
                let v = (t / MIN + m as i64 * 7) % 100;
                values.push(format!("('{id}', 0, '{metric}', {t}, 1, {v}, {v})"));
            }
            t += MIN;
            if values.len() >= 500 || t >= to {
                rows += values.len() as u64;
                sqlx::query(&format!(
                    "INSERT INTO metric_samples (device_id, tier, metric, at, n, sum, max) VALUES {}",
                    values.join(", ")
                ))
                .execute(&mut *tx)
                .await
                .unwrap();
                values.clear();
            }
        }
        tx.commit().await.unwrap();
    }
    rows
}

async fn bytes(conn: &mut AnyConnection, backend: Backend) -> i64 {
    match backend {
        Backend::Sqlite => sqlx::query_scalar::<_, i64>(
            "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap(),
        Backend::Postgres => sqlx::query_scalar::<_, i64>(
            "SELECT CAST(pg_total_relation_size('metric_samples') AS BIGINT)",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap(),
    }
}

async fn run(store: Store, url: &str, n: usize) {
    let backend = store.backend();
    let mut conn = AnyConnection::connect(url).await.unwrap();
    let ids = devices(&store, n).await;
    let now: i64 = 1_800_000_000_000 - 1_800_000_000_000 % HOUR;
    let start = now - 49 * HOUR;
    let before = bytes(&mut conn, backend).await;
    let t = Instant::now();
    let rows_day = fill(&mut conn, &ids, start, start + 24 * HOUR).await;
    let fill_time = t.elapsed();
    let after_day = bytes(&mut conn, backend).await;
    let rows = rows_day + fill(&mut conn, &ids, start + 24 * HOUR, now).await;
    let per_row = (after_day - before) as f64 / rows_day as f64;
    let per_device_day = (after_day - before) as f64 / n as f64;
    println!(
        "{backend:?}: {n} devices × {} metrics: {rows} raw rows (49 h), first day inserted in {:.1} s",
        METRICS.len(),
        fill_time.as_secs_f64()
    );
    println!(
        "{backend:?}: raw intake {per_device_day:.0} bytes per device per day ({per_row:.1} bytes per row, {} rows per device per day)",
        rows_day / n as u64
    );
    // Steady state per metric: 48 h raw at a minute, 31 d of 15 min, 400 days.
    let steady_rows = METRICS.len() as f64 * (2880.0 + 2976.0 + 400.0);
    println!(
        "{backend:?}: steady state ≈ {:.1} MB per device ({steady_rows:.0} rows at that size; cap {MAX_ROWS_PER_DEVICE} rows)",
        steady_rows * per_row / 1e6
    );
    let t = Instant::now();
    let done = store
        .compact_metrics(now, MAX_ROWS_PER_DEVICE)
        .await
        .unwrap();
    let first = t.elapsed();
    println!(
        "{backend:?}: compaction pass: {:.2} s for {} devices ({} rows rolled into 15-minute buckets, {:.2} ms per device)",
        first.as_secs_f64(),
        done.devices,
        done.rolled,
        first.as_secs_f64() * 1000.0 / n as f64
    );
    let t = Instant::now();
    let again = store
        .compact_metrics(now + 5 * MIN, MAX_ROWS_PER_DEVICE)
        .await
        .unwrap();
    println!(
        "{backend:?}: the next pass (5 min later, nothing complete to roll): {:.2} s, {} rows rolled",
        t.elapsed().as_secs_f64(),
        again.rolled
    );
    conn.close().await.unwrap();
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite".to_owned());
    if backends.contains("sqlite") {
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite_test_url(dir.path());
        let store = Store::open(&url).await.unwrap();
        run(store.clone(), &url, n).await;
        store.close().await;
    }
    if backends.contains("postgres") {
        let (url, guard) = postgres_test_url().await.unwrap();
        let store = Store::open(&url).await.unwrap();
        run(store.clone(), &url, n).await;
        store.close().await;
        guard.drop().await;
    }
}
