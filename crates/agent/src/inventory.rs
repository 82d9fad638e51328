//! Collects this device's inventory.
//!
//! A [`Collector`] lives as long as the agent and keeps sysinfo's tables, so
//! each refresh updates them in place instead of rebuilding them; the CPU
//! description, which does not change while the machine runs, is read once.
//!
//! Whatever the machine reports, the result fits the protocol: every string is
//! cut to its [`Limits`] size at a char boundary, every list to its cap, and
//! the whole inventory to what one frame can carry ([`fit_to_limits`]), so a
//! strange machine never produces a report the server refuses. Lists are
//! sorted, so an unchanged machine gives an identical inventory and sends no
//! delta.
//!
//! Disk space is counted the way `df` counts it ([`df_space`], from
//! `statvfs` of each kept mount point): "used" is what the file system holds,
//! not size minus what an unprivileged user may still write (which would
//! count the root-reserved blocks as used).
//!
//! Listening ports, local administrators and services are read every
//! time, by their modules' thin readers over pure parsers
//! ([`crate::ports`], [`crate::admins`], [`crate::services`]); the socket
//! owners only when the set of listening sockets changed. Processes are a
//! snapshot taken every [`PROCESS_EVERY`] ([`crate::processes`]): between
//! two, the section is unchanged and is not sent again.
//!
//! The sysinfo, statvfs and file reads are the only I/O here;
//! deciding what to keep ([`keep_disk`], [`select_disks`], [`fit_to_limits`],
//! [`df_space`], [`crate::packages::parse_dpkg_status`]) is pure and tested
//! without a machine.

use std::collections::HashMap;
use std::path::PathBuf;

use bulwark_protocol::Limits;
use bulwark_protocol::codec::to_canonical;
use bulwark_protocol::inventory::{
    CpuInfo, DiskInfo, InstalledPackage, Inventory, ListeningPort, LocalAdmin, MemoryInfo,
    NetworkInterface, ProcessInfo, SystemInfo,
};
use sysinfo::{CpuRefreshKind, DiskRefreshKind, Disks, MemoryRefreshKind, Networks, System};

use crate::admins::{AdminLimits, read_local_admins};
use crate::packages::{DPKG_STATUS, PackageLimits, read_installed};
use crate::ports::{PortLimits, read_listening_sockets, read_socket_owners};
use crate::processes::{MAX_PROCESSES, PROCESS_EVERY, RawProcess, snapshot, uid_names};
use crate::services::{ServiceLimits, read_services};
use crate::text::clip;
use crate::updates::Updates;
use crate::utmp;

/// Bytes of a frame not taken by the inventory itself: the frame map,
/// version, message variant and the report's `seq` and `full` fields take
/// under 32; the rest is margin.
const FRAME_OVERHEAD: usize = 256;

/// Collects the inventory once. An agent that reports repeatedly should keep
/// a [`Collector`] instead.
pub fn collect(agent_version: &str) -> Inventory {
    Collector::new(agent_version).collect()
}

/// A long-lived inventory collector.
pub struct Collector {
    agent_version: String,
    limits: Limits,
    sys: System,
    disks: Disks,
    networks: Networks,
    /// Read once: the CPU model and core counts do not change at run time.
    cpu: CpuInfo,
    packages: PackageCache,
    ports: PortCache,
    /// The process snapshot and when it was taken (see [`crate::processes`]).
    processes: Option<(std::time::Instant, Vec<ProcessInfo>)>,
    /// The last error of each section read every minute, logged only when it changes.
    errors: HashMap<&'static str, String>,
    host_sections: HostSections,
    /// Pending updates, read by their own task ([`crate::updates`]).
    updates: Option<Updates>,
}

/// Whether a collector reads installed packages, listening ports,
/// administrators, services and processes. A real agent does; the fleet
/// simulator's thousands of virtual devices in one process would each scan
/// the same `/proc` (its own file descriptors, one socket per device,
/// included), keep a process snapshot and a package list of their own
/// (about 500 KiB a device here), and send the server thousands of copies
/// of one package list at every connection, measuring the simulator and
/// package storage instead of what a connection costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostSections {
    #[default]
    Collect,
    Skip,
}

/// Socket owners as last found: scanning every process's descriptors is
/// done again only when the set of listening sockets changed.
#[derive(Default)]
struct PortCache {
    inodes: std::collections::HashSet<u64>,
    owners: HashMap<u64, crate::ports::Owner>,
}

/// The installed packages as last parsed, kept until the dpkg database is
/// replaced (dpkg writes it anew and renames it over the old one): parsing
/// megabytes every minute would cost more than the rest of the inventory.
struct PackageCache {
    path: PathBuf,
    /// Inode, size and modification time of the file last parsed.
    seen: Option<(u64, u64, Option<std::time::SystemTime>)>,
    packages: Option<Vec<InstalledPackage>>,
}

impl PackageCache {
    fn current(&mut self) -> Option<Vec<InstalledPackage>> {
        use std::os::unix::fs::MetadataExt as _;
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.ino(), m.len(), m.modified().ok()));
        if stamp.is_none() || stamp != self.seen {
            self.seen = stamp;
            self.packages = match read_installed(&self.path, &PackageLimits::default()) {
                Ok(packages) => packages,
                Err(error) => {
                    // Reported once per version of the file, not every minute.
                    tracing::warn!(%error, "Installed packages left out of the inventory.");
                    None
                }
            };
        }
        self.packages.clone()
    }
}

impl Collector {
    pub fn new(agent_version: &str) -> Self {
        Self::with_host_sections(agent_version, HostSections::Collect)
    }

    /// A collector that reads the host sections or not ([`HostSections`]).
    pub fn with_host_sections(agent_version: &str, host_sections: HostSections) -> Self {
        let mut sys = System::new();
        // Fills the CPU list with model names; usage is never asked for.
        sys.refresh_cpu_list(CpuRefreshKind::nothing());
        let cpu = cpu_info(&sys);
        Self {
            agent_version: agent_version.to_owned(),
            limits: Limits::default(),
            sys,
            disks: Disks::new(),
            networks: Networks::new(),
            cpu,
            packages: PackageCache {
                path: PathBuf::from(DPKG_STATUS),
                seen: None,
                packages: None,
            },
            ports: PortCache::default(),
            processes: None,
            errors: HashMap::new(),
            host_sections,
            updates: None,
        }
    }

    /// Reports the pending updates `updates` last read.
    pub fn with_updates(mut self, updates: Updates) -> Self {
        self.updates = Some(updates);
        self
    }

    /// A full snapshot of the device, within the protocol's limits.
    pub fn collect(&mut self) -> Inventory {
        let mut inventory = Inventory {
            system: Some(self.system_info()),
            cpu: Some(self.cpu.clone()),
            memory: Some(self.memory_info()),
            disks: Some(self.disk_info()),
            network: Some(self.network_info()),
            users: Some(utmp::read_logged_in_users()),
            packages: None,
            listening_ports: None,
            local_admins: None,
            services: None,
            processes: None,
            pending_updates: self.updates.as_ref().and_then(Updates::latest),
        };
        if self.host_sections == HostSections::Collect {
            inventory.packages = self.packages.current();
            inventory.listening_ports = self.listening_ports();
            inventory.local_admins = self.local_admins();
            inventory.services = Some(read_services(
                std::path::Path::new("/"),
                &ServiceLimits::default(),
            ));
            inventory.processes = Some(self.processes());
        }
        fit_to_limits(&mut inventory, &self.limits);
        inventory
    }

    /// Logs `error` for `section` unless it is the one logged last time, so
    /// a lasting problem is one line, not one a minute.
    fn left_out(&mut self, section: &'static str, error: Option<String>) {
        match error {
            Some(error) if self.errors.get(section) != Some(&error) => {
                tracing::warn!(section, %error, "Inventory section left out.");
                self.errors.insert(section, error);
            }
            Some(_) => {}
            None => {
                self.errors.remove(section);
            }
        }
    }

    fn listening_ports(&mut self) -> Option<Vec<ListeningPort>> {
        let limits = PortLimits::default();
        let sockets = match read_listening_sockets(&limits) {
            Ok(sockets) => sockets?,
            Err(error) => {
                self.left_out("listening_ports", Some(error.to_string()));
                return None;
            }
        };
        self.left_out("listening_ports", None);
        let inodes: std::collections::HashSet<u64> = sockets.iter().map(|s| s.inode).collect();
        if inodes != self.ports.inodes {
            self.ports.owners = read_socket_owners(&inodes, &limits);
            self.ports.inodes = inodes;
        }
        Some(crate::ports::assemble(&sockets, &self.ports.owners))
    }

    fn local_admins(&mut self) -> Option<Vec<LocalAdmin>> {
        match read_local_admins(std::path::Path::new("/"), &AdminLimits::default()) {
            Ok(admins) => {
                self.left_out("local_admins", None);
                Some(admins)
            }
            Err(error) => {
                self.left_out("local_admins", Some(error.to_string()));
                None
            }
        }
    }

    /// The snapshot of [`crate::processes`], taken again every [`PROCESS_EVERY`].
    fn processes(&mut self) -> Vec<ProcessInfo> {
        if let Some((taken, list)) = &self.processes
            && taken.elapsed() < PROCESS_EVERY
        {
            return list.clone();
        }
        use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, UpdateKind};
        // A table of its own, dropped after: the agent does not keep every
        // process's command line in memory between snapshots.
        let mut sys = System::new();
        sys.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing()
                .with_memory()
                .with_cmd(UpdateKind::Always)
                .with_user(UpdateKind::Always),
        );
        let passwd = crate::ports::read_bounded(
            std::path::Path::new("/etc/passwd"),
            AdminLimits::default().max_input_bytes,
        )
        .ok()
        .flatten()
        .unwrap_or_default();
        let raw = sys
            .processes()
            .values()
            .filter(|p| p.thread_kind().is_none())
            .map(|p| RawProcess {
                pid: p.pid().as_u32(),
                name: p.name().to_string_lossy().into_owned(),
                uid: p.user_id().map(|uid| **uid),
                command_line: p
                    .cmd()
                    .iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" "),
                memory_bytes: p.memory(),
            });
        let list = snapshot(raw, &uid_names(&passwd), MAX_PROCESSES);
        self.processes = Some((std::time::Instant::now(), list.clone()));
        list
    }

    fn system_info(&self) -> SystemInfo {
        SystemInfo {
            hostname: System::host_name().unwrap_or_default(),
            os_name: System::name().unwrap_or_else(|| std::env::consts::OS.to_owned()),
            os_version: System::os_version().unwrap_or_default(),
            kernel_version: System::kernel_version().unwrap_or_default(),
            architecture: System::cpu_arch(),
            boot_time: System::boot_time(),
            agent_version: self.agent_version.clone(),
        }
    }

    fn memory_info(&mut self) -> MemoryInfo {
        self.sys
            .refresh_memory_specifics(MemoryRefreshKind::everything());
        MemoryInfo {
            total_bytes: self.sys.total_memory(),
            available_bytes: self.sys.available_memory(),
            swap_total_bytes: self.sys.total_swap(),
            swap_free_bytes: self.sys.free_swap(),
        }
    }

    fn disk_info(&mut self) -> Vec<DiskInfo> {
        // Re-reads the mount table (new mounts appear, gone ones are dropped)
        // and each disk's space; neither the disk kind nor I/O counters are needed.
        self.disks
            .refresh_specifics(true, DiskRefreshKind::nothing().with_storage());
        let raw = self.disks.list().iter().map(|d| DiskInfo {
            name: d.name().to_string_lossy().into_owned(),
            mount_point: d.mount_point().to_string_lossy().into_owned(),
            file_system: d.file_system().to_string_lossy().into_owned(),
            total_bytes: d.total_space(),
            available_bytes: d.available_space(),
            removable: d.is_removable(),
            used_bytes: None,
        });
        let mut disks = select_disks(raw);
        for disk in &mut disks {
            if let Ok(fs) = rustix::fs::statvfs(disk.mount_point.as_str()) {
                let (total, used, available) =
                    df_space(fs.f_frsize, fs.f_blocks, fs.f_bfree, fs.f_bavail);
                disk.total_bytes = total;
                disk.used_bytes = Some(used);
                disk.available_bytes = available;
            }
        }
        disks
    }

    fn network_info(&mut self) -> Vec<NetworkInterface> {
        self.networks.refresh(true);
        let mut interfaces: Vec<NetworkInterface> = self
            .networks
            .list()
            .iter()
            .map(|(name, data)| {
                let mac = data.mac_address();
                let mut addresses: Vec<String> =
                    data.ip_networks().iter().map(ToString::to_string).collect();
                addresses.sort();
                addresses.dedup();
                NetworkInterface {
                    name: name.clone(),
                    mac: if mac.is_unspecified() {
                        String::new()
                    } else {
                        mac.to_string()
                    },
                    addresses,
                }
            })
            .collect();
        // sysinfo keeps interfaces in a hash map: sort for a stable report.
        interfaces.sort_by(|a, b| a.name.cmp(&b.name));
        interfaces
    }
}

fn cpu_info(sys: &System) -> CpuInfo {
    let cpus = sys.cpus();
    let model = cpus
        .iter()
        .map(|c| c.brand().trim())
        .find(|b| !b.is_empty())
        .or_else(|| {
            cpus.iter()
                .map(|c| c.vendor_id().trim())
                .find(|v| !v.is_empty())
        })
        .unwrap_or_default()
        .to_owned();
    let logical = if cpus.is_empty() {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    } else {
        cpus.len()
    };
    CpuInfo {
        model,
        logical_cores: u32::try_from(logical).unwrap_or(u32::MAX),
        physical_cores: System::physical_core_count().map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
    }
}

/// File systems that hold no data of their own (memory, kernel interfaces,
/// container layers, packaged images) and are left out of the inventory.
/// sysinfo already drops most kernel ones; this list also covers what it keeps.
const PSEUDO_FILE_SYSTEMS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "proc",
    "pstore",
    "ramfs",
    "rootfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
];

/// FUSE file systems that only mirror or fake other data.
const PSEUDO_FUSE: &[&str] = &[
    "fuse.lxcfs",
    "fuse.gvfsd-fuse",
    "fuse.portal",
    "fuse.snapfuse",
    "fuse.squashfuse",
];

/// Whether a mounted file system belongs in the inventory.
///
/// An `overlay` is kept only as the root of a container, where it is the
/// only view of the disk; anywhere else it is a container's layer on a disk
/// that is reported by its own mount.
pub fn keep_disk(disk: &DiskInfo) -> bool {
    let fs = disk.file_system.as_str();
    if PSEUDO_FILE_SYSTEMS.contains(&fs) || PSEUDO_FUSE.contains(&fs) {
        return false;
    }
    if fs == "overlay" && disk.mount_point != "/" {
        return false;
    }
    disk.total_bytes > 0
}

/// The disks worth reporting, once each, sorted by mount point.
///
/// One device with one file system mounted several times (bind mounts, the
/// `/etc/hosts` of a container, btrfs subvolumes of one pool) shares its
/// space between the mounts; it is reported once, at its shortest mount point.
pub fn select_disks(raw: impl IntoIterator<Item = DiskInfo>) -> Vec<DiskInfo> {
    let mut by_device: HashMap<(String, String), DiskInfo> = HashMap::new();
    for disk in raw.into_iter().filter(keep_disk) {
        let key = (disk.name.clone(), disk.file_system.clone());
        match by_device.get(&key) {
            Some(kept) if !shorter_mount_point(&disk, kept) => {}
            _ => {
                by_device.insert(key, disk);
            }
        }
    }
    let mut disks: Vec<DiskInfo> = by_device.into_values().collect();
    disks.sort_by(|a, b| {
        a.mount_point
            .cmp(&b.mount_point)
            .then_with(|| a.name.cmp(&b.name))
    });
    disks
}

/// Total, used and available bytes as `df` computes them from `statvfs`:
/// used = (blocks - free) x fragment size, available = blocks available to
/// unprivileged users x fragment size (so used + available < total when the
/// file system reserves blocks for root). Saturating: a lying kernel
/// module cannot make it overflow.
pub fn df_space(frsize: u64, blocks: u64, free: u64, available: u64) -> (u64, u64, u64) {
    (
        blocks.saturating_mul(frsize),
        blocks.saturating_sub(free).saturating_mul(frsize),
        available.saturating_mul(frsize),
    )
}

/// Whether `a` is mounted closer to the root than `b` (ties: alphabetical).
fn shorter_mount_point(a: &DiskInfo, b: &DiskInfo) -> bool {
    (a.mount_point.len(), &a.mount_point) < (b.mount_point.len(), &b.mount_point)
}

/// Cuts `inventory` to what the server accepts under `limits`: every string to
/// its size, every list to its cap, and the whole to what fits in one frame.
///
/// The caps on single fields allow more than one frame can carry (1024 users
/// of 768 bytes each alone are 786 KiB), so after cutting fields, while the
/// encoding is still too large, the longest list is halved: users first, then
/// interface addresses, interfaces, disks and packages (a package list
/// that alone outgrows a frame is cut, sorted by name, rather than dropped).
pub fn fit_to_limits(inventory: &mut Inventory, limits: &Limits) {
    let text = |s: &mut String| clip(s, limits.max_text);
    if let Some(s) = &mut inventory.system {
        for field in [
            &mut s.hostname,
            &mut s.os_name,
            &mut s.os_version,
            &mut s.kernel_version,
            &mut s.architecture,
            &mut s.agent_version,
        ] {
            text(field);
        }
    }
    if let Some(c) = &mut inventory.cpu {
        text(&mut c.model);
    }
    if let Some(disks) = &mut inventory.disks {
        disks.truncate(limits.max_disks);
        for d in disks {
            text(&mut d.name);
            clip(&mut d.mount_point, limits.max_long_text);
            text(&mut d.file_system);
        }
    }
    if let Some(network) = &mut inventory.network {
        network.truncate(limits.max_interfaces);
        for n in network {
            text(&mut n.name);
            text(&mut n.mac);
            n.addresses.truncate(limits.max_addresses);
            n.addresses.iter_mut().for_each(text);
        }
    }
    if let Some(users) = &mut inventory.users {
        users.truncate(limits.max_users);
        for u in users {
            text(&mut u.name);
            text(&mut u.terminal);
            text(&mut u.host);
        }
    }
    if let Some(packages) = &mut inventory.packages {
        packages.truncate(limits.max_packages);
        for p in packages {
            for field in [
                &mut p.name,
                &mut p.version,
                &mut p.architecture,
                &mut p.source,
                &mut p.source_version,
            ] {
                text(field);
            }
        }
    }

    if let Some(ports) = &mut inventory.listening_ports {
        ports.truncate(limits.max_listening_ports);
        for p in ports {
            text(&mut p.protocol);
            text(&mut p.address);
            p.process.iter_mut().for_each(text);
        }
    }
    if let Some(admins) = &mut inventory.local_admins {
        admins.truncate(limits.max_local_admins);
        for a in admins {
            text(&mut a.name);
            a.grants.truncate(limits.max_admin_grants);
            for g in &mut a.grants {
                text(&mut g.kind);
                text(&mut g.via);
            }
        }
    }
    if let Some(services) = &mut inventory.services {
        services.units.truncate(limits.max_services);
        for u in &mut services.units {
            for field in [
                &mut u.name,
                &mut u.load_state,
                &mut u.active_state,
                &mut u.sub_state,
                &mut u.enabled_state,
            ] {
                text(field);
            }
        }
    }
    if let Some(processes) = &mut inventory.processes {
        processes.truncate(limits.max_processes);
        for p in processes {
            text(&mut p.name);
            text(&mut p.user);
            text(&mut p.command_line);
        }
    }

    if let Some(updates) = &mut inventory.pending_updates {
        updates.truncate(limits.max_packages);
        for u in updates {
            for field in [
                &mut u.name,
                &mut u.architecture,
                &mut u.current_version,
                &mut u.new_version,
            ] {
                text(field);
            }
            clip(&mut u.origin, limits.max_long_text);
        }
    }

    let budget = limits.max_frame_bytes.saturating_sub(FRAME_OVERHEAD);
    while to_canonical(inventory).len() > budget {
        if !halve_largest_list(inventory) {
            // Nothing left to cut: only fixed-size sections remain, which are
            // far below any sensible frame limit.
            break;
        }
    }
}

/// Halves the list that takes the most bytes; false when every list is empty.
/// Each call at least halves one list, so a few dozen calls empty them all.
fn halve_largest_list(inventory: &mut Inventory) -> bool {
    fn halve<T>(list: &mut Vec<T>) {
        list.truncate(list.len() / 2);
    }
    macro_rules! size {
        ($list:expr) => {
            match &$list {
                Some(l) if !l.is_empty() => to_canonical(l).len(),
                _ => 0,
            }
        };
    }
    let services = match &inventory.services {
        Some(s) if !s.units.is_empty() => to_canonical(&s.units).len(),
        _ => 0,
    };
    // In the order lists are cut on a tie: users first, packages last.
    let sizes = [
        size!(inventory.users),
        size!(inventory.network),
        size!(inventory.disks),
        size!(inventory.processes),
        services,
        size!(inventory.listening_ports),
        size!(inventory.local_admins),
        size!(inventory.pending_updates),
        size!(inventory.packages),
    ];
    let Some((largest, _)) = sizes
        .iter()
        .enumerate()
        .filter(|(_, size)| **size > 0)
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
    else {
        return false;
    };
    match largest {
        0 => inventory.users.as_mut().map(halve),
        1 => inventory.network.as_mut().map(|network| {
            // Many addresses per interface: halve the addresses of every
            // interface before dropping interfaces.
            let most = network.iter().map(|n| n.addresses.len()).max().unwrap_or(0);
            if most > 1 {
                network
                    .iter_mut()
                    .for_each(|n| n.addresses.truncate(most / 2));
            } else {
                halve(network);
            }
        }),
        2 => inventory.disks.as_mut().map(halve),
        3 => inventory.processes.as_mut().map(halve),
        4 => inventory.services.as_mut().map(|s| halve(&mut s.units)),
        5 => inventory.listening_ports.as_mut().map(halve),
        6 => inventory.local_admins.as_mut().map(halve),
        7 => inventory.pending_updates.as_mut().map(halve),
        _ => inventory.packages.as_mut().map(halve),
    };
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_protocol::inventory::{
        AdminGrant, ListeningPort, LocalAdmin, LoggedInUser, PendingUpdate, ProcessInfo,
        ServiceUnit, Services,
    };
    use bulwark_protocol::message::{AgentMessage, InventoryReport};
    use bulwark_protocol::{PROTOCOL_VERSION, decode_agent_frame};
    use proptest::prelude::*;

    fn encode_agent_frame(m: &AgentMessage) -> Vec<u8> {
        bulwark_protocol::encode_agent_frame(PROTOCOL_VERSION, m).expect("encodes")
    }

    fn disk(name: &str, mount_point: &str, file_system: &str, total_bytes: u64) -> DiskInfo {
        DiskInfo {
            name: name.into(),
            mount_point: mount_point.into(),
            file_system: file_system.into(),
            total_bytes,
            available_bytes: total_bytes / 2,
            removable: false,
            used_bytes: None,
        }
    }

    fn check_disks(raw: Vec<DiskInfo>, expect: &[(&str, &str)]) {
        let got: Vec<(String, String)> = select_disks(raw)
            .into_iter()
            .map(|d| (d.name, d.mount_point))
            .collect();
        let expect: Vec<(String, String)> = expect
            .iter()
            .map(|(n, m)| (n.to_string(), m.to_string()))
            .collect();
        assert_eq!(got, expect);
    }

    /// The agent's frame decoder on the server side must accept what we send.
    fn assert_server_accepts(inventory: &Inventory) {
        let m = AgentMessage::Inventory(InventoryReport {
            seq: u64::MAX,
            full: true,
            inventory: inventory.clone(),
        });
        let frame = encode_agent_frame(&m);
        assert_eq!(
            decode_agent_frame(&frame, &Limits::default()).map(|f| f.message),
            Ok(m),
            "frame of {} bytes",
            frame.len()
        );
    }

    #[test]
    fn pseudo_file_systems_and_empty_disks_are_left_out() {
        check_disks(
            vec![
                disk("/dev/vda1", "/", "ext4", 100),
                disk("tmpfs", "/dev/shm", "tmpfs", 100),
                disk("lxcfs", "/proc/cpuinfo", "fuse.lxcfs", 100),
                disk("/dev/loop3", "/snap/core/1", "squashfs", 100),
                disk(
                    "overlay",
                    "/var/lib/docker/overlay2/abc/merged",
                    "overlay",
                    100,
                ),
                disk("/dev/vdb", "/data", "xfs", 100),
                disk("/dev/sr0", "/media/cdrom", "udf", 0),
                disk("nas:/export", "/mnt/nas", "nfs4", 100),
            ],
            &[
                ("/dev/vda1", "/"),
                ("/dev/vdb", "/data"),
                ("nas:/export", "/mnt/nas"),
            ],
        );
    }

    #[test]
    fn a_container_root_overlay_is_kept() {
        check_disks(
            vec![
                disk("overlay", "/", "overlay", 100),
                // Docker bind-mounts these from the host's disk.
                disk("/dev/vda1", "/etc/resolv.conf", "ext4", 100),
                disk("/dev/vda1", "/etc/hostname", "ext4", 100),
                disk("/dev/vda1", "/etc/hosts", "ext4", 100),
            ],
            &[("overlay", "/"), ("/dev/vda1", "/etc/hosts")],
        );
    }

    #[test]
    fn a_device_mounted_twice_is_reported_once_at_its_shortest_mount_point() {
        check_disks(
            vec![
                disk("/dev/nvme0n1p2", "/home", "btrfs", 100),
                disk("/dev/nvme0n1p2", "/", "btrfs", 100),
                disk("/dev/nvme0n1p2", "/var/log", "btrfs", 100),
                disk("/dev/nvme0n1p1", "/boot/efi", "vfat", 100),
            ],
            &[("/dev/nvme0n1p2", "/"), ("/dev/nvme0n1p1", "/boot/efi")],
        );
        // Same device, other file system (unusual, but then they are two).
        check_disks(
            vec![
                disk("/dev/x", "/a", "ext4", 1),
                disk("/dev/x", "/b", "xfs", 1),
            ],
            &[("/dev/x", "/a"), ("/dev/x", "/b")],
        );
    }

    #[test]
    fn selection_does_not_depend_on_input_order() {
        let raw = vec![
            disk("/dev/a", "/x/y", "ext4", 1),
            disk("/dev/a", "/x/z", "ext4", 1),
            disk("/dev/b", "/b", "ext4", 1),
            disk("/dev/c", "/a", "ext4", 1),
        ];
        let mut reversed = raw.clone();
        reversed.reverse();
        assert_eq!(select_disks(raw), select_disks(reversed));
    }

    fn huge_inventory() -> Inventory {
        let long = "é".repeat(200); // 400 bytes, over max_text
        let longer = "é".repeat(2100); // 4200 bytes, over max_long_text
        Inventory {
            system: Some(SystemInfo {
                hostname: long.clone(),
                os_name: long.clone(),
                os_version: long.clone(),
                kernel_version: long.clone(),
                architecture: long.clone(),
                boot_time: 1,
                agent_version: long.clone(),
            }),
            cpu: Some(CpuInfo {
                model: long.clone(),
                logical_cores: 1,
                physical_cores: None,
            }),
            memory: Some(MemoryInfo::default()),
            disks: Some(vec![disk(&long, &longer, &long, 1); 300]),
            network: Some(vec![
                NetworkInterface {
                    name: long.clone(),
                    mac: long.clone(),
                    addresses: vec![long.clone(); 100]
                };
                300
            ]),
            users: Some(vec![
                LoggedInUser {
                    name: long.clone(),
                    terminal: long.clone(),
                    host: long.clone(),
                    login_time: 1
                };
                2000
            ]),
            packages: Some(vec![
                InstalledPackage {
                    name: long.clone(),
                    version: long.clone(),
                    architecture: long.clone(),
                    source: long.clone(),
                    source_version: long.clone(),
                };
                12_000
            ]),
            listening_ports: Some(vec![
                ListeningPort {
                    protocol: long.clone(),
                    address: long.clone(),
                    port: 1,
                    process: Some(long.clone()),
                    pid: Some(1),
                };
                5_000
            ]),
            local_admins: Some(vec![
                LocalAdmin {
                    name: long.clone(),
                    grants: vec![
                        AdminGrant {
                            kind: long.clone(),
                            via: long.clone()
                        };
                        40
                    ],
                };
                2_000
            ]),
            services: Some(Services {
                systemd_running: true,
                units: vec![
                    ServiceUnit {
                        name: long.clone(),
                        load_state: long.clone(),
                        active_state: long.clone(),
                        sub_state: long.clone(),
                        enabled_state: long.clone(),
                    };
                    5_000
                ],
            }),
            processes: Some(vec![
                ProcessInfo {
                    name: long.clone(),
                    pid: 1,
                    user: long.clone(),
                    command_line: long.clone(),
                    memory_bytes: 1,
                    count: 1,
                };
                300
            ]),
            pending_updates: Some(vec![
                PendingUpdate {
                    name: long.clone(),
                    architecture: long.clone(),
                    current_version: long.clone(),
                    new_version: long.clone(),
                    origin: long.repeat(20),
                    security: true,
                };
                12_000
            ]),
        }
    }

    #[test]
    fn a_huge_machine_still_produces_an_accepted_frame() {
        let mut inventory = huge_inventory();
        fit_to_limits(&mut inventory, &Limits::default());
        assert_server_accepts(&inventory);
        let l = Limits::default();
        let system = inventory.system.as_ref().expect("system kept");
        // Cut at a char boundary: 256 is even, so 128 whole 'é'.
        assert_eq!(system.hostname, "é".repeat(128));
        assert_eq!(
            inventory.disks.as_ref().expect("disks kept")[0].mount_point,
            "é".repeat(l.max_long_text / 2)
        );
        // Every section is still there, with as much as fits.
        assert!(!inventory.users.as_ref().expect("users kept").is_empty());
        assert!(!inventory.disks.as_ref().expect("disks kept").is_empty());
        assert!(!inventory.network.as_ref().expect("network kept").is_empty());
        assert!(
            !inventory
                .packages
                .as_ref()
                .expect("packages kept")
                .is_empty()
        );
        assert!(
            to_canonical(&inventory).len() > l.max_frame_bytes / 4,
            "not cut more than needed"
        );
    }

    #[test]
    fn disk_space_is_counted_like_df() {
        // ext4 with 5% reserved: 1000 blocks, 700 free, 650 available.
        assert_eq!(
            df_space(4096, 1000, 700, 650),
            (4_096_000, 1_228_800, 2_662_400)
        );
        assert_eq!(df_space(u64::MAX, 3, 5, 2), (u64::MAX, 0, u64::MAX));
    }

    /// `df -B1 --output=target,used,avail` on this machine gives the same
    /// figures for every mount point the agent reports (within what was
    /// written between the two reads).
    #[test]
    fn disk_figures_agree_with_df_on_this_machine() {
        let disks = Collector::new("0.1.0-test").disk_info();
        let output = std::process::Command::new("df")
            .args(["-B1", "--output=target,used,avail"])
            .output()
            .expect("df runs");
        let df = String::from_utf8_lossy(&output.stdout);
        let mut compared = 0;
        for disk in &disks {
            let Some(row) = df.lines().skip(1).find_map(|line| {
                let mut words = line.split_whitespace().rev();
                let avail: u64 = words.next()?.parse().ok()?;
                let used: u64 = words.next()?.parse().ok()?;
                let target: Vec<&str> = words.rev().collect();
                (target.join(" ") == disk.mount_point).then_some((used, avail))
            }) else {
                continue;
            };
            let used = disk.used_bytes.expect("statvfs read");
            let slack = 64 * 1024 * 1024;
            assert!(
                used.abs_diff(row.0) < slack,
                "{}: used {used} vs df {}",
                disk.mount_point,
                row.0
            );
            assert!(
                disk.available_bytes.abs_diff(row.1) < slack,
                "{}: available",
                disk.mount_point
            );
            compared += 1;
        }
        assert!(
            compared > 0,
            "no mount point in common with df: {disks:?}\n{df}"
        );
    }

    #[test]
    fn a_small_inventory_is_left_alone() {
        let mut inventory = Inventory {
            disks: Some(vec![disk("/dev/vda1", "/", "ext4", 100)]),
            users: Some(vec![]),
            ..Inventory::default()
        };
        let before = inventory.clone();
        fit_to_limits(&mut inventory, &Limits::default());
        assert_eq!(inventory, before);
    }

    #[test]
    fn this_machine_gives_an_accepted_and_stable_inventory() {
        let mut collector = Collector::new("0.1.0-test");
        let first = collector.collect();
        assert_server_accepts(&first);
        let system = first.system.as_ref().expect("system section");
        assert_eq!(system.agent_version, "0.1.0-test");
        assert!(!system.architecture.is_empty());
        assert!(system.boot_time > 0);
        let cpu = first.cpu.as_ref().expect("cpu section");
        assert!(cpu.logical_cores > 0);
        assert!(first.memory.as_ref().expect("memory section").total_bytes > 0);
        for n in first.network.as_ref().expect("network section") {
            for a in &n.addresses {
                assert!(a.contains('/'), "{a} is in CIDR form");
            }
        }
        // Facts that do not move on their own are equal from one run to the next.
        let second = collector.collect();
        assert_eq!(first.system, second.system);
        assert_eq!(first.cpu, second.cpu);
        let names = |i: &Inventory| -> Vec<String> {
            i.network
                .as_ref()
                .map(|n| n.iter().map(|x| x.name.clone()).collect())
                .unwrap_or_default()
        };
        assert_eq!(names(&first), names(&second));
        // The process snapshot is not retaken within its cadence.
        assert!(!first.processes.as_ref().expect("processes").is_empty());
        assert_eq!(first.processes, second.processes);
        let admins = first.local_admins.as_ref().expect("local admins");
        assert!(admins.iter().any(|a| a.name == "root"));
        assert!(first.listening_ports.is_some());
        assert!(first.services.is_some());
        assert_eq!(collect("0.1.0-test").cpu, first.cpu);
    }

    fn any_text(max_chars: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<char>(), 0..=max_chars).prop_map(String::from_iter)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever sysinfo reports, the server accepts the report.
        #[test]
        fn any_inventory_fits_after_fitting(
            strings in proptest::collection::vec(any_text(100), 1..8),
            disks in 0..400usize,
            interfaces in 0..300usize,
            addresses in 0..100usize,
            users in 0..1500usize,
            packages in 0..12000usize,
            ports in 0..5000usize,
            admins in 0..1100usize,
            services in 0..5000usize,
            processes in 0..300usize,
            updates in 0..12000usize,
        ) {
            let s = |i: usize| strings[i % strings.len()].clone();
            let mut inventory = Inventory {
                system: Some(SystemInfo { hostname: s(0), os_name: s(1), os_version: s(2), kernel_version: s(3), architecture: s(4), boot_time: 0, agent_version: s(5) }),
                cpu: Some(CpuInfo { model: s(6), logical_cores: 0, physical_cores: Some(0) }),
                memory: None,
                disks: Some(vec![disk(&s(0), &s(1).repeat(20), &s(2), 0); disks]),
                network: Some(vec![NetworkInterface { name: s(3), mac: s(4), addresses: vec![s(5); addresses] }; interfaces]),
                users: Some(vec![LoggedInUser { name: s(6), terminal: s(7), host: s(0), login_time: 0 }; users]),
                packages: Some(vec![InstalledPackage { name: s(1), version: s(2), architecture: s(3), source: s(4), source_version: s(5) }; packages]),
                listening_ports: Some(vec![ListeningPort { protocol: s(2), address: s(3), port: 1, process: Some(s(4)), pid: None }; ports]),
                local_admins: Some(vec![LocalAdmin { name: s(5), grants: vec![AdminGrant { kind: s(6), via: s(7) }; 40] }; admins]),
                services: Some(Services { systemd_running: false, units: vec![ServiceUnit { name: s(0), load_state: s(1), active_state: s(2), sub_state: s(3), enabled_state: s(4) }; services] }),
                processes: Some(vec![ProcessInfo { name: s(5), pid: 0, user: s(6), command_line: s(7), memory_bytes: 0, count: 0 }; processes]),
                pending_updates: Some(vec![PendingUpdate { name: s(0), architecture: s(1), current_version: s(2), new_version: s(3), origin: s(4).repeat(50), security: false }; updates]),
            };
            fit_to_limits(&mut inventory, &Limits::default());
            let m = AgentMessage::Inventory(InventoryReport { seq: u64::MAX, full: true, inventory });
            prop_assert!(decode_agent_frame(&encode_agent_frame(&m), &Limits::default()).is_ok());
        }
    }
}
