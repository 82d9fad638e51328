//! Complete subtrees, compact ranges and the frontier.
//!
//! A **complete subtree** is named by a [`NodeId`] `(level, index)`: it holds
//! the `2^level` leaves `[index * 2^level, (index + 1) * 2^level)`. Once all
//! its leaves are in the log its hash never changes, so a store can persist
//! it the moment it is completed ([`Frontier::append_with`] reports each one)
//! and serve proofs from it later with O(log n) reads (see [`crate::proof`]).
//!
//! Any range of leaves `[begin, end)` is covered by a unique shortest list of
//! complete subtrees, its **compact range** ([`range_nodes`]). For `[0, size)`
//! that is one subtree per set bit of `size`, largest first: the right edge of
//! the tree, or **frontier**. Folding those hashes from the right gives the
//! RFC 6962 root, which is how [`Frontier`] keeps the root of a growing log in
//! O(log n) memory: what the appender (server) and a verifier replaying the
//! whole log (`audit verify` over millions of entries) both use.

use crate::hash::{Hash, node_hash};

/// A complete subtree: `2^level` leaves starting at leaf `index * 2^level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// 0 for a leaf; at most 63.
    pub level: u8,
    pub index: u64,
}

impl NodeId {
    pub const fn new(level: u8, index: u64) -> Self {
        Self { level, index }
    }

    /// The first leaf this subtree covers.
    pub const fn first_leaf(&self) -> u64 {
        self.index << self.level
    }

    /// The other child of this node's parent.
    pub const fn sibling(&self) -> Self {
        Self::new(self.level, self.index ^ 1)
    }

    pub const fn parent(&self) -> Self {
        Self::new(self.level + 1, self.index >> 1)
    }
}

/// The compact range of `[begin, end)`: the shortest list of complete
/// subtrees covering exactly those leaves, left to right. Empty if
/// `begin >= end`. At most 2 × 64 nodes.
pub fn range_nodes(begin: u64, end: u64) -> Vec<NodeId> {
    let mut out = Vec::new();
    let mut at = begin;
    while at < end {
        // The largest subtree that starts at `at` (alignment) and fits before `end`.
        let aligned = if at == 0 { 63 } else { at.trailing_zeros() };
        let fits = 63 - (end - at).leading_zeros();
        let level = aligned.min(fits);
        out.push(NodeId::new(level as u8, at >> level));
        // `at + 2^level <= end`, so this cannot overflow.
        at += 1 << level;
    }
    out
}

/// The node ids whose hashes make up the frontier of a tree of `size` leaves,
/// largest first. Their count is `size.count_ones()`.
pub fn frontier_nodes(size: u64) -> Vec<NodeId> {
    range_nodes(0, size)
}

/// Folds the hashes of a compact range `[0, size)` (largest first) into the
/// RFC 6962 root. The empty list gives the empty-tree hash.
pub fn fold_frontier(hashes: &[Hash]) -> Hash {
    let mut iter = hashes.iter().rev();
    match iter.next() {
        None => Hash::empty_tree(),
        Some(last) => iter.fold(*last, |right, left| node_hash(left, &right)),
    }
}

/// The root of the tree of `size` leaves, from a store of complete-subtree
/// hashes: `size.count_ones()` reads, at most 64.
pub fn root_from_store<E>(
    size: u64,
    hash_at: impl FnMut(NodeId) -> Result<Hash, E>,
) -> Result<Hash, E> {
    Ok(Frontier::from_store(size, hash_at)?.root())
}

/// The log already holds `u64::MAX` leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the log is full: it already holds u64::MAX entries")]
pub struct TreeFull;

/// The frontier does not have one hash per set bit of its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a frontier of size {size} needs {expected} hashes, {got} were given")]
pub struct BadFrontier {
    pub size: u64,
    pub expected: u32,
    pub got: usize,
}

/// The right edge of an append-only tree `[0, size)`: O(log n) hashes from
/// which the root follows, and to which leaves can be appended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    /// One hash per set bit of `size`, the largest subtree first.
    hashes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Restores a frontier from its persisted parts (the hashes of
    /// [`frontier_nodes`]`(size)`, in that order).
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self, BadFrontier> {
        if hashes.len() != size.count_ones() as usize {
            return Err(BadFrontier {
                size,
                expected: size.count_ones(),
                got: hashes.len(),
            });
        }
        Ok(Self { size, hashes })
    }

    /// Restores a frontier from a store of complete-subtree hashes.
    pub fn from_store<E>(
        size: u64,
        mut hash_at: impl FnMut(NodeId) -> Result<Hash, E>,
    ) -> Result<Self, E> {
        let hashes = frontier_nodes(size)
            .into_iter()
            .map(&mut hash_at)
            .collect::<Result<Vec<_>, E>>()?;
        Ok(Self { size, hashes })
    }

    /// Number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The frontier hashes, largest subtree first; ids are [`frontier_nodes`]`(size)`.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// The RFC 6962 root of the leaves appended so far.
    pub fn root(&self) -> Hash {
        fold_frontier(&self.hashes)
    }

    /// Appends one leaf hash.
    pub fn append(&mut self, leaf: Hash) -> Result<(), TreeFull> {
        self.append_with(leaf, |_, _| {})
    }

    /// Appends one leaf hash and reports each complete subtree this append
    /// finishes (the leaf itself, then every parent it completes, bottom up):
    /// exactly what a store must persist to serve proofs later.
    pub fn append_with(
        &mut self,
        leaf: Hash,
        mut completed: impl FnMut(NodeId, &Hash),
    ) -> Result<(), TreeFull> {
        let new_size = self.size.checked_add(1).ok_or(TreeFull)?;
        let mut node = NodeId::new(0, self.size);
        let mut hash = leaf;
        completed(node, &hash);
        // Each trailing 1 bit of the old size is a left sibling waiting for us.
        while node.index & 1 == 1 {
            // Invariant: one stored hash per set bit of `size`, so a set bit has one.
            let Some(left) = self.hashes.pop() else {
                unreachable!("frontier holds one hash per set bit of its size")
            };
            hash = node_hash(&left, &hash);
            node = node.parent();
            completed(node, &hash);
        }
        self.hashes.push(hash);
        self.size = new_size;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{leaf_hash, root_of_leaf_hashes};

    fn check(begin: u64, end: u64, expect: &[(u8, u64)]) {
        let got: Vec<(u8, u64)> = range_nodes(begin, end)
            .iter()
            .map(|n| (n.level, n.index))
            .collect();
        assert_eq!(got, expect, "range_nodes({begin}, {end})");
    }

    #[test]
    fn compact_ranges() {
        check(0, 0, &[]);
        check(5, 5, &[]);
        check(0, 1, &[(0, 0)]);
        check(0, 7, &[(2, 0), (1, 2), (0, 6)]);
        check(0, 8, &[(3, 0)]);
        check(3, 13, &[(0, 3), (2, 1), (2, 2), (0, 12)]);
        // The largest tree: one subtree per level, each starting where the last ended.
        let nodes = frontier_nodes(u64::MAX);
        let levels: Vec<u8> = nodes.iter().map(|n| n.level).collect();
        assert_eq!(levels, (0..64u8).rev().collect::<Vec<_>>());
        let mut at = 0u64;
        for n in &nodes {
            assert_eq!(n.first_leaf(), at);
            at += 1 << n.level;
        }
        assert_eq!(frontier_nodes(u64::MAX).len(), 64);
    }

    #[test]
    fn frontier_root_matches_the_recursive_definition() {
        let mut f = Frontier::new();
        let mut leaves = Vec::new();
        assert_eq!(f.root(), Hash::empty_tree());
        for i in 0u32..70 {
            let leaf = leaf_hash(&i.to_be_bytes());
            leaves.push(leaf);
            f.append(leaf).expect("not full");
            assert_eq!(f.root(), root_of_leaf_hashes(&leaves), "size {}", i + 1);
            assert_eq!(f.hashes().len(), f.size().count_ones() as usize);
        }
    }

    #[test]
    fn a_full_log_refuses_more() {
        let mut f = Frontier::from_parts(u64::MAX, vec![Hash([0; 32]); 64]).expect("64 hashes");
        assert_eq!(f.append(Hash([1; 32])), Err(TreeFull));
    }

    #[test]
    fn from_parts_checks_the_count() {
        assert_eq!(
            Frontier::from_parts(6, vec![Hash([0; 32])]),
            Err(BadFrontier {
                size: 6,
                expected: 2,
                got: 1
            })
        );
    }
}
