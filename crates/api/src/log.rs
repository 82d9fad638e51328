//! The transparency logs (the MSP's and each tenant's): heads, entries, proofs,
//! signed checkpoints, the statements they hold and announced exports.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The detail of a `log.archived` entry, in the MSP log and in the archived
/// log itself: the range of entries archived and the root of the tree that
/// ends with it, which the archive's files must reproduce. An auditor of
/// the log reads it back with [`parse_archived_detail`] to tell archived
/// entries from deleted ones.
pub fn archived_detail(from: u64, below: u64, root: &[u8; 32]) -> String {
    format!("archived [{from}, {below}) root {}", hex::encode(root))
}

/// The range `[from, below)` and root of a `log.archived` entry's detail.
pub fn parse_archived_detail(detail: &str) -> Option<(u64, u64, [u8; 32])> {
    let rest = detail.strip_prefix("archived [")?;
    let (from, rest) = rest.split_once(", ")?;
    let (below, rest) = rest.split_once(") root ")?;
    let root = rest.split(' ').next()?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(root, &mut bytes).ok()?;
    let (from, below): (u64, u64) = (from.parse().ok()?, below.parse().ok()?);
    (from < below).then_some((from, below, bytes))
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogKeyView {
    /// The log's public key as a Go signed-note verifier key
    /// (`<name>+<key id, 8 hex digits>+<base64 of 0x01 || Ed25519 public key>`):
    /// every checkpoint `note` is signed by it. Pin it, and compare it out of band.
    pub vkey: String,
    /// The key's name: each log's checkpoint origin is `<key_name>/<log id>`.
    pub key_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckpointView {
    /// The tree size this checkpoint signs.
    pub size: u64,
    /// The signed C2SP checkpoint, verbatim: the lines `<origin>`, `<size>`,
    /// `<base64 root>`, a blank line, then Go signed-note signature lines
    /// (`— <key name> <base64 of 4-byte key id || 64-byte Ed25519 signature>`).
    /// Verify it with the key of `GET /api/v1/log/key`.
    pub note: String,
    /// When it was signed (unix milliseconds).
    pub signed_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogHeadView {
    /// `msp`, or the tenant's id (never its name).
    pub log_id: String,
    /// The checkpoints' origin line: `<key name>/<log id>`.
    pub origin: String,
    /// Entries in the log.
    pub size: u64,
    /// Standard base64 of the 32-byte RFC 6962 root of those entries
    /// (of the empty tree, SHA-256 of nothing, for an empty log).
    pub root: String,
    /// A signed head covering at least `size` entries (signed on request
    /// if none did); `null` only for a log that never held an entry.
    pub checkpoint: Option<CheckpointView>,
    /// Entries `0` to `archived_below - 1` are past the retention period:
    /// they were archived on the server (`data_dir/archive/<log id>/`, in
    /// the export format) and `…/entries` answers 410 Gone for them. Their
    /// subtree hashes stay, so inclusion and consistency proofs still work.
    /// 0: nothing archived.
    pub archived_below: u64,
    /// When `archived_below > 0`: the compact range of the archived entries,
    /// i.e. the hashes (standard base64) of the complete subtrees covering
    /// `[0, archived_below)`, largest first. Their RFC 9162 fold is the root
    /// at size `archived_below` (a signed head of that size exists), so a
    /// verifier without the archive checks the rest of the log from here.
    pub archived_frontier: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogEntryView {
    /// The entry's index, from 0.
    pub index: u64,
    /// Standard base64 (padded) of the exact leaf bytes; the tree holds
    /// `SHA-256(0x00 || leaf)`. For audit events, the canonical CBOR of
    /// RFD 0003's "Audit event leaf, version 1".
    pub leaf: String,
    /// When it was appended (unix milliseconds; not part of the leaf).
    pub at: i64,
    /// Standard base64 of the 32-byte leaf hash the tree holds at this
    /// index, stored apart from `leaf`: `SHA-256(0x00 || leaf)` for an
    /// intact entry. Exports keep it, so that an entry changed later is
    /// named offline (RFD 0003, "Export format").
    pub hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogEntriesView {
    /// Up to `limit` entries from `start`, in index order (fewer at the end
    /// of the log).
    pub entries: Vec<LogEntryView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogCheckpointsView {
    /// Stored signed heads with `size >= from_size`, smallest first.
    pub checkpoints: Vec<CheckpointView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InclusionProofView {
    pub index: u64,
    pub tree_size: u64,
    /// The RFC 9162 §2.1.3 inclusion path, each hash standard base64 of 32 bytes.
    pub hashes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConsistencyProofView {
    pub from: u64,
    pub to: u64,
    /// The RFC 9162 §2.1.4 consistency path, each hash standard base64 of 32 bytes.
    pub hashes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EntriesQuery {
    /// First index (default 0). Below the head's `archived_below`: 410 Gone.
    #[param(maximum = 9_223_372_036_854_775_807_u64)]
    pub start: Option<u64>,
    /// At most this many entries, 1 to 1000 (default 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CheckpointsQuery {
    /// Smallest tree size (default 0).
    #[param(maximum = 9_223_372_036_854_775_807_u64)]
    pub from_size: Option<u64>,
    /// At most this many checkpoints, 1 to 1000 (default 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InclusionQuery {
    /// The entry's index; below `tree_size`.
    #[param(maximum = 9_223_372_036_854_775_807_u64)]
    pub index: u64,
    /// The size of the tree to prove inclusion in; at least 1 and at most
    /// the log's size.
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_u64)]
    pub tree_size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    /// The older tree size, at least 1.
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_u64)]
    pub from: u64,
    /// The newer tree size, at least `from` and at most the log's size.
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_u64)]
    pub to: u64,
}

/// Why the caller reads the log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Copy)]
#[serde(rename_all = "snake_case")]
pub enum ExportPurpose {
    /// `bulwark audit verify`, or any check of the log.
    Verify,
    /// `bulwark audit export`, or any copy of the log.
    Export,
}

impl ExportPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verify => "verify",
            Self::Export => "export",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// `verify` or `export`.
    pub purpose: ExportPurpose,
    /// The size of the head the caller is about to read (the `size` of
    /// `GET …/log`); at most the log's current size.
    #[serde(deserialize_with = "crate::numbers::whole_number")]
    pub tree_size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExportRecorded {
    /// Always `log.exported`: the action of the event now in the log.
    pub action: String,
    /// The announced size.
    pub tree_size: u64,
}

/// A trust statement as published (base64 of its envelope).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrustStatementView {
    /// root, policy or freeze.
    pub kind: String,
    /// The root or policy version, or the freeze sequence.
    pub version: u64,
    pub envelope: String,
}

/// A job's envelope with every signature it gathered (base64).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobEnvelopeView {
    pub id: String,
    pub envelope: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogStatementsView {
    pub trust: Vec<TrustStatementView>,
    pub jobs: Vec<JobEnvelopeView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archived_details_read_back() {
        let detail = format!(
            "{} (older than 180 days) to /x",
            archived_detail(3, 9, &[7; 32])
        );
        assert_eq!(parse_archived_detail(&detail), Some((3, 9, [7; 32])));
        assert_eq!(parse_archived_detail("entries 0..5 archived to /x"), None);
        assert_eq!(
            parse_archived_detail(&archived_detail(9, 9, &[7; 32])),
            None
        );
    }
}
