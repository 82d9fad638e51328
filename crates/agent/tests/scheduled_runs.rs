//! The agent's side of scheduled jobs (RFD 0019) with real keys, real
//! files and real processes: an occurrence of a signed schedule runs once,
//! as the job `run_job_id(schedule, occurrence)`, also across a restart;
//! what a server makes up is refused with its code and never runs.
//!
//! The fixture is in `common`.

use std::path::Path;
use std::sync::{Arc, Mutex};

mod common;

use bulwark_agent::jobs::JobRunner;
use bulwark_agent::trust::TrustState;
use bulwark_policy::policy::{ActionClass, ScriptHash};
use bulwark_policy::schedule::{ScheduleStatement, run_job_id};
use bulwark_policy::{Interpreter, JobAction, JobTarget, Signed, device_key_fingerprint};
use bulwark_protocol::audit_leaf::{AuditLeaf, SCHEDULE_CREATED, job_released_detail};
use bulwark_protocol::message::{JobOutcome, JobResult, ScheduledRun};
use common::*;
use sha2::{Digest, Sha256};

fn runner(state_dir: &Path, state: TrustState) -> JobRunner {
    JobRunner::open(
        state_dir,
        DEVICE,
        &DEVICE_PUBLIC_KEY,
        Arc::new(Mutex::new(state)),
    )
    .expect("job runner")
    .with_supervisor(env!("CARGO_BIN_EXE_bulwark-agent").into())
}

/// Every minute in UTC, for this device, signed by alice and bob, living
/// from an hour ago.
fn schedule(id: u8, script: &[u8]) -> ScheduleStatement {
    let start = now() - now() % 60 - 3600;
    ScheduleStatement {
        tenant: TENANT.into(),
        tenant_name: TENANT_NAME.into(),
        schedule_id: [id; 16],
        targets: vec![JobTarget {
            device_id: DEVICE.into(),
            hostname: bulwark_agent::jobs::current_hostname(),
            device_key: Some(device_key_fingerprint(&DEVICE_PUBLIC_KEY)),
        }],
        class: ActionClass::RunScript,
        action: JobAction::RunScript {
            interpreter: Interpreter::Sh,
            script_sha256: ScriptHash(Sha256::digest(script).into()),
        },
        cron: "* * * * *".into(),
        zone: "UTC".into(),
        window: None,
        not_before: start,
        not_after: start + 86_400,
        nonce: [id ^ 0x80; 16],
        reason: "nightly".into(),
        timeout_secs: 30,
    }
}

/// The `schedule.created` leaf the server appends for `signed`.
fn created_leaf(signed: &Signed, schedule_id: [u8; 16]) -> Vec<u8> {
    AuditLeaf::new(
        1_700_000_000_000,
        Some(TENANT.into()),
        "alice",
        SCHEDULE_CREATED,
        hex::encode(schedule_id),
        job_released_detail(&signed.digest()),
    )
    .encode()
}

/// Occurrence `at` of `signed` as the server delivers it, with the
/// schedule's entry appended to this thread's log.
fn delivered(signed: &Signed, script: &[u8], at: u64, schedule_id: [u8; 16]) -> ScheduledRun {
    let proof = LOG.with(|log| {
        log.borrow_mut()
            .append_and_prove(created_leaf(signed, schedule_id))
    });
    ScheduledRun {
        envelope: signed.to_bytes(),
        script: script.to_vec(),
        occurrence: at,
        job_id: run_job_id(&schedule_id, at),
        log: Some(proof),
    }
}

/// `run` delivered again: the same entry, proven from the head the agent holds now.
fn again(run: &ScheduledRun) -> ScheduledRun {
    let leaf = &run.log.as_ref().expect("logged").leaf;
    let proof = LOG.with(|log| {
        let mut log = log.borrow_mut();
        let index = log
            .leaves
            .iter()
            .position(|l| l == leaf)
            .expect("in the log");
        log.prove(index)
    });
    ScheduledRun {
        log: Some(proof),
        ..run.clone()
    }
}

fn code(result: &JobResult) -> &str {
    match &result.outcome {
        JobOutcome::Refused(r) => r.code.as_str(),
        JobOutcome::Ran(run) => panic!("ran: {run:?}"),
    }
}

#[tokio::test]
async fn an_occurrence_runs_once_as_its_job_also_across_a_restart() {
    let k = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path();
    let script = b"echo ran >> ../../ran.log; echo tick\n";
    let signed = signed(&schedule(1, script), &[&k.alice, &k.bob]);
    let at = now() - now() % 60;
    let run = delivered(&signed, script, at, [1; 16]);

    let mut runner = runner(state_dir, ready(&k));
    let result = runner.process_run(&run).await.expect("a result");
    assert_eq!(result.job_id, run_job_id(&[1; 16], at));
    match &result.outcome {
        JobOutcome::Ran(ran) => {
            assert_eq!(ran.exit_code, Some(0));
            assert_eq!(ran.stdout, b"tick\n");
        }
        JobOutcome::Refused(r) => panic!("refused: {} ({})", r.reason, r.code),
    }
    // Again before the acknowledgement: the spooled result stands.
    assert_eq!(runner.process_run(&again(&run)).await, None);
    assert!(runner.spool().acknowledge(&run.job_id).expect("ack"));
    // After a restart: answered with what it did, not run.
    drop(runner);
    let mut runner = self::runner(state_dir, ready(&k));
    let answer = runner.process_run(&again(&run)).await.expect("a result");
    assert_eq!(answer, result);
    // An earlier occurrence after a later one: a replay.
    let earlier = delivered(&signed, script, at - 60, [1; 16]);
    assert_eq!(
        code(&runner.process_run(&earlier).await.expect("a result")),
        "replayed"
    );
    assert_eq!(
        std::fs::read_to_string(state_dir.join("ran.log")).expect("log"),
        "ran\n",
        "the occurrence ran exactly once"
    );
}

async fn check(runner: &mut JobRunner, run: ScheduledRun, want: &str) {
    let result = runner.process_run(&run).await.expect("a result");
    assert_eq!(result.job_id, run.job_id, "reported under the server's id");
    assert_eq!(code(&result), want);
}

#[tokio::test]
async fn what_the_server_makes_up_is_refused_and_never_runs() {
    let k = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path();
    let marker = state_dir.join("ran");
    let script = format!("touch '{}'\n", marker.display());
    let script = script.as_bytes();
    let at = now() - now() % 60;
    let mut runner = runner(state_dir, ready(&k));
    let signed_one = |id: u8| signed(&schedule(id, script), &[&k.alice, &k.bob]);

    // The script rewritten after signing.
    let s = signed_one(2);
    check(
        &mut runner,
        delivered(&s, b"touch /tmp/owned\n", at, [2; 16]),
        "script_mismatch",
    )
    .await;
    // Signed by one operator where the policy wants two.
    let s = signed(&schedule(3, script), &[&k.alice]);
    check(
        &mut runner,
        delivered(&s, script, at, [3; 16]),
        "too_few_signers",
    )
    .await;
    // A time that is not an occurrence (not a whole minute), a time an
    // hour ahead, and one long past.
    let s = signed_one(4);
    check(
        &mut runner,
        delivered(&s, script, at + 30, [4; 16]),
        "schedule_not_an_occurrence",
    )
    .await;
    check(
        &mut runner,
        delivered(&s, script, at + 3600, [4; 16]),
        "schedule_not_due",
    )
    .await;
    check(
        &mut runner,
        delivered(&s, script, at - 1800, [4; 16]),
        "schedule_run_missed",
    )
    .await;
    // Not in the tenant's log.
    let unlogged = ScheduledRun {
        envelope: s.to_bytes(),
        script: script.to_vec(),
        occurrence: at,
        job_id: run_job_id(&[4; 16], at),
        log: None,
    };
    check(&mut runner, unlogged, "log_proof_missing").await;
    // Under another job id than the occurrence's.
    let s = signed_one(5);
    let mut relabelled = delivered(&s, script, at, [5; 16]);
    relabelled.job_id = [0xee; 16];
    check(&mut runner, relabelled, "malformed").await;
    // A job envelope delivered as a schedule.
    let job = job(&k, 6, script, 30);
    let as_schedule = ScheduledRun {
        envelope: job.envelope.clone(),
        script: script.to_vec(),
        occurrence: at,
        job_id: [6; 16],
        log: job.log.clone(),
    };
    check(&mut runner, as_schedule, "malformed").await;
    assert!(!marker.exists(), "a refused run ran");
}
