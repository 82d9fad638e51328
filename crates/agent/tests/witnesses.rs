//! Step 13g on the agent (RFD 0006), played as the attacker who owns the
//! server and its log key: once the policy names witnesses, a job runs only
//! under a tree head that `k` of them cosigned recently by the agent's own
//! clock. Stripped, stale, foreign, forged or moved cosignatures leave no
//! marker file and are refused with `witness_cosignatures_missing` or
//! `log_head_unsigned`, both security alerts.

use std::path::Path;
use std::sync::{Arc, Mutex};

mod common;

use bulwark_agent::jobs::JobRunner;
use bulwark_agent::trust::TrustState;
use bulwark_policy::{ActionClass, Limits, MassActionDelay, WitnessKey, Witnessing};
use bulwark_protocol::message::ByteBuf;
use bulwark_protocol::message::{AgentRefusalCode, Job, JobOutcome};
use bulwark_translog::Cosigner;
use common::*;

const SCRIPT: &[u8] = b"touch ../../ran\n";
const WINDOW: u64 = 600;

fn cosigner(name: &str, seed: u8) -> Cosigner {
    Cosigner::new(name, key(seed)).expect("cosigner")
}

/// An agent holding a v2 policy that wants 2 of `witnesses` within WINDOW.
fn witnessed_runner(dir: &Path, k: &Keys, witnesses: &[&Cosigner]) -> JobRunner {
    runner_with(dir, k, witnesses, None)
}

fn runner_with(
    dir: &Path,
    k: &Keys,
    witnesses: &[&Cosigner],
    delay: Option<MassActionDelay>,
) -> JobRunner {
    let mut state = ready(k);
    let mut policy = policy(k, 2);
    policy.mass_action_delay = delay;
    policy.witnessing = Some(Witnessing {
        witnesses: witnesses
            .iter()
            .map(|c| WitnessKey {
                vkey: c.verifier().to_vkey(),
                url: None,
            })
            .collect(),
        threshold: 2,
        freshness_secs: WINDOW,
    });
    let outcomes = state.apply(
        &trust(&[], Some(&signed(&policy, &[&k.root_a, &k.customer])), None),
        now(),
        &Limits::default(),
    );
    assert_eq!(
        outcomes,
        vec![accepted(bulwark_policy::TrustKind::Policy, 2)]
    );
    TrustState::pin(dir, state.history.pinned()).expect("pin");
    TrustState::pin_log_key(dir, &log_signer().verifier().to_vkey()).expect("pin log key");
    JobRunner::open(dir, DEVICE, &DEVICE_PUBLIC_KEY, Arc::new(Mutex::new(state)))
        .expect("job runner")
        .with_supervisor(env!("CARGO_BIN_EXE_bulwark-agent").into())
}

/// `job` with cosignature lines of `by` (at the given times) appended to its
/// checkpoint, as the server would hand them on.
fn cosigned(job: &Job, by: &[(&Cosigner, u64)]) -> Job {
    let mut job = job.clone();
    let proof = job.log.as_mut().expect("a logged job");
    let body = proof.checkpoint[..proof.checkpoint.find("\n\n").expect("body") + 1].to_owned();
    for (c, at) in by {
        proof
            .checkpoint
            .push_str(&c.cosign(&body, *at).expect("cosign"));
    }
    job
}

async fn refusal(runner: &mut JobRunner, job: &Job) -> AgentRefusalCode {
    match runner.process(job).await.expect("a result").outcome {
        JobOutcome::Refused(r) => r.code,
        JobOutcome::Ran(run) => panic!("the job ran: {run:?}"),
    }
}

#[tokio::test]
async fn a_head_without_k_fresh_cosignatures_is_refused_as_an_alarm() {
    let k = keys();
    let (a, b, c, stranger) = (
        cosigner("witness-a.test", 61),
        cosigner("witness-b.test", 62),
        cosigner("witness-c.test", 63),
        cosigner("witness-a.test", 64),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut runner = witnessed_runner(dir.path(), &k, &[&a, &b, &c]);
    let t = now();
    let missing = AgentRefusalCode::WitnessCosignaturesMissing;
    assert!(missing.is_log_alarm());

    // The log key alone (a rewritten history re-signed by the server).
    let bare = job(&k, 1, SCRIPT, 30);
    assert_eq!(refusal(&mut runner, &bare).await, missing);
    // One witness, or one witness twice.
    assert_eq!(
        refusal(&mut runner, &cosigned(&redeliver(&bare), &[(&a, t)])).await,
        missing
    );
    assert_eq!(
        refusal(
            &mut runner,
            &cosigned(&redeliver(&bare), &[(&a, t), (&a, t - 5)])
        )
        .await,
        missing
    );
    // A key the policy does not list, under a listed witness's name.
    assert_eq!(
        refusal(
            &mut runner,
            &cosigned(&redeliver(&bare), &[(&a, t), (&stranger, t)])
        )
        .await,
        missing
    );
    // Cosignatures older than the window (a witness that stopped
    // cosigning, as after a freeze), or from the future.
    assert_eq!(
        refusal(
            &mut runner,
            &cosigned(&redeliver(&bare), &[(&a, t), (&b, t - WINDOW - 30)])
        )
        .await,
        missing
    );
    assert_eq!(
        refusal(
            &mut runner,
            &cosigned(&redeliver(&bare), &[(&a, t), (&b, t + 3600)])
        )
        .await,
        missing
    );
    // A listed witness's cosignature of another head (same log, another
    // size), moved over.
    let mut moved = cosigned(&redeliver(&bare), &[(&a, t)]);
    let note = &mut moved.log.as_mut().expect("proof").checkpoint;
    let mut lines = note.lines();
    let (origin, _size, root) = (lines.next(), lines.next(), lines.next());
    let other_body = format!("{}\n99\n{}\n", origin.expect("origin"), root.expect("root"));
    note.push_str(&b.cosign(&other_body, t).expect("cosign"));
    assert_eq!(
        refusal(&mut runner, &moved).await,
        AgentRefusalCode::LogHeadUnsigned
    );
    assert!(!dir.path().join("ran").exists());

    // Two listed witnesses, fresh: it runs.
    let honest = cosigned(&redeliver(&bare), &[(&a, t - WINDOW + 30), (&c, t)]);
    match runner.process(&honest).await.expect("a result").outcome {
        JobOutcome::Ran(run) => assert_eq!(run.exit_code, Some(0)),
        JobOutcome::Refused(r) => panic!("refused: {} ({})", r.reason, r.code),
    }
    assert!(dir.path().join("ran").exists());
}

/// Step 13h: a script job is a mass action under this policy and waits
/// DELAY after two witnesses first saw it in the log.
#[tokio::test]
async fn a_mass_action_runs_only_after_the_witnesses_saw_it_for_the_delay() {
    const DELAY: u64 = 1800;
    let k = keys();
    let (a, b) = (
        cosigner("witness-a.test", 61),
        cosigner("witness-b.test", 62),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let rule = MassActionDelay {
        more_than_targets: None,
        classes: vec![ActionClass::RunScript],
        delay_secs: DELAY,
    };
    let mut runner = runner_with(dir.path(), &k, &[&a, &b], Some(rule));
    let t = now();
    let late = AgentRefusalCode::MassActionDelayNotElapsed;
    assert!(late.is_log_alarm());

    // Fresh cosignatures only: the server rushed it.
    let job = job(&k, 1, SCRIPT, 30);
    assert_eq!(
        refusal(&mut runner, &cosigned(&job, &[(&a, t), (&b, t)])).await,
        late
    );
    // One witness saw it long ago, the other only now.
    assert_eq!(
        refusal(
            &mut runner,
            &cosigned(&redeliver(&job), &[(&a, t - DELAY), (&a, t), (&b, t)])
        )
        .await,
        late
    );

    // An earlier head claimed to be witnessed long ago, but of another
    // history: the consistency proof to the job's head fails.
    let index = job.log.as_ref().expect("proof").index as usize;
    let mut forked = cosigned(&redeliver(&job), &[(&a, t), (&b, t)]);
    let fork_note = {
        let mut other = common::TestLog {
            leaves: LOG.with(|log| log.borrow().leaves.clone()),
            ..Default::default()
        };
        other.leaves[0] = b"rewritten".to_vec();
        other.head(index + 1, &log_signer(), TENANT)
    };
    let body = fork_note[..fork_note.find("\n\n").expect("body") + 1].to_owned();
    let old_fork = format!(
        "{fork_note}{}{}",
        a.cosign(&body, t - DELAY).expect("cosign"),
        b.cosign(&body, t - DELAY).expect("cosign")
    );
    let size = LOG.with(|log| log.borrow().leaves.len());
    let proof = forked.log.as_mut().expect("proof");
    proof.witnessed_since = Some(old_fork);
    proof.witnessed_since_consistency = Some(ByteBuf(
        LOG.with(|log| log.borrow().consistency(index + 1, size)),
    ));
    assert_eq!(
        refusal(&mut runner, &forked).await,
        AgentRefusalCode::LogInconsistent
    );
    assert!(!dir.path().join("ran").exists());

    // The real earlier head, first cosigned DELAY ago by both: it runs.
    let since_note = LOG.with(|log| log.borrow().head(index + 1, &log_signer(), TENANT));
    let body = since_note[..since_note.find("\n\n").expect("body") + 1].to_owned();
    let since = format!(
        "{since_note}{}{}",
        a.cosign(&body, t - DELAY - 5).expect("cosign"),
        b.cosign(&body, t - DELAY).expect("cosign")
    );
    let mut honest = cosigned(&redeliver(&job), &[(&a, t), (&b, t)]);
    let proof = honest.log.as_mut().expect("proof");
    proof.witnessed_since = Some(since);
    proof.witnessed_since_consistency = Some(ByteBuf(
        LOG.with(|log| log.borrow().consistency(index + 1, size)),
    ));
    match runner.process(&honest).await.expect("a result").outcome {
        JobOutcome::Ran(run) => assert_eq!(run.exit_code, Some(0)),
        JobOutcome::Refused(r) => panic!("refused: {} ({})", r.reason, r.code),
    }
    assert!(dir.path().join("ran").exists());
}
