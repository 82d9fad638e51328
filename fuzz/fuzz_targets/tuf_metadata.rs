//! TUF metadata reaches the agent from the server's mirror, which an
//! attacker may own: any bytes, as any role, are refused or parsed within
//! the limits, never a panic.
#![no_main]

use bulwark_releases::Limits;
use bulwark_releases::metadata::{Root, Snapshot, Targets, Timestamp, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let _ = parse::<Root>(data, &limits);
    let _ = parse::<Timestamp>(data, &limits);
    let _ = parse::<Snapshot>(data, &limits);
    let _ = parse::<Targets>(data, &limits);
    let _ = bulwark_releases::TrustedSet::new(data, limits);
});
