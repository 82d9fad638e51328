//! A tenant's trust state (root, policy, freeze) and publishing a signed
//! statement.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct TrustView {
    pub tenant_id: String,
    /// SHA-256 of the first root's payload (hex): what agents pin.
    pub root_fingerprint: Option<String>,
    pub root_version: Option<u64>,
    pub root_threshold: Option<u32>,
    pub policy_version: Option<u64>,
    /// RFC 3339.
    pub policy_expires_at: Option<String>,
    pub frozen: bool,
    pub freeze_sequence: u64,
    /// Every root envelope, oldest first (base64 of canonical CBOR).
    pub roots: Vec<String>,
    pub policy: Option<String>,
    pub freeze: Option<String>,
    /// Stored statements that do not verify (a security alert).
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeRequest {
    /// A signed statement: base64 of its canonical CBOR envelope.
    pub envelope: String,
}
