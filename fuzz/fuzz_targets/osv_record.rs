//! OSV records are files an operator imports and the server parses again:
//! any bytes are refused or kept within the import's limits, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bulwark_vulndb::osv::fuzz_record(data);
});
