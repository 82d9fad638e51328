//! Issue 13: passkey ceremonies cannot be switched off from outside. An
//! attacker floods the public `POST /api/v1/auth/passkey/options` (no
//! session needed) from one address, over real HTTP against a real server
//! in process; afterwards a signed-in operator still registers a passkey
//! and steps up with one, and a person still signs in with a passkey, each
//! with a real software passkey (so each ceremony is shown to work, not
//! only to answer 200). Before the budgets, the flood filled the one
//! server-wide table of 10,000 ceremonies and every ceremony answered 503
//! for three minutes.

#![allow(clippy::unwrap_used)]

#[path = "support/soft_passkey.rs"]
mod soft_passkey;

#[path = "support/live_server.rs"]
mod live_server;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use live_server::Server;
use reqwest::{Method, StatusCode};
use serde_json::json;
use soft_passkey::{SoftPasskey, with};

/// More login ceremonies than the old server-wide table held (10,000).
const FLOOD: usize = 10_500;
/// Requests in flight at once.
const IN_FLIGHT: usize = 48;

/// `FLOOD` login options requests for made-up usernames, `IN_FLIGHT` at a
/// time: how many answers of each status (0: none).
async fn flood(s: &Server) -> BTreeMap<u16, usize> {
    let url = s.url("/api/v1/auth/passkey/options");
    let next = Arc::new(AtomicUsize::new(0));
    let mut attackers = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (http, url, next) = (s.http.clone(), url.clone(), next.clone());
        attackers.push(tokio::spawn(async move {
            let mut seen = BTreeMap::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= FLOOD {
                    return seen;
                }
                let sent = http
                    .post(&url)
                    .json(&json!({"username": format!("victim{n}")}))
                    .send()
                    .await;
                // 0: no answer at all.
                let status = sent.map_or(0, |r| r.status().as_u16());
                *seen.entry(status).or_insert(0) += 1;
            }
        }));
    }
    let mut statuses = BTreeMap::new();
    for attacker in attackers {
        for (status, count) in attacker.await.unwrap() {
            *statuses.entry(status).or_insert(0) += count;
        }
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_login_ceremonies_leaves_passkeys_working() {
    let s = Server::start().await;
    let (_totp, owner) = s.owner().await;
    let mut laptop = SoftPasskey::new(&s.origin);
    let added = s.register(&owner, &laptop, "laptop").await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);

    let started = Instant::now();
    let statuses = flood(&s).await;
    let took = started.elapsed();
    eprintln!("{FLOOD} login options requests in {took:?}: {statuses:?}");
    // Every one is answered with a ceremony (none is refused as "busy"):
    // past its address's budget, the address's oldest ceremony gives way.
    assert_eq!(statuses, BTreeMap::from([(200, FLOOD)]), "took {took:?}");

    // (a) A signed-in operator still starts ceremonies, and they work: a
    // registration...
    let options = s
        .send(
            Method::POST,
            "/api/v1/passkeys/registration/options",
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(options.status, StatusCode::OK, "{}", options.body);
    let phone = SoftPasskey::new(&s.origin);
    let added = s
        .post(
            "/api/v1/passkeys/registration",
            Some(&owner),
            with(phone.create(&options.body), json!({"name": "phone"})),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    // ...and a step-up.
    let stale = s.stale_session("olivia").await;
    let options = s
        .send(
            Method::POST,
            "/api/v1/auth/step-up/passkey/options",
            Some(&stale),
            None,
        )
        .await;
    assert_eq!(options.status, StatusCode::OK, "{}", options.body);
    let stepped_up = s
        .post(
            "/api/v1/auth/step-up/passkey",
            Some(&stale),
            laptop.get(&options.body),
        )
        .await;
    assert_eq!(
        stepped_up.status,
        StatusCode::NO_CONTENT,
        "{}",
        stepped_up.body
    );

    // (b) A person asking for login options (from the attacker's very
    // address, even) gets a ceremony naming their passkey, and signs in
    // with it.
    let options = s
        .send(
            Method::POST,
            "/api/v1/auth/passkey/options",
            None,
            Some(json!({"username": "olivia"})),
        )
        .await;
    assert_eq!(options.status, StatusCode::OK, "{}", options.body);
    let allowed = options.body["publicKey"]["allowCredentials"]
        .as_array()
        .unwrap();
    assert!(
        allowed
            .iter()
            .any(|c| c["id"] == laptop.credential_id_b64().as_str()),
        "{}",
        options.body
    );
    let signed_in = s
        .login_passkey("olivia", live_server::PASSWORD, laptop.get(&options.body))
        .await;
    assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.body);
    let token = signed_in.body["token"].as_str().unwrap();
    s.ok(Method::GET, "/api/v1/tenants", Some(token), None)
        .await;

    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the flood and the checks took {:?}",
        started.elapsed()
    );
}
