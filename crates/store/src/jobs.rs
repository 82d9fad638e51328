//! Signed jobs: the job and its envelope, one target row per device (its
//! delivery and result), and who approved or rejected it.
//!
//! The store decides nothing about signatures: the server checks envelopes
//! and quorums with the policy code, the agent checks them again before it
//! runs anything. What the store guarantees is the bookkeeping: a job's
//! targets are devices of its tenant (checked in SQL and by the schema),
//! state changes only go forward, an approval cannot overwrite a signature
//! another approver added meanwhile, and a result is stored once.

use sqlx::Row;
use sqlx::any::AnyRow;

use bulwark_protocol::audit_leaf::job_released_detail;
use bulwark_protocol::message::PatchReport;

use crate::audit::{NewAuditEvent, insert_audit, insert_events};
use crate::error::{unique, unique_or_missing};
use crate::{Millis, Store, StoreError, TenantScope, in_scope};

/// Where a job is in its life. Only `Approved` jobs are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for signatures.
    Pending,
    /// The policy's quorum was met (in the server's opinion; the agent checks again).
    Approved,
    Rejected,
    /// Passed `expires_at` while pending or approved.
    Expired,
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl JobState {
    /// The stored name: "pending", "approved", "rejected" or "expired".
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Approved => "approved",
            JobState::Rejected => "rejected",
            JobState::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<JobState> {
        match text {
            "pending" => Some(JobState::Pending),
            "approved" => Some(JobState::Approved),
            "rejected" => Some(JobState::Rejected),
            "expired" => Some(JobState::Expired),
            _ => None,
        }
    }
}

/// Where one target device is with one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    /// Not sent yet.
    Waiting,
    /// Sent at least once; no result yet.
    Delivered,
    /// Ran and exited 0.
    Succeeded,
    /// Ran and exited otherwise (or was killed by a signal).
    Failed,
    /// Ran and was stopped at the job's timeout.
    TimedOut,
    /// The agent refused it (see `refusal_code`).
    Refused,
}

impl std::fmt::Display for TargetState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TargetState {
    /// The stored name: "waiting", "delivered", "succeeded", "failed",
    /// "timed_out" or "refused".
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Waiting => "waiting",
            TargetState::Delivered => "delivered",
            TargetState::Succeeded => "succeeded",
            TargetState::Failed => "failed",
            TargetState::TimedOut => "timed_out",
            TargetState::Refused => "refused",
        }
    }

    pub fn parse(text: &str) -> Option<TargetState> {
        match text {
            "waiting" => Some(TargetState::Waiting),
            "delivered" => Some(TargetState::Delivered),
            "succeeded" => Some(TargetState::Succeeded),
            "failed" => Some(TargetState::Failed),
            "timed_out" => Some(TargetState::TimedOut),
            "refused" => Some(TargetState::Refused),
            _ => None,
        }
    }

    /// True once a result is stored.
    pub fn is_finished(self) -> bool {
        !matches!(self, TargetState::Waiting | TargetState::Delivered)
    }
}

/// An approver's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Decision {
    /// The stored name: "approve" or "reject".
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        }
    }

    pub fn parse(text: &str) -> Option<Decision> {
        match text {
            "approve" => Some(Decision::Approve),
            "reject" => Some(Decision::Reject),
            _ => None,
        }
    }
}

/// How many of a job's targets are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetCounts {
    pub waiting: i64,
    pub delivered: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub timed_out: i64,
    pub refused: i64,
}

impl TargetCounts {
    pub fn total(&self) -> i64 {
        self.waiting + self.delivered + self.succeeded + self.failed + self.timed_out + self.refused
    }
}

/// A job to store, from a verified envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// 32 lowercase hex characters of the statement's job id.
    pub id: String,
    pub tenant_id: String,
    /// Operator id.
    pub requested_by: String,
    pub class: String,
    pub reason: String,
    pub script: Vec<u8>,
    pub script_sha256: [u8; 32],
    /// The Signed envelope as submitted.
    pub envelope: Vec<u8>,
    /// SHA-256 of what its signers sign (`Signed::challenge`): named by the
    /// job's `job.released` log entry.
    pub signed_sha256: [u8; 32],
    pub not_before: Millis,
    pub expires_at: Millis,
    /// `Pending`, or `Approved` when the signatures it arrives with already
    /// meet the policy's quorum (then decided by the requester, at creation).
    pub state: JobState,
    /// Key ids (hex) of registered keys whose signatures the envelope
    /// already carries: each is recorded as an approval by the key's
    /// operator. Each must be registered and unrevoked.
    pub signed_with: Vec<String>,
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub tenant_id: String,
    pub tenant_name: String,
    /// Operator id and username of the requester.
    pub requested_by: String,
    pub requested_by_username: String,
    pub class: String,
    pub reason: String,
    pub script: Vec<u8>,
    pub script_sha256: [u8; 32],
    /// The Signed envelope with every signature gathered so far.
    pub envelope: Vec<u8>,
    pub state: JobState,
    pub not_before: Millis,
    pub expires_at: Millis,
    pub created_at: Millis,
    /// When and by whom it was approved or rejected (or when it expired
    /// while pending, with no one).
    pub decided_at: Option<Millis>,
    pub decided_by: Option<String>,
    pub decision_note: Option<String>,
    pub targets: TargetCounts,
    /// The index of its `job.released` entry in the tenant's log, once
    /// approved (none for jobs from before the log).
    pub release_log_idx: Option<u64>,
    /// When, by whom (operator username) and why it was cancelled (RFD 0012).
    pub cancelled_at: Option<Millis>,
    pub cancelled_by: Option<String>,
    pub cancel_reason: Option<String>,
}

/// One target device of a job, with its result once there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobTarget {
    pub job_id: String,
    pub device_id: String,
    pub hostname: String,
    pub state: TargetState,
    pub exit_code: Option<i64>,
    pub refusal_code: Option<String>,
    pub refusal_reason: Option<String>,
    pub stdout: Option<Vec<u8>>,
    pub stderr: Option<Vec<u8>>,
    pub output_sha256: Option<[u8; 32]>,
    /// The agent's clock, for a script that ran.
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    /// The server's clock: first delivery, and when the result was stored.
    pub delivered_at: Option<Millis>,
    pub reported_at: Option<Millis>,
    /// What an install-patches job did (its agent's report).
    pub patches: Option<PatchReport>,
    /// The agent's clock: when it said the script started (protocol
    /// version 3); none before, or from an older agent.
    pub running_at: Option<Millis>,
    /// Live output bytes kept, and bytes not kept (RFD 0012).
    pub live_bytes: i64,
    pub live_truncated: i64,
}

/// A recorded approval (with a key) or rejection (without one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobApproval {
    pub job_id: String,
    pub operator_id: String,
    pub operator_username: String,
    pub key_id: Option<String>,
    pub key_name: Option<String>,
    pub decision: Decision,
    pub note: Option<String>,
    pub at: Millis,
}

/// The columns of [`Job`], from [`job_from!`].
macro_rules! job_columns {
    () => {
        "j.id, j.tenant_id, t.name AS tenant_name, j.requested_by, \
         o.username AS requested_by_username, j.class, j.reason, j.script, j.script_sha256, \
         j.envelope, j.state, j.not_before, j.expires_at, j.created_at, j.decided_at, \
         j.decided_by, j.decision_note, j.release_log_idx, \
         j.cancelled_at, j.cancel_reason, \
         (SELECT cu.username FROM operators cu WHERE cu.id = j.cancelled_by) AS cancelled_by_username, \
         (SELECT COUNT(*) FROM job_targets c WHERE c.job_id = j.id AND c.state = 'waiting') AS n_waiting, \
         (SELECT COUNT(*) FROM job_targets c WHERE c.job_id = j.id AND c.state = 'delivered') AS n_delivered, \
         (SELECT COUNT(*) FROM job_targets c WHERE c.job_id = j.id AND c.state = 'succeeded') AS n_succeeded, \
         (SELECT COUNT(*) FROM job_targets c WHERE c.job_id = j.id AND c.state = 'failed') AS n_failed, \
         (SELECT COUNT(*) FROM job_targets c WHERE c.job_id = j.id AND c.state = 'timed_out') AS n_timed_out, \
         (SELECT COUNT(*) FROM job_targets c WHERE c.job_id = j.id AND c.state = 'refused') AS n_refused"
    };
}

/// `jobs j` with its tenant `t` and requester `o`.
macro_rules! job_from {
    () => {
        " FROM jobs j JOIN tenants t ON t.id = j.tenant_id JOIN operators o ON o.id = j.requested_by"
    };
}

macro_rules! job_select {
    () => {
        concat!("SELECT ", job_columns!(), job_from!())
    };
}

/// Every column of [`JobTarget`], from `job_targets jt` with its device.
macro_rules! target_select {
    () => {
        "SELECT jt.job_id, jt.device_id, d.hostname, jt.state, jt.exit_code, jt.refusal_code, \
         jt.refusal_reason, jt.stdout, jt.stderr, jt.output_sha256, jt.started_at, jt.finished_at, \
         jt.delivered_at, jt.reported_at, jt.patch_report, jt.running_at, jt.live_bytes, \
         jt.live_truncated \
         FROM job_targets jt JOIN devices d ON d.id = jt.device_id"
    };
}

// Path-scoped, for `job_delivery` too.
pub(crate) use {job_columns, job_from, target_select};

pub(crate) fn hash32(bytes: Vec<u8>, what: &str) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|bytes: Vec<u8>| StoreError::Corrupt(format!("{what} of {} bytes", bytes.len())))
}

pub(crate) fn job_from_row(row: &AnyRow) -> Result<Job, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(Job {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        tenant_name: row.try_get("tenant_name")?,
        requested_by: row.try_get("requested_by")?,
        requested_by_username: row.try_get("requested_by_username")?,
        class: row.try_get("class")?,
        reason: row.try_get("reason")?,
        script: row.try_get("script")?,
        script_sha256: hash32(row.try_get("script_sha256")?, "script hash")?,
        envelope: row.try_get("envelope")?,
        state: JobState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("job state {state:?}")))?,
        not_before: row.try_get("not_before")?,
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
        decided_at: row.try_get("decided_at")?,
        decided_by: row.try_get("decided_by")?,
        decision_note: row.try_get("decision_note")?,
        release_log_idx: row
            .try_get::<Option<i64>, _>("release_log_idx")?
            .map(|idx| {
                u64::try_from(idx).map_err(|_| StoreError::Corrupt("negative log index".into()))
            })
            .transpose()?,
        cancelled_at: row.try_get("cancelled_at")?,
        cancelled_by: row.try_get("cancelled_by_username")?,
        cancel_reason: row.try_get("cancel_reason")?,
        targets: TargetCounts {
            waiting: row.try_get("n_waiting")?,
            delivered: row.try_get("n_delivered")?,
            succeeded: row.try_get("n_succeeded")?,
            failed: row.try_get("n_failed")?,
            timed_out: row.try_get("n_timed_out")?,
            refused: row.try_get("n_refused")?,
        },
    })
}

pub(crate) fn target_from_row(row: &AnyRow) -> Result<JobTarget, StoreError> {
    let state: String = row.try_get("state")?;
    let output_sha256: Option<Vec<u8>> = row.try_get("output_sha256")?;
    Ok(JobTarget {
        job_id: row.try_get("job_id")?,
        device_id: row.try_get("device_id")?,
        hostname: row.try_get("hostname")?,
        state: TargetState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("job target state {state:?}")))?,
        exit_code: row.try_get("exit_code")?,
        refusal_code: row.try_get("refusal_code")?,
        refusal_reason: row.try_get("refusal_reason")?,
        stdout: row.try_get("stdout")?,
        stderr: row.try_get("stderr")?,
        output_sha256: output_sha256
            .map(|bytes| hash32(bytes, "output hash"))
            .transpose()?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        delivered_at: row.try_get("delivered_at")?,
        reported_at: row.try_get("reported_at")?,
        patches: row
            .try_get::<Option<Vec<u8>>, _>("patch_report")?
            .map(|bytes| {
                bulwark_protocol::codec::from_canonical(&bytes)
                    .map_err(|e| StoreError::Corrupt(format!("patch report: {e}")))
            })
            .transpose()?,
        running_at: row.try_get("running_at")?,
        live_bytes: row.try_get("live_bytes")?,
        live_truncated: row.try_get("live_truncated")?,
    })
}

/// Appends a job's `job.released` entry to its tenant's log and records its
/// index on the job, in the caller's transaction (the one that approves it):
/// an approved job is always in the log, and an agent runs nothing that is not.
async fn release_in_log(
    conn: &mut sqlx::AnyConnection,
    job_id: &str,
    now: Millis,
) -> Result<(), StoreError> {
    let row = sqlx::query("SELECT tenant_id, signed_sha256 FROM jobs WHERE id = $1")
        .bind(job_id)
        .fetch_one(&mut *conn)
        .await?;
    let tenant_id: String = row.try_get("tenant_id")?;
    let signed: Option<Vec<u8>> = row.try_get("signed_sha256")?;
    let signed = hash32(
        signed.ok_or_else(|| StoreError::Corrupt(format!("job {job_id} has no signed hash")))?,
        "signed hash",
    )?;
    let event = NewAuditEvent::new(now, "server", crate::AuditAction::JobReleased, job_id)
        .in_tenant(Some(&tenant_id))
        .with_detail(job_released_detail(&signed));
    let seq = insert_audit(conn, &event).await?;
    sqlx::query(
        "UPDATE jobs SET release_log_idx = (SELECT log_idx FROM audit_events WHERE seq = $2) \
         WHERE id = $1",
    )
    .bind(job_id)
    .bind(seq)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn fetch_job(conn: &mut sqlx::AnyConnection, id: &str) -> Result<Job, StoreError> {
    const SQL: &str = concat!(job_select!(), " WHERE j.id = $1");
    let row = sqlx::query(SQL).bind(id).fetch_one(&mut *conn).await?;
    job_from_row(&row)
}

impl Store {
    /// Stores a job and its targets, in one transaction:
    ///
    /// 1. insert the job in `new.state` (`Conflict("job already exists")`
    ///    for a known id, `NotFound` for an unknown tenant or requester);
    /// 2. insert one `waiting` row per target, each only if it is a device of
    ///    the job's tenant: the first that is not (or is no device at all)
    ///    gives `ForeignTarget(its id)`; a device named twice gives
    ///    `Conflict("device named twice as a target")`;
    /// 3. record an approval for each key of `new.signed_with`
    ///    (`Conflict("signing key unknown or revoked")` if one is not a
    ///    registered, unrevoked key).
    ///
    /// `events` (the request, and its approval if it arrives approved) are
    /// recorded in the same transaction, before the `job.released` entry.
    ///
    /// `Invalid` for an empty target list or a state other than `Pending`
    /// and `Approved`. On any error nothing is stored.
    pub async fn create_job(
        &self,
        new: &NewJob,
        targets: &[String],
        now: Millis,
        events: &[NewAuditEvent],
    ) -> Result<Job, StoreError> {
        if targets.is_empty() {
            return Err(StoreError::Invalid("a job needs at least one target"));
        }
        let decided = match new.state {
            JobState::Pending => false,
            JobState::Approved => true,
            JobState::Rejected | JobState::Expired => {
                return Err(StoreError::Invalid("a new job is pending or approved"));
            }
        };
        let mut tx = self.pool.begin().await?;
        // 1.
        sqlx::query(
            "INSERT INTO jobs (id, tenant_id, requested_by, class, reason, script, script_sha256, \
             envelope, state, not_before, expires_at, created_at, decided_at, decided_by, \
             signed_sha256) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(&new.id)
        .bind(&new.tenant_id)
        .bind(&new.requested_by)
        .bind(&new.class)
        .bind(&new.reason)
        .bind(&new.script[..])
        .bind(&new.script_sha256[..])
        .bind(&new.envelope[..])
        .bind(new.state.as_str())
        .bind(new.not_before)
        .bind(new.expires_at)
        .bind(now)
        .bind(decided.then_some(now))
        .bind(decided.then_some(new.requested_by.as_str()))
        .bind(&new.signed_sha256[..])
        .execute(&mut *tx)
        .await
        .map_err(unique_or_missing("job already exists"))?;
        // 2.
        for device_id in targets {
            let done = sqlx::query(
                "INSERT INTO job_targets (job_id, device_id, tenant_id, state) \
                 SELECT $1, d.id, d.tenant_id, 'waiting' FROM devices d \
                 WHERE d.id = $2 AND d.tenant_id = $3",
            )
            .bind(&new.id)
            .bind(device_id)
            .bind(&new.tenant_id)
            .execute(&mut *tx)
            .await
            .map_err(unique("device named twice as a target"))?;
            if done.rows_affected() == 0 {
                return Err(StoreError::ForeignTarget(device_id.clone()));
            }
        }
        // 3.
        for key_id in &new.signed_with {
            let done = sqlx::query(
                "INSERT INTO job_approvals (job_id, operator_id, key_id, decision, note, at) \
                 SELECT $1, k.operator_id, k.key_id, 'approve', NULL, $3 FROM signing_keys k \
                 WHERE k.key_id = $2 AND k.revoked_at IS NULL",
            )
            .bind(&new.id)
            .bind(key_id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(unique("key already signed this job"))?;
            if done.rows_affected() == 0 {
                return Err(StoreError::Conflict("signing key unknown or revoked"));
            }
        }
        // 4. The events that record it, and an approved job's release into
        //    its tenant's log.
        insert_events(&mut tx, events).await?;
        if decided {
            release_in_log(&mut tx, &new.id, now).await?;
        }
        let job = fetch_job(&mut tx, &new.id).await?;
        tx.commit().await?;
        Ok(job)
    }

    /// The job with this id, if its tenant is in scope.
    pub async fn job(&self, scope: &TenantScope, id: &str) -> Result<Option<Job>, StoreError> {
        const SQL: &str = concat!(
            job_select!(),
            " WHERE ",
            in_scope!("j.tenant_id"),
            " AND j.id = $3"
        );
        let (all, operator) = scope.args();
        let row = sqlx::query(SQL)
            .bind(all)
            .bind(operator)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// The newest `limit` jobs of a tenant in scope, newest first.
    pub async fn list_jobs(
        &self,
        scope: &TenantScope,
        tenant_id: &str,
        limit: i64,
    ) -> Result<Vec<Job>, StoreError> {
        const SQL: &str = concat!(
            job_select!(),
            " WHERE ",
            in_scope!("j.tenant_id"),
            " AND j.tenant_id = $3 ORDER BY j.created_at DESC, j.id DESC LIMIT $4"
        );
        let (all, operator) = scope.args();
        let rows = sqlx::query(SQL)
            .bind(all)
            .bind(operator)
            .bind(tenant_id)
            .bind(limit.max(0))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// The targets of a job in scope, ordered by hostname (empty for a job
    /// out of scope or unknown).
    pub async fn job_targets(
        &self,
        scope: &TenantScope,
        job_id: &str,
    ) -> Result<Vec<JobTarget>, StoreError> {
        const SQL: &str = concat!(
            target_select!(),
            " WHERE ",
            in_scope!("jt.tenant_id"),
            " AND jt.job_id = $3 ORDER BY d.hostname, jt.device_id"
        );
        let (all, operator) = scope.args();
        let rows = sqlx::query(SQL)
            .bind(all)
            .bind(operator)
            .bind(job_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(target_from_row).collect()
    }

    /// The approvals and rejections of a job in scope, in the order they were
    /// recorded (empty for a job out of scope or unknown).
    pub async fn job_approvals(
        &self,
        scope: &TenantScope,
        job_id: &str,
    ) -> Result<Vec<JobApproval>, StoreError> {
        const SQL: &str = concat!(
            "SELECT a.job_id, a.operator_id, o.username AS operator_username, a.key_id,",
            " k.name AS key_name, a.decision, a.note, a.at FROM job_approvals a",
            " JOIN jobs j ON j.id = a.job_id JOIN operators o ON o.id = a.operator_id",
            " LEFT JOIN signing_keys k ON k.key_id = a.key_id WHERE ",
            in_scope!("j.tenant_id"),
            " AND a.job_id = $3 ORDER BY a.seq"
        );
        let (all, operator) = scope.args();
        let rows = sqlx::query(SQL)
            .bind(all)
            .bind(operator)
            .bind(job_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let decision: String = row.try_get("decision")?;
                Ok(JobApproval {
                    job_id: row.try_get("job_id")?,
                    operator_id: row.try_get("operator_id")?,
                    operator_username: row.try_get("operator_username")?,
                    key_id: row.try_get("key_id")?,
                    key_name: row.try_get("key_name")?,
                    decision: Decision::parse(&decision).ok_or_else(|| {
                        StoreError::Corrupt(format!("approval decision {decision:?}"))
                    })?,
                    note: row.try_get("note")?,
                    at: row.try_get("at")?,
                })
            })
            .collect()
    }

    /// Records `operator_id`'s signature with `key_id` on a pending job and
    /// replaces its envelope, in one transaction. Returns the job as stored.
    ///
    /// `previous_envelope` is the envelope the caller read and appended the
    /// signature to: if another approval replaced it meanwhile, nothing
    /// changes and the answer is `Conflict("job changed since it was read")`
    /// (read the job again and append to the new envelope), so no signature
    /// is ever lost to a concurrent approval.
    ///
    /// `events` (the signature's audit event) commit with the approval.
    ///
    /// Other answers: `NotFound` for an unknown job;
    /// `Conflict("job is not pending")` for a job approved, rejected,
    /// expired or past `expires_at`; `Conflict("signing key is not the
    /// operator's or is revoked")`; `Conflict("key already signed this job")`.
    // One argument per column it checks or writes, plus the events: a
    // struct for this one call would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_approval(
        &self,
        job_id: &str,
        operator_id: &str,
        key_id: &str,
        previous_envelope: &[u8],
        new_envelope: &[u8],
        now: Millis,
        events: &[NewAuditEvent],
    ) -> Result<Job, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE jobs SET envelope = $2 \
             WHERE id = $1 AND envelope = $3 AND state = 'pending' AND expires_at > $4",
        )
        .bind(job_id)
        .bind(new_envelope)
        .bind(previous_envelope)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            let row = sqlx::query("SELECT state, expires_at FROM jobs WHERE id = $1")
                .bind(job_id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else {
                return Err(StoreError::NotFound);
            };
            let state: String = row.try_get("state")?;
            let expires_at: Millis = row.try_get("expires_at")?;
            return Err(StoreError::Conflict(
                if state != JobState::Pending.as_str() || expires_at <= now {
                    "job is not pending"
                } else {
                    "job changed since it was read"
                },
            ));
        }
        let done = sqlx::query(
            "INSERT INTO job_approvals (job_id, operator_id, key_id, decision, note, at) \
             SELECT $1, k.operator_id, k.key_id, 'approve', NULL, $4 FROM signing_keys k \
             WHERE k.key_id = $3 AND k.operator_id = $2 AND k.revoked_at IS NULL",
        )
        .bind(job_id)
        .bind(operator_id)
        .bind(key_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(unique("key already signed this job"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(
                "signing key is not the operator's or is revoked",
            ));
        }
        insert_events(&mut tx, events).await?;
        let job = fetch_job(&mut tx, job_id).await?;
        tx.commit().await?;
        Ok(job)
    }

    /// Moves a pending job to `state` (approved, rejected or expired),
    /// recording when, by whom and why; a rejection by an operator is also
    /// recorded in the job's approvals, in the same transaction. Returns
    /// whether the job changed: false if it is no longer pending, or (for
    /// `Approved`) past `expires_at`. `events` are recorded in the same
    /// transaction, only if the job changed. `NotFound` for an unknown job;
    /// `Invalid` for `Pending`.
    pub async fn set_job_state(
        &self,
        job_id: &str,
        state: JobState,
        decided_by: Option<&str>,
        note: Option<&str>,
        now: Millis,
        events: &[NewAuditEvent],
    ) -> Result<bool, StoreError> {
        if state == JobState::Pending {
            return Err(StoreError::Invalid("a job cannot return to pending"));
        }
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE jobs SET state = $2, decided_at = $3, decided_by = $4, decision_note = $5 \
             WHERE id = $1 AND state = 'pending' AND ($2 <> 'approved' OR expires_at > $3)",
        )
        .bind(job_id)
        .bind(state.as_str())
        .bind(now)
        .bind(decided_by)
        .bind(note)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            let known: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE id = $1")
                .bind(job_id)
                .fetch_one(&mut *tx)
                .await?;
            return if known == 0 {
                Err(StoreError::NotFound)
            } else {
                Ok(false)
            };
        }
        if let (JobState::Rejected, Some(operator_id)) = (state, decided_by) {
            sqlx::query(
                "INSERT INTO job_approvals (job_id, operator_id, key_id, decision, note, at) \
                 VALUES ($1, $2, NULL, 'reject', $3, $4)",
            )
            .bind(job_id)
            .bind(operator_id)
            .bind(note)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(unique_or_missing("rejection already recorded"))?;
        }
        insert_events(&mut tx, events).await?;
        if state == JobState::Approved {
            release_in_log(&mut tx, job_id, now).await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}
