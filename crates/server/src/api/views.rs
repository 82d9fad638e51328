//! Stored and server-side data as the API shows it: the conversions into
//! `bulwark-api`'s types (which know nothing of storage).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};
use bulwark_api::account::{ApiTokenView, SessionView};
use bulwark_api::devices::{
    AdminGrantView, CpuView, DeviceTrustView, DeviceView, DiskView, InventoryView,
    ListeningPortView, LocalAdminView, LoggedInUserView, MemoryView, NetworkInterfaceView,
    ProcessView, ServiceUnitView, ServicesView, SystemView,
};
use bulwark_api::log::CheckpointView;
use bulwark_api::operators::{GrantView, InvitationView};
use bulwark_api::passkeys::PasskeyView;
use bulwark_api::setup::{OperatorView, SetupResponse};
use bulwark_api::signing_keys::SigningKeyView;
use bulwark_protocol::inventory as wire;
use bulwark_store::{Device, LogCheckpoint};
use sha2::Digest as _;

use crate::rfc3339;

/// A device as the API lists it; `with_inventory` for `GET /api/v1/devices/{id}`.
/// `protocol_version` is its live connection's (`Presence::protocol_version`),
/// `None` while offline.
pub fn device(device: &Device, protocol_version: Option<u16>, with_inventory: bool) -> DeviceView {
    let os = device
        .inventory
        .as_ref()
        .and_then(|i| i.system.as_ref())
        .map(|s| format!("{} {}", s.os_name, s.os_version).trim().to_owned());
    DeviceView {
        id: device.id.clone(),
        tenant: device.tenant_name.clone(),
        hostname: device.hostname.clone(),
        key_fingerprint: hex::encode(sha2::Sha256::digest(&device.public_key)),
        agent_version: bulwark_api::devices::split_agent_version(&device.agent_version)
            .0
            .to_owned(),
        agent_sha256: bulwark_api::devices::split_agent_version(&device.agent_version)
            .1
            .map(str::to_owned),
        online: protocol_version.is_some(),
        protocol_version,
        last_seen_at: device.last_seen_at.map(rfc3339),
        enrolled_at: rfc3339(device.enrolled_at),
        os,
        inventory: if with_inventory {
            device.inventory.as_ref().map(inventory)
        } else {
            None
        },
        trust: None,
        package_count: None,
        tags: Vec::new(),
        group: None,
    }
}

pub fn package(p: wire::InstalledPackage) -> bulwark_api::devices::PackageView {
    bulwark_api::devices::PackageView {
        name: p.name,
        version: p.version,
        architecture: p.architecture,
        source: p.source,
        source_version: p.source_version,
    }
}

pub fn grant(g: bulwark_store::Grant) -> GrantView {
    GrantView {
        tenant: g.tenant_name,
        role: g.role,
    }
}

pub fn invitation(i: bulwark_store::Invitation) -> InvitationView {
    InvitationView {
        role: i
            .grants
            .first()
            .map_or_else(|| i.account_role.clone(), |g| g.role.clone()),
        id: i.id,
        username: i.username,
        grants: i.grants.into_iter().map(grant).collect(),
        created_at: crate::rfc3339(i.created_at),
        expires_at: crate::rfc3339(i.expires_at),
    }
}

pub fn session(s: crate::auth::account::SessionInfo) -> SessionView {
    SessionView {
        id: s.id,
        kind: s.kind.as_str().to_owned(),
        created_at: crate::rfc3339(s.created_at),
        last_seen_at: crate::rfc3339(s.last_seen_at),
        expires_at: crate::rfc3339(s.expires_at),
        ip: s.ip,
        user_agent: s.user_agent,
        current: s.current,
    }
}

pub fn api_token(t: bulwark_store::ApiToken) -> ApiTokenView {
    ApiTokenView {
        id: t.id,
        name: t.name,
        role: t.role,
        tenants: t.grants.into_iter().map(|g| g.tenant_name).collect(),
        created_at: crate::rfc3339(t.created_at),
        expires_at: crate::rfc3339(t.expires_at),
        last_used_at: t.last_used_at.map(crate::rfc3339),
    }
}

pub fn passkey(p: bulwark_store::Passkey) -> PasskeyView {
    PasskeyView {
        created_at: crate::rfc3339(p.created_at),
        last_used_at: p.last_used_at.map(crate::rfc3339),
        backup_eligible: p.backup_eligible,
        credential_id: URL_SAFE_NO_PAD.encode(&p.credential_id),
        id: p.id,
        name: p.name,
    }
}

pub fn signing_key(k: bulwark_store::SigningKey) -> SigningKeyView {
    SigningKeyView {
        key_id: k.key_id,
        name: k.name,
        kind: k.kind.to_string(),
        public_key: B64.encode(&k.public_key),
        created_at: rfc3339(k.created_at),
        revoked_at: k.revoked_at.map(rfc3339),
    }
}

pub fn checkpoint(c: LogCheckpoint) -> CheckpointView {
    CheckpointView {
        size: c.size,
        note: c.note,
        signed_at: c.at,
    }
}

pub fn device_trust(t: bulwark_store::DeviceTrust) -> DeviceTrustView {
    DeviceTrustView {
        root_version: t.root_version,
        policy_version: t.policy_version,
        freeze_sequence: t.freeze_sequence,
        frozen: t.frozen,
        reported_at: rfc3339(t.updated_at),
    }
}

pub fn inventory(i: &wire::Inventory) -> InventoryView {
    InventoryView {
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
                    used_bytes: d.used_bytes,
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
        listening_ports: i.listening_ports.as_ref().map(|ps| {
            ps.iter()
                .map(|p| ListeningPortView {
                    protocol: p.protocol.clone(),
                    address: p.address.clone(),
                    port: p.port,
                    process: p.process.clone(),
                    pid: p.pid,
                })
                .collect()
        }),
        local_admins: i.local_admins.as_ref().map(|admins| {
            admins
                .iter()
                .map(|a| LocalAdminView {
                    name: a.name.clone(),
                    grants: a
                        .grants
                        .iter()
                        .map(|g| AdminGrantView {
                            kind: g.kind.clone(),
                            via: g.via.clone(),
                        })
                        .collect(),
                })
                .collect()
        }),
        services: i.services.as_ref().map(|s| ServicesView {
            systemd_running: s.systemd_running,
            units: s
                .units
                .iter()
                .map(|u| ServiceUnitView {
                    name: u.name.clone(),
                    load_state: u.load_state.clone(),
                    active_state: u.active_state.clone(),
                    sub_state: u.sub_state.clone(),
                    enabled_state: u.enabled_state.clone(),
                })
                .collect(),
        }),
        processes: i.processes.as_ref().map(|ps| {
            ps.iter()
                .map(|p| ProcessView {
                    name: p.name.clone(),
                    pid: p.pid,
                    user: p.user.clone(),
                    command_line: p.command_line.clone(),
                    memory_bytes: p.memory_bytes,
                    count: p.count,
                })
                .collect()
        }),
        pending_updates: i.pending_updates.as_ref().map(|us| {
            let mut views: Vec<_> = us
                .iter()
                .map(|u| bulwark_api::devices::PendingUpdateView {
                    name: u.name.clone(),
                    architecture: u.architecture.clone(),
                    current_version: u.current_version.clone(),
                    new_version: u.new_version.clone(),
                    origin: u.origin.clone(),
                    security: u.security,
                })
                .collect();
            views.sort_by(|a, b| (!a.security, &a.name).cmp(&(!b.security, &b.name)));
            views
        }),
    }
}

/// What an install-patches job did on one device.
pub fn patch_report(
    r: &bulwark_protocol::message::PatchReport,
) -> bulwark_api::jobs::PatchReportView {
    use bulwark_api::jobs::{PatchFailureView, PatchReportView, PatchedPackageView};
    PatchReportView {
        installed: r
            .installed
            .iter()
            .map(|p| PatchedPackageView {
                name: p.name.clone(),
                old_version: p.old_version.clone(),
                new_version: p.new_version.clone(),
            })
            .collect(),
        failed: r
            .failed
            .iter()
            .map(|f| PatchFailureView {
                name: f.name.clone(),
                reason: f.reason.clone(),
            })
            .collect(),
        reboot_required: r.reboot_required,
    }
}

/// A TOTP enrolment begun (first owner, or an invited operator).
pub fn totp_enrolment(started: crate::auth::flows::SetupStarted) -> SetupResponse {
    SetupResponse {
        enrolment_id: started.enrolment_id,
        totp_secret: started.totp_secret,
        otpauth_url: started.otpauth_url,
        qr_svg: started.qr_svg,
    }
}

/// An operator just created, with its recovery codes (shown this once).
pub fn created_operator(
    operator: bulwark_store::Operator,
    recovery_codes: Vec<String>,
) -> OperatorView {
    OperatorView {
        id: operator.id,
        username: operator.username,
        role: operator.role,
        recovery_codes,
    }
}
