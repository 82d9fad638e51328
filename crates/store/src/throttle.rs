//! Login throttling counters, one row per key (`user:<name>`, `addr:<ip>`).
//!
//! The store only keeps the numbers; what they mean (delays, lockouts) is the
//! server's pure `auth::throttle` module. Every change is one transaction
//! whose first statement is a write, so concurrent attempts on the same key
//! serialise on both backends and none of them is lost.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Millis, Store, StoreError};

/// The counters of one key. All zeros (with no lock) is the same as no row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThrottleCounter {
    /// Failed or refused attempts since `window_start`.
    pub failures: i64,
    pub window_start: Millis,
    pub last_failure_at: Millis,
    pub locked_until: Option<Millis>,
}

impl ThrottleCounter {
    /// True for a counter that holds nothing worth keeping.
    pub fn is_empty(&self) -> bool {
        self.failures <= 0 && self.locked_until.is_none()
    }
}

/// A key whose lock is in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lockout {
    pub key: String,
    pub counter: ThrottleCounter,
}

fn counter_from_row(row: &AnyRow) -> Result<ThrottleCounter, StoreError> {
    Ok(ThrottleCounter {
        failures: row.try_get("failures")?,
        window_start: row.try_get("window_start")?,
        last_failure_at: row.try_get("last_failure_at")?,
        locked_until: row.try_get("locked_until")?,
    })
}

impl Store {
    /// Reads the counters of `keys` (a missing key reads as all zeros), gives
    /// them to `update` and writes back what it returns, all in one
    /// transaction: concurrent calls for the same key run one after the
    /// other. A returned counter that [`ThrottleCounter::is_empty`] deletes
    /// the row. `update` must return one counter per key, in order.
    ///
    /// The rows are locked in sorted key order, so two calls naming the same
    /// keys in another order cannot deadlock (PostgreSQL).
    pub async fn update_throttle<R, F>(&self, keys: &[&str], update: F) -> Result<R, StoreError>
    where
        F: FnOnce(&[ThrottleCounter]) -> (Vec<ThrottleCounter>, R) + Send,
        R: Send,
    {
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by_key(|&i| keys[i]);
        order.dedup_by_key(|i| keys[*i]);
        if order.len() != keys.len() {
            return Err(StoreError::Conflict("throttle keys must be distinct"));
        }
        let mut tx = self.pool.begin().await?;
        let mut before = vec![ThrottleCounter::default(); keys.len()];
        for &i in &order {
            // A write first: it takes the row lock (PostgreSQL) or the write
            // lock (SQLite) before anything is read.
            let row = sqlx::query(
                "INSERT INTO login_throttle (key, failures, window_start, last_failure_at, locked_until) \
                 VALUES ($1, 0, 0, 0, NULL) \
                 ON CONFLICT (key) DO UPDATE SET failures = login_throttle.failures \
                 RETURNING failures, window_start, last_failure_at, locked_until",
            )
            .bind(keys[i])
            .fetch_one(&mut *tx)
            .await?;
            before[i] = counter_from_row(&row)?;
        }
        let (after, result) = update(&before);
        if after.len() != keys.len() {
            return Err(StoreError::Corrupt(
                "throttle update returned the wrong number of counters".into(),
            ));
        }
        for (key, counter) in keys.iter().zip(&after) {
            if counter.is_empty() {
                sqlx::query("DELETE FROM login_throttle WHERE key = $1")
                    .bind(*key)
                    .execute(&mut *tx)
                    .await?;
            } else {
                sqlx::query(
                    "UPDATE login_throttle SET failures = $2, window_start = $3, \
                     last_failure_at = $4, locked_until = $5 WHERE key = $1",
                )
                .bind(*key)
                .bind(counter.failures)
                .bind(counter.window_start)
                .bind(counter.last_failure_at)
                .bind(counter.locked_until)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(result)
    }

    /// The counters of one key (all zeros when it has no row).
    pub async fn throttle_counter(&self, key: &str) -> Result<ThrottleCounter, StoreError> {
        let row = sqlx::query(
            "SELECT failures, window_start, last_failure_at, locked_until FROM login_throttle WHERE key = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map_or(Ok(ThrottleCounter::default()), counter_from_row)
    }

    /// Keys locked at `now`, by key.
    pub async fn list_lockouts(&self, now: Millis) -> Result<Vec<Lockout>, StoreError> {
        let rows = sqlx::query(
            "SELECT key, failures, window_start, last_failure_at, locked_until FROM login_throttle \
             WHERE locked_until > $1 ORDER BY key",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Lockout {
                    key: row.try_get("key")?,
                    counter: counter_from_row(row)?,
                })
            })
            .collect()
    }

    /// Forgets a key's counters and lock, and records `events(was_locked)`
    /// in the same transaction. Returns whether the key was locked at
    /// `now`; `NotFound` if it had no counters at all.
    pub async fn clear_throttle<F>(
        &self,
        key: &str,
        now: Millis,
        events: F,
    ) -> Result<bool, StoreError>
    where
        F: FnOnce(bool) -> Vec<crate::NewAuditEvent> + Send,
    {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("DELETE FROM login_throttle WHERE key = $1 RETURNING locked_until")
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound);
        };
        let locked_until: Option<Millis> = row.try_get("locked_until")?;
        let was_locked = locked_until.is_some_and(|until| until > now);
        crate::audit::insert_events(&mut tx, &events(was_locked)).await?;
        tx.commit().await?;
        Ok(was_locked)
    }

    /// Deletes counters whose last failure is before `before` and which hold
    /// no lock in force at `now`. Returns how many were deleted.
    pub async fn prune_throttle(&self, before: Millis, now: Millis) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM login_throttle WHERE last_failure_at < $1 \
             AND (locked_until IS NULL OR locked_until <= $2)",
        )
        .bind(before)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
