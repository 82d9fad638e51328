//! Checks in the signed policy with real parts (RFD 0009): `bulwark up`
//! with a real SMTP relay (aiosmtpd, STARTTLS) and a webhook receiver, a
//! real agent, and the tenant's policy signed with the CLI holding two
//! checks: a file's hash (reported at once) and a TCP port on loopback
//! that the test opens and closes (ten seconds before a state counts).
//!
//! 1. The port closed: after ten seconds one critical alert, mailed and
//!    hooked; then the port flaps (open six seconds, closed four): still
//!    one alert, never resolved, no second mail.
//! 2. The file changed: a critical alert, mailed; the time from the
//!    agent's measurement to the mail is printed.
//! 3. `bulwark device checks` lists the verified policy's checks with the
//!    states; a check the server leaves out is still listed.
//! 4. An escalation channel (`--escalate-after 8s`) is told of the port's
//!    alert, which nobody acknowledged, and never of the file's, which was
//!    acknowledged at once.
//! 5. The attacker with the database puts a newer policy without checks,
//!    signed by a key of theirs, in the server's store. The agent refuses
//!    it (a `trust_refused` alert reaches the customer), keeps checking:
//!    the file put back resolves the file alert, and the agent's own
//!    journal (`bulwark-agent checks`) holds every change.
//! 6. A maintenance window in the next policy: the file changed again
//!    opens a silenced alert, recorded and sent nowhere.
//! 7. The device page in headless Chromium shows the checks, worst first.

#[path = "support/browser.rs"]
mod browser;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bulwark_e2e::{
    ExtraAgent, MailServer, OperatorSetup, UpOptions, hooked, sql_text, wait_for, webhook_receiver,
};
use sha2::{Digest, Sha256};

const PASSPHRASE: &str = "e2e checks: a long passphrase nobody guesses";
const CONTACT: &str = "noc@msp.example";
const HOST: &str = "checked-host";

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Opens or closes a listener on `port` of loopback.
async fn set_port(
    listener: &mut Option<tokio::net::TcpListener>,
    port: u16,
    open: bool,
) -> Result<()> {
    if open && listener.is_none() {
        *listener = Some(tokio::net::TcpListener::bind(("127.0.0.1", port)).await?);
    } else if !open {
        *listener = None;
    }
    Ok(())
}

#[tokio::test]
async fn policy_checks_alert_once_and_an_owned_server_cannot_switch_them_off() -> Result<()> {
    let mail = MailServer::start().await?;
    let (hook_url, hooks) = webhook_receiver().await?;
    let (escalation_url, escalations) = webhook_receiver().await?;
    let s = OperatorSetup::start_with(
        PASSPHRASE,
        UpOptions::default()
            .heartbeat_secs(1)
            .env("BULWARK_SMTP_RELAY", &mail.relay)
            .env("BULWARK_SMTP_CA_FILE", mail.ca_file.display().to_string()),
    )
    .await?;
    for channel in [
        vec!["--email", CONTACT],
        vec!["--webhook", hook_url.as_str()],
        vec![
            "--webhook",
            escalation_url.as_str(),
            "--escalate-after",
            "8s",
        ],
    ] {
        let mut args = vec!["alert", "add-channel", "--tenant", "demo"];
        args.extend(channel);
        s.cli(&args, None).await?.ok()?;
    }
    let mut agent =
        ExtraAgent::start_as(Some(HOST), &s.api, &s.up.info.gateway_url, "demo").await?;
    let device = agent.device_id.clone();

    // The watched file, and a port nobody listens on yet.
    let watched = s.work.path().join("watched.conf");
    std::fs::write(&watched, b"PermitRootLogin no\n")?;
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let mut listener: Option<tokio::net::TcpListener> = None;
    let sections = format!(
        "[[checks]]\nname = \"sshd-config\"\nkind = \"file-hash\"\npath = \"{}\"\nsha256 = \"{}\"\ninterval_secs = 5\n\n\
         [[checks]]\nname = \"app-port\"\nkind = \"tcp-port\"\nhost = \"127.0.0.1\"\nport = {port}\ninterval_secs = 5\nfor_secs = 10\n\n\
         [[checks]]\nname = \"security-updates\"\nkind = \"posture\"\nitem = \"security-updates\"\nwarning = 1\ninterval_secs = 5\n",
        watched.display(),
        sha256_hex(b"PermitRootLogin no\n"),
    );
    let shown = s
        .sign_policy_sections(&["checks"], &sections, "policy-checks.toml")
        .await?;
    ensure!(
        shown.contains("name = \"sshd-config\"")
            && shown.contains("for_secs = 10")
            && shown.contains("item = \"security-updates\""),
        "the signed policy does not hold the checks:\n{shown}"
    );
    // A posture check, measured by the agent: its apt knows no sources
    // here, so no security update is pending.
    let posture = wait_for(
        Duration::from_secs(60),
        "the security-updates posture check",
        async || {
            let view: bulwark_api::checks::DeviceChecksView = s
                .api
                .get_as(&format!("/api/v1/devices/{device}/checks"))
                .await?;
            Ok(view
                .checks
                .into_iter()
                .find(|c| c.name == "security-updates" && c.value.is_some()))
        },
    )
    .await?;
    ensure!(
        posture.value == Some(0) && posture.summary == "no security update pending",
        "{posture:?}"
    );

    // 1. The port closed for ten seconds: one critical alert.
    let alerted = wait_for(
        Duration::from_secs(60),
        "the closed port's alert",
        async || Ok(s.check_alerts(&device, "app-port").await?.pop()),
    )
    .await?;
    ensure!(
        alerted.severity == "critical" && alerted.state == "open",
        "{alerted:?}"
    );
    mail.wait_message(
        Duration::from_secs(30),
        &[
            &format!("To: {CONTACT}"),
            "app-port is critical on checked-host",
        ],
    )
    .await?;
    // The port flaps, each state shorter than the ten seconds: nothing
    // changes, however many samples see it open.
    for _ in 0..2 {
        set_port(&mut listener, port, true).await?;
        tokio::time::sleep(Duration::from_secs(6)).await;
        set_port(&mut listener, port, false).await?;
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    let port_alerts = s.check_alerts(&device, "app-port").await?;
    ensure!(
        port_alerts.len() == 1 && port_alerts[0].state == "open",
        "flapping input gave {} alerts: {port_alerts:?}",
        port_alerts.len()
    );
    // (The server's own agent runs the tenant's checks too: count this device's.)
    let port_hooks: Vec<_> = hooked(&hooks, "check.failed", &device)
        .into_iter()
        .filter(|b| b.to_string().contains("app-port"))
        .collect();
    ensure!(
        port_hooks.len() == 1,
        "the webhook was called {} times for one alert: {port_hooks:?}",
        port_hooks.len()
    );

    // 2. The file changed: critical at the next measurement.
    std::fs::write(&watched, b"PermitRootLogin yes\n")?;
    let changed = Instant::now();
    let message = mail
        .wait_message(
            Duration::from_secs(30),
            &[
                &format!("To: {CONTACT}"),
                "sshd-config is critical on checked-host",
            ],
        )
        .await?;
    let mailed = changed.elapsed();
    ensure!(message.contains("changed: sha256"), "{message}");
    // Acknowledged at once: the escalation is not needed.
    let file_alert = s
        .check_alerts(&device, "sshd-config")
        .await?
        .pop()
        .context("no sshd-config alert")?;
    s.cli(&["alert", "ack", &file_alert.id], None).await?.ok()?;
    let view: bulwark_api::checks::DeviceChecksView = s
        .api
        .get_as(&format!("/api/v1/devices/{device}/checks"))
        .await?;
    let measured = view
        .checks
        .iter()
        .find(|c| c.name == "sshd-config")
        .context("no sshd-config state")?;
    eprintln!(
        "[checks] file changed -> mail received in {mailed:?} (probe interval 5 s; measured at {:?})",
        measured.measured_at
    );

    // 4. The port's alert, open and unacknowledged, reached the escalation.
    wait_for(
        Duration::from_secs(20),
        "the port alert's escalation",
        async || Ok((!hooked(&escalations, "check.failed", &device).is_empty()).then_some(())),
    )
    .await?;

    // 3. The CLI lists the verified policy's checks, even one the server drops.
    let demo = s.sql("SELECT id FROM tenants WHERE name = 'demo'")?;
    s.sql(&format!(
        "DELETE FROM device_checks WHERE device_id = {} AND name = 'app-port'",
        sql_text(&device)
    ))?;
    let listed = s.cli(&["device", "checks", HOST], None).await?.ok()?.stdout;
    ensure!(
        listed.contains("sshd-config")
            && listed.contains("CRITICAL")
            && listed.contains("app-port")
            && listed.contains("NOT REPORTED"),
        "device checks:\n{listed}"
    );

    // 5. A newer policy without checks, signed by the attacker's key.
    let latest = s.sql(&format!(
        "SELECT hex(envelope) FROM trust_statements WHERE tenant_id = {} AND kind = 'policy' \
         ORDER BY version DESC LIMIT 1",
        sql_text(&demo)
    ))?;
    let limits = bulwark_policy::Limits::default();
    let mut policy: bulwark_policy::Policy =
        bulwark_policy::Signed::from_bytes(&bulwark_e2e::decode_hex(&latest)?, &limits)
            .and_then(|p| p.statement(&limits))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let honest_version = policy.version;
    policy.version += 1;
    policy.checks = None;
    let attacker = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let mut forged = bulwark_policy::Signed::new(&policy);
    forged.sign(&attacker);
    s.sql(&format!(
        "INSERT INTO trust_statements (tenant_id, kind, version, envelope, created_by, created_at) \
         VALUES ({}, 'policy', {}, X'{}', NULL, 0)",
        sql_text(&demo),
        policy.version,
        hex::encode(forged.to_bytes()),
    ))?;
    // The agent reconnects and is handed the forged policy.
    agent.stop().await?;
    agent.resume()?;
    mail.wait_message(
        Duration::from_secs(30),
        &[&format!("To: {CONTACT}"), "refused the trust statement"],
    )
    .await
    .context("the customer was not told of the refused policy")?;
    // Still checking under the honest policy: the file put back resolves.
    std::fs::write(&watched, b"PermitRootLogin no\n")?;
    let resolved = wait_for(
        Duration::from_secs(30),
        "the file alert to resolve",
        async || {
            Ok(s.check_alerts(&device, "sshd-config")
                .await?
                .into_iter()
                .find(|a| a.state == "resolved"))
        },
    )
    .await?;
    ensure!(
        resolved.resolved_by.as_deref() == Some("bulwark"),
        "{resolved:?}"
    );
    let trust = s
        .api
        .device(&device)
        .await?
        .trust
        .context("no trust status")?;
    ensure!(
        trust.policy_version == honest_version,
        "the agent holds policy v{} (the honest one is v{honest_version})",
        trust.policy_version
    );

    // The agent's own record of every change it reported.
    let mut journal = tokio::process::Command::new(bulwark_e2e::agent_bin()?);
    journal
        .arg("--state-dir")
        .arg(agent.state_dir.path())
        .arg("checks");
    let out = bulwark_e2e::run_command(journal, None, Duration::from_secs(30)).await?;
    ensure!(out.success(), "bulwark-agent checks: {}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    for expected in [
        ("sshd-config", "ok"),
        ("sshd-config", "critical"),
        ("app-port", "critical"),
    ] {
        ensure!(
            lines
                .iter()
                .any(|l| l.contains(expected.0) && l.contains(&format!(" {} ", expected.1))),
            "the agent's journal lacks {expected:?}:\n{}",
            out.stdout
        );
    }
    let escalated = hooked(&escalations, "check.failed", &device);
    ensure!(
        escalated.len() == 1 && escalated[0].to_string().contains("app-port"),
        "the escalation channel got {escalated:?}"
    );

    // 6. The forged row removed, the next policy has a maintenance window
    //    around the clock: a new failure is recorded, silenced, sent nowhere.
    s.sql(&format!(
        "DELETE FROM trust_statements WHERE tenant_id = {} AND kind = 'policy' AND version = {}",
        sql_text(&demo),
        policy.version
    ))?;
    let toml = s
        .cli(&["policy", "show", "--tenant", "demo", "--toml"], None)
        .await?
        .ok()?
        .stdout
        .replace("maintenance_windows = []\n", "");
    let windowed = bulwark_e2e::replace_policy_sections(
        &toml,
        &["checks", "maintenance_windows"],
        &format!(
            "{sections}\n[[maintenance_windows]]\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\nstart = \"00:00\"\nduration_minutes = 1440\n"
        ),
    );
    let path = s.work.path().join("policy-window.toml");
    std::fs::write(&path, windowed)?;
    s.cli(
        &[
            "policy",
            "sign",
            "--tenant",
            "demo",
            "--file",
            &path.display().to_string(),
        ],
        None,
    )
    .await?
    .ok()?;
    wait_for(
        Duration::from_secs(30),
        "the agent to take the windowed policy",
        async || {
            let trust = s.api.device(&device).await?.trust;
            Ok(trust
                .filter(|t| t.policy_version > honest_version)
                .map(|_| ()))
        },
    )
    .await?;
    std::fs::write(&watched, b"PermitRootLogin prohibit-password\n")?;
    let silenced = wait_for(
        Duration::from_secs(30),
        "a silenced file alert",
        async || {
            Ok(s.check_alerts(&device, "sshd-config")
                .await?
                .into_iter()
                .find(|a| a.state == "open"))
        },
    )
    .await?;
    ensure!(
        silenced
            .silenced
            .as_deref()
            .is_some_and(|why| why.contains("maintenance window")),
        "{silenced:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    // No mail names it (the earlier alerts' acknowledge and resolve
    // follow-ups may still be arriving, so a count would not tell).
    let link = format!("alerts/{}", silenced.id);
    let mailed: Vec<String> = mail
        .messages()?
        .into_iter()
        .filter(|m| m.contains(&link))
        .collect();
    ensure!(mailed.is_empty(), "a silenced alert was mailed: {mailed:?}");
    let shown = s
        .cli(&["alert", "show", &silenced.id], None)
        .await?
        .ok()?
        .stdout;
    ensure!(shown.contains("Silenced"), "{shown}");

    // 7. The console's device page.
    let browser = browser::Browser::plain(1100).await?;
    let result = device_page(&browser, &s, &device).await;
    browser.close().await?;
    result?;
    drop(listener);
    Ok(())
}

async fn device_page(browser: &browser::Browser, s: &OperatorSetup, device: &str) -> Result<()> {
    let base = s.up.base_url();
    browser.sign_in(&base, &s.owner).await?;
    browser.goto(&format!("{base}/devices/{device}")).await?;
    let first = browser.text("#checks tbody tr").await?;
    ensure!(
        first.to_lowercase().contains("critical"),
        "the worst check is not first: {first}"
    );
    let card = browser.text("#checks").await?;
    ensure!(
        card.contains("sshd-config") && card.contains("app-port"),
        "{card}"
    );
    let shot = std::env::temp_dir().join("bulwark-device-checks.png");
    browser.screenshot(&shot).await?;
    eprintln!("[checks] screenshot: {}", shot.display());
    Ok(())
}
