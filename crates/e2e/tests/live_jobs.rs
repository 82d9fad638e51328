//! Job states that say what happened, cancel and live output (issue 15,
//! RFD 0012), end to end against `bulwark up` and its real agent (protocol
//! version 3):
//!
//! - a job printing a line every half second shows its first lines through
//!   the output API while it still runs, then ends `succeeded` (job `done`)
//!   with its duration;
//! - a `sleep 60` job, cancelled with `bulwark job cancel`, ends
//!   `cancelled` within seconds, its process gone from `/proc`, the cancel
//!   in the tenant's audit log;
//! - a job to a stopped agent's device says `waiting_offline` while the
//!   other target succeeds; when the agent comes back and its run fails,
//!   the job ends `partial`;
//! - output past the 1 MiB cap is cut with a `[... N bytes truncated ...]`
//!   marker, in the API and in `bulwark job show --follow`;
//! - an agent's HTML and terminal escapes reach `--follow` as inert text;
//! - in the console, the job page says `running` while the output grows on
//!   the same page (no reload), shows the agent's HTML as text, and its
//!   cancel form stops the run.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bulwark_api::job_status::{JobStatus, TargetStatus};
use bulwark_api::jobs::{JobOutputView, JobView};
use bulwark_e2e::{ExtraAgent, OperatorSetup, decode_json, target_of, wait_for};

const PASSPHRASE: &str = "e2e live jobs: a passphrase nobody guesses";

/// `bulwark job run --command CMD` on `targets` of `demo`, not waited for.
async fn submit(s: &OperatorSetup, targets: &str, command: &str) -> Result<String> {
    let out = s
        .cli(
            &[
                "job",
                "run",
                "--tenant",
                "demo",
                "--targets",
                targets,
                "--command",
                command,
                "--reason",
                "e2e live jobs",
                "--no-wait",
                "--json",
            ],
            None,
        )
        .await?
        .ok()?;
    let view: JobView = decode_json(&out.stdout).context("job run --json")?;
    Ok(view.id)
}

async fn output(s: &OperatorSetup, job: &str, device: &str) -> Result<JobOutputView> {
    s.api
        .get_as(&format!("/api/v1/jobs/{job}/output?device={device}"))
        .await
}

/// All of a device's live output as text (every page).
async fn all_output(s: &OperatorSetup, job: &str, device: &str) -> Result<(String, JobOutputView)> {
    let mut text = String::new();
    let mut after: Option<i64> = None;
    loop {
        let mut path = format!("/api/v1/jobs/{job}/output?device={device}");
        if let Some(a) = after {
            path.push_str(&format!("&after={a}"));
        }
        let page: JobOutputView = s.api.get_as(&path).await?;
        for c in &page.chunks {
            text.push_str(&c.text);
        }
        if page.chunks.len() < 256 {
            return Ok((text, page));
        }
        after = page.next;
    }
}

/// Whether a process runs: it exists and is not a zombie (killed, waiting
/// for init to reap it).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

async fn wait_status(s: &OperatorSetup, job: &str, want: JobStatus) -> Result<JobView> {
    wait_for(
        Duration::from_secs(60),
        &format!("job {job} to be {}", want.as_str()),
        async || {
            let view = s.job_view(job).await?;
            Ok((view.status == want).then_some(view))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_say_what_happened_stream_their_output_and_cancel() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let local = s.local.clone();

    // 1. Live output: the first lines are there while the job runs.
    let job = submit(
        &s,
        &local,
        "for i in 1 2 3 4 5 6; do echo \"line $i\"; sleep 0.5; done",
    )
    .await?;
    let seen_running = wait_for(
        Duration::from_secs(30),
        "the first line while the job runs",
        async || {
            let out = output(&s, &job, &local).await?;
            let text: String = out.chunks.iter().map(|c| c.text.as_str()).collect();
            Ok((text.contains("line 1") && out.status == TargetStatus::Running).then_some(text))
        },
    )
    .await?;
    ensure!(
        !seen_running.contains("line 6"),
        "the whole output was there before the job ended: {seen_running:?}"
    );
    let view = wait_status(&s, &job, JobStatus::Done).await?;
    let target = target_of(&view, &local)?;
    ensure!(target.status == TargetStatus::Succeeded, "{target:?}");
    ensure!(target.running_at.is_some(), "no start recorded: {target:?}");
    let took = target.duration_ms.context("a duration")?;
    ensure!((2_500..20_000).contains(&took), "took {took} ms");
    let (text, _) = all_output(&s, &job, &local).await?;
    ensure!(
        text == "line 1\nline 2\nline 3\nline 4\nline 5\nline 6\n",
        "{text:?}"
    );
    println!("live output: first line seen while running; whole run took {took} ms");

    // 2. Cancel: a long job ends `cancelled` within seconds, its process gone.
    let pid_file = s.work.path().join("sleeper.pid");
    let job = submit(
        &s,
        &local,
        &format!("sleep 60 & echo $! > '{}'; wait", pid_file.display()),
    )
    .await?;
    let pid: u32 = wait_for(Duration::from_secs(30), "the sleeper to run", async || {
        let view = s.job_view(&job).await?;
        let running = target_of(&view, &local)?.status == TargetStatus::Running;
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse().ok());
        Ok(pid.filter(|_| running))
    })
    .await?;
    ensure!(alive(pid), "the sleeper is not running");
    let asked = Instant::now();
    s.cli(&["job", "cancel", &job, "--reason", "e2e: stop it"], None)
        .await?
        .ok()?;
    let view = wait_status(&s, &job, JobStatus::Cancelled).await?;
    let took = asked.elapsed();
    let target = target_of(&view, &local)?;
    ensure!(target.status == TargetStatus::Cancelled, "{target:?}");
    ensure!(!alive(pid), "the cancelled job's process {pid} still runs");
    ensure!(took < Duration::from_secs(5), "cancel took {took:?}");
    ensure!(
        view.cancel_reason.as_deref() == Some("e2e: stop it"),
        "{view:?}"
    );
    println!("cancel: job cancelled and its process gone {took:?} after `bulwark job cancel`");
    let audit = s.api.audit("demo").await?;
    ensure!(
        audit
            .iter()
            .any(|e| e.action == "job.cancelled" && e.target == job),
        "no job.cancelled event"
    );
    // Cancelled twice: refused, nothing changes.
    let again = s
        .cli(&["job", "cancel", &job, "--reason", "again"], None)
        .await?;
    ensure!(!again.success(), "a second cancel was accepted");

    // 3. An offline device waits (and says so); a failed run makes it partial.
    let mut extra = ExtraAgent::start(&s.api, &s.up.info.gateway_url, "demo").await?;
    extra.stop().await?;
    wait_for(
        Duration::from_secs(30),
        "the extra device offline",
        async || Ok((!s.api.device(&extra.device_id).await?.online).then_some(())),
    )
    .await?;
    let extra_dir = extra.state_dir.path().display().to_string();
    let job = submit(
        &s,
        &format!("{local},{}", extra.device_id),
        &format!("case \"$PWD\" in '{extra_dir}'/*) echo failing here; exit 3;; esac; echo fine"),
    )
    .await?;
    let view = wait_for(
        Duration::from_secs(30),
        "the local target to finish",
        async || {
            let view = s.job_view(&job).await?;
            Ok((target_of(&view, &local)?.status == TargetStatus::Succeeded).then_some(view))
        },
    )
    .await?;
    ensure!(
        target_of(&view, &extra.device_id)?.status == TargetStatus::WaitingOffline,
        "{view:?}"
    );
    ensure!(view.status == JobStatus::Running, "{view:?}");
    extra.resume()?;
    let view = wait_status(&s, &job, JobStatus::Partial).await?;
    let failed = target_of(&view, &extra.device_id)?;
    ensure!(
        failed.status == TargetStatus::Failed && failed.exit_code == Some(3),
        "{failed:?}"
    );

    // 4. Output past the cap is cut, with a marker; escapes stay inert.
    let job = submit(
        &s,
        &local,
        "printf '<script>alert(1)</script>\\033[31mRED\\033[0m\\n'; head -c 1200000 /dev/zero | tr '\\000' a",
    )
    .await?;
    let view = wait_status(&s, &job, JobStatus::Done).await?;
    let target = target_of(&view, &local)?;
    let (text, last) = all_output(&s, &job, &local).await?;
    ensure!(
        text.len() <= 1024 * 1024,
        "{} bytes of live output kept",
        text.len()
    );
    ensure!(
        target.live_truncated > 0 && last.truncated_bytes == target.live_truncated,
        "{target:?} {last:?}"
    );
    ensure!(
        usize::try_from(target.live_truncated)? + text.len()
            == 1_200_000 + "<script>alert(1)</script>\x1b[31mRED\x1b[0m\n".len(),
        "kept {} and truncated {}",
        text.len(),
        target.live_truncated
    );
    ensure!(
        text.starts_with("<script>alert(1)</script>\x1b[31mRED"),
        "{:?}",
        &text[..40]
    );
    let follow = s.cli(&["job", "show", &job, "--follow"], None).await?;
    ensure!(
        follow.stdout.contains(&format!(
            "[... {} bytes truncated ...]",
            target.live_truncated
        )),
        "no truncation marker in --follow"
    );
    ensure!(
        !follow.stdout.contains('\x1b') && follow.stdout.contains("\u{fffd}[31mRED"),
        "a terminal escape reached the terminal: {:?}",
        &follow.stdout[..80.min(follow.stdout.len())]
    );
    println!(
        "truncation: kept {} bytes, marked {} truncated",
        text.len(),
        target.live_truncated
    );
    Ok(())
}

#[path = "support/browser.rs"]
mod browser;

/// The console's job page while a job runs: its status says `running`
/// while the output arrives piece by piece without a reload, an agent's
/// HTML is shown as text (no element made of it), and the cancel form
/// stops the run. Saves `docs/screenshots/job-live.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_live_output_as_text() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let local = s.local.clone();
    let browser = browser::Browser::plain(900).await?;
    let result = async {
        // Signed in first: the job must still be running when the page opens.
        browser.sign_in(&s.up.base_url(), &s.owner).await?;
        let job = submit(
            &s,
            &local,
            "printf '<img src=x onerror=alert(1)><script>alert(2)</script>\\n'; \
             for i in $(seq 1 90); do echo \"step $i of 90: checking disks\"; sleep 1; done",
        )
        .await?;
        browser
            .goto(&format!("{}/jobs/{job}", s.up.base_url()))
            .await?;
        // The page reloads itself once when the target starts running.
        wait_job_state(&browser, "running").await?;
        let text = browser.wait_text("pre.live-output", "step 2 of 90").await?;
        ensure!(
            text.starts_with("<img src=x onerror=alert(1)><script>alert(2)</script>"),
            "{text:?}"
        );
        // From here on the output grows on the same page: a reload would
        // drop this mark.
        browser
            .client()
            .execute("window.bulwarkSamePage = true; return null", vec![])
            .await?;
        let later = browser.wait_text("pre.live-output", "step 6 of 90").await?;
        ensure!(
            !later.contains("step 90 of 90"),
            "the whole run was there: the page did not watch it live"
        );
        let same = browser
            .client()
            .execute("return window.bulwarkSamePage === true", vec![])
            .await?;
        ensure!(same == serde_json::json!(true), "the page reloaded to show output");
        ensure!(
            job_state(&browser).await? == "running",
            "the job's state is not running while it runs"
        );
        let made = browser
            .client()
            .execute(
                "return document.querySelectorAll('pre.live-output img, pre.live-output script').length",
                vec![],
            )
            .await?;
        ensure!(made == serde_json::json!(0), "the agent's HTML became elements: {made}");
        let root = bulwark_e2e::workspace_root();
        browser
            .client()
            .execute(
                "document.querySelector('pre.live-output').scrollIntoView({block: 'center'}); return null",
                vec![],
            )
            .await?;
        browser
            .screenshot(&root.join("docs/screenshots/job-live.png"))
            .await?;

        // Cancelled from the console: the run stops, the page says so.
        browser.click("#cancel summary").await?;
        browser.fill("reason", "e2e: stopped from the console").await?;
        browser.click("#cancel-submit").await?;
        wait_job_state(&browser, "cancelled").await?;
        let view = wait_status(&s, &job, JobStatus::Cancelled).await?;
        ensure!(
            target_of(&view, &local)?.status == TargetStatus::Cancelled,
            "{view:?}"
        );
        let (text, _) = all_output(&s, &job, &local).await?;
        ensure!(!text.contains("step 90 of 90"), "the run went on to its end");
        Ok(())
    }
    .await;
    browser.close().await?;
    result
}

/// The job page's state badge as the page wrote it (the stylesheet shows
/// it in capitals, which is what WebDriver's rendered text would return).
async fn job_state(browser: &browser::Browser) -> Result<String> {
    let text = browser
        .client()
        .execute(
            "const e = document.getElementById('job-state'); return e ? e.textContent.trim() : ''",
            vec![],
        )
        .await?;
    Ok(text.as_str().unwrap_or_default().to_owned())
}

async fn wait_job_state(browser: &browser::Browser, want: &str) -> Result<()> {
    wait_for(
        Duration::from_secs(30),
        &format!("the job page to say {want}"),
        async || Ok((job_state(browser).await? == want).then_some(())),
    )
    .await
}
