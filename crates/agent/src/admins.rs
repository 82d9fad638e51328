//! Local administrators: the accounts that can act as root, from
//! `/etc/passwd`, `/etc/group` and the sudoers files.
//!
//! [`local_admins`] is pure and fuzzed (`fuzz/fuzz_targets/local_admins.rs`);
//! [`read_local_admins`] reads the files. An account is an administrator
//! when (each a [`AdminGrant`] kind):
//! - `uid0`: its uid is 0 (`/etc/passwd`);
//! - `gid0`: its primary group is gid 0;
//! - `group`: it belongs to `sudo`, `wheel` or `admin` (listed in
//!   `/etc/group`, or as its primary group), the groups Debian, Ubuntu and
//!   Red Hat's default sudoers grant everything to;
//! - `sudoers`: a rule of `/etc/sudoers` or `/etc/sudoers.d/*` grants it
//!   `ALL` commands as root: `user HOSTS = ALL`, with a run-as list absent
//!   or naming `ALL` or `root` (`(ALL)`, `(ALL:ALL)`, `(root)`), tags such
//!   as `NOPASSWD:` allowed; a `%group` rule counts for the group's members
//!   and `#uid` for that uid's account.
//!
//! Not parsed, so not reported (a deliberate subset, not a sudoers
//! implementation): aliases (`User_Alias`, `Cmnd_Alias` and rules naming
//! them), negations (`!user`), rules granting specific commands, several
//! rules on one line separated by `:`, `Defaults`, and LDAP or SSSD
//! sources. An LDAP-only administrator or one made by an alias is missed;
//! nothing reported is false. A rule for `ALL` users is reported as an
//! administrator named `ALL`: every account is one. Sudoers files are read only as root (mode
//! 0440); directory entries that sudo itself skips (names with a `.` or
//! ending in `~`) are skipped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use bulwark_protocol::Limits;
use bulwark_protocol::inventory::{AdminGrant, LocalAdmin};

/// The groups whose members are administrators by default.
pub const ADMIN_GROUPS: [&str; 3] = ["sudo", "wheel", "admin"];

/// Caps on what [`local_admins`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminLimits {
    /// Largest passwd, group or sudoers file, in bytes. Default 16 MiB (a
    /// directory-backed host can list tens of thousands of accounts).
    pub max_input_bytes: usize,
    /// Most files read from `/etc/sudoers.d`. Default 256.
    pub max_sudoers_files: usize,
    /// Most administrators. Default: what one inventory may carry.
    pub max_admins: usize,
}

impl Default for AdminLimits {
    fn default() -> Self {
        Self {
            max_input_bytes: 16 * 1024 * 1024,
            max_sudoers_files: 256,
            max_admins: Limits::default().max_local_admins,
        }
    }
}

/// Why the administrators could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminsError {
    #[error("{file} is larger than the {max} bytes the agent reads")]
    TooLarge { file: String, max: usize },
    #[error(
        "more than {max} accounts are administrators; the agent reports none rather than a part"
    )]
    TooManyAdmins { max: usize },
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
}

/// A sudoers file's name (for `via`) and text.
pub struct SudoersFile<'a> {
    pub name: &'a str,
    pub text: &'a [u8],
}

/// The administrators named by `passwd`, `group` and `sudoers`, sorted by
/// name, each with its grants sorted and once.
pub fn local_admins(
    passwd: &[u8],
    group: &[u8],
    sudoers: &[SudoersFile<'_>],
    limits: &AdminLimits,
) -> Result<Vec<LocalAdmin>, AdminsError> {
    let too_large = |file: &str| AdminsError::TooLarge {
        file: file.to_owned(),
        max: limits.max_input_bytes,
    };
    if passwd.len() > limits.max_input_bytes {
        return Err(too_large("/etc/passwd"));
    }
    if group.len() > limits.max_input_bytes {
        return Err(too_large("/etc/group"));
    }
    let mut admins: BTreeMap<String, BTreeSet<AdminGrant>> = BTreeMap::new();
    let mut grant = |name: &str, kind: &str, via: &str| {
        if !name.is_empty() {
            admins
                .entry(name.to_owned())
                .or_default()
                .insert(AdminGrant {
                    kind: kind.to_owned(),
                    via: via.to_owned(),
                });
        }
    };
    // name:password:uid:gid:...
    let accounts: Vec<(&str, &str, &str)> = lines(passwd)
        .filter_map(|line| {
            let mut f = line.split(':');
            Some((
                f.next()?,
                {
                    f.next()?;
                    f.next()?
                },
                f.next()?,
            ))
        })
        .collect();
    // name:password:gid:member,member
    let groups: Vec<(&str, &str, Vec<&str>)> = lines(group)
        .filter_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?;
            f.next()?;
            let gid = f.next()?;
            let members = f.next().unwrap_or("").split(',').map(str::trim);
            Some((name, gid, members.filter(|m| !m.is_empty()).collect()))
        })
        .collect();
    let uid_names: HashMap<&str, &str> = accounts.iter().map(|(n, uid, _)| (*uid, *n)).collect();
    // Every member of a group: listed, or with it as primary group.
    let members_of = |group_name: &str| -> Vec<&str> {
        let mut members = Vec::new();
        for (name, gid, listed) in &groups {
            if *name == group_name {
                members.extend(listed.iter().copied());
                members.extend(accounts.iter().filter(|a| a.2 == *gid).map(|a| a.0));
            }
        }
        members
    };

    for (name, uid, gid) in &accounts {
        if *uid == "0" {
            grant(name, "uid0", "");
        }
        if *gid == "0" {
            grant(name, "gid0", "");
        }
    }
    for group_name in ADMIN_GROUPS {
        for member in members_of(group_name) {
            grant(member, "group", group_name);
        }
    }
    for file in sudoers {
        if file.text.len() > limits.max_input_bytes {
            return Err(too_large(file.name));
        }
        for (line_no, principals) in sudoers_all_rules(file.text) {
            let via = format!("{}:{line_no}", file.name);
            for principal in principals {
                let principal = principal.as_str();
                if let Some(group_name) = principal.strip_prefix('%') {
                    for member in members_of(group_name) {
                        grant(member, "sudoers", &via);
                    }
                } else if let Some(uid) = principal.strip_prefix('#') {
                    if let Some(name) = uid_names.get(uid) {
                        grant(name, "sudoers", &via);
                    }
                } else {
                    grant(principal, "sudoers", &via);
                }
            }
        }
    }
    if admins.len() > limits.max_admins {
        return Err(AdminsError::TooManyAdmins {
            max: limits.max_admins,
        });
    }
    let text = |s: &str| crate::text::clipped(s, Limits::default().max_text);
    Ok(admins
        .into_iter()
        .map(|(name, grants)| LocalAdmin {
            name: text(&name),
            grants: grants
                .into_iter()
                .take(Limits::default().max_admin_grants)
                .map(|g| AdminGrant {
                    kind: g.kind,
                    via: text(&g.via),
                })
                .collect(),
        })
        .collect())
}

/// The non-empty, non-comment lines of a colon-separated database, as text
/// (a line that is not UTF-8 is skipped: no account name of it is usable).
fn lines(bytes: &[u8]) -> impl Iterator<Item = &str> {
    bytes
        .split(|&b| b == b'\n')
        .filter_map(|line| std::str::from_utf8(line).ok())
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
}

/// The rules of a sudoers file that grant every command as root: the line
/// number where each starts and its user list.
pub fn sudoers_all_rules(text: &[u8]) -> Vec<(usize, Vec<String>)> {
    let mut rules = Vec::new();
    let mut logical = String::new();
    let mut start = 0;
    for (n, line) in text.split(|&b| b == b'\n').enumerate() {
        let Ok(line) = std::str::from_utf8(line) else {
            logical.clear();
            continue;
        };
        if logical.is_empty() {
            start = n + 1;
        }
        // A comment runs to the end of the line; `#include`, `#includedir`
        // and `#123` (a uid) are not comments.
        let line = match line.find('#') {
            Some(i) if !starts_directive_or_uid(&line[i..]) => &line[..i],
            _ => line,
        };
        if let Some(continued) = line.trim_end().strip_suffix('\\') {
            logical.push_str(continued);
            logical.push(' ');
            continue;
        }
        logical.push_str(line);
        if let Some(principals) = grants_all(&logical) {
            rules.push((start, principals));
        }
        logical.clear();
    }
    rules
}

fn starts_directive_or_uid(comment: &str) -> bool {
    comment.starts_with("#include") || comment[1..].starts_with(|c: char| c.is_ascii_digit())
}

/// The user list of `rule` if it grants ALL commands as root (see the
/// module's comment for the subset understood). A rule for `ALL` users
/// gives the principal `ALL`: every account is an administrator.
fn grants_all(rule: &str) -> Option<Vec<String>> {
    let (left, commands) = rule.trim().split_once('=')?;
    // USERS HOSTS = ...: the host list is the last word before '='.
    let (users, _hosts) = left.trim().rsplit_once(char::is_whitespace)?;
    let first = users.trim_start();
    if first.starts_with("Defaults") || first.contains("_Alias") {
        return None;
    }
    let mut commands = commands.trim();
    if let Some(run_as) = commands.strip_prefix('(') {
        let (list, after) = run_as.split_once(')')?;
        let root = list
            .split([',', ':'])
            .map(str::trim)
            .any(|u| u == "ALL" || u == "root");
        if !root {
            return None;
        }
        commands = after.trim();
    }
    // Tags (NOPASSWD:, SETENV:, ...) are upper-case words ending in ':'.
    while let Some((tag, after)) = commands.split_once(':') {
        let tag = tag.trim();
        if tag.is_empty() || !tag.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
            break;
        }
        commands = after.trim_start();
    }
    if !commands.split(',').map(str::trim).any(|c| c == "ALL") {
        return None;
    }
    let is_alias = |u: &str| {
        u != "ALL"
            && u.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    };
    let principals: Vec<String> = users
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty() && !u.starts_with('!') && !is_alias(u))
        .map(str::to_owned)
        .collect();
    (!principals.is_empty()).then_some(principals)
}

/// Reads `/etc/passwd`, `/etc/group`, `/etc/sudoers` and `/etc/sudoers.d`
/// under `root` (`/` on a device) and finds the administrators.
pub fn read_local_admins(
    root: &Path,
    limits: &AdminLimits,
) -> Result<Vec<LocalAdmin>, AdminsError> {
    let read = |path: &Path| -> Result<Vec<u8>, AdminsError> {
        crate::ports::read_bounded(path, limits.max_input_bytes)
            .map(Option::unwrap_or_default)
            .map_err(|(path, reason)| AdminsError::Unreadable { path, reason })
    };
    let passwd = read(&root.join("etc/passwd"))?;
    let group = read(&root.join("etc/group"))?;
    let mut sudoers: Vec<(String, Vec<u8>)> = Vec::new();
    // Unreadable sudoers (not root) leave the sudoers grants out, not the rest.
    if let Ok(Some(bytes)) =
        crate::ports::read_bounded(&root.join("etc/sudoers"), limits.max_input_bytes)
    {
        sudoers.push(("/etc/sudoers".into(), bytes));
    }
    if let Ok(dir) = std::fs::read_dir(root.join("etc/sudoers.d")) {
        let mut names: Vec<String> = dir
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.contains('.') && !n.ends_with('~'))
            .collect();
        names.sort();
        names.truncate(limits.max_sudoers_files);
        for name in names {
            let path = root.join("etc/sudoers.d").join(&name);
            if let Ok(Some(bytes)) = crate::ports::read_bounded(&path, limits.max_input_bytes) {
                sudoers.push((format!("/etc/sudoers.d/{name}"), bytes));
            }
        }
    }
    let files: Vec<SudoersFile<'_>> = sudoers
        .iter()
        .map(|(name, text)| SudoersFile { name, text })
        .collect();
    local_admins(&passwd, &group, &files, limits)
}

#[cfg(test)]
mod tests;
