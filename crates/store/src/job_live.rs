//! A job while it runs (RFD 0012): the agent's word that a script started,
//! the pieces of its output (kept bounded per target), and cancelling.
//!
//! Live output is a convenience, never the record: the result a device
//! reports (`job_delivery`) stays what the job did. What is kept here is
//! bounded by the caller's cap per target; every byte not kept is counted,
//! so a reader shows where output is missing and how much.

use sqlx::Row;

use crate::audit::{NewAuditEvent, insert_events};
use crate::{Millis, Store, StoreError, TenantScope, in_scope};

/// One stored piece of live output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    pub device_id: String,
    pub seq: i64,
    /// "stdout" or "stderr".
    pub stream: String,
    pub data: Vec<u8>,
    /// Bytes of this stream missing just before this piece.
    pub skipped: i64,
    pub at: Millis,
}

/// What [`Store::append_output`] did with a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored: this many of its bytes (the rest was past the cap, counted).
    Stored(usize),
    /// Not stored: the cap was already reached (its bytes were counted), or
    /// this sequence number was stored before (nothing changed).
    Dropped,
}

/// What [`Store::cancel_job`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancelled {
    /// Targets that were sent the job and have no result yet: each is sent
    /// a cancel (agents of protocol version 3 and later).
    pub delivered: Vec<String>,
    /// Targets never sent the job: they never will be.
    pub waiting: i64,
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
    /// Cancels a job, in one transaction with `events`: it is never delivered
    /// again. Allowed while it is pending, or approved or expired with a
    /// target that has no result yet. `NotFound` for an unknown job;
    /// `Conflict("job already cancelled")`, `Conflict("job is rejected")`,
    /// `Conflict("every target has finished")` otherwise (nothing changes).
    pub async fn cancel_job(
        &self,
        job_id: &str,
        operator_id: &str,
        reason: &str,
        now: Millis,
        events: &[NewAuditEvent],
    ) -> Result<Cancelled, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The write first, so that SQLite takes its write lock before any
        // read (a read-then-write transaction can fail to upgrade).
        let done = sqlx::query(
            "UPDATE jobs SET cancelled_at = $2, cancelled_by = $3, cancel_reason = $4 \
             WHERE id = $1 AND cancelled_at IS NULL AND state <> 'rejected' \
             AND (state = 'pending' OR EXISTS (SELECT 1 FROM job_targets t \
                  WHERE t.job_id = jobs.id AND t.state IN ('waiting', 'delivered')))",
        )
        .bind(job_id)
        .bind(now)
        .bind(operator_id)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            let row = sqlx::query("SELECT state, cancelled_at FROM jobs WHERE id = $1")
                .bind(job_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound)?;
            let state: String = row.try_get("state")?;
            let cancelled_at: Option<Millis> = row.try_get("cancelled_at")?;
            return Err(StoreError::Conflict(if cancelled_at.is_some() {
                "job already cancelled"
            } else if state == "rejected" {
                "job is rejected"
            } else {
                "every target has finished"
            }));
        }
        let rows = sqlx::query(
            "SELECT device_id, state FROM job_targets WHERE job_id = $1 \
             AND state IN ('waiting', 'delivered') ORDER BY device_id",
        )
        .bind(job_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut cancelled = Cancelled {
            delivered: Vec::new(),
            waiting: 0,
        };
        for row in rows {
            let state: String = row.try_get("state")?;
            if state == "delivered" {
                cancelled.delivered.push(row.try_get("device_id")?);
            } else {
                cancelled.waiting += 1;
            }
        }
        insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(cancelled)
    }

    /// The cancelled jobs a device was sent and has not answered: what the
    /// gateway sends it a cancel for. Unscoped: for the agent gateway.
    pub async fn cancels_for_device(
        &self,
        device_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT j.id, COALESCE(j.cancel_reason, '') AS reason FROM jobs j \
             JOIN job_targets jt ON jt.job_id = j.id \
             WHERE jt.device_id = $1 AND jt.state = 'delivered' AND j.cancelled_at IS NOT NULL \
             ORDER BY j.id",
        )
        .bind(device_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("reason")?)))
            .collect()
    }

    /// The agent said the script of a job it was sent started. True the
    /// first time; false for a target not delivered to it, finished, or
    /// already running (nothing changes).
    pub async fn mark_running(
        &self,
        job_id: &str,
        device_id: &str,
        started_at: Millis,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE job_targets SET running_at = $3 \
             WHERE job_id = $1 AND device_id = $2 AND state = 'delivered' AND running_at IS NULL",
        )
        .bind(job_id)
        .bind(device_id)
        .bind(started_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores a piece of a running job's output, keeping at most `cap`
    /// bytes per target (both streams): what is past the cap, and what the
    /// agent says it `skipped`, is counted in `live_truncated`. Only for a
    /// target that was delivered and has no result yet (`NotFound`
    /// otherwise: a stray or late piece). A sequence number stored before
    /// changes nothing.
    // One argument per column it writes.
    #[allow(clippy::too_many_arguments)]
    pub async fn append_output(
        &self,
        job_id: &str,
        device_id: &str,
        seq: u64,
        stream: &str,
        data: &[u8],
        skipped: u64,
        cap: usize,
        now: Millis,
    ) -> Result<Appended, StoreError> {
        let mut tx = self.pool.begin().await?;
        // A write first (it changes nothing), so that SQLite takes its write
        // lock before the read: a read-then-write transaction can fail to
        // upgrade while another connection writes.
        let known = sqlx::query(
            "UPDATE job_targets SET live_bytes = live_bytes \
             WHERE job_id = $1 AND device_id = $2 AND state = 'delivered'",
        )
        .bind(job_id)
        .bind(device_id)
        .execute(&mut *tx)
        .await?;
        if known.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let row =
            sqlx::query("SELECT live_bytes FROM job_targets WHERE job_id = $1 AND device_id = $2")
                .bind(job_id)
                .bind(device_id)
                .fetch_one(&mut *tx)
                .await?;
        let have: i64 = row.try_get("live_bytes")?;
        let room = usize::try_from(i64::try_from(cap).unwrap_or(i64::MAX).saturating_sub(have))
            .unwrap_or(0);
        let keep = data.len().min(room);
        let inserted = sqlx::query(
            "INSERT INTO job_output (job_id, device_id, seq, stream, data, skipped, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(job_id)
        .bind(device_id)
        .bind(to_i64(seq))
        .bind(stream)
        .bind(&data[..keep])
        .bind(to_i64(skipped))
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(Appended::Dropped);
        }
        let dropped = to_i64(skipped).saturating_add(to_i64((data.len() - keep) as u64));
        sqlx::query(
            "UPDATE job_targets SET live_bytes = live_bytes + $3, \
             live_truncated = live_truncated + $4 WHERE job_id = $1 AND device_id = $2",
        )
        .bind(job_id)
        .bind(device_id)
        .bind(to_i64(keep as u64))
        .bind(dropped)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(if keep == 0 {
            Appended::Dropped
        } else {
            Appended::Stored(keep)
        })
    }

    /// The live output of a job in scope, pieces after sequence number
    /// `after` (all with `None`), oldest first, at most `limit`; for one
    /// device, or every target.
    pub async fn job_output(
        &self,
        scope: &TenantScope,
        job_id: &str,
        device_id: Option<&str>,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<OutputChunk>, StoreError> {
        const SQL: &str = concat!(
            "SELECT o.device_id, o.seq, o.stream, o.data, o.skipped, o.at FROM job_output o",
            " JOIN jobs j ON j.id = o.job_id WHERE ",
            in_scope!("j.tenant_id"),
            " AND o.job_id = $3 AND ($4 = '' OR o.device_id = $4) AND o.seq > $5",
            " ORDER BY o.device_id, o.seq LIMIT $6"
        );
        let (all, operator) = scope.args();
        let rows = sqlx::query(SQL)
            .bind(all)
            .bind(operator)
            .bind(job_id)
            .bind(device_id.unwrap_or(""))
            .bind(after.unwrap_or(-1))
            .bind(limit.max(0))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(OutputChunk {
                    device_id: row.try_get("device_id")?,
                    seq: row.try_get("seq")?,
                    stream: row.try_get("stream")?,
                    data: row.try_get("data")?,
                    skipped: row.try_get("skipped")?,
                    at: row.try_get("at")?,
                })
            })
            .collect()
    }
}
