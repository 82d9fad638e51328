//! Auditing a whole log from its entries: what `bulwark audit verify` runs
//! over a download or an export, pure and streaming.
//!
//! A [`LogAuditor`] is given the log's signed tree heads (notes already
//! opened with the pinned log key, see [`crate::verify_note`]) and,
//! optionally, a head the auditor saved on an earlier run. It is then fed
//! every entry's exact leaf bytes in index order and keeps only a
//! [`Frontier`] (O(log n) memory), so a log of any length streams through.
//!
//! It stops at the first problem, naming the entry (or range of entries) it
//! concerns:
//!
//! - indices must run 0, 1, 2, … without a hole: a missing index is a
//!   deleted entry ([`AuditProblem::Gap`]);
//! - when the tree reaches a signed head's size, its root must be that
//!   head's root; otherwise one of the entries since the last head that
//!   matched was changed, removed or inserted ([`AuditProblem::RootMismatch`];
//!   [`pinpoint`] finds which one, given per-entry inclusion proofs);
//! - two signed heads of one size with different roots are a fork
//!   ([`AuditProblem::ConflictingHeads`]);
//! - the saved head must still be there: the log at least as long, and the
//!   same root at its size ([`AuditProblem::Truncated`],
//!   [`AuditProblem::Rewritten`]);
//! - at the end, the log must be exactly as long as its latest signed head.

use std::collections::BTreeMap;
use std::fmt;

use crate::checkpoint::Checkpoint;
use crate::hash::{Hash, leaf_hash};
use crate::proof::verify_inclusion;
use crate::tree::Frontier;

/// The first thing wrong with a log. [`AuditProblem::index`] is the first
/// entry index it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditProblem {
    /// Entry `index` is missing (the next entry present is `next`): it was
    /// deleted.
    Gap { index: u64, next: u64 },
    /// An entry came with index `got` where `expected` was due (a repeated
    /// or reordered entry).
    OutOfOrder { expected: u64, got: u64 },
    /// The entries `from..size` (indices) do not give the root of the
    /// signed tree head of size `size`, although the entries before `from`
    /// gave the root of the signed head there: one of them was changed,
    /// removed or inserted, or that tree head was not made from these
    /// entries. [`pinpoint`] tells which.
    RootMismatch { from: u64, size: u64 },
    /// Two signed tree heads (or a signed head and the saved head) have
    /// size `size` and different roots: the log forked (a split view).
    ConflictingHeads { size: u64 },
    /// The log holds `size` entries, but a signed (or the saved) head says
    /// it had `expected`: entries from `size` on were removed.
    Truncated { size: u64, expected: u64 },
    /// The log's root at the saved head's size `size` is not the saved
    /// root; the entries `from..size` were rewritten since it was saved
    /// (`from`: the last size at which a signed head matched, 0 if none).
    Rewritten { from: u64, size: u64 },
    /// The log holds `size` entries, more than its latest signed head
    /// (`signed`): the entries from `signed` on are not covered by any
    /// signed head.
    Unsigned { signed: u64, size: u64 },
    /// Entries but no signed tree head at all.
    NoSignedHead { size: u64 },
    /// A tree head of another log.
    OriginMismatch { expected: String, found: String },
    /// A tree head of size 0 whose root is not the empty tree's.
    BadEmptyRoot,
    /// More entries than a tree can hold.
    TreeFull,
}

impl AuditProblem {
    /// The first entry index the problem concerns (for a fork, the size of
    /// the two heads; for a head of another log, 0).
    pub fn index(&self) -> u64 {
        match *self {
            AuditProblem::Gap { index, .. } => index,
            AuditProblem::OutOfOrder { got, .. } => got,
            AuditProblem::RootMismatch { from, .. } => from,
            AuditProblem::ConflictingHeads { size } => size,
            AuditProblem::Truncated { size, .. } => size,
            AuditProblem::Rewritten { from, .. } => from,
            AuditProblem::Unsigned { signed, .. } => signed,
            AuditProblem::NoSignedHead { .. }
            | AuditProblem::OriginMismatch { .. }
            | AuditProblem::BadEmptyRoot => 0,
            AuditProblem::TreeFull => u64::MAX,
        }
    }

    /// A short machine-readable name.
    pub fn code(&self) -> &'static str {
        match self {
            AuditProblem::Gap { .. } => "deleted_entry",
            AuditProblem::OutOfOrder { .. } => "out_of_order",
            AuditProblem::RootMismatch { .. } => "root_mismatch",
            AuditProblem::ConflictingHeads { .. } => "split_view",
            AuditProblem::Truncated { .. } => "truncated",
            AuditProblem::Rewritten { .. } => "rewritten",
            AuditProblem::Unsigned { .. } => "unsigned_entries",
            AuditProblem::NoSignedHead { .. } => "no_signed_head",
            AuditProblem::OriginMismatch { .. } => "origin_mismatch",
            AuditProblem::BadEmptyRoot => "bad_empty_root",
            AuditProblem::TreeFull => "tree_full",
        }
    }
}

impl fmt::Display for AuditProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditProblem::Gap { index, next } => write!(
                f,
                "entry {index} is missing (the next entry present is {next}): it was deleted"
            ),
            AuditProblem::OutOfOrder { expected, got } => write!(
                f,
                "entry {got} came where entry {expected} was due (repeated or reordered)"
            ),
            AuditProblem::RootMismatch { from, size } => write!(
                f,
                "entries {from} to {} do not give the root of the signed tree head of size \
                 {size}: one of them was changed, removed or inserted (or that head is forged)",
                size.saturating_sub(1)
            ),
            AuditProblem::ConflictingHeads { size } => write!(
                f,
                "two different tree heads were signed for size {size}: the log forked (split view)"
            ),
            AuditProblem::Truncated { size, expected } => write!(
                f,
                "the log holds {size} entries but a tree head says {expected}: entries from \
                 {size} on were removed"
            ),
            AuditProblem::Rewritten { from, size } => write!(
                f,
                "the log's root at size {size} is not the saved head's: entries {from} to {} \
                 were rewritten since it was saved",
                size.saturating_sub(1)
            ),
            AuditProblem::Unsigned { signed, size } => write!(
                f,
                "the log holds {size} entries but its latest signed tree head only {signed}: \
                 entries from {signed} on are not signed"
            ),
            AuditProblem::NoSignedHead { size } => {
                write!(f, "the log holds {size} entries and no signed tree head")
            }
            AuditProblem::OriginMismatch { expected, found } => {
                write!(f, "a tree head is of log {found:?}, not {expected:?}")
            }
            AuditProblem::BadEmptyRoot => {
                write!(
                    f,
                    "a tree head of size 0 does not have the empty tree's root"
                )
            }
            AuditProblem::TreeFull => write!(f, "more entries than a tree can hold"),
        }
    }
}

impl std::error::Error for AuditProblem {}

/// What a log that passed looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSummary {
    /// Entries checked (the size of the latest signed head).
    pub size: u64,
    /// Their root.
    pub root: Hash,
    /// Distinct signed tree heads whose root was checked.
    pub heads_checked: usize,
    /// Whether a saved head was checked.
    pub saved_head_checked: bool,
    /// The first entry replayed: 0, or where [`LogAuditor::resume`]
    /// started (entries below it were not replayed, e.g. archived).
    pub start: u64,
    /// Signed tree heads smaller than `start`, whose roots could not be
    /// checked by replay.
    pub heads_skipped: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Signed,
    Saved,
    Both,
}

/// A streaming auditor of one log (see the module documentation).
#[derive(Debug, Clone)]
pub struct LogAuditor {
    frontier: Frontier,
    /// Heads still to reach, by size: the root each must have.
    targets: BTreeMap<u64, (Hash, Target)>,
    /// The largest signed head's size (`None`: none at all).
    latest_signed: Option<u64>,
    saved_size: Option<u64>,
    /// The last size at which a signed head matched.
    last_good: u64,
    heads_checked: usize,
    /// Where the replay started (see [`LogAuditor::resume`]).
    start: u64,
    heads_skipped: usize,
    /// A saved head below `start`: not checked.
    saved_skipped: bool,
    failed: Option<AuditProblem>,
}

impl LogAuditor {
    /// An auditor of the log whose signed tree heads are `checkpoints`
    /// (any order, duplicates allowed), all of one origin, and whose head
    /// the auditor saved earlier is `saved` (if any; same origin).
    pub fn new(
        checkpoints: &[Checkpoint],
        saved: Option<&Checkpoint>,
    ) -> Result<Self, AuditProblem> {
        let origin = checkpoints.first().or(saved).map(Checkpoint::origin);
        let mut targets: BTreeMap<u64, (Hash, Target)> = BTreeMap::new();
        for head in checkpoints.iter().chain(saved) {
            if let Some(origin) = origin
                && head.origin() != origin
            {
                return Err(AuditProblem::OriginMismatch {
                    expected: origin.to_owned(),
                    found: head.origin().to_owned(),
                });
            }
            if head.size() == 0 && *head.root() != Hash::empty_tree() {
                return Err(AuditProblem::BadEmptyRoot);
            }
        }
        for head in checkpoints {
            match targets.get(&head.size()) {
                Some((root, _)) if root != head.root() => {
                    return Err(AuditProblem::ConflictingHeads { size: head.size() });
                }
                Some(_) => {}
                None => {
                    targets.insert(head.size(), (*head.root(), Target::Signed));
                }
            }
        }
        let latest_signed = checkpoints.iter().map(Checkpoint::size).max();
        if let Some(saved) = saved {
            match targets.get_mut(&saved.size()) {
                Some((root, _)) if root != saved.root() => {
                    return Err(AuditProblem::ConflictingHeads { size: saved.size() });
                }
                Some((_, kind)) => *kind = Target::Both,
                None => {
                    targets.insert(saved.size(), (*saved.root(), Target::Saved));
                }
            }
        }
        // Heads of size 0 hold for every log (their root was checked above).
        let heads_checked =
            usize::from(targets.remove(&0).is_some_and(|(_, k)| k != Target::Saved));
        Ok(Self {
            frontier: Frontier::new(),
            targets,
            latest_signed,
            saved_size: saved.map(Checkpoint::size),
            last_good: 0,
            heads_checked,
            start: 0,
            heads_skipped: 0,
            saved_skipped: false,
            failed: None,
        })
    }

    /// An auditor that does not replay the entries below `start.size()`
    /// (e.g. archived ones, whose leaves it does not have) but starts from
    /// `start`, the compact range of those entries (the hashes of the
    /// complete subtrees covering them, as [`Frontier::from_parts`] takes
    /// them): the next entry pushed must be `start.size()`.
    ///
    /// A signed head of exactly that size must have the start's root
    /// ([`AuditProblem::RootMismatch`] from 0 otherwise: the compact range is
    /// not of the signed log); that is what makes the start trustworthy, so
    /// the caller should make sure one exists. Heads smaller than the start
    /// cannot be checked by replay and are counted in
    /// [`AuditSummary::heads_skipped`]; a saved head smaller than it is not
    /// checked ([`AuditSummary::saved_head_checked`] false).
    pub fn resume(
        checkpoints: &[Checkpoint],
        saved: Option<&Checkpoint>,
        start: Frontier,
    ) -> Result<Self, AuditProblem> {
        let mut auditor = Self::new(checkpoints, saved)?;
        let size = start.size();
        let below: Vec<(u64, Hash, Target)> = auditor
            .targets
            .range(..=size)
            .map(|(s, (root, kind))| (*s, *root, *kind))
            .collect();
        for (head_size, root, kind) in below {
            auditor.targets.remove(&head_size);
            if head_size < size {
                if kind != Target::Saved {
                    auditor.heads_skipped += 1;
                }
                if kind != Target::Signed {
                    auditor.saved_skipped = true;
                }
                continue;
            }
            if start.root() != root {
                return Err(match kind {
                    Target::Saved => AuditProblem::Rewritten {
                        from: 0,
                        size: head_size,
                    },
                    Target::Signed | Target::Both => AuditProblem::RootMismatch {
                        from: 0,
                        size: head_size,
                    },
                });
            }
            if kind != Target::Saved {
                auditor.heads_checked += 1;
            }
        }
        auditor.last_good = size;
        auditor.start = size;
        auditor.frontier = start;
        Ok(auditor)
    }

    /// Entries fed so far.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The size of the latest signed tree head, if any: how many entries
    /// the log must hold.
    pub fn expected_size(&self) -> Option<u64> {
        self.latest_signed
    }

    /// The first problem found, if any.
    pub fn problem(&self) -> Option<&AuditProblem> {
        self.failed.as_ref()
    }

    fn fail(&mut self, problem: AuditProblem) -> Result<(), AuditProblem> {
        self.failed = Some(problem.clone());
        Err(problem)
    }

    /// Feeds entry `index` (its exact leaf bytes). Entries must come in
    /// index order from 0. After the first problem, every call returns it.
    pub fn push(&mut self, index: u64, leaf: &[u8]) -> Result<(), AuditProblem> {
        self.push_hash(index, leaf_hash(leaf))
    }

    /// [`LogAuditor::push`] with the leaf's hash already computed.
    pub fn push_hash(&mut self, index: u64, leaf: Hash) -> Result<(), AuditProblem> {
        if let Some(problem) = &self.failed {
            return Err(problem.clone());
        }
        let expected = self.frontier.size();
        if index > expected {
            return self.fail(AuditProblem::Gap {
                index: expected,
                next: index,
            });
        }
        if index < expected {
            return self.fail(AuditProblem::OutOfOrder {
                expected,
                got: index,
            });
        }
        if self.frontier.append(leaf).is_err() {
            return self.fail(AuditProblem::TreeFull);
        }
        let size = self.frontier.size();
        if let Some(&(root, kind)) = self.targets.get(&size) {
            self.targets.remove(&size);
            if self.frontier.root() != root {
                let problem = match kind {
                    Target::Saved => AuditProblem::Rewritten {
                        from: self.last_good,
                        size,
                    },
                    Target::Signed | Target::Both => AuditProblem::RootMismatch {
                        from: self.last_good,
                        size,
                    },
                };
                return self.fail(problem);
            }
            if kind != Target::Saved {
                self.last_good = size;
                self.heads_checked += 1;
            }
        }
        Ok(())
    }

    /// Ends the audit: the log must be exactly as long as its latest
    /// signed head, and at least as long as the saved head.
    pub fn finish(self) -> Result<AuditSummary, AuditProblem> {
        if let Some(problem) = self.failed {
            return Err(problem);
        }
        let size = self.frontier.size();
        let expected = self.latest_signed.max(self.saved_size);
        match expected {
            Some(expected) if size < expected => {
                return Err(AuditProblem::Truncated { size, expected });
            }
            None if size > 0 => return Err(AuditProblem::NoSignedHead { size }),
            _ => {}
        }
        if let Some(signed) = self.latest_signed
            && size > signed
        {
            return Err(AuditProblem::Unsigned { signed, size });
        }
        Ok(AuditSummary {
            size,
            root: self.frontier.root(),
            heads_checked: self.heads_checked,
            saved_head_checked: self.saved_size.is_some() && !self.saved_skipped,
            start: self.start,
            heads_skipped: self.heads_skipped,
        })
    }
}

/// Which entry of a [`AuditProblem::RootMismatch`] range is bad.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pinpoint {
    /// Entry `index` is the first whose leaf hash is not included in the
    /// signed tree head at the index the log gives it (changed, or moved by
    /// an insertion or removal before it), while others are.
    Entry(u64),
    /// No entry of the range is included under the signed head: the head
    /// itself was not made from this log (a forged or forked head), or
    /// every entry of the range was changed.
    Head,
    /// Every entry checked is included: the problem is not in them.
    None,
}

/// Finds the changed entry of a range that failed with
/// [`AuditProblem::RootMismatch`], from each entry's inclusion proof in
/// `head`'s tree (as the server gives them: what the server's tree holds at
/// that index). `entries`: (index, exact leaf bytes, inclusion proof), in
/// any order; the first index whose leaf does not verify is the edited
/// one, unless none verifies ([`Pinpoint::Head`]; a range of one entry that
/// does not verify is named as that entry).
pub fn pinpoint<'a, I>(head: &Checkpoint, entries: I) -> Pinpoint
where
    I: IntoIterator<Item = (u64, &'a [u8], &'a [Hash])>,
{
    let mut first_bad: Option<u64> = None;
    let mut any_good = false;
    let mut count = 0usize;
    for (index, leaf, proof) in entries {
        count += 1;
        let ok = verify_inclusion(&leaf_hash(leaf), index, head.size(), proof, head.root()).is_ok();
        if ok {
            any_good = true;
        } else if first_bad.is_none_or(|b| index < b) {
            first_bad = Some(index);
        }
    }
    match first_bad {
        None => Pinpoint::None,
        Some(index) if any_good || count == 1 => Pinpoint::Entry(index),
        Some(_) => Pinpoint::Head,
    }
}

/// Finds the changed entry offline, from the leaf hashes an export lists
/// beside its entries (what the server's tree held at each index; RFD
/// 0003, "Export format"). `start` is the compact range of the entries
/// before the first one given (empty from index 0); `entries` are (index,
/// exact leaf bytes, listed leaf hash) in index order, up to `head`'s size.
///
/// Only when the listed hashes, appended to `start`, give `head`'s root are
/// they the signed tree's leaves; then the first entry whose own hash is
/// not the listed one is the changed entry. Otherwise (the hashes were
/// changed too, or are missing) nothing can be said ([`Pinpoint::None`]).
pub fn pinpoint_by_leaf_hashes<I, L>(head: &Checkpoint, start: Frontier, entries: I) -> Pinpoint
where
    I: IntoIterator<Item = (u64, L, Hash)>,
    L: AsRef<[u8]>,
{
    let mut tree = start;
    let mut first_bad = None;
    for (index, leaf, listed) in entries {
        if index >= head.size() {
            break;
        }
        if index != tree.size() || tree.append(listed).is_err() {
            return Pinpoint::None;
        }
        if first_bad.is_none() && leaf_hash(leaf.as_ref()) != listed {
            first_bad = Some(index);
        }
    }
    if tree.size() != head.size() || tree.root() != *head.root() {
        return Pinpoint::None;
    }
    first_bad.map_or(Pinpoint::None, Pinpoint::Entry)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::proof::inclusion_proof;
    use crate::tree::NodeId;

    const ORIGIN: &str = "bulwark.example/bulwark-log/t1";

    fn leaves(n: usize, salt: u8) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("entry {i} {salt}").into_bytes())
            .collect()
    }

    /// The tree's complete subtrees and the root at each size.
    struct Tree {
        nodes: HashMap<NodeId, Hash>,
        roots: Vec<Hash>,
    }

    fn tree(leaves: &[Vec<u8>]) -> Tree {
        let mut frontier = Frontier::new();
        let mut nodes = HashMap::new();
        let mut roots = vec![Hash::empty_tree()];
        for leaf in leaves {
            frontier
                .append_with(leaf_hash(leaf), |id, h| {
                    nodes.insert(id, *h);
                })
                .expect("test data is valid");
            roots.push(frontier.root());
        }
        Tree { nodes, roots }
    }

    fn head(tree: &Tree, size: u64) -> Checkpoint {
        Checkpoint::new(ORIGIN, size, tree.roots[size as usize], vec![])
            .expect("test data is valid")
    }

    fn audit(
        entries: &[(u64, Vec<u8>)],
        heads: &[Checkpoint],
        saved: Option<&Checkpoint>,
    ) -> Result<AuditSummary, AuditProblem> {
        let mut auditor = LogAuditor::new(heads, saved)?;
        for (index, leaf) in entries {
            auditor.push(*index, leaf)?;
        }
        auditor.finish()
    }

    fn indexed(leaves: &[Vec<u8>]) -> Vec<(u64, Vec<u8>)> {
        leaves
            .iter()
            .enumerate()
            .map(|(i, l)| (i as u64, l.clone()))
            .collect()
    }

    /// Inclusion proofs of `range` in the honest tree of `size`, with the
    /// leaves `log` gives (possibly edited).
    fn pin(tree: &Tree, log: &[(u64, Vec<u8>)], from: u64, size: u64) -> Pinpoint {
        let cp = head(tree, size);
        let proofs: Vec<(u64, Vec<u8>, Vec<Hash>)> = log
            .iter()
            .filter(|(i, _)| (from..size).contains(i))
            .map(|(i, leaf)| {
                let proof =
                    inclusion_proof::<crate::ProofError>(*i, size, |id| Ok(tree.nodes[&id]))
                        .expect("test data is valid");
                (*i, leaf.clone(), proof)
            })
            .collect();
        pinpoint(
            &cp,
            proofs
                .iter()
                .map(|(i, l, p)| (*i, l.as_slice(), p.as_slice())),
        )
    }

    #[test]
    fn an_untouched_log_passes() {
        let log = leaves(10, 0);
        let t = tree(&log);
        let heads = [head(&t, 3), head(&t, 0), head(&t, 10), head(&t, 3)];
        let summary =
            audit(&indexed(&log), &heads, Some(&head(&t, 7))).expect("test data is valid");
        assert_eq!(summary.size, 10);
        assert_eq!(summary.root, t.roots[10]);
        assert_eq!(summary.heads_checked, 3);
        assert!(summary.saved_head_checked);
        // The empty log with its empty head.
        assert!(audit(&[], &[head(&t, 0)], None).is_ok());
        assert_eq!(
            audit(&[], &[], None).expect("test data is valid").size,
            0,
            "nothing to check, nothing wrong"
        );
    }

    /// Resuming from the compact range of an archived prefix checks the
    /// rest against the signed heads; a wrong compact range, or an edited
    /// entry after it, fails.
    #[test]
    fn resume_from_an_archived_prefix() {
        let log = leaves(13, 0);
        let t = tree(&log);
        let start = |n: u64| {
            let hashes = crate::tree::frontier_nodes(n)
                .into_iter()
                .map(|id| t.nodes[&id])
                .collect();
            Frontier::from_parts(n, hashes).expect("test data is valid")
        };
        let heads = [head(&t, 2), head(&t, 6), head(&t, 9), head(&t, 13)];
        let mut auditor =
            LogAuditor::resume(&heads, Some(&head(&t, 3)), start(6)).expect("test data is valid");
        assert_eq!(auditor.size(), 6);
        for (i, leaf) in indexed(&log).into_iter().skip(6) {
            auditor.push(i, &leaf).expect("test data is valid");
        }
        let summary = auditor.finish().expect("test data is valid");
        assert_eq!((summary.size, summary.start), (13, 6));
        assert_eq!(summary.root, t.roots[13]);
        // 6 (the start), 9 and 13 checked; 2 below the start skipped.
        assert_eq!((summary.heads_checked, summary.heads_skipped), (3, 1));
        assert!(!summary.saved_head_checked, "the saved head was archived");

        // A start that is not the signed head's tree.
        let forged = Frontier::from_parts(6, vec![Hash([7; 32]), Hash([8; 32])])
            .expect("test data is valid");
        assert_eq!(
            LogAuditor::resume(&heads, None, forged).err(),
            Some(AuditProblem::RootMismatch { from: 0, size: 6 })
        );
        // An entry after the start edited: the range since the start.
        let mut auditor = LogAuditor::resume(&heads, None, start(6)).expect("test data is valid");
        let mut edited = indexed(&log);
        edited[7].1 = b"edited".to_vec();
        let failed = edited
            .into_iter()
            .skip(6)
            .try_for_each(|(i, leaf)| auditor.push(i, &leaf));
        assert_eq!(failed, Err(AuditProblem::RootMismatch { from: 6, size: 9 }));
        // Entries must go on from the start.
        let mut auditor = LogAuditor::resume(&heads, None, start(6)).expect("test data is valid");
        assert_eq!(
            auditor.push(0, &log[0]),
            Err(AuditProblem::OutOfOrder {
                expected: 6,
                got: 0
            })
        );
    }

    #[test]
    fn each_problem_names_its_index() {
        let log = leaves(10, 0);
        let t = tree(&log);
        let heads = [head(&t, 4), head(&t, 10)];
        // A gap.
        let mut gap = indexed(&log);
        gap.remove(6);
        assert_eq!(
            audit(&gap, &heads, None),
            Err(AuditProblem::Gap { index: 6, next: 7 })
        );
        // A repeat.
        let mut repeat = indexed(&log);
        repeat.insert(3, repeat[2].clone());
        assert_eq!(
            audit(&repeat, &heads, None),
            Err(AuditProblem::OutOfOrder {
                expected: 3,
                got: 2
            })
        );
        // An edit.
        let mut edited = indexed(&log);
        edited[8].1 = b"forged".to_vec();
        assert_eq!(
            audit(&edited, &heads, None),
            Err(AuditProblem::RootMismatch { from: 4, size: 10 })
        );
        assert_eq!(pin(&t, &edited, 4, 10), Pinpoint::Entry(8));
        // A truncation: the entries and the heads beyond 6 gone, caught by
        // the saved head.
        let truncated = indexed(&log[..6]);
        assert_eq!(
            audit(&truncated, &[head(&t, 4)], Some(&head(&t, 10))),
            Err(AuditProblem::Truncated {
                size: 6,
                expected: 10
            })
        );
        // Entries no head covers.
        assert_eq!(
            audit(&indexed(&log), &[head(&t, 4)], None),
            Err(AuditProblem::Unsigned {
                signed: 4,
                size: 10
            })
        );
        // A fork: another head of size 10, signed with the same key.
        let other = tree(&leaves(10, 1));
        assert_eq!(
            audit(&indexed(&log), &[head(&t, 10), head(&other, 10)], None),
            Err(AuditProblem::ConflictingHeads { size: 10 })
        );
        assert_eq!(
            audit(&indexed(&log), &[head(&other, 10)], Some(&head(&t, 10))),
            Err(AuditProblem::ConflictingHeads { size: 10 })
        );
        // The forged head alone: the entries do not give its root, and no
        // entry is included under it.
        assert_eq!(
            audit(&indexed(&log), &[head(&t, 4), head(&other, 10)], None),
            Err(AuditProblem::RootMismatch { from: 4, size: 10 })
        );
        let forged = head(&other, 10);
        let proofs: Vec<(u64, Vec<Hash>)> = (4..10)
            .map(|i| {
                (
                    i,
                    inclusion_proof::<crate::ProofError>(i, 10, |id| Ok(t.nodes[&id]))
                        .expect("test data is valid"),
                )
            })
            .collect();
        assert_eq!(
            pinpoint(
                &forged,
                proofs
                    .iter()
                    .map(|(i, p)| (*i, log[*i as usize].as_slice(), p.as_slice()))
            ),
            Pinpoint::Head
        );
        // A rewrite since the saved head, with every signed head re-made.
        let rewritten = tree(&leaves(10, 2));
        assert_eq!(
            audit(
                &indexed(&leaves(10, 2)),
                &[head(&rewritten, 10)],
                Some(&head(&t, 5))
            ),
            Err(AuditProblem::Rewritten { from: 0, size: 5 })
        );
        // A head of another log.
        let foreign =
            Checkpoint::new("elsewhere/t2", 10, t.roots[10], vec![]).expect("test data is valid");
        assert!(matches!(
            audit(&indexed(&log), &[head(&t, 10), foreign], None),
            Err(AuditProblem::OriginMismatch { .. })
        ));
    }

    /// A log, its heads (always one at the end), a saved head, and an index.
    fn scenario() -> impl Strategy<Value = (usize, Vec<u64>, u64, usize)> {
        (1usize..150).prop_flat_map(|n| {
            (
                Just(n),
                proptest::collection::vec(1u64..=n as u64, 0..6),
                1u64..=n as u64,
                0..n,
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn untouched_logs_pass((n, sizes, saved, _k) in scenario()) {
            let log = leaves(n, 0);
            let t = tree(&log);
            let mut heads: Vec<Checkpoint> = sizes.iter().map(|&s| head(&t, s)).collect();
            heads.push(head(&t, n as u64));
            let summary = audit(&indexed(&log), &heads, Some(&head(&t, saved))).expect("test data is valid");
            prop_assert_eq!(summary.size, n as u64);
            prop_assert_eq!(summary.root, t.roots[n]);
        }

        #[test]
        fn an_edited_entry_is_caught_and_pinpointed((n, sizes, _saved, k) in scenario()) {
            let log = leaves(n, 0);
            let t = tree(&log);
            let mut heads: Vec<Checkpoint> = sizes.iter().map(|&s| head(&t, s)).collect();
            heads.push(head(&t, n as u64));
            let mut edited = indexed(&log);
            edited[k].1.push(b'!');
            let problem = audit(&edited, &heads, None).expect_err("a problem");
            let AuditProblem::RootMismatch { from, size } = problem else {
                return Err(TestCaseError::fail(format!("{problem:?}")));
            };
            prop_assert!(from <= k as u64 && (k as u64) < size, "{from}..{size} misses {k}");
            prop_assert_eq!(pin(&t, &edited, from, size), Pinpoint::Entry(k as u64));
        }

        /// Offline, the leaf hashes an export lists name the edited entry;
        /// listed hashes edited as well name nothing.
        #[test]
        fn an_edited_entry_is_pinpointed_by_listed_leaf_hashes((n, sizes, _saved, k) in scenario()) {
            let log = leaves(n, 0);
            let t = tree(&log);
            let mut heads: Vec<Checkpoint> = sizes.iter().map(|&s| head(&t, s)).collect();
            heads.push(head(&t, n as u64));
            let mut edited = indexed(&log);
            edited[k].1.push(b'!');
            let AuditProblem::RootMismatch { size, .. } = audit(&edited, &heads, None).expect_err("a problem") else {
                return Err(TestCaseError::fail("not a root mismatch"));
            };
            let listed: Vec<Hash> = (0..n as u64).map(|i| t.nodes[&NodeId::new(0, i)]).collect();
            let with = |hashes: &[Hash]| {
                pinpoint_by_leaf_hashes(
                    &head(&t, size),
                    Frontier::new(),
                    edited.iter().map(|(i, l)| (*i, l.as_slice(), hashes[*i as usize])),
                )
            };
            prop_assert_eq!(with(&listed), Pinpoint::Entry(k as u64));
            let mut covered = listed.clone();
            covered[k] = leaf_hash(&edited[k].1);
            prop_assert_eq!(with(&covered), Pinpoint::None);
            // An untouched log with its hashes: nothing to name.
            prop_assert_eq!(
                pinpoint_by_leaf_hashes(
                    &head(&t, n as u64),
                    Frontier::new(),
                    indexed(&log).iter().map(|(i, l)| (*i, l.as_slice(), listed[*i as usize])),
                ),
                Pinpoint::None
            );
        }

        #[test]
        fn a_deleted_entry_is_caught((n, sizes, _saved, k) in scenario()) {
            let log = leaves(n, 0);
            let t = tree(&log);
            let mut heads: Vec<Checkpoint> = sizes.iter().map(|&s| head(&t, s)).collect();
            heads.push(head(&t, n as u64));
            let mut deleted = indexed(&log);
            deleted.remove(k);
            let problem = audit(&deleted, &heads, None).expect_err("a problem");
            prop_assert_eq!(problem.index(), k as u64, "{:?}", problem);
            let kind_ok = matches!(
                problem,
                AuditProblem::Gap { .. } | AuditProblem::Truncated { .. }
            );
            prop_assert!(kind_ok, "{:?}", problem);
        }

        #[test]
        fn a_deleted_and_renumbered_entry_is_pinpointed((n, sizes, _saved, k) in scenario()) {
            prop_assume!(n >= 2);
            let log = leaves(n, 0);
            let t = tree(&log);
            let mut heads: Vec<Checkpoint> = sizes.iter().map(|&s| head(&t, s)).collect();
            heads.push(head(&t, n as u64));
            let mut shifted = log.clone();
            shifted.remove(k);
            let problem = audit(&indexed(&shifted), &heads, None).expect_err("a problem");
            if let AuditProblem::RootMismatch { from, size } = problem {
                prop_assert!(from <= k as u64 && (k as u64) < size);
                // Every entry from k on moved: when k opens the range, none of
                // it is included, which reads as a forged head.
                let found = pin(&t, &indexed(&shifted), from, size);
                prop_assert!(
                    found == Pinpoint::Entry(k as u64) || (found == Pinpoint::Head && from == k as u64),
                    "{:?} for {}", found, k
                );
            } else {
                // No head between the removal and the end: caught as a
                // log one entry short.
                prop_assert_eq!(problem, AuditProblem::Truncated { size: n as u64 - 1, expected: n as u64 });
            }
        }

        #[test]
        fn a_truncation_is_caught((n, sizes, _saved, k) in scenario()) {
            // The attacker removes the entries from k on and every head
            // beyond k: only the saved head (or a head the server still
            // signs over the old size) shows it.
            let log = leaves(n, 0);
            let t = tree(&log);
            let heads: Vec<Checkpoint> = sizes
                .iter()
                .filter(|&&s| s <= k as u64)
                .map(|&s| head(&t, s))
                .chain([head(&t, k as u64)])
                .collect();
            let truncated = indexed(&log[..k]);
            let saved = head(&t, n as u64);
            prop_assert_eq!(
                audit(&truncated, &heads, Some(&saved)),
                Err(AuditProblem::Truncated { size: k as u64, expected: n as u64 })
            );
            // And with the later heads kept.
            let mut all: Vec<Checkpoint> = sizes.iter().map(|&s| head(&t, s)).collect();
            all.push(head(&t, n as u64));
            prop_assert_eq!(
                audit(&truncated, &all, None),
                Err(AuditProblem::Truncated { size: k as u64, expected: n as u64 })
            );
        }
    }
}
