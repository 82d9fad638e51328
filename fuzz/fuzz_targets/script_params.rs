//! A library version's parameter schema and the values an operator gives
//! (`--param`, the console's Run panel) come from people and the server:
//! parsing and rendering the signed prelude must never panic, whatever the
//! text (`bulwark_scripts::fuzzing::params`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bulwark_scripts::fuzzing::params(data);
});
