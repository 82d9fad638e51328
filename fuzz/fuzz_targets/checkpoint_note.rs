//! Tree heads (signed notes) and proofs come from a server the threat model
//! does not trust; agents and auditors parse them: never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bulwark_translog::fuzz_checkpoint(data);
});
