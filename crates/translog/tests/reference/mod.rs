//! A naive reference tree, straight from RFC 6962 §2.1: the root, PATH and
//! SUBPROOF by their recursive definitions over all the leaves. Slow and
//! obviously right; the crate's proofs are checked against it.

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::HashMap;

use bulwark_translog::tree::NodeId;
use bulwark_translog::{Hash, ProofError, leaf_hash, node_hash};

pub fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// MTH(D[n]).
pub fn mth(d: &[Hash]) -> Hash {
    match d.len() {
        0 => Hash::empty_tree(),
        1 => d[0],
        n => {
            let k = split(n);
            node_hash(&mth(&d[..k]), &mth(&d[k..]))
        }
    }
}

/// PATH(m, D[n]), RFC 6962 §2.1.1.
pub fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
    let n = d.len();
    if n == 1 {
        return vec![];
    }
    let k = split(n);
    if m < k {
        let mut p = path(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}

/// PROOF(m, D[n]) = SUBPROOF(m, D[n], true), RFC 6962 §2.1.2.
pub fn proof(m: usize, d: &[Hash]) -> Vec<Hash> {
    subproof(m, d, true)
}

fn subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![mth(d)] };
    }
    let k = split(n);
    if m <= k {
        let mut p = subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}

/// The shape of PATH(m, n): which side each sibling is on. Two (index, size)
/// pairs with the same shape accept the same proof for the same root.
pub fn path_shape(m: u64, n: u64) -> Option<String> {
    if m >= n {
        return None;
    }
    let mut s = String::new();
    let (mut m, mut n) = (m, n);
    let mut sides = Vec::new();
    while n > 1 {
        let k = split(n as usize) as u64;
        if m < k {
            sides.push('R');
            n = k;
        } else {
            sides.push('L');
            m -= k;
            n -= k;
        }
    }
    sides.reverse();
    s.extend(sides);
    Some(s)
}

/// The shape of PROOF(m, n): the SUBPROOF recursion's decisions.
pub fn consistency_shape(m: u64, n: u64) -> Option<String> {
    if m == 0 || m > n {
        return None;
    }
    let (mut m, mut n, mut b) = (m, n, true);
    let mut s = String::new();
    while m != n {
        let k = split(n as usize) as u64;
        if m <= k {
            s.push('<');
            n = k;
        } else {
            s.push('>');
            m -= k;
            n -= k;
            b = false;
        }
    }
    s.push(if b { 'E' } else { 'N' });
    Some(s)
}

pub fn leaves(n: usize, seed: u64) -> Vec<Hash> {
    (0..n as u64)
        .map(|i| leaf_hash(&[seed.to_be_bytes(), i.to_be_bytes()].concat()))
        .collect()
}

/// A store of complete-subtree hashes over the first `size` leaves that
/// refuses any node not complete at that size, and counts reads.
pub struct Store<'a> {
    pub leaves: &'a [Hash],
    pub size: u64,
    pub reads: RefCell<usize>,
    memo: RefCell<HashMap<NodeId, Hash>>,
}

impl<'a> Store<'a> {
    pub fn new(leaves: &'a [Hash], size: u64) -> Self {
        Self {
            leaves,
            size,
            reads: RefCell::new(0),
            memo: RefCell::new(HashMap::new()),
        }
    }

    pub fn get(&self, id: NodeId) -> Result<Hash, StoreError> {
        *self.reads.borrow_mut() += 1;
        let first = id.first_leaf();
        let end = first + (1u64 << id.level);
        if end > self.size {
            return Err(StoreError(format!(
                "{id:?} is not complete in a tree of size {}",
                self.size
            )));
        }
        if let Some(h) = self.memo.borrow().get(&id) {
            return Ok(*h);
        }
        let h = mth(&self.leaves[first as usize..end as usize]);
        self.memo.borrow_mut().insert(id, h);
        Ok(h)
    }
}

/// A store failure, or a proof error met while assembling.
#[derive(Debug, PartialEq, Eq)]
pub struct StoreError(pub String);

impl From<ProofError> for StoreError {
    fn from(e: ProofError) -> Self {
        StoreError(e.to_string())
    }
}
