//! The release mirror's parsers (RFD 0017), each fed bytes an attacker
//! chooses: the gateway reads a request head from anyone who connects, the
//! agent reads the answer of a server that may be owned, the console and
//! CLI split what an agent reports as its version. Any bytes are refused
//! or parsed within their limits, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bulwark_server::gateway::releases::release_request(data);
    let _ = bulwark_agent::self_update::parse_response(data.to_vec(), 1 << 16);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = bulwark_api::releases::is_metadata_name(text);
        let _ = bulwark_api::releases::is_target_path(text);
        let (version, hash) = bulwark_api::devices::split_agent_version(text);
        assert!(version.len() <= text.len());
        assert!(hash.is_none_or(|h| h.len() == 64));
        let _ = bulwark_agent::self_update::parse_version(text);
    }
});
