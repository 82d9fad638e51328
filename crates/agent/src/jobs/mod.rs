//! Signed jobs on the agent (RFD 0002; DESIGN.md invariant 1: agents
//! authorize, not the server).
//!
//! A job arrives from the server as an envelope and a script. The agent runs
//! it only if `bulwark_policy::log::decide_job` accepts it against the trust this
//! agent holds ([`crate::trust`]) and its own memory of past jobs; otherwise
//! it reports why it refused. Jobs run one at a time, in the order received,
//! on a task of their own ([`start`]), so heartbeats go on while a script runs.
//!
//! On disk, in the state directory (0700; files 0600):
//!
//! * `jobs/history`: 32-byte records, job id then nonce, appended and
//!   fsynced **before** a job starts, so neither a replay nor a crash ever
//!   makes a job run twice;
//! * `jobs/results/<job id hex>.cbor`: results not yet acknowledged by the
//!   server (canonical CBOR of [`JobResult`], replaced atomically), sent
//!   again after every reconnect;
//! * `jobs/done/<job id hex>.cbor`: the last [`DONE_KEPT`] acknowledged
//!   results, so that a job delivered again after it ran is answered with
//!   what it did, never with a refusal;
//! * `jobs/run/`: the running script (`<job id hex>`, 0700), its output
//!   (`.out`, `.err`) and its supervisor's files (`.pid`, `.pgid`, `.exit`:
//!   [`crate::supervisor`]), the script's working directory. They are
//!   removed only once the result is spooled: files still there when the
//!   agent starts mean a crash or a stop came first, and the agent reports
//!   the job from its supervisor's exit record (waiting for a supervisor
//!   that still runs), or with what it had written and no exit code if the
//!   supervisor died too.
//!
//! A job's life on the agent, each step durable before the next: received
//! (queued in memory, once per job id), verified, recorded in the history,
//! started (its files in `jobs/run/`), finished (result spooled), cleaned
//! up, acknowledged (moved to `jobs/done/`). A job delivered again at any
//! step is not run again and not refused: it is ignored while queued or
//! running, and answered from the spool or `jobs/done/` after.
//!
//! What a job does is its signed, typed action (RFD 0005): an inventory
//! refresh makes the session send a full snapshot and runs nothing; a script
//! runs with the interpreter its signers chose (`/bin/sh`, `/bin/bash` or
//! `/usr/bin/python3`; options on a `#!` line are not applied: use `set`);
//! any other action is refused as `action_not_supported` until this agent
//! carries it out. A script runs in a process group of its own, stdin from
//! `/dev/null`, and an environment of `PATH`, `HOME`, `LANG` and
//! `BULWARK_JOB_ID` only. At the signed timeout the whole group is killed,
//! and whatever the script leaves running in its group when it exits is
//! killed too (a job that must start something lasting does it through the
//! service manager). Output is kept to the first 64 KiB of stdout and of
//! stderr, and hashed in full.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bulwark_policy::log::{JobLogProof, LogContext, decide_job, verify_log_head};
use bulwark_policy::{
    AgentContext, Interpreter, JobAction, JobHistory, JobStatement, Limits, Refusal, Signed,
    VerifiedJob, device_key_fingerprint,
};
use bulwark_protocol::codec::{from_canonical, to_canonical};
use bulwark_protocol::message::{
    AgentMessage, AgentRefusalCode, Job, JobOutcome, JobOutput, JobRefused, JobResult, JobRun,
    JobStarted, OutputStream, ScheduledRun, Trust, TrustRefused, TrustStatus,
};
use bulwark_translog::Checkpoint;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::alarms::AlarmLog;
use crate::files::{private_dir, sync_dir, write_atomic};
use crate::supervisor::{Exit, RunFiles, kill_group, read_pid, supervisor_alive};
use crate::trust::{TrustOutcome, TrustState};
use crate::updates::Updates;

pub use crate::supervisor::JOB_PATH;

mod live;
mod patches;
mod queue;
mod records;
mod run;
mod schedule_runs;
mod scheduled;

pub use live::{Attached, LiveLink};
pub use queue::*;
pub use records::*;
pub use run::*;
pub use schedule_runs::*;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

fn now_secs() -> u64 {
    now_ms() / 1000
}

fn lock(trust: &Mutex<TrustState>) -> MutexGuard<'_, TrustState> {
    trust.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The job id an envelope claims, if it can be read at all (a refusal needs
/// one to be reported).
pub fn job_id_of(job: &Job, limits: &Limits) -> Option<[u8; 16]> {
    let signed = Signed::from_bytes(&job.envelope, limits).ok()?;
    Some(signed.statement::<JobStatement>(limits).ok()?.job_id)
}

/// A refusal as a result.
pub fn refused(job_id: [u8; 16], code: AgentRefusalCode, reason: &str) -> JobResult {
    JobResult {
        job_id,
        outcome: JobOutcome::Refused(JobRefused {
            code,
            reason: crate::text::clipped(reason, bulwark_protocol::Limits::default().max_long_text),
            log_size: None,
        }),
    }
}

/// The answer of an agent that takes no jobs: refused, not spooled.
pub fn disabled_result(job: &Job) -> Option<JobResult> {
    let job_id = job_id_of(job, &Limits::default())?;
    Some(refused(
        job_id,
        AgentRefusalCode::JobsDisabled,
        "this agent does not run jobs",
    ))
}

/// This machine's host name as the system says it now (a job names the
/// host it was chosen by, and the agent compares the two at every job).
pub fn current_hostname() -> String {
    sysinfo::System::host_name().unwrap_or_else(|| "unknown".into())
}

fn job_log_proof(wire: &bulwark_protocol::message::LogProof) -> JobLogProof<'_> {
    JobLogProof {
        leaf: &wire.leaf,
        index: wire.index,
        checkpoint: &wire.checkpoint,
        inclusion: &wire.inclusion,
        consistency_from: wire.consistency_from,
        consistency: &wire.consistency,
        witnessed_since: wire.witnessed_since.as_deref(),
        witnessed_since_consistency: wire
            .witnessed_since_consistency
            .as_ref()
            .map_or(&[], |b| b.0.as_slice()),
    }
}

/// Step 13a–c: checks the tree head a job came under against the pinned
/// log key and the held head, and keeps it (on disk first) if it is larger.
/// `None` when the agent has no log key (it then refuses the job later).
fn accept_log_head(
    trust: &mut TrustState,
    state_dir: &Path,
    tenant: &str,
    proof: &JobLogProof<'_>,
    limits: &Limits,
) -> Result<Option<Checkpoint>, Refusal> {
    let Some(log_key) = &trust.log_key else {
        return Ok(None);
    };
    let held = trust.log_head.as_ref().map(|(_, head)| head);
    let head = verify_log_head(log_key, tenant, held, proof, limits)?;
    keep_head(trust, state_dir, proof, head.clone())?;
    Ok(Some(head))
}

/// Keeps a verified tree head (on disk first); what it vouched for is
/// refused when it cannot be kept, since an agent that forgot a head could
/// later accept a log that rolled back past it.
fn keep_head(
    trust: &mut TrustState,
    state_dir: &Path,
    proof: &JobLogProof<'_>,
    head: Checkpoint,
) -> Result<(), Refusal> {
    trust
        .accept_log_head(state_dir, proof.checkpoint, head)
        .map_err(|error| {
            error!(%error, "Cannot store the log's tree head; refusing what it vouched for.");
            Refusal::Malformed(format!("cannot store the tree head: {error}"))
        })
}

/// Verifies and runs jobs, one at a time; owns the history and the spool.
pub struct JobRunner {
    state_dir: PathBuf,
    run_dir: PathBuf,
    history: History,
    /// The last occurrence run of each schedule (RFD 0019).
    schedule_runs: ScheduleRuns,
    spool: ResultSpool,
    trust: Arc<Mutex<TrustState>>,
    device_id: String,
    /// SHA-256 of this device's public key, as jobs name it.
    device_key: [u8; 32],
    /// Bumped when a verified inventory refresh asks for a full snapshot.
    refresh: Arc<watch::Sender<u64>>,
    /// The connection that delivers jobs now (see [`JobsHandle::begin_session`]).
    session: Arc<AtomicU64>,
    /// Temporary answers ([`AgentRefusalCode::LogHeadStale`]) for the
    /// session that sent the job, not spooled: a later session announces its
    /// head in its `Hello`.
    answers: Answers,
    limits: Limits,
    max_output: usize,
    /// The `bulwark-agent` binary, run as each script's supervisor.
    supervisor: PathBuf,
    /// Jobs whose script outlived an earlier agent: watched first.
    outlived: Vec<[u8; 16]>,
    /// apt, for install-patches jobs (refused without it).
    updates: Option<Updates>,
    /// Start notices, output pieces and cancels (protocol version 3).
    live: LiveLink,
    /// Signed agent updates (RFD 0017; refused without it).
    self_update: Option<crate::self_update::SelfUpdate>,
}

impl JobRunner {
    /// Opens `jobs/` in the state directory (reporting interrupted jobs).
    pub fn open(
        state_dir: &Path,
        device_id: &str,
        device_public_key: &[u8; 32],
        trust: Arc<Mutex<TrustState>>,
    ) -> io::Result<Self> {
        let dir = state_dir.join("jobs");
        private_dir(&dir)?;
        let spool = ResultSpool::open(dir.join("results"))?;
        let history = History::open(&dir.join("history"))?;
        let schedule_runs = ScheduleRuns::open(&dir.join("schedules"))?;
        let run_dir = dir.join("run");
        private_dir(&run_dir)?;
        let max_output = bulwark_protocol::Limits::default().max_output_bytes;
        let outlived = recover_interrupted(&run_dir, &spool, max_output)?;
        Ok(Self {
            state_dir: state_dir.to_owned(),
            run_dir,
            history,
            schedule_runs,
            spool,
            trust,
            device_id: device_id.to_owned(),
            device_key: device_key_fingerprint(device_public_key),
            refresh: Arc::new(watch::Sender::new(0)),
            session: Arc::new(AtomicU64::new(0)),
            answers: Answers::default(),
            limits: Limits::default(),
            max_output,
            supervisor: std::env::current_exe()?,
            outlived,
            updates: None,
            live: LiveLink::default(),
            self_update: None,
        })
    }

    /// Runs scripts under `bulwark_agent` binary (tests: this is not it).
    pub fn with_supervisor(mut self, agent_binary: PathBuf) -> Self {
        self.supervisor = agent_binary;
        self
    }

    /// Runs install-patches jobs with `updates`' apt (and refreshes them
    /// after each run and on an inventory refresh).
    pub fn with_updates(mut self, updates: Updates) -> Self {
        self.updates = Some(updates);
        self
    }

    /// Records the log alarms it refuses, and the trust statements its
    /// handles refuse, in `alarms` (the endpoint's own record).
    pub fn with_alarms(mut self, alarms: AlarmLog) -> Self {
        if let Some(tenant) = lock(&self.trust).history.tenant() {
            alarms.set_tenant(tenant);
        }
        self.spool = self.spool.with_alarms(alarms);
        self
    }

    /// Carries out update-agent jobs (RFD 0017) with this mirror and root.
    pub fn with_self_update(mut self, self_update: crate::self_update::SelfUpdate) -> Self {
        self.self_update = Some(self_update);
        self
    }

    /// Waits for the supervisors of scripts that outlived an earlier agent
    /// and spools what they recorded; returns how many results it spooled.
    pub async fn finish_outlived(&mut self) -> usize {
        let mut spooled = 0;
        for job_id in std::mem::take(&mut self.outlived) {
            let name = hex::encode(job_id);
            let files = RunFiles::new(&self.run_dir, &name);
            while supervisor_alive(&files, &name) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let (run_dir, max_output) = (self.run_dir.clone(), self.max_output);
            let result = tokio::task::spawn_blocking(move || {
                result_from_files(&run_dir, job_id, max_output)
            })
            .await
            .map_err(io::Error::other)
            .and_then(|r| r);
            match result.and_then(|result| self.spool.put(&result)) {
                Ok(()) => {
                    remove_files(&files);
                    spooled += 1;
                }
                Err(error) => {
                    error!(job_id = %name, %error, "Cannot report a job that outlived the agent; the next start tries again.");
                }
            }
        }
        spooled
    }

    pub fn spool(&self) -> &ResultSpool {
        &self.spool
    }

    /// What a run streams to; `cancellable`: killed on a cancel.
    fn watch(&self, cancellable: bool) -> live::Watch<'_> {
        let limits = bulwark_protocol::Limits::default();
        live::Watch {
            link: &self.live,
            cancellable,
            max_bytes: limits.max_live_output_bytes,
            max_piece: limits.max_output_chunk_bytes,
        }
    }

    pub fn trust(&self) -> &Arc<Mutex<TrustState>> {
        &self.trust
    }

    /// Invariant 1: may this agent run this job now, under what it trusts?
    /// The decision is `bulwark_policy::log::decide_job` (steps 1 to 13);
    /// this keeps the tree head it returns (on disk first) and nothing else.
    /// `None` when the job came from a session that has ended: checked
    /// under the trust lock, which [`JobsHandle::begin_session`] takes to
    /// read the head it announces, so the two cannot interleave.
    fn verify(
        &self,
        signed: &Signed,
        job: &Job,
        session: u64,
    ) -> Option<Result<VerifiedJob, Refusal>> {
        let mut trust = lock(&self.trust);
        if self.session.load(Ordering::SeqCst) != session {
            return None;
        }
        let Some(tenant) = trust.tenant().map(str::to_owned) else {
            return Some(Err(Refusal::NoPolicy));
        };
        let Some(policy) = trust.history.policy() else {
            return Some(Err(Refusal::NoPolicy));
        };
        let proof = job.log.as_ref().map(job_log_proof);
        let hostname = current_hostname();
        let decision = decide_job(
            signed,
            &job.script,
            proof.as_ref(),
            AgentContext {
                tenant: &tenant,
                device_id: &self.device_id,
                hostname: &hostname,
                device_key: &self.device_key,
                policy,
                freeze: trust.history.freeze(),
            },
            LogContext {
                key: trust.log_key.as_ref(),
                held: trust.log_head.as_ref().map(|(_, head)| head),
            },
            &self.history,
            now_secs(),
            &self.limits,
        );
        if let (Some(head), Some(proof)) = (decision.new_head, &proof)
            && let Err(refusal) = keep_head(&mut trust, &self.state_dir, proof, head)
        {
            return Some(Err(refusal));
        }
        Some(decision.verdict)
    }

    /// Verifies `job`, runs it if it passes, and spools the result (a
    /// refusal is a result too). `None` when there is nothing to report: the
    /// envelope names no job id, or this job was accepted before (its result
    /// is spooled and sent again after the next reconnect).
    pub async fn process(&mut self, job: &Job) -> Option<JobResult> {
        let session = self.session.load(Ordering::SeqCst);
        self.process_from(job, session).await
    }

    /// [`JobRunner::process`] for a job delivered by session `session`: if
    /// another session has begun since, the job is dropped unread (that
    /// session sends it again, with a proof from the tree head held now).
    async fn process_from(&mut self, job: &Job, session: u64) -> Option<JobResult> {
        let (signed, job_id, nonce) = Signed::from_bytes(&job.envelope, &self.limits)
            .and_then(|s| {
                let statement = s.statement::<JobStatement>(&self.limits)?;
                Ok((s, statement.job_id, statement.nonce))
            })
            .inspect_err(|refusal| {
                warn!(
                    code = %refusal.code(),
                    reason = %refusal,
                    "Refused a job whose envelope cannot be read (no job id to report it under)."
                )
            })
            .ok()?;
        let id = hex::encode(job_id);
        let outcome = match self.verify(&signed, job, session) {
            None => {
                info!(job_id = %id, "Dropped a job delivered by an earlier connection; the server sends it again.");
                return None;
            }
            // This very job again (a redelivery, not a replay): never run
            // twice, never refused; answered with what it did.
            Some(Err(Refusal::Replayed)) if self.history.ran(&job_id, &nonce) => {
                if self.spool.contains(&job_id) {
                    info!(job_id = %id, "This job already ran; its result is spooled and will be sent again.");
                    return None;
                }
                let Some(done) = self.spool.done(&job_id) else {
                    info!(job_id = %id, "This job already ran and its result was acknowledged.");
                    return None;
                };
                info!(job_id = %id, "This job already ran; sending its recorded result again.");
                done.outcome
            }
            // The server's idea of this agent's head drifted: not an alarm
            // and not a result. It proves from the size named and sends again.
            Some(Err(Refusal::LogHeadStale { held, from })) => {
                info!(job_id = %id, held, from, "The job's consistency proof starts from a tree size this agent does not hold; the server sends it again from the size held.");
                let mut answer = refused(
                    job_id,
                    AgentRefusalCode::LogHeadStale,
                    &format!(
                        "the consistency proof starts at size {from}, the agent holds size {held}"
                    ),
                );
                if let JobOutcome::Refused(r) = &mut answer.outcome {
                    r.log_size = Some(held);
                }
                self.answers.push(session, answer.clone());
                return Some(answer);
            }
            Some(Err(refusal)) if refusal.code().is_log_alarm() => {
                error!(job_id = %id, code = %refusal.code(), reason = %refusal, "SECURITY: refused a job because the transparency log does not vouch for it (withheld, forked, truncated or rewritten); reporting it as an alert.");
                refused(job_id, refusal.code(), &refusal.to_string()).outcome
            }
            Some(Err(refusal)) => {
                warn!(job_id = %id, code = %refusal.code(), reason = %refusal, "Refused a job.");
                refused(job_id, refusal.code(), &refusal.to_string()).outcome
            }
            // Cancelled before it started: not run, not recorded as run (RFD 0012).
            Some(Ok(_)) if self.live.is_cancelled(&job_id) => {
                info!(job_id = %id, "The server cancelled this job before it started; not running it.");
                refused(
                    job_id,
                    AgentRefusalCode::Cancelled,
                    "cancelled before it started; it did not run",
                )
                .outcome
            }
            Some(Ok(verified)) => self.run(&id, verified, &job.script).await,
        };
        let result = JobResult { job_id, outcome };
        match self.spool.put(&result) {
            // Durable: now the run's files may go.
            Ok(()) => remove_run_files(&self.run_dir, &job_id),
            Err(error) => {
                error!(job_id = %id, %error, "Cannot spool a job result; its files stay, and the next start reports it as interrupted.");
            }
        }
        Some(result)
    }

    async fn run(&mut self, id: &str, verified: VerifiedJob, script: &[u8]) -> JobOutcome {
        let job = &verified.statement;
        // An action this agent does not carry out yet is refused before it
        // is recorded: a later agent may run the same signed job.
        let interpreter = match &job.action {
            JobAction::InventoryRefresh => None,
            JobAction::RunScript { interpreter, .. } => Some(*interpreter),
            JobAction::InstallPatches { .. } if self.updates.is_some() => None,
            JobAction::UpdateAgent { .. } if self.self_update.is_some() => None,
            _ => {
                let refusal = Refusal::ActionNotSupported(verified.class);
                warn!(job_id = %id, code = %refusal.code(), reason = %refusal, "Refused a job.");
                return refused(job.job_id, refusal.code(), &refusal.to_string()).outcome;
            }
        };
        // An update is verified and downloaded before it is recorded: a
        // refusal here changes nothing, and the same signed job may be
        // tried again (a mirror that was missing a file).
        let prepared = match (&job.action, &self.self_update) {
            (
                JobAction::UpdateAgent {
                    version,
                    binary_sha256,
                },
                Some(update),
            ) => match update.prepare(version, binary_sha256).await {
                Ok(prepared) => Some(prepared),
                Err(refusal) => {
                    warn!(job_id = %id, code = %refusal.code, reason = %refusal.reason, "Refused an agent update.");
                    return refused(job.job_id, refusal.code, &refusal.reason).outcome;
                }
            },
            _ => None,
        };
        // Never twice, even across a crash: on disk before it starts.
        if let Err(error) = self.history.record(&job.job_id, &job.nonce) {
            error!(job_id = %id, %error, "Cannot record the job in the history; not running it.");
            return refused(
                job.job_id,
                AgentRefusalCode::AgentError,
                &format!("cannot record the job before running it: {error}"),
            )
            .outcome;
        }
        info!(
            job_id = %id,
            class = verified.class.name(),
            action = %job.action.describe(),
            signers = verified.signers.len(),
            timeout_secs = job.timeout_secs,
            reason = %job.reason,
            "Running a verified job."
        );
        if let (Some(prepared), Some(update)) = (&prepared, &self.self_update) {
            // Replaces this process on success; the result is recorded by
            // the new binary once healthy, or by the launcher's roll-back.
            let error = update.install_and_restart(job.job_id, prepared);
            error!(job_id = %id, error = %format!("{error:#}"), "Cannot install the agent update.");
            return refused(
                job.job_id,
                AgentRefusalCode::AgentError,
                &format!("cannot install the update: {error:#}"),
            )
            .outcome;
        }
        if let (JobAction::InstallPatches { packages }, Some(updates)) =
            (&job.action, self.updates.clone())
        {
            let timeout = Duration::from_secs(u64::from(job.timeout_secs));
            return self
                .install_patches(id, job.job_id, packages, &updates, timeout)
                .await;
        }
        let Some(interpreter) = interpreter else {
            // Inventory refresh: the session sends a full snapshot next,
            // and the pending updates are read again.
            if let Some(updates) = &self.updates {
                updates.refresh_soon();
            }
            let started_at_ms = now_ms();
            self.refresh.send_modify(|n| *n = n.wrapping_add(1));
            return JobOutcome::Ran(run::done_without_script(
                b"A full inventory snapshot was requested; the agent sends it now.\n",
                started_at_ms,
                now_ms(),
            ));
        };
        let timeout = Duration::from_secs(u64::from(job.timeout_secs));
        match run::run_script_watched(
            &self.run_dir,
            &job.job_id,
            script,
            interpreter,
            timeout,
            self.max_output,
            &self.supervisor,
            Some(self.watch(true)),
        )
        .await
        {
            Ok(run) => {
                info!(
                    job_id = %id,
                    exit_code = ?run.exit_code,
                    timed_out = run.timed_out,
                    "Job finished."
                );
                JobOutcome::Ran(run)
            }
            Err(error) => {
                error!(job_id = %id, %error, "Cannot run the job.");
                refused(
                    job.job_id,
                    AgentRefusalCode::AgentError,
                    &format!("cannot run the script: {error}"),
                )
                .outcome
            }
        }
    }
}
