//! `bulwark login --device` (RFC 8628) and grants editing, over real HTTP
//! against a real server (in process): a CLI's code approved with a
//! software passkey, single use, denied, throttled; an owner's grant
//! changes taking effect on the operator's very next request.
#![allow(clippy::unwrap_used, dead_code, unused_imports)]

#[path = "support/soft_passkey.rs"]
mod soft_passkey;

#[path = "support/live_server.rs"]
mod live_server;

use std::time::Duration;

use bulwark_server::auth::session::new_token;
use bulwark_server::{RunningServer, ServerConfig, now_millis};
use bulwark_store::{NewSession, SessionKind};
use live_server::{PASSWORD, Reply, Server, Totp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use soft_passkey::{SoftPasskey, UP, with};

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
        .create_session(
            NewSession {
                id_hash: hash,
                operator_id: owner_id.clone(),
                kind: SessionKind::Browser,
                csrf_token: "csrf-token".to_owned(),
                created_at: now,
                expires_at: now + 3_600_000,
                mfa_at: now,
                ip: None,
                user_agent: None,
                passkey_id: None,
            },
            &[],
        )
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
