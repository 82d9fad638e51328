//! What runs: a bounded snapshot of the processes, not a change stream.
//!
//! Processes start, end and change size all the time; reporting each
//! change would flood the server with what nobody reads. So the agent
//! sends a snapshot ([`snapshot`]): one entry per process name (the
//! memory of every process of that name together, the largest one's pid,
//! user and command line), the [`MAX_PROCESSES`] largest by memory, taken
//! every [`PROCESS_EVERY`] and otherwise left as it was, so an idle device
//! sends it four times an hour at most. Kernel threads (no memory of their
//! own) are left out. [`snapshot`] is pure; the collector reads the
//! process table with sysinfo, and user names from `/etc/passwd`.

use std::collections::HashMap;
use std::time::Duration;

use bulwark_protocol::Limits;
use bulwark_protocol::inventory::ProcessInfo;

/// How many entries the snapshot keeps.
pub const MAX_PROCESSES: usize = 100;

/// How often the snapshot is taken again.
pub const PROCESS_EVERY: Duration = Duration::from_secs(15 * 60);

/// A process as the process table gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawProcess {
    pub pid: u32,
    pub name: String,
    pub uid: Option<u32>,
    pub command_line: String,
    /// Resident memory, in bytes.
    pub memory_bytes: u64,
}

/// uid → user name from `/etc/passwd` text (the first name of a uid).
pub fn uid_names(passwd: &[u8]) -> HashMap<u32, String> {
    let mut names = HashMap::new();
    for line in passwd.split(|&b| b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let mut fields = line.split(':');
        let (Some(name), Some(_), Some(uid)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if let Ok(uid) = uid.parse::<u32>() {
            names.entry(uid).or_insert_with(|| name.to_owned());
        }
    }
    names
}

/// The snapshot of `processes`: one entry per name, largest memory first
/// (then by name), at most `max`.
pub fn snapshot(
    processes: impl IntoIterator<Item = RawProcess>,
    users: &HashMap<u32, String>,
    max: usize,
) -> Vec<ProcessInfo> {
    let mut by_name: HashMap<String, (RawProcess, u64, u32)> = HashMap::new();
    for p in processes {
        if p.memory_bytes == 0 {
            continue; // a kernel thread
        }
        match by_name.get_mut(&p.name) {
            Some((largest, total, count)) => {
                *total = total.saturating_add(p.memory_bytes);
                *count = count.saturating_add(1);
                if (p.memory_bytes, std::cmp::Reverse(p.pid))
                    > (largest.memory_bytes, std::cmp::Reverse(largest.pid))
                {
                    *largest = p;
                }
            }
            None => {
                let memory = p.memory_bytes;
                by_name.insert(p.name.clone(), (p, memory, 1));
            }
        }
    }
    let limit = Limits::default().max_text;
    let text = |s: &str| crate::text::clipped(s, limit);
    let mut list: Vec<ProcessInfo> = by_name
        .into_values()
        .map(|(p, total, count)| ProcessInfo {
            name: text(&p.name),
            pid: p.pid,
            user: match p.uid {
                Some(uid) => users.get(&uid).cloned().unwrap_or_else(|| uid.to_string()),
                None => String::new(),
            },
            command_line: text(&p.command_line),
            memory_bytes: total,
            count,
        })
        .collect();
    list.sort_by(|a, b| {
        b.memory_bytes
            .cmp(&a.memory_bytes)
            .then_with(|| a.name.cmp(&b.name))
    });
    list.truncate(max);
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pid: u32, name: &str, uid: u32, memory_bytes: u64) -> RawProcess {
        RawProcess {
            pid,
            name: name.into(),
            uid: Some(uid),
            command_line: format!("/usr/sbin/{name} --pid {pid}"),
            memory_bytes,
        }
    }

    #[test]
    fn one_entry_per_name_largest_first() {
        let users = uid_names(include_bytes!("admins/testdata/passwd"));
        let got = snapshot(
            [
                raw(1, "systemd", 0, 12 << 20),
                raw(2, "kthreadd", 0, 0),
                raw(900, "postgres", 101, 30 << 20),
                raw(901, "postgres", 101, 50 << 20),
                raw(902, "postgres", 101, 10 << 20),
                raw(1200, "app", 4242, 5 << 20),
            ],
            &users,
            3,
        );
        let got: Vec<_> = got
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.pid,
                    p.user.as_str(),
                    p.memory_bytes >> 20,
                    p.count,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("postgres", 901, "postgres", 90, 3),
                ("systemd", 1, "root", 12, 1),
                ("app", 1200, "4242", 5, 1),
            ]
        );
    }

    #[test]
    fn long_texts_are_cut_and_sums_saturate() {
        let mut p = raw(7, &"n".repeat(300), 0, u64::MAX);
        p.command_line = "é".repeat(300);
        let q = RawProcess {
            pid: 8,
            ..p.clone()
        };
        let got = snapshot([p, q], &HashMap::new(), MAX_PROCESSES);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name.len(), 256);
        assert!(got[0].command_line.len() <= 256);
        assert_eq!(got[0].memory_bytes, u64::MAX);
        assert_eq!((got[0].pid, got[0].count), (7, 2));
    }

    #[test]
    fn passwd_names_uids() {
        let users =
            uid_names(b"root:x:0:0::/root:/bin/sh\ntoor:x:0:0::/:/bin/sh\nbad line\nx:x:y:0\n");
        assert_eq!(users, HashMap::from([(0, "root".to_owned())]));
    }
}
