//! A real `bulwark witness` process (RFD 0006, C2SP tlog-witness) against
//! a log played by the test: it cosigns checkpoints that extend what it
//! cosigned, and refuses a fork, a rollback, a bad proof, a stale old size
//! (409 with its size), an unknown origin and another key's checkpoint. A
//! witness that dies after recording a checkpoint and before answering
//! comes back holding it: nothing older or forked is cosigned after.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bulwark_e2e::{Proc, WitnessAnswer, add_checkpoint, bulwark_bin, wait_until, witness_command};
use bulwark_translog::Limits;
use bulwark_translog::checkpoint::Checkpoint;
use bulwark_translog::cosignature::{CosignatureVerifier, cosignature_times};
use bulwark_translog::hash::{Hash, leaf_hash, root_of_leaf_hashes};
use bulwark_translog::note::NoteSigner;
use bulwark_translog::proof::{ProofError, consistency_proof};
use ed25519_dalek::SigningKey;

const ORIGIN: &str = "bulwark.test/0f7c2a8e-tenant";

struct Log {
    key: NoteSigner,
    leaves: Vec<Hash>,
}

impl Log {
    fn new(seed: u8, entries: u64, salt: &str) -> Self {
        Self {
            key: NoteSigner::new("bulwark.test", SigningKey::from_bytes(&[seed; 32]))
                .expect("log key"),
            leaves: (0..entries)
                .map(|i| leaf_hash(format!("{salt} entry {i}").as_bytes()))
                .collect(),
        }
    }

    fn note(&self, size: usize) -> String {
        Checkpoint::new(
            ORIGIN,
            size as u64,
            root_of_leaf_hashes(&self.leaves[..size]),
            vec![],
        )
        .expect("checkpoint")
        .sign(&self.key)
    }

    fn proof(&self, old: usize, new: usize) -> Vec<Hash> {
        if old == 0 || old == new {
            return Vec::new();
        }
        consistency_proof::<ProofError>(old as u64, new as u64, |node| {
            let first = usize::try_from(node.first_leaf()).expect("small tree");
            Ok(root_of_leaf_hashes(
                &self.leaves[first..first + (1usize << node.level)],
            ))
        })
        .expect("proof")
    }
}

fn body(old: usize, proof: &[Hash], note: &str) -> String {
    let mut body = format!("old {old}\n");
    for hash in proof {
        body.push_str(&STANDARD.encode(hash.0));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(note);
    body
}

async fn start(dir: &std::path::Path, crash_after_record: bool) -> Result<(Proc, String)> {
    let mut command = Command::new(bulwark_bin()?);
    command
        .args(["witness", "serve", "--listen", "127.0.0.1:0", "--dir"])
        .arg(dir);
    if crash_after_record {
        command.env(bulwark_witness::serve::CRASH_AFTER_RECORD_ENV, "1");
    }
    let process = Proc::spawn("witness", &mut command)?;
    wait_until(Duration::from_secs(20), || {
        std::future::ready(
            process
                .stdout
                .value_after("Witness listening on ")
                .is_some(),
        )
    })
    .await
    .context("the witness did not start listening")?;
    let url = process
        .stdout
        .value_after("Witness listening on ")
        .context("the witness's address")?;
    Ok((process, url))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The cosignature's time, checked over `note` with the witness's vkey.
fn cosigned_at(witness: &CosignatureVerifier, note: &str, answer: &WitnessAnswer) -> Result<u64> {
    ensure!(
        answer.status == 200,
        "not cosigned: {} {}",
        answer.status,
        answer.text
    );
    let times = cosignature_times(
        &format!("{note}{}", answer.text),
        std::slice::from_ref(witness),
        &Limits::default(),
    )?;
    times[0].context("the answer holds no cosignature of the witness's key")
}

#[tokio::test]
async fn a_witness_cosigns_what_extends_and_nothing_else() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let init = witness_command(dir.path(), &["init", "--name", "witness.test/w1"])?;
    let vkey = init.lines().last().context("init prints the vkey")?.trim();
    let witness = CosignatureVerifier::from_vkey(vkey)?;
    let log = Log::new(1, 40, "genuine");
    witness_command(
        dir.path(),
        &[
            "add-log",
            "--origin",
            ORIGIN,
            "--vkey",
            &log.key.verifier().to_vkey(),
        ],
    )?;
    let (mut process, url) = start(dir.path(), false).await?;

    // First contact: old 0, no proof.
    let before = now();
    let at = cosigned_at(
        &witness,
        &log.note(8),
        &add_checkpoint(&url, body(0, &[], &log.note(8))).await?,
    )?;
    ensure!((before..=now()).contains(&at), "cosigned at {at}, not now");
    // Growth with a proof.
    cosigned_at(
        &witness,
        &log.note(20),
        &add_checkpoint(&url, body(8, &log.proof(8, 20), &log.note(20))).await?,
    )?;

    // A fork: the same key signs another history.
    let fork = Log::new(1, 40, "rewritten");
    let same_size = add_checkpoint(&url, body(20, &[], &fork.note(20))).await?;
    ensure!(
        same_size.status == 422,
        "a same-size fork: {}",
        same_size.status
    );
    let grown_fork = add_checkpoint(&url, body(20, &fork.proof(20, 30), &fork.note(30))).await?;
    ensure!(
        grown_fork.status == 422,
        "a grown fork: {}",
        grown_fork.status
    );
    // A bad proof for a genuine checkpoint.
    let mut bad_proof = log.proof(20, 30);
    bad_proof[0] = leaf_hash(b"not a node");
    let bad = add_checkpoint(&url, body(20, &bad_proof, &log.note(30))).await?;
    ensure!(bad.status == 422, "a bad proof: {}", bad.status);
    // A rollback, and a stale old size (409 names what the witness holds).
    let back = add_checkpoint(&url, body(20, &[], &log.note(8))).await?;
    ensure!(back.status == 400, "a smaller tree: {}", back.status);
    let stale = add_checkpoint(&url, body(8, &log.proof(8, 30), &log.note(30))).await?;
    ensure!(
        stale.status == 409 && stale.text == "20\n" && stale.content_type == "text/x.tlog.size",
        "a stale old size: {} {:?} {:?}",
        stale.status,
        stale.text,
        stale.content_type
    );
    // Another key's checkpoint, an origin it does not follow, garbage.
    let stranger = Log::new(2, 40, "genuine");
    let forged =
        add_checkpoint(&url, body(20, &stranger.proof(20, 30), &stranger.note(30))).await?;
    ensure!(forged.status == 403, "another key: {}", forged.status);
    let unknown = log.note(30).replace(ORIGIN, "bulwark.test/other");
    ensure!(add_checkpoint(&url, body(20, &[], &unknown)).await?.status == 404);
    ensure!(add_checkpoint(&url, "old 1\n".into()).await?.status == 400);

    // The witness dies after recording size 30 and before answering.
    process.terminate().await?;
    let (mut crashing, crash_url) = start(dir.path(), true).await?;
    if let Ok(answer) =
        add_checkpoint(&crash_url, body(20, &log.proof(20, 30), &log.note(30))).await
    {
        bail!(
            "a crashing witness answered {} {}",
            answer.status,
            answer.text
        );
    }
    let status = crashing
        .wait_timeout(Duration::from_secs(10))
        .await?
        .context("the witness did not exit")?;
    ensure!(status.code() == Some(86), "exited {status}");

    // Back up, it holds 30: an old size of 20 is stale, a fork at 30 is
    // refused, and the genuine 30 is cosigned on request.
    let (mut process, url) = start(dir.path(), false).await?;
    let stale = add_checkpoint(&url, body(20, &log.proof(20, 30), &log.note(30))).await?;
    ensure!(
        stale.status == 409 && stale.text == "30\n",
        "after the crash: {} {}",
        stale.status,
        stale.text
    );
    ensure!(
        add_checkpoint(&url, body(30, &[], &fork.note(30)))
            .await?
            .status
            == 422
    );
    cosigned_at(
        &witness,
        &log.note(30),
        &add_checkpoint(&url, body(30, &[], &log.note(30))).await?,
    )?;
    cosigned_at(
        &witness,
        &log.note(40),
        &add_checkpoint(&url, body(30, &log.proof(30, 40), &log.note(40))).await?,
    )?;
    process.terminate().await?;
    Ok(())
}
