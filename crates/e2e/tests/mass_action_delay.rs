//! Delayed mass actions (RFD 0006), with real processes: `bulwark up`, a
//! real agent and a real `bulwark witness`. The tenant's root-signed policy
//! names the witness and makes every `run-script` job wait 61 s after it
//! entered the witnessed log. Such a job stays undelivered meanwhile (the
//! API, `bulwark job show` and the console say it is held and until when),
//! while a job of another class (an inventory refresh) runs at once; once
//! the delay has passed by the witness's cosignature times, the server's
//! session wakes by itself, and the agent, checking those times against its
//! own clock, runs it. A second such job, whose tenant is frozen during its
//! delay, never runs.
//!
//! The customer hears of a held job while it waits: the tenant's e-mail
//! channel (added with `bulwark alert add-channel`) gets a message from
//! the server through a real SMTP relay (aiosmtpd, STARTTLS required)
//! that names the job and the freeze command, and `bulwark alert list`
//! shows the alert, which `bulwark alert ack` acknowledges.
//!
//! The two jobs overlap to keep the run short: the second is submitted
//! while the first is held, and the freeze comes after the first ran, still
//! well inside the second's delay (checked).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use bulwark_api::alerts::AlertView;
use bulwark_api::jobs::{JobTargetView, JobView};
use bulwark_api::log::{LogHeadView, LogKeyView};
use bulwark_e2e::{
    MailServer, OperatorSetup, UpOptions, WitnessProcess, decode_json, target_of, wait_for,
    witnesses_section,
};

const PASSPHRASE: &str = "e2e mass action delay: a long passphrase nobody guesses";
/// The policy's witness freshness window (the smallest allowed).
const FRESHNESS_SECS: u64 = 60;
/// The policy's delay for run-script jobs: it must exceed the window.
const DELAY_SECS: u64 = 61;
/// How long the test watches a held job stay held right after submitting it.
const HELD_FOR: Duration = Duration::from_secs(20);
/// Slack on the lower bound of the wait: the witnesses' cosignature times
/// are whole seconds.
const SLACK_MS: i64 = 1_000;
/// How late after the delay a held job may start: the server's witness
/// round (every 5 s) to have the job's head cosigned, the session waking
/// a second late on purpose, the agent starting the script.
const LATE_MS: i64 = 20_000;
/// The witness's name.
const WITNESS: &str = "witness.test/delay";
/// The customer's address on demo's alert channel.
const CONTACT: &str = "ciso@customer.example";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Milliseconds since the epoch of an RFC 3339 UTC time as the server
/// writes them (`2026-01-02T03:04:05.678Z`, the fraction optional).
fn unix_ms(text: &str) -> Result<i64> {
    let bad = || format!("not an RFC 3339 UTC time: {text:?}");
    let rest = text.strip_suffix('Z').with_context(bad)?;
    let (date, time) = rest.split_once('T').with_context(bad)?;
    let num = |s: &str| s.parse::<i64>().with_context(bad);
    let mut d = date.splitn(3, '-');
    let (y, m, day) = (
        num(d.next().with_context(bad)?)?,
        num(d.next().with_context(bad)?)?,
        num(d.next().with_context(bad)?)?,
    );
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':');
    let (hh, mm, ss) = (
        num(t.next().with_context(bad)?)?,
        num(t.next().with_context(bad)?)?,
        num(t.next().with_context(bad)?)?,
    );
    let millis = if frac.is_empty() {
        0
    } else {
        num(&format!("{:0<3}", &frac[..frac.len().min(3)]))?
    };
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(((days * 86_400 + hh * 3_600 + mm * 60 + ss) * 1_000) + millis)
}

/// Signs the next policy version of `demo`: `witness` required, run-script
/// jobs delayed by [`DELAY_SECS`]; checks the server holds it.
async fn sign_delay_policy(s: &OperatorSetup, witness: &WitnessProcess) -> Result<()> {
    let sections = format!(
        "{}\n[mass_action_delay]\nclasses = [\"run-script\"]\ndelay_secs = {DELAY_SECS}\n",
        witnesses_section(1, FRESHNESS_SECS, &[witness]),
    );
    let shown = s
        .sign_policy_sections(
            &["witnesses", "mass_action_delay"],
            &sections,
            "policy-delay.toml",
        )
        .await?;
    ensure!(
        shown.contains("[mass_action_delay]")
            && shown.contains(&format!("delay_secs = {DELAY_SECS}"))
            && shown.contains(&witness.vkey()),
        "the signed policy does not hold the witness and the delay:\n{shown}"
    );
    Ok(())
}

/// The job's view, checked to be held: approved, its target on `device`
/// not delivered, with the policy's delay and a `runs_from` of its approval
/// plus the delay. Returns the view and its approval time (ms).
async fn held(s: &OperatorSetup, id: &str, device: &str) -> Result<(JobView, i64)> {
    let view = s.job_view(id).await?;
    ensure!(
        view.state == "approved",
        "job {id} is not approved: {view:?}"
    );
    let target = target_of(&view, device)?;
    ensure!(
        target.state == "waiting" && target.delivered_at.is_none(),
        "the held job {id} reached the device: {target:?}"
    );
    let decided = unix_ms(view.decided_at.as_deref().context("no decided_at")?)?;
    let delay = view
        .mass_action_delay
        .as_ref()
        .with_context(|| format!("job {id}'s view says nothing of the delay: {view:?}"))?;
    ensure!(
        delay.delay_secs == DELAY_SECS,
        "job {id}'s delay: {delay:?}"
    );
    let runs_from = unix_ms(delay.runs_from.as_deref().context("no runs_from")?)?;
    ensure!(
        runs_from == decided + i64::try_from(DELAY_SECS)? * 1_000,
        "job {id} runs from {:?}, approved at {:?}",
        delay.runs_from,
        view.decided_at
    );
    Ok((view, decided))
}

/// Waits (up to `timeout`) for `device`'s target of job `id` to be final.
async fn final_within(
    s: &OperatorSetup,
    id: &str,
    device: &str,
    timeout: Duration,
) -> Result<JobTargetView> {
    wait_for(
        timeout,
        &format!("job {id} to finish on {device}"),
        async || {
            let target = target_of(&s.job_view(id).await?, device)?;
            Ok(bulwark_e2e::is_final(&target).then_some(target))
        },
    )
    .await
}

#[tokio::test]
async fn mass_actions_wait_for_the_witnessed_delay_and_a_freeze_meanwhile_stops_them() -> Result<()>
{
    let started = Instant::now();
    let mail = MailServer::start().await?;
    let s = OperatorSetup::start_with(
        PASSPHRASE,
        UpOptions::default()
            .env("BULWARK_SMTP_RELAY", &mail.relay)
            .env("BULWARK_SMTP_CA_FILE", mail.ca_file.display().to_string()),
    )
    .await?;
    let victim = s.victim().await?;
    let device = victim.device_id.clone();

    // 1. A witness following demo's log, with demo's first root pinned (it
    //    takes the freeze), named by the next policy version, which also
    //    delays every run-script job by 61 s.
    let log_key: LogKeyView = s.api.get_as("/api/v1/log/key").await?;
    let head: LogHeadView = s.api.get_as("/api/v1/tenants/demo/log").await?;
    let fingerprint = s
        .api
        .trust("demo")
        .await?
        .root_fingerprint
        .context("tenant demo has a trust root")?;
    let mut witness = WitnessProcess::init(WITNESS)?;
    witness.add_log(&head.origin, &log_key.vkey, Some(&fingerprint))?;
    witness.start().await?;
    sign_delay_policy(&s, &witness).await?;
    // The customer's security contact hears of demo's warnings.
    let added = s
        .cli(
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
        .ok()?
        .stdout;
    ensure!(added.contains(CONTACT), "{added}");
    eprintln!("[test] set up in {:?}", started.elapsed());

    // 2. Job A, a script: approved at once (one signer), then held.
    let submitted_a = now_ms();
    let (id_a, marker_a) = s.submit(&device, "mass-a", &[]).await?;
    let (_, approved_a) = held(&s, &id_a, &device).await?;
    ensure!(!marker_a.exists(), "job A ran at once");

    // bulwark job show says so.
    let shown = s.cli(&["job", "show", &id_a], None).await?.ok()?.stdout;
    ensure!(
        shown.lines().any(|l| l.starts_with("Held")
            && l.contains(&format!(
                "waits {DELAY_SECS} s after it enters the witnessed log"
            ))
            && l.contains("not before about")),
        "`bulwark job show` has no Held line:\n{shown}"
    );

    // The customer is told while A waits, by e-mail through the relay.
    let mail_a = mail
        .wait_message(
            Duration::from_secs(30),
            &[
                &format!("To: {CONTACT}"),
                "Subject: [Bulwark] WARNING demo: Mass action",
                &id_a,
                "bulwark tenant freeze --tenant demo",
            ],
        )
        .await?;
    let told_a = now_ms();
    eprintln!(
        "[test] the mass-action e-mail for A arrived {} ms after its approval:\n{mail_a}",
        told_a - approved_a
    );
    ensure!(
        told_a < approved_a + i64::try_from(DELAY_SECS)? * 1_000,
        "the e-mail came after the delay"
    );
    let alerts = s
        .cli(&["alert", "list", "--tenant", "demo", "--json"], None)
        .await?
        .ok()?
        .stdout;
    let alerts: Vec<AlertView> = decode_json(&alerts).context("alert list --json")?;
    let alert = alerts
        .iter()
        .find(|a| a.kind == "mass_action.delayed" && a.detail.contains(&id_a))
        .with_context(|| format!("no mass-action alert for A: {alerts:?}"))?;
    ensure!(
        alert.severity == "warning" && alert.state == "open",
        "{alert:?}"
    );
    let acked = s
        .cli(&["alert", "ack", &alert.id], None)
        .await?
        .ok()?
        .stdout;
    ensure!(acked.contains("is acknowledged"), "{acked}");
    let shown = s
        .cli(&["alert", "show", &alert.id], None)
        .await?
        .ok()?
        .stdout;
    ensure!(
        shown.contains(&format!(
            "Sent to       email {CONTACT}: sent after 1 attempt\n"
        )) && shown.contains("Acknowledged"),
        "`bulwark alert show`:\n{shown}"
    );

    // The console's alert page lists it, acknowledged, with a Resolve
    // button for the owner and no second Acknowledge.
    let page = s.console_page("/alerts").await?;
    ensure!(
        page.contains(&format!("data-alert-id=\"{}\"", alert.id))
            && page.contains("Mass action: a run-script job for 1 device waits 1 min 1 s")
            && page.contains("badge-alert-acknowledged")
            && page.contains(&format!("action=\"/alerts/{}/resolve\"", alert.id))
            && !page.contains(&format!("action=\"/alerts/{}/acknowledge\"", alert.id)),
        "the console's alert page:\n{page}"
    );

    // 4. Meanwhile a job of another class is not held: an inventory
    //    refresh runs on the same device while A waits.
    let inventory = s
        .cli(
            &[
                "job",
                "run",
                "--tenant",
                "demo",
                "--targets",
                &device,
                "--inventory-refresh",
                "--reason",
                "e2e",
                "--json",
            ],
            None,
        )
        .await?
        .ok()?;
    let inventory: JobView = decode_json(&inventory.stdout).context("job run --json")?;
    ensure!(
        inventory.class == "inventory-refresh"
            && inventory.mass_action_delay.is_none()
            && target_of(&inventory, &device)?.state == "succeeded",
        "the inventory refresh did not run at once: {inventory:?}"
    );

    // A stays held for the first 20 s, whatever else reaches the device.
    while now_ms() < submitted_a + i64::try_from(HELD_FOR.as_millis())? {
        held(&s, &id_a, &device).await?;
        ensure!(!marker_a.exists(), "job A ran during its delay");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    held(&s, &id_a, &device).await?;

    // 3. Job B, a script too, submitted while A is held: held as well.
    let submitted_b = now_ms();
    let (id_b, marker_b) = s.submit(&device, "mass-b", &[]).await?;
    let (view_b, approved_b) = held(&s, &id_b, &device).await?;
    eprintln!(
        "[test] A ({id_a}) approved at {approved_a}, B ({id_b}) at {approved_b}, {:?} in",
        started.elapsed()
    );

    // The console's job page shows B held, with the command to freeze (its
    // sign-in may wait for a fresh TOTP step: done while A waits anyway).
    let page = s.console_page(&format!("/jobs/{id_b}")).await?;
    ensure!(
        page.contains("id=\"mass-action-delay\"")
            && page.contains("Mass action: waits 1 min 1 s after it enters the witnessed log")
            && page.contains("bulwark tenant freeze --tenant demo")
            && view_b
                .mass_action_delay
                .as_ref()
                .and_then(|d| d.runs_from.as_deref())
                .is_some_and(|at| page.contains(&format!("<time datetime=\"{at}\">"))),
        "the console's job page has no mass-action section:\n{page}"
    );

    // 2, end. A runs once its delay has passed, with nothing new for the
    // device to wake its session (the server's own timer), and not before.
    let wait_a = Duration::from_millis(
        u64::try_from(approved_a + i64::try_from(DELAY_SECS)? * 1_000 + LATE_MS - now_ms())
            .unwrap_or(0),
    );
    let target_a = final_within(&s, &id_a, &device, wait_a).await?;
    let ran_a = now_ms();
    ensure!(
        target_a.state == "succeeded" && target_a.exit_code == Some(0) && marker_a.exists(),
        "job A did not run after its delay: {target_a:?}"
    );
    ensure!(
        target_a
            .stdout
            .as_deref()
            .is_some_and(|o| o.contains("hello from mass-a")),
        "job A's output: {target_a:?}"
    );
    let delivered_a = unix_ms(
        target_a
            .delivered_at
            .as_deref()
            .context("no delivered_at")?,
    )?;
    let started_a = unix_ms(target_a.started_at.as_deref().context("no started_at")?)?;
    let delay_ms = i64::try_from(DELAY_SECS)? * 1_000;
    eprintln!(
        "[test] job A: delivered {} ms, started {} ms after its approval",
        delivered_a - approved_a,
        started_a - approved_a
    );
    ensure!(
        delivered_a >= approved_a + delay_ms - SLACK_MS
            && started_a >= approved_a + delay_ms - SLACK_MS,
        "job A was delivered {} ms and started {} ms after its approval: before its {DELAY_SECS} s",
        delivered_a - approved_a,
        started_a - approved_a
    );
    ensure!(
        ran_a >= submitted_a + delay_ms - SLACK_MS,
        "job A finished {} ms after it was submitted",
        ran_a - submitted_a
    );

    // 3, continued. The customer freezes the tenant (root-signed, on this
    // machine) while B is still in its delay; the witness takes it too.
    let frozen = s
        .cli(
            &[
                "tenant",
                "freeze",
                "--tenant",
                "demo",
                "--reason",
                "an unexpected mass action",
            ],
            None,
        )
        .await?
        .ok()?
        .stdout;
    let frozen_at = now_ms();
    eprintln!("[bulwark tenant freeze]\n{frozen}");
    ensure!(
        frozen.contains(&format!("{WITNESS}  accepted:")),
        "the witness did not take the freeze: {frozen}"
    );
    // Still in B's delay: the freeze came before it could run.
    held(&s, &id_b, &device).await?;
    ensure!(!marker_b.exists(), "job B ran before the freeze");
    ensure!(
        frozen_at < approved_b + delay_ms,
        "the freeze came {} ms after B's approval, not inside its delay",
        frozen_at - approved_b
    );

    // B never runs: past its delay and a margin, it is refused as frozen
    // (delivered once due, with the freeze) or still undelivered.
    let until = submitted_b + 75_000;
    let refused = wait_for(
        Duration::from_millis(u64::try_from(until - now_ms()).unwrap_or(0)),
        "job B to be refused",
        async || {
            let target = target_of(&s.job_view(&id_b).await?, &device)?;
            Ok(bulwark_e2e::is_final(&target).then_some(target))
        },
    )
    .await;
    if let Ok(target) = &refused {
        eprintln!(
            "[test] job B final {} ms after its approval: {target:?}",
            now_ms() - approved_b
        );
    }
    // Whatever happened, look again once the margin is over.
    if let Ok(left) = u64::try_from(until - now_ms()) {
        tokio::time::sleep(Duration::from_millis(left)).await;
    }
    let target_b = target_of(&s.job_view(&id_b).await?, &device)?;
    ensure!(
        !marker_b.exists(),
        "job B ran after the freeze: {target_b:?}"
    );
    ensure!(
        target_b.state == "waiting"
            || (target_b.state == "refused" && target_b.refusal_code.as_deref() == Some("frozen")),
        "job B after the freeze: {target_b:?}"
    );
    eprintln!(
        "[test] job B, {} ms after its approval: {} {:?}",
        now_ms() - approved_b,
        target_b.state,
        target_b.refusal_code
    );

    witness.stop().await?;
    eprintln!("[test] took {:?}", started.elapsed());
    Ok(())
}
