//! Running a script under its supervisor, collecting its bounded output,
//! and recovering runs an earlier agent did not finish.

use super::*;

/// How long past a job's timeout the agent waits for its supervisor.
pub(super) const SUPERVISOR_GRACE: Duration = Duration::from_secs(60);

/// The program that runs a script with the signed interpreter.
pub fn interpreter_path(interpreter: Interpreter) -> &'static str {
    match interpreter {
        Interpreter::Sh => "/bin/sh",
        Interpreter::Bash => "/bin/bash",
        Interpreter::Python3 => "/usr/bin/python3",
    }
}

pub(super) fn create_file(path: &Path, mode: u32) -> io::Result<File> {
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
pub(super) fn remove_files(files: &RunFiles) {
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
pub(super) struct RunGuard {
    /// `None` once the run is over (a group id may be reused after).
    pub(super) files: Option<RunFiles>,
    pub(super) supervisor: Option<i32>,
}

impl RunGuard {
    pub(super) fn kill(&mut self) {
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
pub(super) fn read_hashing(path: &Path, max: usize, hasher: &mut Sha256) -> io::Result<Vec<u8>> {
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
pub(super) fn collect_output(
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
    run_script_watched(
        run_dir,
        job_id,
        script,
        interpreter,
        timeout,
        max_output,
        supervisor,
        None,
    )
    .await
}

/// How often a running script's output is streamed and its cancel looked for.
const WATCH_EVERY: Duration = Duration::from_millis(200);

/// [`run_script`], streaming its start and output to `watch`'s link and
/// killing its process group when the server cancels it (RFD 0012).
// One argument per thing a run needs, plus its watch.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_script_watched(
    run_dir: &Path,
    job_id: &[u8; 16],
    script: &[u8],
    interpreter: Interpreter,
    timeout: Duration,
    max_output: usize,
    supervisor: &Path,
    watch: Option<live::Watch<'_>>,
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
    let mut streamer = watch.map(|w| live::Streamer::new(w, *job_id));
    if let Some(streamer) = &streamer {
        streamer.started(now_ms()).await;
    }
    // The supervisor enforces the timeout; this only guards against a
    // supervisor that hangs.
    let deadline = tokio::time::Instant::now() + timeout + SUPERVISOR_GRACE;
    let mut killed_on_cancel = false;
    let status = loop {
        // `Child::wait` is cancel safe: a wait cut short loses nothing.
        if let Ok(status) = tokio::time::timeout(WATCH_EVERY, child.wait()).await {
            break status?;
        }
        if tokio::time::Instant::now() >= deadline {
            guard.kill();
            break child.wait().await?;
        }
        let Some(streamer) = &mut streamer else {
            continue;
        };
        if !killed_on_cancel && streamer.kill_requested() {
            // The script's group only: its supervisor records how it ended.
            if let Some(pgid) = read_pid(&files.pgid) {
                info!(job_id = %name, "The server cancelled this job; killing its script.");
                kill_group(pgid);
                killed_on_cancel = true;
            }
        }
        streamer.pump(&files, false).await;
    };
    if let Some(streamer) = &mut streamer {
        streamer.pump(&files, true).await;
        streamer.flush().await;
    }
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
pub(super) fn recorded_run(
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
        patches: None,
    }
}

/// A run the agent did itself, without a script: exit 0 and `message` as
/// its output (an inventory refresh, a patch job with nothing to upgrade).
pub(super) fn done_without_script(
    message: &[u8],
    started_at_ms: u64,
    finished_at_ms: u64,
) -> JobRun {
    JobRun {
        exit_code: Some(0),
        timed_out: false,
        output_sha256: Sha256::digest(message).into(),
        stdout: message.to_vec(),
        stderr: Vec::new(),
        started_at_ms,
        finished_at_ms,
        patches: None,
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
pub(super) fn result_from_files(
    run_dir: &Path,
    job_id: [u8; 16],
    max_output: usize,
) -> io::Result<JobResult> {
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
                AgentRefusalCode::AgentError,
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
pub(super) fn recover_interrupted(
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
