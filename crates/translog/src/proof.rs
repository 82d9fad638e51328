//! Inclusion and consistency proofs (RFC 9162 §2.1.3 and §2.1.4).
//!
//! **Generation** works from a store of complete-subtree hashes (see
//! [`crate::tree`]): [`inclusion_plan`] / [`consistency_plan`] say which
//! [`NodeId`]s to read, at most ~2 × log2(n) of them, so a server can fetch
//! them in one batched query; [`ProofPlan::assemble`] turns the hashes read
//! into the proof. At most one proof component is not a stored subtree: the
//! "ephemeral" node on the right edge of the tree, which `assemble` folds
//! from the compact range covering it. [`inclusion_proof`] and
//! [`consistency_proof`] do both steps over a `hash_at(NodeId)` callback.
//!
//! **Verification** ([`verify_inclusion`], [`verify_consistency`]) follows
//! RFC 9162 §2.1.3.2 and §2.1.4.2 step by step; the step numbers are in the
//! comments. Proof bytes from the wire become `[Hash]` only through
//! [`parse_proof`] / [`parse_concatenated_proof`], which refuse any
//! component that is not exactly 32 bytes and any proof over
//! [`Limits::max_proof_hashes`].

use std::ops::Range;

use crate::Limits;
use crate::hash::{HASH_LEN, Hash, node_hash};
use crate::tree::{NodeId, range_nodes};

/// Why a proof is refused, or cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("a consistency proof from the empty tree (size 0) is not defined")]
    OldSizeZero,
    #[error("the old tree size {old} is larger than the new tree size {new}")]
    OldSizeLarger { old: u64, new: u64 },
    #[error("between equal tree sizes the proof must be empty, it has {0} hashes")]
    NonEmptyForEqualSizes(usize),
    #[error("the two tree heads have the same size but different roots: the log forked")]
    EqualSizesDifferentRoots,
    #[error("the consistency proof is empty")]
    EmptyProof,
    #[error("the proof has more hashes than this tree size allows")]
    TooManyHashes,
    #[error("the proof has fewer hashes than this tree size needs")]
    TooFewHashes,
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
    #[error("the proof does not lead to the expected old root")]
    OldRootMismatch,
    #[error("proof hash {position} is {len} bytes, not 32")]
    WrongHashLength { position: usize, len: usize },
    #[error("the proof is {len} bytes, not a multiple of 32")]
    RaggedProof { len: usize },
    #[error("the proof has {len} hashes, more than the limit of {max}")]
    ProofTooLong { len: usize, max: usize },
    #[error("the store returned {got} hashes for a plan of {expected} nodes")]
    WrongNodeCount { expected: usize, got: usize },
}

/// Checks each wire component is exactly one hash, and the count is within limits.
pub fn parse_proof<B: AsRef<[u8]>>(
    components: &[B],
    limits: &Limits,
) -> Result<Vec<Hash>, ProofError> {
    if components.len() > limits.max_proof_hashes {
        return Err(ProofError::ProofTooLong {
            len: components.len(),
            max: limits.max_proof_hashes,
        });
    }
    components
        .iter()
        .enumerate()
        .map(|(position, c)| {
            let c = c.as_ref();
            Hash::try_from(c).map_err(|_| ProofError::WrongHashLength {
                position,
                len: c.len(),
            })
        })
        .collect()
}

/// Parses a proof sent as its hashes concatenated (RFC 6962's wire form).
pub fn parse_concatenated_proof(bytes: &[u8], limits: &Limits) -> Result<Vec<Hash>, ProofError> {
    if !bytes.len().is_multiple_of(HASH_LEN) {
        return Err(ProofError::RaggedProof { len: bytes.len() });
    }
    let chunks: Vec<&[u8]> = bytes.chunks(HASH_LEN).collect();
    parse_proof(&chunks, limits)
}

/// The hashes of a proof concatenated, for the wire.
pub fn concatenate_proof(proof: &[Hash]) -> Vec<u8> {
    proof.iter().flat_map(|h| h.0).collect()
}

/// Which stored subtree hashes make up a proof, and how to combine them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofPlan {
    ids: Vec<NodeId>,
    /// The nodes (smallest first) that fold into the ephemeral right-edge node.
    ephemeral: Range<usize>,
}

impl ProofPlan {
    /// The complete subtrees to read, in the order [`ProofPlan::assemble`] wants them.
    pub fn node_ids(&self) -> &[NodeId] {
        &self.ids
    }

    /// Builds the proof from the hashes of [`ProofPlan::node_ids`], in that order.
    pub fn assemble(&self, hashes: &[Hash]) -> Result<Vec<Hash>, ProofError> {
        if hashes.len() != self.ids.len() {
            return Err(ProofError::WrongNodeCount {
                expected: self.ids.len(),
                got: hashes.len(),
            });
        }
        let mut proof = Vec::with_capacity(hashes.len());
        proof.extend_from_slice(&hashes[..self.ephemeral.start]);
        // The ephemeral node: the compact range to its right, folded right to left.
        if let Some((first, rest)) = hashes[self.ephemeral.clone()].split_first() {
            proof.push(
                rest.iter()
                    .fold(*first, |right, left| node_hash(left, &right)),
            );
        }
        proof.extend_from_slice(&hashes[self.ephemeral.end..]);
        Ok(proof)
    }
}

/// The plan for the path from the complete subtree `(level, index)` to the
/// root of the tree of `size` leaves (the node itself not included).
/// Precondition: the subtree is complete, `(index + 1) << level <= size`.
fn path_plan(node: NodeId, size: u64) -> ProofPlan {
    // The fork is the ancestor of `node` whose sibling holds the right edge
    // of the tree: where the paths to `node` and to leaf `size` part.
    let diff = node.index ^ (size >> node.level);
    // `diff != 0` because `node.index < size >> node.level` (precondition).
    let inner = 63 - diff.leading_zeros() as u8;
    let fork = NodeId::new(node.level + inner, node.index >> inner);
    let begin = fork.first_leaf();
    // The fork is complete, so `begin + 2^level <= size` and this cannot overflow.
    let end = begin + (1u64 << fork.level);

    let mut ids = Vec::new();
    // Siblings from the node up to the fork: all complete subtrees.
    let mut at = node;
    while at.level < fork.level {
        ids.push(at.sibling());
        at = at.parent();
    }
    // The fork's sibling covers `[end, size)`: ephemeral unless that is one subtree.
    let start = ids.len();
    ids.extend(range_nodes(end, size).into_iter().rev());
    let ephemeral = start..ids.len();
    // Above the fork every sibling is to the left: the compact range of `[0, begin)`.
    ids.extend(range_nodes(0, begin).into_iter().rev());
    ProofPlan { ids, ephemeral }
}

/// Which subtrees make up the inclusion proof of leaf `index` in a tree of `size`.
pub fn inclusion_plan(index: u64, size: u64) -> Result<ProofPlan, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    Ok(path_plan(NodeId::new(0, index), size))
}

/// Which subtrees make up the consistency proof from `old_size` to `new_size`.
/// Empty for equal sizes; an error from size 0.
pub fn consistency_plan(old_size: u64, new_size: u64) -> Result<ProofPlan, ProofError> {
    check_sizes(old_size, new_size)?;
    if old_size == new_size {
        return Ok(ProofPlan {
            ids: Vec::new(),
            ephemeral: 0..0,
        });
    }
    // The last complete subtree of the old tree's compact range.
    let level = old_size.trailing_zeros() as u8;
    let node = NodeId::new(level, (old_size - 1) >> level);
    let mut plan = path_plan(node, new_size);
    // When the old size is a power of two that subtree is the old root, which
    // the verifier already has (RFC 9162 §2.1.4.1); otherwise it comes first.
    if node.index != 0 {
        plan.ids.insert(0, node);
        plan.ephemeral = plan.ephemeral.start + 1..plan.ephemeral.end + 1;
    }
    Ok(plan)
}

/// The preconditions of a consistency proof (RFC 9162 §2.1.4.2): 0 < first <= second.
fn check_sizes(old_size: u64, new_size: u64) -> Result<(), ProofError> {
    if old_size == 0 {
        return Err(ProofError::OldSizeZero);
    }
    if old_size > new_size {
        return Err(ProofError::OldSizeLarger {
            old: old_size,
            new: new_size,
        });
    }
    Ok(())
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves, from a
/// store of complete-subtree hashes (at most ~2 × log2(size) reads).
pub fn inclusion_proof<E: From<ProofError>>(
    index: u64,
    size: u64,
    hash_at: impl FnMut(NodeId) -> Result<Hash, E>,
) -> Result<Vec<Hash>, E> {
    run_plan(inclusion_plan(index, size)?, hash_at)
}

/// The consistency proof from the tree of `old_size` leaves to the tree of
/// `new_size`, from a store of complete-subtree hashes.
pub fn consistency_proof<E: From<ProofError>>(
    old_size: u64,
    new_size: u64,
    hash_at: impl FnMut(NodeId) -> Result<Hash, E>,
) -> Result<Vec<Hash>, E> {
    run_plan(consistency_plan(old_size, new_size)?, hash_at)
}

fn run_plan<E: From<ProofError>>(
    plan: ProofPlan,
    hash_at: impl FnMut(NodeId) -> Result<Hash, E>,
) -> Result<Vec<Hash>, E> {
    let hashes = plan
        .ids
        .iter()
        .copied()
        .map(hash_at)
        .collect::<Result<Vec<_>, E>>()?;
    Ok(plan.assemble(&hashes)?)
}

/// Verifies that `leaf_hash` is leaf `index` of the tree of `size` leaves
/// whose root is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    // 1. If leaf_index >= tree_size, fail.
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    // 2. Set fn to leaf_index and sn to tree_size - 1.
    let (mut fn_, mut sn) = (index, size - 1);
    // 3. Set r to hash.
    let mut r = *leaf_hash;
    // 4. For each value p in the inclusion_path array:
    for p in proof {
        // 4a. If sn is 0, stop the iteration and fail.
        if sn == 0 {
            return Err(ProofError::TooManyHashes);
        }
        // 4b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn_ & 1 == 1 || fn_ == sn {
            // 4b.i. Set r to HASH(0x01 || p || r).
            r = node_hash(p, &r);
            // 4b.ii. If LSB(fn) is not set, right-shift both fn and sn
            // equally until either LSB(fn) is set or fn is 0.
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            // Otherwise: set r to HASH(0x01 || r || p).
            r = node_hash(&r, p);
        }
        // 4c. Finally, right-shift both fn and sn one time.
        fn_ >>= 1;
        sn >>= 1;
    }
    // 5. Compare sn to 0 and r against root_hash: both must hold.
    if sn != 0 {
        return Err(ProofError::TooFewHashes);
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies that the tree of `old_size` leaves with root `old_root` is a
/// prefix of the tree of `new_size` leaves with root `new_root`
/// (RFC 9162 §2.1.4.2). From size 0 this is an error; between equal sizes
/// the proof must be empty and the roots equal.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    // Preconditions of §2.1.4.2: 0 < first <= second.
    check_sizes(old_size, new_size)?;
    // §2.1.4.1: the proof between equal sizes is empty, and the roots match.
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::NonEmptyForEqualSizes(proof.len()));
        }
        if old_root != new_root {
            return Err(ProofError::EqualSizesDifferentRoots);
        }
        return Ok(());
    }
    // 1. If consistency_path is an empty array, stop and fail.
    let Some((head, tail)) = proof.split_first() else {
        return Err(ProofError::EmptyProof);
    };
    // 2. If first is an exact power of 2, prepend first_hash to consistency_path.
    let (first_value, rest) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        (head, tail)
    };
    // 3. Set fn to first - 1 and sn to second - 1.
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    // 4. If LSB(fn) is set, right-shift both fn and sn equally until LSB(fn) is not set.
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // 5. Set both fr and sr to the first value in the consistency_path array.
    let (mut fr, mut sr) = (*first_value, *first_value);
    // 6. For each subsequent value c in the consistency_path array:
    for c in rest {
        // 6a. If sn is 0, stop the iteration and fail.
        if sn == 0 {
            return Err(ProofError::TooManyHashes);
        }
        // 6b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn_ & 1 == 1 || fn_ == sn {
            // 6b.i. Set fr to HASH(0x01 || c || fr). Set sr to HASH(0x01 || c || sr).
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            // 6b.ii. If LSB(fn) is not set, right-shift both fn and sn
            // equally until either LSB(fn) is set or fn is 0.
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            // Otherwise: set sr to HASH(0x01 || sr || c).
            sr = node_hash(&sr, c);
        }
        // 6c. Finally, right-shift both fn and sn one time.
        fn_ >>= 1;
        sn >>= 1;
    }
    // 7. Check fr equals first_hash, sr equals second_hash, and sn is 0.
    if sn != 0 {
        return Err(ProofError::TooFewHashes);
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}
