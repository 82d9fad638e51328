//! Scheduled jobs end to end (RFD 0019, issue 15), against `bulwark up`
//! with its own agent and one more: a schedule signed once runs every
//! minute, each run a job whose result the API and `bulwark schedule show`
//! show; and what an owned server does with the database is refused by the
//! agents themselves:
//!
//! * the schedule's command rewritten in the database: `script_mismatch`;
//! * a schedule the root holders revoked in the policy, still delivered by
//!   the server: `schedule_revoked`;
//! * an occurrence the server makes up (a time outside the schedule's
//!   signed window): `schedule_not_an_occurrence`;
//! * the same occurrence delivered again, to an agent restarted since:
//!   answered with what it did, never run twice;
//! * and on an honest server, a schedule revoked at the API is delivered no more.
//!
//! Wall time: every attack aims at the same coming minute, prepared before
//! it starts; the every-minute schedule's first run is at once (a schedule
//! lives from the start of the minute it is made in), its second at that
//! minute. Needs the `sqlite3` tool for the tampering.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use bulwark_api::jobs::JobTargetView;
use bulwark_api::schedules::{ScheduleRunView, ScheduleView};
use bulwark_e2e::{OperatorSetup, sql_text, wait_for, wait_job_final};

const PASSPHRASE: &str = "scheduled jobs passphrase";
/// From the claim of an occurrence to its result (the scheduler looks every
/// 5 s; a script starts at once).
const RUN_WAIT: Duration = Duration::from_secs(60);

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// An RFC 3339 time of the API as Unix seconds.
fn secs_of(text: &str) -> Result<u64> {
    let ts: jiff::Timestamp = text.parse().with_context(|| format!("time {text:?}"))?;
    Ok(u64::try_from(ts.as_second())?)
}

/// `M H * * *` in UTC: once a day, at the minute starting at `at`.
fn daily_at(at: u64) -> String {
    format!("{} {} * * *", (at / 60) % 60, (at / 3600) % 24)
}

/// Lines in a file a script appends to (0 if it does not exist).
fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

async fn create(
    s: &OperatorSetup,
    device: &str,
    cron: &str,
    command: &str,
    extra: &[&str],
) -> Result<ScheduleView> {
    let mut args = vec![
        "schedule",
        "create",
        "--tenant",
        "demo",
        "--cron",
        cron,
        "--tz",
        "UTC",
        "--device",
        device,
        "--command",
        command,
        "--reason",
        "e2e",
        "--timeout",
        "30",
        "--yes",
        "--json",
    ];
    args.extend_from_slice(extra);
    s.cli_as(&args).await
}

async fn show(s: &OperatorSetup, id: &str) -> Result<ScheduleView> {
    s.cli_as(&["schedule", "show", id, "--json"]).await
}

/// Waits until the schedule has a claimed run for `occurrence` (Unix
/// seconds), then until `device` answered it; returns the run and its target.
async fn run_at(
    s: &OperatorSetup,
    id: &str,
    occurrence: u64,
    device: &str,
) -> Result<(ScheduleRunView, JobTargetView)> {
    // Counted from the occurrence, not from now: the wait may start a
    // minute before it.
    let until = Duration::from_secs(occurrence.saturating_sub(now_secs())) + RUN_WAIT;
    let run = wait_for(
        until,
        &format!("schedule {id}'s run at {occurrence}"),
        async || {
            let view = show(s, id).await?;
            for run in view.runs {
                if secs_of(&run.occurrence)? == occurrence {
                    return Ok(Some(run));
                }
            }
            Ok(None)
        },
    )
    .await?;
    let target = wait_job_final(&s.api, &run.job_id, device).await?;
    Ok((run, target))
}

fn refused_with(target: &JobTargetView, code: &str) -> Result<()> {
    ensure!(
        target.state == "refused" && target.refusal_code.as_deref() == Some(code),
        "expected a refusal {code}, got {target:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_schedule_runs_every_minute_and_what_the_server_forges_is_refused() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let mut victim = s.victim().await?;
    let work = s.work.path();
    let device = s.local.clone();

    // The minute every attack aims at: the next one if there is time to
    // prepare them (50 s, on a loaded machine) before it starts, else the
    // one after.
    let now = now_secs();
    let target = if now % 60 <= 10 {
        now - now % 60 + 60
    } else {
        now - now % 60 + 120
    };
    let at_target = daily_at(target);

    // 1. Every minute, from the start of this one: it runs at once.
    let ticks = work.join("ticks");
    let every = create(
        &s,
        &device,
        "* * * * *",
        &format!("echo tick >> '{}'; echo tick", ticks.display()),
        &[],
    )
    .await?;
    ensure!(every.next_occurrences.len() >= 2, "{every:?}");
    // It lives from the start of the minute the CLI made it in.
    let this_minute = secs_of(&every.not_before)?;
    ensure!(this_minute % 60 == 0 && this_minute + 60 > now, "{every:?}");

    // 2. Its command rewritten in the database after signing.
    let tampered = work.join("tampered-ran");
    let edited = create(&s, &device, &at_target, "echo signed", &[]).await?;
    s.sql(&format!(
        "UPDATE schedules SET script = CAST({} AS BLOB) WHERE id = '{}'",
        sql_text(&format!("touch '{}'\n", tampered.display())),
        edited.id
    ))?;

    // 3. Revoked by the root holders in the policy; the server (which the
    //    test plays as owned) never revokes it and keeps delivering.
    let revoked_marker = work.join("revoked-ran");
    let revoked = create(
        &s,
        &device,
        &at_target,
        &format!("touch '{}'", revoked_marker.display()),
        &[],
    )
    .await?;
    let toml = s
        .cli(&["policy", "show", "--tenant", "demo", "--toml"], None)
        .await?
        .ok()?
        .stdout;
    let file = work.join("policy.toml");
    std::fs::write(
        &file,
        format!("revoked_schedules = [\"{}\"]\n{toml}", revoked.id),
    )?;
    s.cli(
        &[
            "policy",
            "sign",
            "--tenant",
            "demo",
            "--file",
            &file.display().to_string(),
        ],
        None,
    )
    .await?
    .ok()?;

    // 4. Outside its signed window: the honest scheduler never delivers it;
    //    the test, as the owned server, claims an occurrence it is not.
    let window_marker = work.join("window-ran");
    let hour = (now / 3600) % 24;
    let window = format!("{:02}:00-{:02}:00", (hour + 2) % 24, (hour + 3) % 24);
    let outside = create(
        &s,
        &device,
        "* * * * *",
        &format!("touch '{}'", window_marker.display()),
        &["--window", &window],
    )
    .await?;
    let forged = "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0";
    s.sql(&format!(
        "INSERT INTO schedule_runs (schedule_id, tenant_id, occurrence, job_id, claimed_by, claimed_at) \
           SELECT id, tenant_id, {target}, '{forged}', 'owned', 0 FROM schedules WHERE id = '{id}'; \
         INSERT INTO jobs (id, tenant_id, requested_by, class, reason, script, script_sha256, envelope, \
           state, not_before, expires_at, created_at) \
           SELECT '{forged}', tenant_id, created_by, class, reason, script, zeroblob(32), envelope, \
           'approved', {target}000, {expires}000, 0 FROM schedules WHERE id = '{id}'; \
         INSERT INTO job_targets (job_id, device_id, tenant_id, state) \
           SELECT '{forged}', '{device}', tenant_id, 'waiting' FROM schedules WHERE id = '{id}';",
        id = outside.id,
        expires = target + 600,
    ))?;

    // 5. Run on the second agent, which is then restarted and sent the
    //    same occurrence again.
    let once = work.join("once");
    let replayed = create(
        &s,
        &victim.device_id,
        &at_target,
        &format!("echo run >> '{}'; echo run", once.display()),
        &[],
    )
    .await?;

    // 6. Revoked at the API on an honest server: never delivered.
    let honest_marker = work.join("honest-revoked-ran");
    let honest = create(
        &s,
        &device,
        &at_target,
        &format!("touch '{}'", honest_marker.display()),
        &[],
    )
    .await?;
    let otp = s.owner.next_otp().await?;
    s.cli(
        &[
            "schedule", "revoke", &honest.id, "--reason", "e2e", "--otp", &otp,
        ],
        None,
    )
    .await?
    .ok()?;
    ensure!(
        now_secs() < target,
        "the attacks were not ready before their minute; the test is too slow here"
    );

    // The every-minute schedule's first run, visible as a job: this
    // minute's (the scheduler looks every 5 s, so a schedule made in the
    // last seconds of a minute starts at the next one).
    let first = wait_for(
        RUN_WAIT,
        "the every-minute schedule's first run",
        async || Ok(show(&s, &every.id).await?.runs.pop()),
    )
    .await?;
    let first_at = secs_of(&first.occurrence)?;
    ensure!(
        first_at == this_minute || first_at == this_minute + 60,
        "{first:?}"
    );
    let result = wait_job_final(&s.api, &first.job_id, &device).await?;
    ensure!(
        result.state == "succeeded"
            && result.exit_code == Some(0)
            && result.stdout.as_deref() == Some("tick\n"),
        "{result:?}"
    );
    let job = s.api.job(&first.job_id).await?;
    ensure!(job.targets.len() == 1, "{job:?}");
    let seen_runs = if first_at == target { 1 } else { 2 };

    // At the target minute: the honest run, and each attack refused.
    let (_, second) = run_at(&s, &every.id, target, &device).await?;
    ensure!(second.state == "succeeded", "{second:?}");
    let (_, result) = run_at(&s, &edited.id, target, &device).await?;
    refused_with(&result, "script_mismatch")?;
    let (_, result) = run_at(&s, &revoked.id, target, &device).await?;
    refused_with(&result, "schedule_revoked")?;
    let result = wait_job_final(&s.api, forged, &device).await?;
    refused_with(&result, "schedule_not_an_occurrence")?;
    let (run, result) = run_at(&s, &replayed.id, target, &victim.device_id).await?;
    ensure!(
        result.state == "succeeded" && lines(&once) == 1,
        "{result:?}"
    );

    // The same occurrence again: the server's row made to wait again, the
    // agent restarted (its memory is on disk), and the run sent anew.
    victim.stop().await?;
    s.sql(&format!(
        "UPDATE job_targets SET state = 'waiting', exit_code = NULL, stdout = NULL, stderr = NULL, \
         output_sha256 = NULL, started_at = NULL, finished_at = NULL, reported_at = NULL \
         WHERE job_id = '{}'",
        run.job_id
    ))?;
    victim.resume()?;
    let again = wait_job_final(&s.api, &run.job_id, &victim.device_id).await?;
    ensure!(again.state == "succeeded", "{again:?}");
    ensure!(lines(&once) == 1, "the occurrence ran twice");

    // Nothing forged ran, and the honestly revoked schedule was never claimed.
    for marker in [&tampered, &revoked_marker, &window_marker, &honest_marker] {
        ensure!(!marker.exists(), "{} exists: it ran", marker.display());
    }
    ensure!(show(&s, &honest.id).await?.runs.is_empty(), "honest revoke");
    // Never more runs than occurrences so far.
    let occurrences = (now_secs() - this_minute) / 60 + 1;
    let ticked = u64::try_from(lines(&ticks))?;
    ensure!(
        (seen_runs..=occurrences).contains(&ticked),
        "every minute ran {ticked} times in {occurrences} occurrences"
    );

    // `bulwark schedule show` as a person reads it.
    let text = s
        .cli(&["schedule", "show", &every.id], None)
        .await?
        .ok()?
        .stdout;
    ensure!(
        text.lines()
            .filter(|l| l.contains("succeeded exit 0"))
            .count()
            >= usize::try_from(seen_runs)?,
        "`bulwark schedule show`:\n{text}"
    );
    let text = s
        .cli(&["schedule", "show", &revoked.id], None)
        .await?
        .ok()?
        .stdout;
    ensure!(
        text.contains("refused schedule_revoked"),
        "`bulwark schedule show`:\n{text}"
    );
    Ok(())
}
