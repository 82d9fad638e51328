//! systemd services from the files systemd itself reads, without systemctl
//! or D-Bus.
//!
//! What each state comes from, and why:
//! - the units: `*.service` files and symlinks in the unit directories
//!   ([`UNIT_DIRS`], the first directory holding a name wins, as in
//!   systemd), plus the instances the `.wants`/`.requires` links enable
//!   (`getty@tty1.service` of the template `getty@.service`) and the units
//!   running now. Bare templates and aliases (a link to another unit's
//!   name, such as `redis.service`) are not units of their own and are not
//!   listed;
//! - load state: `loaded` (a file), `masked` (a link to `/dev/null`),
//!   `not-found` (enabled or running, but no file);
//! - enabled state: `masked`; `enabled` when a `*.wants` or `*.requires`
//!   directory of `/etc/systemd/system` links it; otherwise from its
//!   `[Install]` section ([`install_section`]): `disabled` when it has
//!   `WantedBy=`, `RequiredBy=`, `UpheldBy=` or `Alias=`, `indirect` with
//!   `Also=` only, `static` without;
//! - active state: systemd puts each running service's processes in a
//!   control group of its name (`/sys/fs/cgroup/system.slice/NAME`, v2, or
//!   `/sys/fs/cgroup/systemd/system.slice/NAME`, v1); a populated group is
//!   `active`/`running`, any other unit `inactive`/`dead`. The one
//!   difference from systemctl: a oneshot service that exited and stays
//!   active (`RemainAfterExit=yes`, systemctl's `active (exited)`) has no
//!   processes and shows as `inactive`/`dead`.
//!
//! systemctl gives the exact active state, but it is a process run every
//! minute whose output would be untrusted input all the same, and D-Bus
//! would add a client library to every endpoint; the files give every
//! state but one corner of one. Where systemd is not the running init
//! (`/run/systemd/system` absent, as `sd_booted` checks: containers, other
//! inits) the section says so, and the active and sub states are `unknown`.
//!
//! [`install_section`], [`populated`] and [`assemble`] are pure;
//! `fuzz/fuzz_targets/systemd_unit.rs` fuzzes the unit file parser.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use bulwark_protocol::Limits;
use bulwark_protocol::inventory::{ServiceUnit, Services};

/// Where unit files live, in systemd's order of precedence.
pub const UNIT_DIRS: [&str; 5] = [
    "etc/systemd/system",
    "run/systemd/system",
    "usr/local/lib/systemd/system",
    "lib/systemd/system",
    "usr/lib/systemd/system",
];

/// Caps on what is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceLimits {
    /// Largest unit file read, in bytes. Default 1 MiB (a large one has 10 KiB).
    pub max_unit_file_bytes: usize,
    /// Most directory entries looked at in all. Default 100,000.
    pub max_entries: usize,
    /// Most units reported. Default: what one inventory may carry.
    pub max_units: usize,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        Self {
            max_unit_file_bytes: 1024 * 1024,
            max_entries: 100_000,
            max_units: Limits::default().max_services,
        }
    }
}

/// What a unit file's `[Install]` section says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Install {
    /// `WantedBy=`, `RequiredBy=`, `UpheldBy=` or `Alias=` with a value.
    pub enablable: bool,
    /// `Also=` with a value.
    pub also: bool,
}

/// What a unit directory holds under one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitFile {
    /// A unit file (or a link to one of the same name), with its `[Install]`.
    File(Install),
    /// A link to `/dev/null`.
    Masked,
    /// A link to a unit of another name.
    Alias,
}

/// The `[Install]` section of a unit file. Lines are `Key=value`, `#` and
/// `;` start comments, a trailing backslash continues a line, section
/// names are case-sensitive, keys too (as systemd reads them).
pub fn install_section(text: &[u8]) -> Install {
    let mut install = Install::default();
    let mut in_install = false;
    let mut continued = false;
    for line in text.split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(line);
        let line = line.trim();
        let was_continued = continued;
        continued = line.ends_with('\\');
        if was_continued || line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if line.starts_with('[') {
            in_install = line == "[Install]";
            continue;
        }
        if !in_install {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_end_matches('\\').trim();
        if value.is_empty() {
            continue;
        }
        match key.trim() {
            "WantedBy" | "RequiredBy" | "UpheldBy" | "Alias" => install.enablable = true,
            "Also" => install.also = true,
            _ => {}
        }
    }
    install
}

/// Whether a v2 `cgroup.events` file says the group holds processes.
pub fn populated(events: &str) -> bool {
    events.lines().any(|l| l.trim() == "populated 1")
}

/// `getty@tty1.service` → `getty@.service`.
fn template_of(name: &str) -> Option<String> {
    let (prefix, rest) = name.split_once('@')?;
    let suffix = rest.rsplit_once('.')?.1;
    (!rest.starts_with('.')).then(|| format!("{prefix}@.{suffix}"))
}

/// The service units, sorted by name, at most `max_units`.
///
/// `files` holds each name's first entry across the unit directories,
/// `enabled` the names linked from `/etc/systemd/system/*.wants` and
/// `*.requires`, `running` the units with a populated control group, or
/// `None` when systemd is not running.
pub fn assemble(
    files: &BTreeMap<String, UnitFile>,
    enabled: &BTreeSet<String>,
    running: Option<&BTreeSet<String>>,
    max_units: usize,
) -> Vec<ServiceUnit> {
    let mut names: BTreeSet<&String> = files
        .iter()
        .filter(|(name, file)| **file != UnitFile::Alias && !name.contains("@."))
        .map(|(name, _)| name)
        .collect();
    names.extend(
        enabled
            .iter()
            .filter(|n| files.get(*n) != Some(&UnitFile::Alias)),
    );
    names.extend(running.into_iter().flatten());
    names
        .into_iter()
        .filter(|name| name.ends_with(".service"))
        .take(max_units)
        .map(|name| {
            let file = files
                .get(name)
                .or_else(|| template_of(name).and_then(|t| files.get(&t)));
            let load_state = match file {
                Some(UnitFile::Masked) => "masked",
                Some(_) => "loaded",
                None => "not-found",
            };
            let enabled_state = match file {
                Some(UnitFile::Masked) => "masked",
                _ if enabled.contains(name) => "enabled",
                Some(UnitFile::File(i)) if i.enablable => "disabled",
                Some(UnitFile::File(i)) if i.also => "indirect",
                Some(UnitFile::Alias) => "alias",
                _ => "static",
            };
            let (active_state, sub_state) = match running {
                None => ("unknown", "unknown"),
                Some(r) if r.contains(name) => ("active", "running"),
                Some(_) => ("inactive", "dead"),
            };
            let mut name = name.clone();
            crate::text::clip(&mut name, Limits::default().max_text);
            ServiceUnit {
                name,
                load_state: load_state.into(),
                active_state: active_state.into(),
                sub_state: sub_state.into(),
                enabled_state: enabled_state.into(),
            }
        })
        .collect()
}

/// Reads the units under `root` (`/` on a device).
pub fn read_services(root: &Path, limits: &ServiceLimits) -> Services {
    let mut budget = limits.max_entries;
    let mut files: BTreeMap<String, UnitFile> = BTreeMap::new();
    for dir in UNIT_DIRS {
        let dir = root.join(dir);
        for entry in entries(&dir, &mut budget) {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !name.ends_with(".service") || files.contains_key(&name) {
                continue;
            }
            let path = entry.path();
            let file = match std::fs::read_link(&path) {
                Ok(target) if target == Path::new("/dev/null") => UnitFile::Masked,
                Ok(target) if target.file_name().and_then(|n| n.to_str()) != Some(&name) => {
                    UnitFile::Alias
                }
                // A file, or a link to a file of the same name.
                _ => match crate::ports::read_bounded(&path, limits.max_unit_file_bytes) {
                    Ok(Some(text)) if text.len() <= limits.max_unit_file_bytes => {
                        UnitFile::File(install_section(&text))
                    }
                    // A directory of that name, a dangling link, too large:
                    // nothing is known of its [Install].
                    _ => UnitFile::File(Install::default()),
                },
            };
            files.insert(name, file);
        }
    }
    let mut enabled = BTreeSet::new();
    for entry in entries(&root.join("etc/systemd/system"), &mut budget) {
        let dir_name = entry.file_name();
        let dir_name = dir_name.to_string_lossy();
        if dir_name.ends_with(".wants") || dir_name.ends_with(".requires") {
            for link in entries(&entry.path(), &mut budget) {
                if let Some(name) = link.file_name().to_str() {
                    enabled.insert(name.to_owned());
                }
            }
        }
    }
    let systemd_running = root.join("run/systemd/system").is_dir();
    let running = systemd_running.then(|| {
        let mut running = BTreeSet::new();
        for slice in [
            "sys/fs/cgroup/system.slice",
            "sys/fs/cgroup/systemd/system.slice",
        ] {
            running_units(&root.join(slice), 0, &mut budget, &mut running);
        }
        running
    });
    Services {
        systemd_running,
        units: assemble(&files, &enabled, running.as_ref(), limits.max_units),
    }
}

/// The entries of `dir`, sorted, within what is left of `budget`.
fn entries(dir: &Path, budget: &mut usize) -> Vec<std::fs::DirEntry> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut list: Vec<_> = read.flatten().take(*budget).collect();
    *budget -= list.len();
    list.sort_by_key(std::fs::DirEntry::file_name);
    list
}

/// Adds the populated `*.service` groups under `slice`, going into nested
/// slices (`system-getty.slice`) a few levels deep.
fn running_units(slice: &Path, depth: usize, budget: &mut usize, out: &mut BTreeSet<String>) {
    for entry in entries(slice, budget) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.ends_with(".slice") && depth < 3 {
            running_units(&path, depth + 1, budget, out);
        } else if name.ends_with(".service") {
            let busy = match std::fs::read_to_string(path.join("cgroup.events")) {
                Ok(events) => populated(&events),
                // cgroup v1 has no events file: any process listed counts.
                Err(_) => std::fs::read_to_string(path.join("cgroup.procs"))
                    .is_ok_and(|procs| !procs.trim().is_empty()),
            };
            if busy {
                out.insert(name);
            }
        }
    }
}

#[cfg(test)]
mod tests;
