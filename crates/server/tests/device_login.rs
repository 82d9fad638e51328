//! `bulwark login --device` (RFC 8628) and grants editing, over real HTTP
//! against a real server (in process): a CLI's code approved with a
//! software passkey, single use, denied, throttled; an owner's grant
//! changes taking effect on the operator's very next request.
#![allow(clippy::unwrap_used, dead_code, unused_imports)]

#[path = "support/soft_passkey.rs"]
mod soft_passkey;

use std::time::Duration;

use bulwark_server::auth::session::new_token;
use bulwark_server::{RunningServer, ServerConfig, now_millis};
use bulwark_store::{NewSession, SessionKind};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use soft_passkey::{SoftPasskey, UP, with};
use totp_rs::{Algorithm, Secret, TOTP};

const PASSWORD: &str = "correct horse battery staple 42";

/// An account's TOTP authenticator: each code from a later time step than
/// the last (the server accepts a step once per account).
struct Totp {
    secret: String,
    last_step: u64,
}

impl Totp {
    fn new(secret: &str) -> Self {
        Self {
            secret: secret.to_owned(),
            last_step: 0,
        }
    }

    /// The code [`Totp::next`] would give, without spending its step (for
    /// a request the server refuses before looking at the code).
    fn peek(&self) -> String {
        let now = u64::try_from(now_millis() / 1000).unwrap();
        let step = (self.last_step + 1).max(now / 30);
        let bytes = Secret::Encoded(self.secret.clone()).to_bytes().unwrap();
        TOTP::new_unchecked(Algorithm::SHA1, 6, 1, 30, bytes, None, String::new())
            .generate(step * 30)
    }

    async fn next(&mut self) -> String {
        loop {
            let now = u64::try_from(now_millis() / 1000).unwrap();
            let current = now / 30;
            let oldest = if now % 30 >= 25 { current } else { current - 1 };
            let step = (self.last_step + 1).max(oldest);
            if step <= current + 1 {
                self.last_step = step;
                let bytes = Secret::Encoded(self.secret.clone()).to_bytes().unwrap();
                return TOTP::new_unchecked(Algorithm::SHA1, 6, 1, 30, bytes, None, String::new())
                    .generate(step * 30);
            }
            tokio::time::sleep(Duration::from_secs(30 - now % 30) + Duration::from_millis(100))
                .await;
        }
    }
}

struct Server {
    server: RunningServer,
    /// `http://localhost:PORT`: the browser's origin.
    origin: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    body: Value,
}

impl Server {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig::quickstart(
            dir.path().join("data"),
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        );
        let server = bulwark_server::start(config).await.unwrap();
        let origin = server.console_url.trim_end_matches('/').to_owned();
        assert!(origin.starts_with("http://localhost:"), "{origin}");
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Self {
            server,
            origin,
            http,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        // The origin names localhost; connect to the loopback address it means.
        format!("{}{path}", self.origin.replace("localhost", "127.0.0.1"))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let bytes = response.bytes().await.unwrap();
        Reply {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(Method::POST, path, token, Some(body)).await
    }

    async fn ok(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let reply = self.send(method.clone(), path, token, body).await;
        assert!(
            reply.status.is_success(),
            "{method} {path}: {} {}",
            reply.status,
            reply.body
        );
        reply.body
    }

    /// The first owner, `olivia`: its TOTP and a bearer token.
    async fn owner(&self) -> (Totp, String) {
        let code = self.server.setup_code.clone().unwrap();
        let started = self
            .ok(
                Method::POST,
                "/api/v1/setup",
                None,
                Some(json!({"code": code, "username": "olivia", "password": PASSWORD})),
            )
            .await;
        let mut totp = Totp::new(started["totp_secret"].as_str().unwrap());
        let otp = totp.next().await;
        self.ok(
            Method::POST,
            "/api/v1/setup/confirm",
            None,
            Some(json!({"enrolment_id": started["enrolment_id"], "otp": otp})),
        )
        .await;
        let token = self.login_totp("olivia", &mut totp).await;
        (totp, token)
    }

    async fn login_totp(&self, username: &str, totp: &mut Totp) -> String {
        let otp = totp.next().await;
        let reply = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"username": username, "password": PASSWORD, "otp": otp}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body["token"].as_str().unwrap().to_owned()
    }

    /// An operator invited by `owner` as `role` on a new tenant, through the
    /// real invitation flow: its TOTP.
    async fn operator(&self, owner: &str, username: &str, role: &str, tenant: &str) -> Totp {
        self.ok(
            Method::POST,
            "/api/v1/tenants",
            Some(owner),
            Some(json!({"name": tenant})),
        )
        .await;
        let invited = self
            .ok(
                Method::POST,
                "/api/v1/invitations",
                Some(owner),
                Some(json!({"username": username, "role": role, "tenants": [tenant]})),
            )
            .await;
        let started = self
            .ok(
                Method::POST,
                "/api/v1/invitations/redeem",
                None,
                Some(json!({"token": invited["token"], "password": PASSWORD})),
            )
            .await;
        let mut totp = Totp::new(started["totp_secret"].as_str().unwrap());
        let otp = totp.next().await;
        self.ok(
            Method::POST,
            "/api/v1/invitations/confirm",
            None,
            Some(json!({"enrolment_id": started["enrolment_id"], "otp": otp})),
        )
        .await;
        totp
    }

    /// Registers `key` as `name` for the session `token`.
    async fn register(&self, token: &str, key: &SoftPasskey, name: &str) -> Reply {
        let options = self
            .ok(
                Method::POST,
                "/api/v1/passkeys/registration/options",
                Some(token),
                None,
            )
            .await;
        self.post(
            "/api/v1/passkeys/registration",
            Some(token),
            with(key.create(&options), json!({"name": name})),
        )
        .await
    }

    async fn login_options(&self, username: &str) -> Value {
        self.ok(
            Method::POST,
            "/api/v1/auth/passkey/options",
            None,
            Some(json!({"username": username})),
        )
        .await
    }

    /// Password and an assertion (already made) in one login request.
    async fn login_passkey(&self, username: &str, password: &str, assertion: Value) -> Reply {
        self.post(
            "/api/v1/auth/passkey/login",
            None,
            with(
                assertion,
                json!({"username": username, "password": password}),
            ),
        )
        .await
    }

    /// A full passkey login: a bearer token.
    async fn sign_in_with(&self, username: &str, key: &mut SoftPasskey) -> String {
        let options = self.login_options(username).await;
        let reply = self
            .login_passkey(username, PASSWORD, key.get(&options))
            .await;
        if reply.status != StatusCode::OK {
            let events = self.audit().await;
            panic!(
                "passkey login as {username}: {} {}; last audit events: {:?}",
                reply.status,
                reply.body,
                &events[..events.len().min(4)]
            );
        }
        reply.body["token"].as_str().unwrap().to_owned()
    }

    async fn operator_id(&self, username: &str) -> String {
        self.server
            .store
            .operator_by_username(username)
            .await
            .unwrap()
            .unwrap()
            .id
    }

    /// A session of `username` whose MFA check is 10 minutes old.
    async fn stale_session(&self, username: &str) -> String {
        self.session_with_mfa_at(username, now_millis() - 600_000)
            .await
    }

    /// A session of `username` (signed in without a passkey) whose MFA
    /// check was at `mfa_at`.
    async fn session_with_mfa_at(&self, username: &str, mfa_at: i64) -> String {
        let now = now_millis();
        let (token, hash) = new_token();
        self.server
            .store
            .create_session(NewSession {
                id_hash: hash,
                operator_id: self.operator_id(username).await,
                kind: SessionKind::Cli,
                csrf_token: "unused".to_owned(),
                created_at: now - 600_000,
                expires_at: now + 3_600_000,
                mfa_at,
                ip: None,
                user_agent: None,
            })
            .await
            .unwrap();
        token
    }

    async fn audit(&self) -> Vec<(String, String)> {
        self.server
            .store
            .list_audit(&bulwark_store::TenantScope::All, None, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.action, e.detail))
            .collect()
    }
}

impl Server {
    async fn start_device(&self) -> Value {
        self.ok(Method::POST, "/api/v1/auth/device", None, Some(json!({})))
            .await
    }

    async fn poll(&self, device_code: &Value) -> Reply {
        self.post(
            "/api/v1/auth/device/token",
            None,
            json!({"device_code": device_code, "grant_type": "urn:ietf:params:oauth:grant-type:device_code"}),
        )
        .await
    }

    /// Approves `user_code` as the session `token` with `key`.
    async fn approve(&self, token: &str, key: &mut SoftPasskey, user_code: &str) -> Reply {
        let options = self
            .post(
                "/api/v1/auth/device/approve/options",
                Some(token),
                json!({"user_code": user_code}),
            )
            .await;
        assert_eq!(options.status, StatusCode::OK, "{}", options.body);
        self.post(
            "/api/v1/auth/device/approve",
            Some(token),
            with(key.get(&options.body), json!({"user_code": user_code})),
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_login_is_approved_with_a_passkey_once() {
    let s = Server::start().await;
    let (_totp, owner) = s.owner().await;
    let mut key = SoftPasskey::new(&s.origin);
    let added = s.register(&owner, &key, "laptop").await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);

    // 1. The CLI asks: RFC 8628 §3.2.
    let started = s.start_device().await;
    let user_code = started["user_code"].as_str().unwrap().to_owned();
    assert_eq!(user_code.len(), 9, "{user_code}");
    assert_eq!(&user_code[4..5], "-");
    assert_eq!(started["verification_uri"], "/device");
    assert_eq!(started["expires_in"], 600);
    assert_eq!(started["interval"], 5);
    let device_code = started["device_code"].clone();

    // 2. Pending, then too fast.
    let pending = s.poll(&device_code).await;
    assert_eq!(pending.status, StatusCode::BAD_REQUEST);
    assert_eq!(pending.body["error"], "authorization_pending");
    let fast = s.poll(&device_code).await;
    assert_eq!(fast.body["error"], "slow_down");

    // 3. A step-up assertion (another ceremony) does not approve it, nor a
    //    TOTP-only session without a passkey (no options at all).
    let step_up = s
        .ok(
            Method::POST,
            "/api/v1/auth/step-up/passkey/options",
            Some(&owner),
            None,
        )
        .await;
    let wrong = s
        .post(
            "/api/v1/auth/device/approve",
            Some(&owner),
            with(key.get(&step_up), json!({"user_code": user_code})),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{}", wrong.body);
    assert_eq!(wrong.body["error"]["code"], "passkey_rejected");
    let tech_totp = s.operator(&owner, "tess", "technician", "acme").await;
    let mut tech_totp = tech_totp;
    let tech = s.login_totp("tess", &mut tech_totp).await;
    let no_passkey = s
        .post(
            "/api/v1/auth/device/approve/options",
            Some(&tech),
            json!({"user_code": user_code}),
        )
        .await;
    assert_eq!(
        no_passkey.status,
        StatusCode::CONFLICT,
        "{}",
        no_passkey.body
    );

    // 4. Approved with a fresh passkey assertion (typed in lower case).
    let approved = s.approve(&owner, &mut key, &user_code.to_lowercase()).await;
    assert_eq!(approved.status, StatusCode::NO_CONTENT, "{}", approved.body);
    let events = s.audit().await;
    assert!(
        events
            .iter()
            .any(|(a, d)| a == "session.device_approved" && d.contains(&user_code)),
        "{events:?}"
    );
    // Approved once: the code no longer names a pending sign-in.
    let again = s
        .post(
            "/api/v1/auth/device/approve/options",
            Some(&owner),
            json!({"user_code": user_code}),
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);

    // 5. The token, once: a CLI session of the owner, MFA at the approval.
    tokio::time::sleep(Duration::from_millis(5_100)).await;
    let issued = s.poll(&device_code).await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    assert_eq!(issued.body["token_type"], "Bearer");
    let cli = issued.body["access_token"].as_str().unwrap().to_owned();
    let tenants = s.ok(Method::GET, "/api/v1/tenants", Some(&cli), None).await;
    assert_eq!(tenants.as_array().unwrap().len(), 1, "{tenants}");
    let session = s
        .server
        .store
        .session(bulwark_server::auth::session::hash_token(&cli))
        .await
        .unwrap()
        .unwrap()
        .0;
    assert_eq!(session.kind, SessionKind::Cli);
    assert!(now_millis() - session.mfa_at < 60_000);
    assert!(session.mfa_at <= session.created_at);
    // Fresh MFA: a privileged action works at once.
    let token = s
        .post(
            "/api/v1/invitations",
            Some(&cli),
            json!({"username": "ivan", "role": "read_only", "tenants": ["acme"]}),
        )
        .await;
    assert_eq!(token.status, StatusCode::CREATED, "{}", token.body);
    let reused = s.poll(&device_code).await;
    assert_eq!(reused.body["error"], "invalid_grant", "single use");

    // 6. Denied: `access_denied`, then gone.
    let started = s.start_device().await;
    let denied = s
        .post(
            "/api/v1/auth/device/deny",
            Some(&owner),
            json!({"user_code": started["user_code"]}),
        )
        .await;
    assert_eq!(denied.status, StatusCode::NO_CONTENT, "{}", denied.body);
    let refused = s.poll(&started["device_code"]).await;
    assert_eq!(refused.body["error"], "access_denied");
    assert_eq!(
        s.poll(&started["device_code"]).await.body["error"],
        "invalid_grant"
    );

    // 7. Wrong codes: 5 (the used one asked again above was the first),
    //    then locked out, even for a right one.
    let started = s.start_device().await;
    for _ in 0..4 {
        let wrong = s
            .post(
                "/api/v1/auth/device/approve/options",
                Some(&owner),
                json!({"user_code": "BBBB-BBBB"}),
            )
            .await;
        assert_eq!(wrong.status, StatusCode::NOT_FOUND, "{}", wrong.body);
    }
    let locked = s
        .post(
            "/api/v1/auth/device/approve/options",
            Some(&owner),
            json!({"user_code": started["user_code"]}),
        )
        .await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        locked.body
    );
    // Malformed codes never reach a lookup.
    let malformed = s
        .post(
            "/api/v1/auth/device/deny",
            Some(&tech),
            json!({"user_code": "0000"}),
        )
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);

    // 8. The public start is capped per address.
    let mut capped = None;
    for _ in 0..40 {
        let reply = s.post("/api/v1/auth/device", None, json!({})).await;
        if reply.status != StatusCode::OK {
            capped = Some(reply.status);
            break;
        }
    }
    assert_eq!(capped, Some(StatusCode::TOO_MANY_REQUESTS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_changes_apply_on_the_next_request() {
    let s = Server::start().await;
    let (_totp, owner) = s.owner().await;
    let mut totp = s.operator(&owner, "tess", "technician", "alpha").await;
    s.ok(
        Method::POST,
        "/api/v1/tenants",
        Some(&owner),
        Some(json!({"name": "bravo"})),
    )
    .await;
    let tech = s.login_totp("tess", &mut totp).await;
    let id = s.operator_id("tess").await;
    let devices_b = "/api/v1/tenants/bravo/devices";
    assert_eq!(
        s.send(Method::GET, devices_b, Some(&tech), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Add read-only on bravo: the same session sees it at once.
    let grants = format!("/api/v1/operators/{id}/grants");
    let changed = s
        .ok(
            Method::PUT,
            &grants,
            Some(&owner),
            Some(json!({"grants": [
                {"tenant": "alpha", "role": "technician"},
                {"tenant": "bravo", "role": "read_only"}
            ]})),
        )
        .await;
    assert_eq!(
        changed["before"],
        json!([{"tenant": "alpha", "role": "technician"}])
    );
    assert_eq!(changed["after"].as_array().unwrap().len(), 2);
    assert_eq!(
        s.send(Method::GET, devices_b, Some(&tech), None)
            .await
            .status,
        StatusCode::OK
    );
    // Read-only there: no enrolment tokens on bravo, still on alpha.
    assert_eq!(
        s.post(
            "/api/v1/tenants/bravo/enrollment-tokens",
            Some(&tech),
            json!({})
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );

    // A non-owner cannot change grants, not even its own.
    let own = s
        .send(
            Method::PUT,
            &grants,
            Some(&tech),
            Some(json!({"grants": [{"tenant": "bravo", "role": "technician"}]})),
        )
        .await;
    assert_eq!(own.status, StatusCode::FORBIDDEN, "{}", own.body);

    // Remove bravo again: gone on the next request.
    s.ok(
        Method::PUT,
        &grants,
        Some(&owner),
        Some(json!({"grants": [{"tenant": "alpha", "role": "technician"}]})),
    )
    .await;
    assert_eq!(
        s.send(Method::GET, devices_b, Some(&tech), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let events = s.audit().await;
    assert!(
        events.iter().any(|(a, d)| a == "operator.grants_changed"
            && d == "before=[alpha:technician,bravo:read_only] after=[alpha:technician]"),
        "{events:?}"
    );
    // Bad lists: unknown role, a tenant twice, an owner's grants.
    for body in [
        json!({"grants": [{"tenant": "alpha", "role": "owner"}]}),
        json!({"grants": [{"tenant": "alpha", "role": "technician"}, {"tenant": "alpha", "role": "read_only"}]}),
        json!({"grants": [{"tenant": "alpha", "role": "tenant_auditor"}, {"tenant": "bravo", "role": "read_only"}]}),
    ] {
        let bad = s.send(Method::PUT, &grants, Some(&owner), Some(body)).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    }
    let owner_id = s.operator_id("olivia").await;
    let owners = s
        .send(
            Method::PUT,
            &format!("/api/v1/operators/{owner_id}/grants"),
            Some(&owner),
            Some(json!({"grants": []})),
        )
        .await;
    assert_eq!(owners.status, StatusCode::CONFLICT);

    // The console's grants page: the same change as a form.
    let (cookie, hash) = new_token();
    let now = now_millis();
    s.server
        .store
        .create_session(NewSession {
            id_hash: hash,
            operator_id: owner_id.clone(),
            kind: SessionKind::Browser,
            csrf_token: "csrf-token".to_owned(),
            created_at: now,
            expires_at: now + 3_600_000,
            mfa_at: now,
            ip: None,
            user_agent: None,
        })
        .await
        .unwrap();
    let page = s
        .http
        .get(s.url(&format!("/operators/{id}/grants")))
        .header("cookie", format!("bulwark_session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("name=\"role:bravo\""), "{html}");
    let saved = s
        .http
        .post(s.url(&format!("/operators/{id}/grants")))
        .header("cookie", format!("bulwark_session={cookie}"))
        .form(&[
            ("csrf", "csrf-token"),
            ("role:alpha", "technician"),
            ("role:bravo", "technician"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), StatusCode::OK);
    assert!(saved.text().await.unwrap().contains("Grants saved."));
    assert_eq!(
        s.send(Method::GET, devices_b, Some(&tech), None)
            .await
            .status,
        StatusCode::OK
    );
    let device_page = s
        .http
        .get(s.url("/device?code=BCDF-GHJK"))
        .header("cookie", format!("bulwark_session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(device_page.status(), StatusCode::OK);
    assert!(
        device_page
            .text()
            .await
            .unwrap()
            .contains("value=\"BCDF-GHJK\"")
    );

    // Passkey reset: every passkey gone, the operator's sessions ended.
    let key = SoftPasskey::new(&s.origin);
    assert_eq!(
        s.register(&tech, &key, "lost").await.status,
        StatusCode::CREATED
    );
    let reset = s
        .send(
            Method::DELETE,
            &format!("/api/v1/operators/{id}/passkeys"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(reset.status, StatusCode::NO_CONTENT, "{}", reset.body);
    assert_eq!(s.server.store.passkey_count(&id).await.unwrap(), 0);
    assert_eq!(
        s.send(Method::GET, "/api/v1/tenants", Some(&tech), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let events = s.audit().await;
    assert!(
        events.iter().any(|(a, _)| a == "operator.passkeys_reset"),
        "{events:?}"
    );
}
