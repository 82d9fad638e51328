//! The transparency log against an attacker who owns the server's database
//! (issue 6): the agent holds the last tree head it accepted, so erasing the
//! tenant's log to hide what was done makes the next job fail with a
//! security alert instead of running, until the endpoint's own
//! administrator resets the agent's head (docs/server.md). (Forks, rewrites and split views with
//! the real log key are played against the agent in
//! crates/agent/tests/transparency.rs; `audit verify` in audit_log.rs.)
//!
//! Needs the `sqlite3` command-line tool for the tampering.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bulwark_e2e::{OperatorSetup, sql_text, wait_for};

const PASSPHRASE: &str = "e2e log attacks: a long passphrase nobody guesses";

#[tokio::test]
async fn an_erased_log_makes_the_agent_refuse_and_raise_an_alert() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let mut victim = s.victim().await?;
    let device = victim.device_id.clone();
    // The agent accepts a tree head with this job.
    s.good_job_runs(&device, "before").await?;
    let tenant = s.sql("SELECT id FROM tenants WHERE name = 'demo'")?;
    let tenant = sql_text(tenant.trim());
    let size: u64 = s
        .sql(&format!(
            "SELECT size FROM log_heads WHERE log_id = {tenant}"
        ))?
        .trim()
        .parse()
        .context("log size")?;
    ensure!(size > 2, "the demo tenant's log has {size} entries");

    // The attacker erases the tenant's log, every row of it.
    s.sql(&format!(
        "DELETE FROM log_entries WHERE log_id = {tenant}; \
         DELETE FROM log_nodes WHERE log_id = {tenant}; \
         DELETE FROM log_checkpoints WHERE log_id = {tenant}; \
         DELETE FROM log_heads WHERE log_id = {tenant}; \
         UPDATE audit_events SET log_idx = NULL WHERE tenant_id = {tenant};"
    ))?;

    // The next job is appended to a fresh, shorter log: the agent refuses it.
    let (id, marker) = s.submit(&device, "after-erasure", &[]).await?;
    let target = s.wait_final(&id, &device).await?;
    ensure!(
        target.state == "refused" && target.refusal_code.as_deref() == Some("log_inconsistent"),
        "expected log_inconsistent, got {target:?}"
    );
    ensure!(!marker.exists(), "the job ran on an erased log");
    ensure!(
        target
            .refusal_reason
            .as_deref()
            .is_some_and(|r| r.contains("truncated or rolled back")),
        "the reason names the truncation: {target:?}"
    );

    // The refusal is a security alert in the tenant's audit log.
    wait_for(Duration::from_secs(10), "the alert", async || {
        let events = s.api.audit("demo").await?;
        let found = events
            .iter()
            .any(|e| e.action == "alert.log_refused" && e.target == id);
        Ok(found.then_some(()))
    })
    .await?;

    // Recovery, as docs/server.md tells it. The agent's own head shows the
    // auditor where the server's log parts from what the agent saw...
    let held = victim.state_dir.path().join("trust").join("log.head");
    let held_text = held.display().to_string();
    let diagnosis = s
        .cli(
            &["audit", "verify", "--tenant", "demo", "--head", &held_text],
            None,
        )
        .await?;
    ensure!(
        diagnosis.status.code() == Some(1) && diagnosis.all_output().contains("truncated"),
        "verify against the agent's head: {}",
        diagnosis.all_output()
    );
    // ...and only the endpoint's administrator can make the agent start
    // over: with its head moved aside, it accepts the current log again.
    victim.proc.terminate().await?;
    std::fs::rename(&held, held.with_extension("head.lost"))?;
    victim.proc = bulwark_e2e::spawn_agent(victim.state_dir.path())?;
    s.good_job_runs(&device, "after-reset").await?;
    ensure!(held.exists(), "the agent keeps its new head");
    Ok(())
}

/// Retention shorter than six months is refused at start, naming the minimum
/// (DESIGN.md invariant 4), from the flag as from the configuration file.
#[tokio::test]
async fn retention_below_the_minimum_is_refused_at_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bulwark = bulwark_e2e::binary("bulwark")?;
    let up = tokio::process::Command::new(&bulwark)
        .args(["up", "--no-agent", "--retention-days", "90", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0"])
        .env("BULWARK_CONFIG_DIR", dir.path().join("config"))
        .env("BULWARK_KEY_PASSPHRASE", PASSPHRASE)
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&up.stderr);
    ensure!(
        !up.status.success(),
        "`bulwark up --retention-days 90` started"
    );
    ensure!(
        stderr.contains("minimum of 180 days"),
        "the error names the minimum: {stderr}"
    );

    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:0\"\ngateway_listen = \"127.0.0.1:0\"\nretention_days = 30\n",
            dir.path().join("server-data").display().to_string()
        ),
    )?;
    let server = tokio::process::Command::new(&bulwark)
        .args(["server", "--config"])
        .arg(&config)
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&server.stderr);
    ensure!(!server.status.success(), "`retention_days = 30` started");
    ensure!(
        stderr.contains("minimum of 180 days"),
        "the error names the minimum: {stderr}"
    );
    Ok(())
}
