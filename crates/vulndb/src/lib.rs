//! Bulwark's offline vulnerability data, pure: no I/O, no clock.
//!
//! * [`version`]: Debian versions, parsed and ordered exactly as dpkg does.
//! * [`cvss`]: CVSS v3.0/v3.1 base scores from vectors.
//! * [`osv`]: OSV records (Debian and Ubuntu ecosystems) within [`osv::Limits`].
//! * [`matching`]: which advisories affect an installed source version.
//! * [`release`]: a device's ecosystem release (`Debian:12`) from its OS.
//! * [`stored`]: the compact text form in which the store keeps a package's
//!   ranges, read back into the same types.
//!
//! The store, the server and the CLI do the I/O around it; the CLI parses
//! files with [`osv::parse_record`] to report on them, and the server parses
//! every uploaded record again with the same function before storing it.

pub mod cvss;
pub mod matching;
pub mod osv;
pub mod release;
pub mod stored;
pub mod version;

pub use osv::{Advisory, Affected, Limits, Parsed, SkipReason};
pub use version::Version;

/// The crate's one error, for callers that do not match on the kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid Debian version: {0}")]
    Version(#[from] version::VersionError),
    #[error("invalid OSV record: {0}")]
    Osv(#[from] osv::OsvError),
    #[error("invalid CVSS vector: {0}")]
    Cvss(#[from] cvss::CvssError),
    #[error("stored ranges do not parse: {0}")]
    Stored(String),
}
