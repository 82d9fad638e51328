//! Approving a job with an approval passkey (issue 5, RFD 0005), over real
//! HTTP against a real server: a software P-256 passkey registered for the
//! approval RP id (`bulwark-approve.localhost`, as `bulwark keys
//! add-passkey` registers it) signs the job's approval challenge in the
//! approval page's origin, and counts toward the quorum; an assertion over
//! another job's challenge, from a passkey the caller does not own, without
//! user verification, or made by a console sign-in passkey is refused with
//! 400 and changes nothing.

#![allow(clippy::unwrap_used)]

#[path = "support/soft_passkey.rs"]
mod soft_passkey;

#[path = "support/live_server.rs"]
mod live_server;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};
use bulwark_agent::connection::{self, ServerAddress};
use bulwark_policy::{
    ActionClass, Holder, JobStatement, OperatorKey, Policy, PublicKey, Quorum, RootKey, Signed,
    TrustRoot,
};
use bulwark_protocol::token::EnrollToken;
use bulwark_server::now_millis;
use ed25519_dalek::SigningKey;
use live_server::{PASSWORD, Reply};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use soft_passkey::{SoftPasskey, UP, with};
use totp_rs::{Algorithm, Secret, TOTP};

fn now_secs() -> u64 {
    u64::try_from(now_millis() / 1000).unwrap()
}

fn totp_code(secret: &str, at_secs: u64) -> String {
    let bytes = Secret::Encoded(secret.to_owned()).to_bytes().unwrap();
    TOTP::new_unchecked(Algorithm::SHA1, 6, 1, 30, bytes, None, String::new()).generate(at_secs)
}

/// The shared in-process server, with bearer tokens as `&str` ("" for none).
struct Server(live_server::Server);

impl std::ops::Deref for Server {
    type Target = live_server::Server;

    fn deref(&self) -> &live_server::Server {
        &self.0
    }
}

impl Server {
    async fn start() -> Self {
        Self(live_server::Server::start().await)
    }

    async fn send(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Reply {
        let token = (!token.is_empty()).then_some(token);
        self.0.send(method, path, token, body).await
    }

    async fn ok(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Value {
        let token = (!token.is_empty()).then_some(token);
        self.0.ok(method, path, token, body).await
    }

    /// Confirms an enrolment with the code of now and signs in with the
    /// next step's code: a bearer token with a fresh MFA check.
    async fn confirm_and_login(&self, path: &str, started: &Value, username: &str) -> String {
        let secret = started["totp_secret"].as_str().unwrap();
        self.ok(
            Method::POST,
            path,
            "",
            Some(json!({"enrolment_id": started["enrolment_id"], "otp": totp_code(secret, now_secs())})),
        )
        .await;
        let login = self
            .ok(
                Method::POST,
                "/api/v1/auth/login",
                "",
                Some(json!({"username": username, "password": PASSWORD, "otp": totp_code(secret, now_secs() + 30)})),
            )
            .await;
        login["token"].as_str().unwrap().to_owned()
    }

    async fn register_passkey(&self, token: &str, key: &SoftPasskey, name: &str) -> Value {
        let options = self
            .ok(
                Method::POST,
                "/api/v1/passkeys/registration/options",
                token,
                None,
            )
            .await;
        self.ok(
            Method::POST,
            "/api/v1/passkeys/registration",
            token,
            Some(with(key.create(&options), json!({"name": name}))),
        )
        .await
    }

    async fn enrol_device(&self, token: &str, tenant: &str) -> String {
        let issued = self
            .ok(
                Method::POST,
                &format!("/api/v1/tenants/{tenant}/enrollment-tokens"),
                token,
                Some(json!({})),
            )
            .await;
        let token = EnrollToken::parse(issued["token"].as_str().unwrap()).unwrap();
        let address = ServerAddress::parse(&self.server.gateway_url).unwrap();
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        connection::enroll(&address, &token, &key, "host-acme")
            .await
            .unwrap()
            .device_id
            .to_string()
    }
}

/// The approval challenge of `job` (a JobView): what an approval signs.
fn approval_challenge(job: &Value) -> Vec<u8> {
    let envelope = Signed::from_bytes(
        &B64.decode(job["envelope"].as_str().unwrap()).unwrap(),
        &bulwark_policy::Limits::default(),
    )
    .unwrap();
    envelope.approval_challenge().to_vec()
}

/// The assertion body of an approval by `key` over `challenge`.
fn approval(key: &mut SoftPasskey, key_id: &str, challenge: &[u8]) -> Value {
    let challenge = URL_SAFE_NO_PAD.encode(challenge);
    let got = key.get(&json!({"ceremony": "unused", "publicKey": {"challenge": challenge}}));
    json!({
        "key_id": key_id,
        "webauthn": {
            "authenticator_data": got["authenticatorData"],
            "client_data_json": got["clientDataJSON"],
            "signature": got["signature"],
        }
    })
}

fn job_envelope(tenant_id: &str, tenant_name: &str, device: &str, operator: &SigningKey) -> Signed {
    use sha2::Digest;
    let now = now_secs();
    let mut job_id = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut job_id);
    let statement = JobStatement {
        tenant: tenant_id.to_owned(),
        job_id,
        targets: vec![bulwark_policy::JobTarget {
            device_id: device.to_owned(),
            hostname: format!("host-{tenant_name}"),
            device_key: None,
        }],
        class: ActionClass::RunScript,
        action: bulwark_policy::JobAction::RunScript {
            interpreter: bulwark_policy::Interpreter::Sh,
            script_sha256: bulwark_policy::policy::ScriptHash(sha2::Sha256::digest(b"true").into()),
        },
        not_before: now - 60,
        expires_at: now + 3600,
        nonce: job_id,
        reason: "passkey approvals".into(),
        timeout_secs: 60,
        tenant_name: tenant_name.to_owned(),
    };
    let mut signed = Signed::new(&statement);
    signed.sign(operator);
    signed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkey_approval_counts_and_forgeries_are_refused() {
    let s = Server::start().await;
    // The owner (requester, Ed25519 key) and a technician (approver, passkey).
    let code = s.server.setup_code.clone().unwrap();
    let started = s
        .ok(
            Method::POST,
            "/api/v1/setup",
            "",
            Some(json!({"code": code, "username": "olivia", "password": PASSWORD})),
        )
        .await;
    let owner = s
        .confirm_and_login("/api/v1/setup/confirm", &started, "olivia")
        .await;
    s.ok(
        Method::POST,
        "/api/v1/tenants",
        &owner,
        Some(json!({"name": "acme"})),
    )
    .await;
    let invited = s
        .ok(
            Method::POST,
            "/api/v1/invitations",
            &owner,
            Some(json!({"username": "tess", "role": "technician", "tenants": ["acme"]})),
        )
        .await;
    let redeemed = s
        .ok(
            Method::POST,
            "/api/v1/invitations/redeem",
            "",
            Some(json!({"token": invited["token"], "password": PASSWORD})),
        )
        .await;
    let tess = s
        .confirm_and_login("/api/v1/invitations/confirm", &redeemed, "tess")
        .await;

    // Approval passkeys: tess's ("laptop") and the owner's (which tess does
    // not own), registered as `bulwark keys add-passkey` does; and tess's
    // console sign-in passkey, which never approves.
    const APPROVAL_ORIGIN: &str = "http://bulwark-approve.localhost:41234";
    let register = |token: String, key: &SoftPasskey, name: &str| {
        let credential = key.webauthn_credential();
        let body = json!({
            "name": name,
            "webauthn_credential": B64.encode(bulwark_protocol::codec::to_canonical(&credential)),
        });
        let s = &s;
        async move {
            s.ok(Method::POST, "/api/v1/signing-keys", &token, Some(body))
                .await
        }
    };
    let mut tess_key = SoftPasskey::new(APPROVAL_ORIGIN);
    let registered = register(tess.clone(), &tess_key, "tess laptop").await;
    let tess_key_id = registered["key_id"].as_str().unwrap().to_owned();
    let policy_key = PublicKey::WebAuthn(tess_key.webauthn_credential());
    assert_eq!(tess_key_id, hex::encode(policy_key.id().0));
    let mut owner_key = SoftPasskey::new(APPROVAL_ORIGIN);
    let owner_key_id = register(owner.clone(), &owner_key, "owner key").await["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut console_key = SoftPasskey::new(&s.origin);
    s.register_passkey(&tess, &console_key, "console").await;
    let console_public = PublicKey::WebAuthn(console_key.webauthn_credential());
    // The server refuses a console credential as a signing key.
    let reply = s
        .send(
            Method::POST,
            "/api/v1/signing-keys",
            &tess,
            Some(json!({
                "name": "console as signer",
                "webauthn_credential": B64.encode(bulwark_protocol::codec::to_canonical(&console_key.webauthn_credential())),
            })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);

    // acme: a root, a policy with the owner's Ed25519 key and tess's passkey,
    // run-script needing both.
    let tenant_id = s
        .ok(Method::GET, "/api/v1/tenants/acme/trust", &owner, None)
        .await["tenant_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let root_key = SigningKey::generate(&mut rand::rngs::OsRng);
    let operator_key = SigningKey::generate(&mut rand::rngs::OsRng);
    s.ok(
        Method::POST,
        "/api/v1/signing-keys",
        &owner,
        Some(json!({"name": "owner laptop", "public_key": B64.encode(operator_key.verifying_key().to_bytes())})),
    )
    .await;
    let root = TrustRoot {
        tenant: tenant_id.clone(),
        version: 1,
        threshold: 1,
        keys: vec![RootKey {
            key: PublicKey::Ed25519(root_key.verifying_key().to_bytes()),
            holder: Holder::Msp,
            name: "root".into(),
        }],
    };
    let operator = |key: PublicKey, name: &str| OperatorKey {
        key,
        name: name.into(),
        holder: Holder::Msp,
        classes: vec![ActionClass::RunScript],
    };
    let policy = Policy {
        tenant: tenant_id.clone(),
        version: 1,
        expires_at: now_secs() + 86_400,
        operators: vec![
            operator(
                PublicKey::Ed25519(operator_key.verifying_key().to_bytes()),
                "owner laptop",
            ),
            operator(policy_key, "tess laptop"),
        ],
        quorums: vec![Quorum {
            class: ActionClass::RunScript,
            signers: 2,
            customer_required: false,
            in_window_only: false,
        }],
        fan_out_limit: 10,
        allowed_scripts: Vec::new(),
        maintenance_windows: Vec::new(),
        tenant_name: None,
        witnessing: None,
        mass_action_delay: None,
        checks: None,
        revoked_schedules: None,
        device_groups: None,
        shell_notice: None,
    };
    // Listed by deceit (root holders who went around the CLI), a console
    // credential makes the policy malformed: the server does not store it.
    let mut deceit = policy.clone();
    deceit
        .operators
        .push(operator(console_public.clone(), "tess console"));
    let signed = |statement: Signed| {
        let mut statement = statement;
        statement.sign(&root_key);
        json!({"envelope": B64.encode(statement.to_bytes())})
    };
    s.ok(
        Method::POST,
        "/api/v1/tenants/acme/trust/roots",
        &owner,
        Some(signed(Signed::new(&root))),
    )
    .await;
    let reply = s
        .send(
            Method::POST,
            "/api/v1/tenants/acme/trust/policy",
            &owner,
            Some(signed(Signed::new(&deceit))),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert!(
        reply.body.to_string().contains("only approval passkeys"),
        "{}",
        reply.body
    );
    s.ok(
        Method::POST,
        "/api/v1/tenants/acme/trust/policy",
        &owner,
        Some(signed(Signed::new(&policy))),
    )
    .await;
    let device = s.enrol_device(&owner, "acme").await;
    let mut jobs = Vec::new();
    for _ in 0..2 {
        let envelope = job_envelope(&tenant_id, "acme", &device, &operator_key);
        let job = s
            .ok(
                Method::POST,
                "/api/v1/tenants/acme/jobs",
                &owner,
                Some(json!({"envelope": B64.encode(envelope.to_bytes()), "script": "true"})),
            )
            .await;
        assert_eq!(job["state"], "pending", "{job}");
        assert_eq!(job["quorum"]["have"], 1, "{job}");
        jobs.push(job);
    }
    // An install-patches job naming an option-like package: refused as
    // malformed (`JobStatement::validate`, the agents' step 2), never stored.
    let mut statement: JobStatement = job_envelope(&tenant_id, "acme", &device, &operator_key)
        .statement(&bulwark_policy::Limits::default())
        .unwrap();
    statement.class = ActionClass::InstallPatches;
    statement.action = bulwark_policy::JobAction::InstallPatches {
        packages: vec!["-oAPT::Update::Pre-Invoke::=id".into()],
    };
    let mut patch = Signed::new(&statement);
    patch.sign(&operator_key);
    let reply = s
        .send(
            Method::POST,
            "/api/v1/tenants/acme/jobs",
            &owner,
            Some(json!({"envelope": B64.encode(patch.to_bytes()), "script": ""})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not a Debian package name")),
        "{}",
        reply.body
    );
    let (job, other) = (&jobs[0], &jobs[1]);
    let id = job["id"].as_str().unwrap();
    let path = format!("/api/v1/jobs/{id}/approvals");
    let challenge = approval_challenge(job);

    let refused = |reply: Reply, what: &str| {
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            reply.body
        );
        reply.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    // (a) An assertion over another job's challenge.
    let body = approval(&mut tess_key, &tess_key_id, &approval_challenge(other));
    let message = refused(
        s.send(Method::POST, &path, &tess, Some(body)).await,
        "another job's challenge",
    );
    assert!(message.contains("another challenge"), "{message}");
    // (b) A passkey tess does not own (the owner's), named as such ...
    let body = approval(&mut owner_key, &owner_key_id, &challenge);
    let message = refused(
        s.send(Method::POST, &path, &tess, Some(body)).await,
        "someone else's passkey",
    );
    assert!(message.contains("not one of your"), "{message}");
    // ... or passed off as tess's own.
    let body = approval(&mut owner_key, &tess_key_id, &challenge);
    let message = refused(
        s.send(Method::POST, &path, &tess, Some(body)).await,
        "an assertion by another credential under tess's key id",
    );
    assert!(message.contains("does not verify"), "{message}");
    // (c) Without user verification.
    tess_key.flags = UP;
    let body = approval(&mut tess_key, &tess_key_id, &challenge);
    let message = refused(
        s.send(Method::POST, &path, &tess, Some(body)).await,
        "no user verification",
    );
    assert!(message.contains("UV flag"), "{message}");
    tess_key.flags = UP | soft_passkey::UV;
    let unchanged = s
        .ok(Method::GET, &format!("/api/v1/jobs/{id}"), &tess, None)
        .await;
    assert_eq!(unchanged["state"], "pending");
    assert_eq!(unchanged["signers"].as_array().unwrap().len(), 1);

    // (d) tess's console sign-in passkey, over the approval challenge or
    // over the digest a server could have given a sign-in ceremony.
    let console_id = hex::encode(console_public.id().0);
    let digest = hex::decode(job["challenge"].as_str().unwrap()).unwrap();
    for signed_over in [&challenge, &digest] {
        let body = approval(&mut console_key, &console_id, signed_over);
        let message = refused(
            s.send(Method::POST, &path, &tess, Some(body)).await,
            "a console sign-in passkey",
        );
        assert!(message.contains("not one of your"), "{message}");
    }
    // (e) An approval passkey's assertion over the digest (what a sign-in
    // ceremony could have been given), not the approval challenge.
    let body = approval(&mut tess_key, &tess_key_id, &digest);
    let message = refused(
        s.send(Method::POST, &path, &tess, Some(body)).await,
        "the plain digest",
    );
    assert!(message.contains("another challenge"), "{message}");

    // The requester cannot approve with a passkey either.
    let body = approval(&mut owner_key, &owner_key_id, &challenge);
    let reply = s.send(Method::POST, &path, &owner, Some(body)).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);

    // The real approval counts: two of two, approved, signed by "tess laptop".
    let body = approval(&mut tess_key, &tess_key_id, &challenge);
    let approved = s.ok(Method::POST, &path, &tess, Some(body)).await;
    assert_eq!(approved["state"], "approved", "{approved}");
    assert_eq!(approved["quorum"]["have"], 2, "{approved}");
    assert!(
        approved["signers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "tess laptop" && s["key_id"] == tess_key_id.as_str()),
        "{approved}"
    );
    // The stored envelope carries the assertion, and the policy code agrees.
    let envelope = Signed::from_bytes(
        &B64.decode(approved["envelope"].as_str().unwrap()).unwrap(),
        &bulwark_policy::Limits::default(),
    )
    .unwrap();
    let statement: JobStatement = envelope
        .statement(&bulwark_policy::Limits::default())
        .unwrap();
    bulwark_policy::check_quorum(&envelope, &statement, &policy, now_secs()).unwrap();
    // The approval passkey is one of tess's signing keys (kind webauthn).
    let keys = s.ok(Method::GET, "/api/v1/signing-keys", &tess, None).await;
    assert!(
        keys.as_array()
            .unwrap()
            .iter()
            .any(|k| k["key_id"] == tess_key_id.as_str() && k["kind"] == "webauthn"),
        "{keys}"
    );
    // Approving twice is a conflict, not a second signature.
    let body = approval(&mut tess_key, &tess_key_id, &challenge);
    let reply = s.send(Method::POST, &path, &tess, Some(body)).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
}
