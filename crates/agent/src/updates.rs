//! Pending updates and patch runs on Debian and Ubuntu (issue 17).
//!
//! What apt would upgrade is read from a simulated upgrade, `apt-get -s
//! -o Debug::NoLocking=1 dist-upgrade`: read-only, no lock, no root. Its
//! `Inst` lines are parsed by [`parse_simulation`], pure and bounded
//! ([`UpdateLimits`]), fuzzed by `fuzz/fuzz_targets/apt_simulation.rs`. An
//! update is a security update when one of the sources apt names for it is
//! a security suite (`*-security`: Debian's `bookworm-security`, Ubuntu's
//! `jammy-security`).
//!
//! The package lists themselves (`apt-get update`) are refreshed only when
//! the agent runs as root (only root may write them); otherwise the agent
//! reads the lists as the system last fetched them, and says so in its log.
//!
//! [`Updates`] keeps the latest list for the inventory ([`crate::inventory`]
//! sends it as the `pending_updates` section) and refreshes it every
//! [`REFRESH_EVERY`] (`bulwark-agent run --updates-secs`), on demand (an
//! inventory-refresh job) and after a patch job.
//!
//! Which apt: the system's, unless `bulwark-agent run --apt-config FILE`
//! (`BULWARK_AGENT_APT_CONFIG`) names an apt configuration file, given to
//! every apt run as `APT_CONFIG`. It exists so that a test (or a machine
//! whose packages live in another root) can confine apt and dpkg to a
//! directory of its own: `Dir`, `Dir::State::status`, `Dir::Etc::*` and
//! `DPkg::Options` there.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bulwark_protocol::inventory::PendingUpdate;
use bulwark_protocol::message::{PatchFailure, PatchReport, PatchedPackage};
use tokio::io::AsyncReadExt;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

#[cfg(test)]
mod tests;

/// How often the pending updates are read again by default (and the
/// package lists refreshed, when the agent is root).
pub const REFRESH_EVERY: Duration = Duration::from_secs(6 * 3600);

/// Where Debian-family systems ask for a reboot after an upgrade.
pub const REBOOT_REQUIRED: &str = "/var/run/reboot-required";

/// Caps on what [`parse_simulation`] accepts.
#[derive(Debug, Clone)]
pub struct UpdateLimits {
    /// Bytes of apt's output read at most.
    pub max_output: usize,
    /// Updates kept at most (the protocol's package cap).
    pub max_updates: usize,
    /// Bytes of one name, version or architecture.
    pub max_field: usize,
    /// Bytes of the sources apt names for one update.
    pub max_origin: usize,
}

impl Default for UpdateLimits {
    fn default() -> Self {
        let protocol = bulwark_protocol::Limits::default();
        Self {
            max_output: 16 << 20,
            max_updates: protocol.max_packages,
            max_field: protocol.max_text,
            max_origin: protocol.max_long_text,
        }
    }
}

/// Why apt's output was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdatesError {
    #[error("apt's output is over {0} bytes")]
    TooLarge(usize),
    #[error("more than {0} pending updates")]
    TooMany(usize),
    #[error("line {line}: {why}")]
    Line { line: usize, why: &'static str },
}

/// The updates a simulated upgrade would install, sorted by name and
/// architecture, one per pair. Lines other than `Inst` are ignored; an
/// `Inst` line that does not read as apt writes it is an error (a list
/// silently missing an update would be worse than none).
pub fn parse_simulation(
    output: &str,
    limits: &UpdateLimits,
) -> Result<Vec<PendingUpdate>, UpdatesError> {
    if output.len() > limits.max_output {
        return Err(UpdatesError::TooLarge(limits.max_output));
    }
    let mut updates = Vec::new();
    for (n, line) in output.lines().enumerate() {
        let Some(rest) = line.strip_prefix("Inst ") else {
            continue;
        };
        let update =
            parse_inst(rest, limits).map_err(|why| UpdatesError::Line { line: n + 1, why })?;
        if updates.len() == limits.max_updates {
            return Err(UpdatesError::TooMany(limits.max_updates));
        }
        updates.push(update);
    }
    updates.sort();
    updates.dedup_by(|a, b| a.name == b.name && a.architecture == b.architecture);
    Ok(updates)
}

/// `NAME [OLD] (NEW SOURCE, SOURCE [ARCH]) [...]`, after `Inst `; `[OLD]`
/// is absent for a package the upgrade installs anew.
fn parse_inst(rest: &str, limits: &UpdateLimits) -> Result<PendingUpdate, &'static str> {
    let (name, rest) = rest.split_once(' ').ok_or("no version after the name")?;
    // A multi-arch name carries its architecture, which the brackets repeat.
    let name = name.split_once(':').map_or(name, |(n, _)| n);
    if !bulwark_policy::job::is_package_name(name) || name.len() > limits.max_field {
        return Err("not a package name");
    }
    let (current, rest) = match rest.strip_prefix('[') {
        Some(old) => {
            let (old, rest) = old.split_once("] ").ok_or("unclosed installed version")?;
            (old, rest)
        }
        None => ("", rest),
    };
    let inner = rest.strip_prefix('(').ok_or("no new version")?;
    let (inner, _) = inner.split_once(')').ok_or("unclosed new version")?;
    let (new, sources) = inner.split_once(' ').ok_or("no architecture")?;
    let sources = sources.strip_suffix(']').ok_or("no architecture")?;
    let (origin, arch) = match sources.rsplit_once(" [") {
        Some((origin, arch)) => (origin, arch),
        None => ("", sources.strip_prefix('[').ok_or("no architecture")?),
    };
    // The installed version is empty for a package installed anew.
    if !(current.is_empty() || is_version(current)) || current.len() > limits.max_field {
        return Err("bad installed version");
    }
    if !is_version(new) || new.len() > limits.max_field {
        return Err("bad new version");
    }
    if arch.is_empty()
        || arch.len() > limits.max_field
        || !arch
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err("bad architecture");
    }
    if origin.len() > limits.max_origin || origin.chars().any(char::is_control) {
        return Err("bad source");
    }
    Ok(PendingUpdate {
        name: name.to_owned(),
        architecture: arch.to_owned(),
        current_version: current.to_owned(),
        new_version: new.to_owned(),
        origin: origin.to_owned(),
        security: origin.split(", ").any(is_security_source),
    })
}

/// apt names a source `[Label:][Version/]Archive` ("Debian-Security:12/
/// oldstable-security", "Ubuntu:22.04/jammy-security", a repository
/// without a version "Local:bookworm-security"; apt's `RelStr`), or the
/// site of a repository without a Release file: a security suite's
/// archive ends in `-security`.
pub fn is_security_source(source: &str) -> bool {
    let archive = match source.rsplit_once('/') {
        Some((_, archive)) => archive,
        None => source
            .rsplit_once(':')
            .map_or(source, |(_, archive)| archive),
    };
    archive.ends_with("-security")
}

/// The characters of a Debian version (`[epoch:]upstream[-revision]`),
/// starting with a digit: enough to keep anything else out of the report.
fn is_version(v: &str) -> bool {
    v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~:-".contains(c))
}

/// Which packages a patch job upgrades: the named ones, or every pending
/// security update when none is named. Only installed packages are
/// upgraded (`--only-upgrade`): a package the upgrade would install anew
/// (a new kernel) comes in as a dependency of one that is, or not at all.
/// Named packages with no pending upgrade are failures from the start.
pub fn select_targets(
    named: &[String],
    pending: &[PendingUpdate],
) -> (Vec<PendingUpdate>, Vec<PatchFailure>) {
    let pending: Vec<&PendingUpdate> = pending
        .iter()
        .filter(|u| !u.current_version.is_empty())
        .collect();
    if named.is_empty() {
        let security = pending.into_iter().filter(|u| u.security).cloned();
        return (security.collect(), Vec::new());
    }
    let mut targets = Vec::new();
    let mut failed = Vec::new();
    for name in named {
        let base = name.split_once(':').map_or(name.as_str(), |(n, _)| n);
        let found: Vec<_> = pending
            .iter()
            .filter(|u| u.name == base)
            .map(|u| (*u).clone())
            .collect();
        if found.is_empty() {
            failed.push(PatchFailure {
                name: name.clone(),
                reason: "no pending upgrade of an installed package of this name".into(),
            });
        }
        targets.extend(found);
    }
    targets.sort();
    targets.dedup();
    (targets, failed)
}

/// What a patch run did: each target no longer pending afterwards was
/// upgraded (old -> new as apt planned it); each still pending failed.
pub fn patch_report(
    targets: &[PendingUpdate],
    mut failed: Vec<PatchFailure>,
    after: &[PendingUpdate],
    apt_status: &str,
    reboot_required: bool,
) -> PatchReport {
    let mut installed = Vec::new();
    for t in targets {
        let still = after
            .iter()
            .any(|a| a.name == t.name && a.architecture == t.architecture);
        if still {
            failed.push(PatchFailure {
                name: t.name.clone(),
                reason: format!("still pending after the upgrade ({apt_status})"),
            });
        } else {
            installed.push(PatchedPackage {
                name: t.name.clone(),
                old_version: t.current_version.clone(),
                new_version: t.new_version.clone(),
            });
        }
    }
    installed.sort_by(|a, b| a.name.cmp(&b.name));
    installed.dedup_by(|a, b| a.name == b.name);
    failed.sort_by(|a, b| a.name.cmp(&b.name));
    failed.dedup_by(|a, b| a.name == b.name);
    PatchReport {
        installed,
        failed,
        reboot_required,
    }
}

/// The shell script a patch job runs under the job supervisor (its
/// timeout, process group and crash recovery): apt, non-interactive,
/// keeping changed configuration files, only upgrading. The names passed
/// [`bulwark_policy::job::is_package_name`] (no quote, space or leading
/// `-`), and come after `--` all the same.
pub fn install_script(apt_config: Option<&Path>, packages: &[PendingUpdate]) -> Option<String> {
    let mut script = String::from("DEBIAN_FRONTEND=noninteractive\nexport DEBIAN_FRONTEND\n");
    if let Some(config) = apt_config {
        let config = config.to_str()?;
        if config.contains('\'') {
            return None;
        }
        script.push_str(&format!("APT_CONFIG='{config}'\nexport APT_CONFIG\n"));
    }
    script.push_str(
        "exec apt-get install --only-upgrade -y -q -o Dpkg::Options::=--force-confold \
         -o Dpkg::Options::=--force-confdef --",
    );
    for p in packages {
        if !bulwark_policy::job::is_package_name(&p.name) {
            return None;
        }
        script.push(' ');
        script.push_str(&p.name);
    }
    script.push('\n');
    Some(script)
}

/// The latest pending updates and the way to read them again.
#[derive(Clone)]
pub struct Updates {
    apt_config: Option<PathBuf>,
    latest: Arc<Mutex<Option<Vec<PendingUpdate>>>>,
    wake: Arc<Notify>,
    /// Bumped after each read, so a session reports a new list at once.
    read: Arc<watch::Sender<u64>>,
    limits: UpdateLimits,
}

impl std::fmt::Debug for Updates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Updates")
            .field("apt_config", &self.apt_config)
            .finish_non_exhaustive()
    }
}

impl Updates {
    pub fn new(apt_config: Option<PathBuf>) -> Self {
        Self {
            apt_config,
            latest: Arc::default(),
            wake: Arc::default(),
            read: Arc::new(watch::Sender::new(0)),
            limits: UpdateLimits::default(),
        }
    }

    pub fn apt_config(&self) -> Option<&Path> {
        self.apt_config.as_deref()
    }

    /// The list last read (`None` before the first read, or when apt
    /// cannot be run here).
    pub fn latest(&self) -> Option<Vec<PendingUpdate>> {
        self.latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, updates: Vec<PendingUpdate>) {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(updates);
        self.read.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes after each read of the pending updates.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.read.subscribe()
    }

    /// Asks the refresh task ([`Updates::run`]) to read again now.
    pub fn refresh_soon(&self) {
        self.wake.notify_one();
    }

    /// Refreshes every `every` and when asked, until dropped.
    pub async fn run(self, every: Duration) {
        loop {
            self.refresh().await;
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    /// Refreshes the package lists when root, then reads the pending
    /// updates and keeps them. Failures are logged and keep the old list.
    pub async fn refresh(&self) {
        if rustix::process::geteuid().is_root() {
            if let Err(error) = self.apt(&["update", "-q"], Duration::from_secs(600)).await {
                warn!(%error, "Cannot refresh the package lists; reading pending updates from the lists as they are.");
            }
        } else {
            info!(
                "Not root: the package lists are not refreshed here; pending updates are read from the lists as the system last fetched them."
            );
        }
        if let Err(error) = self.read_pending().await {
            warn!(%error, "Cannot read pending updates.");
        }
    }

    /// Reads the pending updates (a simulated upgrade) and keeps them.
    pub async fn read_pending(&self) -> anyhow::Result<Vec<PendingUpdate>> {
        let output = self
            .apt(
                &["-s", "-q", "-o", "Debug::NoLocking=1", "dist-upgrade"],
                Duration::from_secs(300),
            )
            .await?;
        let updates = parse_simulation(&output, &self.limits)?;
        self.set(updates.clone());
        Ok(updates)
    }

    /// Runs `apt-get ARGS` (with the configured `APT_CONFIG`), bounded in
    /// time and in the output read; its standard output on success.
    async fn apt(&self, args: &[&str], timeout: Duration) -> anyhow::Result<String> {
        let mut command = tokio::process::Command::new("apt-get");
        command
            .args(args)
            .env("LC_ALL", "C")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some(config) = &self.apt_config {
            command.env("APT_CONFIG", config);
        }
        let mut child = command.spawn()?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            anyhow::bail!("apt-get's output is not readable");
        };
        let max = self.limits.max_output as u64 + 1;
        let work = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let (mut stdout, mut stderr) = (stdout.take(max), stderr.take(64 << 10));
            let (a, b) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
            a?;
            b?;
            let status = child.wait().await?;
            anyhow::Ok((status, out, err))
        };
        let (status, out, err) = tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| anyhow::anyhow!("apt-get {} took over {timeout:?}", args.join(" ")))??;
        if !status.success() {
            anyhow::bail!(
                "apt-get {} failed ({status}): {}",
                args.join(" "),
                String::from_utf8_lossy(&err).trim()
            );
        }
        if out.len() as u64 >= max {
            anyhow::bail!(UpdatesError::TooLarge(self.limits.max_output));
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}
