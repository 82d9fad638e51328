//! Shell notices end to end (RFD 0015, "Notices"; issue 15): the real
//! server of `bulwark up`, a real agent whose utmp lists one logged-in
//! user on a pseudo-terminal this test holds, and the real CLI.
//!
//! Without the setting a shell tells nobody; once the root signs it into
//! the policy (`bulwark policy shell-notice`) the user's terminal reads who
//! opened a shell, for which tenant, why (escape sequences in the reason
//! arrive as plain text), and when it closed. The attack plays an owned
//! server: it deletes the policy version with the setting from its
//! database, so the agent, reconnecting, is handed the older policy,
//! validly signed, without it. The agent keeps the policy it verified and
//! the next shell is still told.

use std::time::Duration;

use anyhow::{Result, ensure};
use bulwark_agent::shell::testing::WatchedTerminal;
use bulwark_api::shells::ShellGrantView;
use bulwark_e2e::{ExtraAgent, OperatorSetup, shell_account_ready, spawn_agent_with, sql_text};

const PASSPHRASE: &str = "shell notice e2e passphrase";
const HOST: &str = "notice-host";
const WAIT: Duration = Duration::from_secs(20);
const MESSAGE: &str = "Questions? Call the service desk on 555-0100.";

/// A shell on `device`, asked for and opened by the owner (one signer
/// suffices for a plain shell under demo's policy), running `input`.
async fn shell(s: &OperatorSetup, device: &str, reason: &str, input: &str) -> Result<()> {
    let grant: ShellGrantView = s
        .cli_as(&[
            "shell", "request", device, "--tenant", "demo", "--reason", reason, "--for", "30m",
            "--json",
        ])
        .await?;
    ensure!(grant.state == "approved", "not approved: {grant:?}");
    let out = s
        .cli(&["shell", device, "--grant", &grant.id], Some(input))
        .await?
        .ok()?;
    ensure!(
        out.stdout.contains("marker-"),
        "the shell's output: {out:?}"
    );
    Ok(())
}

async fn agent_policy_version(s: &OperatorSetup, device: &str) -> Result<u64> {
    let device = s.api.device(device).await?;
    Ok(device.trust.map_or(0, |t| t.policy_version))
}

#[tokio::test]
async fn logged_in_users_are_told_and_an_owned_server_cannot_stop_it() -> Result<()> {
    if !shell_account_ready() {
        eprintln!("SKIPPED: no bulwark-shell account and this test cannot make one (not root)");
        return Ok(());
    }
    let terminal = WatchedTerminal::open()?;
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let utmp = s.work.path().join("utmp");
    std::fs::write(&utmp, terminal.utmp("frontdesk"))?;
    let utmp_arg = utmp.display().to_string();
    let args = [
        "--shell-notice-utmp",
        utmp_arg.as_str(),
        "--shell-notice-dev",
        "/dev",
    ];
    let mut agent =
        ExtraAgent::start_with(Some(HOST), &s.api, &s.up.info.gateway_url, "demo", &args).await?;
    let device = agent.device_id.clone();

    // 1. Demo's policy says nothing of notices: a shell tells nobody.
    shell(&s, &device, "before notices", "echo marker-1\nexit\n").await?;
    let quiet = terminal.read_for(Duration::from_secs(2));
    ensure!(quiet.is_empty(), "told without the setting: {quiet:?}");

    // 2. The root signs notices into the policy; `policy show` says so.
    s.cli(
        &[
            "policy",
            "shell-notice",
            "--tenant",
            "demo",
            "--message",
            MESSAGE,
        ],
        None,
    )
    .await?
    .ok()?;
    let shown = s
        .cli(&["policy", "show", "--tenant", "demo"], None)
        .await?
        .ok()?
        .stdout;
    ensure!(
        shown.contains(
            "Shell notices: logged-in users are told when a remote shell starts and when it ends"
        ) && shown.contains(MESSAGE),
        "policy show:\n{shown}"
    );
    let demo = s.sql("SELECT id FROM tenants WHERE name = 'demo'")?;
    let latest: u64 = s
        .sql(&format!(
            "SELECT max(version) FROM trust_statements WHERE tenant_id = {} AND kind = 'policy'",
            sql_text(&demo)
        ))?
        .trim()
        .parse()?;
    bulwark_e2e::wait_for(WAIT, "the agent to hold the new policy", async || {
        Ok((agent_policy_version(&s, &device).await? == latest).then_some(()))
    })
    .await?;

    // 3. A shell whose reason holds escape sequences: the user reads them as text.
    shell(
        &s,
        &device,
        "disk full\x1b[2J\x1b]0;pwned\x07",
        "echo marker-2\nexit\n",
    )
    .await?;
    let told = terminal.read_until("closed after", WAIT);
    ensure!(
        told.contains("Bulwark: remote shell opened by ")
            && told.contains(" for demo (as bulwark-shell, until ")
            && told.contains("): disk full?[2J?]0;pwned?")
            && told.contains(&format!("Bulwark: {MESSAGE}"))
            && told.contains("Bulwark: remote shell by ")
            && told.contains("closed after"),
        "the terminal read: {told:?}"
    );
    ensure!(
        !told.contains(['\x1b', '\x07']),
        "an escape sequence reached the terminal: {told:?}"
    );

    // 4. The owned server deletes the policy with the setting: the agent,
    //    reconnecting, is handed the older one and keeps what it verified.
    s.sql(&format!(
        "DELETE FROM trust_statements WHERE tenant_id = {} AND kind = 'policy' AND version = {latest}",
        sql_text(&demo)
    ))?;
    agent.stop().await?;
    agent.proc = spawn_agent_with(Some(HOST), agent.state_dir.path(), &args)?;
    bulwark_e2e::wait_for(WAIT, "the agent to be back online", async || {
        Ok(s.api.device(&device).await?.online.then_some(()))
    })
    .await?;
    shell(&s, &device, "after the rollback", "echo marker-3\nexit\n").await?;
    let still = terminal.read_until("closed after", WAIT);
    ensure!(
        still.contains("): after the rollback") && still.contains("closed after"),
        "the rolled-back server silenced the notices: {still:?}"
    );
    ensure!(
        agent_policy_version(&s, &device).await? == latest,
        "the agent does not hold policy v{latest} any more"
    );
    Ok(())
}
