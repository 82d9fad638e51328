//! RFC 6962 / RFC 9162 §2.1.1 Merkle tree hashing over SHA-256.
//!
//! ```text
//! MTH({})      = SHA-256()
//! MTH({d(0)})  = SHA-256(0x00 || d(0))
//! MTH(D[n])    = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))   k = largest power of two < n
//! ```

use std::fmt;

use sha2::{Digest, Sha256};

/// Length of every hash in the tree, and of every proof component.
pub const HASH_LEN: usize = 32;

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// A SHA-256 tree hash: a leaf hash, an interior node hash or a root.
/// Made from bytes only through [`Hash::try_from`], so a hash of the wrong
/// length cannot exist inside the crate.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; HASH_LEN]);

impl Hash {
    /// The root of the empty tree: SHA-256 of the empty string.
    pub fn empty_tree() -> Hash {
        Hash(Sha256::digest([]).into())
    }

    pub fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }
}

impl TryFrom<&[u8]> for Hash {
    type Error = WrongHashLength;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        <[u8; HASH_LEN]>::try_from(bytes)
            .map(Hash)
            .map_err(|_| WrongHashLength(bytes.len()))
    }
}

/// A byte string offered as a hash is not exactly 32 bytes long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a hash must be exactly 32 bytes, this one is {0}")]
pub struct WrongHashLength(pub usize);

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The leaf hash of one log entry: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(data);
    Hash(h.finalize().into())
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([NODE_PREFIX]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// RFC 6962 §2.1: the largest power of two strictly smaller than `n`.
/// Defined for `n >= 2`; returns 0 for smaller `n`.
pub fn split_point(n: u64) -> u64 {
    if n < 2 {
        0
    } else {
        1 << (63 - (n - 1).leading_zeros())
    }
}

/// The Merkle Tree Hash of a list of leaf hashes, by the recursive definition.
/// O(n) time; meant for small trees and for tests. The log itself uses
/// [`crate::Frontier`] (incremental) or stored subtree hashes.
pub fn root_of_leaf_hashes(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => Hash::empty_tree(),
        [one] => *one,
        _ => {
            // `split_point(n) < n` for n >= 2, so both halves are non-empty.
            let k = split_point(leaves.len() as u64) as usize;
            node_hash(
                &root_of_leaf_hashes(&leaves[..k]),
                &root_of_leaf_hashes(&leaves[k..]),
            )
        }
    }
}

/// The Merkle Tree Hash of a list of entries (hashing each as a leaf first).
pub fn root_of<T: AsRef<[u8]>>(entries: &[T]) -> Hash {
    let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e.as_ref())).collect();
    root_of_leaf_hashes(&leaves)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_point_is_the_largest_power_of_two_below_n() {
        let got: Vec<u64> = (0..=10).map(split_point).collect();
        assert_eq!(got, [0, 0, 1, 2, 2, 4, 4, 4, 4, 8, 8]);
        assert_eq!(split_point(u64::MAX), 1 << 63);
        assert_eq!(split_point((1 << 63) + 1), 1 << 63);
        assert_eq!(split_point(1 << 63), 1 << 62);
    }

    #[test]
    fn empty_tree_is_sha256_of_nothing() {
        assert_eq!(
            Hash::empty_tree().to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn hashes_of_the_wrong_length_cannot_be_made() {
        assert_eq!(Hash::try_from(&[0u8; 31][..]), Err(WrongHashLength(31)));
        assert_eq!(Hash::try_from(&[0u8; 33][..]), Err(WrongHashLength(33)));
        assert_eq!(Hash::try_from(&[][..]), Err(WrongHashLength(0)));
        assert!(Hash::try_from(&[0u8; 32][..]).is_ok());
    }
}
