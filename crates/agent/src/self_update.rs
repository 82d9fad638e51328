//! Signed agent updates on the agent (RFD 0017, issue 17).
//!
//! An `UpdateAgent` job has already passed `bulwark_policy` (signatures,
//! the tenant's `update-agent` quorum, the log, the freeze) when it gets
//! here. This module adds the release keys' word, from the agent's own
//! pinned release root, never from the server:
//!
//! 1. the TUF metadata, fetched from the server's mirror over the pinned
//!    gateway TLS ([`Mirror`]), is verified by `bulwark_releases` from the
//!    release root pinned at installation (`release-root.json`, put there
//!    by `bulwark-agent install --release-root`) through every rotation
//!    the agent stored (`releases/`); versions never go back;
//! 2. [`choose_release`]: the signed targets name
//!    `bulwark-agent/<version>/<platform>` with exactly the version and
//!    SHA-256 the signed job names, and that version is newer than the one
//!    running (never a downgrade);
//! 3. the binary is downloaded with the signed length as its limit and
//!    checked against the signed hashes before it is written
//!    (`bin/<sha256>`, 0755).
//!
//! Then, with the job recorded in the history: `bin/previous` points at
//! the running binary, `update.pending` is written, `bin/current` is
//! swapped to the new one atomically, and the agent re-executes its
//! launcher (the same process: systemd and `bulwark up` see no exit).
//!
//! **The launcher** is whatever binary the service manager starts
//! (`/usr/local/bin/bulwark-agent`, installed with the agent): [`launch`]
//! runs first in `bulwark-agent run`. With `update.pending`, it counts an
//! attempt and runs `bin/current`; after [`MAX_ATTEMPTS`] starts or past
//! the deadline it swaps `bin/previous` back in by itself, records the job
//! result as rolled back with the reason, and runs that. A new binary
//! that crashes at start is thus rolled back by code it does not control.
//! The new binary confirms itself healthy once the server welcomed it
//! ([`confirm_healthy`]): it then records the job as installed and
//! removes `update.pending`. A new binary that hangs without connecting
//! exits at the deadline ([`health_deadline`]) so that the launcher rolls
//! it back.

use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use bulwark_protocol::message::{AgentRefusalCode, JobOutcome, JobResult, JobRun};
use bulwark_releases::{Limits as ReleaseLimits, RoleName, TargetFile, TrustedSet};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::{error, info, warn};

use crate::AGENT_VERSION;
use crate::connection::ServerAddress;
use crate::files::{private_dir, sync_dir, write_atomic};

/// Starts of a new binary before the launcher rolls it back.
pub const MAX_ATTEMPTS: u32 = 3;
/// Time a new binary has to be welcomed by the server (RFD 0017).
pub const HEALTH_DEADLINE: Duration = Duration::from_secs(600);
/// Set by the launcher for the binary it runs: that binary is not a
/// launcher itself, and re-executes this path after an install.
pub const LAUNCHER_ENV: &str = "BULWARK_AGENT_LAUNCHER";
/// The TUF target name of this agent's release for `platform`.
pub fn target_name(version: &str, platform: &str) -> String {
    format!("bulwark-agent/{version}/{platform}")
}

/// The platform this binary was built for, as release targets name it.
pub fn platform() -> String {
    let env = if cfg!(target_env = "musl") {
        "musl"
    } else {
        "gnu"
    };
    format!(
        "{}-unknown-{}-{env}",
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

/// The files of self-update in the state directory.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The release root pinned at installation (TUF `root.json`).
    pub release_root: PathBuf,
    /// Trusted TUF documents, newest of each role.
    pub releases: PathBuf,
    pub bin: PathBuf,
    pub current: PathBuf,
    pub previous: PathBuf,
    pub pending: PathBuf,
}

impl Paths {
    pub fn new(state_dir: &Path) -> Self {
        let bin = state_dir.join("bin");
        Self {
            release_root: state_dir.join("release-root.json"),
            releases: state_dir.join("releases"),
            current: bin.join("current"),
            previous: bin.join("previous"),
            pending: state_dir.join("update.pending"),
            bin,
        }
    }
}

/// Pins the release root given at installation. A root already pinned is
/// never replaced by another (later roots come only through the TUF
/// rotation chain); the same one again is fine.
pub fn pin_release_root(state_dir: &Path, root: &[u8]) -> anyhow::Result<bool> {
    // It must be a root this client can start from.
    TrustedSet::new(root, ReleaseLimits::default())
        .map_err(|e| anyhow!("the release root is not a valid TUF root: {e}"))?;
    let paths = Paths::new(state_dir);
    match std::fs::read(&paths.release_root) {
        Ok(pinned) if pinned == root => Ok(false),
        Ok(_) => bail!(
            "a different release root is pinned in {}: later roots come only through the \
             release keys' rotation chain. Remove the file by hand to pin another",
            paths.release_root.display()
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            write_atomic(&paths.release_root, root, 0o600)?;
            Ok(true)
        }
        Err(e) => Err(e.into()),
    }
}

/// The binary running now: its release version and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub version: String,
    pub sha256: [u8; 32],
    /// Its file (resolved: never the `bin/current` link).
    pub path: PathBuf,
}

impl Running {
    /// Hashes this process's binary; its version is the one installed
    /// with it (`bin/<sha256>.version`), else the build's.
    pub fn detect(state_dir: &Path) -> io::Result<Self> {
        let path = std::env::current_exe()?;
        let sha256 = sha256_file(&path)?;
        let installed = Paths::new(state_dir)
            .bin
            .join(format!("{}.version", hex::encode(sha256)));
        let version = std::fs::read_to_string(installed)
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| parse_version(v).is_some())
            .unwrap_or_else(|| AGENT_VERSION.to_owned());
        Ok(Self {
            version,
            sha256,
            path,
        })
    }

    /// What the agent tells the server it runs: `0.2.0+sha256.<hex>` (SemVer
    /// build metadata, so every server stores and shows it as a version).
    pub fn reported(&self) -> String {
        format!("{}+sha256.{}", self.version, hex::encode(self.sha256))
    }
}

fn sha256_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// `MAJOR.MINOR.PATCH`, digits only (release versions; nothing else is
/// ordered, so nothing else is installed).
pub fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let mut parts = text.split('.');
    let mut next = || -> Option<u64> {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse().ok()
    };
    let v = (next()?, next()?, next()?);
    parts.next().is_none().then_some(v)
}

/// Why an update was refused, as the job result reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub code: AgentRefusalCode,
    pub reason: String,
}

fn refused(code: AgentRefusalCode, reason: impl Into<String>) -> Refused {
    Refused {
        code,
        reason: reason.into(),
    }
}

/// Step 2: the target the signed job names, from the verified targets.
pub fn choose_release(
    set: &TrustedSet,
    platform: &str,
    version: &str,
    sha256: &[u8; 32],
    running: &str,
) -> Result<(String, TargetFile), Refused> {
    let Some(wanted) = parse_version(version) else {
        return Err(refused(
            AgentRefusalCode::ReleaseMismatch,
            format!("{version:?} is not a release version (MAJOR.MINOR.PATCH)"),
        ));
    };
    let name = target_name(version, platform);
    let Some(file) = set.target(&name) else {
        return Err(refused(
            AgentRefusalCode::ReleaseMismatch,
            format!("the release keys' targets do not list {name}"),
        ));
    };
    let signed = file.hashes.get("sha256").map(String::as_str);
    if signed != Some(hex::encode(sha256).as_str()) {
        return Err(refused(
            AgentRefusalCode::ReleaseMismatch,
            format!(
                "the job names sha256 {}, the release keys signed {} for {name}",
                hex::encode(sha256),
                signed.unwrap_or("no sha256")
            ),
        ));
    }
    if let Some(custom) = file.custom.as_ref().and_then(|c| c.get("version"))
        && custom.as_str() != Some(version)
    {
        return Err(refused(
            AgentRefusalCode::ReleaseMismatch,
            format!("{name} is signed as version {custom}"),
        ));
    }
    // Never a downgrade, and never the same again (RFD 0017).
    let running_v = parse_version(running).unwrap_or((0, 0, 0));
    if wanted <= running_v {
        return Err(refused(
            AgentRefusalCode::Downgrade,
            format!("version {version} is not newer than the running {running}"),
        ));
    }
    Ok((name, file.clone()))
}

/// What `update.pending` holds between the install and the new binary's
/// first welcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The update job's id, hex.
    pub job_id: String,
    pub from_version: String,
    pub from_sha256: String,
    pub to_version: String,
    pub to_sha256: String,
    /// Starts of the new binary so far.
    pub attempts: u32,
    /// Unix milliseconds by which the new binary must be healthy.
    pub deadline_ms: u64,
}

impl Pending {
    fn load(path: &Path) -> Option<Self> {
        let bytes = std::fs::read(path).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(p) => Some(p),
            Err(error) => {
                error!(%error, "update.pending is corrupt; rolling back.");
                Some(Pending {
                    job_id: String::new(),
                    from_version: String::new(),
                    from_sha256: String::new(),
                    to_version: String::new(),
                    to_sha256: String::new(),
                    attempts: MAX_ATTEMPTS,
                    deadline_ms: 0,
                })
            }
        }
    }

    fn save(&self, path: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        write_atomic(path, &bytes, 0o600)
    }
}

/// What the launcher does at a start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchStep {
    /// No installed release: this binary runs.
    RunHere,
    /// Run `bin/current` (after counting an attempt, if one is pending).
    RunCurrent,
    /// Swap `bin/previous` back in, for this reason, then run it.
    RollBack(String),
}

/// The launcher's decision (pure).
pub fn launch_step(pending: Option<&Pending>, has_current: bool, now_ms: u64) -> LaunchStep {
    match pending {
        Some(p) if p.attempts >= MAX_ATTEMPTS => LaunchStep::RollBack(format!(
            "the new binary started {} times without being welcomed by the server",
            p.attempts
        )),
        Some(p) if now_ms > p.deadline_ms => LaunchStep::RollBack(format!(
            "the new binary was not welcomed by the server within {} s",
            HEALTH_DEADLINE.as_secs()
        )),
        _ if has_current => LaunchStep::RunCurrent,
        _ => LaunchStep::RunHere,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

fn job_id_of(hex_id: &str) -> Option<[u8; 16]> {
    hex::decode(hex_id).ok()?.try_into().ok()
}

/// A job result that ran (installed, or rolled back).
fn ran(job_id: [u8; 16], exit_code: i32, text: &str) -> JobResult {
    let now = now_ms();
    let stdout = text.as_bytes().to_vec();
    JobResult {
        job_id,
        outcome: JobOutcome::Ran(JobRun {
            exit_code: Some(exit_code),
            timed_out: false,
            output_sha256: Sha256::digest(&stdout).into(),
            stdout,
            stderr: Vec::new(),
            started_at_ms: now,
            finished_at_ms: now,
            patches: None,
        }),
    }
}

/// The launcher: runs before anything else in `bulwark-agent run`.
/// Returns only when this binary is the one to run (no release installed,
/// or it was launched by a launcher); otherwise it re-executes.
pub fn launch(state_dir: &Path) -> anyhow::Result<()> {
    if std::env::var_os(LAUNCHER_ENV).is_some() {
        return Ok(());
    }
    let paths = Paths::new(state_dir);
    let pending = Pending::load(&paths.pending);
    let has_current = paths.current.exists();
    match launch_step(pending.as_ref(), has_current, now_ms()) {
        LaunchStep::RunHere => {
            if pending.is_some() {
                // Installed and then lost (bin/current removed by hand).
                let _ = std::fs::remove_file(&paths.pending);
            }
            Ok(())
        }
        LaunchStep::RunCurrent => {
            if let Some(mut p) = pending {
                p.attempts += 1;
                p.save(&paths.pending)?;
                info!(attempt = p.attempts, to_version = %p.to_version, "Starting the newly installed agent.");
            }
            Err(exec_agent(&paths.current))
        }
        LaunchStep::RollBack(reason) => {
            error!(%reason, "The new agent binary is not healthy; restoring the previous one.");
            roll_back(&paths, state_dir, pending.as_ref(), &reason)?;
            if paths.current.exists() {
                Err(exec_agent(&paths.current))
            } else {
                Ok(())
            }
        }
    }
}

/// `bin/previous` back as `bin/current` (or no installed release if there
/// was none), the job result recorded, `update.pending` removed; each
/// durable before the next.
fn roll_back(
    paths: &Paths,
    state_dir: &Path,
    pending: Option<&Pending>,
    reason: &str,
) -> anyhow::Result<()> {
    if paths.previous.symlink_metadata().is_ok() {
        std::fs::rename(&paths.previous, &paths.current)?;
    } else {
        let _ = std::fs::remove_file(&paths.current);
    }
    sync_dir(&paths.bin)?;
    if let Some(p) = pending
        && let Some(job_id) = job_id_of(&p.job_id)
    {
        let text = format!(
            "rolled back: {} (sha256 {}) was installed and {reason}; {} (sha256 {}) runs again\n",
            p.to_version, p.to_sha256, p.from_version, p.from_sha256
        );
        let spool = crate::jobs::ResultSpool::open(state_dir.join("jobs").join("results"))?;
        spool.put(&ran(job_id, 1, &text))?;
    }
    std::fs::remove_file(&paths.pending)?;
    sync_dir(state_dir)?;
    Ok(())
}

/// Replaces this process with `binary`, same arguments, marked as
/// launched. Returns only on failure.
fn exec_agent(binary: &Path) -> anyhow::Error {
    let launcher = std::env::current_exe().unwrap_or_default();
    let error = std::process::Command::new(binary)
        .args(std::env::args_os().skip(1))
        .env(LAUNCHER_ENV, launcher)
        .exec();
    anyhow!("cannot start {}: {error}", binary.display())
}

/// Re-executes the launcher after an install (same process id). Returns
/// only on failure.
fn exec_launcher() -> anyhow::Error {
    let launcher = std::env::var_os(LAUNCHER_ENV)
        .map(PathBuf::from)
        .or_else(|| std::env::current_exe().ok())
        .unwrap_or_default();
    let error = std::process::Command::new(&launcher)
        .args(std::env::args_os().skip(1))
        .env_remove(LAUNCHER_ENV)
        .exec();
    anyhow!("cannot restart through {}: {error}", launcher.display())
}

/// Called once the server welcomed this agent: if it is the binary an
/// update installed, the update is done. Returns the job result to spool.
pub fn confirm_healthy(state_dir: &Path, running: &Running) -> Option<JobResult> {
    let paths = Paths::new(state_dir);
    let pending = Pending::load(&paths.pending)?;
    if pending.to_sha256 != hex::encode(running.sha256) {
        return None;
    }
    let job_id = job_id_of(&pending.job_id)?;
    let text = format!(
        "installed: {} (sha256 {}) runs, welcomed by the server after {} start(s); the previous \
         {} (sha256 {}) is kept as bin/previous\n",
        pending.to_version,
        pending.to_sha256,
        pending.attempts,
        pending.from_version,
        pending.from_sha256
    );
    info!(version = %pending.to_version, "The updated agent is healthy.");
    Some(ran(job_id, 0, &text))
}

/// Removes `update.pending` once the installed result is spooled.
pub fn finish_update(state_dir: &Path) {
    let paths = Paths::new(state_dir);
    if let Err(error) = std::fs::remove_file(&paths.pending) {
        warn!(%error, "Cannot remove update.pending.");
    }
}

/// For a binary started by an update: when it must be healthy by, so it
/// can exit then and let the launcher roll it back.
pub fn health_deadline(state_dir: &Path, running: &Running) -> Option<Duration> {
    let pending = Pending::load(&Paths::new(state_dir).pending)?;
    (pending.to_sha256 == hex::encode(running.sha256))
        .then(|| Duration::from_millis(pending.deadline_ms.saturating_sub(now_ms())))
}

/// The server's release mirror, over the pinned gateway TLS, as the TUF
/// client's [`bulwark_releases::Repository`] (trusted documents kept in
/// `releases/`).
pub struct Mirror {
    pub address: ServerAddress,
    pub pin: [u8; 32],
    pub paths: Paths,
    pub runtime: tokio::runtime::Handle,
}

impl bulwark_releases::Repository for Mirror {
    fn fetch(
        &mut self,
        path: &str,
        max_len: u64,
    ) -> Result<Option<Vec<u8>>, bulwark_releases::Error> {
        let url = format!("/agent/v1/releases/metadata/{path}");
        self.runtime
            .block_on(get(&self.address, self.pin, &url, max_len))
            .map_err(|e| bulwark_releases::Error::Fetch(format!("{e:#}")))
    }

    fn stored(&mut self, role: RoleName) -> Option<Vec<u8>> {
        std::fs::read(self.paths.releases.join(format!("{}.json", role.as_str()))).ok()
    }

    fn store(&mut self, role: RoleName, bytes: &[u8]) -> Result<(), bulwark_releases::Error> {
        private_dir(&self.paths.releases)
            .and_then(|()| {
                write_atomic(
                    &self.paths.releases.join(format!("{}.json", role.as_str())),
                    bytes,
                    0o600,
                )
            })
            .map_err(|e| {
                bulwark_releases::Error::Fetch(format!("cannot store {}: {e}", role.as_str()))
            })
    }
}

const FETCH_TIMEOUT: Duration = Duration::from_secs(300);

/// `GET path` on the gateway: the body of a 200 (at most `max_len`
/// bytes), `None` for a 404.
pub async fn get(
    address: &ServerAddress,
    pin: [u8; 32],
    path: &str,
    max_len: u64,
) -> anyhow::Result<Option<Vec<u8>>> {
    tokio::time::timeout(FETCH_TIMEOUT, get_inner(address, pin, path, max_len))
        .await
        .map_err(|_| anyhow!("timed out fetching {path}"))?
}

async fn get_inner(
    address: &ServerAddress,
    pin: [u8; 32],
    path: &str,
    max_len: u64,
) -> anyhow::Result<Option<Vec<u8>>> {
    let config = crate::pinning::client_config(pin)?;
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect((address.host.as_str(), address.port))
        .await
        .with_context(|| format!("cannot connect to {}:{}", address.host, address.port))?;
    let name = rustls::pki_types::ServerName::try_from(address.host.clone())
        .with_context(|| format!("bad server name {}", address.host))?;
    let mut tls = connector
        .connect(name, tcp)
        .await
        .context("TLS with the server failed")?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        address.host
    );
    tls.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    let cap = max_len.saturating_add(16 << 10);
    (&mut tls).take(cap + 1).read_to_end(&mut response).await?;
    if response.len() as u64 > cap {
        bail!("{path} is larger than {max_len} bytes");
    }
    parse_response(response, max_len).with_context(|| format!("fetching {path}"))
}

/// A release response from the gateway (pure; fuzzed as
/// `fuzz/fuzz_targets/release_mirror.rs`): the body of a 200 that is
/// exactly its `Content-Length` and at most `max_len` bytes, `None` for a
/// 404, an error otherwise.
pub fn parse_response(mut response: Vec<u8>, max_len: u64) -> anyhow::Result<Option<Vec<u8>>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut headers);
    let head_len = match parsed.parse(&response) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => bail!("the answer ended early"),
        Err(e) => bail!("the answer is not HTTP: {e}"),
    };
    match parsed.code {
        Some(200) => {}
        Some(404) => return Ok(None),
        other => bail!("the server answered {other:?}"),
    }
    let length = parsed
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<u64>()
                .ok()
        });
    let body = response.split_off(head_len);
    if body.len() as u64 > max_len {
        bail!("larger than {max_len} bytes");
    }
    if length != Some(body.len() as u64) {
        bail!(
            "ended early ({} bytes, Content-Length {length:?})",
            body.len()
        );
    }
    Ok(Some(body))
}

/// What the agent needs to update itself.
#[derive(Debug, Clone)]
pub struct SelfUpdate {
    pub state_dir: PathBuf,
    pub address: ServerAddress,
    pub pin: [u8; 32],
    pub running: Running,
}

/// The agent-integrity posture finding (issue 16), pure: the binary's
/// hash now against what the release keys signed (`signed`, the verified
/// target `name` if the targets list it) for the running version. 0 sound,
/// 1 a finding; an error when the release cannot tell.
pub fn integrity_finding(
    name: &str,
    signed: Option<&TargetFile>,
    version: &str,
    binary_sha256: &[u8; 32],
) -> Result<(u64, String), String> {
    let Some(file) = signed else {
        return Ok((
            1,
            format!("version {version} is not a release the release keys signed ({name})"),
        ));
    };
    let hash = hex::encode(binary_sha256);
    match file.hashes.get("sha256") {
        Some(signed) if *signed == hash => Ok((
            0,
            format!(
                "the binary is the signed release {version} (sha256 {})",
                &hash[..16]
            ),
        )),
        Some(signed) => Ok((
            1,
            format!(
                "the binary (sha256 {hash}) is not the signed release {version} (sha256 {signed})"
            ),
        )),
        None => Err(format!("the release keys signed no sha256 for {name}")),
    }
}

impl SelfUpdate {
    /// The agent-integrity check: hashes the running binary again, then
    /// verifies the release metadata from the pinned release root (through
    /// the server's mirror, which can withhold it but not forge it) and
    /// compares. Without a pinned release root it cannot tell.
    pub async fn integrity(&self) -> Result<(u64, String), String> {
        let paths = Paths::new(&self.state_dir);
        let root = std::fs::read(&paths.release_root).map_err(|_| {
            "no release root is pinned on this device (bulwark-agent install --release-root)"
                .to_owned()
        })?;
        let binary = self.running.path.clone();
        let sha256 = tokio::task::spawn_blocking(move || sha256_file(&binary))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot read {}: {e}", self.running.path.display()))?;
        let mut mirror = Mirror {
            address: self.address.clone(),
            pin: self.pin,
            paths,
            runtime: tokio::runtime::Handle::current(),
        };
        let now = i64::try_from(now_ms() / 1000).unwrap_or(i64::MAX);
        let set = tokio::task::spawn_blocking(move || {
            bulwark_releases::refresh(&root, &mut mirror, ReleaseLimits::default(), now)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("the release metadata does not verify: {e}"))?;
        let name = target_name(&self.running.version, &platform());
        integrity_finding(&name, set.target(&name), &self.running.version, &sha256)
    }
}

/// A release verified and written to `bin/`, not yet switched to.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub version: String,
    pub sha256: [u8; 32],
    pub binary: PathBuf,
}

impl SelfUpdate {
    /// Steps 1 to 3: verified metadata, the target the job names, the
    /// binary downloaded and checked. Installs nothing.
    pub async fn prepare(&self, version: &str, sha256: &[u8; 32]) -> Result<Prepared, Refused> {
        let paths = Paths::new(&self.state_dir);
        let root = std::fs::read(&paths.release_root).map_err(|_| {
            refused(
                AgentRefusalCode::ReleaseNotVerified,
                "no release root is pinned on this device (bulwark-agent install --release-root)",
            )
        })?;
        let mut mirror = Mirror {
            address: self.address.clone(),
            pin: self.pin,
            paths: paths.clone(),
            runtime: tokio::runtime::Handle::current(),
        };
        let now = i64::try_from(now_ms() / 1000).unwrap_or(i64::MAX);
        // The TUF client is synchronous; its fetches run on this runtime.
        let set = tokio::task::spawn_blocking(move || {
            bulwark_releases::refresh(&root, &mut mirror, ReleaseLimits::default(), now)
        })
        .await
        .map_err(|e| refused(AgentRefusalCode::AgentError, e.to_string()))?
        .map_err(|e| {
            refused(
                AgentRefusalCode::ReleaseNotVerified,
                format!("the release metadata does not verify: {e}"),
            )
        })?;
        let (name, file) =
            choose_release(&set, &platform(), version, sha256, &self.running.version)?;
        let path = bulwark_releases::target_path(&set, &name, &file);
        let bytes = get(
            &self.address,
            self.pin,
            &format!("/agent/v1/releases/targets/{path}"),
            file.length,
        )
        .await
        .map_err(|e| refused(AgentRefusalCode::ReleaseNotVerified, format!("{e:#}")))?
        .ok_or_else(|| {
            refused(
                AgentRefusalCode::ReleaseNotVerified,
                format!("the server's mirror has no {path}"),
            )
        })?;
        bulwark_releases::check_target(&name, &file, &bytes).map_err(|e| {
            refused(
                AgentRefusalCode::ReleaseNotVerified,
                format!("the binary the server sent is not the signed release: {e}"),
            )
        })?;
        let binary = write_binary(&paths, sha256, version, &bytes).map_err(|e| {
            refused(
                AgentRefusalCode::AgentError,
                format!("cannot write the binary: {e}"),
            )
        })?;
        Ok(Prepared {
            version: version.to_owned(),
            sha256: *sha256,
            binary,
        })
    }

    /// Switches to a prepared release and restarts through the launcher:
    /// does not return unless that failed (then nothing changed).
    pub fn install_and_restart(&self, job_id: [u8; 16], prepared: &Prepared) -> anyhow::Error {
        let paths = Paths::new(&self.state_dir);
        match self.switch(job_id, prepared, &paths) {
            Ok(()) => {
                info!(version = %prepared.version, "Installed a verified agent release; restarting into it.");
                let error = exec_launcher();
                // Still this binary: undo, so nothing pends.
                let _ = roll_back(&paths, &self.state_dir, None, "");
                error
            }
            Err(error) => error,
        }
    }

    fn switch(&self, job_id: [u8; 16], prepared: &Prepared, paths: &Paths) -> anyhow::Result<()> {
        replace_symlink(&self.running.path, &paths.previous)?;
        let pending = Pending {
            job_id: hex::encode(job_id),
            from_version: self.running.version.clone(),
            from_sha256: hex::encode(self.running.sha256),
            to_version: prepared.version.clone(),
            to_sha256: hex::encode(prepared.sha256),
            attempts: 0,
            deadline_ms: now_ms() + HEALTH_DEADLINE.as_millis() as u64,
        };
        pending.save(&paths.pending)?;
        replace_symlink(&prepared.binary, &paths.current)?;
        Ok(())
    }
}

/// `bin/<sha256>` (0755) and `bin/<sha256>.version`, each synced.
fn write_binary(
    paths: &Paths,
    sha256: &[u8; 32],
    version: &str,
    bytes: &[u8],
) -> io::Result<PathBuf> {
    private_dir(&paths.bin)?;
    let name = hex::encode(sha256);
    let binary = paths.bin.join(&name);
    write_atomic(&binary, bytes, 0o755)?;
    write_atomic(
        &paths.bin.join(format!("{name}.version")),
        version.as_bytes(),
        0o600,
    )?;
    Ok(binary)
}

/// Points `link` at `target`, atomically (a new link renamed over it).
fn replace_symlink(target: &Path, link: &Path) -> io::Result<()> {
    let tmp = link.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link)?;
    let dir = link
        .parent()
        .ok_or_else(|| io::Error::other("no directory"))?;
    sync_dir(dir)
}

/// Flushes what the agent wrote before a re-exec replaces the process.
pub fn flush_logs() {
    let _ = io::stderr().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_release_versions() {
        assert_eq!(parse_version("0.2.10"), Some((0, 2, 10)));
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "1.2.x",
            "1.2.3-rc1",
            "v1.2.3",
            "1..3",
            "+1.2.3",
        ] {
            assert_eq!(parse_version(bad), None, "{bad}");
        }
        assert!(parse_version("0.10.0") > parse_version("0.9.9"));
    }

    fn pending(attempts: u32, deadline_ms: u64) -> Pending {
        Pending {
            job_id: "00".repeat(16),
            from_version: "0.1.0".into(),
            from_sha256: "aa".into(),
            to_version: "0.2.0".into(),
            to_sha256: "bb".into(),
            attempts,
            deadline_ms,
        }
    }

    #[test]
    fn the_launcher_counts_starts_and_rolls_back() {
        assert_eq!(launch_step(None, false, 5), LaunchStep::RunHere);
        assert_eq!(launch_step(None, true, 5), LaunchStep::RunCurrent);
        assert_eq!(
            launch_step(Some(&pending(0, 10)), true, 5),
            LaunchStep::RunCurrent
        );
        assert_eq!(
            launch_step(Some(&pending(2, 10)), true, 5),
            LaunchStep::RunCurrent
        );
        assert!(matches!(
            launch_step(Some(&pending(3, 10)), true, 5),
            LaunchStep::RollBack(r) if r.contains("3 times")
        ));
        assert!(matches!(
            launch_step(Some(&pending(1, 10)), true, 11),
            LaunchStep::RollBack(r) if r.contains("within")
        ));
    }

    #[test]
    fn responses_are_bounded_and_exact() {
        let ok = |r: &str, max| parse_response(r.as_bytes().to_vec(), max);
        assert_eq!(
            ok("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", 3).expect("ok"),
            Some(b"abc".to_vec())
        );
        assert_eq!(
            ok("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 3).expect("404"),
            None
        );
        assert!(
            ok("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcd", 9).is_err(),
            "trailing bytes"
        );
        assert!(
            ok("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabc", 9).is_err(),
            "cut short"
        );
        assert!(ok("HTTP/1.1 200 OK\r\n\r\nabc", 9).is_err(), "no length");
        assert!(
            ok("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", 2).is_err(),
            "too long"
        );
        assert!(ok("HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", 2).is_err());
        assert!(ok("HTTP/1.1 200 OK\r\nContent-Le", 2).is_err());
    }

    #[test]
    fn the_binary_is_held_to_its_signed_release() {
        let name = target_name("1.2.0", "x86_64-unknown-linux-gnu");
        let file = |hash: Option<&str>| TargetFile {
            length: 3,
            hashes: hash
                .map(|h| [("sha256".to_owned(), h.to_owned())].into())
                .unwrap_or_default(),
            custom: None,
        };
        let ours = [0xab; 32];
        let signed = file(Some(&hex::encode(ours)));
        assert_eq!(
            integrity_finding(&name, Some(&signed), "1.2.0", &ours).map(|(v, _)| v),
            Ok(0)
        );
        // A binary changed on disk, or built by someone else.
        let (value, summary) =
            integrity_finding(&name, Some(&signed), "1.2.0", &[0xcd; 32]).expect("measured");
        assert_eq!(value, 1);
        assert!(summary.contains("is not the signed release"), "{summary}");
        // A version the release keys never signed.
        let (value, summary) = integrity_finding(&name, None, "1.2.0", &ours).expect("measured");
        assert_eq!(value, 1);
        assert!(summary.contains("not a release"), "{summary}");
        // Signed without a sha256: the release cannot tell.
        assert!(integrity_finding(&name, Some(&file(None)), "1.2.0", &ours).is_err());
    }

    #[test]
    fn the_release_root_is_pinned_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(pin_release_root(dir.path(), b"{}").is_err(), "not a root");
        assert!(!Paths::new(dir.path()).release_root.exists());
    }
}
