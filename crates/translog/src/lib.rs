//! Bulwark's transparency log, the pure part: how entries are hashed into an
//! RFC 6962 / RFC 9162 Merkle tree, how inclusion and consistency are proven
//! and checked, and how the log signs its tree heads as C2SP checkpoints
//! (DESIGN.md invariant 4: every state change is logged, append-only,
//! verifiable offline).
//!
//! - [`hash`]: leaf and node hashing, the Merkle Tree Hash of a list.
//! - [`tree`]: complete subtrees ([`NodeId`]), compact ranges and the
//!   [`Frontier`], which appends leaves and yields the root in O(log n) memory.
//! - [`proof`]: proof generation from a store of complete-subtree hashes
//!   (O(log n) reads) and verification, step by step as RFC 9162 writes it.
//! - [`note`]: signed notes with Ed25519, byte-compatible with Go's
//!   `golang.org/x/mod/sumdb/note`.
//! - [`audit`]: the [`LogAuditor`], which streams a whole log's entries
//!   against its signed heads and names the first deleted, changed or
//!   truncated entry.
//! - [`checkpoint`]: signed tree heads, and [`check_extension`], which an
//!   agent runs to refuse a forked, truncated or rewritten log.
//!
//! Pure: no I/O, no clock, no serde. Every cap is in [`Limits`].

pub mod audit;
pub mod checkpoint;
pub mod cosignature;
pub mod hash;
pub mod note;
pub mod proof;
pub mod tree;

pub use audit::{
    AuditProblem, AuditSummary, LogAuditor, Pinpoint, pinpoint, pinpoint_by_leaf_hashes,
};
/// Every cap of the trust path, this crate's among them (`max_note_*`,
/// `max_origin_bytes`, `max_proof_hashes`).
pub use bulwark_protocol::Limits;
pub use checkpoint::{Checkpoint, ExtensionError, check_extension, verify_log_note, verify_note};
pub use cosignature::{CosignatureVerifier, Cosigner, cosignature_time_ranges, cosignature_times};
pub use hash::{HASH_LEN, Hash, leaf_hash, node_hash, root_of, root_of_leaf_hashes};
pub use note::{NoteError, NoteSigner, NoteVerifier, open_note};
pub use proof::{
    ProofError, consistency_proof, inclusion_proof, parse_proof, verify_consistency,
    verify_inclusion,
};
pub use tree::{Frontier, NodeId};

/// Entry point for the `checkpoint_note` fuzz target: a tree head and a
/// proof as an agent or auditor receives them from an untrusted server. Must
/// never panic.
#[cfg(fuzzing)]
pub fn fuzz_checkpoint(bytes: &[u8]) {
    let limits = Limits::default();
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    let Ok(verifier) = NoteVerifier::new("bulwark.example/fuzz", key) else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = verify_note(text, &verifier, &limits);
        let _ = verify_log_note(text, &verifier, &limits);
        let _ = Checkpoint::parse_body(text, &limits);
        let seed = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        if let Ok(w) = cosignature::Cosigner::new("w.example/w", seed) {
            let _ = cosignature::cosignature_times(text, &[w.verifier()], &limits);
        }
    }
    if let Ok(proof) = proof::parse_concatenated_proof(bytes, &limits) {
        let leaf = leaf_hash(b"fuzz");
        let _ = verify_inclusion(&leaf, 3, 8, &proof, &leaf);
        let _ = verify_consistency(3, 8, &leaf, &leaf, &proof);
    }
}
