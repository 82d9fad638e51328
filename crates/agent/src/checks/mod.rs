//! The policy's monitoring checks, run by the agent on its own schedule
//! (RFD 0009).
//!
//! The checks are those of the newest policy this agent verified against
//! its tenant's root ([`crate::trust`]): an owned server can neither switch
//! one off nor change a threshold, since an unsigned policy is refused and
//! an older one is a rollback. The runner measures each check at its
//! interval (a probe that hangs is dropped at the check's timeout and the
//! check is unknown), applies the thresholds and "for N seconds"
//! ([`tracker`]), and keeps the states on a board that the session reports
//! from: every state on connect, then changes as they happen, values at
//! most once a minute.
//!
//! Every reported change is also appended to `checks/journal` in the state
//! directory (JSON lines, the last 1 MiB and the one before it), the
//! agent's own record: a server that drops a critical check's report can
//! be caught by comparing its alerts with what the endpoint says. A
//! restarted agent resumes each check from its last journaled state, so a
//! restart neither resolves an open alert nor raises a second one.

pub mod logs;
pub mod network;
pub mod ping;
pub mod posture;
pub mod probes;
pub mod script;
pub mod tracker;
pub mod x509;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bulwark_policy::checks::{CheckDefinition, CheckState, Probe};
use bulwark_policy::groups::{DeviceIdentity, checks_for};
use bulwark_protocol::checks::{CheckReport, CheckStatus};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::trust::TrustState;
use probes::{Measurement, Probes};
use tracker::{Sample, Tracker};

/// How often the runner looks for a new policy.
const POLICY_POLL: Duration = Duration::from_secs(2);
/// The journal is cut over at this size (one older file is kept).
const JOURNAL_BYTES: u64 = 1024 * 1024;

/// What the session reports from.
#[derive(Debug, Default)]
struct Board {
    policy_version: u64,
    statuses: BTreeMap<String, CheckStatus>,
    /// Checks whose reported state changed since the session last took them.
    changed_states: BTreeSet<String>,
    /// Checks with a new value but the same state.
    changed_values: BTreeSet<String>,
}

/// The session's side of the checks: cheap to clone.
#[derive(Clone, Debug)]
pub struct ChecksHandle {
    board: Arc<Mutex<Board>>,
    changed: Arc<watch::Sender<u64>>,
    scripts: script::Scripts,
}

impl ChecksHandle {
    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes when a check's reported state changed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        let mut r = self.changed.subscribe();
        r.mark_unchanged();
        r
    }

    /// Script checks' hashes to ask the server for now (protocol version 4).
    pub fn wanted_scripts(&self) -> Vec<[u8; 32]> {
        self.scripts.take_unsent()
    }

    /// The server's answer to a [`ChecksHandle::wanted_scripts`] request:
    /// kept only if it hashes to the policy's value.
    pub fn script_arrived(&self, sha256: [u8; 32], content: Option<Vec<u8>>) {
        self.scripts.arrived(sha256, content);
    }

    /// Every check's state: `None` before there is a policy with checks
    /// (and no board from an earlier one).
    pub fn full_report(&self, seq: u64) -> Option<CheckReport> {
        let mut board = self.board();
        if board.policy_version == 0 {
            return None;
        }
        board.changed_states.clear();
        board.changed_values.clear();
        Some(CheckReport {
            seq,
            full: true,
            policy_version: board.policy_version,
            checks: board.statuses.values().cloned().collect(),
        })
    }

    /// The checks whose state changed (and, with `values`, those whose
    /// value did) since the last report; `None` when there are none.
    pub fn changes(&self, seq: u64, values: bool) -> Option<CheckReport> {
        let mut board = self.board();
        let mut names = std::mem::take(&mut board.changed_states);
        if values {
            names.append(&mut board.changed_values);
        } else {
            let states = names.clone();
            board.changed_values.retain(|n| !states.contains(n));
        }
        let checks: Vec<CheckStatus> = names
            .iter()
            .filter_map(|n| board.statuses.get(n).cloned())
            .collect();
        (!checks.is_empty()).then(|| CheckReport {
            seq,
            full: false,
            policy_version: board.policy_version,
            checks,
        })
    }
}

/// One check being run.
struct Running {
    definition: CheckDefinition,
    tracker: Tracker,
    next: Instant,
    in_flight: bool,
    /// A script check waiting for its content since then.
    script_wait: Option<Instant>,
}

/// Who this agent is, as it knows itself: what a policy's device groups
/// name (RFD 0022).
#[derive(Debug, Clone)]
pub struct OwnIdentity {
    pub device_id: String,
    /// [`bulwark_policy::device_key_fingerprint`] of the agent's key.
    pub device_key: [u8; 32],
}

impl OwnIdentity {
    fn as_device(&self) -> DeviceIdentity<'_> {
        DeviceIdentity {
            device_id: &self.device_id,
            device_key: &self.device_key,
        }
    }
}

/// Starts the checks: returns the handle sessions report from and the task
/// to spawn.
pub fn start(
    trust: Arc<Mutex<TrustState>>,
    me: OwnIdentity,
    state_dir: &Path,
    updates: Option<crate::updates::Updates>,
    release: Option<crate::self_update::SelfUpdate>,
) -> (ChecksHandle, impl Future<Output = ()> + Send + 'static) {
    let handle = ChecksHandle {
        board: Arc::new(Mutex::new(Board::default())),
        changed: Arc::new(watch::Sender::new(0)),
        scripts: script::Scripts::new(state_dir),
    };
    let journal = Journal::new(state_dir);
    let task = run(
        trust,
        me,
        handle.clone(),
        journal,
        updates,
        release.map(Arc::new),
    );
    (handle, task)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

async fn run(
    trust: Arc<Mutex<TrustState>>,
    me: OwnIdentity,
    handle: ChecksHandle,
    mut journal: Journal,
    updates: Option<crate::updates::Updates>,
    release: Option<Arc<crate::self_update::SelfUpdate>>,
) {
    let mut probes = Probes::new(updates);
    let logs = Arc::new(logs::Follower::default());
    let mut running: HashMap<String, Running> = HashMap::new();
    // What this agent last reported before it (re)started.
    let mut resumed = journal.last_states();
    let mut version = 0u64;
    let (done_tx, mut done) = mpsc::channel::<(String, u64, Measurement)>(64);
    let mut policy_poll = tokio::time::interval(POLICY_POLL);
    loop {
        let next_due = running
            .values()
            .filter(|r| !r.in_flight)
            .map(|r| r.next)
            .min()
            .unwrap_or_else(|| Instant::now() + POLICY_POLL);
        tokio::select! {
            _ = policy_poll.tick() => {
                let held = {
                    let trust = trust.lock().unwrap_or_else(PoisonError::into_inner);
                    // Only the checks on this device's groups (and those on
                    // every device): the same function the server and the CLI use.
                    trust.history.policy().map(|p| {
                        let mine = checks_for(p, me.as_device()).into_iter().cloned().collect::<Vec<_>>();
                        (p.version, mine)
                    })
                };
                if let Some((v, definitions)) = held
                    && v != version
                {
                    info!(policy_version = v, checks = definitions.len(), "Running the checks of a newly verified policy.");
                    version = v;
                    adopt(&mut running, definitions, &handle, v, &mut resumed);
                    let names: Vec<&str> = running.keys().map(String::as_str).collect();
                    logs.keep_only(&names);
                }
            }
            () = tokio::time::sleep_until(next_due) => {
                let now = Instant::now();
                let due: Vec<String> = running
                    .iter()
                    .filter(|(_, r)| !r.in_flight && r.next <= now)
                    .map(|(n, _)| n.clone())
                    .collect();
                for name in due {
                    let Some(check) = running.get_mut(&name) else { continue };
                    check.next = now + Duration::from_secs(u64::from(check.definition.interval_secs));
                    match probes.measure_fast(&check.definition.probe) {
                        Some(measurement) => {
                            record(check, &name, measurement, version, &handle, &mut journal);
                        }
                        None => {
                            let probe = check.definition.probe.clone();
                            let slow: std::pin::Pin<Box<dyn Future<Output = probes::Measurement> + Send>> = match &probe {
                                Probe::Script { sha256, interpreter } => {
                                    match handle.scripts.resolve(&sha256.0, &mut check.script_wait, now) {
                                        script::Resolved::Run(path) => {
                                            let interpreter = *interpreter;
                                            Box::pin(async move { script::run(&path, interpreter).await })
                                        }
                                        script::Resolved::Wait => {
                                            // Asked the server (the session sends it); again soon.
                                            check.next = now + script::ASK_AGAIN;
                                            handle.changed.send_modify(|n| *n = n.wrapping_add(1));
                                            continue;
                                        }
                                        script::Resolved::Fail(why) => {
                                            record(check, &name, Err(why), version, &handle, &mut journal);
                                            handle.changed.send_modify(|n| *n = n.wrapping_add(1));
                                            continue;
                                        }
                                    }
                                }
                                Probe::LogPattern { path, pattern } => {
                                    let (logs, name, path, pattern) = (logs.clone(), name.clone(), path.clone(), pattern.clone());
                                    Box::pin(async move {
                                        tokio::task::spawn_blocking(move || logs.scan(&name, &path, &pattern))
                                            .await
                                            .unwrap_or_else(|e| Err(format!("the log check failed: {e}")))
                                    })
                                }
                                Probe::Posture { item: bulwark_policy::PostureItem::AgentIntegrity } => {
                                    match release.clone() {
                                        Some(release) => Box::pin(async move { release.integrity().await }),
                                        None => Box::pin(async {
                                            Err("this agent was started without its release settings".to_owned())
                                        }),
                                    }
                                }
                                _ => Box::pin(probes::measure_slow(probe)),
                            };
                            check.in_flight = true;
                            let limit = probes::timeout(check.definition.timeout_secs);
                            let done_tx = done_tx.clone();
                            let (name, v) = (name.clone(), version);
                            tokio::spawn(async move {
                                let measurement = tokio::time::timeout(limit, slow)
                                    .await
                                    .unwrap_or_else(|_| Err(format!("no answer within {} s", limit.as_secs())));
                                let _ = done_tx.send((name, v, measurement)).await;
                            });
                        }
                    }
                }
            }
            Some((name, v, measurement)) = done.recv() => {
                if v == version && let Some(check) = running.get_mut(&name) {
                    check.in_flight = false;
                    record(check, &name, measurement, version, &handle, &mut journal);
                }
            }
        }
    }
}

/// Runs `definitions` from now on: a check whose definition did not change
/// keeps its state; the board forgets checks the policy dropped.
fn adopt(
    running: &mut HashMap<String, Running>,
    definitions: Vec<CheckDefinition>,
    handle: &ChecksHandle,
    version: u64,
    resumed: &mut HashMap<String, Resumed>,
) {
    let now = now_secs();
    let mut kept = HashMap::new();
    let mut first_statuses = Vec::new();
    for definition in definitions {
        let name = definition.name.clone();
        let entry = match running.remove(&name) {
            Some(r) if r.definition == definition => r,
            _ => {
                let tracker = match resumed.remove(&name) {
                    Some(last) => {
                        first_statuses.push(CheckStatus {
                            name: name.clone(),
                            state: last.state,
                            value: last.value,
                            summary: crate::text::clipped(
                                &format!("{} (before the agent restarted)", last.summary),
                                256,
                            ),
                            since: last.since,
                            measured_at: 0,
                        });
                        Tracker::resume(last.state, last.since)
                    }
                    None => Tracker::new(now),
                };
                Running {
                    definition,
                    tracker,
                    next: Instant::now(),
                    in_flight: false,
                    script_wait: None,
                }
            }
        };
        kept.insert(name, entry);
    }
    *running = kept;
    let scripts = running
        .values()
        .filter_map(|r| match &r.definition.probe {
            Probe::Script { sha256, .. } => Some(sha256.0),
            _ => None,
        })
        .collect();
    handle.scripts.keep_only(&scripts);
    let mut board = handle.board();
    board.policy_version = version;
    board.statuses.retain(|name, _| running.contains_key(name));
    for status in first_statuses {
        board.statuses.insert(status.name.clone(), status);
    }
    for (name, r) in running.iter() {
        board
            .statuses
            .entry(name.clone())
            .or_insert_with(|| CheckStatus {
                name: name.clone(),
                state: CheckState::Ok,
                value: None,
                summary: "not measured yet".to_owned(),
                since: r.tracker.since(),
                measured_at: 0,
            });
    }
    board.changed_states.extend(running.keys().cloned());
    drop(board);
    handle.changed.send_modify(|n| *n = n.wrapping_add(1));
}

fn record(
    check: &mut Running,
    name: &str,
    measurement: Measurement,
    policy_version: u64,
    handle: &ChecksHandle,
    journal: &mut Journal,
) {
    let now = now_secs();
    let definition = &check.definition;
    let sample = match measurement {
        Ok((value, summary)) => Sample {
            state: definition.classify(value),
            value: Some(value),
            summary,
        },
        Err(why) => Sample {
            state: if definition.probe.failure_is_critical() {
                CheckState::Critical
            } else {
                CheckState::Unknown
            },
            value: None,
            summary: why,
        },
    };
    let changed = check
        .tracker
        .observe(sample.clone(), definition.for_secs, now);
    let status = CheckStatus {
        name: name.to_owned(),
        state: check.tracker.reported(),
        value: sample.value,
        summary: crate::text::clipped(&sample.summary, 256),
        since: check.tracker.since(),
        measured_at: now,
    };
    if changed {
        info!(check = name, state = status.state.as_str(), summary = %status.summary, "A check changed state.");
        journal.append(policy_version, &status);
    }
    let mut board = handle.board();
    let value_changed = board
        .statuses
        .get(name)
        .is_none_or(|old| old.value != status.value || old.summary != status.summary);
    board.statuses.insert(name.to_owned(), status);
    if changed {
        board.changed_states.insert(name.to_owned());
    } else if value_changed {
        board.changed_values.insert(name.to_owned());
    }
    drop(board);
    if changed {
        handle.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// The agent's own record of reported changes.
struct Journal {
    path: PathBuf,
}

/// A check's last journaled state.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Resumed {
    state: CheckState,
    since: u64,
    value: Option<u64>,
    summary: String,
}

#[derive(serde::Deserialize)]
struct JournalEntry {
    at: u64,
    policy_version: u64,
    check: String,
    state: String,
    #[serde(default)]
    value: Option<u64>,
    summary: String,
}

/// The journal's files, oldest first, as entries (unreadable lines skipped).
fn read_journal(dir: &Path) -> anyhow::Result<Vec<Result<JournalEntry, String>>> {
    let mut entries = Vec::new();
    for path in [dir.join("journal.1"), dir.join("journal")] {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        };
        entries.extend(
            text.lines()
                .map(|raw| serde_json::from_str::<JournalEntry>(raw).map_err(|_| raw.to_owned())),
        );
    }
    Ok(entries)
}

#[derive(Serialize)]
struct JournalLine<'a> {
    at: u64,
    policy_version: u64,
    check: &'a str,
    state: &'a str,
    value: Option<u64>,
    summary: &'a str,
}

impl Journal {
    fn new(state_dir: &Path) -> Self {
        let dir = state_dir.join("checks");
        if let Err(error) = crate::files::private_dir(&dir) {
            warn!(%error, "Cannot create the checks directory; check changes are not journaled.");
        }
        Self {
            path: dir.join("journal"),
        }
    }

    /// Each check's last journaled state.
    fn last_states(&self) -> HashMap<String, Resumed> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut last = HashMap::new();
        match read_journal(dir) {
            Ok(entries) => {
                for entry in entries.into_iter().flatten() {
                    if let Some(state) = CheckState::parse(&entry.state) {
                        last.insert(
                            entry.check,
                            Resumed {
                                state,
                                since: entry.at,
                                value: entry.value,
                                summary: entry.summary,
                            },
                        );
                    }
                }
            }
            Err(error) => {
                warn!(%error, "Cannot read the checks journal; every check starts afresh.")
            }
        }
        last
    }

    fn append(&mut self, policy_version: u64, status: &CheckStatus) {
        let line = JournalLine {
            at: status.since,
            policy_version,
            check: &status.name,
            state: status.state.as_str(),
            value: status.value,
            summary: &status.summary,
        };
        let result = (|| -> std::io::Result<()> {
            if std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= JOURNAL_BYTES) {
                std::fs::rename(&self.path, self.path.with_extension("1"))?;
            }
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&self.path)?;
            let mut text = serde_json::to_vec(&line).map_err(std::io::Error::other)?;
            text.push(b'\n');
            file.write_all(&text)
        })();
        if let Err(error) = result {
            warn!(%error, path = %self.path.display(), "Cannot append to the checks journal.");
        }
    }
}

/// The last `count` journaled changes, newest first, as lines for people.
pub fn journal_lines(state_dir: &Path, count: usize) -> anyhow::Result<Vec<String>> {
    let entries = read_journal(&state_dir.join("checks"))?;
    Ok(entries
        .iter()
        .rev()
        .take(count)
        .map(|entry| match entry {
            Ok(l) => format!(
                "{}  {:<24} {:<8} policy v{}  {}",
                crate::text::utc_text(l.at),
                l.check,
                l.state,
                l.policy_version,
                l.summary
            ),
            Err(raw) => format!("(unreadable line) {raw}"),
        })
        .collect())
}
