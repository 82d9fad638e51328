//! Sealed shell frames (RFD 0015) pass through the server, which the
//! threat model does not trust: any bytes it makes up must be refused by
//! the channel, never panic it, and never open as a frame.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bulwark_policy::shell::channel::fuzz_frame(data);
});
