//! Scheduled jobs (migration 0037, RFD 0019): the signed schedules as
//! given, and one row per occurrence a node took on to deliver.
//!
//! The store keeps what it is given: the server checks each statement
//! before storing it, and agents check it again at every run. The claim of
//! an occurrence is the `schedule_runs` primary key: of two nodes (or two
//! ticks) claiming one occurrence, one inserts the row and delivers; the
//! other gets `false` and does nothing.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::insert_events;
use crate::error::unique_or_missing;
use crate::{Millis, NewAuditEvent, Store, StoreError, TenantScope, in_scope};

/// A schedule as submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSchedule {
    /// 32 lowercase hex characters of the statement's schedule id.
    pub id: String,
    pub tenant_id: String,
    /// Operator id.
    pub created_by: String,
    pub class: String,
    pub reason: String,
    pub script: Vec<u8>,
    /// The Signed schedule statement.
    pub envelope: Vec<u8>,
    pub not_before: Millis,
    pub not_after: Millis,
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub id: String,
    pub tenant_id: String,
    pub created_by: String,
    pub created_by_username: String,
    pub class: String,
    pub reason: String,
    pub script: Vec<u8>,
    pub envelope: Vec<u8>,
    pub not_before: Millis,
    pub not_after: Millis,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
    pub revoked_by: Option<String>,
}

/// An occurrence a node claimed for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRun {
    pub schedule_id: String,
    /// Unix seconds.
    pub occurrence: i64,
    /// The run's job id (hex).
    pub job_id: String,
    pub claimed_by: String,
    pub claimed_at: Millis,
}

/// An occurrence a node claims, and the job its run is (RFD 0019).
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub schedule_id: &'a str,
    /// Unix seconds.
    pub occurrence: i64,
    /// The run's job id (hex of `run_job_id`).
    pub job_id: &'a str,
    /// SHA-256 of the schedule's script (the job row's `script_sha256`).
    pub script_sha256: &'a [u8],
    /// The device ids the schedule names; those not of its tenant are skipped.
    pub targets: &'a [String],
    /// How long after the occurrence the run may still be delivered.
    pub run_window_ms: i64,
}

/// An occurrence to deliver to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverableRun {
    pub job_id: String,
    pub schedule_id: String,
    /// Unix seconds.
    pub occurrence: i64,
    pub envelope: Vec<u8>,
    pub script: Vec<u8>,
    /// The schedule's `schedule.created` entry in its tenant's log.
    pub log_idx: Option<i64>,
}

macro_rules! schedule_select {
    () => {
        "SELECT s.id, s.tenant_id, s.created_by, o.username AS created_by_username, s.class, \
         s.reason, s.script, s.envelope, s.not_before, s.not_after, s.created_at, \
         s.revoked_at, s.revoked_by \
         FROM schedules s JOIN operators o ON o.id = s.created_by"
    };
}

fn schedule_from_row(row: &AnyRow) -> Result<Schedule, StoreError> {
    Ok(Schedule {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        created_by: row.try_get("created_by")?,
        created_by_username: row.try_get("created_by_username")?,
        class: row.try_get("class")?,
        reason: row.try_get("reason")?,
        script: row.try_get("script")?,
        envelope: row.try_get("envelope")?,
        not_before: row.try_get("not_before")?,
        not_after: row.try_get("not_after")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
        revoked_by: row.try_get("revoked_by")?,
    })
}

fn run_from_row(row: &AnyRow) -> Result<ScheduleRun, StoreError> {
    Ok(ScheduleRun {
        schedule_id: row.try_get("schedule_id")?,
        occurrence: row.try_get("occurrence")?,
        job_id: row.try_get("job_id")?,
        claimed_by: row.try_get("claimed_by")?,
        claimed_at: row.try_get("claimed_at")?,
    })
}

/// Inserts a schedule in `tx` (the patch policies' rings use it too);
/// `Conflict("schedule exists")` for an id already stored.
pub(crate) async fn insert_schedule(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    new: &NewSchedule,
    now: Millis,
) -> Result<Schedule, StoreError> {
    if new.not_after <= new.not_before {
        return Err(StoreError::Invalid("a schedule ends after it starts"));
    }
    sqlx::query(
        "INSERT INTO schedules (id, tenant_id, created_by, class, reason, script, envelope, \
         not_before, not_after, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&new.id)
    .bind(&new.tenant_id)
    .bind(&new.created_by)
    .bind(&new.class)
    .bind(&new.reason)
    .bind(&new.script[..])
    .bind(&new.envelope[..])
    .bind(new.not_before)
    .bind(new.not_after)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(unique_or_missing("schedule exists"))?;
    const SQL: &str = concat!(schedule_select!(), " WHERE s.id = $1");
    let row = sqlx::query(SQL).bind(&new.id).fetch_one(&mut **tx).await?;
    schedule_from_row(&row)
}

impl Store {
    /// Stores a schedule with `events` in one transaction;
    /// `Conflict("schedule exists")` for an id already stored.
    pub async fn create_schedule(
        &self,
        new: &NewSchedule,
        now: Millis,
        events: &[NewAuditEvent],
    ) -> Result<Schedule, StoreError> {
        let mut tx = self.pool.begin().await?;
        let stored = insert_schedule(&mut tx, new, now).await?;
        insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// The schedule with this id, if its tenant is in scope.
    pub async fn schedule(
        &self,
        scope: &TenantScope,
        id: &str,
    ) -> Result<Option<Schedule>, StoreError> {
        const SQL: &str = concat!(
            schedule_select!(),
            " WHERE ",
            in_scope!("s.tenant_id"),
            " AND s.id = $3"
        );
        let (all, operator) = scope.args();
        let row = sqlx::query(SQL)
            .bind(all)
            .bind(operator)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(schedule_from_row).transpose()
    }

    /// A tenant's newest `limit` schedules in scope, newest first.
    pub async fn list_schedules(
        &self,
        scope: &TenantScope,
        tenant_id: &str,
        limit: i64,
    ) -> Result<Vec<Schedule>, StoreError> {
        const SQL: &str = concat!(
            schedule_select!(),
            " WHERE ",
            in_scope!("s.tenant_id"),
            " AND s.tenant_id = $3 ORDER BY s.created_at DESC, s.id DESC LIMIT $4"
        );
        let (all, operator) = scope.args();
        let rows = sqlx::query(SQL)
            .bind(all)
            .bind(operator)
            .bind(tenant_id)
            .bind(limit.max(0))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    /// Every schedule not revoked whose life has not ended at `now`
    /// (milliseconds): what the scheduler looks at. Not tenant-scoped: the
    /// server's own duty.
    pub async fn live_schedules(&self, now: Millis) -> Result<Vec<Schedule>, StoreError> {
        const SQL: &str = concat!(
            schedule_select!(),
            " WHERE s.revoked_at IS NULL AND s.not_after > $1 ORDER BY s.id"
        );
        let rows = sqlx::query(SQL).bind(now).fetch_all(&self.pool).await?;
        rows.iter().map(schedule_from_row).collect()
    }

    /// Revokes a tenant's schedule with `events`, in one transaction:
    /// nothing more is claimed or delivered. `NotFound` for another
    /// tenant's or an unknown one, `Conflict("schedule already revoked")`.
    pub async fn revoke_schedule(
        &self,
        tenant_id: &str,
        id: &str,
        by: &str,
        now: Millis,
        events: &[NewAuditEvent],
    ) -> Result<Schedule, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE schedules SET revoked_at = $1, revoked_by = $2 \
             WHERE id = $3 AND tenant_id = $4 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(by)
        .bind(id)
        .bind(tenant_id)
        .execute(&mut *tx)
        .await?;
        const SQL: &str = concat!(schedule_select!(), " WHERE s.id = $1 AND s.tenant_id = $2");
        let row = sqlx::query(SQL)
            .bind(id)
            .bind(tenant_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict("schedule already revoked"));
        }
        insert_events(&mut tx, events).await?;
        let stored = schedule_from_row(&row)?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Claims an occurrence of a live schedule for delivery by `node`,
    /// recording `events` with the claim, and makes the run's job (state
    /// `approved`, valid from the occurrence for the agents' run window,
    /// one `waiting` target per device of the schedule's tenant in
    /// `claim.targets`), in one transaction: its result comes back as a
    /// job's. `true` when this call made the claim; `false` when it was
    /// claimed before (by this node or another), or the schedule is
    /// revoked: deliver nothing.
    pub async fn claim_occurrence(
        &self,
        claim: &Claim<'_>,
        node: &str,
        now: Millis,
        events: &[NewAuditEvent],
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "INSERT INTO schedule_runs (schedule_id, tenant_id, occurrence, job_id, claimed_by, \
             claimed_at) SELECT s.id, s.tenant_id, $2, $3, $4, $5 FROM schedules s \
             WHERE s.id = $1 AND s.revoked_at IS NULL ON CONFLICT DO NOTHING",
        )
        .bind(claim.schedule_id)
        .bind(claim.occurrence)
        .bind(claim.job_id)
        .bind(node)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let starts = claim.occurrence.saturating_mul(1000);
        sqlx::query(
            "INSERT INTO jobs (id, tenant_id, requested_by, class, reason, script, script_sha256, \
             envelope, state, not_before, expires_at, created_at, decided_at) \
             SELECT $1, s.tenant_id, s.created_by, s.class, s.reason, s.script, $2, s.envelope, \
             'approved', $3, $4, $5, $5 FROM schedules s WHERE s.id = $6",
        )
        .bind(claim.job_id)
        .bind(claim.script_sha256)
        .bind(starts)
        .bind(starts.saturating_add(claim.run_window_ms))
        .bind(now)
        .bind(claim.schedule_id)
        .execute(&mut *tx)
        .await
        .map_err(unique_or_missing("job exists"))?;
        for device in claim.targets {
            sqlx::query(
                "INSERT INTO job_targets (job_id, device_id, tenant_id, state) \
                 SELECT $1, d.id, d.tenant_id, 'waiting' FROM devices d \
                 JOIN schedules s ON s.tenant_id = d.tenant_id \
                 WHERE s.id = $2 AND d.id = $3 ON CONFLICT DO NOTHING",
            )
            .bind(claim.job_id)
            .bind(claim.schedule_id)
            .bind(device)
            .execute(&mut *tx)
            .await?;
        }
        insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The claimed occurrences waiting for (or sent to and not answered
    /// by) `device_id`, still inside their run window at `now`, of
    /// schedules not revoked, earliest first, each with the log index of
    /// its schedule's `schedule.created` entry. Not tenant-scoped: the
    /// gateway's.
    pub async fn scheduled_runs_for_device(
        &self,
        device_id: &str,
        now: Millis,
    ) -> Result<Vec<DeliverableRun>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.job_id, r.schedule_id, r.occurrence, s.envelope, s.script, \
             (SELECT MIN(e.log_idx) FROM audit_events e WHERE e.tenant_id = s.tenant_id \
              AND e.action = 'schedule.created' AND e.target = s.id) AS log_idx \
             FROM schedule_runs r JOIN schedules s ON s.id = r.schedule_id \
             JOIN jobs j ON j.id = r.job_id \
             JOIN job_targets jt ON jt.job_id = r.job_id \
             WHERE jt.device_id = $1 AND jt.state IN ('waiting', 'delivered') \
             AND j.cancelled_at IS NULL AND j.expires_at > $2 AND s.revoked_at IS NULL \
             ORDER BY r.occurrence, r.job_id",
        )
        .bind(device_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeliverableRun {
                    job_id: row.try_get("job_id")?,
                    schedule_id: row.try_get("schedule_id")?,
                    occurrence: row.try_get("occurrence")?,
                    envelope: row.try_get("envelope")?,
                    script: row.try_get("script")?,
                    log_idx: row.try_get("log_idx")?,
                })
            })
            .collect()
    }

    /// The newest `limit` claimed occurrences of a schedule in scope,
    /// newest first (empty for one out of scope).
    pub async fn schedule_runs(
        &self,
        scope: &TenantScope,
        schedule_id: &str,
        limit: i64,
    ) -> Result<Vec<ScheduleRun>, StoreError> {
        const SQL: &str = concat!(
            "SELECT r.schedule_id, r.occurrence, r.job_id, r.claimed_by, r.claimed_at \
             FROM schedule_runs r WHERE ",
            in_scope!("r.tenant_id"),
            " AND r.schedule_id = $3 ORDER BY r.occurrence DESC LIMIT $4"
        );
        let (all, operator) = scope.args();
        let rows = sqlx::query(SQL)
            .bind(all)
            .bind(operator)
            .bind(schedule_id)
            .bind(limit.max(0))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_from_row).collect()
    }
}
