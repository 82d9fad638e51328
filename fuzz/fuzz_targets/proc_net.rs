//! The kernel's socket tables are trusted more than a package database,
//! but the agent reads them as root every minute: the parser must never
//! panic and must stay within its limits on any bytes.
#![no_main]

use bulwark_agent::ports::{PortLimits, Protocol, owner_inode, parse_proc_net};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = PortLimits::default();
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        let mut sockets = Vec::new();
        let _ = parse_proc_net(data, protocol, &limits, &mut sockets);
        assert!(sockets.len() <= limits.max_ports);
    }
    let _ = owner_inode(data);
});
