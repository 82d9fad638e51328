//! The authorisation matrix (DESIGN.md invariant 7): every route of
//! `bulwark_server::api::router()`, as every role, on its own tenant and on a
//! foreign one, plus without a session and with a revoked or an expired one,
//! over real HTTP against a real server.
//!
//! The route list comes from the router itself: `api::router()` builds the
//! axum routes and the OpenAPI document from one `routes!` list, and this test
//! fails unless [`TABLE`] has a row for exactly the routes of that document.
//! A new route therefore cannot ship without an expectation here.
//!
//! Every operator is created the way a person would be: the first owner
//! through setup, the others through invitations (redeem + TOTP confirm),
//! then a real login. Two devices (one per tenant) enrol through the agent
//! library, as `tests/gateway.rs` does.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bulwark_agent::connection::{self, ServerAddress};
use bulwark_protocol::token::EnrollToken;
use bulwark_server::auth::session::new_token;
use bulwark_server::{RunningServer, ServerConfig, now_millis};
use bulwark_store::{NewSession, SessionKind};
use ed25519_dalek::SigningKey;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use totp_rs::{Algorithm, Secret, TOTP};

const OWN: &str = "own-tenant";
const FOREIGN: &str = "foreign-tenant";
const PASSWORD: &str = "correct horse battery staple 42";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Owner,
    SecurityOfficer,
    Technician,
    ReadOnly,
    TenantAuditor,
}

use Role::*;

const ROLES: [Role; 5] = [Owner, SecurityOfficer, Technician, ReadOnly, TenantAuditor];
const EVERY_ROLE: &[Role] = &ROLES;

impl Role {
    fn api_name(self) -> &'static str {
        match self {
            Owner => "owner",
            SecurityOfficer => "security_officer",
            Technician => "technician",
            ReadOnly => "read_only",
            TenantAuditor => "tenant_auditor",
        }
    }
}

/// Who sends the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    As(Role),
    NoSession,
    RevokedSession,
    ExpiredSession,
}

/// Which tenant's objects the path (and body) name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// The tenant every non-owner role holds its grant on.
    Own,
    /// A tenant none of them holds anything on.
    Foreign,
}

/// What a route must answer.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// No session needed: this status whoever asks, with or without a session.
    Public(u16),
    /// An action on no tenant: the status for these roles, 403 for the others.
    Global(&'static [Role], u16),
    /// An action on the tenant or device in the path: the status for these
    /// roles on their own tenant, 403 for the others there; 404 for every
    /// non-owner on a foreign tenant (its existence is not revealed).
    Tenant(&'static [Role], u16),
}

use Rule::*;

/// The expected answers, one row per route of `api::router()`.
const TABLE: &[(&str, &str, Rule)] = &[
    ("GET", "/healthz", Public(200)),
    // An owner exists: setup is over.
    ("POST", "/api/v1/setup", Public(409)),
    ("POST", "/api/v1/setup/confirm", Public(404)),
    // Wrong credentials (the minimal valid body that changes nothing).
    ("POST", "/api/v1/auth/login", Public(401)),
    ("POST", "/api/v1/auth/logout", Global(EVERY_ROLE, 204)),
    ("GET", "/api/v1/tenants", Global(EVERY_ROLE, 200)),
    ("POST", "/api/v1/tenants", Global(&[Owner], 201)),
    (
        "POST",
        "/api/v1/tenants/{tenant}/enrollment-tokens",
        Tenant(&[Owner, SecurityOfficer, Technician], 201),
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant}/devices",
        Tenant(EVERY_ROLE, 200),
    ),
    ("GET", "/api/v1/devices/{id}", Tenant(EVERY_ROLE, 200)),
    ("GET", "/api/v1/events", Global(EVERY_ROLE, 200)),
    (
        "GET",
        "/api/v1/tenants/{tenant}/audit",
        Tenant(&[Owner, SecurityOfficer, TenantAuditor], 200),
    ),
    (
        "GET",
        "/api/v1/operators",
        Global(&[Owner, SecurityOfficer], 200),
    ),
    ("GET", "/api/v1/invitations", Global(&[Owner], 200)),
    ("POST", "/api/v1/invitations", Global(&[Owner], 201)),
    ("DELETE", "/api/v1/invitations/{id}", Global(&[Owner], 204)),
    (
        "GET",
        "/api/v1/lockouts",
        Global(&[Owner, SecurityOfficer], 200),
    ),
    (
        "DELETE",
        "/api/v1/lockouts/{key}",
        Global(&[Owner, SecurityOfficer], 204),
    ),
    ("POST", "/api/v1/invitations/redeem", Public(201)),
    ("POST", "/api/v1/invitations/confirm", Public(201)),
];

fn expected(rule: Rule, who: Who, side: Side) -> u16 {
    let role = match (rule, who) {
        (Public(status), _) => return status,
        (_, Who::NoSession | Who::RevokedSession | Who::ExpiredSession) => return 401,
        (_, Who::As(role)) => role,
    };
    match rule {
        Public(status) => status,
        Global(allowed, ok) => {
            if allowed.contains(&role) {
                ok
            } else {
                403
            }
        }
        Tenant(allowed, ok) => {
            if side == Side::Foreign && role != Owner {
                404
            } else if allowed.contains(&role) {
                ok
            } else {
                403
            }
        }
    }
}

/// Every (method, path) in the OpenAPI document of `api::router()`.
fn documented_routes() -> BTreeSet<(String, String)> {
    let (_router, doc) = bulwark_server::api::router();
    let mut routes = BTreeSet::new();
    for (path, item) in &doc.paths.paths {
        for (method, operation) in [
            ("GET", &item.get),
            ("PUT", &item.put),
            ("POST", &item.post),
            ("DELETE", &item.delete),
            ("OPTIONS", &item.options),
            ("HEAD", &item.head),
            ("PATCH", &item.patch),
            ("TRACE", &item.trace),
        ] {
            if operation.is_some() {
                routes.insert((method.to_owned(), path.clone()));
            }
        }
    }
    routes
}

fn totp_code(secret: &str, at_secs: u64) -> String {
    let bytes = Secret::Encoded(secret.to_owned())
        .to_bytes()
        .expect("base32 secret");
    TOTP::new_unchecked(Algorithm::SHA1, 6, 1, 30, bytes, None, String::new()).generate(at_secs)
}

fn now_secs() -> u64 {
    u64::try_from(now_millis() / 1000).expect("after 1970")
}

struct Harness {
    server: RunningServer,
    base: String,
    http: reqwest::Client,
    /// A bearer token per role, from a real login.
    sessions: BTreeMap<Role, String>,
    operator_ids: BTreeMap<Role, String>,
    revoked: String,
    expired: String,
    devices: BTreeMap<&'static str, String>,
    counter: u32,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    body: Value,
}

impl Harness {
    async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let streaming = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let body = if streaming {
            Value::Null // an endless stream: the status is the answer
        } else {
            let bytes = response.bytes().await.expect("body");
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Reply { status, body }
    }

    async fn ok(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Value {
        let reply = self.send(method, path, token, body).await;
        assert!(
            reply.status.is_success(),
            "{method} {path}: {} {}",
            reply.status,
            reply.body
        );
        reply.body
    }

    fn owner(&self) -> &str {
        &self.sessions[&Owner]
    }

    fn unique(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}-{}", self.counter)
    }

    /// A new pending invitation: (id, link token).
    async fn invitation(&mut self, role: Role, tenant: Option<&str>) -> (String, String) {
        let username = self.unique("invitee");
        let tenants: Vec<&str> = tenant.into_iter().collect();
        let body = json!({"username": username, "role": role.api_name(), "tenants": tenants});
        let created = self
            .ok(
                "POST",
                "/api/v1/invitations",
                Some(self.owner()),
                Some(&body),
            )
            .await;
        assert_eq!(
            created["path"].as_str(),
            Some(format!("/invite/{}", created["token"].as_str().expect("token")).as_str())
        );
        (
            created["id"].as_str().expect("id").to_owned(),
            created["token"].as_str().expect("token").to_owned(),
        )
    }

    /// Redeems an invitation link: (enrolment id, TOTP secret).
    async fn redeem(&self, token: &str) -> (String, String) {
        let started = self
            .ok(
                "POST",
                "/api/v1/invitations/redeem",
                None,
                Some(&json!({"token": token, "password": PASSWORD})),
            )
            .await;
        (
            started["enrolment_id"]
                .as_str()
                .expect("enrolment")
                .to_owned(),
            started["totp_secret"].as_str().expect("secret").to_owned(),
        )
    }

    /// A session made directly in the store for `operator_id` (for logout,
    /// which ends the session it is called with, and for the expired case).
    async fn mint_session(&self, operator_id: &str, created_at: i64, expires_at: i64) -> String {
        let (token, hash) = new_token();
        let (csrf_token, _) = new_token();
        self.server
            .store
            .create_session(NewSession {
                id_hash: hash,
                operator_id: operator_id.to_owned(),
                kind: SessionKind::Cli,
                csrf_token,
                created_at,
                expires_at,
                mfa_at: created_at,
                ip: None,
                user_agent: None,
            })
            .await
            .expect("session stored");
        token
    }

    async fn enrol_device(&self, tenant: &str) -> String {
        let issued = self
            .ok(
                "POST",
                &format!("/api/v1/tenants/{tenant}/enrollment-tokens"),
                Some(self.owner()),
                Some(&json!({})),
            )
            .await;
        let token = EnrollToken::parse(issued["token"].as_str().expect("token")).expect("token");
        let address = ServerAddress::parse(&self.server.gateway_url).expect("gateway url");
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let enrolled = connection::enroll(&address, &token, &key, &format!("host-{tenant}"))
            .await
            .expect("enrol");
        enrolled.device_id.to_string()
    }

    /// The path, body and bearer token of one matrix request.
    async fn request_for(
        &mut self,
        method: &str,
        route: &str,
        who: Who,
        side: Side,
    ) -> (String, Option<Value>, Option<String>) {
        let tenant = match side {
            Side::Own => OWN,
            Side::Foreign => FOREIGN,
        };
        let token = match who {
            Who::NoSession => None,
            Who::RevokedSession => Some(self.revoked.clone()),
            Who::ExpiredSession => Some(self.expired.clone()),
            // Logout ends the session it is called with: give it a fresh one.
            Who::As(role) if route == "/api/v1/auth/logout" => {
                let now = now_millis();
                Some(
                    self.mint_session(&self.operator_ids[&role].clone(), now, now + 60_000)
                        .await,
                )
            }
            Who::As(role) => Some(self.sessions[&role].clone()),
        };
        let path = route.replace("{tenant}", tenant);
        let (path, body) = match (method, route) {
            ("POST", "/api/v1/setup") => (
                path,
                Some(
                    json!({"code": "AAAA-BBBB-CCCC-DDDD", "username": "late", "password": PASSWORD}),
                ),
            ),
            ("POST", "/api/v1/setup/confirm") => (
                path,
                Some(json!({"enrolment_id": "no-such-enrolment", "otp": "000000"})),
            ),
            ("POST", "/api/v1/auth/login") => {
                let username = self.unique("nobody");
                (
                    path,
                    Some(json!({"username": username, "password": PASSWORD, "otp": "000000"})),
                )
            }
            ("POST", "/api/v1/tenants") => {
                let name = self.unique("made");
                (path, Some(json!({"name": name})))
            }
            ("POST", "/api/v1/tenants/{tenant}/enrollment-tokens") => (path, Some(json!({}))),
            ("GET", "/api/v1/devices/{id}") => (path.replace("{id}", &self.devices[tenant]), None),
            ("POST", "/api/v1/invitations") => {
                let username = self.unique("invited");
                (
                    path,
                    Some(json!({"username": username, "role": "read_only", "tenants": [tenant]})),
                )
            }
            ("DELETE", "/api/v1/invitations/{id}") => {
                let (id, _) = self.invitation(ReadOnly, Some(tenant)).await;
                (path.replace("{id}", &id), None)
            }
            ("DELETE", "/api/v1/lockouts/{key}") => {
                // A failed login leaves a throttle counter to lift.
                let username = self.unique("failing");
                let reply = self
                    .send(
                        "POST",
                        "/api/v1/auth/login",
                        None,
                        Some(&json!({"username": username, "password": PASSWORD, "otp": "000000"})),
                    )
                    .await;
                assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
                (path.replace("{key}", &format!("user:{username}")), None)
            }
            ("POST", "/api/v1/invitations/redeem") => {
                let (_, link) = self.invitation(Technician, Some(tenant)).await;
                (path, Some(json!({"token": link, "password": PASSWORD})))
            }
            ("POST", "/api/v1/invitations/confirm") => {
                let (_, link) = self.invitation(Technician, Some(tenant)).await;
                let (enrolment_id, secret) = self.redeem(&link).await;
                let otp = totp_code(&secret, now_secs());
                (
                    path,
                    Some(json!({"enrolment_id": enrolment_id, "otp": otp})),
                )
            }
            (_, _) if method == "POST" => (path, Some(json!({}))),
            _ => (path, None),
        };
        (path, body, token)
    }
}

async fn start() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ServerConfig::quickstart(
        dir.path().join("data"),
        "127.0.0.1:0".parse().expect("addr"),
        "127.0.0.1:0".parse().expect("addr"),
    );
    let server = bulwark_server::start(config).await.expect("server starts");
    let port = server
        .console_url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .expect("port")
        .to_owned();
    // Plain HTTP only; reqwest still wants a TLS configuration (the
    // workspace builds it without a default crypto provider).
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("tls")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let mut h = Harness {
        base: format!("http://127.0.0.1:{port}"),
        server,
        http,
        sessions: BTreeMap::new(),
        operator_ids: BTreeMap::new(),
        revoked: String::new(),
        expired: String::new(),
        devices: BTreeMap::new(),
        counter: 0,
        _dir: dir,
    };

    // The first owner, through setup; each account's codes come from its own
    // secret, so the one-step-per-account replay rule never bites: confirm
    // uses the current step, login the next one (the server accepts both).
    let code = h.server.setup_code.clone().expect("setup code");
    let started = h
        .ok(
            "POST",
            "/api/v1/setup",
            None,
            Some(&json!({"code": code, "username": "olivia", "password": PASSWORD})),
        )
        .await;
    let secret = started["totp_secret"].as_str().expect("secret").to_owned();
    let enrolment = started["enrolment_id"].as_str().expect("enrolment");
    h.ok(
        "POST",
        "/api/v1/setup/confirm",
        None,
        Some(&json!({"enrolment_id": enrolment, "otp": totp_code(&secret, now_secs())})),
    )
    .await;
    let login = h
        .ok(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(&json!({"username": "olivia", "password": PASSWORD, "otp": totp_code(&secret, now_secs() + 30)})),
        )
        .await;
    h.sessions
        .insert(Owner, login["token"].as_str().expect("token").to_owned());

    for tenant in [OWN, FOREIGN] {
        h.ok(
            "POST",
            "/api/v1/tenants",
            Some(h.owner()),
            Some(&json!({"name": tenant})),
        )
        .await;
    }
    for tenant in [OWN, FOREIGN] {
        let device = h.enrol_device(tenant).await;
        h.devices.insert(tenant, device);
    }

    // Every other role, invited on the own tenant only, through the real flow.
    for role in [SecurityOfficer, Technician, ReadOnly, TenantAuditor] {
        let username = format!("op-{}", role.api_name().replace('_', "-"));
        let body = json!({"username": username, "role": role.api_name(), "tenants": [OWN]});
        let created = h
            .ok("POST", "/api/v1/invitations", Some(h.owner()), Some(&body))
            .await;
        let (enrolment, secret) = h.redeem(created["token"].as_str().expect("token")).await;
        let operator = h
            .ok(
                "POST",
                "/api/v1/invitations/confirm",
                None,
                Some(&json!({"enrolment_id": enrolment, "otp": totp_code(&secret, now_secs())})),
            )
            .await;
        assert_eq!(operator["username"], username);
        assert_eq!(operator["role"], "operator");
        let login = h
            .ok(
                "POST",
                "/api/v1/auth/login",
                None,
                Some(&json!({"username": username, "password": PASSWORD, "otp": totp_code(&secret, now_secs() + 30)})),
            )
            .await;
        h.sessions
            .insert(role, login["token"].as_str().expect("token").to_owned());
    }
    for role in ROLES {
        let username = match role {
            Owner => "olivia".to_owned(),
            other => format!("op-{}", other.api_name().replace('_', "-")),
        };
        let operator = h
            .server
            .store
            .operator_by_username(&username)
            .await
            .expect("store")
            .expect("operator exists");
        h.operator_ids.insert(role, operator.id);
    }

    // A session ended through the API, and one past its absolute lifetime.
    let now = now_millis();
    let technician = h.operator_ids[&Technician].clone();
    let revoked = h.mint_session(&technician, now, now + 60_000).await;
    let reply = h
        .send("POST", "/api/v1/auth/logout", Some(&revoked), None)
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    h.revoked = revoked;
    h.expired = h
        .mint_session(&technician, now - 9 * 3_600_000, now - 3_600_000)
        .await;
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_as_every_role_on_own_and_foreign_tenants() {
    // 1. The table covers exactly the routes the router serves.
    let documented = documented_routes();
    let tabled: BTreeSet<(String, String)> = TABLE
        .iter()
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(
        tabled.len(),
        TABLE.len(),
        "a route is listed twice in TABLE"
    );
    let missing: Vec<_> = documented.difference(&tabled).collect();
    let stale: Vec<_> = tabled.difference(&documented).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "TABLE must have one row per route of api::router(): add rows for {missing:?}, remove {stale:?}"
    );

    let mut h = start().await;

    // The OpenAPI document itself is served outside the router's list: public.
    let doc = h.send("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(doc.status, StatusCode::OK);

    // 2. Every route x every case.
    let mut cases: Vec<(Who, Side)> = Vec::new();
    for role in ROLES {
        cases.push((Who::As(role), Side::Own));
        cases.push((Who::As(role), Side::Foreign));
    }
    for who in [Who::NoSession, Who::RevokedSession, Who::ExpiredSession] {
        cases.push((who, Side::Own));
    }
    let mut failures = Vec::new();
    let mut sent = 0;
    for (method, route, rule) in TABLE {
        for &(who, side) in &cases {
            let (path, body, token) = h.request_for(method, route, who, side).await;
            let reply = h.send(method, &path, token.as_deref(), body.as_ref()).await;
            sent += 1;
            let want = expected(*rule, who, side);
            let code = reply.body["error"]["code"].as_str().unwrap_or_default();
            let shape_ok = match want {
                401 if !matches!(rule, Public(_)) => code == "unauthenticated",
                403 => code == "forbidden",
                404 if !matches!(rule, Public(_)) => code == "not_found",
                _ => true,
            };
            if reply.status.as_u16() != want || !shape_ok {
                failures.push(format!(
                    "{method} {route} as {who:?} on {side:?} ({path}): want {want}, got {} {}",
                    reply.status, reply.body
                ));
            }

            // A foreign tenant's object answers exactly like one that does not exist.
            if want == 404 && matches!(rule, Tenant(..)) {
                let nowhere = path
                    .replace(FOREIGN, "no-such-tenant")
                    .replace(&h.devices[FOREIGN], &uuid_nil());
                let absent = h
                    .send(method, &nowhere, token.as_deref(), body.as_ref())
                    .await;
                if absent.status != reply.status || absent.body != reply.body {
                    failures.push(format!(
                        "{method} {route} as {who:?}: a foreign object ({} {}) differs from a missing one ({} {})",
                        reply.status, reply.body, absent.status, absent.body
                    ));
                }
            }
        }
    }
    assert_eq!(sent, TABLE.len() * cases.len());
    assert!(
        failures.is_empty(),
        "{} of {sent} requests answered wrongly:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!(
        "authorisation matrix: {} routes x {} cases = {sent} requests",
        TABLE.len(),
        cases.len()
    );
}

fn uuid_nil() -> String {
    "00000000-0000-4000-8000-000000000000".to_owned()
}

/// The text between `start` and the next `<` in an HTML page.
fn html_text_after<'a>(html: &'a str, start: &str) -> &'a str {
    let from = html.find(start).map(|i| i + start.len()).expect(start);
    let rest = &html[from..];
    &rest[..rest.find('<').unwrap_or(rest.len())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_are_one_time_expiring_and_owner_only() {
    let mut h = start().await;
    let owner = h.owner().to_owned();

    // Refused invitations: bad lifetimes, roles and tenant lists.
    for (body, want) in [
        (
            json!({"username": "x1", "role": "technician", "tenants": [OWN], "ttl_hours": 169}),
            400,
        ),
        (
            json!({"username": "x2", "role": "technician", "tenants": [OWN], "ttl_hours": 0}),
            400,
        ),
        (
            json!({"username": "x3", "role": "tenant_auditor", "tenants": [OWN, FOREIGN]}),
            400,
        ),
        (
            json!({"username": "x4", "role": "owner", "tenants": [OWN]}),
            400,
        ),
        (
            json!({"username": "x5", "role": "technician", "tenants": []}),
            400,
        ),
        (
            json!({"username": "x6", "role": "wizard", "tenants": [OWN]}),
            400,
        ),
        (
            json!({"username": "x7", "role": "technician", "tenants": ["no-such"]}),
            404,
        ),
        (
            json!({"username": "olivia", "role": "technician", "tenants": [OWN]}),
            409,
        ),
    ] {
        let reply = h
            .send("POST", "/api/v1/invitations", Some(&owner), Some(&body))
            .await;
        assert_eq!(reply.status.as_u16(), want, "{body}: {}", reply.body);
    }
    let created = h
        .ok(
            "POST",
            "/api/v1/invitations",
            Some(&owner),
            Some(&json!({"username": "vera", "role": "technician", "tenants": [OWN, FOREIGN]})),
        )
        .await;
    let expires = created["expires_at"].as_str().expect("expiry");
    let created_at = created["created_at"].as_str().expect("creation");
    assert_ne!(expires, created_at);
    let link = created["token"].as_str().expect("token").to_owned();
    let pending = h.ok("GET", "/api/v1/invitations", Some(&owner), None).await;
    assert!(
        pending
            .as_array()
            .expect("list")
            .iter()
            .any(|i| i["username"] == "vera" && i["grants"].as_array().map(Vec::len) == Some(2)),
        "{pending}"
    );

    // The console redeems it: page, password, TOTP page, code.
    let page = h
        .http
        .get(format!("{}/invite/{link}", h.base))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert_eq!(html_text_after(&html, "id=\"invite-username\">"), "vera");
    let missing = h.send("GET", "/invite/not-a-real-token", None, None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let no_redirects = reqwest::Client::builder()
        .use_preconfigured_tls(
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("tls")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        )
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let totp_page = no_redirects
        .post(format!("{}/invite/{link}", h.base))
        .form(&[("password", PASSWORD), ("password_confirm", PASSWORD)])
        .send()
        .await
        .expect("redeem");
    assert_eq!(totp_page.status(), StatusCode::OK);
    let html = totp_page.text().await.expect("html");
    assert!(html.contains("action=\"/invite/totp\""), "{html}");
    let secret = html_text_after(&html, "id=\"totp-secret\" class=\"secret\">").to_owned();
    let enrolment = html_text_after(&html, "name=\"enrolment\" value=\"")
        .split('"')
        .next()
        .expect("enrolment")
        .to_owned();
    let wrong = no_redirects
        .post(format!("{}/invite/totp", h.base))
        .form(&[("enrolment", enrolment.as_str()), ("otp", "000000")])
        .send()
        .await
        .expect("confirm");
    assert_eq!(
        wrong.status(),
        StatusCode::BAD_REQUEST,
        "a wrong code is refused"
    );
    let code = totp_code(&secret, now_secs());
    let done = no_redirects
        .post(format!("{}/invite/totp", h.base))
        .form(&[("enrolment", enrolment.as_str()), ("otp", code.as_str())])
        .send()
        .await
        .expect("confirm");
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        done.headers().get("location").map(|v| v.as_bytes()),
        Some(&b"/login?welcome=1"[..])
    );

    // One time: the link and the enrolment are spent.
    let again = h
        .send(
            "POST",
            "/api/v1/invitations/redeem",
            None,
            Some(&json!({"token": link, "password": PASSWORD})),
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let replay = h
        .send(
            "POST",
            "/api/v1/invitations/confirm",
            None,
            Some(&json!({"enrolment_id": enrolment, "otp": code})),
        )
        .await;
    assert_eq!(replay.status, StatusCode::NOT_FOUND);
    let vera = h
        .server
        .store
        .operator_by_username("vera")
        .await
        .expect("store")
        .expect("vera exists");
    let grants: Vec<(String, String)> = h
        .server
        .store
        .operator_grants(&vera.id)
        .await
        .expect("grants")
        .into_iter()
        .map(|g| (g.tenant_name, g.role))
        .collect();
    assert_eq!(
        grants,
        [
            (FOREIGN.to_owned(), "technician".to_owned()),
            (OWN.to_owned(), "technician".to_owned())
        ]
    );

    // Revoked: the link stops working at once.
    let (id, revoked_link) = h.invitation(ReadOnly, Some(OWN)).await;
    let reply = h
        .send(
            "DELETE",
            &format!("/api/v1/invitations/{id}"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply = h
        .send(
            "DELETE",
            &format!("/api/v1/invitations/{id}"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = h
        .send(
            "POST",
            "/api/v1/invitations/redeem",
            None,
            Some(&json!({"token": revoked_link, "password": PASSWORD})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    // Audited, and the log of each tenant is its own.
    let events = h
        .ok(
            "GET",
            &format!("/api/v1/tenants/{OWN}/audit"),
            Some(&h.sessions[&TenantAuditor]),
            None,
        )
        .await;
    assert!(
        events
            .as_array()
            .expect("events")
            .iter()
            .all(|e| e["action"] != "operator.invited"),
        "account events belong to no tenant: {events}"
    );
    let actions: Vec<String> = h
        .server
        .store
        .list_audit(&bulwark_store::TenantScope::All, None, 1000)
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.action)
        .collect();
    for action in ["operator.invited", "operator.created", "invitation.revoked"] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }

    // A security officer sees the operators of its tenants, and only those grants.
    let listed = h
        .ok(
            "GET",
            "/api/v1/operators",
            Some(&h.sessions[&SecurityOfficer]),
            None,
        )
        .await;
    let vera_seen = listed
        .as_array()
        .expect("operators")
        .iter()
        .find(|o| o["username"] == "vera")
        .expect("vera listed");
    assert_eq!(
        vera_seen["grants"],
        json!([{"tenant": OWN, "role": "technician"}])
    );

    // The console's operators page: owners only.
    let now = now_millis();
    for (role, want) in [(Owner, StatusCode::OK), (Technician, StatusCode::FORBIDDEN)] {
        let (token, hash) = new_token();
        let (csrf_token, _) = new_token();
        h.server
            .store
            .create_session(NewSession {
                id_hash: hash,
                operator_id: h.operator_ids[&role].clone(),
                kind: SessionKind::Browser,
                csrf_token,
                created_at: now,
                expires_at: now + 60_000,
                mfa_at: now,
                ip: None,
                user_agent: None,
            })
            .await
            .expect("session");
        let page = h
            .http
            .get(format!("{}/operators", h.base))
            .header("cookie", format!("bulwark_session={token}"))
            .send()
            .await
            .expect("page");
        assert_eq!(page.status(), want, "{role:?}");
        if want == StatusCode::OK {
            let html = page.text().await.expect("html");
            assert!(
                html.contains("vera") && html.contains("invite-form"),
                "{html}"
            );
        }
    }
}
