//! An export must prove it is complete up to its newest signed head (issue
//! 14; RFD 0003, "Export format"). Against the real binaries: a demo log is
//! exported with `bulwark audit export`, then, playing whoever hands the
//! export to an auditor, its `entries.ndjson` is cut back to an earlier
//! signed size, emptied, cut together with the later heads, and dressed up
//! as a server archive. `bulwark audit verify --from DIR` must refuse each
//! with exit 1 and name the missing entries, with and without `--head`.
//! Last, the first entries are deleted from the database and
//! `archived_below` raised by hand: with no `log.archived` entry in the log
//! for them, `verify` (online, and of an export) names them missing (exit
//! 1), not archived (exit 3).

use std::path::Path;

use anyhow::{Context, Result, ensure};
use bulwark_e2e::{Finished, OperatorSetup, copy_dir, json_lines, sql_text, write_json_lines};
use serde_json::Value;

const PASSPHRASE: &str = "e2e export completeness: a passphrase nobody guesses";
const TENANT: &str = "demo";

async fn events(s: &OperatorSetup, n: usize) -> Result<()> {
    for _ in 0..n {
        s.api.issue_token_reply(TENANT).await?;
    }
    Ok(())
}

async fn verify(s: &OperatorSetup, extra: &[&str]) -> Result<Finished> {
    let mut args = vec!["audit", "verify"];
    args.extend_from_slice(extra);
    s.cli(&args, None).await
}

fn text(path: &Path) -> String {
    path.display().to_string()
}

/// `verify` refused the log (exit 1, `FAILED`), with every needle in its
/// output.
fn refused(what: &str, out: &Finished, needles: &[String]) -> Result<()> {
    ensure!(
        out.status.code() == Some(1),
        "{what}: expected exit 1 (a bad log), got {}:\n{}",
        out.status,
        out.all_output()
    );
    ensure!(
        out.stdout.contains("FAILED") && !out.stdout.contains(" OK"),
        "{what}:\n{}",
        out.all_output()
    );
    for needle in needles {
        ensure!(
            out.all_output().contains(needle.as_str()),
            "{what}: {needle:?} not in:\n{}",
            out.all_output()
        );
    }
    Ok(())
}

/// The `--json` reply of a refused verify.
fn refused_json(what: &str, out: &Finished) -> Result<Value> {
    ensure!(
        out.status.code() == Some(1),
        "{what}: expected exit 1 (a bad log), got {}:\n{}",
        out.status,
        out.all_output()
    );
    let reply: Value = serde_json::from_str(&out.stdout)
        .with_context(|| format!("{what}: not JSON:\n{}", out.all_output()))?;
    ensure!(reply["ok"] == false, "{what}: {reply}");
    Ok(reply)
}

#[tokio::test]
async fn an_export_cut_short_of_its_newest_head_fails_verification() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let work = s.work.path();
    // Three signed heads at least, each read by an online verify (reading
    // the head signs one covering the log), with events between them.
    events(&s, 6).await?;
    verify(&s, &["--tenant", TENANT]).await?.ok()?;
    events(&s, 6).await?;
    let older = work.join("older.note");
    verify(&s, &["--tenant", TENANT, "--save-head", &text(&older)])
        .await?
        .ok()?;
    events(&s, 6).await?;
    let export = work.join("export");
    s.cli(
        &[
            "audit",
            "export",
            "--tenant",
            TENANT,
            "--out",
            &text(&export),
        ],
        None,
    )
    .await?
    .ok()?;

    // The export as written verifies; the auditor keeps its newest head.
    let newest_head = work.join("newest.note");
    let whole = verify(
        &s,
        &[
            "--from",
            &text(&export),
            "--save-head",
            &text(&newest_head),
            "--json",
        ],
    )
    .await?
    .ok()?;
    let whole: Value = serde_json::from_str(&whole.stdout)?;
    let newest = whole["size"].as_u64().context("size")?;
    ensure!(
        whole["ok"] == true && whole["first_checked"] == 0,
        "{whole}"
    );
    let sizes: Vec<u64> = json_lines(&export, "checkpoints.ndjson")?
        .iter()
        .map(|c| c["size"].as_u64().context("a checkpoint's size"))
        .collect::<Result<_>>()?;
    ensure!(sizes.last() == Some(&newest), "{sizes:?} {whole}");
    // (Three heads at least: an archive has two, or three from a later start.)
    ensure!(sizes.iter().filter(|&&n| n > 0).count() >= 3, "{sizes:?}");
    // An earlier signed size to cut back to: the one before the newest.
    let earlier = sizes
        .iter()
        .copied()
        .filter(|&n| n > 0 && n < newest)
        .max()
        .context("an earlier signed head")?;
    let older_size: u64 = std::fs::read_to_string(&older)?
        .lines()
        .nth(1)
        .context("the saved head's size")?
        .parse()?;
    ensure!(older_size <= earlier, "{older_size} > {earlier}");
    eprintln!("export: {newest} entries, heads {sizes:?}; cut back to {earlier}");
    let entries = json_lines(&export, "entries.ndjson")?;
    ensure!(entries.len() as u64 == newest, "{}", entries.len());

    // 1. The last entries cut, back to the earlier signed size: what is
    //    left matches the head of that size, but not the newest.
    let cut = copy_dir(&export, &work.join("cut"))?;
    write_json_lines(&cut, "entries.ndjson", &entries[..earlier as usize])?;
    let missing = newest - earlier;
    let needle = format!(
        "entries {earlier} to {} ({missing} entries) are missing",
        newest - 1
    );
    refused(
        "cut back to an earlier head",
        &verify(&s, &["--from", &text(&cut)]).await?,
        &[
            format!("first bad index: {earlier}"),
            format!("tree head size:  {newest}"),
            needle.clone(),
        ],
    )?;
    let reply = refused_json(
        "cut back to an earlier head, --json",
        &verify(&s, &["--from", &text(&cut), "--json"]).await?,
    )?;
    ensure!(
        reply["problem"] == "truncated"
            && reply["index"] == earlier
            && reply["head_size"] == newest,
        "{reply}"
    );
    // With a saved head: the older one (within what is left) and the
    // newest one (beyond it) both end in the same verdict and exit code.
    for head in [&older, &newest_head] {
        refused(
            &format!("cut back, --head {}", text(head)),
            &verify(&s, &["--from", &text(&cut), "--head", &text(head)]).await?,
            std::slice::from_ref(&needle),
        )?;
    }

    // 2. An empty entries.ndjson.
    let empty = copy_dir(&export, &work.join("empty"))?;
    std::fs::write(empty.join("entries.ndjson"), "")?;
    let needle = format!("entries 0 to {} ({newest} entries) are missing", newest - 1);
    for extra in [
        vec![],
        vec!["--head", newest_head.to_str().context("path")?],
    ] {
        let mut args = vec!["--from", empty.to_str().context("path")?];
        args.extend(extra);
        refused(
            &format!("empty entries, {args:?}"),
            &verify(&s, &args).await?,
            &["first bad index: 0".to_owned(), needle.clone()],
        )?;
    }

    // 3. Cut, with the later heads and their proofs removed too: the head
    //    the export recorded (head.json) still says how far it reaches.
    let recorded = copy_dir(&cut, &work.join("cut-and-heads"))?;
    let heads: Vec<Value> = json_lines(&recorded, "checkpoints.ndjson")?
        .into_iter()
        .filter(|c| c["size"].as_u64().is_some_and(|n| n <= earlier))
        .collect();
    write_json_lines(&recorded, "checkpoints.ndjson", &heads)?;
    let proofs: Vec<Value> = json_lines(&recorded, "proofs.ndjson")?
        .into_iter()
        .filter(|p| p["to"].as_u64().is_some_and(|n| n <= earlier))
        .collect();
    write_json_lines(&recorded, "proofs.ndjson", &proofs)?;
    ensure!(
        recorded.join("head.json").exists(),
        "the export records its head"
    );
    refused(
        "cut with the later heads",
        &verify(&s, &["--from", &text(&recorded)]).await?,
        &[
            format!("the signed head the export recorded (head.json) has size {newest}"),
            format!(
                "entries {earlier} to {} ({missing} entries) are missing",
                newest - 1
            ),
        ],
    )?;

    // 4. ... and head.json removed: indistinguishable from an export made
    //    when the log had `earlier` entries, so it verifies as that; only
    //    the head the auditor saved shows the cut, with the same exit code.
    std::fs::remove_file(recorded.join("head.json"))?;
    let older_export = verify(&s, &["--from", &text(&recorded), "--json"])
        .await?
        .ok()?;
    let older_export: Value = serde_json::from_str(&older_export.stdout)?;
    ensure!(
        older_export["ok"] == true && older_export["size"] == earlier,
        "{older_export}"
    );
    let reply = refused_json(
        "an older export against the newest saved head",
        &verify(
            &s,
            &[
                "--from",
                &text(&recorded),
                "--head",
                &text(&newest_head),
                "--json",
            ],
        )
        .await?,
    )?;
    ensure!(
        reply["problem"] == "truncated"
            && reply["index"] == earlier
            && reply["head_size"] == newest,
        "{reply}"
    );

    // 5. The cut export dressed up as a server archive (an archive's
    //    README, no file only exports write): it still holds every signed
    //    head of an export, not the heads of an archive, so it is judged
    //    as an export.
    let disguised = copy_dir(&cut, &work.join("disguised"))?;
    std::fs::write(
        disguised.join("README.txt"),
        "Bulwark transparency log archive\n================================\n",
    )?;
    for file in ["head.json", "statements.json"] {
        let _ = std::fs::remove_file(disguised.join(file));
    }
    refused(
        "a cut export dressed as an archive",
        &verify(&s, &["--from", &text(&disguised)]).await?,
        &[format!(
            "entries {earlier} to {} ({missing} entries) are missing",
            newest - 1
        )],
    )?;

    // The untouched export still verifies against both saved heads.
    for head in [&older, &newest_head] {
        verify(&s, &["--from", &text(&export), "--head", &text(head)])
            .await?
            .ok()?;
    }

    // 6. Whoever holds the database deletes the first entries and raises
    //    archived_below by hand, so that the server serves them as
    //    archived (410, and the compact range of the prefix from the
    //    subtree hashes, which match the signed head of that size). The log
    //    holds no log.archived entry for them: entries missing (exit 1),
    //    not "archived, not checked" (exit 3), online and in an export.
    let log = sql_text(whole["log_id"].as_str().context("log id")?);
    s.sql(&format!(
        "DELETE FROM log_entries WHERE log_id = {log} AND idx < {earlier}; \
         UPDATE log_heads SET archived_below = {earlier} WHERE log_id = {log};"
    ))?;
    let needles = [
        format!(
            "entries 0 to {} ({earlier} entries) are missing",
            earlier - 1
        ),
        "removed without a record of archiving in this log".to_owned(),
        "older than these records".to_owned(),
        "first bad index: 0".to_owned(),
    ];
    refused(
        "the first entries deleted, archived_below raised",
        &verify(&s, &["--tenant", TENANT]).await?,
        &needles,
    )?;
    let reply = refused_json(
        "the first entries deleted, --json",
        &verify(&s, &["--tenant", TENANT, "--json"]).await?,
    )?;
    ensure!(
        reply["problem"] == "deleted_entry" && reply["index"] == 0,
        "{reply}"
    );
    let deleted_export = work.join("deleted-export");
    s.cli(
        &[
            "audit",
            "export",
            "--tenant",
            TENANT,
            "--out",
            &text(&deleted_export),
        ],
        None,
    )
    .await?
    .ok()?;
    refused(
        "an export of the log whose first entries were deleted",
        &verify(&s, &["--from", &text(&deleted_export)]).await?,
        &needles,
    )?;
    Ok(())
}
