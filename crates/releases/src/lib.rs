//! Bulwark's agent releases (RFD 0017): a TUF client, hand-written
//! because it is what an agent trusts before it replaces its own binary,
//! and because the maintained Rust client would bring a second crypto
//! stack. Pure: bytes in, verdicts out, the time an argument; the agent
//! does the I/O through [`Repository`].
//!
//! Scope: the top-level roles (root with rotation, timestamp, snapshot,
//! targets), Ed25519 keys, consistent snapshots, target files checked by
//! length and SHA-256/SHA-512. Delegated targets roles are never
//! consulted (the release channel has none).

pub mod canonical;
pub mod metadata;
mod refresh;
mod trusted;

pub use metadata::{MetaFile, RoleName, TargetFile};
pub use refresh::{Repository, check_target, refresh, target_path};
pub use trusted::{Trusted, TrustedSet};

/// Caps on what a repository may make this client read (python-tuf's
/// defaults for sizes).
#[derive(Debug, Clone)]
pub struct Limits {
    pub root_bytes: u64,
    pub timestamp_bytes: u64,
    pub snapshot_bytes: u64,
    pub targets_bytes: u64,
    /// Roots followed in one refresh.
    pub root_rotations: usize,
    /// Keys in a root, and key ids in one role.
    pub keys: usize,
    pub signatures: usize,
    /// Targets in the targets role, files in the snapshot.
    pub targets: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            root_bytes: 512_000,
            timestamp_bytes: 16_384,
            snapshot_bytes: 2_000_000,
            targets_bytes: 5_000_000,
            root_rotations: 32,
            keys: 256,
            signatures: 256,
            targets: 10_000,
        }
    }
}

/// Why a document or a file was refused. Nothing is trusted on an error.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("malformed metadata: {0}")]
    Malformed(String),
    #[error("{what} is larger than {limit} bytes")]
    TooLarge { what: &'static str, limit: u64 },
    #[error("expected {want} metadata, got {got:?}")]
    WrongRole { want: &'static str, got: String },
    #[error("{role}: {good} valid signature(s), {threshold} needed")]
    Threshold {
        role: &'static str,
        good: u64,
        threshold: u64,
    },
    #[error("{role}: version {got}, expected {want}")]
    Version {
        role: &'static str,
        got: u64,
        want: String,
    },
    #[error("{0} metadata has expired")]
    Expired(&'static str),
    #[error("{0}")]
    Mismatch(String),
    #[error("the repository has no {0}")]
    Missing(&'static str),
    #[error("out of order: {0}")]
    Order(&'static str),
    #[error("fetching: {0}")]
    Fetch(String),
}
