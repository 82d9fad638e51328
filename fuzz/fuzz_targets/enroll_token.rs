//! Enrolment tokens and root fingerprints are pasted by people from
//! wherever the server showed them: their parsers must never panic, and
//! what parses must print back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        bulwark_protocol::token::fuzz_token(text);
    }
});
