//! Every size and count cap of the crate, in one place (tough's `Limits` is
//! the model). Decoders check these before doing any work proportional to
//! the input.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest signed note accepted, in bytes. Default 64 KiB: a checkpoint
    /// body is ~100 bytes and an Ed25519 signature line ~100 more, so this
    /// leaves room for many cosignatures, even post-quantum ones.
    pub max_note_bytes: usize,
    /// Most lines in a note, text and signature lines together. Default 128.
    pub max_note_lines: usize,
    /// Most signature lines in a note. Default 32 (the signed-note spec asks
    /// verifiers to accept at least 16).
    pub max_signatures: usize,
    /// Longest checkpoint origin (and key name), in bytes. Default 256.
    pub max_origin_bytes: usize,
    /// Most hashes in one inclusion or consistency proof. Default 64: no
    /// inclusion proof in a tree of at most `u64::MAX` leaves is longer, nor
    /// any consistency proof in a tree of fewer than 2^63 leaves.
    pub max_proof_hashes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_note_bytes: 64 * 1024,
            max_note_lines: 128,
            max_signatures: 32,
            max_origin_bytes: 256,
            max_proof_hashes: 64,
        }
    }
}
