//! Retention with archives (RFD 0003, "Retention and archives") against
//! the real binaries. Retention goes by the time signed inside each leaf,
//! so entries are made genuinely old: `bulwark up` runs with its clock set
//! by libfaketime, 400 days back, then 200 days back, then on the real
//! clock, then 200 days ahead (retention is 365 days). At the third start
//! the first run's entries of the demo tenant's log are past retention and
//! the second run's are not: the server archives exactly the first ones
//! (files under `data_dir/archive/<log>/`, verified, then removed from the
//! database), and an auditor verifies the whole log with the archive, the
//! rest without it (told that the prefix is archived), the archive alone
//! offline, and catches an archive with one edited leaf. At the fourth
//! start the second run's entries go too: a second archive, chained to the
//! first. Each archive is recorded in the archived log itself
//! (`log.archived`), which is what tells the auditor the prefix was
//! archived; entries then removed from the database by hand, with
//! `archived_below` raised, are reported missing (exit 1). (Editing the
//! `log_entries.at` column, as an attacker with the database could, ages
//! nothing: `crates/server/tests/retention.rs`.)
//! Needs the `sqlite3` tool and libfaketime (Debian package `faketime`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bulwark_api::log::{LogEntriesView, LogHeadView};
use bulwark_e2e::{
    Finished, OperatorSetup, UpOptions, UpProcess, copy_dir, operator_login, sql_text, wait_for,
};
use bulwark_e2e::{Method, StatusCode};
use bulwark_protocol::audit_leaf::AuditLeaf;
use serde_json::{Value, json};

const PASSPHRASE: &str = "e2e retention: a passphrase nobody guesses";
const TENANT: &str = "demo";
/// The clock of each run of `up`, in days from this machine's. Retention
/// is 365 days: at the third run (the real clock) the first run's entries
/// are past it and the second's are not; at the fourth, the second's are
/// and the third's are not. No run finds anything due before that.
const FIRST_RUN_DAYS: i64 = -400;
const SECOND_RUN_DAYS: i64 = -200;
const THIRD_RUN_DAYS: i64 = 0;
const FOURTH_RUN_DAYS: i64 = 200;

fn code(out: &Finished) -> Option<i32> {
    out.status.code()
}

async fn verify(s: &OperatorSetup, extra: &[&str]) -> Result<Finished> {
    let mut args = vec!["audit", "verify"];
    args.extend_from_slice(extra);
    s.cli(&args, None).await
}

/// Enrolment tokens issued in the demo tenant: one log entry each, signed
/// with the server's clock.
async fn issue_tokens(s: &OperatorSetup, count: usize) -> Result<()> {
    for _ in 0..count {
        s.api.issue_token_reply(TENANT).await?;
    }
    Ok(())
}

/// Stops `up` and starts it again on the same data directory with its
/// clock `clock_offset_days` from this machine's, and logs the CLI and the
/// API in again (the port changed). Returns the size `log` had when `up`
/// stopped: its entries below that were signed by the earlier runs.
async fn restart(s: &mut OperatorSetup, log: &str, clock_offset_days: i64) -> Result<u64> {
    s.up.stop().await?;
    let size = s
        .sql(&format!(
            "SELECT size FROM log_heads WHERE log_id = {}",
            sql_text(log)
        ))?
        .parse()
        .context("the log's size")?;
    let options =
        s.up.options()
            .clone()
            .data_dir(s.up.shared_data_dir())
            .clock_offset_days(clock_offset_days);
    s.up = UpProcess::start(options).await?;
    s.api = {
        let api = s.up.api();
        api.with_token(&api.login(&s.owner).await?)
    };
    operator_login(&s.up, &s.config, PASSPHRASE, &s.owner).await?;
    Ok(size)
}

/// Waits for the archive of exactly entries `[from, below)` of `log`, which
/// the archiver writes at start, and for the head to say `archived_below =
/// below`. Returns the archive directory.
async fn archived(s: &OperatorSetup, log: &str, from: u64, below: u64) -> Result<PathBuf> {
    ensure!(below > from, "no entries to archive: {from}..{below}");
    let started = Instant::now();
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
        "archive of entries {from}..{below} there {:.2?} after the restart and login",
        started.elapsed()
    );
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
    // The first run, 400 days ago: every entry it writes (the demo tenant,
    // its trust root and policy, the local agent's enrolment, the tokens
    // issued here) is signed then.
    let first_run = UpOptions::default().clock_offset_days(FIRST_RUN_DAYS);
    let mut s = OperatorSetup::start_with(PASSPHRASE, first_run).await?;
    issue_tokens(&s, 10).await?;
    let first = s
        .cli_json(&["audit", "verify", "--tenant", TENANT, "--json"])
        .await?;
    let log = first["log_id"].as_str().context("log id")?.to_owned();

    // The second run, 200 days ago: its entries are within retention even
    // now. Reading the head signs one over them, so the archive of the
    // first run's entries is followed by a later head.
    let k = restart(&mut s, &log, SECOND_RUN_DAYS).await?;
    issue_tokens(&s, 8).await?;
    let before = s
        .cli_json(&["audit", "verify", "--tenant", TENANT, "--json"])
        .await?;
    let size = before["size"].as_u64().context("size")?;
    ensure!(before["first_checked"] == 0, "archived too early: {before}");

    // The third run, on the real clock: the first `k` entries, all of the
    // first run's, are past retention and go; the second run's stay.
    let k2 = restart(&mut s, &log, THIRD_RUN_DAYS).await?;
    let archive = archived(&s, &log, 0, k).await?;
    let bad = 5u64;
    ensure!(
        k > bad && size > k && k2 >= size,
        "{k} and {k2} entries after the first and second runs, {before}"
    );
    // Entries signed now, which stay through the fourth run too.
    issue_tokens(&s, 5).await?;
    let head_path = format!("/api/v1/tenants/{TENANT}/log");

    // What left the database, what stayed, and the event.
    let left = s.sql(&format!(
        "SELECT count(*) FROM log_entries WHERE log_id = {} AND idx < {k}",
        sql_text(&log)
    ))?;
    ensure!(
        left.trim() == "0",
        "archived entries still in the database: {left}"
    );
    let nodes = s.sql(&format!(
        "SELECT count(*) FROM log_nodes WHERE log_id = {} AND level = 0 AND idx < {k}",
        sql_text(&log)
    ))?;
    ensure!(
        nodes.trim() == k.to_string(),
        "leaf hashes must stay: {nodes}"
    );
    let events = s.sql(&format!(
        "SELECT detail FROM audit_events WHERE action = 'log.archived' AND target = {}",
        sql_text(&log)
    ))?;
    // One in the MSP log, one in the tenant's own log.
    ensure!(
        events
            .lines()
            .filter(|detail| bulwark_api::log::parse_archived_detail(detail)
                .is_some_and(|(from, below, _)| (from, below) == (0, k)))
            .count()
            == 2,
        "log.archived events: {events:?}"
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
        .get_as(&format!("{head_path}/entries?start={k}&limit=2"))
        .await?;
    ensure!(
        page.entries.first().is_some_and(|e| e.index == k),
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
            k - 1
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
            .contains(&format!("archive of entries 0 to {} OK", k - 1)),
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
    let index = usize::try_from(bad)?;
    let leaf = B64.decode(lines[index]["leaf"].as_str().context("leaf")?)?;
    let mut event = AuditLeaf::decode(&leaf).map_err(|e| anyhow::anyhow!("{e}"))?;
    event.actor = "someone-else".to_owned();
    lines[index]["leaf"] = json!(B64.encode(event.encode()));
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

    // 5. A second archive, of the entries after the first: `up` starts 200
    //    days in the future, so the second run's entries are past retention
    //    and go, and the third's stay. It starts from the compact range of
    //    entries 0..`k`, verifies alone, and chains with the first.
    restart(&mut s, &log, FOURTH_RUN_DAYS).await?;
    let second = archived(&s, &log, k, k2).await?;
    let first_line = std::fs::read_to_string(second.join("checkpoints.ndjson"))?;
    let first_line: Value = serde_json::from_str(first_line.lines().next().context("a head")?)?;
    ensure!(
        first_line["size"] == k && first_line["frontier"].is_array(),
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
            .contains(&format!("archive of entries {k} to {} OK", k2 - 1)),
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
            .contains(&format!("entries 0 to {} are ARCHIVED", k2 - 1)),
        "{}",
        without.stdout
    );
    // Archived, not deleted: the log itself records both archives, each
    // with the whole prefix archived by then and the root of the signed
    // head at its end.
    ensure!(
        without.stdout.contains(&format!(
            "archiving:     recorded in this log: log.archived at index {k2} (entries 0 to {})",
            k - 1
        )) && without
            .stdout
            .contains(&format!("(entries 0 to {})", k2 - 1)),
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
            k2 - 1
        )),
        "{}",
        offline.stdout
    );

    // The MSP log, holding the log.archived events, still verifies: its
    // entries aged with the tenant's and were archived by the same
    // restarts, so with its archives.
    let msp_dir = s.up.data_dir().join("archive").join("msp");
    let mut msp_archives = Vec::new();
    for entry in std::fs::read_dir(&msp_dir)? {
        let path = entry?.path();
        if path.join("README.txt").exists() {
            msp_archives.push(path.display().to_string());
        }
    }
    ensure!(
        msp_archives.len() == 2,
        "MSP log archives in {}: {msp_archives:?}",
        msp_dir.display()
    );
    let mut args = vec!["audit", "verify", "--msp", "--json"];
    for dir in &msp_archives {
        args.extend(["--archive", dir.as_str()]);
    }
    let msp = s.cli_json(&args).await?;
    ensure!(msp["ok"] == true && msp["first_checked"] == 0, "{msp}");
    // Without them: archived, not checked (exit 3), by its own records.
    let msp = verify(&s, &["--msp", "--json"]).await?;
    ensure!(code(&msp) == Some(3), "{}", msp.all_output());
    let msp: Value = serde_json::from_str(&msp.stdout)?;
    ensure!(
        msp["archiving"]["records"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "{msp}"
    );

    // 6. Whoever holds the database removes more entries, after the
    //    archived ones, and raises archived_below by hand, up to a signed
    //    head (so that the server serves them as archived, with a compact
    //    range that gives that head). No log.archived entry names them
    //    (the newest record covers the whole prefix archived before, so
    //    only the entries removed by hand are missing): exit 1, not
    //    archived.
    let cut: u64 = s
        .sql(&format!(
            "SELECT min(size) FROM log_checkpoints WHERE log_id = {} AND size > {k2}",
            sql_text(&log)
        ))?
        .parse()
        .context("a signed head after the archives")?;
    s.sql(&format!(
        "DELETE FROM log_entries WHERE log_id = {log} AND idx < {cut}; \
         UPDATE log_heads SET archived_below = {cut} WHERE log_id = {log};",
        log = sql_text(&log)
    ))?;
    let removed = verify(&s, &["--tenant", TENANT]).await?;
    eprintln!("{}", removed.stdout);
    ensure!(code(&removed) == Some(1), "{}", removed.all_output());
    let named = match cut - k2 {
        1 => format!("entry {k2} is missing"),
        n => format!("entries {k2} to {} ({n} entries) are missing", cut - 1),
    };
    ensure!(
        removed.stdout.contains(&named)
            && removed
                .stdout
                .contains("removed without a record of archiving in this log"),
        "{}",
        removed.stdout
    );
    s.up.stop().await?;
    Ok(())
}
