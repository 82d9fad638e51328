//! Script checks (RFD 0009): a script whose SHA-256 the root-signed policy
//! allow-lists, its exit code the state (0 ok, 1 warning, 2 critical,
//! anything else unknown), the first line of its output the summary.
//!
//! The policy carries only the hash; the content comes from the server's
//! script library (`CheckScriptWanted` / `CheckScript`, protocol version
//! 4), and the server is only a courier: content that does not hash to the
//! policy's value is refused and never written, and the check says so as a
//! critical state. Verified content is kept in `checks/scripts/<sha256>`
//! (0600, in the agent's private state directory) and hashed again before
//! each run. A script that the server does not send, sends wrong or that
//! outlives its timeout is critical: withholding it silences nothing.
//!
//! Scripts run as jobs do: as the agent's account, `PATH` fixed, in a
//! process group of their own that is killed when the script exits (its
//! leftovers with it), at the timeout, or when the run is dropped.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bulwark_policy::Interpreter;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt as _;
use tokio::time::Instant;
use tracing::{info, warn};

use super::probes::Measurement;
use crate::jobs::interpreter_path;
use crate::supervisor::{JOB_PATH, kill_group};

/// How long a check waits for the server to send a script before it calls
/// the check critical (it asks again at each later run).
pub const SCRIPT_WAIT: Duration = Duration::from_secs(30);
/// How often a waiting check asks again.
pub const ASK_AGAIN: Duration = Duration::from_secs(2);
/// Bytes of a script's output read for its first line (the rest is drained).
const MAX_OUTPUT_READ: usize = 4096;
/// Longest summary taken from the first line.
const MAX_LINE_CHARS: usize = 200;

/// What the server answered for a wanted script.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// It has no script with that hash.
    Missing,
    /// It sent content that does not hash to the policy's value.
    Refused(String),
}

#[derive(Debug, Default)]
struct Courier {
    /// Hashes a check of the current policy needs (only these are taken).
    wanted: BTreeSet<[u8; 32]>,
    /// Wanted hashes the session has not asked the server for yet.
    unsent: BTreeSet<[u8; 32]>,
    answers: HashMap<[u8; 32], Answer>,
}

/// The verified scripts on disk and the requests for missing ones; shared
/// by the runner and the session.
#[derive(Debug, Clone)]
pub struct Scripts {
    dir: PathBuf,
    courier: Arc<Mutex<Courier>>,
}

/// What a due script check does now.
#[derive(Debug)]
pub enum Resolved {
    /// Run the verified file.
    Run(PathBuf),
    /// Asked the server; measure again in [`ASK_AGAIN`].
    Wait,
    /// Critical, with why.
    Fail(String),
}

fn short(hash: &[u8; 32]) -> String {
    hex::encode(&hash[..8])
}

impl Scripts {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("checks").join("scripts"),
            courier: Arc::new(Mutex::new(Courier::default())),
        }
    }

    fn courier(&self) -> std::sync::MutexGuard<'_, Courier> {
        self.courier.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn path(&self, hash: &[u8; 32]) -> PathBuf {
        self.dir.join(hex::encode(hash))
    }

    /// The verified file for `hash`, if it is on disk and still hashes right.
    fn verified(&self, hash: &[u8; 32]) -> Option<PathBuf> {
        let path = self.path(hash);
        let content = std::fs::read(&path).ok()?;
        if <[u8; 32]>::from(Sha256::digest(&content)) == *hash {
            Some(path)
        } else {
            warn!(path = %path.display(), "A kept check script no longer matches its hash; asking again.");
            let _ = std::fs::remove_file(&path);
            None
        }
    }

    /// Only the scripts of the current policy's checks are wanted.
    pub fn keep_only(&self, hashes: &BTreeSet<[u8; 32]>) {
        let mut courier = self.courier();
        courier.wanted.retain(|h| hashes.contains(h));
        courier.unsent.retain(|h| hashes.contains(h));
        courier.answers.retain(|h, _| hashes.contains(h));
    }

    /// What a due check of `hash` does; `waiting` is when it first asked
    /// (kept by the check).
    pub fn resolve(
        &self,
        hash: &[u8; 32],
        waiting: &mut Option<Instant>,
        now: Instant,
    ) -> Resolved {
        if let Some(path) = self.verified(hash) {
            *waiting = None;
            return Resolved::Run(path);
        }
        let mut courier = self.courier();
        let answer = courier.answers.get(hash).cloned();
        courier.wanted.insert(*hash);
        match answer {
            Some(Answer::Refused(why)) => {
                courier.answers.remove(hash);
                courier.unsent.insert(*hash);
                Resolved::Fail(format!("refused: {why}"))
            }
            Some(Answer::Missing) => {
                courier.answers.remove(hash);
                courier.unsent.insert(*hash);
                Resolved::Fail(format!(
                    "the server has no script with sha256 {}…",
                    short(hash)
                ))
            }
            None => {
                courier.unsent.insert(*hash);
                let since = *waiting.get_or_insert(now);
                if now.duration_since(since) < SCRIPT_WAIT {
                    Resolved::Wait
                } else {
                    *waiting = None;
                    Resolved::Fail(format!(
                        "the server has not sent script {}… within {} s",
                        short(hash),
                        SCRIPT_WAIT.as_secs()
                    ))
                }
            }
        }
    }

    /// The hashes to ask the server for now (each once until asked again).
    pub fn take_unsent(&self) -> Vec<[u8; 32]> {
        std::mem::take(&mut self.courier().unsent)
            .into_iter()
            .collect()
    }

    /// The server's answer: kept only if it hashes to a wanted value.
    pub fn arrived(&self, hash: [u8; 32], content: Option<Vec<u8>>) {
        let mut courier = self.courier();
        if !courier.wanted.contains(&hash) {
            warn!(sha256 = %hex::encode(hash), "The server sent a script no check asked for; ignored.");
            return;
        }
        let Some(content) = content else {
            courier.answers.insert(hash, Answer::Missing);
            return;
        };
        let actual: [u8; 32] = Sha256::digest(&content).into();
        if actual != hash {
            let why = format!(
                "the server sent a script whose sha256 is {}…, not the allow-listed {}…",
                short(&actual),
                short(&hash)
            );
            warn!(reason = %why, "Refused a check script from the server.");
            courier.answers.insert(hash, Answer::Refused(why));
            return;
        }
        let written = crate::files::private_dir(&self.dir)
            .and_then(|()| crate::files::write_atomic(&self.path(&hash), &content, 0o600));
        match written {
            Ok(()) => {
                info!(sha256 = %hex::encode(hash), "Keeping a verified check script.");
                courier.wanted.remove(&hash);
                courier.answers.remove(&hash);
            }
            Err(error) => warn!(%error, "Cannot keep a check script."),
        }
    }
}

/// Kills the script's group if the run is dropped (the check's timeout).
struct Group(Option<i32>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            kill_group(pgid);
        }
    }
}

/// Runs a verified script file: its exit code and first line.
pub async fn run(path: &Path, interpreter: Interpreter) -> Measurement {
    let mut command = tokio::process::Command::new(interpreter_path(interpreter));
    command
        .arg(path)
        .current_dir(path.parent().unwrap_or(Path::new("/")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env_clear()
        .env("PATH", JOB_PATH)
        .process_group(0)
        .kill_on_drop(true);
    for var in ["HOME", "LANG"] {
        if let Some(value) = std::env::var_os(var) {
            command.env(var, value);
        }
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", interpreter.name()))?;
    let mut group = Group(child.id().and_then(|id| i32::try_from(id).ok()));
    let mut stdout = child.stdout.take();
    let read = async {
        let mut kept = Vec::new();
        let mut buf = [0u8; 1024];
        if let Some(out) = stdout.as_mut() {
            while let Ok(n) = out.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let room = MAX_OUTPUT_READ.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
        kept
    };
    let wait = async {
        let status = child.wait().await;
        // Its leftovers go with it, so the pipe closes.
        if let Some(pgid) = group.0.take() {
            kill_group(pgid);
        }
        status
    };
    let (status, output) = tokio::join!(wait, read);
    let status = status.map_err(|e| format!("the script's run failed: {e}"))?;
    let line = first_line(&output);
    let code = match status.code() {
        Some(code) => u64::try_from(code).unwrap_or(u64::MAX),
        None => {
            let signal = std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0);
            128 + u64::try_from(signal).unwrap_or(0)
        }
    };
    let summary = if line.is_empty() {
        format!("exit {code}")
    } else {
        format!("{line} (exit {code})")
    };
    Ok((code, summary))
}

/// The first non-empty line, control characters replaced, at most
/// [`MAX_LINE_CHARS`] characters.
pub fn first_line(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    line.chars()
        .take(MAX_LINE_CHARS)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join(hex::encode(Sha256::digest(body)));
        std::fs::write(&path, body).expect("write");
        path
    }

    #[tokio::test]
    async fn exit_codes_and_first_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (body, code, summary) in [
            ("echo all good; exit 0", 0, "all good (exit 0)"),
            ("echo; echo '  disk 91%  '; exit 1", 1, "disk 91% (exit 1)"),
            (
                "printf 'bad\\033[2Jthing\\n'; exit 2",
                2,
                "bad\u{fffd}[2Jthing (exit 2)",
            ),
            ("exit 3", 3, "exit 3"),
            ("kill -9 $$", 137, "exit 137"),
        ] {
            let path = script(dir.path(), body);
            assert_eq!(
                run(&path, Interpreter::Sh).await,
                Ok((code, summary.to_owned())),
                "{body}"
            );
        }
        // Much output: the first line, and the script is not blocked.
        let path = script(dir.path(), "yes 'first' | head -c 10000000; exit 0");
        assert_eq!(
            run(&path, Interpreter::Sh).await,
            Ok((0, "first (exit 0)".to_owned()))
        );
    }

    #[tokio::test]
    async fn a_script_and_its_children_die_at_the_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("child-alive");
        let path = script(
            dir.path(),
            &format!("(sleep 2; touch {}) & sleep 30", marker.display()),
        );
        let started = std::time::Instant::now();
        let outcome =
            tokio::time::timeout(Duration::from_millis(500), run(&path, Interpreter::Sh)).await;
        assert!(outcome.is_err(), "{outcome:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!marker.exists(), "the script's child outlived the timeout");
        // A script that exits leaves no child behind either.
        let path = script(
            dir.path(),
            &format!("(sleep 1; touch {}) & exit 0", marker.display()),
        );
        assert_eq!(
            run(&path, Interpreter::Sh).await,
            Ok((0, "exit 0".to_owned()))
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!marker.exists(), "a child outlived its script");
    }

    #[test]
    fn the_courier_keeps_only_content_with_the_policys_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let scripts = Scripts::new(dir.path());
        let good = b"echo ok\n".to_vec();
        let hash: [u8; 32] = Sha256::digest(&good).into();
        let now = Instant::now();
        let mut waiting = None;
        // Not there: asked for, and the check waits.
        assert!(matches!(
            scripts.resolve(&hash, &mut waiting, now),
            Resolved::Wait
        ));
        assert_eq!(scripts.take_unsent(), vec![hash]);
        assert!(scripts.take_unsent().is_empty());
        // Content for a hash nobody asked for is not kept.
        let other = b"rm -rf /\n".to_vec();
        scripts.arrived(Sha256::digest(&other).into(), Some(other));
        assert!(std::fs::read_dir(dir.path()).map_or(true, |mut d| d.next().is_none()));
        // The server lies: the wanted hash with other content.
        scripts.arrived(hash, Some(b"echo pwned\n".to_vec()));
        match scripts.resolve(&hash, &mut waiting, now) {
            Resolved::Fail(why) => assert!(
                why.starts_with("refused: the server sent a script whose sha256"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(!scripts.path(&hash).exists());
        // The server has none.
        scripts.arrived(hash, None);
        assert!(
            matches!(scripts.resolve(&hash, &mut waiting, now), Resolved::Fail(why) if why.contains("has no script"))
        );
        // Silence past the wait is critical too.
        let mut waiting = None;
        assert!(matches!(
            scripts.resolve(&hash, &mut waiting, now),
            Resolved::Wait
        ));
        assert!(matches!(
            scripts.resolve(&hash, &mut waiting, now + SCRIPT_WAIT),
            Resolved::Fail(why) if why.contains("has not sent")
        ));
        // The right content is kept and run from then on.
        scripts.arrived(hash, Some(good.clone()));
        let Resolved::Run(path) = scripts.resolve(&hash, &mut waiting, now) else {
            panic!("not kept");
        };
        assert_eq!(std::fs::read(&path).expect("kept"), good);
        // Changed on disk: not run, asked for again.
        std::fs::write(&path, b"echo changed\n").expect("write");
        assert!(matches!(
            scripts.resolve(&hash, &mut waiting, now),
            Resolved::Wait
        ));
        assert!(!path.exists());
    }
}
