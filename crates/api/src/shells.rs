//! Remote shells (RFD 0015): access grants signed by their requester and
//! approvers, the sessions opened under them and their recordings.
//!
//! What the server says here is for people and lists only: the CLI checks
//! a grant's envelope (`envelope`) itself before approving it or opening a
//! shell with it, and pins the device key the grant's signers named.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::jobs::{QuorumView, SignerView};

/// A grant request: the grant statement, signed by the grantee.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellGrantRequest {
    /// Base64 of the signed `ShellGrant` envelope (canonical CBOR).
    pub envelope: String,
}

/// One more signature on a grant, made by the approver's own `bulwark shell approve`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellApprovalRequest {
    /// The signing key (hex key id).
    pub key_id: String,
    /// Ed25519 signature over the envelope's signing bytes (base64 of 64 bytes).
    pub signature: String,
}

/// Revoking a grant: its live sessions end, no new one opens.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellRevokeRequest {
    /// Why, for the log (1 to 500 characters).
    pub reason: String,
}

/// A grant as the server indexes it, with the envelope agents verify.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ShellGrantView {
    /// Hex of the signed grant id (32 characters).
    pub id: String,
    pub tenant: String,
    pub device_id: String,
    /// The device's host name as the server has it now.
    pub hostname: Option<String>,
    /// The device's Ed25519 public key (hex) as the server has it: the
    /// CLI uses it only if it hashes to the fingerprint the grant's
    /// signers signed (`device_key` of the grant).
    pub device_public_key: Option<String>,
    /// The operator who asked (username).
    pub requested_by: String,
    /// Hex key id of the grantee's signing key.
    pub grantee_key: String,
    /// `unprivileged` or `root`.
    pub account: String,
    pub reason: String,
    /// RFC 3339, as signed.
    pub not_before: String,
    pub expires_at: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
    /// `pending` (more signatures needed), `approved`, `expired` or `revoked`.
    pub state: String,
    pub signers: Vec<SignerView>,
    /// How far the grant is from the tenant policy's quorum, by the
    /// agent's own rule (`policy::shell::verify_grant`'s count).
    pub quorum: Option<QuorumView>,
    /// Base64 of the signed envelope with every signature so far.
    pub envelope: String,
}

/// A session opened under a grant, and its recording as the agent reported it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ShellSessionView {
    /// Hex of the session id (32 characters).
    pub id: String,
    pub grant_id: String,
    pub device_id: String,
    /// The operator who opened it (username).
    pub operator: String,
    pub opened_at: String,
    pub closed_at: Option<String>,
    /// The agent's refusal code, when it refused or ended the session.
    pub refusal: Option<String>,
    pub reason: Option<String>,
    /// The recording's SHA-256 (hex) and length as the agent reported them
    /// (also in the tenant's log as `shell.session`).
    pub recording_sha256: Option<String>,
    pub recording_len: Option<i64>,
    pub truncated: bool,
    /// Bytes of the recording the server holds.
    pub stored_len: i64,
}
