//! apt's simulated upgrade prints names, versions and sources that come
//! from package lists (a mirror's, or a local repository's): the parser
//! must never panic, must stay within its limits, and whatever it accepts
//! must be a package name apt can never read as an option.
#![no_main]

use bulwark_agent::updates::{UpdateLimits, parse_simulation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = UpdateLimits::default();
    if let Ok(updates) = parse_simulation(text, &limits) {
        assert!(updates.len() <= limits.max_updates);
        for u in &updates {
            assert!(bulwark_policy::job::is_package_name(&u.name));
            for field in [&u.name, &u.architecture, &u.current_version, &u.new_version] {
                assert!(field.len() <= limits.max_field);
                assert!(!field.starts_with('-'));
            }
            assert!(u.origin.len() <= limits.max_origin);
        }
        assert!(updates.windows(2).all(|w| w[0] < w[1]), "sorted");
    }
});
