//! Nothing lost under kill -9 (issue 19, DESIGN.md invariant 8), with the
//! real binaries: what ran is recorded once with its true exit code, nothing
//! runs twice, no valid job ends refused, and no security alert is raised
//! when nothing was attacked.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bulwark_api::jobs::{JobTargetView, JobView};
use bulwark_e2e::{
    OperatorSetup, UpOptions, decode_json, is_final, kill_agent_after_exit, target_of, wait_for,
};

const PASSPHRASE: &str = "e2e faults: a long passphrase nobody guesses";
const WAIT: Duration = Duration::from_secs(90);
/// `bulwark_agent::jobs::MAX_QUEUED_JOBS`: jobs an agent holds behind the running one.
const AGENT_QUEUE: usize = 16;

/// Writes `body` as a script in the setup's scratch directory.
fn script(s: &OperatorSetup, name: &str, body: &str) -> Result<PathBuf> {
    let path = s.work.path().join(format!("{name}.sh"));
    std::fs::write(&path, body)?;
    Ok(path)
}

/// `bulwark job run --script PATH --no-wait` on `device`; returns the job id.
async fn submit(s: &OperatorSetup, device: &str, script: &Path) -> Result<String> {
    let out = s.run_script(device, script, &["--no-wait"]).await?.ok()?;
    Ok(decode_json::<JobView>(&out.stdout)
        .context("job run --json")?
        .id)
}

/// The target of job `id` on `device` once final (within [`WAIT`]).
async fn final_target(s: &OperatorSetup, id: &str, device: &str) -> Result<JobTargetView> {
    wait_for(
        WAIT,
        &format!("job {id} to finish on {device}"),
        async || {
            let target = target_of(&s.job_view(id).await?, device)?;
            Ok(is_final(&target).then_some(target))
        },
    )
    .await
}

/// `count` jobs queued for `device` while its agent is stopped, each
/// appending its number to `ran` and then running `tail` (shell); the
/// agent is started again and this returns once a job has started.
async fn queue_and_start(
    s: &OperatorSetup,
    victim: &mut bulwark_e2e::ExtraAgent,
    ran: &Path,
    count: usize,
    tail: impl Fn(usize) -> String,
) -> Result<Vec<String>> {
    victim.stop().await?;
    let mut ids = Vec::new();
    for n in 0..count {
        let body = format!("echo {n} >> '{}'\n{}\n", ran.display(), tail(n));
        let path = script(s, &format!("job-{n}"), &body)?;
        ids.push(submit(s, &victim.device_id, &path).await?);
    }
    victim.resume()?;
    // Usually job 0 runs first; not always: a job whose proof started from
    // a head the agent does not hold is answered `log_head_stale` and sent
    // again after those already on their way (RFD 0003).
    wait_for(WAIT, "a job to start", async || {
        Ok(std::fs::read_to_string(ran)
            .is_ok_and(|t| !t.is_empty())
            .then_some(()))
    })
    .await?;
    Ok(ids)
}

/// Every job of `ids` succeeded on `device`, each ran exactly once (its
/// number in `ran` once), and no alarm was raised.
async fn each_ran_once(s: &OperatorSetup, device: &str, ids: &[String], ran: &Path) -> Result<()> {
    for (n, id) in ids.iter().enumerate() {
        let target = final_target(s, id, device).await?;
        ensure!(
            target.state == "succeeded",
            "job {n} did not succeed: {target:?}"
        );
    }
    let mut lines: Vec<usize> = std::fs::read_to_string(ran)?
        .lines()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    lines.sort_unstable();
    ensure!(
        lines == (0..ids.len()).collect::<Vec<_>>(),
        "each job must run exactly once: {lines:?}"
    );
    no_alerts(s).await
}

/// Fails on any security alert in demo's log: nothing here is an attack.
async fn no_alerts(s: &OperatorSetup) -> Result<()> {
    let alerts = s.api.security_alerts("demo").await?;
    ensure!(alerts.is_empty(), "false alarms: {alerts:?}");
    Ok(())
}

/// kill -9 of the agent just after its script exits, at the moment it
/// cleans up: a killer outside the script's process group waits for the
/// run's script file to go and kills the agent at once. The result (exit 7
/// and the output) was spooled before the files went, so the restarted
/// agent sends it; before issue 19 the files went first and the redelivered
/// job was stored as "refused: replayed".
#[tokio::test]
async fn a_result_outlives_an_agent_killed_as_its_script_ends() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let mut victim = s.victim().await?;
    let device = victim.device_id.clone();
    let ran = s.work.path().join("ran.log");
    let path = script(
        &s,
        "exit-7",
        &format!(
            "echo ran >> '{ran}'\n{killer}echo finished\nexit 7\n",
            ran = ran.display(),
            killer = kill_agent_after_exit(&s.work.path().join("killer.ready")),
        ),
    )?;
    let id = submit(&s, &device, &path).await?;
    wait_for(
        WAIT,
        "the agent to be killed by the script's killer",
        async || Ok(victim.proc.try_wait()?.map(|_| ())),
    )
    .await?;
    victim.resume()?;
    let target = final_target(&s, &id, &device).await?;
    ensure!(
        target.state == "failed"
            && target.exit_code == Some(7)
            && target
                .stdout
                .as_deref()
                .is_some_and(|o| o.contains("finished")),
        "the job's true result was lost: {target:?}"
    );
    ensure!(
        std::fs::read_to_string(&ran)? == "ran\n",
        "the script did not run exactly once"
    );
    // The agent goes on: a correct job runs.
    s.good_job_runs(&device, "after-the-kill").await?;
    no_alerts(&s).await
}

/// kill -9 of the agent (and its process group) while a script runs: the
/// script's supervisor is not in that group, so the script finishes under
/// its timeout, and the restarted agent waits for it and reports its true
/// exit code (before issue 19 the script finished unobserved and the job
/// was reported as killed with no exit status).
#[tokio::test]
async fn a_script_outlives_its_killed_agent_and_its_result_is_kept() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let mut victim = s.victim().await?;
    let device = victim.device_id.clone();
    let ran = s.work.path().join("ran.log");
    let path = script(
        &s,
        "outlives",
        &format!(
            "echo start >> '{ran}'\nsleep 3\necho end >> '{ran}'\necho late\nexit 4\n",
            ran = ran.display()
        ),
    )?;
    let id = submit(&s, &device, &path).await?;
    wait_for(WAIT, "the script to start", async || {
        Ok(std::fs::read_to_string(&ran)
            .is_ok_and(|t| t.contains("start"))
            .then_some(()))
    })
    .await?;
    victim.proc.kill9().await?;
    victim.resume()?;
    let target = final_target(&s, &id, &device).await?;
    ensure!(
        target.exit_code == Some(4) && target.stdout.as_deref().is_some_and(|o| o.contains("late")),
        "the true result of the script that outlived its agent was lost: {target:?}"
    );
    ensure!(
        std::fs::read_to_string(&ran)? == "start\nend\n",
        "the script did not run exactly once, to its end"
    );
    s.good_job_runs(&device, "after-the-kill").await?;
    no_alerts(&s).await
}

/// More jobs than the agent queues, delivered at once, then kill -9 of the
/// server while the first runs and a two-second outage: the agent reconnects
/// with its queue full of jobs from the dead connection. Every job runs
/// once and succeeds; none is refused as busy or for the log; no alarm.
/// (Before issue 19: duplicates filled the queue and a valid job ended
/// "refused: agent_busy"; jobs from the dead session moved the agent's tree
/// head behind the new session's back and the next ones raised false
/// `log_inconsistent` alarms.)
#[tokio::test]
async fn queued_jobs_survive_a_server_crash_without_refusals_or_alarms() -> Result<()> {
    let mut s = OperatorSetup::start_with(PASSPHRASE, UpOptions::default().fixed_ports()?).await?;
    let mut victim = s.victim().await?;
    let device = victim.device_id.clone();
    let ran = s.work.path().join("ran.log");
    let ids = queue_and_start(&s, &mut victim, &ran, AGENT_QUEUE + 5, |n| {
        if n == 0 { "sleep 4" } else { "" }.to_owned()
    })
    .await?;
    s.up.crash_and_restart(Duration::from_secs(2)).await?;
    each_ran_once(&s, &device, &ids, &ran).await
}

/// SIGSTOP of the server for five seconds while an agent works through a
/// queue, then SIGCONT: the frozen server neither reads nor acknowledges;
/// afterwards every job has run once and succeeded, nothing is refused and
/// no alarm is raised.
#[tokio::test]
async fn a_stopped_server_loses_nothing() -> Result<()> {
    let mut s = OperatorSetup::start(PASSPHRASE).await?;
    let mut victim = s.victim().await?;
    let device = victim.device_id.clone();
    let ran = s.work.path().join("ran.log");
    let ids = queue_and_start(&s, &mut victim, &ran, 6, |_| "sleep 1".to_owned()).await?;
    s.up.process().signal("STOP")?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    s.up.process().signal("CONT")?;
    each_ran_once(&s, &device, &ids, &ran).await
}
