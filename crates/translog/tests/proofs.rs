//! Proofs checked the way transparency-dev/merkle checks its own (STYLE 16):
//! every generated proof against a naive reference tree, the published
//! RFC 6962 vectors, and systematic mutations of every good proof, each one
//! named in the assertion that it is refused.

mod reference;

use bulwark_translog::proof::{consistency_plan, inclusion_plan, parse_concatenated_proof};
use bulwark_translog::tree::{Frontier, NodeId, root_from_store};
use bulwark_translog::{
    Hash, Limits, ProofError, consistency_proof, inclusion_proof, leaf_hash, parse_proof, root_of,
    verify_consistency, verify_inclusion,
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use reference::{Store, consistency_shape, leaves, mth, path, path_shape, proof};

fn h(hex: &str) -> Hash {
    Hash::try_from(hex::decode(hex).expect("hex").as_slice()).expect("32 bytes")
}

fn some_hash() -> Hash {
    h("abacaba000000000000000000000000000000000000000000060061e00123456")
}

// ---- The RFC 6962 test vectors (certificate-transparency reference, as
// carried by transparency-dev/merkle proof/verify_test.go). ----

const VECTOR_LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

const VECTOR_ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (leaf index, tree size, proof); the Go file numbers leaves from 1.
const VECTOR_INCLUSION: &[(u64, u64, &[&str])] = &[
    (0, 1, &[]),
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (old size, new size, proof).
const VECTOR_CONSISTENCY: &[(u64, u64, &[&str])] = &[
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

fn vector_leaf_hashes() -> Vec<Hash> {
    VECTOR_LEAVES
        .iter()
        .map(|l| leaf_hash(&hex::decode(l).expect("hex")))
        .collect()
}

#[test]
fn rfc6962_vector_roots_for_every_prefix() {
    let data: Vec<Vec<u8>> = VECTOR_LEAVES
        .iter()
        .map(|l| hex::decode(l).expect("hex"))
        .collect();
    let mut frontier = Frontier::new();
    for (n, want) in VECTOR_ROOTS.iter().enumerate() {
        frontier.append(leaf_hash(&data[n])).expect("room");
        assert_eq!(root_of(&data[..=n]), h(want), "root_of, size {}", n + 1);
        assert_eq!(frontier.root(), h(want), "frontier, size {}", n + 1);
    }
    assert_eq!(root_of::<&[u8]>(&[]), Hash::empty_tree());
}

#[test]
fn rfc6962_vector_inclusion_proofs() {
    let leaves = vector_leaf_hashes();
    for &(index, size, want) in VECTOR_INCLUSION {
        let want: Vec<Hash> = want.iter().map(|x| h(x)).collect();
        let store = Store::new(&leaves, size);
        let got = inclusion_proof(index, size, |id| store.get(id)).expect("generate");
        assert_eq!(got, want, "generated proof for leaf {index} of {size}");
        let root = h(VECTOR_ROOTS[size as usize - 1]);
        verify_inclusion(&leaves[index as usize], index, size, &want, &root)
            .unwrap_or_else(|e| panic!("vector leaf {index} of {size}: {e}"));
        assert_inclusion_mutations_refused(&leaves[index as usize], index, size, &want, &root);
    }
}

#[test]
fn rfc6962_vector_consistency_proofs() {
    let leaves = vector_leaf_hashes();
    for &(old, new, want) in VECTOR_CONSISTENCY {
        let want: Vec<Hash> = want.iter().map(|x| h(x)).collect();
        let store = Store::new(&leaves, new);
        let got = consistency_proof(old, new, |id| store.get(id)).expect("generate");
        assert_eq!(got, want, "generated proof {old} -> {new}");
        let (r1, r2) = (
            h(VECTOR_ROOTS[old as usize - 1]),
            h(VECTOR_ROOTS[new as usize - 1]),
        );
        verify_consistency(old, new, &r1, &r2, &want)
            .unwrap_or_else(|e| panic!("vector {old} -> {new}: {e}"));
        assert_consistency_mutations_refused(old, new, &r1, &r2, &want);
    }
}

// ---- Mutations. ----

fn flip(proof: &[Hash], i: usize, bit: usize) -> Vec<Hash> {
    let mut p = proof.to_vec();
    p[i].0[bit / 8] ^= 1 << (bit % 8);
    p
}

/// Every way to break an inclusion proof, named.
fn inclusion_mutations(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Vec<(String, Hash, u64, u64, Vec<Hash>, Hash)> {
    let mut out = Vec::new();
    let mut m = |name: String, l: Hash, i: u64, s: u64, p: Vec<Hash>, r: Hash| {
        out.push((name, l, i, s, p, r))
    };
    let p = proof.to_vec();
    for i in 0..proof.len() {
        for bit in 0..256 {
            m(
                format!("proof[{i}] bit {bit} flipped"),
                *leaf,
                index,
                size,
                flip(proof, i, bit),
                *root,
            );
        }
        let mut removed = p.clone();
        removed.remove(i);
        m(
            format!("proof[{i}] removed"),
            *leaf,
            index,
            size,
            removed,
            *root,
        );
    }
    for i in 0..=proof.len() {
        let mut inserted = p.clone();
        inserted.insert(i, some_hash());
        m(
            format!("a hash inserted at {i}"),
            *leaf,
            index,
            size,
            inserted,
            *root,
        );
    }
    m(
        "trailing root".into(),
        *leaf,
        index,
        size,
        [&p[..], &[*root]].concat(),
        *root,
    );
    m(
        "preceding root".into(),
        *leaf,
        index,
        size,
        [&[*root], &p[..]].concat(),
        *root,
    );
    m(
        "wrong leaf".into(),
        leaf_hash(b"WrongLeaf"),
        index,
        size,
        p.clone(),
        *root,
    );
    m(
        "leaf given as its data".into(),
        Hash(root.0),
        index,
        size,
        p.clone(),
        *root,
    );
    m(
        "empty-tree root".into(),
        *leaf,
        index,
        size,
        p.clone(),
        Hash::empty_tree(),
    );
    m(
        "random root".into(),
        *leaf,
        index,
        size,
        p.clone(),
        some_hash(),
    );
    m("index ^ 2".into(), *leaf, index ^ 2, size, p.clone(), *root);
    m("index = size".into(), *leaf, size, size, p.clone(), *root);
    for (name, i) in [
        ("index - 1", index.wrapping_sub(1)),
        ("index + 1", index + 1),
    ] {
        m(name.into(), *leaf, i, size, p.clone(), *root);
    }
    for (name, s) in [
        ("size * 2", size * 2),
        ("size / 2", size / 2),
        ("size + 1", size + 1),
        ("size - 1", size - 1),
    ] {
        m(name.into(), *leaf, index, s, p.clone(), *root);
    }
    out.retain(|(name, l, ..)| !(name == "leaf given as its data" && l == leaf));
    out
}

/// Asserts each mutation is refused, except a changed index or size that
/// has the very same proof shape: inclusion proofs do not bind the tree
/// size (or, in such cases, the index) by themselves, which is why a
/// checkpoint signs the size with the root. Those are asserted to verify,
/// so the shape model stays exact. Returns how many such cases there were.
fn assert_inclusion_mutations_refused(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> usize {
    let shape = path_shape(index, size);
    let mut same_shape = 0;
    for (name, l, i, s, p, r) in inclusion_mutations(leaf, index, size, proof, root) {
        let result = verify_inclusion(&l, i, s, &p, &r);
        let moved = (i, s) != (index, size);
        if moved && l == *leaf && p == proof && r == *root && path_shape(i, s) == shape {
            assert_eq!(
                result,
                Ok(()),
                "{name}: same shape as leaf {index} of {size}"
            );
            same_shape += 1;
        } else {
            assert!(
                result.is_err(),
                "mutation {name:?} of the proof of leaf {index} of {size} verified"
            );
        }
    }
    // Wire-level garbage: components that are not 32 bytes never become a proof.
    let limits = Limits::default();
    let bytes: Vec<Vec<u8>> = proof.iter().map(|x| x.0.to_vec()).collect();
    for (name, garbage) in [
        ("empty", vec![]),
        ("31 bytes", vec![7; 31]),
        ("33 bytes", vec![7; 33]),
    ] {
        let before = [vec![garbage.clone()], bytes.clone()].concat();
        let after = [bytes.clone(), vec![garbage.clone()]].concat();
        assert!(
            matches!(
                parse_proof(&before, &limits),
                Err(ProofError::WrongHashLength { position: 0, .. })
            ),
            "preceding garbage ({name})"
        );
        assert!(
            matches!(
                parse_proof(&after, &limits),
                Err(ProofError::WrongHashLength { .. })
            ),
            "trailing garbage ({name})"
        );
    }
    let mut concatenated: Vec<u8> = bytes.concat();
    concatenated.push(0);
    assert!(
        parse_concatenated_proof(&concatenated, &limits).is_err(),
        "a trailing byte"
    );
    assert_eq!(
        parse_proof(&bytes, &limits).as_deref(),
        Ok(proof),
        "the good proof parses"
    );
    same_shape
}

fn assert_consistency_mutations_refused(
    old: u64,
    new: u64,
    r1: &Hash,
    r2: &Hash,
    proof: &[Hash],
) -> usize {
    let p = proof.to_vec();
    let mut cases: Vec<(String, u64, u64, Hash, Hash, Vec<Hash>)> = vec![
        ("swapped roots".into(), old, new, *r2, *r1, p.clone()),
        (
            "wrong old root".into(),
            old,
            new,
            some_hash(),
            *r2,
            p.clone(),
        ),
        (
            "wrong new root".into(),
            old,
            new,
            *r1,
            some_hash(),
            p.clone(),
        ),
        (
            "empty-tree old root".into(),
            old,
            new,
            Hash::empty_tree(),
            *r2,
            p.clone(),
        ),
        (
            "empty-tree new root".into(),
            old,
            new,
            *r1,
            Hash::empty_tree(),
            p.clone(),
        ),
        ("old size 0".into(), 0, new, *r1, *r2, p.clone()),
        ("old size - 1".into(), old - 1, new, *r1, *r2, p.clone()),
        ("old size + 1".into(), old + 1, new, *r1, *r2, p.clone()),
        ("old size ^ 2".into(), old ^ 2, new, *r1, *r2, p.clone()),
        ("new size * 2".into(), old, new * 2, *r1, *r2, p.clone()),
        ("new size / 2".into(), old, new / 2, *r1, *r2, p.clone()),
        ("new size + 1".into(), old, new + 1, *r1, *r2, p.clone()),
        ("new size - 1".into(), old, new - 1, *r1, *r2, p.clone()),
        ("sizes swapped".into(), new, old, *r2, *r1, p.clone()),
        (
            "trailing old root".into(),
            old,
            new,
            *r1,
            *r2,
            [&p[..], &[*r1]].concat(),
        ),
        (
            "trailing new root".into(),
            old,
            new,
            *r1,
            *r2,
            [&p[..], &[*r2]].concat(),
        ),
        (
            "preceding old root".into(),
            old,
            new,
            *r1,
            *r2,
            [&[*r1], &p[..]].concat(),
        ),
        (
            "preceding new root".into(),
            old,
            new,
            *r1,
            *r2,
            [&[*r2], &p[..]].concat(),
        ),
    ];
    if old != new {
        cases.push(("empty proof".into(), old, new, *r1, *r2, vec![]));
        cases.push((
            "preceding proof[0]".into(),
            old,
            new,
            *r1,
            *r2,
            [&p[..1], &p[..]].concat(),
        ));
    } else {
        cases.push((
            "a hash where none belongs".into(),
            old,
            new,
            *r1,
            *r2,
            vec![some_hash()],
        ));
    }
    for i in 0..proof.len() {
        for bit in 0..256 {
            cases.push((
                format!("proof[{i}] bit {bit} flipped"),
                old,
                new,
                *r1,
                *r2,
                flip(proof, i, bit),
            ));
        }
        let mut removed = p.clone();
        removed.remove(i);
        cases.push((format!("proof[{i}] removed"), old, new, *r1, *r2, removed));
    }
    for i in 0..=proof.len() {
        let mut inserted = p.clone();
        inserted.insert(i, some_hash());
        cases.push((
            format!("a hash inserted at {i}"),
            old,
            new,
            *r1,
            *r2,
            inserted,
        ));
    }
    let shape = consistency_shape(old, new);
    let mut same_shape = 0;
    for (name, o, n, a, b, q) in cases {
        if (o, n, a, b, q.as_slice()) == (old, new, *r1, *r2, proof) {
            continue; // not a mutation here (e.g. swapped roots between equal sizes)
        }
        let result = verify_consistency(o, n, &a, &b, &q);
        let moved = (o, n) != (old, new);
        if moved && a == *r1 && b == *r2 && q == proof && consistency_shape(o, n) == shape {
            assert_eq!(result, Ok(()), "{name}: same shape as {old} -> {new}");
            same_shape += 1;
        } else {
            assert!(
                result.is_err(),
                "mutation {name:?} of the proof {old} -> {new} verified"
            );
        }
    }
    same_shape
}

// ---- Every proof against the naive reference tree. ----

#[test]
fn every_inclusion_proof_in_small_trees_matches_the_reference_and_resists_mutation() {
    let all = leaves(33, 1);
    let mut same_shape = 0;
    for size in 1..=all.len() as u64 {
        let d = &all[..size as usize];
        let root = mth(d);
        let store = Store::new(&all, size);
        for index in 0..size {
            let got = inclusion_proof(index, size, |id| store.get(id)).expect("generate");
            assert_eq!(got, path(index as usize, d), "PATH({index}, D[{size}])");
            verify_inclusion(&d[index as usize], index, size, &got, &root)
                .unwrap_or_else(|e| panic!("leaf {index} of {size}: {e}"));
            same_shape +=
                assert_inclusion_mutations_refused(&d[index as usize], index, size, &got, &root);
        }
    }
    // Some index/size changes leave the proof shape unchanged (leaf 0 of 3
    // and leaf 0 of 4, say) and verify: a proof alone does not bind the tree
    // size, which is why the signed checkpoint carries it.
    assert!(same_shape > 0);
}

#[test]
fn every_consistency_proof_in_small_trees_matches_the_reference_and_resists_mutation() {
    let all = leaves(33, 2);
    for new in 1..=all.len() as u64 {
        let store = Store::new(&all, new);
        let r2 = mth(&all[..new as usize]);
        for old in 1..=new {
            let r1 = mth(&all[..old as usize]);
            let got = consistency_proof(old, new, |id| store.get(id)).expect("generate");
            assert_eq!(
                got,
                proof(old as usize, &all[..new as usize]),
                "PROOF({old}, D[{new}])"
            );
            verify_consistency(old, new, &r1, &r2, &got)
                .unwrap_or_else(|e| panic!("{old} -> {new}: {e}"));
            assert_consistency_mutations_refused(old, new, &r1, &r2, &got);
        }
    }
}

#[test]
fn random_trees_up_to_300_leaves() {
    let mut rng = StdRng::seed_from_u64(0x7261_6e64);
    let all = leaves(300, 3);
    let mut frontier = Frontier::new();
    for size in 1..=300u64 {
        frontier.append(all[size as usize - 1]).expect("room");
        let d = &all[..size as usize];
        let root = mth(d);
        assert_eq!(frontier.root(), root, "frontier root at {size}");
        let store = Store::new(&all, size);
        assert_eq!(
            root_from_store(size, |id| store.get(id)),
            Ok(root),
            "root from store at {size}"
        );
        for _ in 0..3 {
            let index = rng.gen_range(0..size);
            let store = Store::new(&all, size);
            let got = inclusion_proof(index, size, |id| store.get(id)).expect("generate");
            let reads = *store.reads.borrow();
            assert!(
                reads <= 2 * 9 + 1,
                "{reads} reads for leaf {index} of {size}"
            );
            assert_eq!(got, path(index as usize, d), "PATH({index}, D[{size}])");
            verify_inclusion(&d[index as usize], index, size, &got, &root).expect("verifies");

            let old = rng.gen_range(1..=size);
            let got = consistency_proof(old, size, |id| store.get(id)).expect("generate");
            assert_eq!(got, proof(old as usize, d), "PROOF({old}, D[{size}])");
            verify_consistency(old, size, &mth(&all[..old as usize]), &root, &got)
                .expect("verifies");
        }
    }
}

// ---- Edge rules. ----

#[test]
fn edge_rules() {
    let a = some_hash();
    let e = Hash::empty_tree();
    let check =
        |old, new, r1: &Hash, r2: &Hash, p: &[Hash]| verify_consistency(old, new, r1, r2, p);
    assert_eq!(
        check(0, 0, &e, &e, &[]),
        Err(ProofError::OldSizeZero),
        "from size 0 to 0"
    );
    assert_eq!(
        check(0, 5, &e, &a, &[]),
        Err(ProofError::OldSizeZero),
        "from size 0"
    );
    assert_eq!(
        check(3, 3, &a, &a, &[]),
        Ok(()),
        "equal sizes, equal roots, empty proof"
    );
    assert_eq!(
        check(3, 3, &a, &e, &[]),
        Err(ProofError::EqualSizesDifferentRoots),
        "equal sizes, a fork"
    );
    assert_eq!(
        check(3, 3, &a, &a, &[a]),
        Err(ProofError::NonEmptyForEqualSizes(1)),
        "equal sizes, a proof"
    );
    assert_eq!(
        check(4, 3, &a, &a, &[a]),
        Err(ProofError::OldSizeLarger { old: 4, new: 3 }),
        "time travel"
    );
    assert_eq!(
        check(1, 2, &a, &e, &[]),
        Err(ProofError::EmptyProof),
        "empty proof"
    );

    assert_eq!(
        verify_inclusion(&a, 0, 0, &[], &a),
        Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
    );
    assert_eq!(
        verify_inclusion(&a, 0, 1, &[], &a),
        Ok(()),
        "a one-leaf tree's root is its leaf"
    );
    assert_eq!(
        verify_inclusion(&a, 0, 1, &[], &e),
        Err(ProofError::RootMismatch)
    );
    assert_eq!(
        verify_inclusion(&a, 0, 1, &[a], &a),
        Err(ProofError::TooManyHashes)
    );
    assert_eq!(
        verify_inclusion(&a, u64::MAX - 1, u64::MAX, &[], &a),
        Err(ProofError::TooFewHashes)
    );

    assert_eq!(
        inclusion_plan(3, 3),
        Err(ProofError::IndexOutOfRange { index: 3, size: 3 })
    );
    assert_eq!(consistency_plan(0, 3), Err(ProofError::OldSizeZero));
    assert_eq!(
        consistency_plan(4, 3),
        Err(ProofError::OldSizeLarger { old: 4, new: 3 })
    );
    assert!(
        consistency_plan(3, 3)
            .expect("equal sizes")
            .node_ids()
            .is_empty()
    );

    let limits = Limits::default();
    let long = vec![[0u8; 32]; 65];
    assert_eq!(
        parse_proof(&long, &limits),
        Err(ProofError::ProofTooLong { len: 65, max: 64 })
    );
    assert_eq!(
        parse_concatenated_proof(&[0; 33], &limits),
        Err(ProofError::RaggedProof { len: 33 })
    );
}

#[test]
fn plans_in_the_largest_trees_stay_logarithmic() {
    for (index, size) in [
        (0, u64::MAX),
        (u64::MAX - 1, u64::MAX),
        (1 << 62, (1 << 63) + 5),
        (12345, u64::MAX),
    ] {
        let plan = inclusion_plan(index, size).expect("plan");
        assert!(
            plan.node_ids().len() <= 128,
            "{} reads for {index} of {size}",
            plan.node_ids().len()
        );
        let proof = plan
            .assemble(&vec![some_hash(); plan.node_ids().len()])
            .expect("assemble");
        assert!(
            proof.len() <= 64,
            "{} hashes for {index} of {size}",
            proof.len()
        );
    }
    for (old, new) in [
        (1, u64::MAX),
        (u64::MAX - 1, u64::MAX),
        (3, 1 << 62),
        ((1 << 40) + 1, u64::MAX),
    ] {
        let plan = consistency_plan(old, new).expect("plan");
        assert!(
            plan.node_ids().len() <= 130,
            "{} reads for {old} -> {new}",
            plan.node_ids().len()
        );
    }
    let plan = inclusion_plan(0, 8).expect("plan");
    assert_eq!(
        plan.assemble(&[]),
        Err(ProofError::WrongNodeCount {
            expected: 3,
            got: 0
        })
    );
    assert_eq!(
        plan.node_ids(),
        [NodeId::new(0, 1), NodeId::new(1, 1), NodeId::new(2, 1)]
    );
}

#[test]
fn the_appender_reports_exactly_the_subtrees_a_store_needs() {
    // Persist what `append_with` reports, then serve every proof from it alone.
    let all = leaves(100, 4);
    let mut stored = std::collections::HashMap::new();
    let mut frontier = Frontier::new();
    for leaf in &all {
        frontier
            .append_with(*leaf, |id, hash| {
                assert!(stored.insert(id, *hash).is_none(), "{id:?} reported twice");
            })
            .expect("room");
    }
    assert_eq!(stored.len(), 2 * all.len() - 100usize.count_ones() as usize);
    let size = all.len() as u64;
    let hash_at = |id: NodeId| stored.get(&id).copied().ok_or(ProofError::TooFewHashes);
    for index in 0..size {
        let p = inclusion_proof(index, size, hash_at).expect("every node is stored");
        verify_inclusion(&all[index as usize], index, size, &p, &frontier.root())
            .expect("verifies");
    }
    for old in 1..=size {
        let p = consistency_proof(old, size, hash_at).expect("every node is stored");
        verify_consistency(old, size, &mth(&all[..old as usize]), &frontier.root(), &p)
            .expect("verifies");
    }
    let restored = Frontier::from_store(size, hash_at).expect("stored");
    assert_eq!(restored, frontier);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn inclusion_proofs_verify_and_bind_the_leaf(size in 1u64..600, pick in any::<u64>(), other in any::<u64>()) {
            let all = leaves(size as usize, 5);
            let index = pick % size;
            let store = Store::new(&all, size);
            let root = mth(&all);
            let p = inclusion_proof(index, size, |id| store.get(id)).expect("generate");
            prop_assert_eq!(verify_inclusion(&all[index as usize], index, size, &p, &root), Ok(()));
            let wrong = other % size;
            if wrong != index {
                prop_assert!(verify_inclusion(&all[wrong as usize], index, size, &p, &root).is_err());
            }
        }

        #[test]
        fn consistency_proofs_verify_between_any_two_sizes(new in 1u64..600, pick in any::<u64>()) {
            let all = leaves(new as usize, 6);
            let old = 1 + pick % new;
            let store = Store::new(&all, new);
            let p = consistency_proof(old, new, |id| store.get(id)).expect("generate");
            prop_assert_eq!(verify_consistency(old, new, &mth(&all[..old as usize]), &mth(&all), &p), Ok(()));
            // A rewritten old entry breaks it.
            let mut forged = all.clone();
            forged[(pick % old) as usize] = leaf_hash(b"rewritten");
            prop_assert!(verify_consistency(old, new, &mth(&forged[..old as usize]), &mth(&all), &p).is_err());
        }
    }
}
