//! The device search's query (`GET /api/v1/devices`, the console's
//! `/devices` form) and tag and group names come from people and from
//! whoever can reach the API: parsing must never panic, whatever the text
//! (`bulwark_api::fleet::fuzz_query`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bulwark_api::fleet::fuzz_query(data);
});
