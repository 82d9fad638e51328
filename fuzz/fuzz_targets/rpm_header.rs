//! An RPM header is written by whoever built the package: the parser must
//! never panic and must stay within its limits on any bytes.
#![no_main]

use bulwark_agent::rpm::{RpmLimits, parse_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = RpmLimits::default();
    if let Ok(p) = parse_header(data, &limits) {
        assert!(!p.name.is_empty());
        for field in [&p.name, &p.version, &p.architecture, &p.source] {
            assert!(field.len() <= limits.max_field_bytes);
        }
    }
});
