//! Step 13 on the agent, played as the attacker who owns the server and its
//! log key: a job must be in the tenant's log, under a head signed by the
//! pinned key, extending the head the agent holds. Each attack leaves no
//! marker file and is reported with a `log_*` code (a security alert).

use std::path::Path;
use std::sync::{Arc, Mutex};

mod common;

use bulwark_agent::jobs::JobRunner;
use bulwark_agent::trust::TrustState;
use bulwark_policy::Limits;
use bulwark_protocol::message::{AgentRefusalCode, Job, JobOutcome, JobResult};
use bulwark_translog::NoteSigner;
use common::*;

const SCRIPT: &[u8] = b"touch ../../ran\n";

/// An agent whose pins are on disk too (so that it can be loaded again).
fn runner(state_dir: &Path, state: TrustState) -> JobRunner {
    if let Some(key) = &state.log_key {
        TrustState::pin(state_dir, state.history.pinned()).expect("pin");
        TrustState::pin_log_key(state_dir, &key.to_vkey()).expect("pin log key");
    }
    JobRunner::open(
        state_dir,
        DEVICE,
        &DEVICE_PUBLIC_KEY,
        Arc::new(Mutex::new(state)),
    )
    .expect("job runner")
    .with_supervisor(env!("CARGO_BIN_EXE_bulwark-agent").into())
}

async fn refusal(runner: &mut JobRunner, job: &Job) -> String {
    let result: JobResult = runner.process(job).await.expect("a result");
    match result.outcome {
        JobOutcome::Refused(r) => r.code.to_string(),
        JobOutcome::Ran(run) => panic!("the job ran: {run:?}"),
    }
}

async fn runs(runner: &mut JobRunner, job: &Job) {
    let result = runner.process(job).await.expect("a result");
    match result.outcome {
        JobOutcome::Ran(run) => assert_eq!(run.exit_code, Some(0)),
        JobOutcome::Refused(r) => panic!("refused: {} ({})", r.reason, r.code),
    }
}

fn marker(dir: &Path) -> bool {
    dir.join("ran").exists()
}

#[tokio::test]
async fn a_job_without_a_proof_is_refused() {
    let k = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut runner = runner(dir.path(), ready(&k));
    let mut job = job(&k, 1, SCRIPT, 30);
    job.log = None;
    assert_eq!(refusal(&mut runner, &job).await, "log_proof_missing");
    assert!(!marker(dir.path()));

    // An agent enrolled before the log (no pinned key) refuses every job.
    let mut state = ready(&k);
    state.log_key = None;
    let other = tempfile::tempdir().expect("tempdir");
    let mut old = self::runner(other.path(), state);
    assert_eq!(
        refusal(&mut old, &common::job(&k, 2, SCRIPT, 30)).await,
        "log_proof_missing"
    );
}

#[tokio::test]
async fn a_proof_for_another_entry_is_refused() {
    let k = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut runner = runner(dir.path(), ready(&k));
    // Job 2 is released; job 3 is not, and comes with job 2's proof.
    let released = job(&k, 2, SCRIPT, 30);
    let mut unreleased = logged(&job_statement(&k, 3, SCRIPT, 30), SCRIPT);
    unreleased.log = redeliver(&released).log;
    assert_eq!(
        refusal(&mut runner, &unreleased).await,
        "log_entry_mismatch"
    );

    // An entry that names the job but another payload (swapped body).
    let other = job_statement(&k, 4, b"echo other\n", 30);
    let proof = LOG.with(|log| log.borrow_mut().append_and_prove(release_leaf(&other)));
    let leaf_for_other_bytes = Job {
        envelope: job_statement(&k, 4, SCRIPT, 30).to_bytes(),
        script: SCRIPT.to_vec(),
        log: Some(proof),
    };
    assert_eq!(
        refusal(&mut runner, &leaf_for_other_bytes).await,
        "log_entry_mismatch"
    );

    // The right leaf, with an inclusion proof that does not lead to the root.
    let mut broken = job(&k, 5, SCRIPT, 30);
    let log = broken.log.as_mut().expect("proof");
    if log.inclusion.is_empty() {
        log.inclusion = vec![0; 32];
    } else {
        log.inclusion[0] ^= 1;
    }
    assert_eq!(refusal(&mut runner, &broken).await, "log_not_included");
    assert!(!marker(dir.path()));
    // The honest path still works.
    runs(&mut runner, &job(&k, 6, SCRIPT, 30)).await;
}

#[tokio::test]
async fn a_head_not_signed_by_the_pinned_key_is_refused() {
    let k = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut runner = runner(dir.path(), ready(&k));
    let mut job = job(&k, 1, SCRIPT, 30);
    let size = LOG.with(|log| log.borrow().leaves.len());
    let stranger = NoteSigner::new("log.test/bulwark-log", key(51)).expect("key");
    job.log.as_mut().expect("proof").checkpoint =
        LOG.with(|log| log.borrow().head(size, &stranger, TENANT));
    assert_eq!(refusal(&mut runner, &job).await, "log_head_unsigned");

    // Signed by the right key, but the head of another tenant's log.
    let mut job = redeliver(&job);
    job.log.as_mut().expect("proof").checkpoint =
        LOG.with(|log| log.borrow().head(size, &log_signer(), "tenant-globex"));
    assert_eq!(refusal(&mut runner, &job).await, "log_head_unsigned");
    assert!(!marker(dir.path()));
}

#[tokio::test]
async fn a_forked_or_truncated_log_is_refused_even_after_a_restart() {
    let k = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path();
    let mut runner = self::runner(state_dir, ready(&k));
    // The agent sees the log grow to 4 entries (two audit events, two jobs).
    LOG.with(|log| {
        let mut log = log.borrow_mut();
        log.leaves.push(b"login alice".to_vec());
        log.leaves.push(b"policy v1".to_vec());
    });
    runs(&mut runner, &job(&k, 1, SCRIPT, 30)).await;
    std::fs::remove_file(state_dir.join("ran")).expect("reset marker");
    runs(&mut runner, &job(&k, 2, b"true\n", 30)).await;
    let held = LOG.with(|log| log.borrow().leaves.len());
    assert_eq!(held, 4);

    // Restart: the head is on disk.
    drop(runner);
    let mut trust = ready(&k);
    let on_disk = TrustState::load(state_dir, &Limits::default()).expect("load");
    assert_eq!(on_disk.log_size(), Some(4));
    trust.log_head = on_disk.log_head;
    let mut runner = self::runner(state_dir, trust);

    // Rewritten: the attacker erases "login alice", re-signs a history with
    // the same key and size + 1, and proves consistency from that history.
    let forked = LOG.with(|log| {
        let mut log = log.borrow_mut();
        log.leaves[0] = b"nothing to see".to_vec();
        log.agent_size = Some(4);
        log.leaves.truncate(4);
        log.prove(3)
    });
    let rewritten_job = Job {
        log: Some(forked),
        ..job(&k, 3, SCRIPT, 30)
    };
    assert_eq!(
        refusal(&mut runner, &rewritten_job).await,
        "log_inconsistent"
    );

    // Truncated: a head of 2 entries while the agent holds 4.
    let truncated = LOG.with(|log| {
        let mut log = log.borrow_mut();
        log.leaves.truncate(2);
        log.agent_size = Some(4);
        log.append_and_prove(release_leaf(&job_statement(&k, 7, SCRIPT, 30)))
    });
    let truncated_job = Job {
        log: Some(truncated),
        ..logged(&job_statement(&k, 7, SCRIPT, 30), SCRIPT)
    };
    assert_eq!(
        refusal(&mut runner, &truncated_job).await,
        "log_inconsistent"
    );

    // Split view: same size as held, another root.
    let split = LOG.with(|log| {
        let mut log = log.borrow_mut();
        log.leaves.truncate(3);
        log.agent_size = Some(4);
        log.append_and_prove(release_leaf(&job_statement(&k, 8, SCRIPT, 30)))
    });
    assert_eq!(split.index, 3);
    let split_job = Job {
        log: Some(split),
        ..logged(&job_statement(&k, 8, SCRIPT, 30), SCRIPT)
    };
    assert_eq!(refusal(&mut runner, &split_job).await, "log_inconsistent");
    assert!(!marker(state_dir), "no attack ran its script");
    assert_eq!(
        TrustState::load(state_dir, &Limits::default())
            .expect("load")
            .log_size(),
        Some(4),
        "the held head never moved to a forged one"
    );
}

#[tokio::test]
async fn a_valid_head_is_kept_even_when_its_job_is_refused() {
    let k = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut runner = runner(dir.path(), ready(&k));
    let mut one = job_statement(&k, 1, SCRIPT, 30);
    one.signatures.pop();
    assert_eq!(
        refusal(&mut runner, &logged(&one, SCRIPT)).await,
        "too_few_signers"
    );
    assert_eq!(
        TrustState::load(dir.path(), &Limits::default())
            .expect("load")
            .log_size(),
        LOG.with(|log| Some(log.borrow().leaves.len() as u64))
    );
}

/// A job refused unread (the queue is full) still moves the agent to its
/// tree head, as the server assumes it does: else the next job's
/// consistency proof would start from a size the agent does not hold and be
/// a false alarm.
#[tokio::test]
async fn a_job_refused_as_busy_still_moves_the_head() {
    let k = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let runner = runner(dir.path(), ready(&k));
    // The worker never runs: the queue fills up. A second delivery of a
    // queued job takes no slot and gets no answer (issue 19: duplicates
    // once filled the queue and a valid job was refused for good).
    let (handle, _worker) = bulwark_agent::jobs::start(runner);
    for id in 1..=bulwark_agent::jobs::MAX_QUEUED_JOBS as u8 {
        assert_eq!(handle.submit(job(&k, id, SCRIPT, 30)), None);
        assert_eq!(handle.submit(job(&k, id, SCRIPT, 30)), None, "a duplicate");
    }
    let busy = job(&k, 100, SCRIPT, 30);
    let size = busy
        .log
        .as_ref()
        .map(|_| LOG.with(|l| l.borrow().leaves.len() as u64));
    // Busy is an answer to send now, not a result: nothing is spooled.
    let answer = handle.submit(busy).expect("a busy answer");
    assert_eq!(answer.job_id, [100; 16]);
    assert!(matches!(&answer.outcome,
        bulwark_protocol::message::JobOutcome::Refused(r) if r.code == AgentRefusalCode::AgentBusy));
    assert_eq!(handle.pending_results(), vec![]);
    assert_eq!(handle.log_size(), size);
    assert_eq!(
        TrustState::load(dir.path(), &Limits::default())
            .expect("load")
            .log_size(),
        size
    );
    assert!(!marker(dir.path()));
}

/// A job queued by a connection that has since ended is dropped unread:
/// the new connection announced the head held then, and the server sends
/// the job again with a proof from it (issue 19: a stale job moved the head
/// after the announcement, and the next job raised a false log alarm).
#[tokio::test]
async fn a_job_from_an_ended_connection_is_dropped_unread() {
    let k = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let runner = runner(dir.path(), ready(&k));
    let (handle, worker) = bulwark_agent::jobs::start(runner);
    let stale = job(&k, 7, SCRIPT, 30);
    assert_eq!(handle.submit(stale.clone()), None);
    let announced = handle.begin_session();
    let mut done = handle.subscribe();
    tokio::spawn(worker);
    // Delivered again in the new session: it runs, once.
    assert_eq!(handle.submit(stale), None);
    tokio::time::timeout(std::time::Duration::from_secs(10), done.changed())
        .await
        .expect("a result in time")
        .expect("runner alive");
    let results = handle.pending_results();
    assert_eq!(results.len(), 1, "{results:?}");
    assert!(matches!(
        &results[0].outcome,
        bulwark_protocol::message::JobOutcome::Ran(run) if run.exit_code == Some(0)
    ));
    assert!(marker(dir.path()));
    assert!(handle.log_size() >= announced);
}

/// The server's idea of the agent's head drifted (it assumed the agent took
/// a head it never saw): the proof starts from a size the agent does not
/// hold. That shows nothing inconsistent, so it is no alarm and no result:
/// the agent answers `log_head_stale` with the size it holds, once, to this
/// connection only, and runs the job when it comes again proven from there
/// (issue 19: one such drift refused every later job as a security alert).
#[tokio::test]
async fn a_proof_from_a_size_the_agent_does_not_hold_is_answered_not_alarmed() {
    let k = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let runner = runner(dir.path(), ready(&k));
    let (handle, worker) = bulwark_agent::jobs::start(runner);
    let mut done = handle.subscribe();
    tokio::spawn(worker);
    let first = job(&k, 1, b"true\n", 30);
    assert_eq!(handle.submit(first), None);
    tokio::time::timeout(std::time::Duration::from_secs(10), done.changed())
        .await
        .expect("a result in time")
        .expect("runner alive");
    let held = handle.log_size();
    assert_eq!(held, Some(1));

    // A head handed out that never reached the agent: the log believes the
    // agent holds size 2.
    LOG.with(|log| {
        let mut log = log.borrow_mut();
        log.leaves.push(b"lost in transit".to_vec());
        log.agent_size = Some(2);
    });
    let drifted = job(&k, 2, SCRIPT, 30);
    assert_eq!(drifted.log.as_ref().map(|l| l.consistency_from), Some(2));
    assert_eq!(handle.submit(drifted.clone()), None);
    tokio::time::timeout(std::time::Duration::from_secs(10), done.changed())
        .await
        .expect("an answer in time")
        .expect("runner alive");
    let answers = handle.take_answers();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0].job_id, [2; 16]);
    assert!(matches!(&answers[0].outcome,
        JobOutcome::Refused(r) if r.code == AgentRefusalCode::LogHeadStale && r.log_size == held));
    assert!(!AgentRefusalCode::LogHeadStale.is_log_alarm());
    assert_eq!(handle.take_answers(), vec![], "an answer goes once");
    assert_eq!(
        handle.pending_results().len(),
        1,
        "the answer is not spooled"
    );
    assert_eq!(handle.log_size(), held, "the head did not move");
    assert!(!marker(dir.path()));

    // Proven again from the size the agent named: it runs, and the head moves.
    LOG.with(|log| log.borrow_mut().agent_size = held);
    assert_eq!(handle.submit(redeliver(&drifted)), None);
    tokio::time::timeout(std::time::Duration::from_secs(10), done.changed())
        .await
        .expect("a result in time")
        .expect("runner alive");
    let results = handle.pending_results();
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(results.iter().any(|r| r.job_id == [2; 16]
        && matches!(&r.outcome, JobOutcome::Ran(run) if run.exit_code == Some(0))));
    assert!(marker(dir.path()));
    assert_eq!(handle.log_size(), Some(3));
}

/// A stale answer is for the connection that delivered the job: a newer
/// connection announced its head in its `Hello` and never sees it.
#[tokio::test]
async fn a_stale_answer_is_not_sent_to_a_later_connection() {
    let k = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut runner = runner(dir.path(), ready(&k));
    runs(&mut runner, &job(&k, 1, b"true\n", 30)).await;
    LOG.with(|log| log.borrow_mut().agent_size = Some(7));
    let answer = runner
        .process(&job(&k, 2, SCRIPT, 30))
        .await
        .expect("an answer");
    assert!(matches!(&answer.outcome,
        JobOutcome::Refused(r) if r.code == AgentRefusalCode::LogHeadStale && r.log_size == Some(1)));
    let (handle, _worker) = bulwark_agent::jobs::start(runner);
    handle.begin_session();
    assert_eq!(handle.take_answers(), vec![]);
    assert!(!marker(dir.path()));
}
