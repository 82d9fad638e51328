//! utmp is written by other programs on the endpoint: the parser must never
//! panic and must stay within the protocol's limits on any bytes.
#![no_main]

use bulwark_agent::utmp::{RECORD_SIZE, parse};
use bulwark_protocol::Limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let users = parse(data);
    assert!(users.len() <= data.len() / RECORD_SIZE);
    assert!(users.len() <= limits.max_users);
    for u in &users {
        assert!(u.name.len() <= limits.max_text);
        assert!(u.terminal.len() <= limits.max_text);
        assert!(u.host.len() <= limits.max_text);
    }
});
