//! The dpkg status database can be written by any package's maintainer
//! scripts: the parser must never panic and must stay within its limits on
//! any bytes.
#![no_main]

use bulwark_agent::packages::{PackageLimits, parse_dpkg_status};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = PackageLimits::default();
    if let Ok(packages) = parse_dpkg_status(data, &limits) {
        assert!(packages.len() <= limits.max_packages);
        for p in &packages {
            for field in [
                &p.name,
                &p.version,
                &p.architecture,
                &p.source,
                &p.source_version,
            ] {
                assert!(field.len() <= limits.max_field_bytes);
            }
        }
        assert!(
            packages.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
    }
});
