//! Unit files come from packages (any maintainer script can write one):
//! the [Install] parser must never panic on any bytes.
#![no_main]

use bulwark_agent::services::install_section;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = install_section(data);
});
