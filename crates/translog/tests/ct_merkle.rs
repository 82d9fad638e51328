//! ct-merkle 0.3, an independent RFC 6962 implementation, as a second
//! opinion: same roots, and proofs made by either verify with the other.

use bulwark_translog::tree::Frontier;
use bulwark_translog::{
    Hash, consistency_proof, inclusion_proof, leaf_hash, verify_consistency, verify_inclusion,
};
use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use rand::{Rng, SeedableRng, rngs::StdRng};
use sha2_ct::Sha256;

mod reference;
use reference::Store;

fn ct_root(tree: &MemoryBackedTree<Sha256, Vec<u8>>) -> Hash {
    Hash::try_from(tree.root().as_bytes().as_slice()).expect("32 bytes")
}

fn concat(proof: &[Hash]) -> Vec<u8> {
    proof.iter().flat_map(|h| h.0).collect()
}

fn split(bytes: &[u8]) -> Vec<Hash> {
    bytes
        .chunks(32)
        .map(|c| Hash::try_from(c).expect("32-byte chunks"))
        .collect()
}

#[test]
fn random_trees_agree_with_ct_merkle() {
    let mut rng = StdRng::seed_from_u64(0x6374);
    let mut ct: MemoryBackedTree<Sha256, Vec<u8>> = MemoryBackedTree::new();
    let mut frontier = Frontier::new();
    let mut leaves = Vec::new();
    let mut roots = vec![Hash::empty_tree()];
    for size in 1..=200u64 {
        let len = rng.gen_range(0..40);
        let entry: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
        leaves.push(leaf_hash(&entry));
        frontier.append(leaf_hash(&entry)).expect("room");
        ct.push(entry.clone());
        let root = frontier.root();
        assert_eq!(ct_root(&ct), root, "root at size {size}");
        roots.push(root);
        let ct_root_hash = ct.root();

        let store = Store::new(&leaves, size);
        for _ in 0..3 {
            let index = rng.gen_range(0..size);
            // Ours, checked by ct-merkle.
            let ours = inclusion_proof(index, size, |id| store.get(id)).expect("generate");
            let item = ct.get(index as usize).expect("in tree").clone();
            ct_root_hash
                .verify_inclusion(
                    &item,
                    index,
                    &InclusionProof::<Sha256>::from_bytes(concat(&ours)),
                )
                .unwrap_or_else(|e| {
                    panic!("ct-merkle refuses our proof of {index} in {size}: {e:?}")
                });
            // ct-merkle's, checked by us.
            let theirs = ct.prove_inclusion(index as usize);
            verify_inclusion(
                &leaf_hash(&item),
                index,
                size,
                &split(theirs.as_bytes()),
                &root,
            )
            .unwrap_or_else(|e| panic!("we refuse ct-merkle's proof of {index} in {size}: {e}"));
            assert_eq!(
                theirs.as_bytes(),
                concat(&ours).as_slice(),
                "same bytes, {index} in {size}"
            );

            let old = rng.gen_range(1..=size);
            let ours = consistency_proof(old, size, |id| store.get(id)).expect("generate");
            let old_root = RootHash::<Sha256>::new(roots[old as usize].0.into(), old);
            ct_root_hash
                .verify_consistency(
                    &old_root,
                    &ConsistencyProof::<Sha256>::from_digests(
                        ours.iter()
                            .map(|h| <&sha2_ct::digest::Output<Sha256>>::from(&h.0)),
                    ),
                )
                .unwrap_or_else(|e| panic!("ct-merkle refuses our proof {old} -> {size}: {e:?}"));
            let theirs = ct.prove_consistency((size - old) as usize);
            verify_consistency(
                old,
                size,
                &roots[old as usize],
                &root,
                &split(theirs.as_bytes()),
            )
            .unwrap_or_else(|e| panic!("we refuse ct-merkle's proof {old} -> {size}: {e}"));
        }
    }
}
