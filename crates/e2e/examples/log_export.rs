//! Writes a synthetic transparency-log export of N audit entries in the
//! format of `bulwark audit export` (RFD 0003, "Export format"), signed by a
//! fresh log key, for measuring `bulwark audit verify --from DIR` on large
//! logs (docs/figures.md):
//!
//! ```text
//! cargo run --release -p bulwark-e2e --example log_export -- 1000000 /tmp/log-1m
//! target/release/bulwark audit verify --from /tmp/log-1m
//! ```
//!
//! A head is signed every 10,000 entries and at the end, like a busy
//! server's 30-second cadence.

use std::io::{BufWriter, Write};

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bulwark_protocol::audit_leaf::AuditLeaf;
use bulwark_translog::tree::NodeId;
use bulwark_translog::{Checkpoint, Frontier, Hash, NoteSigner, leaf_hash};

const TENANT: &str = "00000000-0000-4000-8000-00000000b1a5";
const HEAD_EVERY: u64 = 10_000;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let count: u64 = args
        .next()
        .context("usage: log_export COUNT DIR")?
        .parse()
        .context("COUNT is a number")?;
    let dir = std::path::PathBuf::from(args.next().context("usage: log_export COUNT DIR")?);
    std::fs::create_dir_all(&dir)?;
    // A fixed key: the export is for measuring, not for trusting.
    let key = ed25519_dalek::SigningKey::from_bytes(&[0x42; 32]);
    let signer =
        NoteSigner::new("bench.example/bulwark-log", key).map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::write(
        dir.join("log.vkey"),
        format!("{}\n", signer.verifier().to_vkey()),
    )?;
    let origin = format!("{}/{TENANT}", signer.name());

    let mut entries = BufWriter::new(std::fs::File::create(dir.join("entries.ndjson"))?);
    let mut heads = BufWriter::new(std::fs::File::create(dir.join("checkpoints.ndjson"))?);
    let mut frontier = Frontier::new();
    let start_ms: i64 = 1_790_000_000_000;
    for index in 0..count {
        let at = start_ms + i64::try_from(index)?;
        let leaf = AuditLeaf::new(
            at,
            Some(TENANT.to_owned()),
            format!("operator-{}", index % 17),
            if index % 5 == 0 {
                "job.result"
            } else {
                "login.succeeded"
            },
            format!("target-{index}"),
            "synthetic entry for the audit verify benchmark",
        )
        .encode();
        frontier
            .append_with(leaf_hash(&leaf), |_: NodeId, _: &Hash| {})
            .map_err(|_| anyhow::anyhow!("tree full"))?;
        writeln!(
            entries,
            "{{\"index\":{index},\"leaf\":\"{}\",\"at\":{at}}}",
            STANDARD.encode(&leaf)
        )?;
        let size = index + 1;
        if size % HEAD_EVERY == 0 || size == count {
            let note = Checkpoint::new(origin.clone(), size, frontier.root(), vec![])
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .sign(&signer);
            writeln!(
                heads,
                "{}",
                serde_json::json!({ "size": size, "note": note })
            )?;
        }
    }
    entries.flush()?;
    heads.flush()?;
    // No consistency proofs: `audit verify --from` replays every entry.
    std::fs::write(dir.join("proofs.ndjson"), "")?;
    println!("{count} entries written to {}", dir.display());
    Ok(())
}
