//! `POST /add-checkpoint` bodies come from anyone who can reach a witness;
//! it parses and checks them before it holds any lock: never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bulwark_witness::fuzz_add_checkpoint(data);
});
