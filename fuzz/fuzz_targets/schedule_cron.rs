//! A schedule's cron expression and window are the server's copy until the
//! agent checks the signature, and are parsed on the trust path (RFD 0019):
//! parsing and stepping through occurrences must never panic, and every
//! occurrence found must be one.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bulwark_policy::fuzz_schedule(data);
});
