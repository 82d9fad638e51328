//! Databases for tests, in this crate and in others (end-to-end tests that
//! start the real server on PostgreSQL).
//!
//! PostgreSQL tests get a fresh schema each, in the database named by
//! `BULWARK_TEST_POSTGRES_URL` (default [`DEFAULT_POSTGRES_URL`]). When that
//! server is unreachable, [`postgres_test_url`] returns an error and the test
//! should fail, not skip.

use std::path::Path;

use sqlx::{Connection, PgConnection};

use crate::StoreError;

/// Used when `BULWARK_TEST_POSTGRES_URL` is not set.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Creates a fresh schema `bulwark_test_<random hex>` in the test database
/// and returns a URL whose every connection uses it (through the
/// `options=-c search_path=...` connection parameter), with a guard that
/// drops the schema.
pub async fn postgres_test_url() -> Result<(String, SchemaGuard), StoreError> {
    let base = std::env::var("BULWARK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
    let schema = format!("bulwark_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&base).await?;
    // The name is ours (fixed prefix and hex), so it needs no quoting.
    sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
    Ok((
        url,
        SchemaGuard {
            base_url: base,
            schema,
            dropped: false,
        },
    ))
}

/// The URL of an SQLite database file in `dir` (created on first open).
pub fn sqlite_test_url(dir: &Path) -> String {
    let path = dir.join("bulwark.sqlite3");
    crate::sqlite_url(&path).unwrap_or_else(|_| format!("sqlite://{}?mode=rwc", path.display()))
}

/// Runs one SQL statement (no parameters) on `store`'s database behind the
/// store's back, as whoever holds the database can: for tests that play
/// that attacker (e.g. editing `log_entries.at` to make fresh entries look
/// due for archiving). Returns how many rows it changed. Nothing but tests
/// calls this.
pub async fn tamper(store: &crate::Store, sql: &str) -> Result<u64, StoreError> {
    Ok(sqlx::raw_sql(sql)
        .execute(&store.pool)
        .await?
        .rows_affected())
}

/// Owns a test schema made by [`postgres_test_url`].
///
/// Call [`SchemaGuard::drop`] (async) at the end of a test, after closing
/// every [`crate::Store`] that uses the schema. If the guard is dropped
/// without that call (a test panicked), `Drop` makes a best-effort attempt
/// from a short-lived thread of its own, blocking until it is done; failures
/// are ignored and leave a `bulwark_test_*` schema behind.
#[derive(Debug)]
pub struct SchemaGuard {
    base_url: String,
    schema: String,
    dropped: bool,
}

impl SchemaGuard {
    /// The schema's name.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Drops the schema and everything in it (best effort; errors are ignored).
    pub async fn drop(mut self) {
        drop_schema(&self.base_url, &self.schema).await;
        self.dropped = true;
    }
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let base_url = std::mem::take(&mut self.base_url);
        let schema = std::mem::take(&mut self.schema);
        // A runtime of its own: Drop cannot await, and may run outside any runtime.
        let cleanup = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(drop_schema(&base_url, &schema));
            }
        });
        let _ = cleanup.join();
    }
}

async fn drop_schema(base_url: &str, schema: &str) {
    let Ok(mut conn) = PgConnection::connect(base_url).await else {
        return;
    };
    let _ = sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
}
