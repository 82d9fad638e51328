//! Playing the attacker who holds "nothing but the internet" (DESIGN.md):
//! credential stuffing from several addresses against real and made-up
//! usernames, and account enumeration by response time.
//!
//! The attack clients leave from other loopback addresses (127.0.0.2, …: all
//! of 127/8 is loopback on Linux), so the server sees several sources.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bulwark_api::account::{LockoutView, LoginResponse};
use bulwark_e2e::{Api, Method, StatusCode, UpOptions, UpProcess, decode_body};
use bulwark_store::{Store, TenantScope};
use serde_json::{Value, json};

const LOGIN: &str = "/api/v1/auth/login";
/// Attack sources: 127.0.0.2 ..= 127.0.0.7.
const ATTACK_ADDRESSES: u8 = 6;
/// Concurrent clients per source address.
const WORKERS_PER_ADDRESS: usize = 8;
/// Attempts in the stuffing run (about; rounded up to whole workers).
const ATTEMPTS: usize = 3000;
/// Usernames the attacker tries: the one real account and made-up ones.
const USERNAMES: [&str; 6] = [
    "owner",
    "admin",
    "root",
    "administrator",
    "support",
    "backup",
];

/// The one answer every failed login gets, whatever the reason.
fn login_failed_body() -> Value {
    json!({"error": {"code": "login_failed", "message": "the username, password or one-time code is wrong"}})
}

fn loopback(a: u8, b: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, a, b))
}

/// A client whose connections leave from source address `ip`, to the
/// server's IPv4 loopback address (not `localhost`, which may be `::1`).
#[derive(Clone)]
struct Source {
    http: reqwest::Client,
    login_url: String,
}

impl Source {
    fn new(up: &UpProcess, ip: IpAddr) -> Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .local_address(ip)
            .build()?;
        let base = up.base_url().replacen("://localhost:", "://127.0.0.1:", 1);
        Ok(Self {
            http,
            login_url: format!("{base}{LOGIN}"),
        })
    }
}

async fn try_login(
    source: &Source,
    username: &str,
    password: &str,
    otp: &str,
) -> Result<(StatusCode, Value)> {
    let response = source
        .http
        .post(&source.login_url)
        .json(&json!({"username": username, "password": password, "otp": otp}))
        .send()
        .await
        .context("sending a login")?;
    let status = response.status();
    let text = response.text().await.context("reading a login reply")?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

async fn lockout_keys(admin: &Api) -> Result<Vec<String>> {
    let list: Vec<LockoutView> = admin.get_as("/api/v1/lockouts").await?;
    Ok(list.into_iter().map(|l| l.key).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credential_stuffing_locks_usernames_and_addresses() -> Result<()> {
    let started = Instant::now();
    let up = UpProcess::start(UpOptions::default()).await?;
    // The owner's session from before the attack: the way to lift the lock.
    let (owner, admin) = Api::bootstrap(&up).await?;

    let workers = usize::from(ATTACK_ADDRESSES) * WORKERS_PER_ADDRESS;
    let per_worker = ATTEMPTS.div_ceil(workers);
    let mut tasks = tokio::task::JoinSet::new();
    for a in 0..ATTACK_ADDRESSES {
        for w in 0..WORKERS_PER_ADDRESS {
            let api = Source::new(&up, loopback(0, 2 + a))?;
            tasks.spawn(async move {
                let mut replies = Vec::with_capacity(per_worker);
                for k in 0..per_worker {
                    let username = USERNAMES[(k + w) % USERNAMES.len()];
                    let password = format!("Summer{}!{w}{a}", 2000 + k);
                    replies.push(try_login(&api, username, &password, "123456").await?);
                }
                anyhow::Ok(replies)
            });
        }
    }
    let mut replies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        replies.extend(done??);
    }
    let attack_time = started.elapsed();
    ensure!(replies.len() >= ATTEMPTS, "only {} replies", replies.len());
    let expected = (StatusCode::UNAUTHORIZED, login_failed_body());
    let odd: Vec<_> = replies.iter().filter(|r| **r != expected).collect();
    ensure!(
        odd.is_empty(),
        "{} of {} attempts got another answer than {expected:?}, e.g. {:?}",
        odd.len(),
        replies.len(),
        odd.first()
    );
    eprintln!("[stuffing] {} attempts in {attack_time:?}", replies.len());

    // Every username tried and every attacking address is locked.
    let keys = lockout_keys(&admin).await?;
    for username in USERNAMES {
        ensure!(
            keys.contains(&format!("user:{username}")),
            "user:{username} not locked: {keys:?}"
        );
    }
    for a in 0..ATTACK_ADDRESSES {
        let key = format!("addr:{}", loopback(0, 2 + a));
        ensure!(keys.contains(&key), "{key} not locked: {keys:?}");
    }

    // The real password and a valid code are refused while the owner is
    // locked, with the same answer. (A refused attempt does not use up the
    // code, so the same one serves below.)
    let clean = Source::new(&up, loopback(0, 1))?;
    let otp = owner.next_otp().await?;
    let locked = try_login(&clean, &owner.username, &owner.password, &otp).await?;
    ensure!(
        locked == expected,
        "a locked owner logging in got {locked:?}"
    );

    // Lifting needs a session: without one it is refused.
    let anonymous = up
        .api()
        .call(Method::DELETE, "/api/v1/lockouts/user:owner", None)
        .await?;
    ensure!(
        anonymous.status == StatusCode::UNAUTHORIZED,
        "{anonymous:?}"
    );
    let lifted = admin
        .call(Method::DELETE, "/api/v1/lockouts/user:owner", None)
        .await?;
    ensure!(
        lifted.status == StatusCode::NO_CONTENT,
        "DELETE lockout: {lifted:?}"
    );
    let again = admin
        .call(Method::DELETE, "/api/v1/lockouts/user:owner", None)
        .await?;
    ensure!(
        again.status == StatusCode::NOT_FOUND,
        "second DELETE: {again:?}"
    );
    let keys = lockout_keys(&admin).await?;
    ensure!(
        !keys.contains(&"user:owner".to_owned()),
        "still locked: {keys:?}"
    );

    // From an address that is still locked: refused all the same.
    let attacker = Source::new(&up, loopback(0, 2))?;
    let from_locked = try_login(&attacker, &owner.username, &owner.password, &otp).await?;
    ensure!(
        from_locked == expected,
        "login from a locked address got {from_locked:?}"
    );
    // From a clean address: the owner is back.
    let (status, body) = try_login(&clean, &owner.username, &owner.password, &otp).await?;
    ensure!(
        status == StatusCode::OK && decode_body::<LoginResponse>(&body).is_ok(),
        "owner login after lifting: {status} {body}"
    );

    // The audit log holds the locks and the lift (read from the database
    // file: login events belong to no tenant).
    let store = Store::open_sqlite(&up.data_dir().join("bulwark.db")).await?;
    let events = store.list_audit(&TenantScope::All, None, 100_000).await?;
    store.close().await;
    let has = |action: &str, target: &str| {
        events
            .iter()
            .any(|e| e.action == action && e.target == target)
    };
    ensure!(
        has("login.locked", "user:owner"),
        "no login.locked for user:owner"
    );
    ensure!(
        has("login.locked", "addr:127.0.0.2"),
        "no login.locked for addr:127.0.0.2"
    );
    ensure!(
        has("login.unlocked", "user:owner"),
        "no login.unlocked for user:owner"
    );
    ensure!(
        events
            .iter()
            .filter(|e| e.action == "login.locked" && e.target == "user:owner")
            .count()
            == 1,
        "user:owner was locked more than once"
    );
    eprintln!("[stuffing] whole test {:?}", started.elapsed());
    Ok(())
}

/// Two-sample Kolmogorov–Smirnov test: the statistic D (largest distance
/// between the two empirical distribution functions) and its asymptotic
/// p-value from the Kolmogorov distribution, Q(λ) = 2 Σ (-1)^(j-1) e^(-2j²λ²)
/// with λ = (√nₑ + 0.12 + 0.11/√nₑ)·D, nₑ = nm/(n+m) (Press et al.,
/// Numerical Recipes, 3rd ed., §14.3.3, `kstwo`/`probks`).
fn kolmogorov_smirnov(a: &[f64], b: &[f64]) -> (f64, f64) {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n - j as f64 / m).abs());
    }
    let ne = (n * m / (n + m)).sqrt();
    let lambda = (ne + 0.12 + 0.11 / ne) * d;
    // `probks`: the series converges fast except for tiny λ, where it does
    // not converge at all and p is 1.
    let mut p = 0.0;
    let mut sign = 2.0;
    let mut previous = 0.0f64;
    let mut converged = false;
    for k in 1..=100 {
        let term = sign * (-2.0 * f64::from(k * k) * lambda * lambda).exp();
        p += term;
        if term.abs() <= 0.001 * previous || term.abs() <= 1e-8 * p {
            converged = true;
            break;
        }
        sign = -sign;
        previous = term.abs();
    }
    if !converged {
        p = 1.0;
    }
    (d, p.clamp(0.0, 1.0))
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

#[test]
fn ks_test_tells_apart_what_differs() {
    let same_a: Vec<f64> = (0..200).map(|i| f64::from(i % 50)).collect();
    let same_b: Vec<f64> = (0..200).map(|i| f64::from((i + 7) % 50)).collect();
    let (d, p) = kolmogorov_smirnov(&same_a, &same_b);
    assert!(d < 0.01 && p > 0.99, "D={d} p={p}");
    let shifted: Vec<f64> = same_a.iter().map(|x| x + 10.0).collect();
    let (d, p) = kolmogorov_smirnov(&same_a, &shifted);
    assert!((d - 0.2).abs() < 1e-9 && p < 0.001, "D={d} p={p}");
}

/// Rounds of the timing test; each makes two attempts per class.
const TIMING_ROUNDS: u32 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_usernames_cost_the_same_time_as_wrong_passwords() -> Result<()> {
    let up = UpProcess::start(UpOptions::default()).await?;
    let (owner, admin) = Api::bootstrap(&up).await?;
    let expected = (StatusCode::UNAUTHORIZED, login_failed_body());

    let (mut existing, mut unknown) = (Vec::new(), Vec::new());
    let mut client = None;
    for round in 0..TIMING_ROUNDS {
        // A fresh address every 20 rounds (80 failures, under the address
        // lock), and the owner's counters cleared after every round (2
        // failures, under the first delay): throttling never answers here.
        if round.is_multiple_of(20) {
            let a = u8::try_from(round / 20 + 1)?;
            client = Some(Source::new(&up, loopback(1, a))?);
        }
        let api = client.as_ref().context("no client")?;
        let ghost = format!("ghost-{round}");
        let order = if round.is_multiple_of(2) {
            [true, false, true, false]
        } else {
            [false, true, false, true]
        };
        for real in order {
            let (name, samples) = if real {
                (owner.username.as_str(), &mut existing)
            } else {
                (ghost.as_str(), &mut unknown)
            };
            let t = Instant::now();
            let reply = try_login(api, name, "not the password at all", "000000").await?;
            samples.push(t.elapsed().as_secs_f64() * 1000.0);
            ensure!(reply == expected, "{name}: {reply:?}");
        }
        let lifted = admin
            .call(Method::DELETE, "/api/v1/lockouts/user:owner", None)
            .await?;
        ensure!(lifted.status == StatusCode::NO_CONTENT, "{lifted:?}");
    }

    let (median_existing, median_unknown) = (median(&existing), median(&unknown));
    let (d, p) = kolmogorov_smirnov(&existing, &unknown);
    eprintln!(
        "[timing] n={} each; median wrong password {median_existing:.2} ms, \
         unknown user {median_unknown:.2} ms; KS D={d:.3} p={p:.4}",
        existing.len()
    );
    ensure!(
        p >= 0.001,
        "login time tells existing from unknown usernames: KS D={d:.3}, p={p:.2e}"
    );
    let ratio = median_existing.max(median_unknown) / median_existing.min(median_unknown);
    ensure!(
        ratio < 1.25,
        "medians differ by {:.0}%",
        (ratio - 1.0) * 100.0
    );
    Ok(())
}
