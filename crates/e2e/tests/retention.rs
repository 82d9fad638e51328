//! Retention with archives (RFD 0003, "Retention and archives") against
//! the real binaries: entries of the demo tenant's log are aged past the
//! retention period in `bulwark up`'s SQLite file, the server archives them
//! at its next start (files under `data_dir/archive/<log>/`, verified, then
//! removed from the database), and an auditor verifies the whole log with
//! the archive, the rest without it (told that the prefix is archived), the
//! archive alone offline, and catches an archive with one edited leaf.
//! Needs the `sqlite3` tool.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bulwark_api::log::{LogEntriesView, LogHeadView};
use bulwark_e2e::{Finished, OperatorSetup, UpProcess, operator_login, sql_text, wait_for};
use bulwark_e2e::{Method, StatusCode};
use bulwark_protocol::audit_leaf::AuditLeaf;
use serde_json::{Value, json};

const PASSPHRASE: &str = "e2e retention: a passphrase nobody guesses";
const TENANT: &str = "demo";
/// Entries aged past the retention period, then the next ones.
const K: u64 = 12;
const K2: u64 = 20;

fn code(out: &Finished) -> Option<i32> {
    out.status.code()
}

async fn verify(s: &OperatorSetup, extra: &[&str]) -> Result<Finished> {
    let mut args = vec!["audit", "verify"];
    args.extend_from_slice(extra);
    s.cli(&args, None).await
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

/// Stops `up`, ages entries `[from, below)` of `log` by 400 days, starts
/// it again (the archiver runs at start), waits for the archive directory
/// and for the head to say `archived_below = below`, and logs the CLI and
/// the API in again (the port changed). Returns the archive directory.
async fn age_and_restart(
    s: &mut OperatorSetup,
    log: &str,
    from: u64,
    below: u64,
) -> Result<PathBuf> {
    s.up.stop().await?;
    s.sql(&format!(
        "UPDATE log_entries SET at = at - 400 * 86400000 WHERE log_id = {} AND idx >= {from} AND idx < {below}",
        sql_text(log)
    ))?;
    let options = s.up.options().clone().data_dir(s.up.shared_data_dir());
    let started = Instant::now();
    s.up = UpProcess::start(options).await?;
    let archive =
        s.up.data_dir()
            .join("archive")
            .join(log)
            .join(format!("{from}-{}", below - 1));
    wait_for(
        Duration::from_secs(30),
        "the archive directory",
        async || Ok(archive.join("README.txt").exists().then_some(())),
    )
    .await?;
    eprintln!(
        "archive of entries {from}..{below} written {:.2?} after the restart began",
        started.elapsed()
    );
    s.api = {
        let api = s.up.api();
        api.with_token(&api.login(&s.owner).await?)
    };
    operator_login(&s.up, &s.config, PASSPHRASE, &s.owner).await?;
    let head = wait_for(
        Duration::from_secs(30),
        "archived_below in the log head",
        async || {
            let head: LogHeadView = s
                .api
                .get_as(&format!("/api/v1/tenants/{TENANT}/log"))
                .await?;
            Ok((head.archived_below == below).then_some(head))
        },
    )
    .await?;
    ensure!(!head.archived_frontier.is_empty(), "{head:?}");
    Ok(archive)
}

#[tokio::test]
async fn old_entries_are_archived_and_the_archive_verifies() -> Result<()> {
    let mut s = OperatorSetup::start(PASSPHRASE).await?;
    for _ in 0..25 {
        s.api.issue_token_reply(TENANT).await?;
    }
    let before = s
        .cli_json(&["audit", "verify", "--tenant", TENANT, "--json"])
        .await?;
    let log = before["log_id"].as_str().context("log id")?.to_owned();
    let size = before["size"].as_u64().context("size")?;
    ensure!(size > K + 10, "{before}");

    // Stop, age the first K entries by 400 days, start again.
    let archive = age_and_restart(&mut s, &log, 0, K).await?;
    let head_path = format!("/api/v1/tenants/{TENANT}/log");

    // What left the database, what stayed, and the event.
    let left = s.sql(&format!(
        "SELECT count(*) FROM log_entries WHERE log_id = {} AND idx < {K}",
        sql_text(&log)
    ))?;
    ensure!(
        left.trim() == "0",
        "archived entries still in the database: {left}"
    );
    let nodes = s.sql(&format!(
        "SELECT count(*) FROM log_nodes WHERE log_id = {} AND level = 0 AND idx < {K}",
        sql_text(&log)
    ))?;
    ensure!(
        nodes.trim() == K.to_string(),
        "leaf hashes must stay: {nodes}"
    );
    let events = s.sql(&format!(
        "SELECT detail FROM audit_events WHERE action = 'log.archived' AND target = {}",
        sql_text(&log)
    ))?;
    ensure!(
        events.contains(&format!("entries 0..{}", K - 1)),
        "log.archived event: {events:?}"
    );
    for file in [
        "log.vkey",
        "entries.ndjson",
        "checkpoints.ndjson",
        "proofs.ndjson",
    ] {
        ensure!(
            archive.join(file).exists(),
            "{file} missing from the archive"
        );
    }

    // The API: 410 Gone below archived_below, with the range named.
    let reply = s
        .api
        .call(
            Method::GET,
            &format!("{head_path}/entries?start=0&limit=5"),
            None,
        )
        .await?;
    ensure!(reply.status == StatusCode::GONE, "{:?}", reply.status);
    ensure!(reply.error_code()? == "archived", "{:?}", reply.status);
    let page: LogEntriesView = s
        .api
        .get_as(&format!("{head_path}/entries?start={K}&limit=2"))
        .await?;
    ensure!(
        page.entries.first().is_some_and(|e| e.index == K),
        "{page:?}"
    );

    // 1. The whole log with the archive (copied out of the data directory).
    let work = s.work.path().to_owned();
    let copied: PathBuf = work.join("archive-copy");
    copy_dir(&archive, &copied)?;
    let with = verify(
        &s,
        &[
            "--tenant",
            TENANT,
            "--archive",
            &copied.display().to_string(),
            "--json",
        ],
    )
    .await?;
    ensure!(code(&with) == Some(0), "{}", with.all_output());
    let with: Value = serde_json::from_str(&with.stdout)?;
    ensure!(
        with["ok"] == true && with["first_checked"] == 0 && with["size"].as_u64() >= Some(size),
        "{with}"
    );

    // 2. Without it: the rest is checked, the prefix is named as archived
    //    and not checked (exit 3), never as deleted.
    let without = verify(&s, &["--tenant", TENANT]).await?;
    eprintln!("{}", without.stdout);
    ensure!(code(&without) == Some(3), "{}", without.all_output());
    ensure!(
        without.stdout.contains(&format!(
            "entries 0 to {} are ARCHIVED and were NOT checked",
            K - 1
        )),
        "{}",
        without.stdout
    );
    ensure!(
        !without.all_output().contains("deleted"),
        "{}",
        without.stdout
    );

    // 3. The archive alone, offline.
    let alone = verify(&s, &["--from", &copied.display().to_string()]).await?;
    eprintln!("{}", alone.stdout);
    ensure!(code(&alone) == Some(0), "{}", alone.all_output());
    ensure!(
        alone
            .stdout
            .contains(&format!("archive of entries 0 to {} OK", K - 1)),
        "{}",
        alone.stdout
    );

    // 4. One leaf edited in a copy of the archive (still a canonical leaf of
    //    this tenant, so only the tree can tell): caught, index named.
    let tampered = work.join("archive-tampered");
    copy_dir(&archive, &tampered)?;
    let path = tampered.join("entries.ndjson");
    let mut lines: Vec<Value> = std::fs::read_to_string(&path)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let bad = 5usize;
    let leaf = B64.decode(lines[bad]["leaf"].as_str().context("leaf")?)?;
    let mut event = AuditLeaf::decode(&leaf).map_err(|e| anyhow::anyhow!("{e}"))?;
    event.actor = "someone-else".to_owned();
    lines[bad]["leaf"] = json!(B64.encode(event.encode()));
    std::fs::write(
        &path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )?;
    let caught = verify(
        &s,
        &[
            "--tenant",
            TENANT,
            "--archive",
            &tampered.display().to_string(),
        ],
    )
    .await?;
    eprintln!("{}", caught.stdout);
    ensure!(code(&caught) == Some(1), "{}", caught.all_output());
    ensure!(
        caught.stdout.contains(&format!("first bad index: {bad}")),
        "{}",
        caught.stdout
    );
    let offline = verify(&s, &["--from", &tampered.display().to_string()]).await?;
    ensure!(code(&offline) == Some(1), "{}", offline.all_output());

    // 5. A second archive, of the entries after the first: it starts from
    //    the compact range of entries 0..K, verifies alone, and chains
    //    with the first.
    let second = age_and_restart(&mut s, &log, K, K2).await?;
    let first_line = std::fs::read_to_string(second.join("checkpoints.ndjson"))?;
    let first_line: Value = serde_json::from_str(first_line.lines().next().context("a head")?)?;
    ensure!(
        first_line["size"] == K && first_line["frontier"].is_array(),
        "{first_line}"
    );
    let second_copy = work.join("archive-copy-2");
    copy_dir(&second, &second_copy)?;
    let both = verify(
        &s,
        &[
            "--tenant",
            TENANT,
            "--archive",
            &second_copy.display().to_string(),
            "--archive",
            &copied.display().to_string(),
        ],
    )
    .await?;
    eprintln!("{}", both.stdout);
    ensure!(code(&both) == Some(0), "{}", both.all_output());
    let alone = verify(&s, &["--from", &second_copy.display().to_string()]).await?;
    eprintln!("{}", alone.stdout);
    ensure!(code(&alone) == Some(0), "{}", alone.all_output());
    ensure!(
        alone
            .stdout
            .contains(&format!("archive of entries {K} to {} OK", K2 - 1)),
        "{}",
        alone.stdout
    );
    // The second alone cannot stand for the whole archived prefix.
    let gap = verify(
        &s,
        &[
            "--tenant",
            TENANT,
            "--archive",
            &second_copy.display().to_string(),
        ],
    )
    .await?;
    ensure!(code(&gap) == Some(2), "{}", gap.all_output());
    ensure!(
        gap.stderr.contains("do not follow each other"),
        "{}",
        gap.stderr
    );
    let without = verify(&s, &["--tenant", TENANT]).await?;
    ensure!(code(&without) == Some(3), "{}", without.all_output());
    ensure!(
        without
            .stdout
            .contains(&format!("entries 0 to {} are ARCHIVED", K2 - 1)),
        "{}",
        without.stdout
    );

    // An export of the log now starts at the archived prefix's end, from
    // its compact range, and verifies offline.
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
    let offline = verify(&s, &["--from", &export.display().to_string()]).await?;
    eprintln!("{}", offline.stdout);
    ensure!(code(&offline) == Some(0), "{}", offline.all_output());
    ensure!(
        offline.stdout.contains(&format!(
            "entries 0 to {} are not in this directory",
            K2 - 1
        )),
        "{}",
        offline.stdout
    );

    // The MSP log, holding the log.archived events, still verifies.
    let msp = s.cli_json(&["audit", "verify", "--msp", "--json"]).await?;
    ensure!(msp["ok"] == true, "{msp}");
    s.up.stop().await?;
    Ok(())
}
