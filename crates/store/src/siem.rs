//! SIEM export cursors (migration 0012, RFD 0003 "SIEM export").
//!
//! For each sink (its configured name) and each transparency log, the index
//! of the first entry the sink has not acknowledged. The exporter reads
//! entries from the cursor, sends them, and moves the cursor only once the
//! sink acknowledged them; [`Store::advance_siem_cursor`] never moves it
//! back, so a slow or replayed advance cannot make a sink receive entries a
//! second time after a later one was recorded.

use sqlx::Row;

use crate::transparency_log::LogHead;
use crate::{Millis, Store, StoreError};

/// Longest sink name or log id the cursor table accepts (a log id is a
/// UUID or `msp`; sink names are short configuration names).
const MAX_KEY_LEN: usize = 128;

fn check_key(value: &str, what: &'static str) -> Result<(), StoreError> {
    if value.is_empty() || value.len() > MAX_KEY_LEN {
        return Err(StoreError::Invalid(what));
    }
    Ok(())
}

impl Store {
    /// The next index `sink` has to send from log `log_id`: 0 when it never
    /// acknowledged anything there.
    pub async fn siem_cursor(&self, sink: &str, log_id: &str) -> Result<u64, StoreError> {
        let next: Option<i64> =
            sqlx::query_scalar("SELECT next_idx FROM siem_cursors WHERE sink = $1 AND log_id = $2")
                .bind(sink)
                .bind(log_id)
                .fetch_optional(&self.pool)
                .await?;
        match next {
            None => Ok(0),
            Some(n) => {
                u64::try_from(n).map_err(|_| StoreError::Corrupt("negative SIEM cursor".into()))
            }
        }
    }

    /// Records that `sink` acknowledged every entry of `log_id` below
    /// `next_idx`. Monotonic: a value below the stored one changes nothing.
    /// Refuses (`Invalid`) a value beyond the log's size, which no sink can
    /// have acknowledged. Returns the cursor as stored afterwards.
    pub async fn advance_siem_cursor(
        &self,
        sink: &str,
        log_id: &str,
        next_idx: u64,
        now: Millis,
    ) -> Result<u64, StoreError> {
        check_key(sink, "SIEM sink name length")?;
        check_key(log_id, "log id length")?;
        let next = i64::try_from(next_idx).map_err(|_| StoreError::Invalid("SIEM cursor"))?;
        let mut tx = self.pool.begin().await?;
        // The write comes first (see the crate's rules); the size check
        // follows in the same transaction and undoes it if need be.
        sqlx::query(
            "INSERT INTO siem_cursors (sink, log_id, next_idx, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (sink, log_id) DO UPDATE \
             SET next_idx = excluded.next_idx, updated_at = excluded.updated_at \
             WHERE siem_cursors.next_idx < excluded.next_idx",
        )
        .bind(sink)
        .bind(log_id)
        .bind(next)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(
            "SELECT c.next_idx AS next_idx, COALESCE(h.size, 0) AS size FROM siem_cursors c \
             LEFT JOIN log_heads h ON h.log_id = c.log_id \
             WHERE c.sink = $1 AND c.log_id = $2",
        )
        .bind(sink)
        .bind(log_id)
        .fetch_one(&mut *tx)
        .await?;
        let stored: i64 = row.try_get("next_idx")?;
        let size: i64 = row.try_get("size")?;
        if next > size {
            tx.rollback().await?;
            return Err(StoreError::Invalid("SIEM cursor beyond the log's size"));
        }
        tx.commit().await?;
        u64::try_from(stored).map_err(|_| StoreError::Corrupt("negative SIEM cursor".into()))
    }

    /// Every cursor of `sink`, as `(log id, next index)`, ordered by log id;
    /// at most `limit` of them, starting after log id `after`.
    pub async fn siem_cursors(
        &self,
        sink: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT log_id, next_idx FROM siem_cursors WHERE sink = $1 AND log_id > $2 \
             ORDER BY log_id LIMIT $3",
        )
        .bind(sink)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let next: i64 = row.try_get("next_idx")?;
                Ok((
                    row.try_get("log_id")?,
                    u64::try_from(next)
                        .map_err(|_| StoreError::Corrupt("negative SIEM cursor".into()))?,
                ))
            })
            .collect()
    }

    /// The heads of every log (`SELECT … FROM log_heads`), ordered by log
    /// id: at most `limit` of them, starting after log id `after` (page by
    /// passing the last id seen).
    pub async fn log_heads(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<LogHead>, StoreError> {
        let rows = sqlx::query(
            "SELECT log_id, size, root, updated_at, archived_below FROM log_heads WHERE log_id > $1 \
             ORDER BY log_id LIMIT $2",
        )
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let size: i64 = row.try_get("size")?;
                let root: Vec<u8> = row.try_get("root")?;
                Ok(LogHead {
                    log_id: row.try_get("log_id")?,
                    size: u64::try_from(size)
                        .map_err(|_| StoreError::Corrupt("negative log size".into()))?,
                    root: root
                        .as_slice()
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("log root is not 32 bytes".into()))?,
                    updated_at: row.try_get("updated_at")?,
                    archived_below: u64::try_from(row.try_get::<i64, _>("archived_below")?)
                        .map_err(|_| StoreError::Corrupt("negative archived_below".into()))?,
                })
            })
            .collect()
    }
}
