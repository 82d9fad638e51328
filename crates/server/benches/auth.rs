//! Login throughput and authenticated-read latency, for docs/figures.md.
//!
//! `cargo bench -p bulwark-server --bench auth` (a plain harness, no
//! criterion). Starts a real server in process (`bulwark up`'s quickstart
//! config: SQLite, plain HTTP on loopback), creates `BENCH_OPERATORS`
//! operators through the store with one real argon2id hash of the
//! production parameters (the same PHC string for all: each login still
//! verifies it in full), a tenant with 50 devices, then:
//!
//! a. **Logins/s**: `BENCH_LOGIN_CONCURRENCY` clients (default 8) log in
//!    over HTTP with password + the current TOTP code for `BENCH_SECONDS`
//!    (default 20), each login a different account (an account accepts
//!    one TOTP step once, and its own throttle never sees a second try).
//!    All come from 127.0.0.1: the per-address throttle counts failures
//!    only (a success refunds its charge) and locks after 100, so a run
//!    without failures stays within it; any failure is reported.
//! b. **Reads**: 200 of those sessions, each its own task, loop on
//!    `GET /api/v1/tenants/bench/devices` for `BENCH_SECONDS`; p50/p99/max.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bulwark_server::{ServerConfig, now_millis};
use bulwark_store::NewOperator;
use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, Secret, TOTP};

const PASSWORD: &str = "correct horse battery staple 42";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn totp_now(secret: &str) -> String {
    let bytes = Secret::Encoded(secret.to_owned()).to_bytes().unwrap();
    let now = u64::try_from(now_millis() / 1000).unwrap();
    TOTP::new_unchecked(Algorithm::SHA1, 6, 1, 30, bytes, None, String::new()).generate(now)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // `cargo bench` passes `--bench`; a filter argument is ignored.
    let operators = env("BENCH_OPERATORS", 3000);
    let concurrency = env("BENCH_LOGIN_CONCURRENCY", 8);
    let seconds = env("BENCH_SECONDS", 20) as u64;
    let sessions = env("BENCH_SESSIONS", 200);

    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig::quickstart(
        dir.path().join("data"),
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    );
    let server = bulwark_server::start(config).await.unwrap();
    let base = server
        .console_url
        .trim_end_matches('/')
        .replace("localhost", "127.0.0.1");
    let store = server.store.clone();

    // Setup through the store: a tenant, 50 devices, the operators.
    let now = now_millis();
    let tenant = store
        .create_tenant("bench", now, |_| Vec::new())
        .await
        .unwrap();
    for i in 0..50u8 {
        let secret = Sha256::digest([i, 1]).into();
        store
            .create_enrollment_token(secret, &tenant.id, None, now, now + 60_000, &[])
            .await
            .unwrap();
        store
            .enroll_device(
                secret,
                bulwark_store::NewDevice {
                    id: uuid::Uuid::new_v4().to_string(),
                    public_key: Sha256::digest([i, 2]).into(),
                    hostname: format!("host-{i:02}"),
                    agent_version: "bench".to_owned(),
                },
                now,
            )
            .await
            .unwrap();
    }
    let phc = bulwark_server::auth::password::hash(PASSWORD.to_owned())
        .await
        .unwrap();
    println!(
        "argon2 parameters: {}",
        phc.split('$').nth(3).unwrap_or("?")
    );
    let started = Instant::now();
    let mut accounts = Vec::with_capacity(operators);
    for i in 0..operators {
        let username = format!("bench-{i:05}");
        let totp_secret = bulwark_server::auth::totp::new_secret();
        let operator = store
            .create_operator(
                &NewOperator {
                    username: username.clone(),
                    password_hash: phc.clone(),
                    totp_secret: totp_secret.clone(),
                },
                bulwark_store::ACCOUNT_OPERATOR,
                "bench",
                now,
            )
            .await
            .unwrap();
        store
            .set_operator_grants(
                &operator.id,
                &[(tenant.id.clone(), "read_only".to_owned())],
                "bench",
                now,
            )
            .await
            .unwrap();
        accounts.push((username, totp_secret));
    }
    println!(
        "setup: {operators} operators, 50 devices in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Plain HTTP to loopback; reqwest still wants a TLS provider named.
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .no_proxy()
        .pool_max_idle_per_host(512)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    // (a) Logins.
    let accounts = Arc::new(accounts);
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (accounts, next, http, base) =
            (accounts.clone(), next.clone(), http.clone(), base.clone());
        workers.push(tokio::spawn(async move {
            let mut tokens = Vec::new();
            let mut latencies = Vec::new();
            let mut failures = 0usize;
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((username, secret)) = accounts.get(i) else {
                    break;
                };
                let t = Instant::now();
                let reply = http
                    .post(format!("{base}/api/v1/auth/login"))
                    .json(&serde_json::json!({
                        "username": username, "password": PASSWORD, "otp": totp_now(secret)
                    }))
                    .send()
                    .await
                    .unwrap();
                let ok = reply.status().is_success();
                let body: serde_json::Value = reply.json().await.unwrap_or_default();
                latencies.push(t.elapsed());
                match body["token"].as_str() {
                    Some(token) if ok => tokens.push(token.to_owned()),
                    _ => {
                        if failures == 0 {
                            eprintln!("first failed login ({username}): {body}");
                        }
                        failures += 1;
                    }
                }
            }
            (tokens, latencies, failures)
        }));
    }
    let mut tokens = Vec::new();
    let mut latencies = Vec::new();
    let mut failures = 0;
    for worker in workers {
        let (t, l, f) = worker.await.unwrap();
        tokens.extend(t);
        latencies.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    if next.load(Ordering::Relaxed) >= operators {
        println!("warning: ran out of accounts; raise BENCH_OPERATORS");
    }
    println!(
        "logins: {} in {elapsed:.1} s = {:.1} logins/s ({concurrency} clients; {failures} failed); \
         latency p50 {} p99 {} max {}",
        tokens.len(),
        tokens.len() as f64 / elapsed,
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default()),
    );

    // (b) Authenticated reads at `sessions` concurrent sessions.
    assert!(
        tokens.len() >= sessions,
        "only {} sessions for {sessions} readers",
        tokens.len()
    );
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut readers = Vec::new();
    for token in tokens.into_iter().take(sessions) {
        let (http, base) = (http.clone(), base.clone());
        readers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            while Instant::now() < deadline {
                let t = Instant::now();
                let reply = http
                    .get(format!("{base}/api/v1/tenants/bench/devices"))
                    .bearer_auth(&token)
                    .send()
                    .await;
                match reply {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        latencies.push(t.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for reader in readers {
        let (l, e) = reader.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    println!(
        "reads: GET /api/v1/tenants/bench/devices (50 devices) by {sessions} sessions for \
         {elapsed:.1} s: {} requests = {:.0}/s ({errors} errors); p50 {} p99 {} max {}",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
    server.shutdown().await;
}
