//! Every frame the gateway or an agent receives goes through these decoders:
//! they must never panic, and anything they accept must be the one canonical
//! encoding of its value (checked inside `fuzz_decode`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bulwark_protocol::codec::fuzz_decode(data);
});
