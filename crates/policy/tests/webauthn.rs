//! Passkey (WebAuthn) approvals and registrations. The authenticator and
//! browser are simulated byte for byte: real P-256 (ring) and Ed25519 keys,
//! authenticator data and clientDataJSON as Chrome writes them. Recorded
//! browser vectors from py_webauthn's test suite check the same code
//! against real authenticators.

use std::cell::Cell;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bulwark_policy::freeze::FreezeState;
use bulwark_policy::job::{AgentContext, JobHistory, JobStatement, verify_job};
use bulwark_policy::policy::{ActionClass, OperatorKey, Policy, Quorum, ScriptHash};
use bulwark_policy::root::Holder;
use bulwark_policy::webauthn::Flags;
use bulwark_policy::{
    APPROVAL_RP_ID, CoseKey, KeyId, Limits, PublicKey, Refusal, Signed, WebAuthnCredential,
    WebAuthnError, WebAuthnSignature, parse_registration, verify_assertion,
};
use ed25519_dalek::{Signer as _, SigningKey};
use minicbor::Encoder;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use sha2::{Digest, Sha256};

const NOW: u64 = 1_800_000_000;
const DEVICE: &str = "6f1c2a3b-0000-4000-8000-000000000001";
const SCRIPT: &[u8] = b"#!/bin/sh\nuptime\n";
const RP_ID: &str = "console.example.com";
const ORIGIN: &str = "https://console.example.com";
const UP: u8 = 0x01;
const UV: u8 = 0x04;
const BE: u8 = 0x08;
const BS: u8 = 0x10;
const AT: u8 = 0x40;
const ED: u8 = 0x80;

// ---------------------------------------------------------------- the browser

enum Key {
    P256(EcdsaKeyPair),
    Ed25519(SigningKey),
}

/// A security key or passkey provider, registered for `rp_id`.
struct Authenticator {
    key: Key,
    counter: Cell<u32>,
    rp_id: &'static str,
}

/// The approval page's origin, as the operator's `bulwark` serves it.
const APPROVAL_ORIGIN: &str = "http://bulwark-approve.localhost:41234";

/// What the browser and authenticator are asked to do, and what they write.
#[derive(Clone)]
struct Ceremony {
    kind: &'static str,
    challenge: Vec<u8>,
    origin: String,
    /// The RP id whose hash the authenticator writes.
    rp_id: String,
    flags: u8,
    cross_origin: bool,
}

impl Ceremony {
    fn get(challenge: &[u8]) -> Self {
        Ceremony {
            kind: "webauthn.get",
            challenge: challenge.to_vec(),
            origin: ORIGIN.into(),
            rp_id: RP_ID.into(),
            flags: UP | UV,
            cross_origin: false,
        }
    }

    /// An approval in the operator's own approval page.
    fn approval(challenge: &[u8]) -> Self {
        Ceremony {
            origin: APPROVAL_ORIGIN.into(),
            rp_id: APPROVAL_RP_ID.into(),
            ..Ceremony::get(challenge)
        }
    }

    fn create(challenge: &[u8]) -> Self {
        Ceremony {
            kind: "webauthn.create",
            flags: UP | UV | AT,
            ..Ceremony::get(challenge)
        }
    }

    /// clientDataJSON as Chrome serialises it.
    fn client_data_json(&self) -> Vec<u8> {
        format!(
            r#"{{"type":"{}","challenge":"{}","origin":"{}","crossOrigin":{}}}"#,
            self.kind,
            URL_SAFE_NO_PAD.encode(&self.challenge),
            self.origin,
            self.cross_origin
        )
        .into_bytes()
    }

    fn authenticator_data(&self, counter: u32) -> Vec<u8> {
        let mut data = Sha256::digest(self.rp_id.as_bytes()).to_vec();
        data.push(self.flags);
        data.extend_from_slice(&counter.to_be_bytes());
        data
    }
}

impl Authenticator {
    fn p256() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("keygen");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .expect("pkcs8");
        Authenticator {
            key: Key::P256(pair),
            counter: Cell::new(0),
            rp_id: RP_ID,
        }
    }

    fn ed25519(seed: u8) -> Self {
        Authenticator {
            key: Key::Ed25519(SigningKey::from_bytes(&[seed; 32])),
            counter: Cell::new(0),
            rp_id: RP_ID,
        }
    }

    /// The same kind of authenticator, registered for job approvals.
    fn approver(self) -> Self {
        Authenticator {
            rp_id: APPROVAL_RP_ID,
            ..self
        }
    }

    fn cose_key(&self) -> CoseKey {
        match &self.key {
            Key::P256(pair) => CoseKey::Es256 {
                sec1: pair.public_key().as_ref().try_into().expect("65 bytes"),
            },
            Key::Ed25519(k) => CoseKey::Ed25519(k.verifying_key().to_bytes()),
        }
    }

    fn credential(&self) -> WebAuthnCredential {
        WebAuthnCredential {
            rp_id: self.rp_id.into(),
            key: self.cose_key(),
        }
    }

    fn public(&self) -> PublicKey {
        PublicKey::WebAuthn(self.credential())
    }

    fn id(&self) -> KeyId {
        self.public().id()
    }

    fn raw_sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.key {
            Key::P256(pair) => pair
                .sign(&SystemRandom::new(), message)
                .expect("sign")
                .as_ref()
                .to_vec(),
            Key::Ed25519(k) => k.sign(message).to_bytes().to_vec(),
        }
    }

    /// Signs authenticator data || SHA-256(clientDataJSON), as §6.3.3 says.
    fn sign_over(&self, authenticator_data: &[u8], client_data_json: &[u8]) -> Vec<u8> {
        let mut message = authenticator_data.to_vec();
        message.extend_from_slice(&Sha256::digest(client_data_json));
        self.raw_sign(&message)
    }

    /// `navigator.credentials.get` with this authenticator.
    fn assert(&self, ceremony: &Ceremony) -> WebAuthnSignature {
        self.counter.set(self.counter.get() + 1);
        let authenticator_data = ceremony.authenticator_data(self.counter.get());
        let client_data_json = ceremony.client_data_json();
        let signature = self.sign_over(&authenticator_data, &client_data_json);
        WebAuthnSignature {
            authenticator_data,
            client_data_json,
            signature,
        }
    }

    /// The COSE_Key an authenticator writes into attested credential data.
    fn cose_bytes(&self) -> Vec<u8> {
        let mut e = Encoder::new(Vec::new());
        match self.cose_key() {
            CoseKey::Es256 { sec1 } => {
                e.map(5).expect("cbor");
                e.i64(1).and_then(|e| e.i64(2)).expect("kty EC2");
                e.i64(3).and_then(|e| e.i64(-7)).expect("alg ES256");
                e.i64(-1).and_then(|e| e.i64(1)).expect("crv P-256");
                e.i64(-2).and_then(|e| e.bytes(&sec1[1..33])).expect("x");
                e.i64(-3).and_then(|e| e.bytes(&sec1[33..])).expect("y");
            }
            CoseKey::Ed25519(x) => {
                e.map(4).expect("cbor");
                e.i64(1).and_then(|e| e.i64(1)).expect("kty OKP");
                e.i64(3).and_then(|e| e.i64(-8)).expect("alg EdDSA");
                e.i64(-1).and_then(|e| e.i64(6)).expect("crv Ed25519");
                e.i64(-2).and_then(|e| e.bytes(&x)).expect("x");
            }
            other => panic!("no COSE encoding for {other:?}"),
        }
        e.into_writer()
    }

    /// Registration authenticator data: the fixed part, then aaguid,
    /// credential id and key.
    fn registration_data(&self, ceremony: &Ceremony, credential_id: &[u8]) -> Vec<u8> {
        let mut data = ceremony.authenticator_data(0);
        data.extend_from_slice(&[0xaa; 16]);
        data.extend_from_slice(
            &u16::try_from(credential_id.len())
                .expect("u16")
                .to_be_bytes(),
        );
        data.extend_from_slice(credential_id);
        data.extend_from_slice(&self.cose_bytes());
        data
    }
}

/// An attestation object with its keys in a non-canonical order (authData
/// first), as some browsers send them.
fn attestation_object(fmt: &str, auth_data: &[u8], att_stmt: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new());
    e.map(3).expect("cbor");
    e.str("authData")
        .and_then(|e| e.bytes(auth_data))
        .expect("authData");
    e.str("fmt").and_then(|e| e.str(fmt)).expect("fmt");
    e.str("attStmt").expect("attStmt");
    let mut bytes = e.into_writer();
    bytes.extend_from_slice(att_stmt);
    bytes
}

const EMPTY_MAP: &[u8] = &[0xa0];

fn packed_self_statement(alg: i64, sig: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new());
    e.map(2).expect("cbor");
    e.str("alg").and_then(|e| e.i64(alg)).expect("alg");
    e.str("sig").and_then(|e| e.bytes(sig)).expect("sig");
    e.into_writer()
}

// ---------------------------------------------------------------- the agent

struct Fixture {
    alice: SigningKey,
    dana: Authenticator,
    erin: Authenticator,
    mallory: Authenticator,
    policy: Policy,
}

/// alice signs with Ed25519; dana (P-256) and erin (Ed25519) with passkeys;
/// mallory's passkey is not in the policy. One signer runs an inventory
/// refresh, two a script.
fn fixture() -> Fixture {
    let alice = SigningKey::from_bytes(&[10; 32]);
    let dana = Authenticator::p256().approver();
    let erin = Authenticator::ed25519(13).approver();
    let mallory = Authenticator::p256().approver();
    let operator = |key, name: &str| OperatorKey {
        key,
        name: name.into(),
        holder: Holder::Msp,
        classes: vec![ActionClass::InventoryRefresh, ActionClass::RunScript],
    };
    let quorum = |class, signers| Quorum {
        class,
        signers,
        customer_required: false,
        in_window_only: false,
    };
    let policy = Policy {
        tenant: "acme".into(),
        version: 1,
        expires_at: NOW + 86_400,
        operators: vec![
            operator(
                PublicKey::Ed25519(alice.verifying_key().to_bytes()),
                "alice",
            ),
            operator(dana.public(), "dana"),
            operator(erin.public(), "erin"),
        ],
        quorums: vec![
            quorum(ActionClass::InventoryRefresh, 1),
            quorum(ActionClass::RunScript, 2),
        ],
        fan_out_limit: 10,
        allowed_scripts: vec![],
        maintenance_windows: vec![],
        tenant_name: Some("Acme".into()),
        witnessing: None,
        mass_action_delay: None,
        checks: None,
        revoked_schedules: None,
        device_groups: None,
        shell_notice: None,
    };
    Fixture {
        alice,
        dana,
        erin,
        mallory,
        policy,
    }
}

fn job(class: ActionClass, job_id: u8) -> JobStatement {
    JobStatement {
        tenant: "acme".into(),
        job_id: [job_id; 16],
        targets: vec![bulwark_policy::JobTarget {
            device_id: DEVICE.into(),
            hostname: "ws-042".into(),
            device_key: None,
        }],
        class,
        action: if class == ActionClass::InventoryRefresh {
            bulwark_policy::JobAction::InventoryRefresh
        } else {
            bulwark_policy::JobAction::RunScript {
                interpreter: bulwark_policy::Interpreter::Sh,
                script_sha256: ScriptHash(Sha256::digest(SCRIPT).into()),
            }
        },
        not_before: NOW - 60,
        expires_at: NOW + 3600,
        nonce: [job_id; 16],
        reason: "ticket 4711".into(),
        timeout_secs: 300,
        tenant_name: "Acme".into(),
    }
}

struct NoHistory;

impl JobHistory for NoHistory {
    fn seen(&self, _: &[u8; 16], _: &[u8; 16]) -> bool {
        false
    }
}

fn verdict(envelope: &Signed, policy: &Policy) -> Result<usize, Refusal> {
    let agent = AgentContext {
        tenant: "acme",
        device_id: DEVICE,
        hostname: "ws-042",
        device_key: &[0; 32],
        policy,
        freeze: FreezeState::default(),
    };
    let script = match envelope.statement::<JobStatement>(&Limits::default()) {
        Ok(job) if job.action.script_sha256().is_none() => &b""[..],
        _ => SCRIPT,
    };
    verify_job(envelope, script, agent, &NoHistory, NOW, &Limits::default())
        .map(|v| v.signers.len())
}

// ---------------------------------------------------------------- approvals

#[test]
fn a_passkey_approval_counts_in_tally_and_runs_a_job() {
    let f = fixture();
    let mut env = Signed::new(&job(ActionClass::RunScript, 1));
    env.sign(&f.alice);
    assert_eq!(
        verdict(&env, &f.policy),
        Err(Refusal::TooFewSigners { have: 1, need: 2 })
    );
    let approval = f
        .dana
        .assert(&Ceremony::approval(&env.approval_challenge()));
    env.add_webauthn(f.dana.id(), approval);
    let tally = env.tally(f.policy.operators.iter().map(|o| &o.key));
    assert!(tally.valid.contains(&f.dana.id()));
    assert_eq!((tally.valid.len(), tally.bad, tally.unknown), (2, 0, 0));
    assert_eq!(verdict(&env, &f.policy), Ok(2));
    // It survives the wire: canonical bytes, decoded back, still verifies.
    let bytes = env.to_bytes();
    let back = Signed::from_bytes(&bytes, &Limits::default()).expect("decodes");
    assert_eq!(back, env);
    assert_eq!(verdict(&back, &f.policy), Ok(2));
}

#[test]
fn two_passkeys_approve_without_any_ed25519_key() {
    let f = fixture();
    let mut env = Signed::new(&job(ActionClass::RunScript, 1));
    let challenge = env.approval_challenge();
    env.add_webauthn(f.dana.id(), f.dana.assert(&Ceremony::approval(&challenge)));
    env.add_webauthn(f.erin.id(), f.erin.assert(&Ceremony::approval(&challenge)));
    assert_eq!(verdict(&env, &f.policy), Ok(2));
}

#[test]
fn one_passkey_approving_twice_counts_once() {
    let f = fixture();
    let mut env = Signed::new(&job(ActionClass::RunScript, 1));
    let challenge = env.approval_challenge();
    env.add_webauthn(f.dana.id(), f.dana.assert(&Ceremony::approval(&challenge)));
    env.add_webauthn(f.dana.id(), f.dana.assert(&Ceremony::approval(&challenge)));
    assert_eq!(
        verdict(&env, &f.policy),
        Err(Refusal::TooFewSigners { have: 1, need: 2 })
    );
}

#[test]
fn the_approval_challenge_is_a_domain_separated_hash_of_the_pae_bytes() {
    let env = Signed::new(&job(ActionClass::RunScript, 1));
    let pae = bulwark_protocol::envelope::pae(&env.payload_type, &env.payload);
    assert_eq!(env.signing_bytes(), pae);
    // What the log's job.released entry names.
    assert_eq!(env.digest(), <[u8; 32]>::from(Sha256::digest(&pae)));
    // What a passkey approval signs: another hash, so that no ceremony with
    // the digest as its challenge (what a sign-in was given) approves.
    let mut tagged = b"bulwark job approval v1\n".to_vec();
    tagged.extend_from_slice(&pae);
    assert_eq!(
        env.approval_challenge(),
        <[u8; 32]>::from(Sha256::digest(&tagged))
    );
    assert_ne!(env.approval_challenge(), env.digest());
}

/// Drill attack 2 (RFD 0005): an owned server hands the owner's sign-in or
/// step-up ceremony a challenge of its choosing, and relays the assertion
/// as an approval. A console credential never approves, whatever it signed;
/// an approval credential's assertion over the plain digest (a sign-in
/// given the job's digest), or made on another origin, does not count.
/// A policy that lists a console credential (RP id of the console's host)
/// is malformed, whoever signed it: the server will not store it, the CLI
/// will not co-sign it, and an agent refuses it (issue 12: root holders who
/// went around `policy add-operator` could list one before).
#[test]
fn a_policy_listing_a_console_credential_is_refused() {
    use bulwark_policy::root::{RootKey, TrustRoot};
    let f = fixture();
    let officer = SigningKey::from_bytes(&[77; 32]);
    let root = TrustRoot {
        tenant: "acme".into(),
        version: 1,
        threshold: 1,
        keys: vec![RootKey {
            key: PublicKey::Ed25519(officer.verifying_key().to_bytes()),
            holder: Holder::Msp,
            name: "officer".into(),
        }],
    };
    let signed = |policy: &Policy| {
        let mut env = Signed::new(policy);
        env.sign(&officer);
        env
    };
    let limits = bulwark_policy::Limits::default();
    assert!(Policy::verify_update(&root, None, &signed(&f.policy), NOW, &limits).is_ok());
    let mut listed = f.policy.clone();
    listed.operators.push(OperatorKey {
        key: Authenticator::p256().public(),
        name: "owner's console passkey".into(),
        holder: Holder::Msp,
        classes: vec![ActionClass::RunScript],
    });
    assert!(matches!(
        Policy::verify_update(&root, None, &signed(&listed), NOW, &limits),
        Err(Refusal::Malformed(reason)) if reason.contains("only approval passkeys")
    ));
}

#[test]
fn sign_in_and_step_up_assertions_never_approve() {
    let f = fixture();
    let console = Authenticator::p256();
    let mut policy = f.policy.clone();
    policy.operators.push(OperatorKey {
        key: console.public(),
        name: "owner's console passkey".into(),
        holder: Holder::Msp,
        classes: vec![ActionClass::RunScript],
    });
    let base = {
        let mut env = Signed::new(&job(ActionClass::RunScript, 1));
        env.sign(&f.alice);
        env
    };
    let check = |key_id: KeyId, assertion: WebAuthnSignature| {
        let mut env = base.clone();
        env.add_webauthn(key_id, assertion);
        verdict(&env, &policy)
    };
    // The console's own ceremonies (its RP id, its origin), over either challenge.
    for challenge in [base.digest(), base.approval_challenge()] {
        assert_eq!(
            check(console.id(), console.assert(&Ceremony::get(&challenge))),
            Err(Refusal::BadSignature)
        );
    }
    // An approval credential used for a sign-in-style challenge (the digest).
    assert_eq!(
        check(
            f.dana.id(),
            f.dana.assert(&Ceremony::approval(&base.digest()))
        ),
        Err(Refusal::BadSignature)
    );
    // Or from a page that is not the approval page (the console, a subdomain).
    for origin in [
        "http://localhost:8080",
        "https://console.example.com",
        "http://evil.bulwark-approve.localhost:41234",
    ] {
        let ceremony = Ceremony {
            origin: origin.into(),
            ..Ceremony::approval(&base.approval_challenge())
        };
        assert_eq!(
            check(f.dana.id(), f.dana.assert(&ceremony)),
            Err(Refusal::BadSignature),
            "{origin}"
        );
    }
    // The approval page's own ceremony counts.
    assert_eq!(
        check(
            f.dana.id(),
            f.dana
                .assert(&Ceremony::approval(&base.approval_challenge()))
        ),
        Ok(2)
    );
}

proptest::proptest! {
    /// The approval challenge binds the statement: any other statement (one
    /// byte of payload or payload type changed) has another challenge, and
    /// an approval of one never verifies for the other.
    #[test]
    fn an_approval_is_bound_to_its_statement(flip in 0usize..4096, bit in 0u8..8) {
        let f = fixture();
        let env = Signed::new(&job(ActionClass::RunScript, 1));
        let approval = f.dana.assert(&Ceremony::approval(&env.approval_challenge()));
        let mut other = env.clone();
        let i = flip % other.payload.len();
        other.payload[i] ^= 1 << bit;
        proptest::prop_assert_ne!(other.approval_challenge(), env.approval_challenge());
        let mut signed = other.clone();
        signed.add_webauthn(f.dana.id(), approval);
        proptest::prop_assert!(signed.tally([f.dana.public()].iter()).valid.is_empty());
    }
}

#[test]
fn ed25519_entries_and_key_ids_keep_their_encoding() {
    let f = fixture();
    let mut env = Signed::new(&job(ActionClass::InventoryRefresh, 1));
    env.sign(&f.alice);
    let entry = bulwark_protocol::codec::to_canonical(&env.signatures[0]);
    // {0: key id, 1: signature}: a two-entry map, no field 2.
    assert_eq!(entry[0], 0xa2);
    // PublicKey::Ed25519 is variant 0 as before: [0, [bytes(32)]].
    let key = PublicKey::Ed25519([1; 32]);
    let mut expected = vec![0x82, 0x00, 0x81, 0x58, 0x20];
    expected.extend_from_slice(&[1; 32]);
    assert_eq!(bulwark_protocol::codec::to_canonical(&key), expected);
}

/// Attack 8 of the signed-jobs issue: forged passkey approvals. The server
/// (or whoever owns it) relays approvals; none of these may count.
#[test]
fn forged_passkey_approval() {
    let f = fixture();
    let statement = job(ActionClass::InventoryRefresh, 1);
    let challenge = Signed::new(&statement).approval_challenge();
    let other_challenge = Signed::new(&job(ActionClass::InventoryRefresh, 2)).approval_challenge();
    let honest = Ceremony::approval(&challenge);
    let good = || f.dana.assert(&honest);
    let with = |change: &dyn Fn(&mut Ceremony)| {
        let mut c = honest.clone();
        change(&mut c);
        f.dana.assert(&c)
    };
    let origin = |o: &'static str| move |c: &mut Ceremony| c.origin = o.into();
    let wrong_origin = |o: &str| {
        Some(WebAuthnError::WrongOrigin {
            origin: o.into(),
            rp_id: APPROVAL_RP_ID.into(),
        })
    };

    struct Forgery {
        what: &'static str,
        key_id: KeyId,
        assertion: WebAuthnSignature,
        /// What `verify_assertion` says against dana's credential, when it applies.
        error: Option<WebAuthnError>,
        refusal: Refusal,
    }
    let dana = f.dana.id();
    let forgery = |what, assertion, error| Forgery {
        what,
        key_id: dana,
        assertion,
        error,
        refusal: Refusal::BadSignature,
    };
    let mut truncated = good();
    truncated.authenticator_data.truncate(36);
    let mut flipped_signature = good();
    let last = flipped_signature.signature.len() - 1;
    flipped_signature.signature[last] ^= 0x01;
    let mut flipped_counter = good();
    flipped_counter.authenticator_data[36] ^= 0x01;
    let mut huge = good();
    huge.client_data_json.resize(5000, b' ');

    let forgeries = [
        forgery(
            "made for another job's hash",
            with(&|c| c.challenge = other_challenge.to_vec()),
            Some(WebAuthnError::ChallengeMismatch),
        ),
        Forgery {
            what: "from a credential the policy does not list",
            key_id: f.mallory.id(),
            assertion: f.mallory.assert(&honest),
            error: None,
            refusal: Refusal::UnknownKey,
        },
        forgery(
            "without user verification (UV clear)",
            with(&|c| c.flags = UP),
            Some(WebAuthnError::UserNotVerified),
        ),
        forgery(
            "without user presence (UP clear)",
            with(&|c| c.flags = UV),
            Some(WebAuthnError::UserNotPresent),
        ),
        forgery(
            "for another relying party (rpIdHash)",
            with(&|c| c.rp_id = "evil.example".into()),
            Some(WebAuthnError::RpIdMismatch),
        ),
        forgery(
            "of type webauthn.create",
            with(&|c| c.kind = "webauthn.create"),
            Some(WebAuthnError::WrongType {
                expected: "webauthn.get",
                got: "webauthn.create".into(),
            }),
        ),
        forgery(
            "from another site",
            with(&origin("https://evil.example")),
            wrong_origin("https://evil.example"),
        ),
        forgery(
            "from a look-alike host",
            with(&origin("https://console.example.com.evil.example")),
            wrong_origin("https://console.example.com.evil.example"),
        ),
        forgery(
            "from a subdomain",
            with(&origin("https://x.console.example.com")),
            wrong_origin("https://x.console.example.com"),
        ),
        forgery(
            "over plain http",
            with(&origin("http://console.example.com")),
            wrong_origin("http://console.example.com"),
        ),
        forgery(
            "from a port with a leading zero",
            with(&origin("https://console.example.com:0443")),
            wrong_origin("https://console.example.com:0443"),
        ),
        forgery(
            "inside another site's frame",
            with(&|c| c.cross_origin = true),
            Some(WebAuthnError::CrossOrigin),
        ),
        forgery(
            "with truncated authenticator data",
            truncated,
            Some(WebAuthnError::AuthenticatorDataTooShort(36)),
        ),
        forgery(
            "with a bit-flipped signature",
            flipped_signature,
            Some(WebAuthnError::BadSignature),
        ),
        forgery(
            "with an edited sign counter",
            flipped_counter,
            Some(WebAuthnError::BadSignature),
        ),
        forgery(
            "with an oversized clientDataJSON",
            huge,
            Some(WebAuthnError::TooLarge {
                what: "clientDataJSON",
                len: 5000,
                limit: 4096,
            }),
        ),
        Forgery {
            what: "under an Ed25519 operator's key id",
            key_id: PublicKey::Ed25519(f.alice.verifying_key().to_bytes()).id(),
            assertion: good(),
            error: None,
            refusal: Refusal::BadSignature,
        },
    ];
    for Forgery {
        what,
        key_id,
        assertion,
        error,
        refusal,
    } in forgeries
    {
        if let Some(error) = error {
            assert_eq!(
                assertion.verify(&f.dana.credential(), &challenge, true),
                Err(error),
                "{what}"
            );
        }
        let mut env = Signed::new(&statement);
        env.add_webauthn(key_id, assertion);
        assert_eq!(verdict(&env, &f.policy), Err(refusal), "{what}");
    }

    // The honest assertion verifies; the entry's unused 64-byte field must stay zero.
    let mut env = Signed::new(&statement);
    env.add_webauthn(dana, good());
    assert_eq!(verdict(&env, &f.policy), Ok(1));
    env.signatures[0].signature[0] = 1;
    assert_eq!(verdict(&env, &f.policy), Err(Refusal::BadSignature));

    // An Ed25519 signature presented under a passkey's key id.
    let mut env = Signed::new(&statement);
    env.sign(&f.alice);
    env.signatures[0].key_id = dana;
    assert_eq!(verdict(&env, &f.policy), Err(Refusal::BadSignature));

    // With a valid signer beside it, an unlisted passkey leaves the job short.
    let mut env = Signed::new(&job(ActionClass::RunScript, 1));
    env.sign(&f.alice);
    env.add_webauthn(
        f.mallory.id(),
        f.mallory
            .assert(&Ceremony::approval(&env.approval_challenge())),
    );
    assert_eq!(
        verdict(&env, &f.policy),
        Err(Refusal::TooFewSigners { have: 1, need: 2 })
    );
}

#[test]
fn the_origin_rule() {
    let a = Authenticator::p256();
    let challenge = [9; 32];
    let try_origin = |rp_id: &str, origin: &str| {
        let ceremony = Ceremony {
            origin: origin.into(),
            rp_id: rp_id.into(),
            ..Ceremony::get(&challenge)
        };
        let s = a.assert(&ceremony);
        let cred = WebAuthnCredential {
            rp_id: rp_id.into(),
            key: a.cose_key(),
        };
        s.verify(&cred, &challenge, true).is_ok()
    };
    for ok in [
        "https://console.example.com",
        "https://console.example.com:8443",
        "https://console.example.com:65535",
    ] {
        assert!(try_origin(RP_ID, ok), "{ok}");
    }
    for bad in [
        "http://console.example.com",
        "https://console.example.com:",
        "https://console.example.com:65536",
        "https://console.example.com:0",
        "https://console.example.com:+443",
        "https://console.example.com/",
        "https://console.example.com@evil.example",
        "https://Console.example.com",
        "https://example.com",
        "console.example.com",
    ] {
        assert!(!try_origin(RP_ID, bad), "{bad}");
    }
    for ok in [
        "http://localhost",
        "http://localhost:8080",
        "https://localhost:8443",
    ] {
        assert!(try_origin("localhost", ok), "{ok}");
    }
    assert!(!try_origin("localhost", "http://localhost.evil.example"));
    assert!(!try_origin("localhost", "http://127.0.0.1:8080"));
}

#[test]
fn nonsense_rp_ids_and_short_challenges_are_refused() {
    let a = Authenticator::p256();
    let s = a.assert(&Ceremony::get(&[9; 32]));
    for rp_id in ["", "Console.example.com", "console.example.com/x", "a:1"] {
        let cred = WebAuthnCredential {
            rp_id: rp_id.into(),
            key: a.cose_key(),
        };
        assert_eq!(
            s.verify(&cred, &[9; 32], true),
            Err(WebAuthnError::BadRpId(rp_id.into()))
        );
    }
    // A field given twice is refused rather than one of them believed.
    let mut twice = a.assert(&Ceremony::get(&[9; 32]));
    twice.client_data_json.pop();
    twice
        .client_data_json
        .extend_from_slice(br#","challenge":"AAAA"}"#);
    assert!(matches!(
        twice.verify(&a.credential(), &[9; 32], true),
        Err(WebAuthnError::ClientDataJson(_))
    ));
    let short = a.assert(&Ceremony::get(&[]));
    assert_eq!(
        short.verify(&a.credential(), &[], true),
        Err(WebAuthnError::ShortChallenge(0))
    );
}

#[test]
fn the_sign_counter_and_flags_are_reported() {
    let a = Authenticator::ed25519(5);
    let challenge = [3; 32];
    a.counter.set(41);
    let ceremony = Ceremony {
        flags: UP | UV | BE | BS,
        ..Ceremony::get(&challenge)
    };
    let info = a
        .assert(&ceremony)
        .verify(&a.credential(), &challenge, true)
        .expect("verifies");
    assert_eq!(info.sign_count, 42);
    assert!(info.flags.backup_eligible() && info.flags.backed_up());
    // Backed up but not eligible is a contradiction.
    let bad = Ceremony {
        flags: UP | UV | BS,
        ..Ceremony::get(&challenge)
    };
    assert_eq!(
        a.assert(&bad).verify(&a.credential(), &challenge, true),
        Err(WebAuthnError::InconsistentBackupFlags)
    );
    // UV not required (login with a second factor elsewhere): a touch is enough.
    let touch = Ceremony {
        flags: UP,
        ..Ceremony::get(&challenge)
    };
    assert!(
        a.assert(&touch)
            .verify(&a.credential(), &challenge, false)
            .is_ok()
    );
}

// ---------------------------------------------------------------- registration

#[test]
fn registration_with_none_attestation_gives_a_working_credential() {
    for a in [Authenticator::p256(), Authenticator::ed25519(7)] {
        let challenge = [5; 32];
        let ceremony = Ceremony {
            flags: UP | UV | AT | BE,
            ..Ceremony::create(&challenge)
        };
        let credential_id = [0x42; 64];
        let object = attestation_object(
            "none",
            &a.registration_data(&ceremony, &credential_id),
            EMPTY_MAP,
        );
        let reg = parse_registration(
            &object,
            &ceremony.client_data_json(),
            &challenge,
            RP_ID,
            true,
        )
        .expect("registers");
        assert_eq!(reg.credential_id, credential_id);
        assert_eq!(reg.credential, a.credential());
        assert_eq!(reg.aaguid, [0xaa; 16]);
        assert_eq!(reg.sign_count, 0);
        assert!(reg.flags.user_verified() && reg.flags.backup_eligible());
        assert!(!reg.flags.backed_up());
        // The registered credential verifies the authenticator's approvals.
        let login = [6; 32];
        assert!(
            a.assert(&Ceremony::get(&login))
                .verify(&reg.credential, &login, true)
                .is_ok()
        );
    }
}

#[test]
fn packed_self_attestation_is_checked() {
    let a = Authenticator::p256();
    let challenge = [5; 32];
    let ceremony = Ceremony::create(&challenge);
    let client = ceremony.client_data_json();
    let data = a.registration_data(&ceremony, &[1; 16]);
    let register = |stmt: &[u8]| {
        parse_registration(
            &attestation_object("packed", &data, stmt),
            &client,
            &challenge,
            RP_ID,
            true,
        )
    };
    let good = register(&packed_self_statement(-7, &a.sign_over(&data, &client)));
    assert_eq!(good.map(|r| r.credential), Ok(a.credential()));
    let other = Authenticator::p256();
    assert_eq!(
        register(&packed_self_statement(-7, &other.sign_over(&data, &client))),
        Err(WebAuthnError::BadSignature)
    );
    assert!(matches!(
        register(&packed_self_statement(-8, &a.sign_over(&data, &client))),
        Err(WebAuthnError::AttestationObject(_))
    ));
}

#[test]
fn registration_refusals() {
    let a = Authenticator::p256();
    let challenge = [5; 32];
    let create = Ceremony::create(&challenge);
    let data = a.registration_data(&create, &[1; 16]);
    let register = |object: &[u8], ceremony: &Ceremony| {
        parse_registration(
            object,
            &ceremony.client_data_json(),
            &challenge,
            RP_ID,
            true,
        )
    };
    let none = |data: &[u8]| attestation_object("none", data, EMPTY_MAP);
    let malformed =
        |r: Result<_, WebAuthnError>| matches!(r, Err(WebAuthnError::AttestationObject(_)));
    assert!(register(&none(&data), &create).is_ok());

    // What the browser says.
    assert_eq!(
        register(&none(&data), &Ceremony::get(&challenge)),
        Err(WebAuthnError::WrongType {
            expected: "webauthn.create",
            got: "webauthn.get".into()
        })
    );
    let stale = Ceremony::create(&[4; 32]);
    assert_eq!(
        register(&none(&data), &stale),
        Err(WebAuthnError::ChallengeMismatch)
    );
    let elsewhere = Ceremony {
        origin: "https://evil.example".into(),
        ..create.clone()
    };
    assert!(matches!(
        register(&none(&data), &elsewhere),
        Err(WebAuthnError::WrongOrigin { .. })
    ));

    // What the authenticator says.
    let no_at = Ceremony {
        flags: UP | UV,
        ..create.clone()
    };
    assert_eq!(
        register(&none(&a.registration_data(&no_at, &[1; 16])), &create),
        Err(WebAuthnError::NoCredential)
    );
    let no_uv = Ceremony {
        flags: UP | AT,
        ..create.clone()
    };
    assert_eq!(
        register(&none(&a.registration_data(&no_uv, &[1; 16])), &create),
        Err(WebAuthnError::UserNotVerified)
    );
    assert_eq!(
        register(&none(&a.registration_data(&create, &[1; 1024])), &create),
        Err(WebAuthnError::CredentialIdLength(1024))
    );
    assert_eq!(
        register(&none(&a.registration_data(&create, &[])), &create),
        Err(WebAuthnError::CredentialIdLength(0))
    );
    let mut trailing = data.clone();
    trailing.push(0);
    assert!(malformed(register(&none(&trailing), &create)));
    assert!(malformed(register(&none(&data[..data.len() - 1]), &create)));
    assert!(malformed(register(&none(&data[..60]), &create)));
    // Extension data after the key is skipped when the ED flag says so.
    let with_ed = Ceremony {
        flags: UP | UV | AT | ED,
        ..create.clone()
    };
    let mut extended = a.registration_data(&with_ed, &[1; 16]);
    extended.extend_from_slice(&[0xa1, 0x63, b'f', b'o', b'o', 0xf5]); // {"foo": true}
    assert!(register(&none(&extended), &create).is_ok());
    extended.truncate(extended.len() - 6);
    extended.push(0x01); // not a map
    assert!(malformed(register(&none(&extended), &create)));

    // The key: RS256 (kty 3, alg -257) is not offered.
    let mut rsa = create.authenticator_data(0);
    rsa.extend_from_slice(&[0; 16]);
    rsa.extend_from_slice(&[0, 1, 9]);
    rsa.extend_from_slice(&[0xa3, 0x01, 0x03, 0x03, 0x39, 0x01, 0x00, 0x21, 0x41, 0x00]);
    assert_eq!(
        register(&none(&rsa), &create),
        Err(WebAuthnError::UnsupportedKey {
            kty: Some(3),
            alg: Some(-257),
            crv: None
        })
    );

    // The attestation object and statement.
    assert_eq!(
        register(&attestation_object("tpm", &data, EMPTY_MAP), &create),
        Err(WebAuthnError::UnsupportedAttestation("tpm".into()))
    );
    assert!(malformed(register(
        &attestation_object("none", &data, &packed_self_statement(-7, &[1])),
        &create
    )));
    assert!(malformed(register(
        &attestation_object("packed", &data, EMPTY_MAP),
        &create
    )));
    let mut twice = attestation_object("none", &data, EMPTY_MAP);
    twice[0] = 0xa4;
    twice.extend_from_slice(&[0x63, b'f', b'm', b't', 0x64, b'n', b'o', b'n', b'e']);
    assert!(malformed(register(&twice, &create)));
    let mut indefinite = attestation_object("none", &data, EMPTY_MAP);
    indefinite[0] = 0xbf;
    indefinite.push(0xff);
    assert!(malformed(register(&indefinite, &create)));
    let mut unknown_key = attestation_object("none", &data, EMPTY_MAP);
    unknown_key[0] = 0xa4;
    unknown_key.extend_from_slice(&[0x61, b'x', 0x01]);
    assert!(register(&unknown_key, &create).is_ok());
    let big = vec![0; 16 * 1024 + 1];
    assert_eq!(
        register(&big, &create),
        Err(WebAuthnError::TooLarge {
            what: "attestation object",
            len: 16 * 1024 + 1,
            limit: 16 * 1024
        })
    );
}

// ---------------------------------------------------------------- recorded vectors

// Recorded from real browsers and authenticators by py_webauthn's test suite
// (duo-labs/py_webauthn, tests/test_verify_registration_response.py and
// tests/test_verify_authentication_response.py, BSD-3-Clause): origin
// http://localhost:5000, RP id localhost. No recorded pair of a registration
// and an assertion by the same credential was found; each is checked alone.

fn b64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

#[test]
fn recorded_none_registration() {
    let reg = parse_registration(
        &b64(
            "o2NmbXRkbm9uZWdhdHRTdG10oGhhdXRoRGF0YVjESZYN5YgOjGh0NBcPZHZgW4_krrmihjLHmVzzuoMdl2NFAAAAFwAAAAAAAAAAAAAAAAAAAAAAQPctcQPE5oNRRJk_nO_371mf7qE7qIodzr0eOf6ACvnMB1oQG165dqutoi1U44shGezu5_gkTjmOPeJO0N8a7P-lAQIDJiABIVggSFbUJF-42Ug3pdM8rDRFu_N5oiVEysPDB6n66r_7dZAiWCDUVnB39FlGypL-qAoIO9xWHtJygo2jfDmHl-_eKFRLDA",
        ),
        &b64(
            "eyJ0eXBlIjoid2ViYXV0aG4uY3JlYXRlIiwiY2hhbGxlbmdlIjoiVHdON240V1R5R0tMYzRaWS1xR3NGcUtuSE00bmdscXN5VjBJQ0psTjJUTzlYaVJ5RnRya2FEd1V2c3FsLWdrTEpYUDZmbkYxTWxyWjUzTW00UjdDdnciLCJvcmlnaW4iOiJodHRwOi8vbG9jYWxob3N0OjUwMDAiLCJjcm9zc09yaWdpbiI6ZmFsc2V9",
        ),
        &b64("TwN7n4WTyGKLc4ZY-qGsFqKnHM4nglqsyV0ICJlN2TO9XiRyFtrkaDwUvsql-gkLJXP6fnF1MlrZ53Mm4R7Cvw"),
        "localhost",
        true,
    )
    .expect("a real none registration parses");
    assert_eq!(
        reg.credential_id,
        b64(
            "9y1xA8Tmg1FEmT-c7_fvWZ_uoTuoih3OvR45_oAK-cwHWhAbXrl2q62iLVTjiyEZ7O7n-CROOY494k7Q3xrs_w"
        )
    );
    assert_eq!(
        Ok(reg.credential.key),
        CoseKey::from_cose(&b64(
            "pQECAyYgASFYIEhW1CRfuNlIN6XTPKw0RbvzeaIlRMrDwwep-uq_-3WQIlgg1FZwd_RZRsqS_qgKCDvcVh7ScoKNo3w5h5fv3ihUSww"
        ))
    );
    assert_eq!(reg.sign_count, 23);
    assert_eq!(reg.aaguid, [0; 16]);
    assert_eq!(reg.flags, Flags(UP | UV | AT));
}

#[test]
fn recorded_packed_registration_with_a_certificate_chain() {
    // A YubiKey's full attestation: the chain is not read (we do not rely on
    // attestation), the credential is.
    let reg = parse_registration(
        &b64(
            "o2NmbXRmcGFja2VkZ2F0dFN0bXSjY2FsZyZjc2lnWEcwRQIhAOfrFlQpbavT6dJeTDJSCDzYSYPjBDHli2-syT2c1IiKAiAx5gQ2z5cHjdQX-jEHTb7JcjfQoVSW8fXszF5ihSgeOGN4NWOBWQLBMIICvTCCAaWgAwIBAgIEKudiYzANBgkqhkiG9w0BAQsFADAuMSwwKgYDVQQDEyNZdWJpY28gVTJGIFJvb3QgQ0EgU2VyaWFsIDQ1NzIwMDYzMTAgFw0xNDA4MDEwMDAwMDBaGA8yMDUwMDkwNDAwMDAwMFowbjELMAkGA1UEBhMCU0UxEjAQBgNVBAoMCVl1YmljbyBBQjEiMCAGA1UECwwZQXV0aGVudGljYXRvciBBdHRlc3RhdGlvbjEnMCUGA1UEAwweWXViaWNvIFUyRiBFRSBTZXJpYWwgNzE5ODA3MDc1MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEKgOGXmBD2Z4R_xCqJVRXhL8Jr45rHjsyFykhb1USGozZENOZ3cdovf5Ke8fj2rxi5tJGn_VnW4_6iQzKdIaeP6NsMGowIgYJKwYBBAGCxAoCBBUxLjMuNi4xLjQuMS40MTQ4Mi4xLjEwEwYLKwYBBAGC5RwCAQEEBAMCBDAwIQYLKwYBBAGC5RwBAQQEEgQQbUS6m_bsLkm5MAyP6SDLczAMBgNVHRMBAf8EAjAAMA0GCSqGSIb3DQEBCwUAA4IBAQByV9A83MPhFWmEkNb4DvlbUwcjc9nmRzJjKxHc3HeK7GvVkm0H4XucVDB4jeMvTke0WHb_jFUiApvpOHh5VyMx5ydwFoKKcRs5x0_WwSWL0eTZ5WbVcHkDR9pSNcA_D_5AsUKOBcbpF5nkdVRxaQHuuIuwV4k1iK2IqtMNcU8vL6w21U261xCcWwJ6sMq4zzVO8QCKCQhsoIaWrwz828GDmPzfAjFsJiLJXuYivdHACkeJ5KHMt0mjVLpfJ2BCML7_rgbmvwL7wBW80VHfNdcKmKjkLcpEiPzwcQQhiN_qHV90t-p4iyr5xRSpurlP5zic2hlRkLKxMH2_kRjhqSn4aGF1dGhEYXRhWMRJlg3liA6MaHQ0Fw9kdmBbj-SuuaKGMseZXPO6gx2XY0UAAAA0bUS6m_bsLkm5MAyP6SDLcwBAsyGQPDZRUYdb4m3rdWeyPaIMYlbmydGp1TP_33vE_lqJ3PHNyTd0iKsnKr5WjnCcBzcesZrDEfB_RBLFzU3k46UBAgMmIAEhWCBAX_i3O3DvBnkGq_uLNk_PeAX5WwO_MIxBp0mhX6Lw7yJYIOW-1-Fch829McWvRUYAHTWZTx5IycKSGECL1UzUaK_8",
        ),
        &b64(
            "eyJ0eXBlIjoid2ViYXV0aG4uY3JlYXRlIiwiY2hhbGxlbmdlIjoiOExCQ2lPWTNxMWNCWkhGQVd0UzRBWlpDaHpHcGh5NjdsSzdJNzB6S2k0eUM3cGdyUTJQY2g3bkFqTGsxd3E5Z3Jlc2hJQXNXMkFqaWJoWGpqSTBUbVEiLCJvcmlnaW4iOiJodHRwOi8vbG9jYWxob3N0OjUwMDAiLCJjcm9zc09yaWdpbiI6ZmFsc2V9",
        ),
        &b64("8LBCiOY3q1cBZHFAWtS4AZZChzGphy67lK7I70zKi4yC7pgrQ2Pch7nAjLk1wq9greshIAsW2AjibhXjjI0TmQ"),
        "localhost",
        false,
    )
    .expect("a real packed registration parses");
    assert_eq!(
        reg.credential_id,
        b64(
            "syGQPDZRUYdb4m3rdWeyPaIMYlbmydGp1TP_33vE_lqJ3PHNyTd0iKsnKr5WjnCcBzcesZrDEfB_RBLFzU3k4w"
        )
    );
    assert!(matches!(reg.credential.key, CoseKey::Es256 { .. }));
}

#[test]
fn recorded_es256_assertion() {
    let cred = WebAuthnCredential {
        rp_id: "localhost".into(),
        key: CoseKey::from_cose(&b64(
            "pQECAyYgASFYIIeDTe-gN8A-zQclHoRnGFWN8ehM1b7yAsa8I8KIvmplIlgg4nFGT5px8o6gpPZZhO01wdy9crDSA_Ngtkx0vGpvPHI",
        ))
        .expect("COSE key"),
    };
    let challenge = b64(
        "xi30GPGAFYRxVDpY1sM10DaLzVQG66nv-_7RUazH0vI2YvG8LYgDEnvN5fZZNVuvEDuMi9te3VLqb42N0fkLGA",
    );
    let assertion = WebAuthnSignature {
        authenticator_data: b64("SZYN5YgOjGh0NBcPZHZgW4_krrmihjLHmVzzuoMdl2MBAAAATg"),
        // An older Firefox: extra fields (clientExtensions, hashAlgorithm), no crossOrigin.
        client_data_json: b64(
            "eyJjaGFsbGVuZ2UiOiJ4aTMwR1BHQUZZUnhWRHBZMXNNMTBEYUx6VlFHNjZudi1fN1JVYXpIMHZJMll2RzhMWWdERW52TjVmWlpOVnV2RUR1TWk5dGUzVkxxYjQyTjBma0xHQSIsImNsaWVudEV4dGVuc2lvbnMiOnt9LCJoYXNoQWxnb3JpdGhtIjoiU0hBLTI1NiIsIm9yaWdpbiI6Imh0dHA6Ly9sb2NhbGhvc3Q6NTAwMCIsInR5cGUiOiJ3ZWJhdXRobi5nZXQifQ",
        ),
        signature: b64(
            "MEUCIGisVZOBapCWbnJJvjelIzwpixxIwkjCCb5aCHafQu68AiEA88v-2pJNNApPFwAKFiNuf82-2hBxYW5kGwVweeoxCwo",
        ),
    };
    let info = assertion
        .verify(&cred, &challenge, false)
        .expect("verifies");
    assert_eq!(info.sign_count, 78);
    // A touch only: refused where a job approval needs user verification.
    assert_eq!(
        assertion.verify(&cred, &challenge, true),
        Err(WebAuthnError::UserNotVerified)
    );
    let mut other = challenge.clone();
    other[0] ^= 1;
    assert_eq!(
        assertion.verify(&cred, &other, false),
        Err(WebAuthnError::ChallengeMismatch)
    );
}

#[test]
fn recorded_eddsa_assertion() {
    let cred = WebAuthnCredential {
        rp_id: "localhost".into(),
        key: CoseKey::from_cose(&b64(
            "pAEBAycgBiFYIMz6_SUFLiDid2Yhlq0YboyJ-CDrIrNpkPUGmJp4D3Dp",
        ))
        .expect("COSE key"),
    };
    let info = verify_assertion(
        &cred,
        &b64("eZ4eeA3O4jy5FIzqDaSJ6JDNGu0bBc5zI1DjQ_kLso1WNqkG6k5mCYf1dtQhVUiBWZWlZkzR5MFeeWCpJRUNXw"),
        &b64("SZYN5YgOjGh0NBcPZHZgW4_krrmihjLHmVzzuoMdl2MBAAAABw"),
        &b64(
            "eyJ0eXBlIjoid2ViYXV0aG4uZ2V0IiwiY2hhbGxlbmdlIjoiZVo0ZWVBM080ank1Rkl6cURhU0o2SkROR3UwYkJjNXpJMURqUV9rTHNvMVdOcWtHNms1bUNZZjFkdFFoVlVpQldaV2xaa3pSNU1GZWVXQ3BKUlVOWHciLCJvcmlnaW4iOiJodHRwOi8vbG9jYWxob3N0OjUwMDAiLCJjcm9zc09yaWdpbiI6ZmFsc2V9",
        ),
        &b64(
            "RRWV8mYDRvK7YdQgdtZD4pJ2dh1D_IWZ_D6jsZo6FHJBoenbj0CVT5nA20vUzlRhN4R6dOEUHmUwP1F8eRBhBg",
        ),
        false,
    )
    .expect("verifies");
    assert_eq!(info.sign_count, 7);
}

// ---------------------------------------------------------------- properties

proptest::proptest! {
    #[test]
    fn random_bytes_never_panic(
        data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        client in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        signature in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
    ) {
        let challenge = [5; 32];
        let honest_client = Ceremony::create(&challenge).client_data_json();
        let _ = parse_registration(&data, &client, &challenge, RP_ID, false);
        // With a valid clientDataJSON the fuzzed CBOR is actually parsed.
        let _ = parse_registration(&data, &honest_client, &challenge, RP_ID, false);
        let _ = CoseKey::from_cose(&data);
        let cred = Authenticator::ed25519(1).credential();
        let _ = verify_assertion(&cred, &challenge, &data, &client, &signature, true);
        let get_client = Ceremony::get(&challenge).client_data_json();
        let _ = verify_assertion(&cred, &challenge, &data, &get_client, &signature, false);
    }

    #[test]
    fn any_bit_flip_in_an_assertion_is_refused(part in 0usize..3, index in 0usize..4096, bit in 0u8..8) {
        let a = Authenticator::p256();
        let challenge = [8; 32];
        let mut s = a.assert(&Ceremony::get(&challenge));
        let bytes = match part {
            0 => &mut s.authenticator_data,
            1 => &mut s.client_data_json,
            _ => &mut s.signature,
        };
        let i = index % bytes.len();
        bytes[i] ^= 1 << bit;
        proptest::prop_assert!(s.verify(&a.credential(), &challenge, true).is_err());
    }
}
