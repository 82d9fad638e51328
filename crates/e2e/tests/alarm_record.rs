//! The endpoint's own record of the alarms it raised (issue 16), against a
//! server that suppresses them. The attacker writes forged policies into
//! the server's SQLite file; the agent refuses each and reports it. While
//! the server records the reports, `bulwark audit verify --alarms` finds
//! every recorded alarm in the verified log (exit 0). Then the attacker
//! also drops the reports (a trigger aborts every `alert.*` audit row, so
//! the log stays consistent and simply lacks them): the agent's record
//! still holds the alarm, and the auditor's verify exits 5 naming it.
//!
//! Needs the `sqlite3` command-line tool for the tampering.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bulwark_e2e::{Finished, OperatorSetup, wait_for};
use bulwark_protocol::alarm_record::{AlarmKind, parse_record};

#[path = "support/statements.rs"]
mod statements;
use statements::{forged_policy, insert_statement};

const PASSPHRASE: &str = "e2e alarm record: a long passphrase nobody guesses";
const WAIT: Duration = Duration::from_secs(30);
/// `bulwark audit verify`'s exit code for alarms the log lacks.
const EXIT_ALARMS_MISSING: i32 = 5;

/// `bulwark-agent alarms` over `state_dir`, with `args`.
async fn agent_alarms(state_dir: &std::path::Path, args: &[&str]) -> Result<Finished> {
    let out = tokio::process::Command::new(bulwark_e2e::agent_bin()?)
        .arg("--state-dir")
        .arg(state_dir)
        .arg("alarms")
        .args(args)
        .output()
        .await
        .context("running bulwark-agent alarms")?;
    Ok(Finished {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// `bulwark audit verify` of demo's log with the alarm record at `path`.
async fn verify_alarms(s: &OperatorSetup, path: &str, grace_minutes: &str) -> Result<Finished> {
    s.cli(
        &[
            "audit",
            "verify",
            "--tenant",
            "demo",
            "--alarms",
            path,
            "--alarm-grace",
            grace_minutes,
        ],
        None,
    )
    .await
}

#[tokio::test]
async fn alarms_the_server_drops_are_caught_from_the_endpoints_record() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let mut victim = s.victim().await?;
    let device = victim.device_id.clone();
    let state = victim.state_dir.path().to_owned();
    // The agent holds the policy and a tree head of the log.
    s.good_job_runs(&device, "before").await?;
    let none = agent_alarms(&state, &[]).await?;
    ensure!(
        none.status.success() && none.stdout.contains("No alarms recorded"),
        "a new agent has no alarms: {}",
        none.all_output()
    );

    // 1. A forged policy, reported and logged as the server should.
    let (first, forged) = forged_policy(&s, 1, 1)?;
    victim.stop().await?;
    insert_statement(&s, "policy", first, &forged)?;
    victim.resume()?;
    let subject = format!("policy v{first}");
    wait_for(WAIT, "the refusal in the agent's record", async || {
        let record = agent_alarms(&state, &["--record"]).await?;
        let alarms = parse_record(&record.stdout)?;
        Ok(alarms.iter().any(|a| a.subject == subject).then_some(()))
    })
    .await?;
    wait_for(WAIT, "the server's alert.trust_refused", async || {
        let events = s.api.audit("demo").await?;
        Ok(events
            .iter()
            .any(|e| e.action == "alert.trust_refused" && e.target == subject)
            .then_some(()))
    })
    .await?;
    let record_path = s.work.path().join("alarms-1.txt");
    let record = agent_alarms(&state, &["--record"]).await?;
    let alarms = parse_record(&record.stdout)?;
    ensure!(
        alarms
            .iter()
            .all(|a| a.kind == AlarmKind::TrustRefused && a.device == device),
        "the record: {alarms:?}"
    );
    std::fs::write(&record_path, &record.stdout)?;
    let path = record_path.display().to_string();
    let verified = verify_alarms(&s, &path, "0").await?;
    ensure!(
        verified.status.code() == Some(0)
            && verified
                .stdout
                .contains(&format!("{} in the log, 0 missing", alarms.len())),
        "every recorded alarm is in the log: {}",
        verified.all_output()
    );

    // 2. The attacker drops every alert from now on; the log stays whole.
    s.sql(
        "CREATE TRIGGER drop_alerts BEFORE INSERT ON audit_events \
         WHEN NEW.action LIKE 'alert.%' BEGIN SELECT RAISE(ABORT, 'dropped'); END;",
    )?;
    let (second, forged) = forged_policy(&s, 2, 2)?;
    victim.stop().await?;
    insert_statement(&s, "policy", second, &forged)?;
    victim.resume()?;
    let dropped = format!("policy v{second}");
    wait_for(
        WAIT,
        "the second refusal in the agent's record",
        async || {
            let record = agent_alarms(&state, &["--record"]).await?;
            Ok(record
                .stdout
                .contains(&format!("\t{dropped}\t"))
                .then_some(()))
        },
    )
    .await?;
    let events = s.api.audit("demo").await?;
    ensure!(
        !events.iter().any(|e| e.target == dropped),
        "the trigger let the alert through"
    );
    let human = agent_alarms(&state, &["--last", "1"]).await?;
    ensure!(
        human.stdout.lines().count() == 1 && human.stdout.contains(&dropped),
        "the newest alarm first, for people: {}",
        human.all_output()
    );
    let record = agent_alarms(&state, &["--record"]).await?;
    std::fs::write(&record_path, &record.stdout)?;
    let caught = verify_alarms(&s, &path, "0").await?;
    ensure!(
        caught.status.code() == Some(EXIT_ALARMS_MISSING)
            && caught.stdout.contains("MISSING")
            && caught.stdout.contains(&dropped)
            && caught.stdout.contains("suppressed"),
        "the dropped alarm is caught: {}",
        caught.all_output()
    );
    // Within the grace period it is not yet counted against the server.
    let recent = verify_alarms(&s, &path, "15").await?;
    ensure!(
        recent.status.code() == Some(0) && recent.stdout.contains("1 too recent"),
        "a fresh alarm may still be on its way: {}",
        recent.all_output()
    );
    Ok(())
}
