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
use std::io::{self, Read, Write};
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
pub use bulwark_protocol::message::{JOB_BUSY, LOG_HEAD_STALE};
use bulwark_protocol::message::{
    Job, JobOutcome, JobRefused, JobResult, JobRun, Trust, TrustRefused, TrustStatus,
};
use bulwark_translog::Checkpoint;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::files::{private_dir, sync_dir, write_atomic};
use crate::supervisor::{Exit, RunFiles, kill_group, read_pid, supervisor_alive};
use crate::trust::{TrustOutcome, TrustState};

/// How many acknowledged results `jobs/done/` keeps.
pub const DONE_KEPT: usize = 1024;

pub use crate::supervisor::JOB_PATH;

/// How long past a job's timeout the agent waits for its supervisor.
const SUPERVISOR_GRACE: Duration = Duration::from_secs(60);
/// Jobs waiting behind the running one; more are answered [`JOB_BUSY`]
/// (not a result: the server sends them again).
pub const MAX_QUEUED_JOBS: usize = 16;
/// Refusal code: the agent could not record, start or watch the job.
pub const AGENT_ERROR: &str = "agent_error";
/// Refusal code: this agent takes no jobs (the simulator's virtual devices).
pub const JOBS_DISABLED: &str = "jobs_disabled";

const RECORD: usize = 32;

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

/// The job ids and nonces this agent has accepted, over `jobs/history`.
#[derive(Debug)]
pub struct History {
    file: File,
    ids: HashSet<[u8; 16]>,
    nonces: HashSet<[u8; 16]>,
    records: HashSet<[u8; RECORD]>,
}

impl History {
    /// Opens (or creates) the history file and reads every record.
    pub fn open(path: &Path) -> io::Result<Self> {
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        if !existed && let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let whole = bytes.len() - bytes.len() % RECORD;
        if whole != bytes.len() {
            // A record cut short by a crash: its job never started (a job
            // starts only once its record is on disk). Drop the fragment so
            // the next record starts on a record boundary.
            warn!(
                path = %path.display(),
                "The job history ends with a partial record; removing it."
            );
            file.set_len(u64::try_from(whole).unwrap_or(u64::MAX))?;
            file.sync_all()?;
        }
        let mut ids = HashSet::new();
        let mut nonces = HashSet::new();
        let mut records = HashSet::new();
        for record in bytes[..whole].chunks_exact(RECORD) {
            let (id, nonce) = record.split_at(16);
            ids.insert(id.try_into().unwrap_or_default());
            nonces.insert(nonce.try_into().unwrap_or_default());
            records.insert(record.try_into().unwrap_or([0; RECORD]));
        }
        Ok(Self {
            file,
            ids,
            nonces,
            records,
        })
    }

    /// Appends a record and waits until it is on disk.
    pub fn record(&mut self, job_id: &[u8; 16], nonce: &[u8; 16]) -> io::Result<()> {
        let mut record = [0u8; RECORD];
        record[..16].copy_from_slice(job_id);
        record[16..].copy_from_slice(nonce);
        self.file.write_all(&record)?;
        self.file.sync_data()?;
        self.ids.insert(*job_id);
        self.nonces.insert(*nonce);
        self.records.insert(record);
        Ok(())
    }
}

impl History {
    /// Whether this very job (its id with its nonce) was accepted before: a
    /// redelivery, as opposed to a replay (another job reusing either).
    pub fn ran(&self, job_id: &[u8; 16], nonce: &[u8; 16]) -> bool {
        let mut record = [0u8; RECORD];
        record[..16].copy_from_slice(job_id);
        record[16..].copy_from_slice(nonce);
        self.records.contains(&record)
    }
}

impl JobHistory for History {
    fn seen(&self, job_id: &[u8; 16], nonce: &[u8; 16]) -> bool {
        self.ids.contains(job_id) || self.nonces.contains(nonce)
    }
}

/// Results not yet acknowledged, over `jobs/results/`, and the last
/// acknowledged ones, over `jobs/done/`.
#[derive(Debug, Clone)]
pub struct ResultSpool {
    dir: PathBuf,
    done: PathBuf,
}

impl ResultSpool {
    /// `dir` holds the spool; its sibling `done` the acknowledged results.
    pub fn open(dir: PathBuf) -> io::Result<Self> {
        private_dir(&dir)?;
        let done = dir.with_file_name("done");
        private_dir(&done)?;
        Ok(Self { dir, done })
    }

    /// The recorded result of a job whose result was acknowledged.
    pub fn done(&self, job_id: &[u8; 16]) -> Option<JobResult> {
        let bytes = std::fs::read(self.done.join(format!("{}.cbor", hex::encode(job_id)))).ok()?;
        from_canonical::<JobResult>(&bytes)
            .ok()
            .filter(|r| r.job_id == *job_id)
    }

    /// Moves an acknowledged result to `done/` (keeping the newest
    /// [`DONE_KEPT`]); `false` if there was none.
    pub fn acknowledge(&self, job_id: &[u8; 16]) -> io::Result<bool> {
        let name = format!("{}.cbor", hex::encode(job_id));
        match std::fs::rename(self.dir.join(&name), self.done.join(&name)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
        sync_dir(&self.done)?;
        sync_dir(&self.dir)?;
        let mut kept: Vec<(SystemTime, PathBuf)> = std::fs::read_dir(&self.done)?
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if kept.len() > DONE_KEPT {
            kept.sort();
            for (_, path) in &kept[..kept.len() - DONE_KEPT] {
                let _ = std::fs::remove_file(path);
            }
        }
        Ok(true)
    }

    fn path(&self, job_id: &[u8; 16]) -> PathBuf {
        self.dir.join(format!("{}.cbor", hex::encode(job_id)))
    }

    /// Stores (or replaces) the result of its job, durably.
    pub fn put(&self, result: &JobResult) -> io::Result<()> {
        write_atomic(&self.path(&result.job_id), &to_canonical(result), 0o600)
    }

    pub fn contains(&self, job_id: &[u8; 16]) -> bool {
        self.path(job_id).exists()
    }

    /// Every spooled result, by job id. A file that does not decode is
    /// logged and left for a person to look at.
    pub fn all(&self) -> io::Result<Vec<JobResult>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension() == Some(OsStr::new("cbor")))
            .collect();
        paths.sort();
        let mut results = Vec::with_capacity(paths.len());
        for path in paths {
            let decoded = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| from_canonical::<JobResult>(&bytes).map_err(|e| e.to_string()));
            match decoded {
                Ok(result) if path.file_stem() == Some(OsStr::new(&hex::encode(result.job_id))) => {
                    results.push(result);
                }
                Ok(_) => {
                    warn!(path = %path.display(), "A spooled result is named after another job; skipped.")
                }
                Err(error) => {
                    warn!(path = %path.display(), %error, "A spooled result cannot be read; skipped.")
                }
            }
        }
        Ok(results)
    }
}

/// The job id an envelope claims, if it can be read at all (a refusal needs
/// one to be reported).
pub fn job_id_of(job: &Job, limits: &Limits) -> Option<[u8; 16]> {
    let signed = Signed::from_bytes(&job.envelope, limits).ok()?;
    Some(signed.statement::<JobStatement>(limits).ok()?.job_id)
}

/// A refusal as a result.
pub fn refused(job_id: [u8; 16], code: &str, reason: &str) -> JobResult {
    JobResult {
        job_id,
        outcome: JobOutcome::Refused(JobRefused {
            code: crate::text::clipped(code, bulwark_protocol::Limits::default().max_text),
            reason: crate::text::clipped(reason, bulwark_protocol::Limits::default().max_long_text),
            log_size: None,
        }),
    }
}

/// Answers that are sent once, to the session that delivered the job, and
/// never spooled.
#[derive(Clone, Default)]
struct Answers(Arc<Mutex<Vec<(u64, JobResult)>>>);

impl Answers {
    fn push(&self, session: u64, answer: JobResult) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((session, answer));
    }

    /// The answers for `session`; those for ended sessions are dropped.
    fn take(&self, session: u64) -> Vec<JobResult> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
            .into_iter()
            .filter_map(|(s, answer)| (s == session).then_some(answer))
            .collect()
    }
}

/// The answer of an agent that takes no jobs: refused, not spooled.
pub fn disabled_result(job: &Job) -> Option<JobResult> {
    let job_id = job_id_of(job, &Limits::default())?;
    Some(refused(
        job_id,
        JOBS_DISABLED,
        "this agent does not run jobs",
    ))
}

/// The program that runs a script with the signed interpreter.
pub fn interpreter_path(interpreter: Interpreter) -> &'static str {
    match interpreter {
        Interpreter::Sh => "/bin/sh",
        Interpreter::Bash => "/bin/bash",
        Interpreter::Python3 => "/usr/bin/python3",
    }
}

/// This machine's host name as the system says it now (a job names the
/// host it was chosen by, and the agent compares the two at every job).
pub fn current_hostname() -> String {
    sysinfo::System::host_name().unwrap_or_else(|| "unknown".into())
}

fn create_file(path: &Path, mode: u32) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(mode)
        .open(path)?;
    // `mode` applies only to a new file.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(file)
}

/// Removes a run's files (each may be missing).
fn remove_files(files: &RunFiles) {
    for path in files.all() {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(error) => warn!(path = %path.display(), %error, "Cannot remove a job file."),
        }
    }
}

/// Kills a run's script group and its supervisor when dropped before the
/// run is over: the agent stops cleanly mid-run (a crash leaves the
/// supervisor to finish the job and record it).
struct RunGuard {
    /// `None` once the run is over (a group id may be reused after).
    files: Option<RunFiles>,
    supervisor: Option<i32>,
}

impl RunGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.files.take().and_then(|f| read_pid(&f.pgid)) {
            kill_group(pgid);
        }
        if let Some(pid) = self.supervisor.take() {
            kill_group(pid);
        }
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads `path` into `hasher`, keeping its first `max` bytes.
fn read_hashing(path: &Path, max: usize, hasher: &mut Sha256) -> io::Result<Vec<u8>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut head = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(head);
        }
        hasher.update(&buf[..n]);
        let room = max.saturating_sub(head.len());
        head.extend_from_slice(&buf[..n.min(room)]);
    }
}

/// The first `max` bytes of stdout and of stderr, and SHA-256 of all of
/// stdout followed by all of stderr.
fn collect_output(
    stdout: &Path,
    stderr: &Path,
    max: usize,
) -> io::Result<(Vec<u8>, Vec<u8>, [u8; 32])> {
    let mut hasher = Sha256::new();
    let out = read_hashing(stdout, max, &mut hasher)?;
    let err = read_hashing(stderr, max, &mut hasher)?;
    Ok((out, err, hasher.finalize().into()))
}

/// Runs `script` in `run_dir` under a supervisor (`supervisor` is the
/// `bulwark-agent` binary: see [`crate::supervisor`]) until it exits or
/// `timeout` passes (then its whole process group is killed), and reports
/// what it did. Output goes to files, not pipes: a grandchild holding a
/// pipe open cannot stall the agent, and the hash covers everything however
/// much was written. The files stay until [`remove_run_files`].
pub async fn run_script(
    run_dir: &Path,
    job_id: &[u8; 16],
    script: &[u8],
    interpreter: Interpreter,
    timeout: Duration,
    max_output: usize,
    supervisor: &Path,
) -> io::Result<JobRun> {
    private_dir(run_dir)?;
    let name = hex::encode(job_id);
    let files = RunFiles::new(run_dir, &name);
    create_file(&files.script, 0o700)?.write_all(script)?;
    create_file(&files.stdout, 0o600)?;
    create_file(&files.stderr, 0o600)?;
    let mut child = tokio::process::Command::new(supervisor)
        .arg("supervise")
        .arg(run_dir)
        .arg(&name)
        .arg(interpreter_path(interpreter))
        .arg(timeout.as_secs().max(1).to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Its own group: a signal to the agent's group does not reach it.
        .process_group(0)
        .spawn()?;
    let mut guard = RunGuard {
        files: Some(files.clone()),
        supervisor: child.id().and_then(|id| i32::try_from(id).ok()),
    };
    // The supervisor enforces the timeout; this only guards against a
    // supervisor that hangs.
    let status = match tokio::time::timeout(timeout + SUPERVISOR_GRACE, child.wait()).await {
        Ok(status) => status?,
        Err(_) => {
            guard.kill();
            child.wait().await?
        }
    };
    guard.supervisor = None;
    guard.files = None;
    let Some(exit) = Exit::read(&files.exit) else {
        return Err(io::Error::other(format!(
            "the job supervisor ended ({status}) without recording the script's exit"
        )));
    };
    let (out, err) = (files.stdout.clone(), files.stderr.clone());
    let output = tokio::task::spawn_blocking(move || collect_output(&out, &err, max_output))
        .await
        .map_err(io::Error::other)??;
    Ok(recorded_run(exit, output))
}

/// A run as its supervisor recorded it, with its output.
fn recorded_run(
    exit: Exit,
    (stdout, stderr, output_sha256): (Vec<u8>, Vec<u8>, [u8; 32]),
) -> JobRun {
    JobRun {
        exit_code: exit.code,
        timed_out: exit.timed_out,
        stdout,
        stderr,
        output_sha256,
        started_at_ms: exit.started_at_ms,
        finished_at_ms: exit.finished_at_ms,
    }
}

/// Removes a run's files: only once its result is spooled, so that a crash
/// in between leaves them for the next start to report.
pub fn remove_run_files(run_dir: &Path, job_id: &[u8; 16]) {
    remove_files(&RunFiles::new(run_dir, &hex::encode(job_id)));
}

/// What the files of a run that no agent watched say: the supervisor's
/// record if it finished, else cut short with no exit code; a refusal
/// (`agent_error`) if the script never started (no supervisor pid file).
fn result_from_files(run_dir: &Path, job_id: [u8; 16], max_output: usize) -> io::Result<JobResult> {
    let files = RunFiles::new(run_dir, &hex::encode(job_id));
    let output = collect_output(&files.stdout, &files.stderr, max_output)?;
    let modified = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    };
    let outcome = match (Exit::read(&files.exit), modified(&files.pid)) {
        (Some(exit), _) => {
            info!(job_id = %hex::encode(job_id), exit_code = ?exit.code, "A job finished while the agent was down; reporting what its supervisor recorded.");
            JobOutcome::Ran(recorded_run(exit, output))
        }
        (None, Some(started_at_ms)) => {
            warn!(
                job_id = %hex::encode(job_id),
                "A job was interrupted (its supervisor stopped while it ran); reporting it without an exit code. It will not run again."
            );
            let cut_short = Exit {
                code: None,
                timed_out: false,
                started_at_ms,
                finished_at_ms: now_ms(),
            };
            JobOutcome::Ran(recorded_run(cut_short, output))
        }
        (None, None) => {
            warn!(job_id = %hex::encode(job_id), "The agent stopped before a job's script started; it did not run and will not run again.");
            return Ok(refused(
                job_id,
                AGENT_ERROR,
                "the agent stopped before the script started; it did not run",
            ));
        }
    };
    Ok(JobResult { job_id, outcome })
}

/// The runs a crash or a stop left in `jobs/run/`, by job id: reported
/// from their files unless their result was spooled before the crash, and
/// their files removed. A run whose supervisor still runs (the agent died,
/// the script did not) is returned, to be watched until it ends. Such jobs
/// are in the history: they never run again.
fn recover_interrupted(
    run_dir: &Path,
    spool: &ResultSpool,
    max_output: usize,
) -> io::Result<Vec<[u8; 16]>> {
    let mut ids = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(run_dir)? {
        let entry = entry?;
        if let Some(job_id) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.get(..32))
            .and_then(|n| hex::decode(n).ok())
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
        {
            ids.insert(job_id);
        } else {
            let path = entry.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
    }
    let mut running = Vec::new();
    for job_id in ids {
        let name = hex::encode(job_id);
        let files = RunFiles::new(run_dir, &name);
        if !spool.contains(&job_id) {
            if supervisor_alive(&files, &name) {
                info!(job_id = %name, "A job's script outlived the agent; waiting for its supervisor.");
                running.push(job_id);
                continue;
            }
            spool.put(&result_from_files(run_dir, job_id, max_output)?)?;
        }
        remove_files(&files);
    }
    Ok(running)
}

fn job_log_proof(wire: &bulwark_protocol::message::LogProof) -> JobLogProof<'_> {
    JobLogProof {
        leaf: &wire.leaf,
        index: wire.index,
        checkpoint: &wire.checkpoint,
        inclusion: &wire.inclusion,
        consistency_from: wire.consistency_from,
        consistency: &wire.consistency,
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
    if let Err(error) = trust.accept_log_head(state_dir, proof.checkpoint, head.clone()) {
        error!(%error, "Cannot store the log's tree head; refusing the job.");
        return Err(Refusal::Malformed(format!(
            "cannot store the tree head: {error}"
        )));
    }
    Ok(Some(head))
}

/// Verifies and runs jobs, one at a time; owns the history and the spool.
pub struct JobRunner {
    state_dir: PathBuf,
    run_dir: PathBuf,
    history: History,
    spool: ResultSpool,
    trust: Arc<Mutex<TrustState>>,
    device_id: String,
    /// SHA-256 of this device's public key, as jobs name it.
    device_key: [u8; 32],
    /// Bumped when a verified inventory refresh asks for a full snapshot.
    refresh: Arc<watch::Sender<u64>>,
    /// The connection that delivers jobs now (see [`JobsHandle::begin_session`]).
    session: Arc<AtomicU64>,
    /// Temporary answers ([`LOG_HEAD_STALE`]) for the session that sent the
    /// job, not spooled: a later session announces its head in its `Hello`.
    answers: Answers,
    limits: Limits,
    max_output: usize,
    /// The `bulwark-agent` binary, run as each script's supervisor.
    supervisor: PathBuf,
    /// Jobs whose script outlived an earlier agent: watched first.
    outlived: Vec<[u8; 16]>,
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
        let run_dir = dir.join("run");
        private_dir(&run_dir)?;
        let max_output = bulwark_protocol::Limits::default().max_output_bytes;
        let outlived = recover_interrupted(&run_dir, &spool, max_output)?;
        Ok(Self {
            state_dir: state_dir.to_owned(),
            run_dir,
            history,
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
        })
    }

    /// Runs scripts under `bulwark_agent` binary (tests: this is not it).
    pub fn with_supervisor(mut self, agent_binary: PathBuf) -> Self {
        self.supervisor = agent_binary;
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
            && let Err(error) = trust.accept_log_head(&self.state_dir, proof.checkpoint, head)
        {
            error!(%error, "Cannot store the log's tree head; refusing the job.");
            return Some(Err(Refusal::Malformed(format!(
                "cannot store the tree head: {error}"
            ))));
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
                    code = refusal.code(),
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
                    LOG_HEAD_STALE,
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
            Some(Err(refusal)) if refusal.is_log_alarm() => {
                error!(job_id = %id, code = refusal.code(), reason = %refusal, "SECURITY: refused a job because the transparency log does not vouch for it (withheld, forked, truncated or rewritten); reporting it as an alert.");
                refused(job_id, refusal.code(), &refusal.to_string()).outcome
            }
            Some(Err(refusal)) => {
                warn!(job_id = %id, code = refusal.code(), reason = %refusal, "Refused a job.");
                refused(job_id, refusal.code(), &refusal.to_string()).outcome
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
            _ => {
                let refusal = Refusal::ActionNotSupported(verified.class);
                warn!(job_id = %id, code = refusal.code(), reason = %refusal, "Refused a job.");
                return refused(job.job_id, refusal.code(), &refusal.to_string()).outcome;
            }
        };
        // Never twice, even across a crash: on disk before it starts.
        if let Err(error) = self.history.record(&job.job_id, &job.nonce) {
            error!(job_id = %id, %error, "Cannot record the job in the history; not running it.");
            return refused(
                job.job_id,
                AGENT_ERROR,
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
        let Some(interpreter) = interpreter else {
            // Inventory refresh: the session sends a full snapshot next.
            let started_at_ms = now_ms();
            self.refresh.send_modify(|n| *n = n.wrapping_add(1));
            let stdout =
                b"A full inventory snapshot was requested; the agent sends it now.\n".to_vec();
            return JobOutcome::Ran(JobRun {
                exit_code: Some(0),
                timed_out: false,
                output_sha256: Sha256::digest(&stdout).into(),
                stdout,
                stderr: Vec::new(),
                started_at_ms,
                finished_at_ms: now_ms(),
            });
        };
        let timeout = Duration::from_secs(u64::from(job.timeout_secs));
        match run_script(
            &self.run_dir,
            &job.job_id,
            script,
            interpreter,
            timeout,
            self.max_output,
            &self.supervisor,
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
                    AGENT_ERROR,
                    &format!("cannot run the script: {error}"),
                )
                .outcome
            }
        }
    }
}

/// A job waiting for the runner, with the session that delivered it.
struct Queued {
    job: Job,
    session: u64,
    job_id: Option<[u8; 16]>,
}

/// The session's side of the job runner: queue jobs, apply trust, read and
/// acknowledge results. Cheap to clone.
#[derive(Clone)]
pub struct JobsHandle {
    queue: mpsc::Sender<Queued>,
    /// Job ids queued or running, with the session that delivered them: a
    /// second delivery in the same session is ignored.
    held: Arc<Mutex<HashMap<[u8; 16], u64>>>,
    session: Arc<AtomicU64>,
    answers: Answers,
    spooled: Arc<watch::Sender<u64>>,
    refresh: Arc<watch::Sender<u64>>,
    trust: Arc<Mutex<TrustState>>,
    spool: ResultSpool,
    state_dir: PathBuf,
    limits: Limits,
}

impl std::fmt::Debug for JobsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobsHandle")
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

fn held_ids(held: &Mutex<HashMap<[u8; 16], u64>>) -> MutexGuard<'_, HashMap<[u8; 16], u64>> {
    held.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts the job runner: returns the handle sessions use and the task to
/// spawn (it ends when every handle is dropped).
pub fn start(mut runner: JobRunner) -> (JobsHandle, impl Future<Output = ()> + Send + 'static) {
    let (queue, mut jobs) = mpsc::channel::<Queued>(MAX_QUEUED_JOBS);
    let spooled = Arc::new(watch::Sender::new(0u64));
    let held = Arc::new(Mutex::new(HashMap::new()));
    let handle = JobsHandle {
        queue,
        held: held.clone(),
        session: runner.session.clone(),
        answers: runner.answers.clone(),
        spooled: spooled.clone(),
        refresh: runner.refresh.clone(),
        trust: runner.trust.clone(),
        spool: runner.spool.clone(),
        state_dir: runner.state_dir.clone(),
        limits: runner.limits.clone(),
    };
    let worker = async move {
        if runner.finish_outlived().await > 0 {
            spooled.send_modify(|n| *n = n.wrapping_add(1));
        }
        while let Some(queued) = jobs.recv().await {
            let result = runner.process_from(&queued.job, queued.session).await;
            if let Some(id) = &queued.job_id {
                let mut held = held_ids(&held);
                if held.get(id) == Some(&queued.session) {
                    held.remove(id);
                }
            }
            if result.is_some() {
                spooled.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    };
    (handle, worker)
}

impl JobsHandle {
    /// A new connection: jobs queued by earlier ones are dropped unread
    /// (the server sends them again, with proofs from the head held now).
    /// Returns the size of the tree head held, which the `Hello` announces;
    /// read under the lock that verification takes, so no job of an earlier
    /// connection moves the head after it is announced.
    pub fn begin_session(&self) -> Option<u64> {
        let trust = lock(&self.trust);
        self.session.fetch_add(1, Ordering::SeqCst);
        trust.log_size()
    }

    /// Queues a job behind the running one. A job already queued or running
    /// is ignored. `Some` is an answer to send now, not spooled: the queue
    /// is full, and the server sends the job again after the next result.
    pub fn submit(&self, job: Job) -> Option<JobResult> {
        let job_id = job_id_of(&job, &self.limits);
        let session = self.session.load(Ordering::SeqCst);
        // A copy from an ended session is dropped unread: this one replaces it.
        if let Some(id) = &job_id
            && held_ids(&self.held).insert(*id, session) == Some(session)
        {
            debug!(job_id = %hex::encode(id), "This job is already queued or running; the second delivery is ignored.");
            return None;
        }
        let queued = Queued {
            job,
            session,
            job_id,
        };
        match self.queue.try_send(queued) {
            Ok(()) => None,
            Err(TrySendError::Full(queued)) => {
                if let Some(id) = &queued.job_id {
                    let mut held = held_ids(&self.held);
                    if held.get(id) == Some(&queued.session) {
                        held.remove(id);
                    }
                }
                self.move_to_head_of(&queued.job);
                let id = queued.job_id?;
                info!(job_id = %hex::encode(id), "{MAX_QUEUED_JOBS} jobs are already waiting; the server sends this one again later.");
                Some(refused(
                    id,
                    JOB_BUSY,
                    &format!("{MAX_QUEUED_JOBS} jobs are already waiting; this one was not read"),
                ))
            }
            Err(TrySendError::Closed(queued)) => {
                self.refuse_now(
                    &queued.job,
                    AGENT_ERROR,
                    "the agent's job runner has stopped",
                );
                None
            }
        }
    }

    /// A job refused unread still moves the agent to its tree head (if
    /// valid), as the server assumes: else the next job's consistency proof
    /// would start from a size the agent does not hold.
    fn move_to_head_of(&self, job: &Job) {
        if let Some(wire) = &job.log {
            let mut trust = lock(&self.trust);
            if let Some(tenant) = trust.tenant().map(str::to_owned)
                && let Err(refusal) = accept_log_head(
                    &mut trust,
                    &self.state_dir,
                    &tenant,
                    &job_log_proof(wire),
                    &self.limits,
                )
            {
                // A stale proof start is corrected when the job comes again.
                warn!(code = refusal.code(), reason = %refusal, "The tree head of a job refused unread is not taken.");
            }
        }
    }

    fn refuse_now(&self, job: &Job, code: &str, reason: &str) {
        self.move_to_head_of(job);
        let Some(job_id) = job_id_of(job, &self.limits) else {
            warn!(code, reason, "Dropped a job whose envelope cannot be read.");
            return;
        };
        warn!(job_id = %hex::encode(job_id), code, reason, "Refused a job.");
        match self.spool.put(&refused(job_id, code, reason)) {
            Ok(()) => self.spooled.send_modify(|n| *n = n.wrapping_add(1)),
            Err(error) => error!(%error, "Cannot spool a job result."),
        }
    }

    /// Applies a `Trust` message and saves what was accepted; returns the
    /// refusals to report and the status to send.
    pub fn apply_trust(&self, update: &Trust) -> (Vec<TrustRefused>, TrustStatus) {
        let mut trust = lock(&self.trust);
        let outcomes = trust.apply(update, now_secs(), &self.limits);
        if outcomes
            .iter()
            .any(|o| matches!(o, TrustOutcome::Accepted { .. }))
            && let Err(error) = trust.save(&self.state_dir)
        {
            error!(%error, "Cannot save the accepted trust statements; they hold until the agent restarts.");
        }
        let refusals = outcomes
            .iter()
            .filter_map(crate::trust::refusal_report)
            .collect();
        (refusals, trust.status())
    }

    /// The server stored this result.
    pub fn acknowledge(&self, job_id: &[u8; 16]) {
        match self.spool.acknowledge(job_id) {
            Ok(true) => debug!(job_id = %hex::encode(job_id), "Job result acknowledged."),
            Ok(false) => {
                debug!(job_id = %hex::encode(job_id), "Acknowledgement for a result not in the spool.")
            }
            Err(error) => warn!(%error, "Cannot remove an acknowledged job result."),
        }
    }

    /// Every result waiting for an acknowledgement.
    pub fn pending_results(&self) -> Vec<JobResult> {
        self.spool.all().unwrap_or_else(|error| {
            warn!(%error, "Cannot read the job result spool.");
            Vec::new()
        })
    }

    /// Temporary answers ([`LOG_HEAD_STALE`]) for this session, each
    /// returned once: sent now, never spooled.
    pub fn take_answers(&self) -> Vec<JobResult> {
        self.answers.take(self.session.load(Ordering::SeqCst))
    }

    /// Changes whenever a result is spooled or an answer waits.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.spooled.subscribe()
    }

    /// Changes whenever a verified inventory-refresh job asks for a full snapshot.
    pub fn subscribe_refresh(&self) -> watch::Receiver<u64> {
        self.refresh.subscribe()
    }

    pub fn trust_status(&self) -> TrustStatus {
        lock(&self.trust).status()
    }

    /// The size of the log tree head this agent holds (sent in `Hello`).
    pub fn log_size(&self) -> Option<u64> {
        lock(&self.trust).log_size()
    }
}
