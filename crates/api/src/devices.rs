//! Devices (enrolled endpoints) and what their agents reported: inventory and
//! the trust statements they hold.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// An agent's reported version, `0.2.0+sha256.<hex>` since RFD 0017, as
/// the version and the binary's SHA-256.
pub fn split_agent_version(reported: &str) -> (&str, Option<&str>) {
    match reported.split_once("+sha256.") {
        Some((version, hash))
            if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            (version, Some(hash))
        }
        _ => (reported, None),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceView {
    pub id: String,
    pub tenant: String,
    pub hostname: String,
    /// SHA-256 of the device's public key (hex), as signed jobs name it.
    pub key_fingerprint: String,
    /// The agent's release version, as it reports it.
    pub agent_version: String,
    /// SHA-256 (hex) of the agent binary running, as it reports it (RFD
    /// 0017; absent for agents that do not report it). The device's word,
    /// like the version: which release runs, not a proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_sha256: Option<String>,
    pub online: bool,
    /// The agent wire protocol version its connection negotiated (RFD
    /// 0010); absent while the device is offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<u16>,
    /// RFC 3339; null until the agent first connects.
    pub last_seen_at: Option<String>,
    pub enrolled_at: String,
    /// Operating system name and version, once the agent has reported it.
    pub os: Option<String>,
    /// Present on `GET /api/v1/devices/{id}` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inventory: Option<InventoryView>,
    /// What the agent last reported holding (on `GET /api/v1/devices/{id}`
    /// only; absent until it reported).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust: Option<DeviceTrustView>,
    /// How many installed packages the agent reported (on
    /// `GET /api/v1/devices/{id}` only); the list is
    /// `GET /api/v1/devices/{id}/packages`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_count: Option<u64>,
    /// The device's tags, sorted (RFD 0016): the server's word.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The device's group within its tenant, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// A package the device's agent reported installed. Every text is the
/// agent's own, untrusted: show it escaped.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PackageView {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// The source package it was built from (vulnerability data names these).
    pub source: String,
    pub source_version: String,
}

/// `GET /api/v1/devices/{id}/packages`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DevicePackagesView {
    pub device_id: String,
    pub hostname: String,
    /// How many packages match the filter (all of them without one).
    pub total: u64,
    /// The matching packages by name and architecture, at most
    /// [`MAX_PACKAGES_LISTED`]; fewer than `total` when there are more.
    pub packages: Vec<PackageView>,
}

/// The most packages one answer lists (a device may report up to 10,000).
pub const MAX_PACKAGES_LISTED: usize = 10_000;

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PackagesQuery {
    /// Only packages whose name contains this text (any case).
    #[param(max_length = 256)]
    pub q: Option<String>,
}

/// The trust statements an agent holds, as it reported them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceTrustView {
    pub root_version: u64,
    pub policy_version: u64,
    pub freeze_sequence: u64,
    pub frozen: bool,
    pub reported_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InventoryView {
    pub system: Option<SystemView>,
    pub cpu: Option<CpuView>,
    pub memory: Option<MemoryView>,
    pub disks: Option<Vec<DiskView>>,
    pub network: Option<Vec<NetworkInterfaceView>>,
    pub users: Option<Vec<LoggedInUserView>>,
    /// Sockets waiting for connections, by protocol, port and address
    /// (absent until the agent reports them; older agents never do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listening_ports: Option<Vec<ListeningPortView>>,
    /// Accounts that can act as root, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_admins: Option<Vec<LocalAdminView>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<ServicesView>,
    /// What runs: one entry per process name, largest memory first, a
    /// snapshot the agent takes every 15 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<Vec<ProcessView>>,
    /// What apt would upgrade (a simulated upgrade on the agent), security
    /// updates first, then by name; absent until the agent reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_updates: Option<Vec<PendingUpdateView>>,
}

/// A package version an upgrade would install. Texts are the agent's,
/// untrusted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PendingUpdateView {
    pub name: String,
    pub architecture: String,
    /// Empty when the upgrade installs the package anew.
    pub current_version: String,
    pub new_version: String,
    /// The sources apt names ("Debian-Security:12/oldstable-security").
    pub origin: String,
    /// From a security suite (`*-security`).
    pub security: bool,
}

/// A TCP socket in LISTEN state or a bound, unconnected UDP socket. Texts
/// are the agent's, untrusted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListeningPortView {
    /// `tcp` or `udp`.
    pub protocol: String,
    pub address: String,
    pub port: u16,
    /// The owning process, when the agent could see it.
    pub process: Option<String>,
    pub pid: Option<u32>,
}

/// An account that can act as root, and every way it can.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LocalAdminView {
    pub name: String,
    pub grants: Vec<AdminGrantView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdminGrantView {
    /// `group` (sudo, wheel or admin), `uid0`, `gid0` or `sudoers`.
    pub kind: String,
    /// The group, or the sudoers file and line.
    pub via: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServicesView {
    /// False when systemd is not the device's running init: units come
    /// from disk and their active state is `unknown`.
    pub systemd_running: bool,
    pub units: Vec<ServiceUnitView>,
}

/// A systemd service, in systemctl's words.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceUnitView {
    pub name: String,
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    pub enabled_state: String,
}

/// The processes of one name on a device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProcessView {
    pub name: String,
    /// The largest process of that name.
    pub pid: u32,
    pub user: String,
    pub command_line: String,
    /// Resident memory of every process of that name together.
    pub memory_bytes: u64,
    /// How many processes have that name.
    pub count: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SystemView {
    pub hostname: String,
    pub os_name: String,
    pub os_version: String,
    pub kernel_version: String,
    pub architecture: String,
    /// Seconds since the Unix epoch.
    pub boot_time: u64,
    pub agent_version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CpuView {
    pub model: String,
    pub logical_cores: u32,
    pub physical_cores: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MemoryView {
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_free_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DiskView {
    pub name: String,
    pub mount_point: String,
    pub file_system: String,
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub removable: bool,
    /// Bytes in use as `df` counts them; null from agents that predate it.
    #[serde(default)]
    pub used_bytes: Option<u64>,
}

impl DiskView {
    /// `df`'s Use%: used / (used + available), rounded up; `None` without
    /// the agent's used figure or on an empty file system.
    pub fn use_percent(&self) -> Option<u64> {
        let used = u128::from(self.used_bytes?);
        let whole = used + u128::from(self.available_bytes);
        (whole > 0).then(|| u64::try_from((used * 100).div_ceil(whole)).unwrap_or(100))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NetworkInterfaceView {
    pub name: String,
    pub mac: String,
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoggedInUserView {
    pub name: String,
    pub terminal: String,
    pub host: String,
    /// Seconds since the Unix epoch.
    pub login_time: u64,
}

#[cfg(test)]
mod tests {
    use super::DiskView;

    fn check(used: Option<u64>, available: u64, expect: Option<u64>) {
        let disk = DiskView {
            name: String::new(),
            mount_point: "/".into(),
            file_system: "ext4".into(),
            total_bytes: 0,
            available_bytes: available,
            removable: false,
            used_bytes: used,
        };
        assert_eq!(disk.use_percent(), expect);
    }

    #[test]
    fn use_percent_is_dfs() {
        check(Some(17), 83, Some(17));
        check(Some(1), 999, Some(1)); // rounded up, like df
        check(Some(171), 829, Some(18));
        check(Some(0), 0, None);
        check(None, 10, None);
        check(Some(u64::MAX), u64::MAX, Some(50));
    }
}
