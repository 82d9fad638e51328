//! Passkeys end to end over real HTTP against a real server (in process):
//! registration, login and step-up with a software P-256 passkey whose bytes
//! are what a browser and authenticator send; the signature counter rule;
//! and the owner's "require passkeys for roles" policy, which restricts
//! sessions signed in without one.

#![allow(clippy::unwrap_used)]

#[path = "support/soft_passkey.rs"]
mod soft_passkey;

#[path = "support/live_server.rs"]
mod live_server;

use bulwark_server::now_millis;
use live_server::{PASSWORD, Server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use soft_passkey::{SoftPasskey, UP, with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkeys_register_sign_in_and_step_up() {
    let s = Server::start().await;
    let (_totp, owner) = s.owner().await;
    let none = s
        .ok(Method::GET, "/api/v1/passkeys", Some(&owner), None)
        .await;
    assert_eq!(none, json!([]));

    // 1. The creation options: what the browser needs, as WebAuthn names it.
    let options = s
        .ok(
            Method::POST,
            "/api/v1/passkeys/registration/options",
            Some(&owner),
            None,
        )
        .await;
    let public_key = &options["publicKey"];
    assert_eq!(public_key["rp"]["id"], "localhost");
    assert_eq!(public_key["user"]["name"], "olivia");
    assert_eq!(
        public_key["pubKeyCredParams"],
        json!([{"type": "public-key", "alg": -7}, {"type": "public-key", "alg": -8}])
    );
    assert_eq!(
        public_key["authenticatorSelection"],
        json!({"residentKey": "preferred", "userVerification": "required"})
    );
    assert_eq!(public_key["attestation"], "none");
    assert_eq!(public_key["excludeCredentials"], json!([]));
    let challenge = public_key["challenge"].as_str().unwrap();
    assert_eq!(challenge.len(), 43, "32 bytes, base64url");
    let user_id = public_key["user"]["id"].clone();

    // 2. Register "laptop"; the ceremony works once.
    let mut laptop = SoftPasskey::new(&s.origin);
    let body = with(laptop.create(&options), json!({"name": "laptop"}));
    let added = s
        .post("/api/v1/passkeys/registration", Some(&owner), body.clone())
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    assert_eq!(added.body["name"], "laptop");
    assert_eq!(added.body["last_used_at"], Value::Null);
    let laptop_id = added.body["id"].as_str().unwrap().to_owned();
    let replay = s
        .post("/api/v1/passkeys/registration", Some(&owner), body)
        .await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST, "{}", replay.body);
    assert_eq!(replay.body["error"]["code"], "passkey_rejected");

    // The next options exclude it and keep the same user handle.
    let options = s
        .ok(
            Method::POST,
            "/api/v1/passkeys/registration/options",
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(
        options["publicKey"]["excludeCredentials"],
        json!([{"type": "public-key", "id": laptop.credential_id_b64()}])
    );
    assert_eq!(options["publicKey"]["user"]["id"], user_id);
    // A name already used, a credential from another site, a replayed
    // credential id: refused, nothing stored.
    let key2 = SoftPasskey::new(&s.origin);
    let taken = s
        .post(
            "/api/v1/passkeys/registration",
            Some(&owner),
            with(key2.create(&options), json!({"name": "laptop"})),
        )
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.body);
    let mut phished = SoftPasskey::new("https://bulwark-login.example");
    phished.rp_id = "localhost".to_owned();
    let options = s
        .ok(
            Method::POST,
            "/api/v1/passkeys/registration/options",
            Some(&owner),
            None,
        )
        .await;
    let refused = s
        .post(
            "/api/v1/passkeys/registration",
            Some(&owner),
            with(phished.create(&options), json!({"name": "phished"})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("origin"),
        "{}",
        refused.body
    );
    let listed = s
        .ok(Method::GET, "/api/v1/passkeys", Some(&owner), None)
        .await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    // 3. Login options name the account's credentials; an unknown account
    // gets a stand-in, the same each time.
    let options = s.login_options("olivia").await;
    assert_eq!(
        options["publicKey"]["allowCredentials"],
        json!([{"type": "public-key", "id": laptop.credential_id_b64()}])
    );
    assert_eq!(options["publicKey"]["userVerification"], "required");
    assert_eq!(options["publicKey"]["rpId"], "localhost");
    let nobody = s.login_options("nobody").await;
    let again = s.login_options("nobody").await;
    assert_eq!(
        nobody["publicKey"]["allowCredentials"],
        again["publicKey"]["allowCredentials"]
    );
    assert_eq!(
        nobody["publicKey"]["allowCredentials"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_ne!(nobody["ceremony"], again["ceremony"]);

    // 4. Password and passkey: a session, exactly like a TOTP login.
    let assertion = laptop.get(&options);
    let signed_in = s.login_passkey("olivia", PASSWORD, assertion.clone()).await;
    assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.body);
    let by_passkey = signed_in.body["token"].as_str().unwrap().to_owned();
    s.ok(Method::GET, "/api/v1/tenants", Some(&by_passkey), None)
        .await;
    // A fresh MFA check: privileged actions pass.
    s.ok(
        Method::POST,
        "/api/v1/tenants",
        Some(&by_passkey),
        Some(json!({"name": "made-by-passkey"})),
    )
    .await;
    // The answer was spent with its ceremony.
    let replayed = s.login_passkey("olivia", PASSWORD, assertion).await;
    assert_eq!(replayed.status, StatusCode::UNAUTHORIZED);
    assert_eq!(replayed.body["error"]["code"], "login_failed");
    s.sign_in_with("olivia", &mut laptop).await;
    let listed = s
        .ok(Method::GET, "/api/v1/passkeys", Some(&owner), None)
        .await;
    assert!(listed[0]["last_used_at"].is_string(), "{listed}");

    // 5. Every failure is the same 401: wrong password (which also spends
    // the ceremony), another account's ceremony, no user verification.
    // (A success after every two failures resets the login throttle, which
    // delays any attempt after three failures in a row.)
    let options = s.login_options("olivia").await;
    let assertion = laptop.get(&options);
    let wrong = s
        .login_passkey("olivia", "not the password at all", assertion.clone())
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let retried = s.login_passkey("olivia", PASSWORD, assertion).await;
    assert_eq!(
        retried.status,
        StatusCode::UNAUTHORIZED,
        "one answer, one try"
    );
    s.sign_in_with("olivia", &mut laptop).await;
    let for_nobody = s.login_options("nobody").await;
    let mismatch = s
        .login_passkey("olivia", PASSWORD, laptop.get(&for_nobody))
        .await;
    assert_eq!(mismatch.status, StatusCode::UNAUTHORIZED);
    laptop.flags = UP;
    let options = s.login_options("olivia").await;
    let no_uv = s
        .login_passkey("olivia", PASSWORD, laptop.get(&options))
        .await;
    assert_eq!(no_uv.status, StatusCode::UNAUTHORIZED);
    laptop.flags = UP | soft_passkey::UV;
    s.sign_in_with("olivia", &mut laptop).await;
    for reply in [&wrong, &retried, &mismatch, &no_uv] {
        assert_eq!(
            reply.body["error"]["code"], "login_failed",
            "{}",
            reply.body
        );
    }

    // 6. The counter: an answer that does not move it forward is a clone.
    let stored = s
        .server
        .store
        .passkey_by_credential_id(&laptop.credential_id)
        .await
        .unwrap()
        .unwrap()
        .sign_count;
    assert!(stored > 1, "{stored}");
    for counter in [stored, stored - 1] {
        let options = s.login_options("olivia").await;
        let cloned = s
            .login_passkey(
                "olivia",
                PASSWORD,
                laptop.get_with_counter(&options, counter),
            )
            .await;
        assert_eq!(cloned.status, StatusCode::UNAUTHORIZED, "counter {counter}");
    }
    let unchanged = s
        .server
        .store
        .passkey_by_credential_id(&laptop.credential_id)
        .await
        .unwrap()
        .unwrap()
        .sign_count;
    assert_eq!(unchanged, stored);
    let events = s.audit().await;
    let regressions: Vec<_> = events
        .iter()
        .filter(|(a, _)| a == "passkey.counter_regressed")
        .collect();
    assert_eq!(regressions.len(), 2, "{events:?}");
    assert!(regressions[0].1.contains("cloned"), "{regressions:?}");
    // The genuine authenticator, counting on, still works.
    s.sign_in_with("olivia", &mut laptop).await;

    // 7. Step-up with a passkey instead of a code.
    let stale = s.stale_session("olivia").await;
    let refused = s
        .send(
            Method::POST,
            "/api/v1/auth/recovery-codes",
            Some(&stale),
            None,
        )
        .await;
    assert_eq!(refused.body["error"]["code"], "step_up_required");
    let options = s
        .ok(
            Method::POST,
            "/api/v1/auth/step-up/passkey/options",
            Some(&stale),
            None,
        )
        .await;
    // A ceremony of another session does not do.
    let other_session = s
        .post(
            "/api/v1/auth/step-up/passkey",
            Some(&by_passkey),
            laptop.get(&options),
        )
        .await;
    assert_eq!(other_session.status, StatusCode::BAD_REQUEST);
    assert_eq!(other_session.body["error"]["code"], "step_up_failed");
    let options = s
        .ok(
            Method::POST,
            "/api/v1/auth/step-up/passkey/options",
            Some(&stale),
            None,
        )
        .await;
    let passed = s
        .post(
            "/api/v1/auth/step-up/passkey",
            Some(&stale),
            laptop.get(&options),
        )
        .await;
    assert_eq!(passed.status, StatusCode::NO_CONTENT, "{}", passed.body);
    s.ok(
        Method::POST,
        "/api/v1/auth/recovery-codes",
        Some(&stale),
        None,
    )
    .await;

    // 8. Rename, then remove (privileged: a stale session is asked to step up).
    let renamed = s
        .ok(
            Method::PATCH,
            &format!("/api/v1/passkeys/{laptop_id}"),
            Some(&owner),
            Some(json!({"name": "old laptop"})),
        )
        .await;
    assert_eq!(renamed["name"], "old laptop");
    let stale = s.stale_session("olivia").await;
    let reply = s
        .send(
            Method::DELETE,
            &format!("/api/v1/passkeys/{laptop_id}"),
            Some(&stale),
            None,
        )
        .await;
    assert_eq!(reply.body["error"]["code"], "step_up_required");
    let reply = s
        .send(
            Method::DELETE,
            &format!("/api/v1/passkeys/{laptop_id}"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
    let options = s.login_options("olivia").await;
    let gone = s
        .login_passkey("olivia", PASSWORD, laptop.get(&options))
        .await;
    assert_eq!(gone.status, StatusCode::UNAUTHORIZED);
    let reply = s
        .send(
            Method::POST,
            "/api/v1/auth/step-up/passkey/options",
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "no passkey left");

    let actions: Vec<String> = s.audit().await.into_iter().map(|(a, _)| a).collect();
    for action in [
        "passkey.added",
        "passkey.renamed",
        "passkey.removed",
        "passkey.counter_regressed",
        "step_up.succeeded",
        "step_up.failed",
        "login.succeeded",
        "login.failed",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
    let events = s.audit().await;
    assert!(
        events
            .iter()
            .any(|(a, d)| a == "login.succeeded" && d.contains("passkey \"laptop\"")),
        "{events:?}"
    );
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_passkeys_restrict_sessions_without_one() {
    let s = Server::start().await;
    let (mut owner_totp, owner) = s.owner().await;
    let mut tess_totp = s.operator(&owner, "tess", "technician", "acme").await;

    // 1. The policy: owners only, audited.
    let policy = s
        .ok(
            Method::GET,
            "/api/v1/settings/passkey-policy",
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(policy, json!({"roles": []}));
    let tess_before = s.session_with_mfa_at("tess", now_millis()).await;
    let reply = s
        .send(
            Method::GET,
            "/api/v1/settings/passkey-policy",
            Some(&tess_before),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let bad = s
        .send(
            Method::PUT,
            "/api/v1/settings/passkey-policy",
            Some(&owner),
            Some(json!({"roles": ["wizard"]})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let set = s
        .ok(
            Method::PUT,
            "/api/v1/settings/passkey-policy",
            Some(&owner),
            Some(json!({"roles": ["technician", "technician"]})),
        )
        .await;
    assert_eq!(set, json!({"roles": ["technician"]}));

    // 2. A session opened before the change is restricted from now on.
    let reply = s
        .send(Method::GET, "/api/v1/tenants", Some(&tess_before), None)
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.body["error"]["code"], "passkey_required");

    // 3. A code login without a passkey: a session that can only enrol one.
    let tess = s.login_totp("tess", &mut tess_totp).await;
    for (method, path, body) in [
        (Method::GET, "/api/v1/tenants", None),
        (Method::GET, "/api/v1/tenants/acme/devices", None),
        (Method::GET, "/api/v1/api-tokens", None),
        (Method::POST, "/api/v1/auth/recovery-codes", None),
        (
            Method::POST,
            "/api/v1/tenants/acme/enrollment-tokens",
            Some(json!({})),
        ),
    ] {
        let reply = s.send(method.clone(), path, Some(&tess), body).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(
            reply.body["error"]["code"], "passkey_required",
            "{method} {path}"
        );
    }
    s.ok(Method::GET, "/api/v1/sessions", Some(&tess), None)
        .await;
    assert_eq!(
        s.ok(Method::GET, "/api/v1/passkeys", Some(&tess), None)
            .await,
        json!([])
    );
    let mut key = SoftPasskey::new(&s.origin);
    let added = s.register(&tess, &key, "tess laptop").await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    // Registering does not lift the restriction: sign in with it.
    let reply = s
        .send(Method::GET, "/api/v1/tenants", Some(&tess), None)
        .await;
    assert_eq!(reply.body["error"]["code"], "passkey_required");

    // 4. Holding a passkey, a code no longer signs in (nor steps up).
    let otp = tess_totp.next().await;
    let refused = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({"username": "tess", "password": PASSWORD, "otp": otp}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.body["error"]["code"], "passkey_required");
    let by_passkey = s.sign_in_with("tess", &mut key).await;
    let tenants = s
        .ok(Method::GET, "/api/v1/tenants", Some(&by_passkey), None)
        .await;
    assert_eq!(tenants.as_array().unwrap().len(), 1);
    let reply = s
        .post(
            "/api/v1/auth/step-up",
            Some(&by_passkey),
            json!({"otp": tess_totp.peek()}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"]["code"], "step_up_failed");
    // Nor may the last passkey go while the role requires one.
    let id = added.body["id"].as_str().unwrap();
    let reply = s
        .send(
            Method::DELETE,
            &format!("/api/v1/passkeys/{id}"),
            Some(&by_passkey),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);

    // 5. The console sends a restricted session to the account page, which
    // says what to do.
    // The owner is not covered yet: its code login is whole.
    let form = s
        .http
        .post(s.url("/login"))
        .form(&[
            ("username", "olivia"),
            ("password", PASSWORD),
            ("otp", owner_totp.next().await.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::SEE_OTHER);
    assert_eq!(form.headers()["location"], "/tenants");
    s.ok(
        Method::PUT,
        "/api/v1/settings/passkey-policy",
        Some(&owner),
        Some(json!({"roles": ["owner", "technician"]})),
    )
    .await;
    // The owner's own code session is restricted too now: it may not even
    // change the policy back, only enrol a passkey.
    let reply = s
        .send(
            Method::PUT,
            "/api/v1/settings/passkey-policy",
            Some(&owner),
            Some(json!({"roles": []})),
        )
        .await;
    assert_eq!(reply.body["error"]["code"], "passkey_required");
    let form = s
        .http
        .post(s.url("/login"))
        .form(&[
            ("username", "olivia"),
            ("password", PASSWORD),
            ("otp", owner_totp.next().await.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::SEE_OTHER);
    assert_eq!(form.headers()["location"], "/account");
    let cookie = form.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = s
        .http
        .get(s.url("/account"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("id=\"passkey-required\""), "{html}");
    assert!(html.contains("you have none yet"), "{html}");
    assert!(html.contains("id=\"passkey-add-form\""), "{html}");
    assert!(!html.contains("id=\"api-token-form\""), "{html}");
    let page = s
        .http
        .get(s.url("/tenants"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("id=\"add-passkey-link\"")
    );

    // The owner enrols, signs in with the passkey, and relaxes the policy.
    let mut owner_key = SoftPasskey::new(&s.origin);
    let added = s.register(&owner, &owner_key, "owner key").await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    let owner = s.sign_in_with("olivia", &mut owner_key).await;
    s.ok(
        Method::PUT,
        "/api/v1/settings/passkey-policy",
        Some(&owner),
        Some(json!({"roles": []})),
    )
    .await;
    // Not required any more: codes work again, and the last passkey may go.
    s.login_totp("tess", &mut tess_totp).await;
    let reply = s
        .send(
            Method::DELETE,
            &format!("/api/v1/passkeys/{id}"),
            Some(&by_passkey),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);

    let events = s.audit().await;
    assert_eq!(
        events
            .iter()
            .filter(|(a, _)| a == "settings.passkey_policy_changed")
            .count(),
        3,
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|(a, d)| a == "login.failed" && d.contains("requires a passkey")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|(a, d)| a == "login.succeeded" && d.contains("may only register a passkey")),
        "{events:?}"
    );
    s.server.shutdown().await;
}
