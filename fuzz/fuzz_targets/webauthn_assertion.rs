//! Passkey assertions travel from a browser through the server (which the
//! threat model does not trust) to agents, and registrations from a browser
//! to the server: parsing and verifying them must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bulwark_policy::webauthn::fuzz_webauthn(data);
});
