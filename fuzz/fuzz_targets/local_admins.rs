//! /etc/passwd, /etc/group and sudoers files can be written by any
//! package's maintainer scripts: the parser must never panic and must stay
//! within its limits on any bytes. The input is cut in three at the first
//! two NUL bytes.
#![no_main]

use bulwark_agent::admins::{AdminLimits, SudoersFile, local_admins};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0);
    let passwd = parts.next().unwrap_or_default();
    let group = parts.next().unwrap_or_default();
    let sudoers = parts.next().unwrap_or_default();
    let limits = AdminLimits::default();
    let files = [SudoersFile {
        name: "/etc/sudoers",
        text: sudoers,
    }];
    if let Ok(admins) = local_admins(passwd, group, &files, &limits) {
        assert!(admins.len() <= limits.max_admins);
        assert!(
            admins.windows(2).all(|w| w[0].name < w[1].name),
            "sorted, no duplicates"
        );
        for a in &admins {
            assert!(!a.grants.is_empty());
            assert!(a.name.len() <= 256);
        }
    }
});
