//! Where schemathesis (and aiosmtpd, the SMTP server of the alert tests)
//! live: `cargo xtask test` installs them there and the end-to-end tests
//! (`crates/e2e/tests/schemathesis.rs`, the mail receiver in the e2e
//! library) run them from there.
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

/// The aiosmtpd release the alert e-mail tests use (PyPI): a real SMTP
/// server with STARTTLS that a test starts on a loopback port.
pub const AIOSMTPD_VERSION: &str = "1.4.6";

/// The python-tuf release (PyPI `tuf`, with securesystemslib's crypto
/// signer) the agent-release client is checked against
/// (`crates/releases/tests/python_tuf.rs`), in the same environment.
pub const PYTHON_TUF_VERSION: &str = "7.0.1";
pub const SECURESYSTEMSLIB_VERSION: &str = "1.6.0";

/// The Python interpreter of [`schemathesis_venv`], which also holds
/// aiosmtpd and python-tuf.
pub fn venv_python() -> PathBuf {
    schemathesis_venv().join("bin").join("python")
}
