//! How long an agent takes to decide on one job, steps 1 to 13
//! (`log::decide_job`: the statement, the quorum, and the job's inclusion
//! under a signed tree head consistent with the one held, in a log of
//! 65,536 entries), with Ed25519 signers and with a passkey (WebAuthn
//! ES256) approval.
//!
//! `cargo bench -p bulwark-policy --bench verify_job`. A plain harness
//! (median of many timed batches) keeps criterion out of the build.

// A benchmark reads the clock; the crate it measures must not (clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bulwark_policy::job::{AgentContext, JobHistory, JobStatement};
use bulwark_policy::log::{JobLogProof, LogContext, decide_job, log_origin};
use bulwark_policy::policy::ScriptHash;
use bulwark_policy::webauthn::{CoseKey, WebAuthnCredential, WebAuthnSignature};
use bulwark_policy::{
    ActionClass, FreezeState, Holder, Limits, OperatorKey, Policy, PublicKey, Quorum, Signed,
};
use bulwark_protocol::audit_leaf::{AuditLeaf, JOB_RELEASED, job_released_detail};
use bulwark_translog::tree::NodeId;
use bulwark_translog::{
    Checkpoint, Hash, NoteSigner, NoteVerifier, ProofError, leaf_hash, root_of_leaf_hashes,
};
use ed25519_dalek::SigningKey;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use sha2::{Digest, Sha256};

const NOW: u64 = 1_800_000_000;
const DEVICE: &str = "6f1c2b2e-8a49-4d4b-9f0e-0c2b8b5a1d3e";
const SCRIPT: &[u8] = b"#!/bin/sh\napt-get -y upgrade\n";
const RP_ID: &str = bulwark_policy::APPROVAL_RP_ID;

struct NoHistory;

impl JobHistory for NoHistory {
    fn seen(&self, _: &[u8; 16], _: &[u8; 16]) -> bool {
        false
    }
}

fn operator(key: PublicKey, name: &str) -> OperatorKey {
    OperatorKey {
        key,
        name: name.into(),
        holder: Holder::Msp,
        classes: vec![ActionClass::RunScript],
    }
}

fn policy(operators: Vec<OperatorKey>, signers: u32) -> Policy {
    Policy {
        tenant: "acme".into(),
        version: 1,
        expires_at: NOW + 86_400,
        operators,
        quorums: vec![Quorum {
            class: ActionClass::RunScript,
            signers,
            customer_required: false,
            in_window_only: false,
        }],
        fan_out_limit: 25,
        allowed_scripts: Vec::new(),
        maintenance_windows: Vec::new(),
        tenant_name: Some("Acme".into()),
        witnessing: None,
        mass_action_delay: None,
        checks: None,
        revoked_schedules: None,
        device_groups: None,
        shell_notice: None,
    }
}

fn job() -> JobStatement {
    JobStatement {
        tenant: "acme".into(),
        job_id: [7; 16],
        targets: vec![bulwark_policy::JobTarget {
            device_id: DEVICE.into(),
            hostname: "ws-042".into(),
            device_key: Some([0x42; 32]),
        }],
        class: ActionClass::RunScript,
        action: bulwark_policy::JobAction::RunScript {
            interpreter: bulwark_policy::Interpreter::Sh,
            script_sha256: ScriptHash(Sha256::digest(SCRIPT).into()),
        },
        not_before: NOW - 60,
        expires_at: NOW + 3600,
        nonce: [9; 16],
        reason: "monthly patching".into(),
        timeout_secs: 600,
        tenant_name: "Acme".into(),
    }
}

/// A passkey approval as the browser would send it for `signed`.
fn passkey_assertion(pair: &EcdsaKeyPair, signed: &Signed) -> WebAuthnSignature {
    let mut authenticator_data = Sha256::digest(RP_ID.as_bytes()).to_vec();
    authenticator_data.push(0x05); // UP | UV
    authenticator_data.extend_from_slice(&1u32.to_be_bytes());
    let client_data_json = format!(
        r#"{{"type":"webauthn.get","challenge":"{}","origin":"http://{RP_ID}:41234","crossOrigin":false}}"#,
        URL_SAFE_NO_PAD.encode(signed.approval_challenge())
    )
    .into_bytes();
    let mut message = authenticator_data.clone();
    message.extend_from_slice(&Sha256::digest(&client_data_json));
    let signature = pair
        .sign(&SystemRandom::new(), &message)
        .expect("sign")
        .as_ref()
        .to_vec();
    WebAuthnSignature {
        authenticator_data,
        client_data_json,
        signature,
    }
}

/// A tenant log of 65,536 entries whose last is `signed`'s release, the
/// signed head of the whole log, and the head of 1,000 entries fewer that
/// the agent holds (so a consistency proof is checked too).
struct LogFixture {
    leaf: Vec<u8>,
    index: u64,
    note: String,
    inclusion: Vec<u8>,
    held: Checkpoint,
    consistency: Vec<u8>,
    key: NoteVerifier,
}

const LOG_SIZE: u64 = 1 << 16;
const HELD_SIZE: u64 = LOG_SIZE - 1000;

fn log_fixture(signed: &Signed) -> LogFixture {
    let job_id = signed
        .statement::<JobStatement>(&Limits::default())
        .expect("job")
        .job_id;
    let leaf = AuditLeaf::new(
        i64::try_from(NOW * 1000).expect("small"),
        Some("acme".into()),
        "server",
        JOB_RELEASED,
        hex::encode(job_id),
        job_released_detail(&signed.digest()),
    )
    .encode();
    let mut hashes: Vec<Hash> = (0..LOG_SIZE - 1)
        .map(|i| leaf_hash(&i.to_be_bytes()))
        .collect();
    hashes.push(leaf_hash(&leaf));
    let at = |id: NodeId| -> Result<Hash, ProofError> {
        let first = usize::try_from(id.first_leaf()).expect("small");
        Ok(root_of_leaf_hashes(
            &hashes[first..first + (1usize << id.level)],
        ))
    };
    let signer = NoteSigner::new("log.example/bulwark-log", SigningKey::from_bytes(&[50; 32]))
        .expect("log key");
    let sign = |size: u64| {
        Checkpoint::new(
            log_origin(signer.name(), "acme"),
            size,
            root_of_leaf_hashes(&hashes[..usize::try_from(size).expect("small")]),
            vec![],
        )
        .expect("checkpoint")
        .sign(&signer)
    };
    let key = signer.verifier();
    let held =
        bulwark_translog::verify_note(&sign(HELD_SIZE), &key, &bulwark_translog::Limits::default())
            .expect("held head");
    LogFixture {
        leaf,
        index: LOG_SIZE - 1,
        note: sign(LOG_SIZE),
        inclusion: bulwark_translog::inclusion_proof(LOG_SIZE - 1, LOG_SIZE, at)
            .expect("inclusion")
            .iter()
            .flat_map(|h| h.0)
            .collect(),
        held,
        consistency: bulwark_translog::consistency_proof(HELD_SIZE, LOG_SIZE, at)
            .expect("consistency")
            .iter()
            .flat_map(|h| h.0)
            .collect(),
        key,
    }
}

/// Median time per decision over 31 batches of `per_batch`.
fn measure(name: &str, signed: &Signed, policy: &Policy, per_batch: u32) {
    let limits = Limits::default();
    let log = log_fixture(signed);
    let proof = JobLogProof {
        leaf: &log.leaf,
        index: log.index,
        checkpoint: &log.note,
        inclusion: &log.inclusion,
        consistency_from: HELD_SIZE,
        consistency: &log.consistency,
        witnessed_since: None,
        witnessed_since_consistency: &[],
    };
    let run = || {
        let agent = AgentContext {
            tenant: "acme",
            device_id: DEVICE,
            hostname: "ws-042",
            device_key: &[0x42; 32],
            policy,
            freeze: FreezeState::default(),
        };
        let context = LogContext {
            key: Some(&log.key),
            held: Some(&log.held),
        };
        decide_job(
            black_box(signed),
            SCRIPT,
            Some(&proof),
            agent,
            context,
            &NoHistory,
            NOW,
            &limits,
        )
        .verdict
        .expect("verifies")
    };
    for _ in 0..per_batch {
        black_box(run());
    }
    let mut batches: Vec<Duration> = (0..31)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_batch {
                black_box(run());
            }
            start.elapsed() / per_batch
        })
        .collect();
    batches.sort();
    println!(
        "{name:<44} median {:>8.1} µs   (min {:.1}, max {:.1})",
        batches[15].as_secs_f64() * 1e6,
        batches[0].as_secs_f64() * 1e6,
        batches[30].as_secs_f64() * 1e6
    );
}

fn main() {
    // cargo bench passes --bench; `cargo test --benches` passes nothing to
    // run: keep that quick.
    let per_batch = if std::env::args().any(|a| a == "--bench") {
        200
    } else {
        1
    };
    let alice = SigningKey::from_bytes(&[1; 32]);
    let bob = SigningKey::from_bytes(&[2; 32]);
    let ed = |k: &SigningKey| PublicKey::Ed25519(k.verifying_key().to_bytes());

    let one = policy(vec![operator(ed(&alice), "alice")], 1);
    let mut signed = Signed::new(&job());
    signed.sign(&alice);
    measure("Ed25519, 1 signer", &signed, &one, per_batch);

    let two = policy(
        vec![operator(ed(&alice), "alice"), operator(ed(&bob), "bob")],
        2,
    );
    signed.sign(&bob);
    measure("Ed25519, 2 signers", &signed, &two, per_batch);

    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("key");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
        .expect("key");
    let passkey = PublicKey::WebAuthn(WebAuthnCredential {
        rp_id: RP_ID.into(),
        key: CoseKey::Es256 {
            sec1: pair.public_key().as_ref().try_into().expect("65 bytes"),
        },
    });
    let mixed = policy(
        vec![
            operator(ed(&alice), "alice"),
            operator(passkey.clone(), "dana's key"),
        ],
        2,
    );
    let mut signed = Signed::new(&job());
    signed.sign(&alice);
    let assertion = passkey_assertion(&pair, &signed);
    signed.add_webauthn(passkey.id(), assertion);
    measure(
        "Ed25519 + passkey (WebAuthn ES256), 2 signers",
        &signed,
        &mixed,
        per_batch,
    );
}
