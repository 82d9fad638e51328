//! `bulwark audit export`: a directory an auditor can verify offline.

use super::*;

/// The export's statements file (tenant logs).
pub(super) const STATEMENTS: &str = "statements.json";

pub(super) const README: &str = "\
Bulwark transparency log export
===============================

This directory holds one Bulwark transparency log (RFD 0003): every entry,
every signed tree head, and the consistency proofs between consecutive
heads. It can be verified offline, without the server:

    bulwark audit verify --from DIR [--log-key VKEY] [--head SAVED-HEAD]
                         [--witness WITNESS-VKEY ...]

Compare the key in log.vkey with the one the MSP gives you out of band (or
pass it with --log-key): everything else is checked against it. That key
sits on the MSP's server, so whoever owns the server can sign a rewritten
history with it; the keys of the tenant's witnesses (--witness, or those
named by the tenant's policy in statements.json) show such a history: the
newest head must carry their cosignatures, which no witness gives a fork.

Files
-----
log.vkey           The log key: a Go signed-note verifier key
                   (<name>+<key id>+<base64 of 0x01 || Ed25519 public key>).
entries.ndjson     One JSON object per line, in index order from 0:
                   {\"index\": N, \"leaf\": \"<base64>\", \"at\": <unix ms>,
                    \"hash\": \"<base64>\"}
                   leaf: standard base64 (padded) of the exact leaf bytes.
                   The Merkle tree (RFC 6962 / RFC 9162, SHA-256) holds
                   SHA-256(0x00 || leaf); audit events are the canonical CBOR
                   map of RFD 0003, \"Audit event leaf, version 1\".
                   at: when the entry was appended (not part of the leaf).
                   hash: the leaf hash the server's tree held at that index,
                   stored apart from the leaf. When the hashes give a signed
                   head's root, an entry whose own hash differs was changed:
                   verify names it.
head.json          The head this export was made up to:
                   {\"log_id\", \"size\": N, \"note\": \"<signed checkpoint>\",
                    \"archived_below\": A}
                   entries.ndjson holds entries A to N-1 (A > 0: entries
                   0 to A-1 were archived by the server, past its retention
                   period; the checkpoint line of size A gives their compact
                   range, \"frontier\").
statements.json    A tenant log's trust statements and job envelopes:
                   {\"trust\": [{\"kind\", \"version\", \"envelope\"}],
                    \"jobs\": [{\"id\", \"envelope\"}]} (envelopes base64).
                   verify replays the log's meaning with them: each
                   published statement with the agents' rules from the
                   pinned root, each released job against its policy.
checkpoints.ndjson One JSON object per line, smallest size first:
                   {\"size\": N, \"note\": \"<signed checkpoint>\"}
                   note: the C2SP checkpoint (origin <key name>/<log id>,
                   size, base64 root) signed by log.vkey, verbatim, with
                   any witness cosignature lines (C2SP tlog-cosignature).
proofs.ndjson      One JSON object per line, for each pair of consecutive
                   checkpoints (sizes above 0):
                   {\"from\": A, \"to\": B, \"hashes\": [\"<base64>\", ...]}
                   the RFC 9162 2.1.4 consistency proof from size A to B.

What verification checks
------------------------
Every checkpoint (and the head in head.json) is signed by log.vkey and
names this log; every leaf is a canonical audit event of this log; the
entries, replayed in order, have no missing index and give each
checkpoint's root at its size; they reach the newest checkpoint and the
head in head.json, and go no further (entries cut from the end, or an empty
entries.ndjson, fail and are counted); each consistency proof holds; and,
with --head, the log extends a checkpoint you saved earlier (bulwark audit
verify --save-head FILE). Keep a saved head outside the MSP's reach: a log
truncated or rewritten after you saved it cannot match it again, and an
export cut back together with its later heads falls short of it.

Exit codes: 0 verified, 1 the log fails verification (the problem and the
first entry concerned are printed), 2 it could not be checked (usage, an
unreadable or malformed file), 4 the log verifies against log.vkey but its
newest head lacks the cosignatures of the witnesses required.
";

pub(super) async fn export(args: ExportArgs) -> Result<()> {
    let started = Instant::now();
    let ServedLog {
        session,
        base,
        vkey,
        head,
        log_id,
    } = served_log(&args.log).await?;
    announce(&session, &base, ExportPurpose::Export, &head).await?;
    let notes = fetch_checkpoints(&session, &base).await?;
    let size = notes.last().map_or(0, |(size, _)| *size);
    // Entries below `archived_below` left the server (retention): the
    // export starts there, from the compact range of the archived ones.
    let archived_below = head.archived_below.min(size);
    if archived_below > 0 {
        ensure!(
            notes.iter().any(|(s, _)| *s == archived_below),
            "entries 0 to {} are archived and the server holds no signed head of size \
             {archived_below} to start the export from",
            archived_below - 1
        );
    }

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let create = |name: &str| -> Result<BufWriter<std::fs::File>> {
        let path = args.out.join(name);
        Ok(BufWriter::new(
            std::fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?,
        ))
    };
    std::fs::write(args.out.join("log.vkey"), format!("{}\n", vkey.trim()))?;
    std::fs::write(args.out.join("README.txt"), README)?;
    if log_id != bulwark_protocol::audit_leaf::MSP_LOG {
        let statements: LogStatementsView = session.get(&format!("{base}/statements")).await?;
        // Through a JSON value: its keys sorted, as every export wrote them.
        std::fs::write(
            args.out.join(STATEMENTS),
            serde_json::to_string(&serde_json::to_value(&statements)?)?,
        )?;
    }

    // The head this export is made up to, where its entries start, and
    // that it is an export: `verify --from` holds it to every entry of
    // that head (a file cut back to an earlier head fails).
    if let Some((size, note)) = notes.last() {
        std::fs::write(
            args.out.join(RECORDED_HEAD),
            format!(
                "{}\n",
                json!({
                    "log_id": log_id,
                    "size": size,
                    "note": note,
                    "archived_below": archived_below,
                })
            ),
        )?;
    }

    let mut file = create("checkpoints.ndjson")?;
    for (size, note) in &notes {
        let mut line = json!({"size": size, "note": note});
        if archived_below > 0 && *size == archived_below {
            line["frontier"] = json!(head.archived_frontier);
        }
        writeln!(file, "{line}")?;
    }
    file.flush()?;

    let mut file = create("proofs.ndjson")?;
    for pair in notes.windows(2) {
        let (from, to) = (pair[0].0, pair[1].0);
        if from == 0 {
            continue;
        }
        let proof = consistency_proof(&session, &base, from, to).await?;
        writeln!(
            file,
            "{}",
            json!({"from": from, "to": to, "hashes": proof.hashes})
        )?;
    }
    file.flush()?;

    let bar = progress(size, "exporting entries");
    let mut file = create("entries.ndjson")?;
    let mut next = archived_below;
    while next < size {
        let entries = entry_page(&session, &base, next).await?;
        if entries.is_empty() {
            break;
        }
        for entry in entries {
            let index = entry.index;
            if index >= size {
                next = size;
                break;
            }
            writeln!(
                file,
                "{}",
                json!({"index": index, "leaf": entry.leaf, "at": entry.at, "hash": entry.hash})
            )?;
            next = index + 1;
        }
        bar.set_position(next);
    }
    file.flush()?;
    bar.finish_and_clear();
    println!(
        "Exported log {log_id}: {} entries, {} signed heads, to {} in {:.2?}.",
        next - archived_below,
        notes.len(),
        args.out.display(),
        started.elapsed()
    );
    if archived_below > 0 {
        println!(
            "Entries 0 to {} are archived (past the retention period) and not in this export: \
             it starts at {archived_below}, from the compact range of those entries (the \
             server's data_dir/archive/{log_id}/ holds them).",
            archived_below - 1
        );
    }
    println!(
        "Verify it offline with: bulwark audit verify --from {}",
        args.out.display()
    );
    Ok(())
}
