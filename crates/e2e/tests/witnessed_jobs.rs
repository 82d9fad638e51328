//! Jobs under a witnessed log (RFD 0006), with real processes: `bulwark
//! up`, a real agent and a real `bulwark witness`. Once the tenant's
//! root-signed policy names a witness, a job runs only under a tree head
//! that witness cosigned recently, and the server has an idle log's head
//! cosigned again every third of the freshness window; with the witness
//! gone, or a cosignature copied from another head onto the current one by
//! an attacker holding the database, the agent refuses with a security
//! alert and nothing runs; with the witness back, jobs run again. A policy
//! needing two witnesses when only one cosigns refuses likewise.
//!
//! Needs the `sqlite3` command-line tool for the tampering.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use bulwark_api::log::{CheckpointView, LogCheckpointsView, LogHeadView, LogKeyView};
use bulwark_e2e::{OperatorSetup, WitnessProcess, sql_text, wait_for, witnesses_section};
use bulwark_translog::Limits;
use bulwark_translog::checkpoint::verify_log_note;
use bulwark_translog::cosignature::{CosignatureVerifier, cosignature_times};
use bulwark_translog::note::NoteVerifier;

const PASSPHRASE: &str = "e2e witnessed jobs: a long passphrase nobody guesses";
/// The policy's freshness window (the smallest allowed): the server re-asks
/// every third of it.
const FRESHNESS_SECS: u64 = 60;
/// A C2SP signature line's prefix.
const SIG_PREFIX: &str = "\u{2014} ";
/// How long the server's background round (every 5 s) may take to have the
/// latest head cosigned.
const TICK_WAIT: Duration = Duration::from_secs(20);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Signs the next policy version of `demo` needing `required` of
/// `witnesses` (`policy show --toml`, edit, `policy sign`), and checks the
/// server holds it.
async fn sign_witnesses(
    s: &OperatorSetup,
    required: u32,
    witnesses: &[&WitnessProcess],
    file: &str,
) -> Result<()> {
    let section = witnesses_section(required, FRESHNESS_SECS, witnesses);
    let shown = s
        .sign_policy_sections(&["witnesses"], &section, file)
        .await?;
    ensure!(
        shown.contains(&format!("required = {required}"))
            && witnesses.iter().all(|w| shown.contains(&w.vkey())),
        "the signed policy does not hold the witnesses:\n{shown}"
    );
    Ok(())
}

/// The tenant's latest head (`GET /api/v1/tenants/demo/log`), signed by the
/// log key, once it carries `witness`'s cosignature from `since` or later:
/// the checkpoint and the cosignature's time.
async fn latest_head_cosigned(
    s: &OperatorSetup,
    log_key: &NoteVerifier,
    witness: &CosignatureVerifier,
    since: u64,
) -> Result<(CheckpointView, u64)> {
    let limits = Limits::default();
    wait_for(
        TICK_WAIT,
        &format!(
            "the latest head of demo to carry a cosignature of {} from {since} on",
            witness.name()
        ),
        async || {
            let head: LogHeadView = s.api.get_as("/api/v1/tenants/demo/log").await?;
            let checkpoint = head.checkpoint.context("demo's log has no signed head")?;
            let opened = verify_log_note(&checkpoint.note, log_key, &limits)?;
            ensure!(
                opened.origin() == head.origin && opened.size() == checkpoint.size,
                "the head's note is of {} at {}",
                opened.origin(),
                opened.size()
            );
            let times =
                cosignature_times(&checkpoint.note, std::slice::from_ref(witness), &limits)?;
            Ok(times[0].filter(|&t| t >= since).map(|t| (checkpoint, t)))
        },
    )
    .await
}

/// `witness`'s signature line in `note`, with its newline.
fn cosignature_line(note: &str, witness: &CosignatureVerifier) -> Option<String> {
    let prefix = format!("{SIG_PREFIX}{} ", witness.name());
    note.lines()
        .find(|line| line.starts_with(&prefix))
        .map(|line| format!("{line}\n"))
}

/// Waits for the refusal of job `id` with `code`, its reason containing
/// `reason`, nothing run, and the `alert.log_refused` event of it in the
/// tenant's audit log.
async fn refused_with_alert(
    s: &OperatorSetup,
    id: &str,
    device: &str,
    marker: &std::path::Path,
    code: &str,
    reason: &[&str],
) -> Result<()> {
    s.expect_refused(id, device, code, marker).await?;
    let target = s.wait_final(id, device).await?;
    let why = target.refusal_reason.clone().unwrap_or_default();
    ensure!(
        reason.iter().all(|part| why.contains(part)),
        "job {id}'s refusal reason {why:?} does not say {reason:?}"
    );
    wait_for(
        Duration::from_secs(10),
        &format!("the alert of job {id}"),
        async || {
            let events = s.api.audit("demo").await?;
            let found = events
                .iter()
                .any(|e| e.action == "alert.log_refused" && e.target == id);
            Ok(found.then_some(()))
        },
    )
    .await?;
    ensure!(!marker.exists(), "the refused job {id} ran");
    Ok(())
}

#[tokio::test]
async fn jobs_run_only_under_fresh_cosignatures_of_the_policys_witnesses() -> Result<()> {
    let started = std::time::Instant::now();
    let limits = Limits::default();
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let victim = s.victim().await?;
    let device = victim.device_id.clone();

    // 1. A witness following demo's log (origin and log key as the API
    //    gives them), named by the next policy version.
    let log_key: LogKeyView = s.api.get_as("/api/v1/log/key").await?;
    let log_verifier = NoteVerifier::from_vkey(&log_key.vkey)?;
    let head: LogHeadView = s.api.get_as("/api/v1/tenants/demo/log").await?;
    let mut w1 = WitnessProcess::init("witness.test/w1")?.with_fixed_port()?;
    w1.add_log(&head.origin, &log_key.vkey, None)?;
    w1.start().await?;
    let before_policy = now();
    sign_witnesses(&s, 1, &[&w1], "policy-w1.toml").await?;

    // 2. A job runs, and the tenant's latest head carries the witness's
    //    cosignature, verified with its key (not a name on a line).
    s.good_job_runs(&device, "witnessed").await?;
    let (cosigned, at) =
        latest_head_cosigned(&s, &log_verifier, w1.verifier(), before_policy).await?;
    ensure!(at <= now() + 1, "cosigned in the future: {at}");
    eprintln!("[test] head {} cosigned at {at}", cosigned.size);
    // An idle log stays acceptable: the server's background round asks
    // again for the same head once its cosignature is a third of the
    // window old.
    let refreshed = wait_for(
        Duration::from_secs(FRESHNESS_SECS / 3) + TICK_WAIT,
        &format!("a newer cosignature of the head of size {}", cosigned.size),
        async || {
            let same: LogCheckpointsView = s
                .api
                .get_as(&format!(
                    "/api/v1/tenants/demo/log/checkpoints?from_size={}&limit=1",
                    cosigned.size
                ))
                .await?;
            let same = same.checkpoints.first().context("the head vanished")?;
            ensure!(
                same.size == cosigned.size,
                "no head of size {}",
                cosigned.size
            );
            let times =
                cosignature_times(&same.note, std::slice::from_ref(w1.verifier()), &limits)?;
            Ok(times[0].filter(|&t| t >= at + FRESHNESS_SECS / 3))
        },
    )
    .await?;
    ensure!(
        refreshed <= now() + 1,
        "cosigned in the future: {refreshed}"
    );

    // 3a. The witness is gone: the server cannot have new heads cosigned,
    //     and the agent refuses a job under an uncosigned head.
    w1.stop().await?;
    let (id, marker) = s.submit(&device, "witness-down", &[]).await?;
    refused_with_alert(
        &s,
        &id,
        &device,
        &marker,
        "witness_cosignatures_missing",
        &["0 of the policy's witnesses", "1 needed"],
    )
    .await?;

    // 3b. The attacker, with the database, copies the witness's newest
    //     cosignature (valid over its own head, and fresh) onto the newest
    //     head and onto every head signed from now on.
    let tenant = s.sql("SELECT id FROM tenants WHERE name = 'demo'")?;
    let tenant = sql_text(tenant.trim());
    let all: LogCheckpointsView = s
        .api
        .get_as("/api/v1/tenants/demo/log/checkpoints?from_size=0")
        .await?;
    let (stolen_from, stolen, stolen_at) = all
        .checkpoints
        .iter()
        .rev()
        .find_map(|c| {
            let times =
                cosignature_times(&c.note, std::slice::from_ref(w1.verifier()), &limits).ok()?;
            Some((c.size, cosignature_line(&c.note, w1.verifier())?, times[0]?))
        })
        .context("no stored head carries a valid cosignature of the witness")?;
    ensure!(
        stolen_at + FRESHNESS_SECS > now() + 15,
        "the copied cosignature ({stolen_at}) is not fresh enough to count were it valid"
    );
    s.sql(&format!(
        "CREATE TRIGGER stolen_cosignature AFTER INSERT ON log_checkpoints \
           WHEN NEW.log_id = {tenant} BEGIN \
             UPDATE log_checkpoints SET note = note || {line} \
               WHERE log_id = NEW.log_id AND size = NEW.size; \
           END; \
         UPDATE log_checkpoints SET note = note || {line} WHERE log_id = {tenant} \
           AND size = (SELECT MAX(size) FROM log_checkpoints WHERE log_id = {tenant});",
        line = sql_text(&stolen),
    ))?;
    let (id, marker) = s.submit(&device, "stolen-cosignature", &[]).await?;
    refused_with_alert(
        &s,
        &id,
        &device,
        &marker,
        "log_head_unsigned",
        &["witness cosignature does not verify"],
    )
    .await?;
    // The head it was delivered under carries the copied line, which
    // verifies only over the head it was made for.
    let release: u64 = s
        .sql(&format!(
            "SELECT release_log_idx FROM jobs WHERE id = {}",
            sql_text(&id)
        ))?
        .parse()
        .context("the refused job was released into the log")?;
    let tampered: LogCheckpointsView = s
        .api
        .get_as(&format!(
            "/api/v1/tenants/demo/log/checkpoints?from_size={}",
            release + 1
        ))
        .await?;
    let tampered = tampered
        .checkpoints
        .first()
        .context("no head covers the job")?;
    ensure!(
        tampered.size > stolen_from && tampered.note.ends_with(&stolen),
        "the head of size {} does not carry the copied line:\n{}",
        tampered.size,
        tampered.note
    );
    ensure!(
        cosignature_times(&tampered.note, std::slice::from_ref(w1.verifier()), &limits).is_err(),
        "the copied cosignature verifies over another head"
    );
    s.sql("DROP TRIGGER stolen_cosignature;")?;

    // 4. The witness is back at the address the policy names: the server's
    //    background round has the latest head cosigned again, and a job runs.
    let back = now();
    w1.start().await?;
    latest_head_cosigned(&s, &log_verifier, w1.verifier(), back).await?;
    s.good_job_runs(&device, "witness-back").await?;

    // 5. Two witnesses required, one of them never running: refused.
    let w2 = WitnessProcess::init("witness.test/w2")?.with_fixed_port()?;
    sign_witnesses(&s, 2, &[&w1, &w2], "policy-w2.toml").await?;
    let (id, marker) = s.submit(&device, "one-of-two", &[]).await?;
    refused_with_alert(
        &s,
        &id,
        &device,
        &marker,
        "witness_cosignatures_missing",
        &["1 of the policy's witnesses", "2 needed"],
    )
    .await?;

    w1.stop().await?;
    eprintln!("[test] took {:?}", started.elapsed());
    Ok(())
}
