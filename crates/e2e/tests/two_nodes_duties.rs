//! Background duties run once across two nodes, and a dead node's agents
//! shown offline (RFD 0018, migration 0038), with real processes on the
//! machine's PostgreSQL (a fresh schema) and NATS, and a real SMTP
//! receiver (aiosmtpd):
//!
//! 1. With two nodes up, an agent killed raises one offline alert and
//!    exactly one e-mail (before, both nodes' notifiers could send it).
//! 2. The node holding the duties (A, started first) is SIGKILLed: node B
//!    takes each duty within the bound (lease expiry + one retry), with the
//!    next fencing token; B shows the agent that was connected to A offline
//!    once A's heartbeat expires, and mails its offline alert.
//!
//! PostgreSQL (127.0.0.1:5432) and NATS (127.0.0.1:4222) must be running;
//! an unreachable one fails the test, it is never skipped.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bulwark_e2e::{
    ExtraAgent, MailServer, OPERATOR_WAIT, OperatorSetup, UpOptions, UpProcess, wait_for,
};

const NATS: &str = "nats://127.0.0.1:4222";
const PASSPHRASE: &str = "two nodes duties passphrase";
const CONTACT: &str = "oncall@msp.example";
/// The lease timing of `bulwark_server::duties::TIMING`: a duty moves
/// within 13 s of its holder's last renewal.
const TAKEOVER_BOUND: Duration = Duration::from_secs(13);

#[tokio::test]
async fn duties_run_once_and_move_when_their_node_dies() -> Result<()> {
    let (url, schema) = bulwark_store::testing::postgres_test_url()
        .await
        .context("creating a PostgreSQL test schema (is PostgreSQL running on 127.0.0.1:5432?)")?;
    let result = scenario(&url).await;
    schema.drop().await;
    result
}

/// Node B's data directory: node A's agent CA and log key.
fn second_data_dir(a: &Path) -> Result<Arc<bulwark_e2e::TempDir>> {
    let dir = Arc::new(
        tempfile::Builder::new()
            .prefix("bulwark-e2e-node-b-")
            .tempdir()?,
    );
    for (sub, file) in [("tls", "ca.pem"), ("tls", "ca.key"), ("log", "log.skey")] {
        std::fs::create_dir_all(dir.path().join(sub))?;
        std::fs::copy(a.join(sub).join(file), dir.path().join(sub).join(file))
            .with_context(|| format!("copying {sub}/{file} to node B"))?;
    }
    Ok(dir)
}

fn with_mail(options: UpOptions, mail: &MailServer, url: &str) -> UpOptions {
    options
        .heartbeat_secs(1)
        .database_url(url)
        .env("BULWARK_BUS_URL", NATS)
        .env("BULWARK_OFFLINE_ALERT_SECS", "3")
        .env("BULWARK_SMTP_RELAY", &mail.relay)
        .env("BULWARK_SMTP_CA_FILE", mail.ca_file.display().to_string())
}

/// Mails that name `device` (an offline alert's mail does).
fn mails_about(mail: &MailServer, device: &str) -> Result<usize> {
    Ok(mail
        .messages()?
        .iter()
        .filter(|m| m.contains(device))
        .count())
}

async fn scenario(url: &str) -> Result<()> {
    let mail = MailServer::start().await?;
    let mut a =
        OperatorSetup::start_with(PASSPHRASE, with_mail(UpOptions::default(), &mail, url)).await?;
    let store = bulwark_store::Store::open(url).await?;
    // Node A started first: it holds every duty.
    let first = wait_for(
        Duration::from_secs(20),
        "node A to take the alert mail duty",
        async || store.lease("alert-mail").await.map_err(Into::into),
    )
    .await?;
    let b = UpProcess::start(
        with_mail(UpOptions::default(), &mail, url)
            .no_agent()
            .data_dir(second_data_dir(a.up.data_dir())?)
            .env("BULWARK_CONFIG_DIR", a.config.display().to_string())
            .env("BULWARK_KEY_PASSPHRASE", PASSPHRASE),
    )
    .await?;
    let token = a.api.token().context("node A's API client has no token")?;
    let b_api = b.api().with_token(token);
    a.cli(
        &[
            "alert",
            "add-channel",
            "--tenant",
            "demo",
            "--email",
            CONTACT,
        ],
        None,
    )
    .await?
    .ok()?;

    // Two agents connected straight to node A (no balancer: when A dies
    // they cannot come back through B).
    let gateway_a = a.up.info.gateway_url.clone();
    let mut gone = ExtraAgent::start_as(None, &a.api, &gateway_a, "demo").await?;
    let stays = ExtraAgent::start_as(None, &a.api, &gateway_a, "demo").await?;
    for device in [&gone.device_id, &stays.device_id] {
        b_api
            .wait_device_online(device, true, OPERATOR_WAIT)
            .await
            .context("node B never learnt that an agent is online on node A")?;
    }

    // 1. An agent dies with both nodes up: one e-mail, from one node.
    gone.proc.kill9().await?;
    let killed = Instant::now();
    mail.wait_message(
        Duration::from_secs(30),
        &[&format!("To: {CONTACT}"), "is offline", &gone.device_id],
    )
    .await?;
    let mailed = killed.elapsed();
    // Both notifiers poll every 2 s: give a second sender time to show.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let sent = mails_about(&mail, &gone.device_id)?;
    ensure!(
        sent == 1,
        "{sent} e-mails for one offline agent with two nodes up"
    );
    let held = store
        .lease("alert-mail")
        .await?
        .context("no alert mail lease")?;
    ensure!(
        held.holder == first.holder && held.fencing == first.fencing,
        "the alert mail duty moved with both nodes up: {first:?} then {held:?}"
    );

    // 2. The holder dies.
    a.up.process().kill9().await?;
    let died = Instant::now();
    let taken = wait_for(
        TAKEOVER_BOUND + Duration::from_secs(5),
        "node B to take the alert mail duty",
        async || {
            Ok(store
                .lease("alert-mail")
                .await?
                .filter(|l| l.holder != first.holder))
        },
    )
    .await?;
    let takeover = died.elapsed();
    ensure!(
        taken.fencing == first.fencing + 1,
        "the takeover did not move the fencing token: {first:?} then {taken:?}"
    );
    ensure!(
        takeover <= TAKEOVER_BOUND + Duration::from_secs(2),
        "the duty moved {takeover:?} after its holder died; the bound is {TAKEOVER_BOUND:?}"
    );
    // Every other duty moved to B too.
    for duty in [
        "expiry",
        "checkpoints",
        "witnessing",
        "archiving",
        "offline-watch",
        "metrics-compaction",
        "alert-raising",
    ] {
        let lease = wait_for(Duration::from_secs(10), duty, async || {
            Ok(store
                .lease(duty)
                .await?
                .filter(|l| l.holder == taken.holder))
        })
        .await
        .with_context(|| format!("duty {duty} did not move to node B"))?;
        ensure!(lease.fencing >= 2, "{duty}: {lease:?}");
    }
    b_api
        .wait_device_online(&stays.device_id, false, Duration::from_secs(30))
        .await
        .context("node B still shows the dead node's agent online")?;
    let offline = died.elapsed();
    mail.wait_message(
        Duration::from_secs(30),
        &[&format!("To: {CONTACT}"), "is offline", &stays.device_id],
    )
    .await
    .context("no offline mail for the dead node's agent")?;
    let mailed_after_death = died.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent = mails_about(&mail, &stays.device_id)?;
    ensure!(sent == 1, "{sent} e-mails for the dead node's agent");
    println!(
        "two nodes, duties: one offline mail {mailed:?} after an agent died (two nodes up); \
         node A SIGKILLed: alert mail duty on node B after {takeover:?} (fencing {} -> {}), \
         its agent offline on node B after {offline:?}, mailed after {mailed_after_death:?}",
        first.fencing, taken.fencing
    );
    drop(stays);
    store.close().await;
    Ok(())
}
