//! What the network checks read (RFD 0009): an HTTP check's URL from the
//! policy, the response head and the certificate of whatever server the
//! check dials. None of it may panic or read past its limits.
#![no_main]

use bulwark_agent::checks::{network, x509};
use bulwark_policy::checks::{HttpTarget, MAX_URL};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(url) = std::str::from_utf8(data)
        && let Ok(target) = HttpTarget::parse(url)
    {
        assert!(url.len() <= MAX_URL && target.port != 0 && target.path.starts_with('/'));
        assert!(target.path.bytes().all(|b| b.is_ascii_graphic()));
    }
    let _ = network::response_status(data);
    if let Ok(at) = x509::not_after(data) {
        let _ = x509::days_left(at, 1_800_000_000);
    }
});
