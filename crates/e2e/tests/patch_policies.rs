//! Patch policies and rings end to end (RFD 0021, issue 17): real agents,
//! each with a real apt and dpkg confined to its own throwaway directory
//! (`apt_sandbox`), each with one pending security update
//! (`bookworm-security`) and one pending plain update (`bookworm`).
//!
//! 1. A policy "every minute, within a window around now, soak 60 s",
//!    canary = the `bulwark up` agent, ring 2 = a second agent: the canary
//!    installs the security update (not the other) at once; ring 2 installs
//!    it only at an occurrence at least the soak after the canary's run.
//! 2. A second policy, where the canary's new security update fails to
//!    install: ring 2 is held, and says why; its device keeps its version.
//! 3. The server, owned, forges ring 2's runs meanwhile (delivered when
//!    ring 2's agent connects): at an occurrence before ring 2's signed
//!    start (refused: not an occurrence), and with its stored envelope
//!    edited to name the plain update (refused: the signatures no longer
//!    verify). Nothing installs.
//!
//! Needs `dpkg-deb`, `dpkg-scanpackages`, `apt-get` and the `sqlite3` tool.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use bulwark_api::jobs::JobTargetView;
use bulwark_api::patch_policies::PatchPolicyView;
use bulwark_e2e::apt_sandbox::{AptSandbox, Install, PLAIN_SUITE, SECURITY_SUITE};
use bulwark_e2e::{
    ExtraAgent, OperatorSetup, UpOptions, decode_hex, spawn_agent_with, wait_for, wait_job_final,
};
use bulwark_policy::schedule::{ScheduleStatement, run_job_id};
use bulwark_policy::{JobAction, Limits, Signed};

const PASSPHRASE: &str = "patch policies: a passphrase nobody guesses";
const SECURITY: &str = "bulwark-e2e-tiny";
const PLAIN: &str = "bulwark-e2e-other";
/// From an occurrence to its result (claims every 5 s, apt in a sandbox).
const RUN_WAIT: Duration = Duration::from_secs(120);

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn secs_of(text: &str) -> Result<u64> {
    let ts: jiff::Timestamp = text.parse().with_context(|| format!("time {text:?}"))?;
    Ok(u64::try_from(ts.as_second())?)
}

/// A sandbox with SECURITY and PLAIN 1.0 installed and 2.0 published, each
/// in its suite.
fn sandbox() -> Result<AptSandbox> {
    let s = AptSandbox::new()?;
    s.build(SECURITY, "1.0", SECURITY_SUITE, Install::Succeeds)?;
    s.build(PLAIN, "1.0", PLAIN_SUITE, Install::Succeeds)?;
    s.publish()?;
    s.apt(&["update", "-q"])?;
    s.apt(&["install", "-y", "-q", SECURITY, PLAIN])?;
    s.build(SECURITY, "2.0", SECURITY_SUITE, Install::Succeeds)?;
    s.build(PLAIN, "2.0", PLAIN_SUITE, Install::Succeeds)?;
    s.publish()?;
    Ok(s)
}

/// A two-hour local (UTC) window starting at the top of this hour.
fn window_around_now() -> String {
    let hour = (now_secs() / 3600) % 24;
    format!("{hour:02}:00-{:02}:00", (hour + 2) % 24)
}

async fn create(
    s: &OperatorSetup,
    name: &str,
    canary: &str,
    rest: &str,
    window: &str,
) -> Result<PatchPolicyView> {
    s.cli_as(&[
        "patch",
        "policy",
        "create",
        "--tenant",
        "demo",
        "--name",
        name,
        "--canary",
        canary,
        "--device",
        rest,
        "--cron",
        "* * * * *",
        "--tz",
        "UTC",
        "--window",
        window,
        "--soak",
        "60s",
        "--timeout",
        "300",
        "--yes",
        "--json",
    ])
    .await
}

async fn show(s: &OperatorSetup, id: &str) -> Result<PatchPolicyView> {
    s.cli_as(&["patch", "policy", "show", id, "--json"]).await
}

/// The first run of ring `ring` (0 canary, 1 ring 2) whose result on
/// `device` is final: its occurrence and the result.
async fn first_run(
    s: &OperatorSetup,
    id: &str,
    ring: usize,
    device: &str,
) -> Result<(u64, JobTargetView)> {
    let run = wait_for(RUN_WAIT, &format!("ring {ring}'s first run"), async || {
        let view = show(s, id).await?;
        Ok(view
            .rings
            .get(ring)
            .and_then(|r| r.schedule.runs.last().cloned()))
    })
    .await?;
    let result = wait_job_final(&s.api, &run.job_id, device).await?;
    Ok((secs_of(&run.occurrence)?, result))
}

/// Inserts what an owned server would to deliver occurrence `at` of
/// schedule `schedule` to `device` (the claim, the run's job, its target).
fn forge_run(s: &OperatorSetup, schedule: &str, at: u64, device: &str) -> Result<String> {
    let id: [u8; 16] = decode_hex(schedule)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("a schedule id is 16 bytes"))?;
    let job = hex::encode(run_job_id(&id, at));
    s.sql(&format!(
        "INSERT INTO schedule_runs (schedule_id, tenant_id, occurrence, job_id, claimed_by, claimed_at) \
           SELECT id, tenant_id, {at}, '{job}', 'owned', 0 FROM schedules WHERE id = '{schedule}'; \
         INSERT INTO jobs (id, tenant_id, requested_by, class, reason, script, script_sha256, envelope, \
           state, not_before, expires_at, created_at) \
           SELECT '{job}', tenant_id, created_by, class, reason, script, zeroblob(32), envelope, \
           'approved', {at}000, {expires}000, 0 FROM schedules WHERE id = '{schedule}'; \
         INSERT INTO job_targets (job_id, device_id, tenant_id, state) \
           SELECT '{job}', '{device}', tenant_id, 'waiting' FROM schedules WHERE id = '{schedule}';",
        expires = at + 600,
    ))?;
    Ok(job)
}

/// Restarts the second agent (with its sandbox): at its connection the
/// server sends it every run waiting for it, forged ones included.
async fn reconnect(agent: &mut ExtraAgent, apt_config: &str) -> Result<()> {
    agent.stop().await?;
    agent.proc = spawn_agent_with(None, agent.state_dir.path(), &["--apt-config", apt_config])?;
    Ok(())
}

#[tokio::test]
async fn security_updates_go_to_the_canary_first_and_a_failed_canary_holds_ring_two() -> Result<()>
{
    let (a, b) = (sandbox()?, sandbox()?);
    let s = OperatorSetup::start_with(
        PASSPHRASE,
        UpOptions::default().env("BULWARK_AGENT_APT_CONFIG", a.config().display().to_string()),
    )
    .await?;
    let b_config = b.config().display().to_string();
    let mut second = ExtraAgent::start_with(
        None,
        &s.api,
        &s.up.info.gateway_url,
        "demo",
        &["--apt-config", &b_config],
    )
    .await?;
    let (local, other) = (s.local.clone(), second.device_id.clone());
    let window = window_around_now();

    // 1. Canary `local` (sandbox a), ring 2 `other` (sandbox b).
    let policy = create(&s, "nightly", &local, &other, &window).await?;
    ensure!(
        policy.installs == "install every pending security update"
            && policy.rings.len() == 2
            && policy.rings[0].schedule.targets[0].device_id == local
            && policy.rings[1].schedule.targets[0].device_id == other,
        "{policy:?}"
    );
    let canary_start = secs_of(&policy.rings[0].schedule.not_before)?;
    ensure!(
        secs_of(&policy.ring_two_not_before)? == canary_start + 60,
        "ring 2's signed start is the canary's plus the soak: {policy:?}"
    );
    let (canary_at, result) = first_run(&s, &policy.id, 0, &local).await?;
    ensure!(result.state == "succeeded", "{result:?}");
    let report = result.patches.context("the canary's patch report")?;
    ensure!(
        report.installed.len() == 1 && report.installed[0].name == SECURITY,
        "only the security update: {report:?}"
    );
    ensure!(a.installed(SECURITY)? == "2.0" && a.installed(PLAIN)? == "1.0");
    let (ring_two_at, result) = first_run(&s, &policy.id, 1, &other).await?;
    ensure!(result.state == "succeeded", "{result:?}");
    ensure!(
        ring_two_at >= canary_at + 60,
        "ring 2 ran at {ring_two_at}, the canary at {canary_at}: no soak"
    );
    ensure!(b.installed(SECURITY)? == "2.0" && b.installed(PLAIN)? == "1.0");
    let text = s
        .cli(&["patch", "policy", "show", &policy.id], None)
        .await?
        .ok()?
        .stdout;
    ensure!(
        text.contains("install every pending security update")
            && text.contains("Ring       ring 2"),
        "`bulwark patch policy show`:\n{text}"
    );
    let otp = s.owner.next_otp().await?;
    s.cli(
        &[
            "patch", "policy", "revoke", &policy.id, "--reason", "e2e", "--otp", &otp,
        ],
        None,
    )
    .await?
    .ok()?;

    // 2. A new security update: it breaks on `local`, the canary again.
    a.build(SECURITY, "3.0", SECURITY_SUITE, Install::Fails)?;
    a.publish()?;
    b.build(SECURITY, "3.0", SECURITY_SUITE, Install::Succeeds)?;
    b.publish()?;
    let policy = create(&s, "second", &local, &other, &window).await?;
    let rest_id = policy.rings[1].schedule.id.clone();
    let canary_start = secs_of(&policy.rings[0].schedule.not_before)?;

    // 3. Meanwhile the owned server forges ring 2's runs on `other`, and
    //    delivers them when it connects: before its signed start (the
    //    canary's own minute) ...
    let early = forge_run(&s, &rest_id, canary_start, &other)?;
    reconnect(&mut second, &b_config).await?;
    let refused = wait_job_final(&s.api, &early, &other).await?;
    ensure!(
        refused.state == "refused"
            && refused.refusal_code.as_deref() == Some("schedule_not_an_occurrence"),
        "ring 2 moved earlier: {refused:?}"
    );
    let (_, result) = first_run(&s, &policy.id, 0, &local).await?;
    ensure!(
        result.state == "failed",
        "the canary's broken update: {result:?}"
    );
    // ... and with its stored envelope edited to name the plain update.
    let envelope = decode_hex(
        s.sql(&format!(
            "SELECT hex(envelope) FROM schedules WHERE id = '{rest_id}'"
        ))?
        .trim(),
    )?;
    let limits = Limits::default();
    let mut signed =
        Signed::from_bytes(&envelope, &limits).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut statement: ScheduleStatement = signed
        .statement(&limits)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    statement.action = JobAction::InstallPatches {
        packages: vec![PLAIN.to_owned()],
    };
    signed.payload = Signed::new(&statement).payload;
    s.sql(&format!(
        "UPDATE schedules SET envelope = X'{}' WHERE id = '{rest_id}'",
        hex::encode(signed.to_bytes())
    ))?;
    let at = canary_start + 60;
    let wait = at.saturating_sub(now_secs());
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let widened = forge_run(&s, &rest_id, at, &other)?;
    reconnect(&mut second, &b_config).await?;
    let refused = wait_job_final(&s.api, &widened, &other).await?;
    ensure!(
        refused.state == "refused"
            && matches!(
                refused.refusal_code.as_deref(),
                Some("bad_signature" | "too_few_signers")
            ),
        "ring 2 widened to all updates: {refused:?}"
    );

    // Ring 2 is held, and says why; the honest scheduler delivered it nothing.
    let held = wait_for(RUN_WAIT, "ring 2 held", async || {
        let view = show(&s, &policy.id).await?;
        Ok(view.rings.get(1).filter(|r| r.state == "held").cloned())
    })
    .await?;
    ensure!(held.detail.contains("failed"), "{held:?}");
    ensure!(
        held.schedule.runs.iter().all(|r| r.claimed_by == "owned"),
        "the server released ring 2 after a failed canary: {held:?}"
    );
    let page = s.console_page("/tenants/demo/patching").await?;
    ensure!(
        page.contains("second")
            && page.contains(r#"data-state="held""#)
            && page.contains(&held.detail),
        "the console's patch page does not show ring 2 held ({})",
        held.detail
    );
    ensure!(
        a.installed(SECURITY)? == "2.0" && a.installed(PLAIN)? == "1.0",
        "ring 2's device installed something"
    );
    ensure!(
        b.installed(SECURITY)? == "2.0",
        "the broken update installed"
    );
    drop(second);
    Ok(())
}
