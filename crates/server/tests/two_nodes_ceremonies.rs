//! Sign-in ceremonies across two nodes (RFD 0018, migration 0035): two
//! real servers (in this process, over real HTTP) on one PostgreSQL schema,
//! with a software passkey. A passkey registration, a passkey sign-in and a
//! step-up begun through one node are finished through the other; a
//! replayed finish is refused through either; a `bulwark login --device`
//! code made on one node is approved and redeemed through the other, once.
//! And the database lying: a ceremony whose purpose or expiry is edited in
//! the database does not pass for another.
//!
//! PostgreSQL (127.0.0.1:5432) must be running; the test fails otherwise.

#![allow(clippy::unwrap_used, dead_code, unused_imports)]

#[path = "support/soft_passkey.rs"]
mod soft_passkey;

#[path = "support/live_server.rs"]
mod live_server;

use std::time::Duration;

use live_server::{PASSWORD, Server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use soft_passkey::{SoftPasskey, with};

/// One poll of the CLI holding `device_code`, through `node`.
async fn poll(node: &Server, device_code: &Value) -> live_server::Reply {
    node.post(
        "/api/v1/auth/device/token",
        None,
        json!({"device_code": device_code, "grant_type": "urn:ietf:params:oauth:grant-type:device_code"}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ceremonies_begun_on_one_node_finish_on_the_other_once() {
    let (url, schema) = bulwark_store::testing::postgres_test_url()
        .await
        .expect("PostgreSQL at 127.0.0.1:5432 (see TESTING.md)");
    let a = Server::start_node(Some(&url), None).await;
    // The owner first: each start issues a new setup code while none exists.
    let (_totp, owner) = a.owner().await;
    let b = Server::start_node(Some(&url), Some(&a)).await;

    // 1. Registration: options from A, the answer to B.
    let mut key = SoftPasskey::new(&a.origin);
    let options = a
        .ok(
            Method::POST,
            "/api/v1/passkeys/registration/options",
            Some(&owner),
            None,
        )
        .await;
    let answer = with(key.create(&options), json!({"name": "laptop"}));
    let added = b
        .post(
            "/api/v1/passkeys/registration",
            Some(&owner),
            answer.clone(),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    // The same answer again, through either node: the ceremony is gone.
    for node in [&a, &b] {
        let replayed = node
            .post(
                "/api/v1/passkeys/registration",
                Some(&owner),
                answer.clone(),
            )
            .await;
        assert_eq!(
            replayed.status,
            StatusCode::BAD_REQUEST,
            "{}",
            replayed.body
        );
    }

    // 2. Sign-in: options from B, password and assertion to A; a replay
    //    to B is refused.
    let options = b.login_options("olivia").await;
    let assertion = key.get(&options);
    let signed_in = a.login_passkey("olivia", PASSWORD, assertion.clone()).await;
    assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.body);
    let replayed = b.login_passkey("olivia", PASSWORD, assertion).await;
    assert_eq!(
        replayed.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        replayed.body
    );

    // 3. Step-up: options from A, the answer to B.
    let stale = a.stale_session("olivia").await;
    let options = a
        .ok(
            Method::POST,
            "/api/v1/auth/step-up/passkey/options",
            Some(&stale),
            None,
        )
        .await;
    let stepped = b
        .post(
            "/api/v1/auth/step-up/passkey",
            Some(&stale),
            key.get(&options),
        )
        .await;
    assert_eq!(stepped.status, StatusCode::NO_CONTENT, "{}", stepped.body);

    // 4. `bulwark login --device`: the CLI asks node A, the owner approves
    //    through node B (options on B, answer on A), the CLI's poll through
    //    B gets the session, once.
    let started = a
        .ok(Method::POST, "/api/v1/auth/device", None, Some(json!({})))
        .await;
    let user_code = started["user_code"].as_str().unwrap().to_owned();
    let device_code = started["device_code"].clone();
    let pending = poll(&b, &device_code).await;
    assert_eq!(
        pending.body["error"], "authorization_pending",
        "{}",
        pending.body
    );
    // Polled too soon, through the other node: the interval is shared.
    let fast = poll(&a, &device_code).await;
    assert_eq!(fast.body["error"], "slow_down", "{}", fast.body);
    let options = b
        .post(
            "/api/v1/auth/device/approve/options",
            Some(&owner),
            json!({"user_code": user_code}),
        )
        .await;
    assert_eq!(options.status, StatusCode::OK, "{}", options.body);
    let approval = with(key.get(&options.body), json!({"user_code": user_code}));
    let approved = a
        .post(
            "/api/v1/auth/device/approve",
            Some(&owner),
            approval.clone(),
        )
        .await;
    assert_eq!(approved.status, StatusCode::NO_CONTENT, "{}", approved.body);
    // The approval replayed through B: the code is no longer pending.
    let again = b
        .post("/api/v1/auth/device/approve", Some(&owner), approval)
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.body);
    tokio::time::sleep(Duration::from_millis(10_100)).await;
    let issued = poll(&b, &device_code).await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    let token = issued.body["access_token"].as_str().unwrap().to_owned();
    let tenants = a
        .send(Method::GET, "/api/v1/tenants", Some(&token), None)
        .await;
    assert_eq!(tenants.status, StatusCode::OK, "{}", tenants.body);
    // Redeemed once, through either node.
    for node in [&a, &b] {
        let twice = poll(node, &device_code).await;
        assert_eq!(twice.body["error"], "invalid_grant", "{}", twice.body);
    }

    // 5. The database lies. A login ceremony relabelled a step-up (its
    //    purpose edited without this session's hash) answers nothing: the
    //    purpose is compared whole. (Whoever holds the database and the
    //    session hashes could relabel it exactly; that is a signed-in
    //    session's step-up, which such a server can mint anyway, and never
    //    a job approval: agents verify those themselves.)
    let options = a.login_options("olivia").await;
    let assertion = key.get(&options);
    bulwark_store::testing::tamper(
        &a.server.store,
        "UPDATE auth_ceremonies SET purpose = 'step-up:' || owner_key WHERE pool = 'login'",
    )
    .await
    .unwrap();
    let misused = b
        .post("/api/v1/auth/step-up/passkey", Some(&stale), assertion)
        .await;
    assert_eq!(misused.status, StatusCode::BAD_REQUEST, "{}", misused.body);
    //    A ceremony whose expiry is moved into the past is refused, and
    //    gone.
    let options = b.login_options("olivia").await;
    let assertion = key.get(&options);
    bulwark_store::testing::tamper(&b.server.store, "UPDATE auth_ceremonies SET expires_at = 0")
        .await
        .unwrap();
    let late = a.login_passkey("olivia", PASSWORD, assertion).await;
    assert_eq!(late.status, StatusCode::UNAUTHORIZED, "{}", late.body);
    assert_eq!(a.server.store.ceremony_count().await.unwrap(), 0);

    a.server.shutdown().await;
    b.server.shutdown().await;
    schema.drop().await;
}
