//! Signed statements (roots, policies, freezes, jobs) reach the agent from
//! the server, which the threat model does not trust: decoding them must
//! never panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bulwark_policy::fuzz_signed(data);
});
