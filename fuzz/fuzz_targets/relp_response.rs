//! A RELP receiver's answers reach the server's SIEM export from the
//! network: frames and `rsp` data are parsed within bounds, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bulwark_server::transparency_log::siem::relp::fuzz_response(data);
});
