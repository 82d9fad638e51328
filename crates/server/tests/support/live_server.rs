//! A real server in process over real HTTP, its first owner and operators
//! with TOTP, and sessions made directly in the store: shared by the
//! passkey and device sign-in tests (each includes `soft_passkey.rs` as
//! `soft_passkey` first).

#![allow(dead_code, unused_imports)]

use std::time::Duration;

use super::soft_passkey::{SoftPasskey, UP, with};
use bulwark_server::auth::session::new_token;
use bulwark_server::{RunningServer, ServerConfig, now_millis};
use bulwark_store::{NewSession, SessionKind};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use totp_rs::{Algorithm, Secret, TOTP};

pub const PASSWORD: &str = "correct horse battery staple 42";

/// An account's TOTP authenticator: each code from a later time step than
/// the last (the server accepts a step once per account).
pub struct Totp {
    pub secret: String,
    pub last_step: u64,
}

impl Totp {
    pub fn new(secret: &str) -> Self {
        Self {
            secret: secret.to_owned(),
            last_step: 0,
        }
    }

    /// The code [`Totp::next`] would give, without spending its step (for
    /// a request the server refuses before looking at the code).
    pub fn peek(&self) -> String {
        let now = u64::try_from(now_millis() / 1000).unwrap();
        let step = (self.last_step + 1).max(now / 30);
        let bytes = Secret::Encoded(self.secret.clone()).to_bytes().unwrap();
        TOTP::new_unchecked(Algorithm::SHA1, 6, 1, 30, bytes, None, String::new())
            .generate(step * 30)
    }

    pub async fn next(&mut self) -> String {
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

pub struct Server {
    pub server: RunningServer,
    /// `http://localhost:PORT`: the browser's origin.
    pub origin: String,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Server {
    pub async fn start() -> Self {
        Self::start_node(None, None).await
    }

    /// A node on `database_url` (default: its own SQLite file) whose agent
    /// CA and log key are copied from `like`'s data directory, as a
    /// deployment's second node's are (docs/deployment/two-nodes.md).
    pub async fn start_node(database_url: Option<&str>, like: Option<&Server>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        if let Some(like) = like {
            for (sub, file) in [("tls", "ca.pem"), ("tls", "ca.key"), ("log", "log.skey")] {
                std::fs::create_dir_all(data.join(sub)).unwrap();
                std::fs::copy(
                    like.data_dir().join(sub).join(file),
                    data.join(sub).join(file),
                )
                .unwrap();
            }
        }
        let mut config = ServerConfig::quickstart(
            data,
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        );
        config.database_url = database_url.map(str::to_owned);
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

    /// The node's data directory.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("data")
    }

    pub fn url(&self, path: &str) -> String {
        // The origin names localhost; connect to the loopback address it means.
        format!("{}{path}", self.origin.replace("localhost", "127.0.0.1"))
    }

    pub async fn send(
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

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(Method::POST, path, token, Some(body)).await
    }

    pub async fn ok(
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
    pub async fn owner(&self) -> (Totp, String) {
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

    pub async fn login_totp(&self, username: &str, totp: &mut Totp) -> String {
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
    pub async fn operator(&self, owner: &str, username: &str, role: &str, tenant: &str) -> Totp {
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
    pub async fn register(&self, token: &str, key: &SoftPasskey, name: &str) -> Reply {
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

    pub async fn login_options(&self, username: &str) -> Value {
        self.ok(
            Method::POST,
            "/api/v1/auth/passkey/options",
            None,
            Some(json!({"username": username})),
        )
        .await
    }

    /// Password and an assertion (already made) in one login request.
    pub async fn login_passkey(&self, username: &str, password: &str, assertion: Value) -> Reply {
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
    pub async fn sign_in_with(&self, username: &str, key: &mut SoftPasskey) -> String {
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

    pub async fn operator_id(&self, username: &str) -> String {
        self.server
            .store
            .operator_by_username(username)
            .await
            .unwrap()
            .unwrap()
            .id
    }

    /// A session of `username` whose MFA check is 10 minutes old.
    pub async fn stale_session(&self, username: &str) -> String {
        self.session_with_mfa_at(username, now_millis() - 600_000)
            .await
    }

    /// A session of `username` (signed in without a passkey) whose MFA
    /// check was at `mfa_at`.
    pub async fn session_with_mfa_at(&self, username: &str, mfa_at: i64) -> String {
        let now = now_millis();
        let (token, hash) = new_token();
        self.server
            .store
            .create_session(
                NewSession {
                    id_hash: hash,
                    operator_id: self.operator_id(username).await,
                    kind: SessionKind::Cli,
                    csrf_token: "unused".to_owned(),
                    created_at: now - 600_000,
                    expires_at: now + 3_600_000,
                    mfa_at,
                    ip: None,
                    user_agent: None,
                    passkey_id: None,
                },
                &[],
            )
            .await
            .unwrap();
        token
    }

    pub async fn audit(&self) -> Vec<(String, String)> {
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
