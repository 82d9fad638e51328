//! The job supervisor (issue 19): a small process between the agent and a
//! job's script, `bulwark-agent supervise`. It owns the script's process
//! group, kills the group at the signed timeout and when the script exits,
//! and writes the exit status where the agent finds it. It outlives an
//! agent that crashes or is killed, so the script neither runs on
//! unobserved nor loses its exit code: the restarted agent waits for the
//! supervisor and reports the true result.
//!
//! Files, in the run directory, for job `NAME` (its id in hex):
//!
//! * `NAME.pid`: the supervisor's pid, written (and synced) before the
//!   script starts. No pid file: the script never started.
//! * `NAME.pgid`: the script's process group, written once it started (the
//!   agent kills it on a clean shutdown).
//! * `NAME.exit`: the outcome, written atomically once the script and its
//!   group are gone: `exit <code|->`, `timed_out <0|1>`, `started <ms>`,
//!   `finished <ms>`, one per line.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::files::write_atomic;

/// `PATH` of every script.
pub const JOB_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// One run's files.
#[derive(Debug, Clone)]
pub struct RunFiles {
    pub script: PathBuf,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub pid: PathBuf,
    pub pgid: PathBuf,
    pub exit: PathBuf,
}

impl RunFiles {
    pub fn new(run_dir: &Path, name: &str) -> Self {
        let at = |suffix: &str| run_dir.join(format!("{name}{suffix}"));
        Self {
            script: at(""),
            stdout: at(".out"),
            stderr: at(".err"),
            pid: at(".pid"),
            pgid: at(".pgid"),
            exit: at(".exit"),
        }
    }

    pub fn all(&self) -> [&PathBuf; 6] {
        [
            &self.script,
            &self.stdout,
            &self.stderr,
            &self.pid,
            &self.pgid,
            &self.exit,
        ]
    }
}

/// What the supervisor recorded of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// `None` when a signal ended the script.
    pub code: Option<i32>,
    pub timed_out: bool,
    pub started_at_ms: u64,
    pub finished_at_ms: u64,
}

impl Exit {
    fn encode(&self) -> String {
        format!(
            "exit {}\ntimed_out {}\nstarted {}\nfinished {}\n",
            self.code.map_or_else(|| "-".to_owned(), |c| c.to_string()),
            u8::from(self.timed_out),
            self.started_at_ms,
            self.finished_at_ms
        )
    }

    /// Reads `NAME.exit`; `None` if it is missing or not what `encode` wrote.
    pub fn read(path: &Path) -> Option<Exit> {
        let text = std::fs::read_to_string(path).ok()?;
        if text.len() > 256 {
            return None;
        }
        let mut fields = text.lines().map(|l| l.split_once(' '));
        let mut next = |key: &str| match fields.next() {
            Some(Some((k, v))) if k == key => Some(v.to_owned()),
            _ => None,
        };
        let code = match next("exit")?.as_str() {
            "-" => None,
            c => Some(c.parse().ok()?),
        };
        let timed_out = match next("timed_out")?.as_str() {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        Some(Exit {
            code,
            timed_out,
            started_at_ms: next("started")?.parse().ok()?,
            finished_at_ms: next("finished")?.parse().ok()?,
        })
    }
}

/// Reads a pid file.
pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether the supervisor of job `name` (pid in its pid file) still runs:
/// the process exists and is `bulwark-agent supervise` for that job (a pid
/// reused by another process does not count).
pub fn supervisor_alive(files: &RunFiles, name: &str) -> bool {
    let Some(pid) = read_pid(&files.pid) else {
        return false;
    };
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        args.contains(&b"supervise".as_slice()) && args.contains(&name.as_bytes())
    })
}

/// Kills a process group; a group already gone is fine.
pub fn kill_group(pgid: i32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// `bulwark-agent supervise RUN_DIR NAME INTERPRETER TIMEOUT_SECS`: runs
/// the script `RUN_DIR/NAME` (the agent wrote it and its output files) and
/// records how it ended. Returns once `NAME.exit` is written.
pub fn supervise(
    run_dir: &Path,
    name: &str,
    interpreter: &Path,
    timeout: Duration,
) -> io::Result<()> {
    let files = RunFiles::new(run_dir, name);
    write_atomic(
        &files.pid,
        format!("{}\n", std::process::id()).as_bytes(),
        0o600,
    )?;
    let open = |path: &Path| File::options().append(true).open(path);
    let started_at_ms = now_ms();
    let mut command = Command::new(interpreter);
    command
        .arg(&files.script)
        .current_dir(run_dir)
        .stdin(Stdio::null())
        .stdout(open(&files.stdout)?)
        .stderr(open(&files.stderr)?)
        .env_clear()
        .env("PATH", JOB_PATH)
        .env("BULWARK_JOB_ID", name)
        .process_group(0);
    for var in ["HOME", "LANG"] {
        if let Some(value) = std::env::var_os(var) {
            command.env(var, value);
        }
    }
    let mut child = command.spawn()?;
    let pgid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    write_atomic(&files.pgid, format!("{pgid}\n").as_bytes(), 0o600)?;
    // The watchdog: kills the group at the timeout, unless the script ends first.
    let (ended, wait_for_end) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        matches!(
            wait_for_end.recv_timeout(timeout),
            Err(mpsc::RecvTimeoutError::Timeout)
        )
        .then(|| kill_group(pgid))
        .is_some()
    });
    let status = child.wait()?;
    drop(ended);
    let timed_out = watchdog.join().unwrap_or(false);
    // What the script left running in its group goes with it.
    kill_group(pgid);
    let exit = Exit {
        code: status.code(),
        timed_out,
        started_at_ms,
        finished_at_ms: now_ms(),
    };
    write_atomic(&files.exit, exit.encode().as_bytes(), 0o600)?;
    io::stdout().flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_files_round_trip_and_nothing_else_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.exit");
        for exit in [
            Exit {
                code: Some(7),
                timed_out: false,
                started_at_ms: 1,
                finished_at_ms: 2,
            },
            Exit {
                code: None,
                timed_out: true,
                started_at_ms: 3,
                finished_at_ms: 4,
            },
        ] {
            std::fs::write(&path, exit.encode()).expect("write");
            assert_eq!(Exit::read(&path), Some(exit));
        }
        for bad in [
            "",
            "exit 7\n",
            "exit x\ntimed_out 0\nstarted 1\nfinished 2\n",
            "exit 7\ntimed_out 2\nstarted 1\nfinished 2\n",
            "timed_out 0\nexit 7\nstarted 1\nfinished 2\n",
        ] {
            std::fs::write(&path, bad).expect("write");
            assert_eq!(Exit::read(&path), None, "{bad:?}");
        }
        assert_eq!(Exit::read(&dir.path().join("missing")), None);
    }
}
