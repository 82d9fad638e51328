//! Inventory v1: what an agent reports about its device.
//!
//! An inventory is a set of optional sections. The agent sends every section
//! on connect (a full snapshot) and afterwards only the sections that changed;
//! [`Inventory::apply`] merges such a delta into the stored snapshot and
//! [`Inventory::changes_since`] computes one. Values that change on their own
//! (uptime) are sent as stable facts (boot time); free memory and disk space
//! do change, so an idle device still sends those two small sections.

use minicbor::{Decode, Encode};

use crate::ProtocolError;
use crate::limits::{Limits, Validate, check_len};

#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Inventory {
    #[n(0)]
    pub system: Option<SystemInfo>,
    #[n(1)]
    pub cpu: Option<CpuInfo>,
    #[n(2)]
    pub memory: Option<MemoryInfo>,
    #[n(3)]
    pub disks: Option<Vec<DiskInfo>>,
    #[n(4)]
    pub network: Option<Vec<NetworkInterface>>,
    #[n(5)]
    pub users: Option<Vec<LoggedInUser>>,
    /// Installed software, sorted by name and architecture; sent whole
    /// whenever it changed (the server replaces the device's set).
    #[n(6)]
    pub packages: Option<Vec<InstalledPackage>>,
    /// Sockets waiting for connections, sorted by protocol, port and address.
    #[n(7)]
    pub listening_ports: Option<Vec<ListeningPort>>,
    /// Accounts that can act as root, sorted by name.
    #[n(8)]
    pub local_admins: Option<Vec<LocalAdmin>>,
    #[n(9)]
    pub services: Option<Services>,
    /// A bounded snapshot of what runs (largest memory first), refreshed at
    /// a slow cadence by the agent: not a change stream.
    #[n(10)]
    pub processes: Option<Vec<ProcessInfo>>,
    /// What the package manager would upgrade now (a simulated upgrade),
    /// sorted by name and architecture; refreshed on the agent's schedule.
    #[n(11)]
    pub pending_updates: Option<Vec<PendingUpdate>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct SystemInfo {
    #[n(0)]
    pub hostname: String,
    /// Distribution or product name, e.g. "Debian GNU/Linux".
    #[n(1)]
    pub os_name: String,
    #[n(2)]
    pub os_version: String,
    #[n(3)]
    pub kernel_version: String,
    /// CPU architecture, e.g. "x86_64".
    #[n(4)]
    pub architecture: String,
    /// Boot time in seconds since the Unix epoch; uptime is derived from it.
    #[n(5)]
    pub boot_time: u64,
    #[n(6)]
    pub agent_version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct CpuInfo {
    #[n(0)]
    pub model: String,
    #[n(1)]
    pub logical_cores: u32,
    #[n(2)]
    pub physical_cores: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct MemoryInfo {
    #[n(0)]
    pub total_bytes: u64,
    #[n(1)]
    pub available_bytes: u64,
    #[n(2)]
    pub swap_total_bytes: u64,
    #[n(3)]
    pub swap_free_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct DiskInfo {
    /// Device name, e.g. "/dev/vda1".
    #[n(0)]
    pub name: String,
    #[n(1)]
    pub mount_point: String,
    #[n(2)]
    pub file_system: String,
    #[n(3)]
    pub total_bytes: u64,
    #[n(4)]
    pub available_bytes: u64,
    #[n(5)]
    pub removable: bool,
    /// Bytes in use as `df` counts them: (blocks - free blocks) x fragment
    /// size; absent from agents that predate it.
    #[n(6)]
    pub used_bytes: Option<u64>,
}

/// A package the system's package manager lists as installed.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Encode, Decode)]
#[cbor(map)]
pub struct InstalledPackage {
    #[n(0)]
    pub name: String,
    #[n(1)]
    pub version: String,
    #[n(2)]
    pub architecture: String,
    /// The source package it was built from (its own name when it names none).
    #[n(3)]
    pub source: String,
    #[n(4)]
    pub source_version: String,
}

/// A package version the package manager would install in an upgrade.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Encode, Decode)]
#[cbor(map)]
pub struct PendingUpdate {
    #[n(0)]
    pub name: String,
    #[n(1)]
    pub architecture: String,
    /// The installed version; empty when the upgrade installs it anew.
    #[n(2)]
    pub current_version: String,
    #[n(3)]
    pub new_version: String,
    /// Where the new version comes from, as apt names it
    /// ("Debian-Security:12/oldstable-security"; several joined by ", ").
    #[n(4)]
    pub origin: String,
    /// One of its sources is a security suite (`*-security`).
    #[n(5)]
    pub security: bool,
}

/// A TCP socket in LISTEN state or a bound, unconnected UDP socket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct ListeningPort {
    /// `tcp` or `udp`.
    #[n(0)]
    pub protocol: String,
    /// Local address, e.g. "0.0.0.0", "127.0.0.1", "::".
    #[n(1)]
    pub address: String,
    #[n(2)]
    pub port: u16,
    /// The owning process, when the agent could see it.
    #[n(3)]
    pub process: Option<String>,
    #[n(4)]
    pub pid: Option<u32>,
}

/// An account that can act as root, and every way it can.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct LocalAdmin {
    #[n(0)]
    pub name: String,
    /// Sorted; at least one.
    #[n(1)]
    pub grants: Vec<AdminGrant>,
}

/// One reason an account is an administrator.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Encode, Decode)]
#[cbor(map)]
pub struct AdminGrant {
    /// `group` (member of sudo, wheel or admin), `uid0`, `gid0` (primary
    /// group root) or `sudoers` (a rule granting ALL); a name a newer agent
    /// sends is kept as is.
    #[n(0)]
    pub kind: String,
    /// The group's name, or the sudoers file and line ("/etc/sudoers:27").
    #[n(1)]
    pub via: String,
}

/// The service manager's units.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Services {
    /// False when systemd is not the running init (a container, another
    /// init): units are then read from disk, with no active state.
    #[n(0)]
    pub systemd_running: bool,
    /// Sorted by name.
    #[n(1)]
    pub units: Vec<ServiceUnit>,
}

/// A systemd service unit, in systemctl's words.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct ServiceUnit {
    /// e.g. "ssh.service".
    #[n(0)]
    pub name: String,
    /// `loaded`, `masked` or `not-found`.
    #[n(1)]
    pub load_state: String,
    /// `active`, `inactive` or `unknown`.
    #[n(2)]
    pub active_state: String,
    /// `running`, `dead` or `unknown`.
    #[n(3)]
    pub sub_state: String,
    /// `enabled`, `disabled`, `static`, `masked`, `alias` or `indirect`.
    #[n(4)]
    pub enabled_state: String,
}

/// A process, or the processes of one name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct ProcessInfo {
    #[n(0)]
    pub name: String,
    /// The largest process of that name.
    #[n(1)]
    pub pid: u32,
    /// Its user name (or uid as text when the name is unknown).
    #[n(2)]
    pub user: String,
    /// Its command line, cut to the protocol's short text.
    #[n(3)]
    pub command_line: String,
    /// Resident memory of every process of that name together.
    #[n(4)]
    pub memory_bytes: u64,
    /// How many processes have that name.
    #[n(5)]
    pub count: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct NetworkInterface {
    #[n(0)]
    pub name: String,
    /// MAC address as text, empty when the interface has none.
    #[n(1)]
    pub mac: String,
    /// Addresses in CIDR notation, e.g. "192.0.2.7/24".
    #[n(2)]
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct LoggedInUser {
    #[n(0)]
    pub name: String,
    /// Terminal line, e.g. "pts/0" or "tty1".
    #[n(1)]
    pub terminal: String,
    /// Remote host for network logins, empty for local ones.
    #[n(2)]
    pub host: String,
    /// Login time in seconds since the Unix epoch.
    #[n(3)]
    pub login_time: u64,
}

impl Inventory {
    /// Replaces every section present in `delta`; absent sections stay as they are.
    pub fn apply(&mut self, delta: Inventory) {
        let Inventory {
            system,
            cpu,
            memory,
            disks,
            network,
            users,
            packages,
            listening_ports,
            local_admins,
            services,
            processes,
            pending_updates,
        } = delta;
        self.system = system.or(self.system.take());
        self.cpu = cpu.or(self.cpu.take());
        self.memory = memory.or(self.memory.take());
        self.disks = disks.or(self.disks.take());
        self.network = network.or(self.network.take());
        self.users = users.or(self.users.take());
        self.packages = packages.or(self.packages.take());
        self.listening_ports = listening_ports.or(self.listening_ports.take());
        self.local_admins = local_admins.or(self.local_admins.take());
        self.services = services.or(self.services.take());
        self.processes = processes.or(self.processes.take());
        self.pending_updates = pending_updates.or(self.pending_updates.take());
    }

    /// The sections of `self` that differ from `previous`: applying the result
    /// to `previous` gives `self` back (for sections present in `self`).
    pub fn changes_since(&self, previous: &Inventory) -> Inventory {
        fn changed<T: Clone + PartialEq>(now: &Option<T>, before: &Option<T>) -> Option<T> {
            if now != before { now.clone() } else { None }
        }
        Inventory {
            system: changed(&self.system, &previous.system),
            cpu: changed(&self.cpu, &previous.cpu),
            memory: changed(&self.memory, &previous.memory),
            disks: changed(&self.disks, &previous.disks),
            network: changed(&self.network, &previous.network),
            users: changed(&self.users, &previous.users),
            packages: changed(&self.packages, &previous.packages),
            listening_ports: changed(&self.listening_ports, &previous.listening_ports),
            local_admins: changed(&self.local_admins, &previous.local_admins),
            services: changed(&self.services, &previous.services),
            processes: changed(&self.processes, &previous.processes),
            pending_updates: changed(&self.pending_updates, &previous.pending_updates),
        }
    }

    /// True when no section is present (nothing to report).
    pub fn is_empty(&self) -> bool {
        *self == Inventory::default()
    }
}

impl Validate for Inventory {
    fn validate(&self, l: &Limits) -> Result<(), ProtocolError> {
        if let Some(s) = &self.system {
            l.text("system.hostname", &s.hostname)?;
            l.text("system.os_name", &s.os_name)?;
            l.text("system.os_version", &s.os_version)?;
            l.text("system.kernel_version", &s.kernel_version)?;
            l.text("system.architecture", &s.architecture)?;
            l.text("system.agent_version", &s.agent_version)?;
        }
        if let Some(c) = &self.cpu {
            l.text("cpu.model", &c.model)?;
        }
        if let Some(disks) = &self.disks {
            check_len("disks", disks.len(), l.max_disks)?;
            for d in disks {
                l.text("disks.name", &d.name)?;
                l.long_text("disks.mount_point", &d.mount_point)?;
                l.text("disks.file_system", &d.file_system)?;
            }
        }
        if let Some(network) = &self.network {
            check_len("network", network.len(), l.max_interfaces)?;
            for n in network {
                l.text("network.name", &n.name)?;
                l.text("network.mac", &n.mac)?;
                check_len("network.addresses", n.addresses.len(), l.max_addresses)?;
                for a in &n.addresses {
                    l.text("network.addresses", a)?;
                }
            }
        }
        if let Some(users) = &self.users {
            check_len("users", users.len(), l.max_users)?;
            for u in users {
                l.text("users.name", &u.name)?;
                l.text("users.terminal", &u.terminal)?;
                l.text("users.host", &u.host)?;
            }
        }
        if let Some(packages) = &self.packages {
            check_len("packages", packages.len(), l.max_packages)?;
            for p in packages {
                l.text("packages.name", &p.name)?;
                l.text("packages.version", &p.version)?;
                l.text("packages.architecture", &p.architecture)?;
                l.text("packages.source", &p.source)?;
                l.text("packages.source_version", &p.source_version)?;
            }
        }
        if let Some(ports) = &self.listening_ports {
            check_len("listening_ports", ports.len(), l.max_listening_ports)?;
            for p in ports {
                l.text("listening_ports.protocol", &p.protocol)?;
                l.text("listening_ports.address", &p.address)?;
                l.text(
                    "listening_ports.process",
                    p.process.as_deref().unwrap_or(""),
                )?;
            }
        }
        if let Some(admins) = &self.local_admins {
            check_len("local_admins", admins.len(), l.max_local_admins)?;
            for a in admins {
                l.text("local_admins.name", &a.name)?;
                check_len("local_admins.grants", a.grants.len(), l.max_admin_grants)?;
                for g in &a.grants {
                    l.text("local_admins.grants.kind", &g.kind)?;
                    l.text("local_admins.grants.via", &g.via)?;
                }
            }
        }
        if let Some(services) = &self.services {
            check_len("services.units", services.units.len(), l.max_services)?;
            for u in &services.units {
                for text in [
                    &u.name,
                    &u.load_state,
                    &u.active_state,
                    &u.sub_state,
                    &u.enabled_state,
                ] {
                    l.text("services.units", text)?;
                }
            }
        }
        if let Some(processes) = &self.processes {
            check_len("processes", processes.len(), l.max_processes)?;
            for p in processes {
                l.text("processes.name", &p.name)?;
                l.text("processes.user", &p.user)?;
                l.text("processes.command_line", &p.command_line)?;
            }
        }
        if let Some(updates) = &self.pending_updates {
            check_len("pending_updates", updates.len(), l.max_packages)?;
            for u in updates {
                for text in [&u.name, &u.architecture, &u.current_version, &u.new_version] {
                    l.text("pending_updates", text)?;
                }
                l.long_text("pending_updates.origin", &u.origin)?;
            }
        }
        Ok(())
    }
}
