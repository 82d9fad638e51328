//! How long an agent takes to verify one job (issue 5's figure), with
//! Ed25519 signers and with a passkey (WebAuthn ES256) approval.
//!
//! `cargo bench -p bulwark-policy --bench verify_job`. A plain harness
//! (median of many timed batches) keeps criterion out of the build.

use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bulwark_policy::job::{AgentContext, JobHistory, JobStatement, verify_job};
use bulwark_policy::policy::ScriptHash;
use bulwark_policy::webauthn::{CoseKey, WebAuthnCredential, WebAuthnSignature};
use bulwark_policy::{
    ActionClass, FreezeState, Holder, Limits, OperatorKey, Policy, PublicKey, Quorum, Signed,
};
use ed25519_dalek::SigningKey;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use sha2::{Digest, Sha256};

const NOW: u64 = 1_800_000_000;
const DEVICE: &str = "6f1c2b2e-8a49-4d4b-9f0e-0c2b8b5a1d3e";
const SCRIPT: &[u8] = b"#!/bin/sh\napt-get -y upgrade\n";
const RP_ID: &str = "console.example.com";

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
        r#"{{"type":"webauthn.get","challenge":"{}","origin":"https://{RP_ID}","crossOrigin":false}}"#,
        URL_SAFE_NO_PAD.encode(signed.challenge())
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

/// Median time per verification over 31 batches of `per_batch`.
fn measure(name: &str, signed: &Signed, policy: &Policy, per_batch: u32) {
    let limits = Limits::default();
    let run = || {
        let agent = AgentContext {
            tenant: "acme",
            device_id: DEVICE,
            hostname: "ws-042",
            device_key: &[0x42; 32],
            policy,
            freeze: FreezeState::default(),
        };
        verify_job(black_box(signed), SCRIPT, agent, &NoHistory, NOW, &limits).expect("verifies")
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
