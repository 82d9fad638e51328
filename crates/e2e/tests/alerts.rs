//! Alerts with real parts (RFD 0007): `bulwark up` (heartbeat 1 s, a
//! device silent 3 s is offline), a real agent killed with SIGKILL, a real
//! SMTP relay (aiosmtpd, STARTTLS required) and a webhook receiver on
//! loopback. The tenant's e-mail, webhook and PagerDuty (Events API v2, to
//! a loopback receiver) channels, added with the CLI, each get the
//! `device.offline` alert once; the agent comes back and the alert
//! resolves itself, recorded as resolved by `bulwark`, and the PagerDuty
//! incident is resolved by the same dedup key, the mailbox and the
//! webhook told who resolved it; the server's
//! Prometheus metrics count the open alert meanwhile. A hostile
//! host name (HTML, a header line) reaches the mail and the console as
//! text. A console page left open in Chromium shows the alert live: the
//! Alerts link's badge counts it and the alerts page says it changed.

#[path = "support/browser.rs"]
mod browser;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bulwark_api::alerts::AlertView;
use bulwark_e2e::{
    ExtraAgent, MailServer, OperatorSetup, UpOptions, decode_json, spawn_agent_as, wait_for,
    webhook_receiver,
};

const PASSPHRASE: &str = "e2e alerts: a long passphrase nobody guesses";
const CONTACT: &str = "noc@msp.example";
/// What the endpoint calls itself: the server must treat it as text.
const HOSTILE: &str = "db<b>01</b>";
/// A PagerDuty integration's routing key (32 characters, as theirs are).
const PD_KEY: &str = "e2eR0uting0Key0For0PagerDuty0v2x";

async fn offline_alert(s: &OperatorSetup, device: &str) -> Result<Option<AlertView>> {
    let out = s
        .cli(
            &[
                "alert", "list", "--tenant", "demo", "--state", "all", "--json",
            ],
            None,
        )
        .await?
        .ok()?
        .stdout;
    let alerts: Vec<AlertView> = decode_json(&out).context("alert list --json")?;
    Ok(alerts
        .into_iter()
        .find(|a| a.kind == "device.offline" && a.device_id.as_deref() == Some(device)))
}

#[tokio::test]
async fn a_silent_device_raises_one_alert_to_every_channel_and_resolves_when_back() -> Result<()> {
    let mail = MailServer::start().await?;
    let (hook_url, hooked) = webhook_receiver().await?;
    let (pd_url, paged) = webhook_receiver().await?;
    let s = OperatorSetup::start_with(
        PASSPHRASE,
        UpOptions::default()
            .heartbeat_secs(1)
            .env("BULWARK_OFFLINE_ALERT_SECS", "3")
            .env("BULWARK_SMTP_RELAY", &mail.relay)
            .env("BULWARK_SMTP_CA_FILE", mail.ca_file.display().to_string()),
    )
    .await?;
    for channel in [
        vec!["--email", CONTACT],
        vec!["--webhook", hook_url.as_str(), "--min-severity", "info"],
        vec!["--pagerduty", PD_KEY, "--events-url", pd_url.as_str()],
    ] {
        let mut args = vec!["alert", "add-channel", "--tenant", "demo"];
        args.extend(channel);
        s.cli(&args, None).await?.ok()?;
    }
    // A plain-HTTP webhook off loopback is refused, and nothing is added.
    let refused = s
        .cli(
            &[
                "alert",
                "add-channel",
                "--tenant",
                "demo",
                "--webhook",
                "http://hooks.example/x",
            ],
            None,
        )
        .await?;
    ensure!(
        !refused.success() && refused.stderr.contains("https://"),
        "{refused:?}"
    );
    let channels = s
        .cli(&["alert", "channels", "--tenant", "demo"], None)
        .await?
        .ok()?
        .stdout;
    ensure!(
        channels.contains(CONTACT)
            && channels.contains(&hook_url)
            && channels.contains("pagerduty")
            && !channels.contains("hooks.example"),
        "{channels}"
    );
    // The routing key opens incidents: the server never shows it whole.
    let listed = s
        .cli(&["alert", "channels", "--tenant", "demo", "--json"], None)
        .await?
        .ok()?
        .stdout;
    ensure!(
        !listed.contains(PD_KEY) && listed.contains("…0v2x"),
        "{listed}"
    );
    // A channel kept for after hours needs the tenant's business hours.
    let refused = s
        .cli(
            &[
                "alert",
                "add-channel",
                "--tenant",
                "demo",
                "--email",
                "oncall@msp.example",
                "--hours",
                "after",
            ],
            None,
        )
        .await?;
    ensure!(
        !refused.success() && refused.stderr.contains("business hours"),
        "{refused:?}"
    );
    // A routing key on an e-mail channel is refused.
    let refused = s
        .api
        .request(
            bulwark_e2e::Method::POST,
            "/api/v1/tenants/demo/alert-channels",
        )
        .json(&serde_json::json!({
            "kind": "email", "target": "x@msp.example", "routing_key": PD_KEY
        }))
        .send()
        .await?;
    ensure!(refused.status() == 400, "{:?}", refused.status());

    let mut agent =
        ExtraAgent::start_as(Some(HOSTILE), &s.api, &s.up.info.gateway_url, "demo").await?;
    let device = agent.device_id.clone();
    ensure!(
        offline_alert(&s, &device).await?.is_none(),
        "offline while online"
    );

    // A technician has the alerts page open, with nothing on it yet.
    let browser = browser::Browser::plain(700).await?;
    let base = s.up.base_url();
    browser.sign_in(&base, &s.owner).await?;
    browser.goto(&format!("{base}/alerts")).await?;

    // Gone without a word.
    agent.proc.kill9().await?;
    let killed = Instant::now();
    let message = mail
        .wait_message(
            Duration::from_secs(30),
            &[&format!("To: {CONTACT}"), "is offline", &device],
        )
        .await?;
    let mailed = killed.elapsed();
    ensure!(
        message.contains(&format!(
            "Subject: [Bulwark] WARNING demo: Device {HOSTILE} is offline"
        )),
        "the offline mail:\n{message}"
    );
    let hooked_body = wait_for(Duration::from_secs(30), "the webhook", async || {
        Ok(hooked
            .lock()
            .expect("lock")
            .iter()
            .find(|b| b["alert"]["kind"] == "device.offline")
            .cloned())
    })
    .await?;
    ensure!(
        hooked_body["alert"]["device_id"] == device.as_str()
            && hooked_body["alert"]["severity"] == "warning"
            && hooked_body["text"]
                .as_str()
                .is_some_and(|t| t.contains("is offline")),
        "{hooked_body}"
    );
    let paged_trigger = wait_for(Duration::from_secs(30), "PagerDuty's trigger", async || {
        Ok(paged
            .lock()
            .expect("lock")
            .iter()
            .find(|b| b["event_action"] == "trigger" && b["payload"]["class"] == "device.offline")
            .cloned())
    })
    .await?;
    let open = offline_alert(&s, &device)
        .await?
        .context("no offline alert in the API")?;
    ensure!(
        paged_trigger["routing_key"] == PD_KEY
            && paged_trigger["dedup_key"] == format!("bulwark-alert-{}", open.id).as_str()
            && paged_trigger["payload"]["severity"] == "warning"
            && paged_trigger["payload"]["source"] == format!("device {device}").as_str()
            && paged_trigger["payload"]["summary"]
                .as_str()
                .is_some_and(|t| t.contains("is offline")),
        "{paged_trigger}"
    );
    ensure!(
        open.state == "open" && open.log_id.is_none() && open.occurrences == 1,
        "{open:?}"
    );
    eprintln!("[alerts] offline alert mailed {mailed:?} after the agent was killed");
    // The server's own metrics count it (owner's token; Prometheus format).
    let metrics = s
        .api
        .request(bulwark_e2e::Method::GET, "/api/v1/metrics")
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    ensure!(
        metrics.contains("bulwark_alerts_unresolved{severity=\"warning\"} 1\n")
            && metrics.contains("bulwark_agents_connected 1\n")
            && metrics.contains("bulwark_notifications{state=\"pending\"} 0\n"),
        "/api/v1/metrics:\n{metrics}"
    );
    // The open page learnt of it without a reload (the live stream reads
    // the database every 3 s).
    let live = async {
        browser.wait_text("#alert-badge", "1").await?;
        let notice = browser.wait_text("#alerts-changed", "1 open").await?;
        ensure!(notice.contains("changed since"), "{notice}");
        let shot = std::env::temp_dir().join("bulwark-alerts-live.png");
        browser.screenshot(&shot).await?;
        eprintln!("[alerts] screenshot: {}", shot.display());
        // Loaded again, the page shows the alert and no notice.
        browser.goto(&format!("{base}/alerts")).await?;
        browser.wait_text("#alerts", "is offline").await?;
        ensure!(
            browser.text("#alerts-changed").await?.is_empty(),
            "the notice shows on a fresh page"
        );
        Ok(())
    }
    .await;
    browser.close().await?;
    live?;
    // The console shows the host name as text.
    let page = s.console_page("/alerts").await?;
    ensure!(
        page.contains("Device db&#60;b&#62;01&#60;/b&#62; is offline") && !page.contains(HOSTILE),
        "the console's alerts page does not escape the host name:\n{page}"
    );

    // It stays one alert while the device stays away.
    tokio::time::sleep(Duration::from_secs(4)).await;
    ensure!(
        hooked
            .lock()
            .expect("lock")
            .iter()
            .filter(|b| b["alert"]["kind"] == "device.offline")
            .count()
            == 1,
        "more than one webhook call for one outage"
    );
    ensure!(mail.messages()?.len() == 1, "more than one mail");

    // Back: resolved by bulwark itself.
    agent.proc = spawn_agent_as(Some(HOSTILE), agent.state_dir.path())?;
    let resolved = wait_for(
        Duration::from_secs(30),
        "the alert to resolve",
        async || {
            Ok(offline_alert(&s, &device)
                .await?
                .filter(|a| a.state == "resolved"))
        },
    )
    .await?;
    ensure!(
        resolved.resolved_by.as_deref() == Some("bulwark"),
        "{resolved:?}"
    );
    // PagerDuty's incident closes by the same key, after its opening.
    let paged_resolve = wait_for(Duration::from_secs(30), "PagerDuty's resolve", async || {
        Ok(paged
            .lock()
            .expect("lock")
            .iter()
            .find(|b| {
                b["event_action"] == "resolve" && b["dedup_key"] == paged_trigger["dedup_key"]
            })
            .cloned())
    })
    .await?;
    ensure!(
        paged_resolve["dedup_key"] == paged_trigger["dedup_key"]
            && paged_resolve["routing_key"] == PD_KEY,
        "{paged_resolve}"
    );
    let events: Vec<String> = paged
        .lock()
        .expect("lock")
        .iter()
        .filter(|b| b["dedup_key"] == paged_trigger["dedup_key"])
        .map(|b| b["event_action"].as_str().unwrap_or("?").to_owned())
        .collect();
    ensure!(
        events == ["trigger", "resolve"],
        "PagerDuty heard of the outage {events:?}"
    );
    // The mailbox and the chat room hear of it too, and who closed it.
    let closed = mail
        .wait_message(
            Duration::from_secs(30),
            &[&format!("To: {CONTACT}"), "RESOLVED", &device],
        )
        .await?;
    ensure!(
        closed.contains(&format!(
            "Subject: [Bulwark] RESOLVED WARNING demo: Device {HOSTILE} is offline"
        )) && closed.contains("Resolved by bulwark at "),
        "the resolved mail:\n{closed}"
    );
    let hooked_resolve = wait_for(
        Duration::from_secs(30),
        "the webhook's resolve",
        async || {
            Ok(hooked
                .lock()
                .expect("lock")
                .iter()
                .find(|b| b["event"] == "resolve" && b["alert"]["id"] == resolved.id.as_str())
                .cloned())
        },
    )
    .await?;
    ensure!(
        hooked_resolve["alert"]["resolved_by"] == "bulwark"
            && hooked_resolve["text"]
                .as_str()
                .is_some_and(|t| t.contains("RESOLVED") && t.contains("Resolved by bulwark")),
        "{hooked_resolve}"
    );
    let audit = s.api.audit("demo").await?;
    ensure!(
        audit.iter().any(|e| e.action == "alerting.resolved"
            && e.actor == "bulwark"
            && e.target == resolved.id),
        "no alerting.resolved by bulwark in the audit log"
    );
    Ok(())
}
