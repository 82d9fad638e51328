//! Debian versions come from vulnerability data and, later, from agents'
//! package inventories: parsing never panics, and the ordering of what
//! parses is antisymmetric and reflexive.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bulwark_vulndb::version::fuzz_compare(data);
});
