//! The auditor's `bulwark audit verify` against the real binaries, then as
//! an attacker holding the server's SQLite file and its log key (RFD 0003,
//! DESIGN.md invariant 4): an entry changed, an entry deleted, the log
//! truncated, and a second tree head signed for a size the auditor already
//! saw. Each is caught, with exit code 1 and the entry (or tree size) named.
//! Between attacks the log's rows are put back from copies made in the same
//! database. Needs the `sqlite3` tool.

use anyhow::{Context, Result, ensure};
use bulwark_api::log::LogEntriesView;
use bulwark_api::tenants::TenantView;
use bulwark_e2e::{Finished, OperatorSetup, decode_hex, sql_text};
use bulwark_protocol::audit_leaf::AuditLeaf;
use bulwark_translog::{Checkpoint, Frontier, Hash, NoteSigner, leaf_hash};
use serde_json::{Value, json};

const PASSPHRASE: &str = "e2e audit log: a passphrase nobody guesses";
const TENANT: &str = "audited";
const TABLES: [&str; 4] = ["log_entries", "log_nodes", "log_heads", "log_checkpoints"];

async fn events(s: &OperatorSetup, n: usize) -> Result<()> {
    for _ in 0..n {
        s.api.issue_token_reply(TENANT).await?;
    }
    Ok(())
}

async fn verify(s: &OperatorSetup, extra: &[&str]) -> Result<Finished> {
    let mut args = vec!["audit", "verify", "--tenant", TENANT];
    args.extend_from_slice(extra);
    s.cli(&args, None).await
}

/// `audit verify` found a bad log (exit 1) and printed `needles`.
fn refused(out: &Finished, needles: &[String]) -> Result<()> {
    ensure!(
        out.status.code() == Some(1),
        "expected exit 1, got {}:\n{}",
        out.status,
        out.all_output()
    );
    for needle in needles {
        ensure!(
            out.stdout.contains(needle.as_str()),
            "{needle:?} not in:\n{}",
            out.all_output()
        );
    }
    Ok(())
}

fn backup(s: &OperatorSetup, log: &str) -> Result<()> {
    for table in TABLES {
        s.sql(&format!(
            "DROP TABLE IF EXISTS bk_{table}; CREATE TABLE bk_{table} AS SELECT * FROM {table} WHERE log_id = {};",
            sql_text(log)
        ))?;
    }
    Ok(())
}

fn restore(s: &OperatorSetup, log: &str) -> Result<()> {
    let mut sql = String::from("BEGIN;");
    for table in TABLES {
        sql.push_str(&format!(
            "DELETE FROM {table} WHERE log_id = {}; INSERT INTO {table} SELECT * FROM bk_{table};",
            sql_text(log)
        ));
    }
    sql.push_str("COMMIT;");
    s.sql(&sql)?;
    Ok(())
}

fn leaf_at(s: &OperatorSetup, log: &str, idx: u64) -> Result<Vec<u8>> {
    decode_hex(&s.sql(&format!(
        "SELECT hex(leaf) FROM log_entries WHERE log_id = {} AND idx = {idx}",
        sql_text(log)
    ))?)
}

/// The `log.exported` events of the tenant's log, with their indexes, read
/// through the auditor's API.
async fn exported_events(s: &OperatorSetup) -> Result<Vec<(u64, AuditLeaf)>> {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;
    let page: LogEntriesView = s
        .api
        .get_as(&format!("/api/v1/tenants/{TENANT}/log/entries?start=0"))
        .await?;
    let mut out = Vec::new();
    for entry in page.entries {
        let leaf = B64.decode(&entry.leaf)?;
        let leaf = AuditLeaf::decode(&leaf).map_err(|e| anyhow::anyhow!("{e}"))?;
        if leaf.action == "log.exported" {
            out.push((entry.index, leaf));
        }
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[tokio::test]
async fn audit_verify_catches_every_rewrite_of_the_log() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let _: TenantView = s
        .api
        .post_as("/api/v1/tenants", &json!({ "name": TENANT }))
        .await?;
    s.cli(&["tenant", "init", "--tenant", TENANT], None)
        .await?
        .ok()?;
    events(&s, 20).await?;
    let work = s.work.path();
    let head1 = work.join("head-1.note");
    let head2 = work.join("head-2.note");

    // 1. A clean log verifies; the log key is pinned on first use.
    let out = verify(&s, &["--save-head", &head1.display().to_string()])
        .await?
        .ok()?;
    ensure!(out.stdout.contains(": OK"), "{}", out.stdout);
    ensure!(
        out.stderr.contains("First use: pinned the log key"),
        "{}",
        out.stderr
    );
    let pins: Vec<_> = std::fs::read_dir(s.config.join("log-keys"))?.collect();
    ensure!(pins.len() == 1, "one pinned key: {pins:?}");
    // The MSP log too (events of no tenant: the owner's setup, logins...).
    let msp = s.cli_json(&["audit", "verify", "--msp", "--json"]).await?;
    ensure!(msp["ok"] == true && msp["log_id"] == "msp", "{msp}");
    events(&s, 20).await?;
    let out = s
        .cli_json(&[
            "audit",
            "verify",
            "--tenant",
            TENANT,
            "--head",
            &head1.display().to_string(),
            "--save-head",
            &head2.display().to_string(),
            "--json",
        ])
        .await?;
    ensure!(
        out["ok"] == true && out["saved_head_checked"] == true && out["meaning_replayed"] == true,
        "{out}"
    );
    let log = out["log_id"].as_str().context("log id")?.to_owned();
    let size = out["size"].as_u64().context("size")?;
    ensure!(size >= 42, "{out}");
    eprintln!(
        "audit verify: {size} entries at {} entries/s",
        out["entries_per_second"]
    );
    // The saved head is the signed checkpoint, verbatim.
    let saved = std::fs::read_to_string(&head2)?;
    ensure!(
        saved.lines().nth(1) == Some(size.to_string().as_str()),
        "{saved}"
    );
    // Exported, then verified offline.
    let export = work.join("export");
    s.cli(
        &[
            "audit",
            "export",
            "--tenant",
            TENANT,
            "--out",
            &export.display().to_string(),
        ],
        None,
    )
    .await?
    .ok()?;
    for file in [
        "log.vkey",
        "entries.ndjson",
        "checkpoints.ndjson",
        "proofs.ndjson",
        "statements.json",
        "README.txt",
    ] {
        ensure!(export.join(file).exists(), "{file} missing");
    }
    // The export covers the latest signed head when it ran: the verify's
    // own `log.exported` event (entry `size`) is in it, and it extends the
    // head that verify saved.
    let offline = s
        .cli_json(&[
            "audit",
            "verify",
            "--from",
            &export.display().to_string(),
            "--head",
            &head2.display().to_string(),
            "--json",
        ])
        .await?;
    ensure!(
        offline["ok"] == true
            && offline["size"].as_u64() > Some(size)
            && offline["saved_head_checked"] == true
            && offline["meaning_replayed"] == true,
        "{offline}"
    );

    // Each online run announced itself: one `log.exported` event in the
    // tenant's log per run, by the operator the CLI is signed in as, right
    // after the head the run read (so never part of what it checked).
    let exported = exported_events(&s).await?;
    let runs: Vec<(u64, &str, &str)> = exported
        .iter()
        .map(|(i, l)| (*i, l.actor.as_str(), l.detail.as_str()))
        .collect();
    ensure!(runs.len() == 3, "{runs:?}");
    let by_owner = s.owner.username.as_str();
    ensure!(
        runs.iter().all(|(_, actor, _)| *actor == by_owner)
            && exported
                .iter()
                .all(|(_, l)| l.target == log && l.tenant.as_deref() == Some(log.as_str())),
        "{exported:?}"
    );
    let export_detail = format!("export up to size {} (session)", size + 1);
    ensure!(
        runs[1]
            == (
                size,
                by_owner,
                format!("verify up to size {size} (session)").as_str()
            )
            && runs[2] == (size + 1, by_owner, export_detail.as_str()),
        "{runs:?}"
    );
    // If the server cannot record the announcement, the CLI stops (exit 2)
    // and nothing is appended: the event's transaction failed whole.
    s.sql(
        "CREATE TRIGGER no_exports BEFORE INSERT ON audit_events \
         WHEN NEW.action = 'log.exported' BEGIN SELECT RAISE(ABORT, 'no exports'); END;",
    )?;
    let before = s.sql(&format!(
        "SELECT size FROM log_heads WHERE log_id = {}",
        sql_text(&log)
    ))?;
    for args in [
        vec!["audit", "verify", "--tenant", TENANT],
        vec![
            "audit",
            "export",
            "--tenant",
            TENANT,
            "--out",
            &work.join("export-refused").display().to_string(),
        ],
    ] {
        let out = s.cli(&args, None).await?;
        ensure!(
            out.status.code() == Some(2)
                && out.stderr.contains("did not record")
                && !out.stdout.contains(": OK"),
            "{args:?}: {}",
            out.all_output()
        );
    }
    ensure!(
        !work.join("export-refused").join("entries.ndjson").exists(),
        "an export went on without its announcement"
    );
    let after = s.sql(&format!(
        "SELECT size FROM log_heads WHERE log_id = {}",
        sql_text(&log)
    ))?;
    ensure!(before == after, "{before} then {after}");
    s.sql("DROP TRIGGER no_exports;")?;
    // Another log key than the pinned one is refused (a usage error, 2).
    let other = NoteSigner::new(
        "elsewhere/bulwark-log",
        ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
    )?
    .verifier()
    .to_vkey();
    let announced = exported_events(&s).await?.len();
    let wrong = verify(&s, &["--log-key", &other]).await?;
    ensure!(wrong.status.code() == Some(2), "{}", wrong.all_output());
    // A run that stops at its local checks announced nothing.
    ensure!(
        exported_events(&s).await?.len() == announced,
        "a verify refused for its key was recorded as an export"
    );

    backup(&s, &log)?;

    // (a) An entry's leaf rewritten: another actor, still a canonical leaf.
    let edited = size - 10;
    let mut leaf = AuditLeaf::decode(&leaf_at(&s, &log, edited)?)?;
    leaf.actor = "mallory".into();
    s.sql(&format!(
        "UPDATE log_entries SET leaf = X'{}' WHERE log_id = {} AND idx = {edited}",
        hex(&leaf.encode()),
        sql_text(&log)
    ))?;
    let out = verify(&s, &[]).await?;
    refused(
        &out,
        &[format!("first bad index: {edited}"), "changed_entry".into()],
    )?;
    // Offline, from an export of the changed log.
    let bad_export = work.join("export-a");
    s.cli(
        &[
            "audit",
            "export",
            "--tenant",
            TENANT,
            "--out",
            &bad_export.display().to_string(),
        ],
        None,
    )
    .await?
    .ok()?;
    let out = s
        .cli(
            &[
                "audit",
                "verify",
                "--from",
                &bad_export.display().to_string(),
                "--json",
            ],
            None,
        )
        .await?;
    ensure!(out.status.code() == Some(1), "{}", out.all_output());
    let reply: Value = serde_json::from_str(&out.stdout)?;
    // The export lists the leaf hash the tree holds beside each entry: the
    // edited entry is named offline too.
    ensure!(
        reply["index"] == edited && reply["problem"] == "changed_entry",
        "{reply}"
    );
    // Without those hashes (an export made before them), the range holding it.
    let entries_file = bad_export.join("entries.ndjson");
    let without_hashes: String = std::fs::read_to_string(&entries_file)?
        .lines()
        .map(|line| {
            let mut entry: Value = serde_json::from_str(line)?;
            entry
                .as_object_mut()
                .context("an entry is an object")?
                .remove("hash");
            Ok(format!("{entry}\n"))
        })
        .collect::<Result<_>>()?;
    std::fs::write(&entries_file, without_hashes)?;
    let out = s
        .cli(
            &[
                "audit",
                "verify",
                "--from",
                &bad_export.display().to_string(),
                "--json",
            ],
            None,
        )
        .await?;
    ensure!(out.status.code() == Some(1), "{}", out.all_output());
    let reply: Value = serde_json::from_str(&out.stdout)?;
    let (from, to) = (
        reply["index"].as_u64().context("index")?,
        reply["head_size"].as_u64().context("head size")?,
    );
    ensure!(
        from <= edited && edited < to && reply["problem"] == "root_mismatch",
        "{reply}"
    );
    restore(&s, &log)?;
    verify(&s, &[]).await?.ok()?;

    // (b) An entry deleted.
    let deleted = size - 5;
    s.sql(&format!(
        "DELETE FROM log_entries WHERE log_id = {} AND idx = {deleted}",
        sql_text(&log)
    ))?;
    let out = verify(&s, &[]).await?;
    refused(
        &out,
        &[
            format!("first bad index: {deleted}"),
            "deleted_entry".into(),
        ],
    )?;
    restore(&s, &log)?;

    // (c) Truncated: the last entries and the heads over them removed. The
    // server still holds the head row and signs it again: caught.
    let cut = size - 3;
    s.sql(&format!(
        "DELETE FROM log_entries WHERE log_id = {log} AND idx >= {cut}; \
         DELETE FROM log_checkpoints WHERE log_id = {log} AND size > {cut};",
        log = sql_text(&log)
    ))?;
    let out = verify(&s, &[]).await?;
    refused(
        &out,
        &[format!("first bad index: {cut}"), "truncated".into()],
    )?;
    restore(&s, &log)?;
    // A thorough attacker also removes the subtrees and rewrites the head,
    // so that the server itself believes the log ends at `cut`: only the
    // saved head shows it.
    let mut frontier = Frontier::new();
    for idx in 0..cut {
        frontier
            .append(leaf_hash(&leaf_at(&s, &log, idx)?))
            .map_err(|_| anyhow::anyhow!("tree full"))?;
    }
    let frontier_hex: String = frontier.hashes().iter().map(|h| hex(&h.0)).collect();
    s.sql(&format!(
        "BEGIN; \
         DELETE FROM log_entries WHERE log_id = {log} AND idx >= {cut}; \
         DELETE FROM log_nodes WHERE log_id = {log} AND ((idx + 1) << level) > {cut}; \
         DELETE FROM log_checkpoints WHERE log_id = {log} AND size > {cut}; \
         UPDATE log_heads SET size = {cut}, root = X'{root}', frontier = X'{frontier_hex}' \
           WHERE log_id = {log}; \
         COMMIT;",
        log = sql_text(&log),
        root = hex(&frontier.root().0),
    ))?;
    verify(&s, &[]).await?.ok()?;
    // That verify's announcement went onto the truncated log (entry `cut`,
    // under a head the server signed): the log now ends one entry later,
    // still short of the saved head.
    let out = verify(&s, &["--head", &head2.display().to_string(), "--json"]).await?;
    ensure!(out.status.code() == Some(1), "{}", out.all_output());
    let reply: Value = serde_json::from_str(&out.stdout)?;
    ensure!(
        reply["problem"] == "truncated"
            && reply["index"].as_u64().is_some_and(|i| i > cut && i < size),
        "{reply}"
    );
    restore(&s, &log)?;
    verify(&s, &["--head", &head2.display().to_string()])
        .await?
        .ok()?;

    // (d) Split view: another tree head for size `size`, signed with the
    // real log key (stolen from the data directory), replaces the stored one.
    let skey = std::fs::read_to_string(s.up.data_dir().join("log").join("log.skey"))?;
    let signer = NoteSigner::from_skey(skey.trim())?;
    let note = s.sql(&format!(
        "SELECT note FROM log_checkpoints WHERE log_id = {} AND size = {size}",
        sql_text(&log)
    ))?;
    let origin = note.lines().next().context("origin")?;
    let forged = Checkpoint::new(origin, size, Hash([7; 32]), vec![])?.sign(&signer);
    s.sql(&format!(
        "UPDATE log_checkpoints SET note = {} WHERE log_id = {} AND size = {size}",
        sql_text(&forged),
        sql_text(&log)
    ))?;
    let out = verify(&s, &[]).await?;
    refused(&out, &[format!("tree head size:  {size}")])?;
    ensure!(
        out.stdout.contains("forged_head") || out.stdout.contains("changed_entry"),
        "{}",
        out.stdout
    );
    // With the head saved earlier: two heads of one size, a fork.
    let out = verify(&s, &["--head", &head2.display().to_string()]).await?;
    refused(
        &out,
        &[format!("tree head size:  {size}"), "split_view".into()],
    )?;
    restore(&s, &log)?;
    verify(&s, &["--head", &head2.display().to_string()])
        .await?
        .ok()?;
    Ok(())
}

/// An export of a larger log (synthetic audit events of one tenant, signed
/// heads every 10,000 entries) verified offline by the real binary: the
/// speed of `audit verify` (printed), and a line removed from the file is
/// named by its index.
#[tokio::test]
async fn a_large_export_verifies_offline() -> Result<()> {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;
    use std::io::Write;

    const N: u64 = 100_000;
    const TENANT_ID: &str = "0b5e3c1e-9c1a-4d7e-8f00-5a11ab1e0001";
    let signer = NoteSigner::new(
        "bench.example/bulwark-log",
        ed25519_dalek::SigningKey::from_bytes(&[3; 32]),
    )?;
    let vkey = signer.verifier().to_vkey();
    let dir = tempfile::tempdir()?;
    let export = dir.path().join("export");
    std::fs::create_dir_all(&export)?;
    std::fs::write(export.join("log.vkey"), format!("{vkey}\n"))?;
    let mut entries =
        std::io::BufWriter::new(std::fs::File::create(export.join("entries.ndjson"))?);
    let mut checkpoints =
        std::io::BufWriter::new(std::fs::File::create(export.join("checkpoints.ndjson"))?);
    let mut frontier = Frontier::new();
    let origin = format!("{}/{TENANT_ID}", signer.name());
    for index in 0..N {
        let leaf = AuditLeaf::new(
            1_700_000_000_000 + index as i64,
            Some(TENANT_ID.to_owned()),
            "olivia",
            "job.released",
            format!("job-{index}"),
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        )
        .encode();
        frontier
            .append(leaf_hash(&leaf))
            .map_err(|_| anyhow::anyhow!("tree full"))?;
        writeln!(
            entries,
            "{}",
            json!({"index": index, "leaf": B64.encode(&leaf), "at": 1_700_000_000_000 + index})
        )?;
        if frontier.size().is_multiple_of(10_000) {
            let note = Checkpoint::new(origin.as_str(), frontier.size(), frontier.root(), vec![])?
                .sign(&signer);
            writeln!(
                checkpoints,
                "{}",
                json!({"size": frontier.size(), "note": note})
            )?;
        }
    }
    entries.flush()?;
    checkpoints.flush()?;
    drop((entries, checkpoints));

    let config = dir.path().join("config");
    let run = |path: std::path::PathBuf| {
        let config = config.clone();
        let vkey = vkey.clone();
        async move {
            bulwark_e2e::operator_cli(
                &config,
                PASSPHRASE,
                &[
                    "audit",
                    "verify",
                    "--from",
                    &path.display().to_string(),
                    "--log-key",
                    &vkey,
                    "--json",
                ],
                None,
            )
            .await
        }
    };
    let out = run(export.clone()).await?.ok()?;
    let reply: Value = serde_json::from_str(&out.stdout)?;
    ensure!(reply["ok"] == true && reply["size"] == N, "{reply}");
    eprintln!(
        "audit verify --from: {N} entries in {:.2} s, {:.0} entries/s",
        reply["seconds"].as_f64().unwrap_or_default(),
        reply["entries_per_second"].as_f64().unwrap_or_default()
    );

    // Entry 54,321 removed from the file.
    let text = std::fs::read_to_string(export.join("entries.ndjson"))?;
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 54_321)
        .map(|(_, l)| l)
        .collect();
    std::fs::write(export.join("entries.ndjson"), kept.join("\n") + "\n")?;
    let out = run(export.clone()).await?;
    ensure!(out.status.code() == Some(1), "{}", out.all_output());
    let reply: Value = serde_json::from_str(&out.stdout)?;
    ensure!(
        reply["index"] == 54_321 && reply["problem"] == "deleted_entry",
        "{reply}"
    );
    Ok(())
}
