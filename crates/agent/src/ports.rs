//! Listening ports from the kernel's socket tables (`/proc/net/tcp`,
//! `tcp6`, `udp`, `udp6`), with the process that owns each socket.
//!
//! [`parse_proc_net`] and [`owner_inode`] are pure and fuzzed
//! (`fuzz/fuzz_targets/proc_net.rs`); [`assemble`] joins sockets to their
//! owners. Only [`read_listening_ports`] and [`read_socket_owners`] touch
//! the file system; nothing here runs `ss` or `netstat`.
//!
//! A TCP socket counts in LISTEN state (`0A`); a UDP socket when it is
//! bound and unconnected (`07`, no remote port): what a datagram from
//! outside can reach. A socket's owner is the process holding a file
//! descriptor that links to `socket:[INODE]`; another user's processes are
//! only visible to root, so pid and name are optional.

use std::collections::HashMap;
use std::io::Read;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use bulwark_protocol::Limits;
use bulwark_protocol::inventory::ListeningPort;

/// The kernel's socket tables and the protocol each one lists.
pub const PROC_NET: [(&str, Protocol); 4] = [
    ("/proc/net/tcp", Protocol::Tcp),
    ("/proc/net/tcp6", Protocol::Tcp),
    ("/proc/net/udp", Protocol::Udp),
    ("/proc/net/udp6", Protocol::Udp),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// Caps on what the parsers accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortLimits {
    /// Largest socket table, in bytes. Default 32 MiB: every connection has
    /// a line of ~150 bytes, so a server with 200,000 connections fits.
    pub max_input_bytes: usize,
    /// Most listening sockets. Default: what one inventory may carry.
    pub max_ports: usize,
    /// Most file descriptors looked at when finding owners. Default 1,000,000.
    pub max_fds_scanned: usize,
}

impl Default for PortLimits {
    fn default() -> Self {
        Self {
            max_input_bytes: 32 * 1024 * 1024,
            max_ports: Limits::default().max_listening_ports,
            max_fds_scanned: 1_000_000,
        }
    }
}

/// Why the listening ports could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PortsError {
    #[error("the socket table is larger than the {max} bytes the agent reads")]
    TooLarge { max: usize },
    #[error("more than {max} sockets are listening; the agent reports none rather than a part")]
    TooManyPorts { max: usize },
    #[error("line {line} of the socket table is not in the kernel's format")]
    Malformed { line: usize },
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
}

/// A listening socket as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    pub protocol: Protocol,
    pub address: String,
    pub port: u16,
    pub inode: u64,
}

/// The listening sockets of one socket table (`/proc/net/tcp` format),
/// appended to `out`, which holds at most `limits.max_ports`.
pub fn parse_proc_net(
    text: &[u8],
    protocol: Protocol,
    limits: &PortLimits,
    out: &mut Vec<Socket>,
) -> Result<(), PortsError> {
    if text.len() > limits.max_input_bytes {
        return Err(PortsError::TooLarge {
            max: limits.max_input_bytes,
        });
    }
    // The first line is the column header.
    for (n, line) in text.split(|&b| b == b'\n').enumerate().skip(1) {
        let line = std::str::from_utf8(line).map_err(|_| PortsError::Malformed { line: n + 1 })?;
        if line.trim().is_empty() {
            continue;
        }
        let malformed = PortsError::Malformed { line: n + 1 };
        // sl local remote st queues timer retransmits uid timeout inode ...
        let fields: Vec<&str> = line.split_ascii_whitespace().take(10).collect();
        let [_, local, remote, state, _, _, _, _, _, inode] = fields[..] else {
            return Err(malformed);
        };
        let (address, port) = endpoint(local).ok_or(malformed.clone())?;
        let (_, remote_port) = endpoint(remote).ok_or(malformed.clone())?;
        let listening = match protocol {
            Protocol::Tcp => state == "0A",
            Protocol::Udp => state == "07" && remote_port == 0,
        };
        if !listening {
            continue;
        }
        if out.len() == limits.max_ports {
            return Err(PortsError::TooManyPorts {
                max: limits.max_ports,
            });
        }
        out.push(Socket {
            protocol,
            address,
            port,
            inode: inode.parse().map_err(|_| malformed)?,
        });
    }
    Ok(())
}

/// `0100007F:1F90` (or 32 hex digits for IPv6) → ("127.0.0.1", 8080).
///
/// The kernel prints each 32-bit word of the address in the machine's own
/// byte order, so the word's native bytes are the address's bytes.
fn endpoint(text: &str) -> Option<(String, u16)> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    if !address.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let word = |i: usize| -> Option<[u8; 4]> {
        Some(
            u32::from_str_radix(address.get(i * 8..i * 8 + 8)?, 16)
                .ok()?
                .to_ne_bytes(),
        )
    };
    let address = match address.len() {
        8 => Ipv4Addr::from(word(0)?).to_string(),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Ipv6Addr::from(bytes).to_string()
        }
        _ => return None,
    };
    Some((address, port))
}

/// The socket inode a file descriptor's link names (`socket:[12345]`).
pub fn owner_inode(link: &[u8]) -> Option<u64> {
    let inode = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(inode).ok()?.parse().ok()
}

/// The process owning a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub name: String,
}

/// The listening ports of `sockets`, each with its owner when known: sorted
/// by protocol, port and address, one per (protocol, address, port) (the
/// lowest pid's when several processes share a port, as with
/// `SO_REUSEPORT` workers).
pub fn assemble(sockets: &[Socket], owners: &HashMap<u64, Owner>) -> Vec<ListeningPort> {
    let mut ports: Vec<ListeningPort> = sockets
        .iter()
        .map(|s| {
            let owner = owners.get(&s.inode);
            let mut process = owner.map(|o| o.name.clone());
            if let Some(name) = &mut process {
                crate::text::clip(name, Limits::default().max_text);
            }
            ListeningPort {
                protocol: s.protocol.as_str().to_owned(),
                address: s.address.clone(),
                port: s.port,
                process,
                pid: owner.map(|o| o.pid),
            }
        })
        .collect();
    let key = |p: &ListeningPort| (p.protocol.clone(), p.port, p.address.clone());
    // Owned sockets before unknown ones, then the lowest pid.
    ports.sort_by(|a, b| {
        key(a)
            .cmp(&key(b))
            .then_with(|| a.pid.is_none().cmp(&b.pid.is_none()))
            .then_with(|| a.pid.cmp(&b.pid))
    });
    ports.dedup_by(|a, b| key(a) == key(b));
    ports
}

/// Reads a file of at most `max` bytes; `Ok(None)` when it does not exist.
pub(crate) fn read_bounded(path: &Path, max: usize) -> Result<Option<Vec<u8>>, (String, String)> {
    let unreadable = |e: std::io::Error| (path.display().to_string(), e.to_string());
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e)),
    };
    // One byte more than the cap, so an oversized file is told apart.
    let mut bytes = Vec::new();
    file.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    Ok(Some(bytes))
}

/// The listening sockets of this machine; `Ok(None)` when there is no
/// `/proc/net` (not Linux).
pub fn read_listening_sockets(limits: &PortLimits) -> Result<Option<Vec<Socket>>, PortsError> {
    let mut sockets = Vec::new();
    let mut any = false;
    for (path, protocol) in PROC_NET {
        let bytes = read_bounded(Path::new(path), limits.max_input_bytes)
            .map_err(|(path, reason)| PortsError::Unreadable { path, reason })?;
        // A kernel without IPv6 has no tcp6 and udp6.
        if let Some(bytes) = bytes {
            any = true;
            parse_proc_net(&bytes, protocol, limits, &mut sockets)?;
        }
    }
    Ok(any.then_some(sockets))
}

/// The owners of the sockets in `wanted`, from every `/proc/PID/fd` this
/// agent may read (all of them as root); stops when every one is found or
/// after `limits.max_fds_scanned` descriptors.
pub fn read_socket_owners(
    wanted: &std::collections::HashSet<u64>,
    limits: &PortLimits,
) -> HashMap<u64, Owner> {
    let mut owners = HashMap::new();
    let Ok(proc_dir) = std::fs::read_dir("/proc") else {
        return owners;
    };
    let mut scanned = 0usize;
    for entry in proc_dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // Processes come and go while we look: whatever cannot be read is skipped.
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let mut name = None;
        for fd in fds.flatten() {
            scanned += 1;
            if scanned > limits.max_fds_scanned || owners.len() == wanted.len() {
                return owners;
            }
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            use std::os::unix::ffi::OsStrExt as _;
            let Some(inode) = owner_inode(link.as_os_str().as_bytes()) else {
                continue;
            };
            if !wanted.contains(&inode) || owners.contains_key(&inode) {
                continue;
            }
            let name = name.get_or_insert_with(|| {
                std::fs::read_to_string(entry.path().join("comm"))
                    .map(|s| s.trim_end_matches('\n').to_owned())
                    .unwrap_or_default()
            });
            owners.insert(
                inode,
                Owner {
                    pid,
                    name: name.clone(),
                },
            );
        }
    }
    owners
}

#[cfg(test)]
mod tests;
