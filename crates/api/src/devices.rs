//! Devices (enrolled endpoints) and what their agents reported: inventory and
//! the trust statements they hold.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceView {
    pub id: String,
    pub tenant: String,
    pub hostname: String,
    /// SHA-256 of the device's public key (hex), as signed jobs name it.
    pub key_fingerprint: String,
    pub agent_version: String,
    pub online: bool,
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
