//! Where schemathesis lives: `cargo xtask test` installs it there and the
//! end-to-end test `crates/e2e/tests/schemathesis.rs` runs it from there.
//! Both compile this one file (`#[path]`), so it uses `std` only.

use std::path::PathBuf;

/// The schemathesis release the API fuzzing test is pinned to (PyPI).
pub const SCHEMATHESIS_VERSION: &str = "4.32.0";

/// The Python virtual environment holding schemathesis:
/// `$BULWARK_SCHEMATHESIS_VENV` if set, else
/// `$HOME/.cache/bulwark/schemathesis-venv` (next to CI's target directory,
/// so it outlives a fresh clone).
pub fn schemathesis_venv() -> PathBuf {
    if let Some(dir) = std::env::var_os("BULWARK_SCHEMATHESIS_VENV") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache")
        .join("bulwark")
        .join("schemathesis-venv")
}

/// Schemathesis' command line program, `st`, in [`schemathesis_venv`].
pub fn schemathesis_bin() -> PathBuf {
    schemathesis_venv().join("bin").join("st")
}

/// The version line `st --version` prints for [`SCHEMATHESIS_VERSION`].
pub fn schemathesis_version_line() -> String {
    format!("st, version {SCHEMATHESIS_VERSION}")
}
