//! Trust proposals: a root, policy or freeze statement waiting for the
//! root holders' signatures, collected one by one until the threshold is met.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ThresholdView {
    /// Whose threshold ("root v2", "new root v3", "customer root key").
    pub what: String,
    pub have: usize,
    pub need: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProposalSignerView {
    pub key_id: String,
    pub name: String,
    pub holder: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProposalView {
    /// 32 hex characters.
    pub id: String,
    pub tenant: String,
    pub tenant_id: String,
    /// "root", "policy" or "freeze".
    pub kind: String,
    /// The statement's version (a freeze statement's sequence).
    pub version: u64,
    /// "open", "published", "withdrawn" or "expired".
    pub state: String,
    /// Operator id.
    pub proposed_by: String,
    pub created_at: String,
    pub expires_at: String,
    pub published_at: Option<String>,
    /// The envelope with every signature so far (base64 of canonical CBOR):
    /// verify it, then sign its signing bytes.
    pub envelope: String,
    /// A root rotation's companion: the current policy re-signed as the
    /// next version, with every signature so far (base64 of canonical CBOR).
    pub policy_envelope: Option<String>,
    /// A root rotation's companion: the freeze statement re-signed as the
    /// next sequence, with every signature so far.
    pub freeze_envelope: Option<String>,
    pub signed_by: Vec<ProposalSignerView>,
    /// Signatures so far against each threshold the statement must meet
    /// (a freeze meets either).
    pub thresholds: Vec<ThresholdView>,
    /// The statement, decoded (for people; check the envelope itself).
    #[schema(value_type = Object)]
    pub summary: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposalRequest {
    /// The signed statement: base64 of its canonical CBOR envelope.
    pub envelope: String,
    /// A root rotation only: the current policy re-signed as the next
    /// version (base64 of its envelope), published before the root.
    #[serde(default)]
    pub policy_envelope: Option<String>,
    /// A root rotation only: the freeze statement re-signed as the next
    /// sequence, as it is (frozen or not), published before the root.
    #[serde(default)]
    pub freeze_envelope: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposalSignatureRequest {
    /// The root key (hex key id, as `bulwark keys list` shows it).
    pub key_id: String,
    /// Ed25519 signature over the envelope's signing bytes (base64 of 64 bytes).
    pub signature: String,
    /// The same key's signature over each companion of a root rotation
    /// (one per companion the proposal carries; none otherwise).
    #[serde(default)]
    pub companions: Vec<CompanionSignature>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompanionSignature {
    /// "policy" or "freeze".
    pub kind: String,
    /// Ed25519 signature over that companion envelope's signing bytes
    /// (base64 of 64 bytes).
    pub signature: String,
}
