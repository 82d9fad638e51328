//! Security posture checks (issue 16): what an endpoint's own files say
//! about how exposed it is, read by the agent, never reported by the
//! server. Each yields 0 when sound and 1 when not (security updates: how
//! many are pending), with what was found as the summary.
//!
//! - `ssh-password-login`, `ssh-root-login`: sshd's effective global
//!   settings from `/etc/ssh/sshd_config` and what it includes, as sshd
//!   reads them: keywords without case, the first value obtained wins,
//!   `Include` (globs, relative to `/etc/ssh`) read in place. Settings
//!   inside `Match` blocks apply only to some connections: they are not
//!   the global value, but a `Match` block that turns passwords on is
//!   named in the summary. Defaults are OpenSSH's: passwords and
//!   keyboard-interactive on, PAM off, root without password.
//! - `firewall`: a firewall set to load at boot, by systemd's own links
//!   (`/etc/systemd/system/*.wants/`): firewalld, nftables,
//!   netfilter-persistent, iptables, or ufw with `ENABLED=yes`. Rules are
//!   not read (that needs netlink); an enabled but empty ruleset passes.
//! - `disk-encryption`: the root filesystem's block device, from
//!   `/proc/self/mountinfo`, is dm-crypt, or sits on one (LVM on LUKS), by
//!   the device mapper's uuids in sysfs. A root that is no block device
//!   (a container's overlay) is unknown, not a finding.
//!
//! - `agent-integrity`: the agent's own binary against the release its
//!   release keys signed ([`crate::self_update::SelfUpdate::integrity`]);
//!   it fetches and verifies metadata, so it runs as a waiting probe.
//!
//! The parsers are pure over a `root` directory, so the tests give them a
//! tree of their own; `fuzz/fuzz_targets/sshd_config.rs` fuzzes
//! [`sshd_settings`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bulwark_policy::PostureItem;
use bulwark_protocol::inventory::PendingUpdate;

use super::probes::Measurement;

/// Largest file read (an sshd configuration, a unit list, mountinfo).
pub const MAX_FILE: u64 = 1024 * 1024;
/// Most files one sshd configuration reads, includes and all.
pub const MAX_SSHD_FILES: usize = 256;
/// Deepest include nesting (sshd's own limit).
pub const MAX_INCLUDE_DEPTH: usize = 16;
/// Most device-mapper layers followed below the root filesystem.
const MAX_LAYERS: usize = 8;

/// Measures `item` on the host whose filesystem is at `root` (`/`).
pub fn measure(item: PostureItem, root: &Path, pending: Option<&[PendingUpdate]>) -> Measurement {
    match item {
        PostureItem::SshPasswordLogin => {
            let Some(sshd) = read_sshd(root)? else {
                return Ok((0, "no OpenSSH server configuration".to_owned()));
            };
            Ok(sshd.password_finding())
        }
        PostureItem::SshRootLogin => {
            let Some(sshd) = read_sshd(root)? else {
                return Ok((0, "no OpenSSH server configuration".to_owned()));
            };
            Ok(sshd.root_finding())
        }
        PostureItem::Firewall => firewall(root),
        PostureItem::DiskEncryption => root_encryption(root),
        PostureItem::SecurityUpdates => {
            let pending = pending.ok_or("the pending updates have not been read yet")?;
            let security: Vec<&str> = pending
                .iter()
                .filter(|u| u.security)
                .map(|u| u.name.as_str())
                .collect();
            Ok(match security.len() {
                0 => (0, "no security update pending".to_owned()),
                n => (
                    n as u64,
                    format!("{n} security updates pending: {}", names(&security)),
                ),
            })
        }
        PostureItem::AgentIntegrity => {
            Err("the agent's integrity is checked against its release, not here".to_owned())
        }
    }
}

/// At most five names, then how many more.
fn names(list: &[&str]) -> String {
    let mut text = list.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    if list.len() > 5 {
        text.push_str(&format!(" and {} more", list.len() - 5));
    }
    text
}

fn read_bounded(path: &Path) -> Result<Option<String>, String> {
    use std::io::Read as _;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut text = String::new();
    file.take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_FILE {
        return Err(format!("{} is over 1 MiB", path.display()));
    }
    Ok(Some(text))
}

/// sshd's effective global settings that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshdSettings {
    pub password_authentication: bool,
    pub kbd_interactive_authentication: bool,
    pub use_pam: bool,
    /// `yes`, `prohibit-password`, `without-password`,
    /// `forced-commands-only` or `no`, lower case.
    pub permit_root_login: String,
    /// A `Match` block turns passwords on for some connections.
    pub password_in_match: bool,
    /// The files read, in order.
    pub files: Vec<String>,
}

impl SshdSettings {
    fn password_finding(&self) -> (u64, String) {
        let via_pam = self.kbd_interactive_authentication && self.use_pam;
        let mut text = match (self.password_authentication, via_pam) {
            (true, _) => "sshd accepts passwords (PasswordAuthentication yes)".to_owned(),
            (false, true) => {
                "sshd accepts passwords through PAM (KbdInteractiveAuthentication yes, UsePAM yes)"
                    .to_owned()
            }
            (false, false) => "sshd accepts no passwords".to_owned(),
        };
        let found = self.password_authentication || via_pam;
        if !found && self.password_in_match {
            text.push_str("; a Match block turns passwords on for some connections");
        }
        (u64::from(found || self.password_in_match), text)
    }

    fn root_finding(&self) -> (u64, String) {
        let found = self.permit_root_login == "yes";
        (
            u64::from(found),
            format!(
                "PermitRootLogin {}{}",
                self.permit_root_login,
                if found {
                    ": root may log in with a password"
                } else {
                    ""
                }
            ),
        )
    }
}

/// The sshd configuration below `root`, or `None` when there is none.
fn read_sshd(root: &Path) -> Result<Option<SshdSettings>, String> {
    let main = root.join("etc/ssh/sshd_config");
    let Some(text) = read_bounded(&main)? else {
        return Ok(None);
    };
    let mut error = None;
    let settings = sshd_settings(&text, "/etc/ssh/sshd_config", &mut |pattern| match include(
        root, pattern,
    ) {
        Ok(files) => files,
        Err(e) => {
            error.get_or_insert(e);
            Vec::new()
        }
    });
    match error {
        Some(e) => Err(e),
        None => settings.map(Some),
    }
}

/// The files an `Include` pattern names below `root`, in lexical order
/// (as sshd's glob), with their text.
fn include(root: &Path, pattern: &str) -> Result<Vec<(String, String)>, String> {
    let absolute = if pattern.starts_with('/') {
        pattern.to_owned()
    } else {
        format!("/etc/ssh/{pattern}")
    };
    let (dir, name) = absolute.rsplit_once('/').unwrap_or(("", &absolute));
    if dir.contains(['*', '?', '[']) {
        return Err(format!(
            "Include {pattern}: wildcards in directories are not read"
        ));
    }
    let mut found = Vec::new();
    if name.contains(['*', '?', '[']) {
        let entries = match std::fs::read_dir(root.join(dir.trim_start_matches('/'))) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("cannot list {dir}: {e}")),
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.') && glob_match(name, n))
            .collect();
        names.sort();
        names.truncate(MAX_SSHD_FILES);
        for n in names {
            let shown = format!("{dir}/{n}");
            if let Some(text) = read_bounded(&root.join(shown.trim_start_matches('/')))? {
                found.push((shown, text));
            }
        }
    } else if let Some(text) = read_bounded(&root.join(absolute.trim_start_matches('/')))? {
        found.push((absolute, text));
    }
    Ok(found)
}

/// A file-name glob: `*` any run, `?` one character; no classes.
fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    // Classes (`[...]`) are not globbed: such a pattern matches only itself.
    !pattern.contains('[') && go(pattern.as_bytes(), name.as_bytes())
}

/// sshd's global settings from the text of its main file, reading
/// included files through `include` (pattern to (name, text) pairs).
pub fn sshd_settings(
    main: &str,
    main_name: &str,
    include: &mut dyn FnMut(&str) -> Vec<(String, String)>,
) -> Result<SshdSettings, String> {
    let mut state = Reading::default();
    state.file(main_name, main, include, 0)?;
    let first = |key: &str| {
        state
            .values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let yes = |key: &str, default: bool| first(key).map_or(default, |v| v == "yes");
    Ok(SshdSettings {
        password_authentication: yes("passwordauthentication", true),
        kbd_interactive_authentication: first("kbdinteractiveauthentication")
            .or(first("challengeresponseauthentication"))
            .is_none_or(|v| v == "yes"),
        use_pam: yes("usepam", false),
        permit_root_login: first("permitrootlogin")
            .unwrap_or("prohibit-password")
            .to_owned(),
        password_in_match: state.password_in_match,
        files: state.files,
    })
}

#[derive(Default)]
struct Reading {
    /// (keyword in lower case, first argument in lower case), in order.
    values: Vec<(String, String)>,
    password_in_match: bool,
    files: Vec<String>,
}

const KEYWORDS: [&str; 5] = [
    "passwordauthentication",
    "kbdinteractiveauthentication",
    "challengeresponseauthentication",
    "usepam",
    "permitrootlogin",
];

impl Reading {
    fn file(
        &mut self,
        name: &str,
        text: &str,
        include: &mut dyn FnMut(&str) -> Vec<(String, String)>,
        depth: usize,
    ) -> Result<(), String> {
        if depth > MAX_INCLUDE_DEPTH {
            return Err(format!(
                "{name}: includes nested over {MAX_INCLUDE_DEPTH} deep"
            ));
        }
        if self.files.len() >= MAX_SSHD_FILES {
            return Err(format!(
                "the sshd configuration reads over {MAX_SSHD_FILES} files"
            ));
        }
        self.files.push(name.to_owned());
        // A Match block lasts to the end of the file that opened it.
        let mut in_match = false;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, rest) = match line.find(|c: char| c.is_whitespace() || c == '=') {
                Some(i) => (
                    &line[..i],
                    line[i..].trim_start_matches(|c: char| c.is_whitespace() || c == '='),
                ),
                None => (line, ""),
            };
            let keyword = keyword.to_ascii_lowercase();
            let argument = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .trim_matches('"')
                .to_ascii_lowercase();
            match keyword.as_str() {
                "match" => in_match = !argument.eq_ignore_ascii_case("all"),
                "include" if !in_match => {
                    for pattern in rest.split_whitespace() {
                        for (child, text) in include(pattern.trim_matches('"')) {
                            self.file(&child, &text, include, depth + 1)?;
                        }
                    }
                }
                k if KEYWORDS.contains(&k) => {
                    if in_match {
                        if k == "passwordauthentication" && argument == "yes" {
                            self.password_in_match = true;
                        }
                    } else if !self.values.iter().any(|(seen, _)| seen == k) {
                        self.values.push((keyword, argument));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The firewall units systemd starts at boot.
const FIREWALL_UNITS: [&str; 5] = [
    "firewalld.service",
    "nftables.service",
    "netfilter-persistent.service",
    "iptables.service",
    "ufw.service",
];

fn firewall(root: &Path) -> Measurement {
    if !root.join("run/systemd/system").is_dir() {
        return Err(
            "systemd is not the running init: cannot tell which firewall loads at boot".to_owned(),
        );
    }
    let enabled = enabled_units(&root.join("etc/systemd/system"))?;
    let ufw_on = read_bounded(&root.join("etc/ufw/ufw.conf"))?.is_some_and(|text| {
        text.lines()
            .map(str::trim)
            .any(|l| l.replace('"', "").eq_ignore_ascii_case("enabled=yes"))
    });
    let on: Vec<&str> = FIREWALL_UNITS
        .iter()
        .filter(|u| enabled.contains(**u) && (**u != "ufw.service" || ufw_on))
        .map(|u| u.trim_end_matches(".service"))
        .collect();
    Ok(if on.is_empty() {
        (
            1,
            "no firewall loads at boot (firewalld, nftables, netfilter-persistent, iptables or ufw)"
                .to_owned(),
        )
    } else {
        (0, format!("{} loads at boot", on.join(", ")))
    })
}

/// The unit names linked from `*.wants` and `*.requires` directories.
fn enabled_units(dir: &Path) -> Result<BTreeSet<String>, String> {
    let mut units = BTreeSet::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(units),
        Err(e) => return Err(format!("cannot list {}: {e}", dir.display())),
    };
    for entry in entries.filter_map(Result::ok).take(1024) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.ends_with(".wants") || name.ends_with(".requires")) {
            continue;
        }
        if let Ok(links) = std::fs::read_dir(entry.path()) {
            units.extend(
                links
                    .filter_map(Result::ok)
                    .take(4096)
                    .map(|l| l.file_name().to_string_lossy().into_owned()),
            );
        }
    }
    Ok(units)
}

fn root_encryption(root: &Path) -> Measurement {
    let mountinfo = read_bounded(&root.join("proc/self/mountinfo"))?
        .ok_or("cannot read /proc/self/mountinfo")?;
    let device = root_device(&mountinfo).ok_or("no root filesystem in /proc/self/mountinfo")?;
    if device.starts_with("0:") {
        return Err("the root filesystem is not on a block device (a container?)".to_owned());
    }
    let top = root.join("sys/dev/block").join(&device);
    if !top.exists() {
        return Err(format!("no block device {device} in /sys/dev/block"));
    }
    Ok(match crypt_layer(root, &top, 0) {
        Some(name) => (0, format!("the root filesystem is on dm-crypt ({name})")),
        None => (
            1,
            "the root filesystem is not encrypted (no dm-crypt below it)".to_owned(),
        ),
    })
}

/// The `major:minor` of the filesystem mounted at `/` (the last mount
/// there wins: it is the one on top).
pub fn root_device(mountinfo: &str) -> Option<String> {
    mountinfo.lines().rev().find_map(|line| {
        let mut fields = line.split(' ');
        let device = fields.nth(2)?;
        let mount_point = fields.nth(1)?;
        (mount_point == "/" && device.contains(':')).then(|| device.to_owned())
    })
}

/// The name of a dm-crypt device at or below the block device at `dev`.
fn crypt_layer(root: &Path, dev: &Path, depth: usize) -> Option<String> {
    if depth > MAX_LAYERS {
        return None;
    }
    let uuid = std::fs::read_to_string(dev.join("dm/uuid")).unwrap_or_default();
    if uuid.starts_with("CRYPT-") {
        let name = std::fs::read_to_string(dev.join("dm/name")).unwrap_or_default();
        return Some(name.trim().to_owned());
    }
    let slaves: Vec<PathBuf> = std::fs::read_dir(dev.join("slaves"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .take(64)
                .map(|e| root.join("sys/class/block").join(e.file_name()))
                .collect()
        })
        .unwrap_or_default();
    slaves.iter().find_map(|s| crypt_layer(root, s, depth + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(main: &str, files: &[(&str, &str)]) -> SshdSettings {
        sshd_settings(main, "sshd_config", &mut |pattern| {
            files
                .iter()
                .filter(|(name, _)| glob_match(pattern, name))
                .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
                .collect()
        })
        .expect("parses")
    }

    #[test]
    fn openssh_defaults_accept_passwords() {
        let s = settings("", &[]);
        assert!(s.password_authentication && s.kbd_interactive_authentication && !s.use_pam);
        assert_eq!(s.permit_root_login, "prohibit-password");
        assert_eq!(s.password_finding().0, 1);
        assert_eq!(s.root_finding().0, 0);
    }

    #[test]
    fn the_first_value_wins_and_includes_are_read_in_place() {
        // Debian's layout: the drop-ins are included first, so they win.
        let main = "Include sshd_config.d/*.conf\n\
                    KbdInteractiveAuthentication no\nUsePAM yes\n\
                    PasswordAuthentication yes\nPermitRootLogin yes\n";
        let s = settings(
            main,
            &[
                (
                    "sshd_config.d/50-hardening.conf",
                    "passwordauthentication=no\n# PermitRootLogin yes\n",
                ),
                (
                    "sshd_config.d/60-root.conf",
                    "PermitRootLogin  \"prohibit-password\"\n",
                ),
                ("sshd_config.d/notes.txt", "PasswordAuthentication yes\n"),
            ],
        );
        assert!(!s.password_authentication);
        assert_eq!(s.permit_root_login, "prohibit-password");
        assert_eq!(s.files.len(), 3, "{:?}", s.files);
        assert_eq!(s.password_finding().0, 0, "{:?}", s.password_finding());
    }

    #[test]
    fn pam_keyboard_interactive_is_a_password_too() {
        let s = settings("PasswordAuthentication no\nUsePAM yes\n", &[]);
        let (value, text) = s.password_finding();
        assert_eq!(value, 1);
        assert!(text.contains("PAM"), "{text}");
    }

    #[test]
    fn match_blocks_are_not_global_but_are_named() {
        let s = settings(
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             Match Address 10.0.0.0/8\n  PasswordAuthentication yes\n  PermitRootLogin yes\n",
            &[],
        );
        assert!(!s.password_authentication);
        assert_eq!(s.permit_root_login, "prohibit-password");
        let (value, text) = s.password_finding();
        assert_eq!(value, 1);
        assert!(text.contains("Match"), "{text}");
        // `Match all` ends a block.
        let s = settings(
            "Match User backup\nPasswordAuthentication no\nMatch all\nPermitRootLogin yes\n",
            &[],
        );
        assert!(s.password_authentication);
        assert_eq!(s.root_finding().0, 1);
    }

    #[test]
    fn an_include_loop_is_an_error_not_a_hang() {
        let result = sshd_settings("Include self.conf\n", "sshd_config", &mut |_| {
            vec![("self.conf".to_owned(), "Include self.conf\n".to_owned())]
        });
        assert!(result.is_err());
    }

    #[test]
    fn globs_match_names() {
        assert!(glob_match("*.conf", "50-x.conf"));
        assert!(!glob_match("*.conf", "50-x.conf.bak"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("[ab].conf", "a.conf"));
    }

    #[test]
    fn the_root_device_is_the_top_mount_of_slash() {
        let info = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    30 22 0:26 / /proc rw - proc proc rw\n\
                    40 22 253:1 / / rw - ext4 /dev/mapper/vg-root rw\n";
        assert_eq!(root_device(info).as_deref(), Some("253:1"));
        assert_eq!(root_device("garbage\n"), None);
    }

    fn write(root: &Path, path: &str, text: &str) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        std::fs::write(path, text).expect("write");
    }

    #[test]
    fn lvm_on_luks_is_encrypted_and_a_plain_partition_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(
            root,
            "proc/self/mountinfo",
            "40 1 253:1 / / rw - ext4 /dev/mapper/vg-root rw\n",
        );
        write(root, "sys/dev/block/253:1/dm/uuid", "LVM-abc\n");
        write(root, "sys/dev/block/253:1/slaves/dm-0", "");
        write(
            root,
            "sys/class/block/dm-0/dm/uuid",
            "CRYPT-LUKS2-1234-sda3_crypt\n",
        );
        write(root, "sys/class/block/dm-0/dm/name", "sda3_crypt\n");
        assert_eq!(
            root_encryption(root),
            Ok((
                0,
                "the root filesystem is on dm-crypt (sda3_crypt)".to_owned()
            ))
        );
        write(
            root,
            "proc/self/mountinfo",
            "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n",
        );
        std::fs::create_dir_all(root.join("sys/dev/block/8:1")).expect("dir");
        assert_eq!(root_encryption(root).map(|m| m.0), Ok(1));
        write(
            root,
            "proc/self/mountinfo",
            "22 1 0:31 / / rw - overlay overlay rw\n",
        );
        assert!(
            root_encryption(root).is_err(),
            "a container's root is unknown"
        );
    }

    #[test]
    fn a_firewall_counts_when_systemd_starts_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        assert!(firewall(root).is_err(), "no systemd: unknown");
        std::fs::create_dir_all(root.join("run/systemd/system")).expect("dir");
        assert_eq!(firewall(root).map(|m| m.0), Ok(1));
        write(
            root,
            "etc/systemd/system/multi-user.target.wants/ufw.service",
            "",
        );
        assert_eq!(
            firewall(root).map(|m| m.0),
            Ok(1),
            "ufw enabled but ENABLED=no"
        );
        write(root, "etc/ufw/ufw.conf", "# comment\nENABLED=yes\n");
        assert_eq!(firewall(root), Ok((0, "ufw loads at boot".to_owned())));
    }

    #[test]
    fn security_updates_are_counted() {
        let update = |name: &str, security: bool| PendingUpdate {
            name: name.to_owned(),
            security,
            ..PendingUpdate::default()
        };
        let root = Path::new("/nonexistent");
        assert!(measure(PostureItem::SecurityUpdates, root, None).is_err());
        let list = [
            update("openssl", true),
            update("vim", false),
            update("libc6", true),
        ];
        let (value, text) =
            measure(PostureItem::SecurityUpdates, root, Some(&list)).expect("measured");
        assert_eq!(value, 2);
        assert!(text.contains("openssl, libc6"), "{text}");
        let (value, _) = measure(PostureItem::SshPasswordLogin, root, Some(&[])).expect("measured");
        assert_eq!(value, 0, "no sshd configuration: nothing to find");
    }
}
