//! An approved job on its way to devices: what each device is sent, the
//! record of its delivery, its result (stored once: a later answer of the
//! same job never replaces it), and the expiry of what was never answered.
//! The job itself, its targets and approvals are in `jobs`.

use crate::AuditAction;
use bulwark_protocol::codec::to_canonical;
use bulwark_protocol::message::PatchReport;
use sqlx::Row;

use crate::audit::{NewAuditEvent, insert_audit, insert_events, insert_events_batched};
use crate::jobs::{
    Job, JobTarget, TargetState, job_columns, job_from, job_from_row, target_from_row,
    target_select,
};
use crate::{Millis, Store, StoreError};

/// Deliveries recorded by one statement (three parameters each: within
/// SQLite's and PostgreSQL's caps).
const DELIVERY_CHUNK: usize = 200;

/// One sending of a job to a device, as [`Store::mark_delivered_many`]
/// records it: `events` are recorded only if it is the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub job_id: String,
    pub device_id: String,
    pub at: Millis,
    pub events: Vec<NewAuditEvent>,
}

/// What one target device reported for a job, as stored (the wire
/// `bulwark_protocol::message::JobOutcome`, decoded and bounded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetOutcome {
    Ran {
        /// None when the process did not exit normally (signal, timeout).
        exit_code: Option<i64>,
        timed_out: bool,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
        output_sha256: [u8; 32],
        /// The agent's clock.
        started_at: Millis,
        finished_at: Millis,
        /// What an install-patches job did.
        patches: Option<PatchReport>,
    },
    Refused {
        /// `Refusal::code()`.
        code: String,
        reason: String,
    },
}

impl TargetOutcome {
    /// The target state this outcome leads to.
    pub fn state(&self) -> TargetState {
        match self {
            TargetOutcome::Refused { .. } => TargetState::Refused,
            TargetOutcome::Ran {
                timed_out: true, ..
            } => TargetState::TimedOut,
            TargetOutcome::Ran {
                exit_code: Some(0), ..
            } => TargetState::Succeeded,
            TargetOutcome::Ran { .. } => TargetState::Failed,
        }
    }
}

/// The result columns of a `job_targets` row, to compare a resent result
/// with the stored one.
#[derive(Debug, PartialEq, Eq)]
struct ResultColumns {
    state: TargetState,
    exit_code: Option<i64>,
    refusal_code: Option<String>,
    refusal_reason: Option<String>,
    stdout: Option<Vec<u8>>,
    stderr: Option<Vec<u8>>,
    output_sha256: Option<[u8; 32]>,
    started_at: Option<Millis>,
    finished_at: Option<Millis>,
    patch_report: Option<Vec<u8>>,
}

impl ResultColumns {
    fn of(outcome: &TargetOutcome) -> ResultColumns {
        let state = outcome.state();
        match outcome {
            TargetOutcome::Ran {
                exit_code,
                timed_out: _,
                stdout,
                stderr,
                output_sha256,
                started_at,
                finished_at,
                patches,
            } => ResultColumns {
                state,
                exit_code: *exit_code,
                refusal_code: None,
                refusal_reason: None,
                stdout: Some(stdout.clone()),
                stderr: Some(stderr.clone()),
                output_sha256: Some(*output_sha256),
                started_at: Some(*started_at),
                finished_at: Some(*finished_at),
                patch_report: patches.as_ref().map(to_canonical),
            },
            TargetOutcome::Refused { code, reason } => ResultColumns {
                state,
                exit_code: None,
                refusal_code: Some(code.clone()),
                refusal_reason: Some(reason.clone()),
                stdout: None,
                stderr: None,
                output_sha256: None,
                started_at: None,
                finished_at: None,
                patch_report: None,
            },
        }
    }

    fn of_target(target: JobTarget) -> ResultColumns {
        ResultColumns {
            state: target.state,
            exit_code: target.exit_code,
            refusal_code: target.refusal_code,
            refusal_reason: target.refusal_reason,
            stdout: target.stdout,
            stderr: target.stderr,
            output_sha256: target.output_sha256,
            started_at: target.started_at,
            finished_at: target.finished_at,
            patch_report: target.patches.as_ref().map(to_canonical),
        }
    }
}

impl Store {
    /// The jobs to send to a device now: approved, `not_before <= now <
    /// expires_at`, and its target row still `waiting` or `delivered` (a
    /// job is sent again after a reconnect until its result arrives: the
    /// agent refuses replays). Oldest first, with the target's state.
    /// Unscoped: for the agent gateway.
    pub async fn deliverable_jobs_for_device(
        &self,
        device_id: &str,
        now: Millis,
    ) -> Result<Vec<(Job, TargetState)>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            job_columns!(),
            ", jt.state AS target_state",
            job_from!(),
            " JOIN job_targets jt ON jt.job_id = j.id",
            " WHERE jt.device_id = $1 AND jt.state IN ('waiting', 'delivered')",
            " AND j.state = 'approved' AND j.cancelled_at IS NULL",
            " AND j.not_before <= $2 AND j.expires_at > $2",
            // A schedule's run goes as its own message (`scheduled_runs_for_device`).
            " AND NOT EXISTS (SELECT 1 FROM schedule_runs r WHERE r.job_id = j.id)",
            " ORDER BY j.created_at, j.id"
        );
        let rows = sqlx::query(SQL)
            .bind(device_id)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get("target_state")?;
                let state = TargetState::parse(&state)
                    .ok_or_else(|| StoreError::Corrupt(format!("job target state {state:?}")))?;
                Ok((job_from_row(row)?, state))
            })
            .collect()
    }

    /// Records that a job was sent to a device. Returns true the first time
    /// (waiting to delivered), recording `events` in the same transaction;
    /// later deliveries change and record nothing.
    pub async fn mark_delivered(
        &self,
        job_id: &str,
        device_id: &str,
        now: Millis,
        events: &[NewAuditEvent],
    ) -> Result<bool, StoreError> {
        let delivery = Delivery {
            job_id: job_id.to_owned(),
            device_id: device_id.to_owned(),
            at: now,
            events: events.to_vec(),
        };
        let first = self
            .mark_delivered_many(std::slice::from_ref(&delivery))
            .await?;
        Ok(first.first().copied().unwrap_or(false))
    }

    /// Records many deliveries in one transaction (a fan-out's batch): for
    /// each, in order, true if it was the first (waiting to delivered, its
    /// `events` recorded with it), false if the target was already past
    /// waiting (nothing recorded). The events of one log are appended
    /// together, in order, so the batch costs one log append per tenant.
    pub async fn mark_delivered_many(
        &self,
        deliveries: &[Delivery],
    ) -> Result<Vec<bool>, StoreError> {
        let mut first = vec![false; deliveries.len()];
        if deliveries.is_empty() {
            return Ok(first);
        }
        let mut tx = self.pool.begin().await?;
        let mut moved = std::collections::HashSet::new();
        for chunk in deliveries.chunks(DELIVERY_CHUNK) {
            // A device named twice in a batch is moved once: the set decides.
            let mut sql =
                String::from("UPDATE job_targets SET state = 'delivered', delivered_at = CASE ");
            for i in 0..chunk.len() {
                let (j, d, at) = (1 + 3 * i, 2 + 3 * i, 3 + 3 * i);
                sql.push_str(&format!(
                    "WHEN job_id = ${j} AND device_id = ${d} THEN ${at} "
                ));
            }
            sql.push_str("END WHERE state = 'waiting' AND (");
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(" OR ");
                }
                sql.push_str(&format!(
                    "(job_id = ${} AND device_id = ${})",
                    1 + 3 * i,
                    2 + 3 * i
                ));
            }
            sql.push_str(") RETURNING job_id, device_id");
            let mut query = sqlx::query(&sql);
            for delivery in chunk {
                query = query
                    .bind(&delivery.job_id)
                    .bind(&delivery.device_id)
                    .bind(delivery.at);
            }
            for row in query.fetch_all(&mut *tx).await? {
                let job_id: String = row.try_get("job_id")?;
                let device_id: String = row.try_get("device_id")?;
                moved.insert((job_id, device_id));
            }
        }
        let mut events = Vec::new();
        for (delivery, first) in deliveries.iter().zip(first.iter_mut()) {
            if moved.remove(&(delivery.job_id.clone(), delivery.device_id.clone())) {
                *first = true;
                events.extend(delivery.events.iter().cloned());
            }
        }
        insert_events_batched(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(first)
    }

    /// Stores a device's result for a job, whatever the job's state now (a
    /// job may expire while it runs; nothing is lost). Returns true if it
    /// was stored now, false if the same result was already stored (a resend
    /// after a lost acknowledgement: acknowledge it again). `events` are
    /// recorded in the same transaction, only when the result is stored now.
    ///
    /// `NotFound` if the device is not a target of the job;
    /// `Conflict("a different result is already stored")` if the target
    /// already has another result (the first one stands).
    pub async fn record_result(
        &self,
        job_id: &str,
        device_id: &str,
        outcome: &TargetOutcome,
        now: Millis,
        events: &[NewAuditEvent],
    ) -> Result<bool, StoreError> {
        let result = ResultColumns::of(outcome);
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE job_targets SET state = $3, exit_code = $4, refusal_code = $5, \
             refusal_reason = $6, stdout = $7, stderr = $8, output_sha256 = $9, \
             started_at = $10, finished_at = $11, reported_at = $12, patch_report = $13 \
             WHERE job_id = $1 AND device_id = $2 AND state IN ('waiting', 'delivered')",
        )
        .bind(job_id)
        .bind(device_id)
        .bind(result.state.as_str())
        .bind(result.exit_code)
        .bind(result.refusal_code.as_deref())
        .bind(result.refusal_reason.as_deref())
        .bind(result.stdout.as_deref())
        .bind(result.stderr.as_deref())
        .bind(result.output_sha256.as_ref().map(|hash| &hash[..]))
        .bind(result.started_at)
        .bind(result.finished_at)
        .bind(now)
        .bind(result.patch_report.as_deref())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            insert_events(&mut tx, events).await?;
            tx.commit().await?;
            return Ok(true);
        }
        // Already finished (or not a target): compare with what is stored.
        const SQL: &str = concat!(
            target_select!(),
            " WHERE jt.job_id = $1 AND jt.device_id = $2"
        );
        let row = sqlx::query(SQL)
            .bind(job_id)
            .bind(device_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound);
        };
        if ResultColumns::of_target(target_from_row(&row)?) == result {
            Ok(false)
        } else {
            Err(StoreError::Conflict("a different result is already stored"))
        }
    }

    /// Marks pending and approved jobs whose `expires_at` has passed as
    /// expired (their unfinished targets keep their state). A job that
    /// expires while pending gets `decided_at = now`. Returns the (job id,
    /// tenant id) of each job it expired.
    pub async fn expire_jobs(&self, now: Millis) -> Result<Vec<(String, String)>, StoreError> {
        self.expire_returning(
            "UPDATE jobs SET state = 'expired', decided_at = COALESCE(decided_at, $1) \
             WHERE state IN ('pending', 'approved') AND expires_at <= $1 \
             RETURNING id, tenant_id",
            AuditAction::JobExpired,
            now,
        )
        .await
    }

    /// Runs an `UPDATE ... RETURNING id, tenant_id` that expires rows as of
    /// `now` (bound as `$1`); returns the (id, tenant id) pairs, sorted.
    pub(crate) async fn expire_returning(
        &self,
        sql: &'static str,
        action: AuditAction,
        now: Millis,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(sql).bind(now).fetch_all(&mut *tx).await?;
        let mut expired = rows
            .iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("tenant_id")?)))
            .collect::<Result<Vec<(String, String)>, StoreError>>()?;
        expired.sort();
        // Each expiry is recorded, by the server, in the same transaction.
        for (id, tenant_id) in &expired {
            let event = NewAuditEvent::new(now, "server", action, id).in_tenant(Some(tenant_id));
            insert_audit(&mut tx, &event).await?;
        }
        tx.commit().await?;
        Ok(expired)
    }
}
