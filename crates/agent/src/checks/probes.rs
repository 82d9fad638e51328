//! The probes: what each kind of check measures on this machine. The only
//! I/O of the checks; thresholds and "for N seconds" are pure
//! (`CheckDefinition::classify`, [`super::tracker`]).

use std::path::Path;
use std::time::{Duration, Instant};

use bulwark_policy::checks::Probe;
use sha2::{Digest, Sha256};
use sysinfo::{MemoryRefreshKind, ProcessRefreshKind, ProcessesToUpdate, System};

/// A probe's answer: a value in the probe's unit, or why there is none.
pub type Measurement = Result<(u64, String), String>;

/// Keeps sysinfo's tables between runs (CPU usage is measured between two
/// refreshes), and the pending updates the security-updates posture
/// counts.
pub struct Probes {
    system: System,
    updates: Option<crate::updates::Updates>,
}

impl Default for Probes {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Probes {
    pub fn new(updates: Option<crate::updates::Updates>) -> Self {
        let mut system = System::new();
        system.refresh_cpu_usage();
        Self { system, updates }
    }

    /// Measures what is quick and local here; `None` for the probes that
    /// wait on something (a service manager, a port, a file) and run on a
    /// task of their own ([`measure_slow`]).
    pub fn measure_fast(&mut self, probe: &Probe) -> Option<Measurement> {
        Some(match probe {
            Probe::Cpu => {
                self.system.refresh_cpu_usage();
                let busy = self.system.global_cpu_usage();
                let percent = busy.round().clamp(0.0, 100.0) as u64;
                Ok((percent, format!("{percent}% busy")))
            }
            Probe::Memory => {
                self.system
                    .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
                let total = self.system.total_memory();
                let available = self.system.available_memory();
                if total == 0 {
                    Err("the memory size is unknown".to_owned())
                } else {
                    let percent = percent_up(total.saturating_sub(available), total);
                    Ok((
                        percent,
                        format!(
                            "{percent}% used ({} MiB of {} MiB)",
                            (total - available.min(total)) >> 20,
                            total >> 20
                        ),
                    ))
                }
            }
            Probe::Load => {
                let one = System::load_average().one;
                let cores = self.system.cpus().len().max(
                    std::thread::available_parallelism()
                        .map(usize::from)
                        .unwrap_or(1),
                );
                let per_core = (one / cores as f64 * 100.0).round().max(0.0) as u64;
                Ok((
                    per_core,
                    format!("load {one:.2} on {cores} cores ({per_core} per 100 cores)"),
                ))
            }
            Probe::Disk { mount } => disk_used(mount),
            Probe::Process { name } => {
                self.system.refresh_processes_specifics(
                    ProcessesToUpdate::All,
                    true,
                    ProcessRefreshKind::nothing(),
                );
                let count = self
                    .system
                    .processes()
                    .values()
                    .filter(|p| p.name().to_str() == Some(name.as_str()))
                    .count() as u64;
                if count == 0 {
                    Ok((1, format!("no process named {name}")))
                } else {
                    Ok((0, format!("{count} running")))
                }
            }
            Probe::Service { .. }
            | Probe::TcpPort { .. }
            | Probe::FileHash { .. }
            | Probe::Http { .. }
            | Probe::TlsExpiry { .. }
            | Probe::Script { .. }
            | Probe::Ping { .. }
            | Probe::LogPattern { .. } => return None,
            // Small files and a list in memory: quick enough to read here.
            // Fetches and verifies release metadata: a waiting probe.
            Probe::Posture {
                item: bulwark_policy::PostureItem::AgentIntegrity,
            } => return None,
            Probe::Posture { item } => {
                let pending = self.updates.as_ref().and_then(|u| u.latest());
                super::posture::measure(*item, Path::new("/"), pending.as_deref())
            }
        })
    }
}

/// `df`'s "Use%": used over what users can have, rounded up.
fn disk_used(mount: &str) -> Measurement {
    let fs = rustix::fs::statvfs(mount).map_err(|e| format!("cannot read {mount}: {e}"))?;
    let (_, used, available) =
        crate::inventory::df_space(fs.f_frsize, fs.f_blocks, fs.f_bfree, fs.f_bavail);
    if !is_mount_point(mount) {
        return Err(format!("{mount} is not a mount point"));
    }
    let percent = percent_up(used, used + available);
    Ok((
        percent,
        format!("{percent}% used, {} MiB free", available >> 20),
    ))
}

/// Is `path` where a file system is mounted (not a directory of another)?
fn is_mount_point(path: &str) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return true; // cannot tell: measure whatever holds it
    };
    mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(1))
        .any(|m| unescape_mount(m) == path)
}

/// /proc/self/mounts writes spaces and tabs in octal.
fn unescape_mount(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn percent_up(part: u64, whole: u64) -> u64 {
    if whole == 0 {
        return 0;
    }
    (u128::from(part) * 100).div_ceil(u128::from(whole)) as u64
}

/// The probes that wait: run on a task of their own, under the check's timeout.
pub async fn measure_slow(probe: Probe) -> Measurement {
    match probe {
        Probe::TcpPort { host, port } => {
            let started = Instant::now();
            match tokio::net::TcpStream::connect((host.as_str(), port)).await {
                Ok(_) => {
                    let ms = started.elapsed().as_millis() as u64;
                    Ok((ms, format!("{host}:{port} accepted in {ms} ms")))
                }
                Err(e) => Err(format!("{host}:{port}: {e}")),
            }
        }
        Probe::FileHash { path, sha256 } => {
            tokio::task::spawn_blocking(move || file_matches(Path::new(&path), &sha256))
                .await
                .map_err(|e| format!("the file check failed: {e}"))?
        }
        Probe::Service { unit } => service_active(&unit).await,
        Probe::Http {
            url,
            expect_status,
            ca_file,
        } => super::network::http(&url, expect_status, ca_file.as_deref()).await,
        Probe::TlsExpiry {
            host,
            port,
            server_name,
            ca_file,
        } => {
            super::network::tls_expiry(&host, port, server_name.as_deref(), ca_file.as_deref())
                .await
        }
        Probe::Ping { host, count } => super::ping::ping(&host, count).await,
        other => Err(format!("{} is not a waiting probe", other.kind())),
    }
}

fn file_matches(path: &Path, expected: &[u8; 32]) -> Measurement {
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let actual: [u8; 32] = hasher.finalize().into();
    if &actual == expected {
        Ok((0, "unchanged".to_owned()))
    } else {
        Ok((
            1,
            format!(
                "changed: sha256 {} (the policy expects {})",
                &hex::encode(actual)[..16],
                &hex::encode(expected)[..16]
            ),
        ))
    }
}

/// A unit's state as systemd reports it; only where systemd runs.
async fn service_active(unit: &str) -> Measurement {
    if !Path::new("/run/systemd/system").is_dir() {
        return Err("systemd is not running on this machine".to_owned());
    }
    let output = tokio::process::Command::new("systemctl")
        .args(["is-active", "--", unit])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run systemctl: {e}"))?;
    let state = String::from_utf8_lossy(&output.stdout);
    let state = crate::text::clipped(state.trim(), 64);
    if output.status.success() {
        Ok((0, format!("{unit} is {state}")))
    } else {
        Ok((1, format!("{unit} is {state}")))
    }
}

/// How long a probe may take, from the policy.
pub fn timeout(secs: u32) -> Duration {
    Duration::from_secs(u64::from(secs.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_rounds_up_like_df() {
        assert_eq!(percent_up(0, 100), 0);
        assert_eq!(percent_up(1, 1000), 1);
        assert_eq!(percent_up(170, 1000), 17);
        assert_eq!(percent_up(171, 1000), 18);
        assert_eq!(percent_up(5, 0), 0);
    }

    #[test]
    fn mount_fields_are_unescaped() {
        assert_eq!(unescape_mount("/mnt/my\\040disk"), "/mnt/my disk");
    }

    #[test]
    fn root_is_measured() {
        let (percent, summary) = disk_used("/").expect("/ is mounted");
        assert!(percent <= 100, "{summary}");
    }

    #[test]
    fn a_file_is_compared_with_its_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hosts");
        std::fs::write(&path, b"127.0.0.1 localhost\n").expect("write");
        let good: [u8; 32] = Sha256::digest(b"127.0.0.1 localhost\n").into();
        assert_eq!(file_matches(&path, &good).expect("read").0, 0);
        assert_eq!(file_matches(&path, &[0; 32]).expect("read").0, 1);
        assert!(file_matches(&dir.path().join("gone"), &good).is_err());
    }
}
