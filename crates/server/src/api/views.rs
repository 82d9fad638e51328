//! What the API returns: the server's own serialisable views of stored data
//! (the wire types in `bulwark-protocol` stay free of serde).

use bulwark_protocol::inventory as wire;
use bulwark_store::Device;
use serde::Serialize;
use sha2::Digest as _;
use utoipa::ToSchema;

use crate::rfc3339;

#[derive(Serialize, ToSchema)]
pub struct TenantView {
    pub id: String,
    pub name: String,
    pub device_count: i64,
    pub online_count: i64,
}

#[derive(Serialize, ToSchema)]
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
#[derive(Serialize, ToSchema)]
pub struct DeviceTrustView {
    pub root_version: u64,
    pub policy_version: u64,
    pub freeze_sequence: u64,
    pub frozen: bool,
    pub reported_at: String,
}

impl From<bulwark_store::DeviceTrust> for DeviceTrustView {
    fn from(t: bulwark_store::DeviceTrust) -> Self {
        Self {
            root_version: t.root_version,
            policy_version: t.policy_version,
            freeze_sequence: t.freeze_sequence,
            frozen: t.frozen,
            reported_at: rfc3339(t.updated_at),
        }
    }
}

impl DeviceView {
    pub fn new(device: &Device, online: bool, with_inventory: bool) -> Self {
        let os = device
            .inventory
            .as_ref()
            .and_then(|i| i.system.as_ref())
            .map(|s| format!("{} {}", s.os_name, s.os_version).trim().to_owned());
        Self {
            id: device.id.clone(),
            tenant: device.tenant_name.clone(),
            hostname: device.hostname.clone(),
            key_fingerprint: hex::encode(sha2::Sha256::digest(&device.public_key)),
            agent_version: device.agent_version.clone(),
            online,
            last_seen_at: device.last_seen_at.map(rfc3339),
            enrolled_at: rfc3339(device.enrolled_at),
            os,
            inventory: if with_inventory {
                device.inventory.as_ref().map(InventoryView::from)
            } else {
                None
            },
            trust: None,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct InventoryView {
    pub system: Option<SystemView>,
    pub cpu: Option<CpuView>,
    pub memory: Option<MemoryView>,
    pub disks: Option<Vec<DiskView>>,
    pub network: Option<Vec<NetworkInterfaceView>>,
    pub users: Option<Vec<LoggedInUserView>>,
}

#[derive(Serialize, ToSchema)]
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

#[derive(Serialize, ToSchema)]
pub struct CpuView {
    pub model: String,
    pub logical_cores: u32,
    pub physical_cores: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct MemoryView {
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_free_bytes: u64,
}

#[derive(Serialize, ToSchema)]
pub struct DiskView {
    pub name: String,
    pub mount_point: String,
    pub file_system: String,
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub removable: bool,
}

#[derive(Serialize, ToSchema)]
pub struct NetworkInterfaceView {
    pub name: String,
    pub mac: String,
    pub addresses: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LoggedInUserView {
    pub name: String,
    pub terminal: String,
    pub host: String,
    /// Seconds since the Unix epoch.
    pub login_time: u64,
}

impl From<&wire::Inventory> for InventoryView {
    fn from(i: &wire::Inventory) -> Self {
        Self {
            system: i.system.as_ref().map(|s| SystemView {
                hostname: s.hostname.clone(),
                os_name: s.os_name.clone(),
                os_version: s.os_version.clone(),
                kernel_version: s.kernel_version.clone(),
                architecture: s.architecture.clone(),
                boot_time: s.boot_time,
                agent_version: s.agent_version.clone(),
            }),
            cpu: i.cpu.as_ref().map(|c| CpuView {
                model: c.model.clone(),
                logical_cores: c.logical_cores,
                physical_cores: c.physical_cores,
            }),
            memory: i.memory.as_ref().map(|m| MemoryView {
                total_bytes: m.total_bytes,
                available_bytes: m.available_bytes,
                swap_total_bytes: m.swap_total_bytes,
                swap_free_bytes: m.swap_free_bytes,
            }),
            disks: i.disks.as_ref().map(|ds| {
                ds.iter()
                    .map(|d| DiskView {
                        name: d.name.clone(),
                        mount_point: d.mount_point.clone(),
                        file_system: d.file_system.clone(),
                        total_bytes: d.total_bytes,
                        available_bytes: d.available_bytes,
                        removable: d.removable,
                    })
                    .collect()
            }),
            network: i.network.as_ref().map(|ns| {
                ns.iter()
                    .map(|n| NetworkInterfaceView {
                        name: n.name.clone(),
                        mac: n.mac.clone(),
                        addresses: n.addresses.clone(),
                    })
                    .collect()
            }),
            users: i.users.as_ref().map(|us| {
                us.iter()
                    .map(|u| LoggedInUserView {
                        name: u.name.clone(),
                        terminal: u.terminal.clone(),
                        host: u.host.clone(),
                        login_time: u.login_time,
                    })
                    .collect()
            }),
        }
    }
}
