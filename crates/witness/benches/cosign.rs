//! Witness throughput, for docs/figures.md (issue 14: "witness cosignatures
//! per second"). `cargo bench -p bulwark-witness --bench cosign`, a plain
//! harness. One log grows by `BATCH` entries per request, as a Bulwark
//! server's log would between heads; each request is checked (the log's
//! signature, the RFC 9162 consistency proof from the recorded head),
//! recorded durably (temp file, fsync, rename, fsync of the directory, in
//! a temporary directory on this machine's disk) and cosigned, the path
//! `POST /add-checkpoint` takes minus HTTP. Also the same without the
//! fsyncs, to show what the disk costs, and agent-side verification of a
//! checkpoint with 1 and 3 cosignatures.

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use bulwark_translog::Limits;
use bulwark_translog::checkpoint::Checkpoint;
use bulwark_translog::cosignature::{Cosigner, cosignature_times};
use bulwark_translog::hash::{Hash, leaf_hash};
use bulwark_translog::note::NoteSigner;
use bulwark_translog::tree::Frontier;
use bulwark_witness::add_checkpoint::{Cosigned, Request, check};
use bulwark_witness::state::WitnessDir;
use ed25519_dalek::SigningKey;

const ORIGIN: &str = "bench.example/log";
const BATCH: u64 = 16;
const REQUESTS: u64 = 2_000;

fn main() {
    let log = NoteSigner::new("bench.example", SigningKey::from_bytes(&[1; 32])).unwrap();
    let limits = Limits::default();
    // Requests for sizes BATCH, 2*BATCH, ...: each proof from the previous size.
    let leaves: Vec<Hash> = (0..BATCH * REQUESTS)
        .map(|i| leaf_hash(&i.to_be_bytes()))
        .collect();
    let mut frontier = Frontier::new();
    let mut requests = Vec::new();
    let mut previous = 0u64;
    for step in 1..=REQUESTS {
        let size = step * BATCH;
        for leaf in &leaves[usize::try_from(previous).unwrap()..usize::try_from(size).unwrap()] {
            frontier.append(*leaf).unwrap();
        }
        let proof = if previous == 0 {
            Vec::new()
        } else {
            bulwark_translog::proof::consistency_proof::<bulwark_translog::proof::ProofError>(
                previous,
                size,
                |node| {
                    let first = usize::try_from(node.first_leaf()).unwrap();
                    Ok(bulwark_translog::hash::root_of_leaf_hashes(
                        &leaves[first..first + (1usize << node.level)],
                    ))
                },
            )
            .unwrap()
        };
        let note = Checkpoint::new(ORIGIN, size, frontier.root(), vec![])
            .unwrap()
            .sign(&log);
        requests.push(Request {
            old_size: previous,
            proof,
            note,
        });
        previous = size;
    }

    for durable in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let cosigner = WitnessDir::init(dir.path(), "bench.example/witness").unwrap();
        let (witness, _) = WitnessDir::open(dir.path()).unwrap();
        witness
            .add_log(ORIGIN, &log.verifier().to_vkey(), None)
            .unwrap();
        let key = log.verifier();
        let mut held: Option<Cosigned> = None;
        let started = Instant::now();
        for request in &requests {
            let checkpoint = check(request, &key, held.as_ref(), &limits).unwrap();
            let state = Cosigned {
                size: checkpoint.size(),
                root: *checkpoint.root(),
            };
            if durable {
                witness.record(ORIGIN, &state).unwrap();
            }
            let line = cosigner
                .cosign(&checkpoint.to_note_body(), 1_765_000_000)
                .unwrap();
            assert!(line.starts_with('\u{2014}'));
            held = Some(state);
        }
        let elapsed = started.elapsed();
        println!(
            "{} cosignatures{}: {:.0}/s ({:.3} ms each)",
            REQUESTS,
            if durable {
                ", each recorded with fsync"
            } else {
                ", not recorded"
            },
            REQUESTS as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64() * 1000.0 / REQUESTS as f64
        );
    }

    // What an agent will pay per job: the checkpoint with k cosignatures.
    let note = requests.last().unwrap().note.clone();
    let body = &note[..note.find("\n\n").unwrap() + 1];
    let witnesses: Vec<Cosigner> = (0..3)
        .map(|i| {
            Cosigner::new(
                &format!("w{i}.example/w"),
                SigningKey::from_bytes(&[10 + i; 32]),
            )
            .unwrap()
        })
        .collect();
    for k in [1usize, 3] {
        let mut cosigned = note.clone();
        for w in &witnesses[..k] {
            cosigned.push_str(&w.cosign(body, 1_765_000_000).unwrap());
        }
        let verifiers: Vec<_> = witnesses[..k].iter().map(Cosigner::verifier).collect();
        let rounds = 5_000;
        let started = Instant::now();
        for _ in 0..rounds {
            let times = cosignature_times(&cosigned, &verifiers, &limits).unwrap();
            assert!(times.iter().all(Option::is_some));
        }
        println!(
            "agent check of {k} cosignature(s): {:.1} µs",
            started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds)
        );
    }
}
