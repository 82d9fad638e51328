//! The storage suite: every body below is written once and runs against
//! SQLite (a temporary file) and PostgreSQL (a fresh schema per test). The
//! PostgreSQL half fails, never skips, when the server is unreachable.

#![allow(clippy::unwrap_used)]

use bulwark_protocol::inventory::{
    AdminGrant, CpuInfo, InstalledPackage, Inventory, ListeningPort, LocalAdmin, MemoryInfo,
    ProcessInfo, ServiceUnit, Services, SystemInfo,
};
use bulwark_store::AuditAction;
use bulwark_store::testing::{postgres_test_url, sqlite_test_url};
use bulwark_store::{
    Backend, Decision, Device, Job, JobState, Lockout, NewApiToken, NewAuditEvent, NewDevice,
    NewJob, NewOperator, NewSession, NewSigningKey, SessionKind, SetupEnrolment, SigningKeyKind,
    Store, StoreError, TargetCounts, TargetOutcome, TargetState, TenantScope, ThrottleCounter,
    TrustKind, TrustSet,
};
use bulwark_store::{Companions, NewTrustProposal, ProposalState};

/// Runs each named body on both backends. `store:` bodies take an open
/// `Store`; `url:` bodies take the database URL and open it themselves.
macro_rules! suite {
    (store: [$($store_test:ident),* $(,)?], url: [$($url_test:ident),* $(,)?] $(,)?) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $store_test() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = Store::open(&sqlite_test_url(dir.path())).await.unwrap();
                    assert_eq!(store.backend(), Backend::Sqlite);
                    super::$store_test(store.clone()).await;
                    store.close().await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $url_test() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$url_test(sqlite_test_url(dir.path())).await;
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $store_test() {
                    let (url, guard) = super::postgres().await;
                    let store = Store::open(&url).await.unwrap();
                    assert_eq!(store.backend(), Backend::Postgres);
                    super::$store_test(store.clone()).await;
                    store.close().await;
                    guard.drop().await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $url_test() {
                    let (url, guard) = super::postgres().await;
                    super::$url_test(url).await;
                    guard.drop().await;
                }
            )*
        }
    };
}

suite! {
    store: [
        tenants_create_ensure_conflict,
        ensure_tenant_concurrently,
        first_owner,
        totp_step_replay,
        sessions,
        enrollment_tokens,
        enrollment_token_used_concurrently,
        inventory_full_and_delta,
        inventory_concurrent_deltas,
        device_packages,
        inventory_sections,
        tenant_scope,
        audit_log,
        unique_violations_are_conflicts,
        login_throttle,
        login_throttle_concurrent,
        invitations,
        invitation_accepted_concurrently,
        sessions_listed_and_revoked,
        operator_disabled,
        recovery_codes,
        api_tokens,
        trust_statements,
        trust_proposals,
        trust_proposal_companions,
        device_trust,
        signing_keys,
        jobs_tenant_scope,
        job_targets_of_foreign_tenant_refused,
        job_results_idempotent,
        deliveries_recorded_in_batches,
        job_changes_commit_with_their_audit_events,
        changes_fail_when_their_events_cannot_be_logged,
        jobs_deliverable_when_approved_and_unexpired,
        job_approvals_replace_envelope,
        job_state_transitions,
        job_approvals_and_results_concurrent,
        job_cancel_and_live_output,
    ],
    url: [migrations_idempotent],
}

/// A throttle update that adds one failure to each key, as a login attempt
/// does; returns the failure counts it saw.
async fn add_failure(store: &Store, keys: &[&str], now: i64) -> Vec<i64> {
    store
        .update_throttle(keys, |before| {
            let after = before
                .iter()
                .map(|c| ThrottleCounter {
                    failures: c.failures + 1,
                    window_start: if c.failures == 0 { now } else { c.window_start },
                    last_failure_at: now,
                    locked_until: c.locked_until,
                })
                .collect();
            (after, before.iter().map(|c| c.failures).collect())
        })
        .await
        .unwrap()
}

async fn login_throttle(store: Store) {
    let (user, addr) = ("user:owner", "addr:127.0.0.2");
    // Unknown keys read as zeros.
    assert_eq!(
        store.throttle_counter(user).await.unwrap(),
        ThrottleCounter::default()
    );
    assert_eq!(add_failure(&store, &[user, addr], T0).await, [0, 0]);
    assert_eq!(add_failure(&store, &[addr, user], T0 + 1).await, [1, 1]);
    assert_eq!(
        store.throttle_counter(user).await.unwrap(),
        ThrottleCounter {
            failures: 2,
            window_start: T0,
            last_failure_at: T0 + 1,
            locked_until: None
        }
    );
    assert!(store.list_lockouts(T0).await.unwrap().is_empty());

    // Lock the username until T0 + MINUTE.
    let locked = ThrottleCounter {
        failures: 10,
        window_start: T0,
        last_failure_at: T0 + 2,
        locked_until: Some(T0 + MINUTE),
    };
    store
        .update_throttle(&[user], |_| (vec![locked], ()))
        .await
        .unwrap();
    let lockouts = store.list_lockouts(T0 + 2).await.unwrap();
    assert_eq!(
        lockouts,
        [Lockout {
            key: user.to_owned(),
            counter: locked
        }]
    );
    // Expired locks are not listed.
    assert!(store.list_lockouts(T0 + MINUTE).await.unwrap().is_empty());

    // Duplicate keys are refused before anything changes.
    assert_conflict(
        store
            .update_throttle(&[user, user], |b| (b.to_vec(), ()))
            .await,
        "throttle keys must be distinct",
    );

    // Returning an empty counter deletes the row.
    store
        .update_throttle(&[addr], |_| (vec![ThrottleCounter::default()], ()))
        .await
        .unwrap();
    assert_not_found(store.clear_throttle(addr, T0, |_| Vec::new()).await);

    // Clearing says whether a lock was in force, and forgets everything.
    assert!(
        store
            .clear_throttle(user, T0 + 3, |_| Vec::new())
            .await
            .unwrap()
    );
    assert_eq!(
        store.throttle_counter(user).await.unwrap(),
        ThrottleCounter::default()
    );
    assert_not_found(store.clear_throttle(user, T0 + 3, |_| Vec::new()).await);
    add_failure(&store, &[user], T0).await;
    assert!(
        !store
            .clear_throttle(user, T0, |_| Vec::new())
            .await
            .unwrap()
    );

    // Pruning drops idle, unlocked counters only.
    add_failure(&store, &["user:idle"], T0).await;
    add_failure(&store, &["user:recent"], T0 + 10 * MINUTE).await;
    store
        .update_throttle(&["user:locked"], |_| {
            (
                vec![ThrottleCounter {
                    failures: 10,
                    window_start: T0,
                    last_failure_at: T0,
                    locked_until: Some(T0 + 30 * MINUTE),
                }],
                (),
            )
        })
        .await
        .unwrap();
    assert_eq!(
        store
            .prune_throttle(T0 + 5 * MINUTE, T0 + 20 * MINUTE)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store.throttle_counter("user:idle").await.unwrap().failures,
        0
    );
    assert_eq!(
        store
            .throttle_counter("user:recent")
            .await
            .unwrap()
            .failures,
        1
    );
    assert_eq!(
        store
            .throttle_counter("user:locked")
            .await
            .unwrap()
            .failures,
        10
    );
}

/// Concurrent attempts on overlapping keys (named in either order) lose no
/// update and do not deadlock.
async fn login_throttle_concurrent(store: Store) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let store = store.clone();
        tasks.spawn(async move {
            let addr = if i % 2 == 0 { "addr:a" } else { "addr:b" };
            if i % 3 == 0 {
                add_failure(&store, &["user:owner", addr], T0 + i).await
            } else {
                add_failure(&store, &[addr, "user:owner"], T0 + i).await
            }
        });
    }
    let mut seen = Vec::new();
    while let Some(result) = tasks.join_next().await {
        seen.push(result.unwrap());
    }
    assert_eq!(
        store.throttle_counter("user:owner").await.unwrap().failures,
        40
    );
    assert_eq!(store.throttle_counter("addr:a").await.unwrap().failures, 20);
    assert_eq!(store.throttle_counter("addr:b").await.unwrap().failures, 20);
    // Every attempt saw a different count before it: they ran one at a time.
    let mut user_counts: Vec<i64> = seen.iter().map(|s| *s.iter().max().unwrap_or(&0)).collect();
    user_counts.sort_unstable();
    assert_eq!(user_counts, (0..40).collect::<Vec<i64>>());
}

async fn postgres() -> (String, bulwark_store::testing::SchemaGuard) {
    postgres_test_url().await.unwrap_or_else(|error| {
        panic!(
            "PostgreSQL is required for these tests (set BULWARK_TEST_POSTGRES_URL; \
             default postgres://postgres@127.0.0.1:5432/test): {error:?}"
        )
    })
}

const T0: i64 = 1_700_000_000_000;
const MINUTE: i64 = 60_000;

fn hash(n: u8) -> [u8; 32] {
    [n; 32]
}

fn new_device(n: u8, hostname: &str) -> NewDevice {
    NewDevice {
        id: uuid::Uuid::new_v4().to_string(),
        public_key: [n; 32],
        hostname: hostname.to_owned(),
        agent_version: "0.1.0".to_owned(),
    }
}

fn new_operator(username: &str) -> NewOperator {
    NewOperator {
        username: username.to_owned(),
        password_hash: format!("$argon2id$hash-of-{username}"),
        totp_secret: format!("SECRET{username}"),
    }
}

/// Creates a tenant with one enrolled device per hostname.
async fn tenant_with_devices(
    store: &Store,
    name: &str,
    first_key: u8,
    hostnames: &[&str],
) -> (String, Vec<Device>) {
    let tenant = store.create_tenant(name, T0, |_| Vec::new()).await.unwrap();
    let mut devices = Vec::new();
    for (i, hostname) in hostnames.iter().enumerate() {
        let key = first_key + i as u8;
        let token = hash(key);
        store
            .create_enrollment_token(token, &tenant.id, None, T0, T0 + MINUTE, &[])
            .await
            .unwrap();
        devices.push(
            store
                .enroll_device(token, new_device(key, hostname), T0)
                .await
                .unwrap(),
        );
    }
    (tenant.id, devices)
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::NotFound)),
        "expected NotFound, got {result:?}"
    );
}

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::Conflict(got)) => assert_eq!(got, what),
        other => panic!("expected Conflict({what:?}), got {other:?}"),
    }
}

async fn migrations_idempotent(url: String) {
    let store = Store::open(&url).await.unwrap();
    store
        .create_tenant("acme", T0, |_| Vec::new())
        .await
        .unwrap();
    store.close().await;

    // Open again: the migrations are recorded and do not run twice.
    let store = Store::open(&url).await.unwrap();
    let tenant = store
        .tenant_by_name(&TenantScope::All, "acme")
        .await
        .unwrap();
    assert_eq!(tenant.map(|t| t.name).as_deref(), Some("acme"));
    assert_eq!(store.operator_count().await.unwrap(), 0);
    store.close().await;

    // And a third time, concurrently with a fourth.
    let (a, b) = tokio::join!(Store::open(&url), Store::open(&url));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.list_tenants(&TenantScope::All).await.unwrap().len(), 1);
    assert_eq!(b.list_tenants(&TenantScope::All).await.unwrap().len(), 1);
    a.close().await;
    b.close().await;
}

async fn tenants_create_ensure_conflict(store: Store) {
    let acme = store
        .create_tenant("acme", T0, |_| Vec::new())
        .await
        .unwrap();
    assert_eq!((acme.name.as_str(), acme.created_at), ("acme", T0));
    assert_conflict(
        store.create_tenant("acme", T0 + 1, |_| Vec::new()).await,
        "tenant name already exists",
    );

    // ensure_tenant returns the existing tenant unchanged...
    assert_eq!(
        store.ensure_tenant("acme", "test", T0 + 2).await.unwrap(),
        acme
    );
    // ...or creates it, once.
    let demo = store.ensure_tenant("demo", "test", T0 + 3).await.unwrap();
    assert_eq!(demo.created_at, T0 + 3);
    assert_eq!(
        store.ensure_tenant("demo", "test", T0 + 4).await.unwrap(),
        demo
    );

    assert_eq!(
        store
            .tenant_by_name(&TenantScope::All, "demo")
            .await
            .unwrap(),
        Some(demo.clone())
    );
    assert_eq!(
        store
            .tenant_by_name(&TenantScope::All, "nope")
            .await
            .unwrap(),
        None
    );

    // Byte order, whatever the database's locale; device counts included.
    store
        .create_tenant("Zeta", T0, |_| Vec::new())
        .await
        .unwrap();
    store
        .create_tenant("beta", T0, |_| Vec::new())
        .await
        .unwrap();
    let token = hash(1);
    store
        .create_enrollment_token(token, &demo.id, None, T0, T0 + MINUTE, &[])
        .await
        .unwrap();
    store
        .enroll_device(token, new_device(1, "host"), T0)
        .await
        .unwrap();
    let listed: Vec<(String, i64)> = store
        .list_tenants(&TenantScope::All)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.name, t.device_count))
        .collect();
    let expected = [("Zeta", 0), ("acme", 0), ("beta", 0), ("demo", 1)];
    assert_eq!(listed, expected.map(|(n, c)| (n.to_owned(), c)));
}

async fn ensure_tenant_concurrently(store: Store) {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.ensure_tenant("racy", "test", T0 + i).await })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap().unwrap().id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every caller gets the same tenant");
    assert_eq!(
        store.list_tenants(&TenantScope::All).await.unwrap().len(),
        1
    );
}

/// An enrolment started with setup code `hash(1)`.
fn enrolment(username: &str, created_at: i64) -> SetupEnrolment {
    SetupEnrolment {
        code_hash: hash(1),
        username: username.to_owned(),
        password_hash: "$argon2id$owner".to_owned(),
        totp_secret: "JBSWY3DPEHPK3PXP".to_owned(),
        created_at,
        expires_at: created_at + 10 * MINUTE,
    }
}

async fn first_owner(store: Store) {
    let (code, other_code) = (hash(1), hash(2));
    let (enrol, late_enrol) = (hash(3), hash(4));

    // A new code replaces the earlier one.
    store
        .replace_setup_code(other_code, T0, T0 + 60 * MINUTE)
        .await
        .unwrap();
    store
        .replace_setup_code(code, T0, T0 + 60 * MINUTE)
        .await
        .unwrap();
    assert!(!store.setup_code_valid(other_code, T0).await.unwrap());
    assert!(store.setup_code_valid(code, T0).await.unwrap());
    assert!(
        !store
            .setup_code_valid(code, T0 + 60 * MINUTE)
            .await
            .unwrap(),
        "expired at expires_at"
    );

    store
        .create_setup_enrolment(enrol, &enrolment("alice", T0))
        .await
        .unwrap();
    let bob = SetupEnrolment {
        expires_at: T0 + 120 * MINUTE,
        ..enrolment("bob", T0)
    };
    store
        .create_setup_enrolment(late_enrol, &bob)
        .await
        .unwrap();
    assert_eq!(
        store.setup_enrolment(enrol, T0 + MINUTE).await.unwrap(),
        Some(enrolment("alice", T0))
    );
    assert_eq!(
        store
            .setup_enrolment(enrol, T0 + 10 * MINUTE)
            .await
            .unwrap(),
        None,
        "expired"
    );
    assert_eq!(
        store.setup_enrolment(hash(9), T0).await.unwrap(),
        None,
        "unknown"
    );

    // An enrolment started with another code cannot be finished with this one.
    let stray = SetupEnrolment {
        code_hash: other_code,
        ..enrolment("mallory", T0)
    };
    store.create_setup_enrolment(hash(5), &stray).await.unwrap();
    assert_not_found(store.create_first_owner(code, hash(5), T0 + MINUTE).await);

    // Bad code, unknown enrolment, expired enrolment, expired code: nothing changes.
    assert_not_found(
        store
            .create_first_owner(other_code, enrol, T0 + MINUTE)
            .await,
    );
    assert_not_found(store.create_first_owner(code, hash(9), T0 + MINUTE).await);
    assert_not_found(
        store
            .create_first_owner(code, enrol, T0 + 10 * MINUTE)
            .await,
    );
    assert_not_found(
        store
            .create_first_owner(code, late_enrol, T0 + 61 * MINUTE)
            .await,
    );
    assert_eq!(store.operator_count().await.unwrap(), 0);
    assert!(
        store.setup_code_valid(code, T0 + MINUTE).await.unwrap(),
        "failed attempts keep the code"
    );

    let owner = store
        .create_first_owner(code, enrol, T0 + MINUTE)
        .await
        .unwrap();
    assert_eq!(owner.username, "alice");
    assert_eq!(owner.role, "owner");
    assert_eq!(owner.password_hash, "$argon2id$owner");
    assert_eq!(owner.totp_secret, "JBSWY3DPEHPK3PXP");
    assert_eq!(
        (owner.created_at, owner.disabled_at, owner.last_totp_step),
        (T0 + MINUTE, None, 0)
    );
    assert_eq!(
        store.operator_by_username("alice").await.unwrap(),
        Some(owner.clone())
    );
    assert_eq!(
        store.operator_by_id(&owner.id).await.unwrap(),
        Some(owner.clone())
    );
    assert_eq!(store.operator_by_username("bob").await.unwrap(), None);
    assert_eq!(store.operator_count().await.unwrap(), 1);

    // The code and the enrolment are consumed.
    assert!(!store.setup_code_valid(code, T0 + MINUTE).await.unwrap());
    assert_eq!(
        store.setup_enrolment(enrol, T0 + MINUTE).await.unwrap(),
        None
    );
    assert_not_found(
        store
            .create_first_owner(code, late_enrol, T0 + 56 * MINUTE)
            .await,
    );

    // Logged.
    let events = store.list_audit(&TenantScope::All, None, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(
        (event.action.as_str(), event.actor.as_str()),
        ("operator.created", "alice")
    );
    assert_eq!(
        (event.target.as_str(), event.tenant_id.as_deref(), event.at),
        (owner.id.as_str(), None, T0 + MINUTE)
    );

    // A second owner is refused, even with a fresh code and enrolment, and
    // neither is consumed.
    store
        .replace_setup_code(code, T0 + 57 * MINUTE, T0 + 90 * MINUTE)
        .await
        .unwrap();
    assert_conflict(
        store
            .create_first_owner(code, late_enrol, T0 + 58 * MINUTE)
            .await,
        "an owner already exists",
    );
    assert_eq!(store.operator_count().await.unwrap(), 1);
    assert!(
        store
            .setup_code_valid(code, T0 + 58 * MINUTE)
            .await
            .unwrap()
    );
    assert!(
        store
            .setup_enrolment(late_enrol, T0 + 58 * MINUTE)
            .await
            .unwrap()
            .is_some()
    );
}

async fn totp_step_replay(store: Store) {
    let op = store
        .create_operator(&new_operator("carol"), "technician", "test", T0)
        .await
        .unwrap();
    assert!(store.accept_totp_step(&op.id, 100).await.unwrap());
    assert!(
        !store.accept_totp_step(&op.id, 100).await.unwrap(),
        "the same step twice"
    );
    assert!(
        !store.accept_totp_step(&op.id, 99).await.unwrap(),
        "an earlier step"
    );
    assert!(store.accept_totp_step(&op.id, 101).await.unwrap());
    assert!(
        !store
            .accept_totp_step("no-such-operator", 500)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .operator_by_id(&op.id)
            .await
            .unwrap()
            .unwrap()
            .last_totp_step,
        101
    );

    // Two concurrent logins with the same code: exactly one passes.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (store, id) = (store.clone(), op.id.clone());
            tokio::spawn(async move { store.accept_totp_step(&id, 200).await.unwrap() })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await.unwrap() as usize;
    }
    assert_eq!(accepted, 1);
}

async fn sessions(store: Store) {
    let op = store
        .create_operator(&new_operator("dave"), "technician", "test", T0)
        .await
        .unwrap();
    let new = NewSession {
        id_hash: hash(7),
        operator_id: op.id.clone(),
        kind: SessionKind::Browser,
        csrf_token: "csrf".to_owned(),
        created_at: T0,
        expires_at: T0 + 60 * MINUTE,
        mfa_at: T0,
        ip: Some("192.0.2.7".to_owned()),
        user_agent: None,
        passkey_id: None,
    };
    let created = store.create_session(new.clone(), &[]).await.unwrap();
    assert_eq!(created.last_seen_at, T0);
    assert_eq!(
        store.session(hash(7)).await.unwrap(),
        Some((created.clone(), op.clone()))
    );
    assert_eq!(store.session(hash(8)).await.unwrap(), None);

    let cli = NewSession {
        id_hash: hash(8),
        kind: SessionKind::Cli,
        ip: None,
        ..new.clone()
    };
    store.create_session(cli, &[]).await.unwrap();
    assert_eq!(
        store.session(hash(8)).await.unwrap().unwrap().0.kind,
        SessionKind::Cli
    );

    store.touch_session(hash(7), T0 + MINUTE).await.unwrap();
    assert_eq!(
        store
            .session(hash(7))
            .await
            .unwrap()
            .unwrap()
            .0
            .last_seen_at,
        T0 + MINUTE
    );
    store.touch_session(hash(9), T0).await.unwrap(); // unknown: a no-op

    store
        .revoke_session(hash(7), T0 + 2 * MINUTE, &[])
        .await
        .unwrap();
    store
        .revoke_session(hash(7), T0 + 3 * MINUTE, &[])
        .await
        .unwrap();
    let (session, _) = store.session(hash(7)).await.unwrap().unwrap();
    assert_eq!(
        session.revoked_at,
        Some(T0 + 2 * MINUTE),
        "the first revocation counts"
    );
    store.touch_session(hash(7), T0 + 4 * MINUTE).await.unwrap(); // revoked: a no-op
    assert_eq!(
        store
            .session(hash(7))
            .await
            .unwrap()
            .unwrap()
            .0
            .last_seen_at,
        T0 + MINUTE
    );
    assert_not_found(store.revoke_session(hash(9), T0, &[]).await);

    // Unknown operator.
    let orphan = NewSession {
        id_hash: hash(10),
        operator_id: "no-such-operator".to_owned(),
        ..new
    };
    assert_not_found(store.create_session(orphan, &[]).await);
}

async fn enrollment_tokens(store: Store) {
    let tenant = store
        .create_tenant("acme", T0, |_| Vec::new())
        .await
        .unwrap();
    let (token, expired, used) = (hash(1), hash(2), hash(3));
    store
        .create_enrollment_token(token, &tenant.id, Some("op-1"), T0, T0 + MINUTE, &[])
        .await
        .unwrap();
    store
        .create_enrollment_token(expired, &tenant.id, None, T0, T0 + MINUTE, &[])
        .await
        .unwrap();
    store
        .create_enrollment_token(used, &tenant.id, None, T0, T0 + MINUTE, &[])
        .await
        .unwrap();
    assert_not_found(
        store
            .create_enrollment_token(hash(4), "no-such-tenant", None, T0, T0 + MINUTE, &[])
            .await,
    );

    // Unknown and expired tokens create nothing.
    assert_not_found(store.enroll_device(hash(9), new_device(1, "a"), T0).await);
    assert_not_found(
        store
            .enroll_device(expired, new_device(1, "a"), T0 + MINUTE)
            .await,
    );
    assert!(
        store
            .list_devices(&TenantScope::All, &tenant.id)
            .await
            .unwrap()
            .is_empty()
    );

    // Success creates exactly one device, in the token's tenant, and logs it.
    let new = new_device(1, "web-1");
    let device = store
        .enroll_device(used, new.clone(), T0 + 1)
        .await
        .unwrap();
    assert_eq!(
        (
            device.id.as_str(),
            device.tenant_id.as_str(),
            device.tenant_name.as_str()
        ),
        (new.id.as_str(), tenant.id.as_str(), "acme")
    );
    assert_eq!(
        (device.hostname.as_str(), device.agent_version.as_str()),
        ("web-1", "0.1.0")
    );
    assert_eq!(
        (device.public_key.as_slice(), device.enrolled_at),
        (&new.public_key[..], T0 + 1)
    );
    assert_eq!(
        (
            device.last_seen_at,
            &device.inventory,
            device.inventory_updated_at
        ),
        (None, &None, None)
    );
    assert_eq!(
        store
            .list_devices(&TenantScope::All, &tenant.id)
            .await
            .unwrap(),
        vec![device.clone()]
    );
    assert_eq!(
        store.device(&TenantScope::All, &device.id).await.unwrap(),
        Some(device.clone())
    );
    assert_eq!(
        store.device_public_key(&device.id).await.unwrap(),
        Some(bulwark_store::DeviceKey {
            public_key: new.public_key.to_vec(),
            tenant_id: tenant.id.clone(),
            tenant_name: "acme".to_owned(),
        })
    );
    assert_eq!(
        store.device_public_key("no-such-device").await.unwrap(),
        None
    );
    let events = store
        .list_audit(&TenantScope::All, Some(&tenant.id), 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].action.as_str(), events[0].target.as_str()),
        ("device.enrolled", device.id.as_str())
    );
    // The log names the key's fingerprint, as jobs do: an auditor reads
    // which key a device id stood for without asking the server.
    let fingerprint = <sha2::Sha256 as sha2::Digest>::digest(new.public_key);
    assert!(
        events[0]
            .detail
            .contains(&format!("key={}", hex::encode(fingerprint))),
        "{}",
        events[0].detail
    );

    // A used token creates nothing.
    assert_not_found(store.enroll_device(used, new_device(2, "b"), T0 + 2).await);

    // A duplicate key is a conflict and leaves the token unused.
    assert_conflict(
        store
            .enroll_device(token, new_device(1, "dup"), T0 + 3)
            .await,
        "device key already enrolled",
    );
    assert_eq!(
        store
            .list_devices(&TenantScope::All, &tenant.id)
            .await
            .unwrap()
            .len(),
        1
    );
    let second = store
        .enroll_device(token, new_device(2, "web-2"), T0 + 4)
        .await
        .unwrap();
    assert_eq!(
        store
            .list_devices(&TenantScope::All, &tenant.id)
            .await
            .unwrap(),
        vec![device.clone(), second]
    );
    assert_eq!(
        store
            .list_audit(&TenantScope::All, None, 10)
            .await
            .unwrap()
            .len(),
        2
    );

    // Heartbeats.
    store
        .device_seen(&device.id, T0 + 5, "0.2.0")
        .await
        .unwrap();
    let seen = store
        .device(&TenantScope::All, &device.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (seen.last_seen_at, seen.agent_version.as_str()),
        (Some(T0 + 5), "0.2.0")
    );
    assert_not_found(store.device_seen("no-such-device", T0, "0.2.0").await);

    // Connected devices, written in batches: unknown ids are skipped and a
    // later time already recorded is kept.
    let ids = vec![device.id.clone(), "no-such-device".to_owned()];
    assert_eq!(store.devices_seen(&ids, T0 + 60).await.unwrap(), 1);
    assert_eq!(store.devices_seen(&ids, T0 + 30).await.unwrap(), 0);
    let seen = store
        .device(&TenantScope::All, &device.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.last_seen_at, Some(T0 + 60));
    let many: Vec<String> = (0..1200).map(|n| format!("absent-{n}")).collect();
    assert_eq!(store.devices_seen(&many, T0 + 90).await.unwrap(), 0);
}

async fn enrollment_token_used_concurrently(store: Store) {
    let tenant = store
        .create_tenant("acme", T0, |_| Vec::new())
        .await
        .unwrap();
    for round in 0..5u8 {
        let token = hash(100 + round);
        store
            .create_enrollment_token(token, &tenant.id, None, T0, T0 + MINUTE, &[])
            .await
            .unwrap();
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let tasks: Vec<_> = [2 * round, 2 * round + 1]
            .into_iter()
            .map(|key| {
                let (store, barrier) = (store.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    store
                        .enroll_device(token, new_device(key, "racer"), T0)
                        .await
                })
            })
            .collect();
        let mut ok = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => ok += 1,
                Err(StoreError::NotFound) => {}
                Err(other) => panic!("unexpected error {other:?}"),
            }
        }
        assert_eq!(ok, 1, "round {round}: exactly one use succeeds");
    }
    assert_eq!(
        store
            .list_devices(&TenantScope::All, &tenant.id)
            .await
            .unwrap()
            .len(),
        5
    );
}

fn system(hostname: &str) -> SystemInfo {
    SystemInfo {
        hostname: hostname.to_owned(),
        os_name: "Debian GNU/Linux".to_owned(),
        os_version: "12".to_owned(),
        kernel_version: "6.1.0".to_owned(),
        architecture: "x86_64".to_owned(),
        boot_time: 1_700_000_000,
        agent_version: "0.1.0".to_owned(),
    }
}

async fn inventory_full_and_delta(store: Store) {
    let (_, devices) = tenant_with_devices(&store, "acme", 1, &["enrolled-name"]).await;
    let id = &devices[0].id;

    let full = Inventory {
        system: Some(system("web-1")),
        cpu: Some(CpuInfo {
            model: "EPYC".to_owned(),
            logical_cores: 4,
            physical_cores: Some(2),
        }),
        ..Inventory::default()
    };
    assert_eq!(
        store
            .update_inventory(id, true, full.clone(), T0 + 1)
            .await
            .unwrap(),
        full
    );
    let device = store.device(&TenantScope::All, id).await.unwrap().unwrap();
    assert_eq!(
        (device.inventory.as_ref(), device.inventory_updated_at),
        (Some(&full), Some(T0 + 1))
    );
    assert_eq!(
        device.hostname, "web-1",
        "the hostname follows the inventory"
    );

    // A delta replaces the sections it has and keeps the others.
    let memory = MemoryInfo {
        total_bytes: 8 << 30,
        available_bytes: 4 << 30,
        swap_total_bytes: 0,
        swap_free_bytes: 0,
    };
    let delta = Inventory {
        system: Some(system("web-1b")),
        memory: Some(memory.clone()),
        ..Inventory::default()
    };
    let merged = store
        .update_inventory(id, false, delta, T0 + 2)
        .await
        .unwrap();
    let expected = Inventory {
        system: Some(system("web-1b")),
        memory: Some(memory),
        ..full.clone()
    };
    assert_eq!(merged, expected);
    let device = store.device(&TenantScope::All, id).await.unwrap().unwrap();
    assert_eq!(
        (device.inventory.as_ref(), device.inventory_updated_at),
        (Some(&expected), Some(T0 + 2))
    );
    assert_eq!(device.hostname, "web-1b");

    // An empty delta changes nothing but the time; an empty hostname is ignored.
    store
        .update_inventory(id, false, Inventory::default(), T0 + 3)
        .await
        .unwrap();
    let nameless = Inventory {
        system: Some(system("")),
        ..Inventory::default()
    };
    store
        .update_inventory(id, false, nameless, T0 + 4)
        .await
        .unwrap();
    let device = store.device(&TenantScope::All, id).await.unwrap().unwrap();
    assert_eq!(device.hostname, "web-1b");
    assert_eq!(device.inventory.unwrap().cpu, full.cpu);

    // A full report drops what it does not have.
    let only_cpu = Inventory {
        cpu: full.cpu.clone(),
        ..Inventory::default()
    };
    store
        .update_inventory(id, true, only_cpu.clone(), T0 + 5)
        .await
        .unwrap();
    assert_eq!(
        store
            .device(&TenantScope::All, id)
            .await
            .unwrap()
            .unwrap()
            .inventory,
        Some(only_cpu)
    );

    // A delta onto a device that never reported.
    let (_, fresh) = tenant_with_devices(&store, "beta", 50, &["fresh"]).await;
    let delta = Inventory {
        system: Some(system("fresh-1")),
        ..Inventory::default()
    };
    assert_eq!(
        store
            .update_inventory(&fresh[0].id, false, delta.clone(), T0)
            .await
            .unwrap(),
        delta
    );

    assert_not_found(
        store
            .update_inventory("no-such-device", true, Inventory::default(), T0)
            .await,
    );
}

fn package(name: &str, version: &str) -> InstalledPackage {
    InstalledPackage {
        name: name.to_owned(),
        version: version.to_owned(),
        architecture: "amd64".to_owned(),
        source: name.to_owned(),
        source_version: version.to_owned(),
    }
}

/// Packages live in their own table: replaced by a report that carries
/// them, kept by a delta without them, emptied by a full report without
/// them; never in the inventory blob; read only within the caller's scope.
async fn device_packages(store: Store) {
    let (_, devices) = tenant_with_devices(&store, "acme", 1, &["web-1"]).await;
    let (_, foreign) = tenant_with_devices(&store, "globex", 10, &["gx-1"]).await;
    let id = &devices[0].id;
    let stranger = store
        .create_operator(&new_operator("mallory"), "technician", "test", T0)
        .await
        .unwrap();
    let strangers = TenantScope::Operator(stranger.id);
    let names = |list: &[InstalledPackage]| -> Vec<String> {
        list.iter().map(|p| p.name.clone()).collect()
    };

    // Hostile text, a duplicate and a NUL store on both dialects.
    let first = vec![
        package("libc6", "2.36-9"),
        package("<script>alert(1)</script>", "1"),
        package("libc6", "2.36-9"),
        package("nul\0byte", "1\0"),
        package("50%_off", "1"),
    ];
    let stored = store
        .update_inventory(
            id,
            true,
            Inventory {
                packages: Some(first),
                ..Inventory::default()
            },
            T0 + 1,
        )
        .await
        .unwrap();
    assert_eq!(stored.packages, None, "the blob never holds packages");
    let (all, total) = store
        .device_packages(&TenantScope::All, id, "", 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(total, 4);
    assert_eq!(
        names(&all),
        [
            "50%_off",
            "<script>alert(1)</script>",
            "libc6",
            "nul\u{fffd}byte"
        ]
    );
    assert_eq!(all[3].version, "1\u{fffd}");
    let (hits, total) = store
        .device_packages(&TenantScope::All, id, "LIBC", 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((names(&hits), total), (vec!["libc6".to_owned()], 1));
    // LIKE wildcards in the filter are literal text.
    let (hits, _) = store
        .device_packages(&TenantScope::All, id, "%_", 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(names(&hits), ["50%_off"]);
    let (page, total) = store
        .device_packages(&TenantScope::All, id, "", 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((page.len(), total), (2, 4));

    // A delta without packages keeps them; one with packages replaces them.
    store
        .update_inventory(
            id,
            false,
            Inventory {
                system: Some(system("web-1")),
                ..Inventory::default()
            },
            T0 + 2,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .device_packages(&TenantScope::All, id, "", 100)
            .await
            .unwrap()
            .unwrap()
            .1,
        4
    );
    store
        .update_inventory(
            id,
            false,
            Inventory {
                packages: Some(vec![package("bash", "5.2")]),
                ..Inventory::default()
            },
            T0 + 3,
        )
        .await
        .unwrap();
    let (all, _) = store
        .device_packages(&TenantScope::All, id, "", 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(names(&all), ["bash"]);

    // Outside the scope: no answer at all, not an empty list.
    assert_eq!(
        store
            .device_packages(&strangers, id, "", 100)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .device_packages(&TenantScope::All, &foreign[0].id, "", 100)
            .await
            .unwrap()
            .map(|p| p.1),
        Some(0)
    );

    // More than the cap: the first MAX_PACKAGES_PER_DEVICE are kept.
    let many: Vec<InstalledPackage> = (0..bulwark_store::MAX_PACKAGES_PER_DEVICE + 5)
        .map(|n| package(&format!("p{n:05}"), "1"))
        .collect();
    store
        .update_inventory(
            id,
            false,
            Inventory {
                packages: Some(many),
                ..Inventory::default()
            },
            T0 + 4,
        )
        .await
        .unwrap();
    let (_, total) = store
        .device_packages(&TenantScope::All, id, "", 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(total, bulwark_store::MAX_PACKAGES_PER_DEVICE as u64);

    // A full report without the section empties the list.
    store
        .update_inventory(id, true, Inventory::default(), T0 + 5)
        .await
        .unwrap();
    assert_eq!(
        store
            .device_packages(&TenantScope::All, id, "", 100)
            .await
            .unwrap()
            .unwrap()
            .1,
        0
    );
}

fn port(port: u16, process: &str) -> ListeningPort {
    ListeningPort {
        protocol: "tcp".into(),
        address: "0.0.0.0".into(),
        port,
        process: Some(process.into()),
        pid: Some(7),
    }
}

fn admin(name: &str) -> LocalAdmin {
    LocalAdmin {
        name: name.into(),
        grants: vec![AdminGrant {
            kind: "group".into(),
            via: "sudo".into(),
        }],
    }
}

async fn inventory_sections(store: Store) {
    let (_, devices) = tenant_with_devices(&store, "acme", 1, &["web-1"]).await;
    let (_, foreign) = tenant_with_devices(&store, "globex", 10, &["gx-1"]).await;
    let id = &devices[0].id;
    let services = Services {
        systemd_running: true,
        units: vec![ServiceUnit {
            name: "ssh.service".into(),
            load_state: "loaded".into(),
            active_state: "active".into(),
            sub_state: "running".into(),
            enabled_state: "enabled".into(),
        }],
    };
    let processes = vec![ProcessInfo {
        name: "nul\0<b>".into(),
        pid: 1,
        user: "root".into(),
        command_line: "/sbin/init".into(),
        memory_bytes: 1 << 20,
        count: 1,
    }];
    let full = Inventory {
        system: Some(system("web-1")),
        listening_ports: Some(vec![port(22, "sshd")]),
        local_admins: Some(vec![admin("root")]),
        services: Some(services.clone()),
        processes: Some(processes.clone()),
        ..Inventory::default()
    };
    // A first report changes nothing: there was nothing before.
    let (stored, changes) = store
        .update_inventory_with_changes(id, true, full, T0 + 1)
        .await
        .unwrap();
    assert_eq!(changes, bulwark_store::SecurityChanges::default());
    assert_eq!(stored.listening_ports, None, "the blob never holds them");
    assert_eq!(stored.services, None);
    let sections = store
        .device_inventory_sections(&TenantScope::All, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sections.listening_ports, Some(vec![port(22, "sshd")]));
    assert_eq!(sections.local_admins, Some(vec![admin("root")]));
    assert_eq!(sections.services, Some(services.clone()));
    assert_eq!(sections.processes, Some(processes));
    assert_eq!(sections.system, None);

    // A new port and the same administrators: only the ports changed.
    let delta = Inventory {
        listening_ports: Some(vec![port(22, "sshd"), port(4444, "nc")]),
        local_admins: Some(vec![admin("root")]),
        ..Inventory::default()
    };
    let (_, changes) = store
        .update_inventory_with_changes(id, false, delta, T0 + 2)
        .await
        .unwrap();
    assert_eq!(
        changes.listening_ports,
        Some((
            vec![port(22, "sshd")],
            vec![port(22, "sshd"), port(4444, "nc")]
        ))
    );
    assert_eq!(changes.local_admins, None);
    let delta = Inventory {
        local_admins: Some(vec![admin("eve"), admin("root")]),
        ..Inventory::default()
    };
    let (_, changes) = store
        .update_inventory_with_changes(id, false, delta, T0 + 3)
        .await
        .unwrap();
    assert_eq!(
        changes.local_admins,
        Some((vec![admin("root")], vec![admin("eve"), admin("root")]))
    );
    let sections = store
        .device_inventory_sections(&TenantScope::All, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sections.listening_ports.map(|p| p.len()), Some(2));
    assert_eq!(
        sections.services,
        Some(services),
        "kept by a delta without it"
    );

    // Another tenant's operator sees no device.
    let stranger = store
        .create_operator(&new_operator("mallory"), "technician", "test", T0)
        .await
        .unwrap();
    assert_eq!(
        store
            .device_inventory_sections(&TenantScope::Operator(stranger.id), id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .device_inventory_sections(&TenantScope::All, &foreign[0].id)
            .await
            .unwrap(),
        Some(Inventory::default())
    );

    // A full report without them removes them.
    store
        .update_inventory(id, true, Inventory::default(), T0 + 4)
        .await
        .unwrap();
    assert_eq!(
        store
            .device_inventory_sections(&TenantScope::All, id)
            .await
            .unwrap(),
        Some(Inventory::default())
    );
}

async fn inventory_concurrent_deltas(store: Store) {
    let (_, devices) = tenant_with_devices(&store, "acme", 1, &["host"]).await;
    let id = devices[0].id.clone();
    let deltas = [
        Inventory {
            cpu: Some(CpuInfo {
                model: "EPYC".to_owned(),
                ..CpuInfo::default()
            }),
            ..Inventory::default()
        },
        Inventory {
            memory: Some(MemoryInfo {
                total_bytes: 1,
                ..MemoryInfo::default()
            }),
            ..Inventory::default()
        },
        Inventory {
            disks: Some(Vec::new()),
            ..Inventory::default()
        },
        Inventory {
            network: Some(Vec::new()),
            ..Inventory::default()
        },
        Inventory {
            users: Some(Vec::new()),
            ..Inventory::default()
        },
        Inventory {
            system: Some(system("renamed")),
            ..Inventory::default()
        },
    ];
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(deltas.len()));
    let tasks: Vec<_> = deltas
        .iter()
        .cloned()
        .map(|delta| {
            let (store, id, barrier) = (store.clone(), id.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.update_inventory(&id, false, delta, T0).await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let mut expected = Inventory::default();
    for delta in deltas {
        expected.apply(delta);
    }
    let device = store.device(&TenantScope::All, &id).await.unwrap().unwrap();
    assert_eq!(device.inventory, Some(expected), "no delta is lost");
    assert_eq!(device.hostname, "renamed");
}

async fn tenant_scope(store: Store) {
    let (a, a_devices) = tenant_with_devices(&store, "tenant-a", 1, &["a-2", "a-1"]).await;
    let (b, b_devices) = tenant_with_devices(&store, "tenant-b", 10, &["b-1"]).await;
    let op = store
        .create_operator(&new_operator("erin"), "technician", "test", T0)
        .await
        .unwrap();
    let stranger = store
        .create_operator(&new_operator("frank"), "technician", "test", T0)
        .await
        .unwrap();
    store.grant_tenant(&op.id, &a, "technician").await.unwrap();
    store.grant_tenant(&op.id, &a, "auditor").await.unwrap(); // replaces the role
    assert_not_found(
        store
            .grant_tenant(&op.id, "no-such-tenant", "auditor")
            .await,
    );
    let scope = TenantScope::Operator(op.id.clone());

    // Tenant A is visible.
    let names: Vec<String> = store
        .list_tenants(&scope)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["tenant-a"]);
    assert!(
        store
            .tenant_by_name(&scope, "tenant-a")
            .await
            .unwrap()
            .is_some()
    );
    let hostnames: Vec<String> = store
        .list_devices(&scope, &a)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.hostname)
        .collect();
    assert_eq!(hostnames, ["a-1", "a-2"], "ordered by hostname");
    assert!(
        store
            .device(&scope, &a_devices[0].id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(store.list_audit(&scope, None, 100).await.unwrap().len(), 2);

    // Tenant B is not, by any route.
    assert_eq!(
        store.tenant_by_name(&scope, "tenant-b").await.unwrap(),
        None
    );
    assert!(store.list_devices(&scope, &b).await.unwrap().is_empty());
    assert_eq!(store.device(&scope, &b_devices[0].id).await.unwrap(), None);
    assert!(
        store
            .list_audit(&scope, Some(&b), 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_audit(&scope, None, 100)
            .await
            .unwrap()
            .iter()
            .all(|e| e.tenant_id.as_deref() == Some(a.as_str())),
        "no events of tenant B and none without a tenant"
    );

    // An operator without grants sees nothing; an unknown operator id neither.
    for nobody in [
        TenantScope::Operator(stranger.id.clone()),
        TenantScope::Operator("no-such-operator".into()),
    ] {
        assert!(store.list_tenants(&nobody).await.unwrap().is_empty());
        assert_eq!(
            store.tenant_by_name(&nobody, "tenant-a").await.unwrap(),
            None
        );
        assert!(store.list_devices(&nobody, &a).await.unwrap().is_empty());
        assert_eq!(store.device(&nobody, &a_devices[0].id).await.unwrap(), None);
        assert!(
            store
                .list_audit(&nobody, None, 100)
                .await
                .unwrap()
                .is_empty()
        );
    }

    // Owners see everything.
    assert_eq!(
        store.list_tenants(&TenantScope::All).await.unwrap().len(),
        2
    );
    assert_eq!(
        store
            .list_devices(&TenantScope::All, &b)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .device(&TenantScope::All, &b_devices[0].id)
            .await
            .unwrap()
            .is_some()
    );
}

async fn audit_log(store: Store) {
    let tenant = store
        .create_tenant("acme", T0, |_| Vec::new())
        .await
        .unwrap();
    let mut seqs = Vec::new();
    for i in 0..5 {
        let event = NewAuditEvent {
            at: T0 + i,
            tenant_id: (i % 2 == 0).then(|| tenant.id.clone()),
            actor: "op".to_owned(),
            action: AuditAction::ALL[usize::try_from(i).unwrap()],
            target: "t".to_owned(),
            detail: "<script>\"quoted\"</script>".to_owned(),
        };
        seqs.push(store.append_audit(event).await.unwrap());
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq grows: {seqs:?}");

    let all = store
        .list_audit(&TenantScope::All, None, 100)
        .await
        .unwrap();
    let actions: Vec<&str> = all.iter().map(|e| e.action.as_str()).collect();
    let recorded_at = |i: usize| AuditAction::ALL[i].as_str();
    let recorded: Vec<&str> = (0..5).map(recorded_at).collect();
    assert_eq!(
        actions,
        recorded.into_iter().rev().collect::<Vec<_>>(),
        "newest first"
    );
    assert_eq!(all[0].seq, seqs[4]);
    assert_eq!(all[0].detail, "<script>\"quoted\"</script>");
    assert_eq!(all[1].tenant_id, None);

    let limited = store.list_audit(&TenantScope::All, None, 2).await.unwrap();
    assert_eq!(
        limited
            .iter()
            .map(|e| e.action.as_str())
            .collect::<Vec<_>>(),
        [recorded_at(4), recorded_at(3)]
    );
    let of_tenant = store
        .list_audit(&TenantScope::All, Some(&tenant.id), 100)
        .await
        .unwrap();
    assert_eq!(
        of_tenant
            .iter()
            .map(|e| e.action.as_str())
            .collect::<Vec<_>>(),
        [recorded_at(4), recorded_at(2), recorded_at(0)]
    );
    assert!(
        store
            .list_audit(&TenantScope::All, None, -1)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn unique_violations_are_conflicts(store: Store) {
    store
        .create_tenant("acme", T0, |_| Vec::new())
        .await
        .unwrap();
    assert_conflict(
        store.create_tenant("acme", T0, |_| Vec::new()).await,
        "tenant name already exists",
    );

    let op = store
        .create_operator(&new_operator("gina"), "technician", "test", T0)
        .await
        .unwrap();
    assert_conflict(
        store
            .create_operator(&new_operator("gina"), "owner", "test", T0)
            .await,
        "username already taken",
    );
    assert_eq!(store.operator_count().await.unwrap(), 1);

    let tenant = store.ensure_tenant("acme", "test", T0).await.unwrap();
    store
        .create_enrollment_token(hash(1), &tenant.id, None, T0, T0 + MINUTE, &[])
        .await
        .unwrap();
    assert_conflict(
        store
            .create_enrollment_token(hash(1), &tenant.id, None, T0, T0 + MINUTE, &[])
            .await,
        "enrollment token already exists",
    );

    store
        .create_setup_enrolment(hash(2), &enrolment("h", T0))
        .await
        .unwrap();
    assert_conflict(
        store
            .create_setup_enrolment(hash(2), &enrolment("h", T0))
            .await,
        "setup enrolment already exists",
    );

    let session = NewSession {
        id_hash: hash(3),
        operator_id: op.id,
        kind: SessionKind::Cli,
        csrf_token: "c".to_owned(),
        created_at: T0,
        expires_at: T0 + MINUTE,
        mfa_at: T0,
        ip: None,
        user_agent: None,
        passkey_id: None,
    };
    store.create_session(session.clone(), &[]).await.unwrap();
    assert_conflict(
        store.create_session(session, &[]).await,
        "session already exists",
    );

    // The messages users may see say what, and nothing about the schema.
    assert_eq!(
        StoreError::Conflict("tenant name already exists").to_string(),
        "conflict: tenant name already exists"
    );
    let hidden = StoreError::Database(sqlx::Error::Protocol(
        "UNIQUE constraint failed: tenants.name".into(),
    ));
    assert_eq!(hidden.to_string(), "database error");
}

/// The schema URL really isolates: the tables live in the test schema only,
/// and the guard drops it.
#[tokio::test]
async fn postgres_test_schema_is_isolated() {
    use sqlx::Connection;
    let (url, guard) = postgres().await;
    let schema = guard.schema().to_owned();
    let store = Store::open(&url).await.unwrap();
    store
        .create_tenant("isolated", T0, |_| Vec::new())
        .await
        .unwrap();
    store.close().await;

    let base = std::env::var("BULWARK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| bulwark_store::testing::DEFAULT_POSTGRES_URL.to_owned());
    let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
    let count: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM {schema}.tenants WHERE name = 'isolated'"
    ))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(count, 1);
    let schemas_with_tenants: Vec<String> =
        sqlx::query_scalar("SELECT table_schema::text FROM information_schema.tables WHERE table_name = 'tenants' AND table_schema = $1")
            .bind(&schema)
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(schemas_with_tenants, std::slice::from_ref(&schema));

    guard.drop().await;
    let left: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = $1",
    )
    .bind(&schema)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(left, 0, "the guard drops the schema");
}

/// `open_sqlite` creates the file, also in a directory whose name needs escaping in a URL.
#[tokio::test]
async fn open_sqlite_creates_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a dir?#%41&x=y").join("bulwark.sqlite3");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let store = Store::open_sqlite(&path).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    store
        .create_tenant("acme", T0, |_| Vec::new())
        .await
        .unwrap();
    store.close().await;
    assert!(path.exists(), "the file is where it was asked for");
    let store = Store::open_sqlite(&path).await.unwrap();
    assert_eq!(
        store.list_tenants(&TenantScope::All).await.unwrap().len(),
        1
    );
    store.close().await;
}

/// A guard dropped without `drop().await` (a panicking test) still removes its schema.
#[tokio::test]
async fn postgres_schema_guard_cleans_up_on_plain_drop() {
    use sqlx::Connection;
    let (_url, guard) = postgres().await;
    let schema = guard.schema().to_owned();
    std::mem::drop(guard);
    let base = std::env::var("BULWARK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| bulwark_store::testing::DEFAULT_POSTGRES_URL.to_owned());
    let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
    let left: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = $1",
    )
    .bind(&schema)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(left, 0);
}

fn invitation(
    token: u8,
    username: &str,
    grants: &[(&str, &str)],
    expires_at: i64,
) -> bulwark_store::NewInvitation {
    bulwark_store::NewInvitation {
        token_hash: hash(token),
        username: username.to_owned(),
        account_role: if grants.is_empty() {
            bulwark_store::ACCOUNT_OWNER
        } else {
            bulwark_store::ACCOUNT_OPERATOR
        }
        .to_owned(),
        grants: grants
            .iter()
            .map(|(t, r)| ((*t).to_owned(), (*r).to_owned()))
            .collect(),
        created_by: "owner-id".to_owned(),
        created_at: T0,
        expires_at,
    }
}

fn invitation_enrolment(
    invitation_id: &str,
    created_at: i64,
) -> bulwark_store::InvitationEnrolment {
    bulwark_store::InvitationEnrolment {
        invitation_id: invitation_id.to_owned(),
        username: String::new(),
        password_hash: "$argon2id$invited".to_owned(),
        totp_secret: "INVITEDSECRET".to_owned(),
        created_at,
        expires_at: created_at + 15 * MINUTE,
    }
}

async fn audit_actions(store: &Store) -> Vec<String> {
    store
        .list_audit(&TenantScope::All, None, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect()
}

async fn invitations(store: Store) {
    let a = store
        .create_tenant("tenant-a", T0, |_| Vec::new())
        .await
        .unwrap()
        .id;
    let b = store
        .create_tenant("tenant-b", T0, |_| Vec::new())
        .await
        .unwrap()
        .id;
    store
        .create_operator(&new_operator("olivia"), "owner", "test", T0)
        .await
        .unwrap();
    let hour = 60 * MINUTE;

    // Created with its grants (ordered by tenant name) and audited.
    let invited = store
        .create_invitation(
            &invitation(
                1,
                "ivan",
                &[(&b, "read_only"), (&a, "technician")],
                T0 + hour,
            ),
            "olivia",
        )
        .await
        .unwrap();
    assert_eq!(invited.username, "ivan");
    assert_eq!(
        invited
            .grants
            .iter()
            .map(|g| (g.tenant_name.as_str(), g.role.as_str()))
            .collect::<Vec<_>>(),
        [("tenant-a", "technician"), ("tenant-b", "read_only")]
    );
    assert_eq!(
        audit_actions(&store).await,
        ["operator.invited", "operator.created"]
    );

    // Refused, changing nothing: an unknown tenant, a taken username, a reused token.
    assert_not_found(
        store
            .create_invitation(
                &invitation(2, "x", &[("no-such-tenant", "read_only")], T0 + hour),
                "olivia",
            )
            .await,
    );
    assert_conflict(
        store
            .create_invitation(
                &invitation(3, "olivia", &[(&a, "read_only")], T0 + hour),
                "olivia",
            )
            .await,
        "username already taken",
    );
    assert_conflict(
        store
            .create_invitation(
                &invitation(1, "other", &[(&a, "read_only")], T0 + hour),
                "olivia",
            )
            .await,
        "invitation already exists",
    );
    assert_eq!(
        store.pending_invitations(T0).await.unwrap(),
        std::slice::from_ref(&invited)
    );
    assert_eq!(audit_actions(&store).await.len(), 2);

    // Found by its token's hash while pending, not after it expires.
    assert_eq!(
        store.invitation_by_token(hash(1), T0).await.unwrap(),
        Some(invited.clone())
    );
    assert_eq!(store.invitation_by_token(hash(9), T0).await.unwrap(), None);
    assert_eq!(
        store.invitation_by_token(hash(1), T0 + hour).await.unwrap(),
        None
    );
    assert!(
        store
            .pending_invitations(T0 + hour)
            .await
            .unwrap()
            .is_empty()
    );

    // Two redemptions started; the first to confirm wins, the other is gone.
    store
        .create_invitation_enrolment(hash(10), &invitation_enrolment(&invited.id, T0))
        .await
        .unwrap();
    store
        .create_invitation_enrolment(hash(11), &invitation_enrolment(&invited.id, T0))
        .await
        .unwrap();
    assert_not_found(
        store
            .create_invitation_enrolment(hash(12), &invitation_enrolment("no-such-invitation", T0))
            .await,
    );
    let pending = store
        .invitation_enrolment(hash(10), T0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pending.username, "ivan");
    assert_eq!(
        store
            .invitation_enrolment(hash(10), T0 + 15 * MINUTE)
            .await
            .unwrap(),
        None
    );
    let (ivan, grants) = store.accept_invitation(hash(10), T0 + 1).await.unwrap();
    assert_eq!(
        (ivan.username.as_str(), ivan.role.as_str()),
        ("ivan", "operator")
    );
    assert_eq!(ivan.password_hash, "$argon2id$invited");
    assert_eq!(grants, invited.grants);
    assert_eq!(
        store.operator_grants(&ivan.id).await.unwrap(),
        invited.grants
    );
    assert_eq!(
        store
            .list_tenants(&TenantScope::Operator(ivan.id.clone()))
            .await
            .unwrap()
            .len(),
        2
    );
    assert_not_found(store.accept_invitation(hash(10), T0 + 2).await);
    assert_not_found(store.accept_invitation(hash(11), T0 + 2).await);
    assert_eq!(
        store.invitation_by_token(hash(1), T0 + 2).await.unwrap(),
        None
    );
    assert!(store.pending_invitations(T0 + 2).await.unwrap().is_empty());
    assert_eq!(audit_actions(&store).await[0], "operator.created");

    // Revoked: the link and its started redemption stop working.
    let revoked = store
        .create_invitation(
            &invitation(4, "rita", &[(&a, "tenant_auditor")], T0 + hour),
            "olivia",
        )
        .await
        .unwrap();
    store
        .create_invitation_enrolment(hash(13), &invitation_enrolment(&revoked.id, T0))
        .await
        .unwrap();
    store
        .revoke_invitation(&revoked.id, "olivia", T0 + 3)
        .await
        .unwrap();
    assert_eq!(audit_actions(&store).await[0], "invitation.revoked");
    assert_not_found(store.revoke_invitation(&revoked.id, "olivia", T0 + 4).await);
    assert_not_found(store.revoke_invitation(&invited.id, "olivia", T0 + 4).await);
    assert_eq!(
        store.invitation_enrolment(hash(13), T0 + 4).await.unwrap(),
        None
    );
    assert_not_found(store.accept_invitation(hash(13), T0 + 4).await);

    // Expired between redeeming and confirming: nothing is created.
    let short = store
        .create_invitation(
            &invitation(5, "sam", &[(&a, "read_only")], T0 + MINUTE),
            "olivia",
        )
        .await
        .unwrap();
    store
        .create_invitation_enrolment(hash(14), &invitation_enrolment(&short.id, T0))
        .await
        .unwrap();
    let operators = store.operator_count().await.unwrap();
    assert_not_found(store.accept_invitation(hash(14), T0 + 2 * MINUTE).await);
    assert_eq!(store.operator_count().await.unwrap(), operators);

    // The username was taken meanwhile: refused, and the invitation stays pending.
    let late = store
        .create_invitation(
            &invitation(6, "tom", &[(&a, "read_only")], T0 + hour),
            "olivia",
        )
        .await
        .unwrap();
    store
        .create_invitation_enrolment(hash(15), &invitation_enrolment(&late.id, T0))
        .await
        .unwrap();
    store
        .create_operator(&new_operator("tom"), "operator", "test", T0)
        .await
        .unwrap();
    assert_conflict(
        store.accept_invitation(hash(15), T0 + 5).await,
        "username already taken",
    );
    assert!(
        store
            .invitation_by_token(hash(6), T0 + 5)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .invitation_enrolment(hash(15), T0 + 5)
            .await
            .unwrap()
            .is_some()
    );

    // An owner invitation carries no grants.
    let owner = store
        .create_invitation(&invitation(7, "uma", &[], T0 + hour), "olivia")
        .await
        .unwrap();
    store
        .create_invitation_enrolment(hash(16), &invitation_enrolment(&owner.id, T0))
        .await
        .unwrap();
    let (uma, grants) = store.accept_invitation(hash(16), T0 + 6).await.unwrap();
    assert_eq!(uma.role, "owner");
    assert!(grants.is_empty());

    // Every operator with its grants, by username.
    let listed: Vec<(String, usize)> = store
        .list_operators()
        .await
        .unwrap()
        .into_iter()
        .map(|(o, g)| (o.username, g.len()))
        .collect();
    assert_eq!(
        listed,
        [
            ("ivan".to_owned(), 2),
            ("olivia".to_owned(), 0),
            ("tom".to_owned(), 0),
            ("uma".to_owned(), 0)
        ]
    );
}

async fn invitation_accepted_concurrently(store: Store) {
    let a = store
        .create_tenant("tenant-a", T0, |_| Vec::new())
        .await
        .unwrap()
        .id;
    let invited = store
        .create_invitation(
            &invitation(1, "ivan", &[(&a, "technician")], T0 + 60 * MINUTE),
            "o",
        )
        .await
        .unwrap();
    for n in 0..8u8 {
        store
            .create_invitation_enrolment(hash(100 + n), &invitation_enrolment(&invited.id, T0))
            .await
            .unwrap();
    }
    let attempts = (0..8u8).map(|n| {
        let store = store.clone();
        tokio::spawn(async move { store.accept_invitation(hash(100 + n), T0 + 1).await })
    });
    let mut created = 0;
    for attempt in attempts.collect::<Vec<_>>() {
        match attempt.await.unwrap() {
            Ok(_) => created += 1,
            Err(StoreError::NotFound) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(created, 1, "exactly one redemption creates the operator");
    assert_eq!(store.operator_count().await.unwrap(), 1);
}

fn session_for(operator_id: &str, n: u8, created_at: i64) -> NewSession {
    NewSession {
        id_hash: hash(n),
        operator_id: operator_id.to_owned(),
        kind: SessionKind::Browser,
        csrf_token: format!("csrf{n}"),
        created_at,
        expires_at: created_at + 60 * MINUTE,
        mfa_at: created_at,
        ip: Some("192.0.2.1".to_owned()),
        user_agent: Some("test agent".to_owned()),
        passkey_id: None,
    }
}

async fn sessions_listed_and_revoked(store: Store) {
    let dave = store
        .create_operator(&new_operator("dave"), "operator", "test", T0)
        .await
        .unwrap();
    let erin = store
        .create_operator(&new_operator("erin"), "operator", "test", T0)
        .await
        .unwrap();
    let a = store
        .create_session(session_for(&dave.id, 1, T0), &[])
        .await
        .unwrap();
    let b = store
        .create_session(session_for(&dave.id, 2, T0 + MINUTE), &[])
        .await
        .unwrap();
    let c = store
        .create_session(session_for(&dave.id, 3, T0 + 2 * MINUTE), &[])
        .await
        .unwrap();
    let other = store
        .create_session(session_for(&erin.id, 4, T0), &[])
        .await
        .unwrap();
    // Public ids are fresh and unrelated to the token hash.
    assert_ne!(a.public_id, b.public_id);
    assert!(
        uuid::Uuid::parse_str(&a.public_id).is_ok(),
        "{}",
        a.public_id
    );
    assert_eq!(
        store.session(hash(1)).await.unwrap().unwrap().0.public_id,
        a.public_id
    );

    let listed: Vec<String> = store
        .list_sessions(&dave.id, T0 + 3 * MINUTE)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.public_id)
        .collect();
    assert_eq!(
        listed,
        [
            c.public_id.clone(),
            b.public_id.clone(),
            a.public_id.clone()
        ]
    );
    // Past its absolute expiry, a session is not listed.
    assert_eq!(
        store
            .list_sessions(&dave.id, T0 + 60 * MINUTE + 30_000)
            .await
            .unwrap()
            .len(),
        2
    );

    // Another operator's session cannot be revoked through dave's account.
    assert_not_found(
        store
            .revoke_own_session(&dave.id, &other.public_id, "dave", T0)
            .await,
    );
    assert_not_found(
        store
            .revoke_own_session(&dave.id, "no-such-id", "dave", T0)
            .await,
    );
    store
        .revoke_own_session(&dave.id, &b.public_id, "dave", T0 + 3 * MINUTE)
        .await
        .unwrap();
    assert_not_found(
        store
            .revoke_own_session(&dave.id, &b.public_id, "dave", T0)
            .await,
    );
    assert_eq!(
        store.session(hash(2)).await.unwrap().unwrap().0.revoked_at,
        Some(T0 + 3 * MINUTE)
    );

    // All others: a and c go, the kept one and erin's stay.
    let mut d = session_for(&dave.id, 5, T0);
    d.id_hash = hash(5);
    store.create_session(d, &[]).await.unwrap();
    let revoked = store
        .revoke_other_sessions(&dave.id, hash(3), "dave", T0 + 4 * MINUTE)
        .await
        .unwrap();
    assert_eq!(revoked, 2);
    let left: Vec<String> = store
        .list_sessions(&dave.id, T0 + 4 * MINUTE)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.public_id)
        .collect();
    assert_eq!(left, [c.public_id]);
    assert_eq!(store.list_sessions(&erin.id, T0).await.unwrap().len(), 1);

    // Step-up refreshes mfa_at on live sessions only.
    store
        .refresh_session_mfa(hash(3), T0 + 5 * MINUTE, &[])
        .await
        .unwrap();
    assert_eq!(
        store.session(hash(3)).await.unwrap().unwrap().0.mfa_at,
        T0 + 5 * MINUTE
    );
    assert_not_found(store.refresh_session_mfa(hash(2), T0, &[]).await);
    assert_not_found(store.refresh_session_mfa(hash(99), T0, &[]).await);

    let actions = audit_actions(&store).await;
    assert!(
        actions.contains(&"session.revoked".to_owned()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"session.revoked_others".to_owned()),
        "{actions:?}"
    );
}

async fn operator_disabled(store: Store) {
    let dave = store
        .create_operator(&new_operator("dave"), "operator", "test", T0)
        .await
        .unwrap();
    store
        .create_session(session_for(&dave.id, 1, T0), &[])
        .await
        .unwrap();
    store
        .create_session(session_for(&dave.id, 2, T0), &[])
        .await
        .unwrap();
    let disabled = store
        .disable_operator(&dave.id, "olivia", T0 + MINUTE)
        .await
        .unwrap();
    assert_eq!(disabled.disabled_at, Some(T0 + MINUTE));
    for n in [1, 2] {
        let (session, operator) = store.session(hash(n)).await.unwrap().unwrap();
        assert_eq!(session.revoked_at, Some(T0 + MINUTE));
        assert_eq!(operator.disabled_at, Some(T0 + MINUTE));
    }
    assert_not_found(
        store
            .disable_operator(&dave.id, "olivia", T0 + 2 * MINUTE)
            .await,
    );
    assert_not_found(
        store
            .disable_operator("no-such-operator", "olivia", T0)
            .await,
    );
    let events = store
        .list_audit(&TenantScope::All, None, 100)
        .await
        .unwrap();
    let event = events
        .iter()
        .find(|e| e.action == "operator.disabled")
        .unwrap();
    assert_eq!(
        (event.actor.as_str(), event.target.as_str()),
        ("olivia", dave.id.as_str())
    );
}

async fn recovery_codes(store: Store) {
    let dave = store
        .create_operator(&new_operator("dave"), "operator", "test", T0)
        .await
        .unwrap();
    let erin = store
        .create_operator(&new_operator("erin"), "operator", "test", T0)
        .await
        .unwrap();
    store
        .replace_recovery_codes(&dave.id, &[hash(1), hash(2), hash(3)], "dave", T0)
        .await
        .unwrap();
    store
        .replace_recovery_codes(&erin.id, &[hash(4)], "erin", T0)
        .await
        .unwrap();
    assert_eq!(store.recovery_codes_left(&dave.id).await.unwrap(), 3);
    assert!(
        !store
            .use_recovery_code(&dave.id, hash(4), T0, |_| Vec::new())
            .await
            .unwrap(),
        "erin's code"
    );
    assert!(
        store
            .use_recovery_code(&dave.id, hash(1), T0, |_| Vec::new())
            .await
            .unwrap()
    );
    assert!(
        !store
            .use_recovery_code(&dave.id, hash(1), T0, |_| Vec::new())
            .await
            .unwrap(),
        "used once"
    );
    assert_eq!(store.recovery_codes_left(&dave.id).await.unwrap(), 2);

    // Two logins racing on one code: exactly one wins.
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let id = dave.id.clone();
            tokio::spawn(async move {
                store
                    .use_recovery_code(&id, hash(2), T0, |_| Vec::new())
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut wins = 0;
    for racer in racers {
        wins += usize::from(racer.await.unwrap());
    }
    assert_eq!(wins, 1);

    // Regenerating replaces every code, used or not.
    store
        .replace_recovery_codes(&dave.id, &[hash(5), hash(6)], "dave", T0 + MINUTE)
        .await
        .unwrap();
    assert!(
        !store
            .use_recovery_code(&dave.id, hash(3), T0, |_| Vec::new())
            .await
            .unwrap()
    );
    assert_eq!(store.recovery_codes_left(&dave.id).await.unwrap(), 2);
    assert_eq!(store.recovery_codes_left(&erin.id).await.unwrap(), 1);
    assert!(
        audit_actions(&store)
            .await
            .contains(&"recovery_codes.generated".to_owned())
    );
}

async fn api_tokens(store: Store) {
    let dave = store
        .create_operator(&new_operator("dave"), "operator", "test", T0)
        .await
        .unwrap();
    let erin = store
        .create_operator(&new_operator("erin"), "operator", "test", T0)
        .await
        .unwrap();
    let acme = store
        .create_tenant("acme", T0, |_| Vec::new())
        .await
        .unwrap();
    let beta = store
        .create_tenant("beta", T0, |_| Vec::new())
        .await
        .unwrap();
    let new = NewApiToken {
        token_hash: hash(1),
        operator_id: dave.id.clone(),
        name: "backup monitor".to_owned(),
        role: "read_only".to_owned(),
        tenant_ids: vec![beta.id.clone(), acme.id.clone()],
        created_at: T0,
        expires_at: T0 + 60 * MINUTE,
    };
    let token = store.create_api_token(&new, "dave").await.unwrap();
    let names: Vec<&str> = token
        .grants
        .iter()
        .map(|g| g.tenant_name.as_str())
        .collect();
    assert_eq!(names, ["acme", "beta"]);
    assert!(token.grants.iter().all(|g| g.role == "read_only"));
    assert_conflict(
        store.create_api_token(&new, "dave").await,
        "API token already exists",
    );
    assert_not_found(
        store
            .create_api_token(
                &NewApiToken {
                    token_hash: hash(2),
                    tenant_ids: vec!["no-such-tenant".to_owned()],
                    ..new.clone()
                },
                "dave",
            )
            .await,
    );
    let (found, operator) = store.api_token(hash(1)).await.unwrap().unwrap();
    assert_eq!(
        (found.clone(), operator.id.clone()),
        (token.clone(), dave.id.clone())
    );
    assert_eq!(store.api_token(hash(9)).await.unwrap(), None);

    // Its scope: its tenants that dave still holds a grant on.
    let scope = TenantScope::ApiToken(token.id.clone());
    assert!(
        store.list_tenants(&scope).await.unwrap().is_empty(),
        "dave holds nothing yet"
    );
    store
        .grant_tenant(&dave.id, &acme.id, "read_only")
        .await
        .unwrap();
    let seen: Vec<String> = store
        .list_tenants(&scope)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(seen, ["acme"]);
    assert!(
        store
            .tenant_by_name(&scope, "beta")
            .await
            .unwrap()
            .is_none()
    );

    store.touch_api_token(&token.id, T0 + MINUTE).await.unwrap();
    let listed = store.list_api_tokens(&dave.id, T0 + MINUTE).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_used_at, Some(T0 + MINUTE));
    assert!(
        store
            .list_api_tokens(&dave.id, T0 + 60 * MINUTE)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_api_tokens(&erin.id, T0)
            .await
            .unwrap()
            .is_empty()
    );

    assert_not_found(
        store
            .revoke_api_token(&erin.id, &token.id, "erin", T0)
            .await,
    );
    store
        .revoke_api_token(&dave.id, &token.id, "dave", T0 + 2 * MINUTE)
        .await
        .unwrap();
    assert_not_found(
        store
            .revoke_api_token(&dave.id, &token.id, "dave", T0)
            .await,
    );
    let (revoked, _) = store.api_token(hash(1)).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(T0 + 2 * MINUTE));
    assert!(
        store.list_tenants(&scope).await.unwrap().is_empty(),
        "revoked: nothing"
    );

    // Disabling the operator revokes its tokens too.
    store
        .create_api_token(
            &NewApiToken {
                token_hash: hash(3),
                ..new.clone()
            },
            "dave",
        )
        .await
        .unwrap();
    store
        .disable_operator(&dave.id, "olivia", T0 + 3 * MINUTE)
        .await
        .unwrap();
    let (other, _) = store.api_token(hash(3)).await.unwrap().unwrap();
    assert_eq!(other.revoked_at, Some(T0 + 3 * MINUTE));
    let actions = audit_actions(&store).await;
    for action in ["api_token.created", "api_token.revoked"] {
        assert!(
            actions.contains(&action.to_owned()),
            "{action} in {actions:?}"
        );
    }
}

async fn trust_statements(store: Store) {
    let (a, _) = tenant_with_devices(&store, "tenant-a", 1, &[]).await;
    let (b, _) = tenant_with_devices(&store, "tenant-b", 2, &[]).await;
    let op = store
        .create_operator(&new_operator("erin"), "operator", "test", T0)
        .await
        .unwrap();
    store.grant_tenant(&op.id, &a, "read_only").await.unwrap();
    let scope = TenantScope::Operator(op.id.clone());
    let add = |tenant: &str, kind, version, envelope: &[u8]| {
        let (store, tenant, envelope) = (store.clone(), tenant.to_owned(), envelope.to_vec());
        async move {
            store
                .add_trust_statement(&tenant, kind, version, &envelope, Some("someone"), T0, &[])
                .await
        }
    };

    assert_eq!(
        store.trust_statements(&scope, &a).await.unwrap(),
        TrustSet::default()
    );
    // Roots: v1 first, then without gaps.
    assert_conflict(
        add(&a, TrustKind::Root, 2, b"root-2").await,
        "root version must follow the latest root",
    );
    add(&a, TrustKind::Root, 1, b"root-1").await.unwrap();
    assert_conflict(
        add(&a, TrustKind::Root, 1, b"another root-1").await,
        "trust statement version already exists",
    );
    assert_conflict(
        add(&a, TrustKind::Root, 3, b"root-3").await,
        "root version must follow the latest root",
    );
    add(&a, TrustKind::Root, 2, b"root-2").await.unwrap();
    // Policies and freezes: the highest version is the one in force.
    add(&a, TrustKind::Policy, 1, b"policy-1").await.unwrap();
    add(&a, TrustKind::Policy, 3, b"policy-3").await.unwrap();
    assert_conflict(
        add(&a, TrustKind::Policy, 3, b"policy-3 again").await,
        "trust statement version already exists",
    );
    assert_conflict(
        add(&a, TrustKind::Policy, 2, b"policy-2").await,
        "trust statement is older than the latest",
    );
    add(&a, TrustKind::Freeze, 0, b"unfreeze-0").await.unwrap();
    add(&a, TrustKind::Freeze, 7, b"freeze-7").await.unwrap();
    // Another tenant's numbering is its own.
    add(&b, TrustKind::Root, 1, b"b-root-1").await.unwrap();
    add(&b, TrustKind::Policy, 1, b"b-policy-1").await.unwrap();
    // Bad input: nothing stored.
    assert!(matches!(
        add(&a, TrustKind::Policy, u64::MAX, b"huge").await,
        Err(StoreError::Invalid(_))
    ));
    assert_not_found(add("no-such-tenant", TrustKind::Root, 1, b"x").await);

    let expected = TrustSet {
        roots: vec![b"root-1".to_vec(), b"root-2".to_vec()],
        policy: Some((3, b"policy-3".to_vec())),
        freeze: Some((7, b"freeze-7".to_vec())),
    };
    assert_eq!(store.trust_statements(&scope, &a).await.unwrap(), expected);
    assert_eq!(
        store.trust_statements(&TenantScope::All, &a).await.unwrap(),
        expected
    );
    assert_eq!(store.trust_for_device_tenant(&a).await.unwrap(), expected);
    assert_eq!(
        store.trust_for_device_tenant(&b).await.unwrap(),
        TrustSet {
            roots: vec![b"b-root-1".to_vec()],
            policy: Some((1, b"b-policy-1".to_vec())),
            freeze: None,
        }
    );
    // Out of scope: nothing, as for a tenant without statements.
    assert_eq!(
        store.trust_statements(&scope, &b).await.unwrap(),
        TrustSet::default()
    );
    let stranger = store
        .create_operator(&new_operator("frank"), "operator", "test", T0)
        .await
        .unwrap();
    assert_eq!(
        store
            .trust_statements(&TenantScope::Operator(stranger.id), &a)
            .await
            .unwrap(),
        TrustSet::default()
    );
}

fn proposal(
    id: &str,
    tenant_id: &str,
    kind: TrustKind,
    version: u64,
    by: &str,
) -> NewTrustProposal {
    NewTrustProposal {
        id: id.to_owned(),
        tenant_id: tenant_id.to_owned(),
        kind,
        version,
        envelope: format!("{id}-0").into_bytes(),
        policy_envelope: None,
        freeze_envelope: None,
        proposed_by: by.to_owned(),
        created_at: T0,
        expires_at: T0 + 1000,
    }
}

async fn trust_proposals(store: Store) {
    let (a, _) = tenant_with_devices(&store, "tenant-a", 1, &[]).await;
    let (b, _) = tenant_with_devices(&store, "tenant-b", 2, &[]).await;
    let op = store
        .create_operator(&new_operator("erin"), "operator", "test", T0)
        .await
        .unwrap();
    store.grant_tenant(&op.id, &a, "read_only").await.unwrap();
    let scope = TenantScope::Operator(op.id.clone());
    store
        .add_trust_statement(&a, TrustKind::Root, 1, b"root-1", None, T0, &[])
        .await
        .unwrap();

    let p1 = store
        .create_trust_proposal(&proposal("p1", &a, TrustKind::Policy, 1, &op.id), &[])
        .await
        .unwrap();
    store
        .create_trust_proposal(&proposal("p2", &a, TrustKind::Policy, 1, &op.id), &[])
        .await
        .unwrap();
    store
        .create_trust_proposal(&proposal("p3", &a, TrustKind::Freeze, 1, &op.id), &[])
        .await
        .unwrap();
    store
        .create_trust_proposal(&proposal("pb", &b, TrustKind::Policy, 1, &op.id), &[])
        .await
        .unwrap();
    assert_conflict(
        store
            .create_trust_proposal(&proposal("p1", &a, TrustKind::Policy, 2, &op.id), &[])
            .await,
        "proposal already exists",
    );
    assert_not_found(
        store
            .create_trust_proposal(
                &proposal("px", "no-such-tenant", TrustKind::Policy, 1, &op.id),
                &[],
            )
            .await,
    );
    // Scope: another tenant's proposals are not there.
    let open = store.open_trust_proposals(&scope, &a, T0).await.unwrap();
    assert_eq!(
        open.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        ["p1", "p2", "p3"]
    );
    assert!(
        store
            .open_trust_proposals(&scope, &b, T0)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.trust_proposal(&scope, "pb", T0).await.unwrap(), None);
    assert_eq!(
        store.trust_proposal(&scope, "p1", T0).await.unwrap(),
        Some(p1.clone())
    );

    // Signatures: compare and swap on the envelope read.
    store
        .add_proposal_signature("p1", b"p1-0", b"p1-1", &Companions::default(), T0 + 1, &[])
        .await
        .unwrap();
    assert_conflict(
        store
            .add_proposal_signature("p1", b"p1-0", b"p1-1b", &Companions::default(), T0 + 1, &[])
            .await,
        "proposal changed since it was read",
    );
    assert_not_found(
        store
            .add_proposal_signature("nope", b"x", b"y", &Companions::default(), T0, &[])
            .await,
    );

    // Publishing stores the statement and withdraws what it overtakes.
    let published = store
        .publish_trust_proposal("p1", b"p1-2", &Companions::default(), T0 + 2, &[])
        .await
        .unwrap();
    assert_eq!(published.version, 1);
    assert_eq!(
        store.trust_statements(&scope, &a).await.unwrap().policy,
        Some((1, b"p1-2".to_vec()))
    );
    let p1 = store
        .trust_proposal(&scope, "p1", T0 + 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p1.state, ProposalState::Published);
    assert_eq!(p1.published_at, Some(T0 + 2));
    assert_eq!(p1.envelope, b"p1-2");
    let p2 = store
        .trust_proposal(&scope, "p2", T0 + 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p2.state, ProposalState::Withdrawn);
    assert_conflict(
        store
            .publish_trust_proposal("p1", b"p1-2", &Companions::default(), T0 + 3, &[])
            .await,
        "proposal is not open",
    );
    assert_conflict(
        store
            .add_proposal_signature("p2", b"p2-0", b"p2-1", &Companions::default(), T0 + 3, &[])
            .await,
        "proposal is not open",
    );
    // A statement that does not follow: nothing changes.
    store
        .create_trust_proposal(&proposal("r3", &a, TrustKind::Root, 3, &op.id), &[])
        .await
        .unwrap();
    assert_conflict(
        store
            .publish_trust_proposal("r3", b"r3", &Companions::default(), T0 + 3, &[])
            .await,
        "root version must follow the latest root",
    );
    assert_eq!(
        store
            .trust_proposal(&scope, "r3", T0 + 3)
            .await
            .unwrap()
            .unwrap()
            .state,
        ProposalState::Open
    );

    // A statement published directly withdraws the proposals it overtakes.
    store
        .create_trust_proposal(&proposal("q4", &a, TrustKind::Policy, 4, &op.id), &[])
        .await
        .unwrap();
    store
        .add_trust_statement(&a, TrustKind::Policy, 4, b"policy-4", None, T0 + 3, &[])
        .await
        .unwrap();
    assert_eq!(
        store
            .trust_proposal(&scope, "q4", T0 + 3)
            .await
            .unwrap()
            .unwrap()
            .state,
        ProposalState::Withdrawn
    );

    // Expiry: shown at once, stored by the sweep.
    assert_eq!(
        store
            .trust_proposal(&scope, "p3", T0 + 1000)
            .await
            .unwrap()
            .unwrap()
            .state,
        ProposalState::Expired
    );
    assert!(
        store
            .open_trust_proposals(&scope, &a, T0 + 1000)
            .await
            .unwrap()
            .is_empty()
    );
    assert_conflict(
        store
            .publish_trust_proposal("p3", b"p3", &Companions::default(), T0 + 1000, &[])
            .await,
        "proposal is not open",
    );
    assert_eq!(
        store.expire_trust_proposals(T0 + 1000).await.unwrap(),
        [
            ("p3".to_owned(), a.clone()),
            ("pb".to_owned(), b.clone()),
            ("r3".to_owned(), a.clone()),
        ]
    );
    assert!(
        store
            .expire_trust_proposals(T0 + 1000)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A root rotation's companions (migration 0010): stored with the proposal,
/// replaced with each signature, published before the root in one
/// transaction; nothing is stored if any of them does not follow.
async fn trust_proposal_companions(store: Store) {
    let (a, _) = tenant_with_devices(&store, "tenant-a", 1, &[]).await;
    let op = store
        .create_operator(&new_operator("erin"), "operator", "test", T0)
        .await
        .unwrap();
    store.grant_tenant(&op.id, &a, "read_only").await.unwrap();
    let scope = TenantScope::Operator(op.id.clone());
    for (kind, version, bytes) in [
        (TrustKind::Root, 1, &b"root-1"[..]),
        (TrustKind::Policy, 3, b"policy-3"),
        (TrustKind::Freeze, 5, b"freeze-5"),
    ] {
        store
            .add_trust_statement(&a, kind, version, bytes, None, T0, &[])
            .await
            .unwrap();
    }
    let created = store
        .create_trust_proposal(
            &NewTrustProposal {
                policy_envelope: Some(b"policy-4-0".to_vec()),
                freeze_envelope: Some(b"freeze-6-0".to_vec()),
                ..proposal("r2", &a, TrustKind::Root, 2, &op.id)
            },
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        store.trust_proposal(&scope, "r2", T0).await.unwrap(),
        Some(created)
    );
    // Without companions the columns stay NULL.
    store
        .create_trust_proposal(&proposal("r2b", &a, TrustKind::Root, 2, &op.id), &[])
        .await
        .unwrap();
    let plain = store
        .trust_proposal(&scope, "r2b", T0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((plain.policy_envelope, plain.freeze_envelope), (None, None));

    // A signature replaces the companions with the root envelope.
    let signed = Companions {
        policy: Some(b"policy-4-1".to_vec()),
        policy_version: 4,
        freeze: Some(b"freeze-6-1".to_vec()),
        freeze_sequence: 6,
    };
    store
        .add_proposal_signature("r2", b"r2-0", b"r2-1", &signed, T0 + 1, &[])
        .await
        .unwrap();
    let row = store
        .trust_proposal(&scope, "r2", T0 + 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.envelope, b"r2-1");
    assert_eq!(row.policy_envelope.as_deref(), Some(&b"policy-4-1"[..]));
    assert_eq!(row.freeze_envelope.as_deref(), Some(&b"freeze-6-1"[..]));

    // A companion that does not follow: nothing is stored.
    let stale = Companions {
        freeze_sequence: 4,
        ..signed.clone()
    };
    assert_conflict(
        store
            .publish_trust_proposal("r2", b"r2-2", &stale, T0 + 2, &[])
            .await,
        "trust statement is older than the latest",
    );
    let held = store.trust_statements(&scope, &a).await.unwrap();
    assert_eq!(held.policy, Some((3, b"policy-3".to_vec())));
    assert_eq!(held.roots.len(), 1);
    assert_eq!(
        store
            .trust_proposal(&scope, "r2", T0 + 2)
            .await
            .unwrap()
            .unwrap()
            .state,
        ProposalState::Open
    );

    // Published: the companions and the root, together.
    let published = store
        .publish_trust_proposal("r2", b"r2-2", &signed, T0 + 2, &[])
        .await
        .unwrap();
    assert_eq!(published.state, ProposalState::Published);
    let held = store.trust_statements(&scope, &a).await.unwrap();
    assert_eq!(held.policy, Some((4, b"policy-4-1".to_vec())));
    assert_eq!(held.roots.len(), 2);
    assert_eq!(
        store
            .trust_proposal(&scope, "r2b", T0 + 2)
            .await
            .unwrap()
            .unwrap()
            .state,
        ProposalState::Withdrawn
    );
}

async fn device_trust(store: Store) {
    let (a, a_devices) = tenant_with_devices(&store, "tenant-a", 1, &["a-1", "a-2"]).await;
    let (_, b_devices) = tenant_with_devices(&store, "tenant-b", 10, &["b-1"]).await;
    let op = store
        .create_operator(&new_operator("erin"), "operator", "test", T0)
        .await
        .unwrap();
    store.grant_tenant(&op.id, &a, "read_only").await.unwrap();
    let scope = TenantScope::Operator(op.id.clone());
    let (a1, b1) = (&a_devices[0].id, &b_devices[0].id);

    assert_eq!(store.device_trust(&scope, a1).await.unwrap(), None);
    store
        .set_device_trust(a1, 1, 2, 0, false, T0)
        .await
        .unwrap();
    store
        .set_device_trust(a1, 2, 3, 4, true, T0 + 1)
        .await
        .unwrap(); // replaces
    store
        .set_device_trust(b1, 1, 1, 1, false, T0)
        .await
        .unwrap();
    assert_not_found(
        store
            .set_device_trust("no-such-device", 1, 1, 1, false, T0)
            .await,
    );
    let held = store.device_trust(&scope, a1).await.unwrap().unwrap();
    assert_eq!(
        (
            held.device_id.as_str(),
            held.root_version,
            held.policy_version,
            held.freeze_sequence,
            held.frozen,
            held.updated_at
        ),
        (a1.as_str(), 2, 3, 4, true, T0 + 1)
    );
    assert_eq!(store.list_device_trust(&scope, &a).await.unwrap(), [held]);
    // Another tenant's device: out of scope.
    assert_eq!(store.device_trust(&scope, b1).await.unwrap(), None);
    assert!(
        store
            .device_trust(&TenantScope::All, b1)
            .await
            .unwrap()
            .is_some()
    );

    // Each change a device reports is in its tenant's log, once.
    assert!(
        !store
            .set_device_trust(a1, 2, 3, 4, true, T0 + 2)
            .await
            .unwrap(),
        "the same report again is no change"
    );
    let applied = |tenant: String| {
        let store = store.clone();
        async move {
            store
                .list_audit(&TenantScope::All, Some(&tenant), 100)
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e.action == "device.trust_applied")
                .map(|e| (e.actor, e.target, e.detail))
                .collect::<Vec<_>>()
        }
    };
    let actor = format!("device:{a1}");
    assert_eq!(
        applied(a.clone()).await,
        [
            (
                actor.clone(),
                a1.clone(),
                "root v2, policy v3, freeze statement 4 (frozen); \
                 was root v1, policy v2, freeze statement 0 (not frozen)"
                    .to_owned()
            ),
            (
                actor,
                a1.clone(),
                "root v1, policy v2, freeze statement 0 (not frozen)".to_owned()
            ),
        ]
    );
    let b = b_devices[0].tenant_id.clone();
    assert_eq!(applied(b).await.len(), 1);
}

fn new_signing_key(operator_id: &str, n: u8, name: &str) -> NewSigningKey {
    NewSigningKey {
        key_id: format!("{n:02x}").repeat(32),
        operator_id: operator_id.to_owned(),
        name: name.to_owned(),
        kind: SigningKeyKind::Ed25519,
        public_key: vec![n; 36],
    }
}

async fn signing_keys(store: Store) {
    let dave = store
        .create_operator(&new_operator("dave"), "operator", "test", T0)
        .await
        .unwrap();
    let erin = store
        .create_operator(&new_operator("erin"), "operator", "test", T0)
        .await
        .unwrap();
    let laptop = store
        .add_signing_key(&new_signing_key(&dave.id, 1, "laptop"), T0, &[])
        .await
        .unwrap();
    assert_eq!(
        (
            laptop.operator_username.as_str(),
            laptop.kind,
            laptop.created_at,
            laptop.revoked_at
        ),
        ("dave", SigningKeyKind::Ed25519, T0, None)
    );
    assert_conflict(
        store
            .add_signing_key(&new_signing_key(&erin.id, 1, "mine"), T0, &[])
            .await,
        "signing key already registered",
    );
    assert_conflict(
        store
            .add_signing_key(&new_signing_key(&dave.id, 2, "laptop"), T0, &[])
            .await,
        "signing key name already used",
    );
    assert_not_found(
        store
            .add_signing_key(&new_signing_key("no-such-operator", 3, "x"), T0, &[])
            .await,
    );
    // Another operator may use the same name.
    store
        .add_signing_key(&new_signing_key(&erin.id, 4, "laptop"), T0, &[])
        .await
        .unwrap();
    let token = store
        .add_signing_key(
            &NewSigningKey {
                kind: SigningKeyKind::Webauthn,
                ..new_signing_key(&dave.id, 5, "token")
            },
            T0 + 1,
            &[],
        )
        .await
        .unwrap();

    let names: Vec<String> = store
        .signing_keys_of(&dave.id)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(names, ["laptop", "token"]);
    assert_eq!(
        store.signing_key(&token.key_id).await.unwrap(),
        Some(token.clone())
    );
    assert_eq!(store.signing_key("00").await.unwrap(), None);

    assert_not_found(
        store
            .revoke_signing_key(&erin.id, &laptop.key_id, T0 + 2)
            .await,
    );
    store
        .revoke_signing_key(&dave.id, &laptop.key_id, T0 + 2)
        .await
        .unwrap();
    assert_not_found(
        store
            .revoke_signing_key(&dave.id, &laptop.key_id, T0 + 3)
            .await,
    );
    let revoked = store.signing_key(&laptop.key_id).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(T0 + 2));
    assert_eq!(store.signing_keys_of(&dave.id).await.unwrap().len(), 2);
}

fn job_id(n: u8) -> String {
    format!("{n:032x}")
}

fn new_job(n: u8, tenant_id: &str, requested_by: &str) -> NewJob {
    NewJob {
        id: job_id(n),
        tenant_id: tenant_id.to_owned(),
        requested_by: requested_by.to_owned(),
        class: "diagnostics".to_owned(),
        reason: format!("job {n}"),
        script: format!("echo {n}").into_bytes(),
        script_sha256: hash(n),
        envelope: format!("envelope-{n}").into_bytes(),
        signed_sha256: hash(n.wrapping_add(100)),
        not_before: T0,
        expires_at: T0 + 60 * MINUTE,
        state: JobState::Pending,
        signed_with: Vec::new(),
    }
}

fn ids(devices: &[Device]) -> Vec<String> {
    devices.iter().map(|d| d.id.clone()).collect()
}

fn ran(exit_code: Option<i64>, timed_out: bool, out: &str) -> TargetOutcome {
    TargetOutcome::Ran {
        exit_code,
        timed_out,
        stdout: out.as_bytes().to_vec(),
        stderr: b"warning".to_vec(),
        output_sha256: hash(0xee),
        started_at: T0 + 10,
        finished_at: T0 + 20,
        patches: None,
    }
}

async fn jobs_tenant_scope(store: Store) {
    let (a, a_devices) = tenant_with_devices(&store, "tenant-a", 1, &["a-2", "a-1"]).await;
    let (b, b_devices) = tenant_with_devices(&store, "tenant-b", 10, &["b-1"]).await;
    let owner = store
        .create_operator(&new_operator("olivia"), "owner", "test", T0)
        .await
        .unwrap();
    let op = store
        .create_operator(&new_operator("erin"), "operator", "test", T0)
        .await
        .unwrap();
    let stranger = store
        .create_operator(&new_operator("frank"), "operator", "test", T0)
        .await
        .unwrap();
    store.grant_tenant(&op.id, &a, "technician").await.unwrap();
    let key = store
        .add_signing_key(&new_signing_key(&owner.id, 1, "laptop"), T0, &[])
        .await
        .unwrap();

    let job_a = store
        .create_job(
            &NewJob {
                signed_with: vec![key.key_id.clone()],
                ..new_job(1, &a, &owner.id)
            },
            &ids(&a_devices),
            T0,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            job_a.tenant_name.as_str(),
            job_a.requested_by_username.as_str(),
            job_a.state,
            job_a.created_at,
            job_a.targets
        ),
        (
            "tenant-a",
            "olivia",
            JobState::Pending,
            T0,
            TargetCounts {
                waiting: 2,
                ..TargetCounts::default()
            }
        )
    );
    store
        .create_job(
            &new_job(2, &a, &owner.id),
            &ids(&a_devices[..1]),
            T0 + 1,
            &[],
        )
        .await
        .unwrap();
    let job_b = store
        .create_job(&new_job(3, &b, &owner.id), &ids(&b_devices), T0, &[])
        .await
        .unwrap();

    // In scope: the job, its targets (by hostname) and approvals.
    let scope = TenantScope::Operator(op.id.clone());
    assert_eq!(
        store.job(&scope, &job_a.id).await.unwrap(),
        Some(job_a.clone())
    );
    let listed: Vec<String> = store
        .list_jobs(&scope, &a, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(listed, [job_id(2), job_id(1)], "newest first");
    assert_eq!(store.list_jobs(&scope, &a, 1).await.unwrap().len(), 1);
    let targets = store.job_targets(&scope, &job_a.id).await.unwrap();
    let hostnames: Vec<&str> = targets.iter().map(|t| t.hostname.as_str()).collect();
    assert_eq!(hostnames, ["a-1", "a-2"]);
    assert!(targets.iter().all(|t| t.state == TargetState::Waiting));
    let approvals = store.job_approvals(&scope, &job_a.id).await.unwrap();
    assert_eq!(approvals.len(), 1);
    assert_eq!(
        (
            approvals[0].operator_username.as_str(),
            approvals[0].key_name.as_deref(),
            approvals[0].decision
        ),
        ("olivia", Some("laptop"), Decision::Approve)
    );

    // Out of scope: None and empty lists, never an error.
    assert_eq!(store.job(&scope, &job_b.id).await.unwrap(), None);
    assert!(store.list_jobs(&scope, &b, 10).await.unwrap().is_empty());
    assert!(
        store
            .job_targets(&scope, &job_b.id)
            .await
            .unwrap()
            .is_empty()
    );
    for nobody in [
        TenantScope::Operator(stranger.id.clone()),
        TenantScope::Operator("no-such-operator".into()),
    ] {
        assert_eq!(store.job(&nobody, &job_a.id).await.unwrap(), None);
        assert!(store.list_jobs(&nobody, &a, 10).await.unwrap().is_empty());
        assert!(
            store
                .job_targets(&nobody, &job_a.id)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .job_approvals(&nobody, &job_a.id)
                .await
                .unwrap()
                .is_empty()
        );
    }
    assert_eq!(store.job(&scope, &job_id(99)).await.unwrap(), None);
    assert!(
        store
            .job(&TenantScope::All, &job_b.id)
            .await
            .unwrap()
            .is_some()
    );
}

async fn job_targets_of_foreign_tenant_refused(store: Store) {
    let (a, a_devices) = tenant_with_devices(&store, "tenant-a", 1, &["a-1", "a-2"]).await;
    let (_, b_devices) = tenant_with_devices(&store, "tenant-b", 10, &["b-1"]).await;
    let owner = store
        .create_operator(&new_operator("olivia"), "owner", "test", T0)
        .await
        .unwrap();
    let key = store
        .add_signing_key(&new_signing_key(&owner.id, 1, "laptop"), T0, &[])
        .await
        .unwrap();
    let nothing_stored = |store: Store, a: String| async move {
        assert_eq!(
            store.job(&TenantScope::All, &job_id(1)).await.unwrap(),
            None
        );
        assert!(
            store
                .list_jobs(&TenantScope::All, &a, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .job_targets(&TenantScope::All, &job_id(1))
                .await
                .unwrap()
                .is_empty()
        );
    };

    // A device of tenant B among tenant A's targets: the first bad one is named.
    let mixed = vec![
        a_devices[0].id.clone(),
        b_devices[0].id.clone(),
        "no-such-device".to_owned(),
    ];
    match store
        .create_job(&new_job(1, &a, &owner.id), &mixed, T0, &[])
        .await
    {
        Err(StoreError::ForeignTarget(device)) => assert_eq!(device, b_devices[0].id),
        other => panic!("expected ForeignTarget, got {other:?}"),
    }
    nothing_stored(store.clone(), a.clone()).await;
    match store
        .create_job(
            &new_job(1, &a, &owner.id),
            &[a_devices[1].id.clone(), "no-such-device".to_owned()],
            T0,
            &[],
        )
        .await
    {
        Err(StoreError::ForeignTarget(device)) => assert_eq!(device, "no-such-device"),
        other => panic!("expected ForeignTarget, got {other:?}"),
    }
    nothing_stored(store.clone(), a.clone()).await;
    assert_conflict(
        store
            .create_job(
                &new_job(1, &a, &owner.id),
                &[a_devices[0].id.clone(), a_devices[0].id.clone()],
                T0,
                &[],
            )
            .await,
        "device named twice as a target",
    );
    assert!(matches!(
        store
            .create_job(&new_job(1, &a, &owner.id), &[], T0, &[])
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert_conflict(
        store
            .create_job(
                &NewJob {
                    signed_with: vec!["no-such-key".to_owned()],
                    ..new_job(1, &a, &owner.id)
                },
                &ids(&a_devices),
                T0,
                &[],
            )
            .await,
        "signing key unknown or revoked",
    );
    assert_not_found(
        store
            .create_job(
                &new_job(1, &a, "no-such-operator"),
                &ids(&a_devices),
                T0,
                &[],
            )
            .await,
    );
    nothing_stored(store.clone(), a.clone()).await;

    // The same job with good targets goes in; its id only once.
    let job = store
        .create_job(
            &NewJob {
                signed_with: vec![key.key_id.clone()],
                ..new_job(1, &a, &owner.id)
            },
            &ids(&a_devices),
            T0,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(job.targets.total(), 2);
    assert_conflict(
        store
            .create_job(&new_job(1, &a, &owner.id), &ids(&a_devices), T0, &[])
            .await,
        "job already exists",
    );
}

/// A tenant with devices, an owner with a key and an approved job on them.
async fn approved_job(store: &Store, hostnames: &[&str]) -> (Job, Vec<Device>, String) {
    let (a, devices) = tenant_with_devices(store, "tenant-a", 1, hostnames).await;
    let owner = store
        .create_operator(&new_operator("olivia"), "owner", "test", T0)
        .await
        .unwrap();
    let job = store
        .create_job(&new_job(1, &a, &owner.id), &ids(&devices), T0, &[])
        .await
        .unwrap();
    assert!(
        store
            .set_job_state(&job.id, JobState::Approved, Some(&owner.id), None, T0, &[])
            .await
            .unwrap()
    );
    (job, devices, owner.id)
}

/// Invariant 4: a job's state change, its audit events and its log entries
/// commit together, or not at all.
async fn job_changes_commit_with_their_audit_events(store: Store) {
    let (a, devices) = tenant_with_devices(&store, "tenant-a", 1, &["a-1"]).await;
    let (_, foreign) = tenant_with_devices(&store, "tenant-b", 10, &["b-1"]).await;
    let owner = store
        .create_operator(&new_operator("olivia"), "owner", "test", T0)
        .await
        .unwrap();
    let size = |store: Store, a: String| async move {
        store.log_head(&a).await.unwrap().map_or(0, |h| h.size)
    };
    let event = |action: AuditAction| {
        NewAuditEvent::new(T0, "olivia", action, &job_id(1)).in_tenant(Some(&a))
    };
    let before = size(store.clone(), a.clone()).await;

    // A refused job leaves no event behind.
    assert!(
        store
            .create_job(
                &new_job(1, &a, &owner.id),
                &ids(&foreign),
                T0,
                &[event(AuditAction::JobRequested)]
            )
            .await
            .is_err()
    );
    assert_eq!(size(store.clone(), a.clone()).await, before);

    let job = store
        .create_job(
            &new_job(1, &a, &owner.id),
            &ids(&devices),
            T0,
            &[event(AuditAction::JobRequested)],
        )
        .await
        .unwrap();
    assert_eq!(job.release_log_idx, None, "a pending job is not released");
    assert_eq!(size(store.clone(), a.clone()).await, before + 1);

    // Approval: the event, then the release entry naming the signed bytes.
    assert!(
        store
            .set_job_state(
                &job.id,
                JobState::Approved,
                Some(&owner.id),
                None,
                T0,
                &[event(AuditAction::JobApproved)]
            )
            .await
            .unwrap()
    );
    let entries = store.log_entries(&a, before, 10).await.unwrap();
    let actions: Vec<String> = entries
        .iter()
        .map(|e| bulwark_store::AuditLeaf::decode(&e.leaf).unwrap().action)
        .collect();
    assert_eq!(actions, ["job.requested", "job.approved", "job.released"]);
    let released = bulwark_store::AuditLeaf::decode(&entries[2].leaf).unwrap();
    assert_eq!(released.target, job.id);
    assert_eq!(
        released.detail,
        bulwark_protocol::audit_leaf::job_released_detail(&hash(101))
    );
    let stored = store
        .job(&TenantScope::All, &job.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.release_log_idx, Some(before + 2));

    // No change, no event.
    assert!(
        !store
            .set_job_state(
                &job.id,
                JobState::Rejected,
                Some(&owner.id),
                Some("late"),
                T0,
                &[event(AuditAction::JobRejected)]
            )
            .await
            .unwrap()
    );
    assert_eq!(size(store.clone(), a.clone()).await, before + 3);

    // A result is recorded once with its event; a resend records nothing.
    let outcome = ran(Some(0), false, "ok");
    let result_event = || vec![event(AuditAction::JobResult)];
    assert!(
        store
            .record_result(&job.id, &devices[0].id, &outcome, T0, &result_event())
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_result(&job.id, &devices[0].id, &outcome, T0, &result_event())
            .await
            .unwrap()
    );
    assert_eq!(size(store.clone(), a.clone()).await, before + 4);
}

/// A fan-out records its deliveries in one transaction (issue 18): each
/// target moves from waiting to delivered once, its `job.delivered` event
/// appended to its own tenant's log in order, with the batch's statements
/// chunked; what is already delivered, answered or not a target is
/// recorded as nothing, and a second identical batch changes nothing.
async fn deliveries_recorded_in_batches(store: Store) {
    // More targets than one statement's chunk (200).
    let names: Vec<String> = (0..230).map(|i| format!("a-{i:03}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (a, devices) = tenant_with_devices(&store, "tenant-a", 1, &names).await;
    let (b, b_devices) = tenant_with_devices(&store, "tenant-b", 240, &["b-1", "b-2"]).await;
    let owner = store
        .create_operator(&new_operator("olivia"), "owner", "test", T0)
        .await
        .unwrap();
    let job_a = store
        .create_job(&new_job(1, &a, &owner.id), &ids(&devices), T0, &[])
        .await
        .unwrap();
    let job_b = store
        .create_job(&new_job(2, &b, &owner.id), &ids(&b_devices), T0, &[])
        .await
        .unwrap();
    for job in [&job_a, &job_b] {
        store
            .set_job_state(&job.id, JobState::Approved, Some(&owner.id), None, T0, &[])
            .await
            .unwrap();
    }
    // Already delivered, and already answered: not first any more.
    assert!(
        store
            .mark_delivered(&job_a.id, &devices[0].id, T0 + 1, &[])
            .await
            .unwrap()
    );
    store
        .record_result(
            &job_a.id,
            &devices[1].id,
            &ran(Some(0), false, "ok"),
            T0 + 2,
            &[],
        )
        .await
        .unwrap();
    let size = |log: String| {
        let store = store.clone();
        async move { store.log_head(&log).await.unwrap().map_or(0, |h| h.size) }
    };
    let (a_before, b_before) = (size(a.clone()).await, size(b.clone()).await);

    let delivery = |job: &Job, tenant: &str, device: &str| bulwark_store::Delivery {
        job_id: job.id.clone(),
        device_id: device.to_owned(),
        at: T0 + 10,
        events: vec![
            NewAuditEvent::new(T0 + 10, "server", AuditAction::JobDelivered, &job.id)
                .in_tenant(Some(tenant))
                .with_detail(format!("to {device}")),
        ],
    };
    let mut batch = Vec::new();
    for (i, device) in devices.iter().enumerate() {
        batch.push(delivery(&job_a, &a, &device.id));
        // Interleaved: another tenant's job, and a device named twice.
        if i == 100 {
            batch.push(delivery(&job_b, &b, &b_devices[0].id));
            batch.push(delivery(&job_a, &a, &devices[5].id));
        }
    }
    batch.push(delivery(&job_b, &b, &b_devices[1].id));
    // Not a target of job A: a forged or stray delivery records nothing.
    batch.push(delivery(&job_a, &a, &b_devices[0].id));

    let first = store.mark_delivered_many(&batch).await.unwrap();
    assert_eq!(first.len(), batch.len());
    let expected: Vec<bool> = batch
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let twice = d.device_id == devices[5].id && i > 5;
            let foreign = d.job_id == job_a.id && d.device_id == b_devices[0].id;
            !(d.device_id == devices[0].id || d.device_id == devices[1].id || twice || foreign)
        })
        .collect();
    assert_eq!(first, expected);
    let firsts_a = (devices.len() - 2) as u64;
    assert_eq!(size(a.clone()).await, a_before + firsts_a);
    assert_eq!(size(b.clone()).await, b_before + 2);

    // Each tenant's log holds its own events, in the batch's order, and
    // the audit table the same events.
    let entries = store
        .log_entries(&a, a_before, u32::try_from(firsts_a).unwrap())
        .await
        .unwrap();
    let logged: Vec<String> = entries
        .iter()
        .map(|e| bulwark_store::AuditLeaf::decode(&e.leaf).unwrap().detail)
        .collect();
    let wanted: Vec<String> = devices[2..]
        .iter()
        .map(|d| format!("to {}", d.id))
        .collect();
    assert_eq!(logged, wanted);
    let events = store
        .list_audit(&TenantScope::All, Some(&b), 100)
        .await
        .unwrap();
    let delivered_b: Vec<&str> = events
        .iter()
        .filter(|e| e.action == AuditAction::JobDelivered.as_str())
        .map(|e| e.detail.as_str())
        .collect();
    assert_eq!(
        delivered_b,
        vec![
            format!("to {}", b_devices[1].id),
            format!("to {}", b_devices[0].id)
        ],
        "newest first"
    );
    let targets = store
        .job_targets(&TenantScope::All, &job_a.id)
        .await
        .unwrap();
    for target in &targets {
        let want = if target.device_id == devices[1].id {
            TargetState::Succeeded
        } else {
            TargetState::Delivered
        };
        assert_eq!(target.state, want, "{}", target.hostname);
    }

    // The same batch again (a session's resend after a reconnect): nothing.
    let again = store.mark_delivered_many(&batch).await.unwrap();
    assert!(again.iter().all(|first| !first));
    assert_eq!(size(a.clone()).await, a_before + firsts_a);
    assert_eq!(size(b).await, b_before + 2);
    assert!(store.mark_delivered_many(&[]).await.unwrap().is_empty());
}

async fn job_results_idempotent(store: Store) {
    let (job, devices, _) = approved_job(&store, &["d-1", "d-2", "d-3", "d-4"]).await;
    let [d1, d2, d3, d4] = [0, 1, 2, 3].map(|i| devices[i].id.clone());
    let refused = TargetOutcome::Refused {
        code: "outside_maintenance_window".to_owned(),
        reason: "not now".to_owned(),
    };

    assert!(
        store
            .mark_delivered(&job.id, &d1, T0 + 1, &[])
            .await
            .unwrap()
    );
    assert!(
        !store
            .mark_delivered(&job.id, &d1, T0 + 2, &[])
            .await
            .unwrap()
    );
    // An install-patches result: its report is stored with it.
    let report = bulwark_protocol::message::PatchReport {
        installed: vec![bulwark_protocol::message::PatchedPackage {
            name: "openssl".into(),
            old_version: "3.0.11-1~deb12u2".into(),
            new_version: "3.0.15-1~deb12u1".into(),
        }],
        failed: vec![bulwark_protocol::message::PatchFailure {
            name: "libc6".into(),
            reason: "still pending".into(),
        }],
        reboot_required: true,
    };
    let mut success = ran(Some(0), false, "ok");
    if let TargetOutcome::Ran { patches, .. } = &mut success {
        *patches = Some(report.clone());
    }
    assert!(
        store
            .record_result(&job.id, &d1, &success, T0 + 30, &[])
            .await
            .unwrap()
    );
    // A resend after a lost acknowledgement: Ok, nothing changes.
    assert!(
        !store
            .record_result(&job.id, &d1, &success, T0 + 40, &[])
            .await
            .unwrap()
    );
    // A different result for the same target: refused, the first stands
    // (the same run without its patch report is another result).
    assert_conflict(
        store
            .record_result(&job.id, &d1, &ran(Some(0), false, "ok"), T0 + 50, &[])
            .await,
        "a different result is already stored",
    );
    assert_conflict(
        store
            .record_result(&job.id, &d1, &ran(Some(1), false, "no"), T0 + 50, &[])
            .await,
        "a different result is already stored",
    );
    // Results arrive even for targets never marked delivered.
    assert!(
        store
            .record_result(&job.id, &d2, &ran(Some(3), false, "bad"), T0 + 30, &[])
            .await
            .unwrap()
    );
    assert!(
        store
            .record_result(&job.id, &d3, &ran(None, true, "slow"), T0 + 30, &[])
            .await
            .unwrap()
    );
    assert!(
        store
            .record_result(&job.id, &d4, &refused, T0 + 30, &[])
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_result(&job.id, &d4, &refused, T0 + 31, &[])
            .await
            .unwrap()
    );
    // A device that is no target of the job.
    assert_not_found(
        store
            .record_result(&job.id, "no-such-device", &success, T0, &[])
            .await,
    );
    assert_not_found(
        store
            .record_result(&job_id(99), &d1, &success, T0, &[])
            .await,
    );
    // Delivery after the result changes nothing.
    assert!(
        !store
            .mark_delivered(&job.id, &d1, T0 + 60, &[])
            .await
            .unwrap()
    );

    let targets = store.job_targets(&TenantScope::All, &job.id).await.unwrap();
    let states: Vec<TargetState> = targets.iter().map(|t| t.state).collect();
    assert_eq!(
        states,
        [
            TargetState::Succeeded,
            TargetState::Failed,
            TargetState::TimedOut,
            TargetState::Refused
        ]
    );
    let t1 = &targets[0];
    assert_eq!(
        (
            t1.exit_code,
            t1.stdout.as_deref(),
            t1.stderr.as_deref(),
            t1.output_sha256,
            t1.started_at,
            t1.finished_at,
            t1.delivered_at,
            t1.reported_at
        ),
        (
            Some(0),
            Some(&b"ok"[..]),
            Some(&b"warning"[..]),
            Some(hash(0xee)),
            Some(T0 + 10),
            Some(T0 + 20),
            Some(T0 + 1),
            Some(T0 + 30)
        )
    );
    assert_eq!(t1.patches.as_ref(), Some(&report));
    assert_eq!(targets[1].exit_code, Some(3));
    assert_eq!(targets[1].patches, None);
    assert_eq!(targets[2].exit_code, None);
    let t4 = &targets[3];
    assert_eq!(
        (
            t4.refusal_code.as_deref(),
            t4.refusal_reason.as_deref(),
            t4.stdout.as_deref(),
            t4.output_sha256,
            t4.reported_at
        ),
        (
            Some("outside_maintenance_window"),
            Some("not now"),
            None,
            None,
            Some(T0 + 30)
        )
    );
    let job = store
        .job(&TenantScope::All, &job.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        job.targets,
        TargetCounts {
            succeeded: 1,
            failed: 1,
            timed_out: 1,
            refused: 1,
            ..TargetCounts::default()
        }
    );
    // A result is kept even once the job has expired.
    assert_eq!(
        store.expire_jobs(job.expires_at).await.unwrap(),
        [(job.id.clone(), job.tenant_id.clone())]
    );
    assert!(
        !store
            .record_result(&job.id, &d1, &success, job.expires_at + 1, &[])
            .await
            .unwrap()
    );
}

async fn jobs_deliverable_when_approved_and_unexpired(store: Store) {
    let (a, devices) = tenant_with_devices(&store, "tenant-a", 1, &["d-1", "d-2"]).await;
    let owner = store
        .create_operator(&new_operator("olivia"), "owner", "test", T0)
        .await
        .unwrap();
    let (d1, d2) = (devices[0].id.clone(), devices[1].id.clone());
    let deliverable = |device: String, now: i64| {
        let store = store.clone();
        async move {
            store
                .deliverable_jobs_for_device(&device, now)
                .await
                .unwrap()
                .into_iter()
                .map(|(job, state)| (job.id, state))
                .collect::<Vec<_>>()
        }
    };
    // Job 1: both devices; job 2: only d-1, valid from T0 + 5 minutes;
    // job 3: d-1, stays pending; job 4: d-1, rejected.
    let job1 = store
        .create_job(
            &new_job(1, &a, &owner.id),
            &[d1.clone(), d2.clone()],
            T0,
            &[],
        )
        .await
        .unwrap();
    store
        .create_job(
            &NewJob {
                not_before: T0 + 5 * MINUTE,
                ..new_job(2, &a, &owner.id)
            },
            std::slice::from_ref(&d1),
            T0 + 1,
            &[],
        )
        .await
        .unwrap();
    store
        .create_job(
            &new_job(3, &a, &owner.id),
            std::slice::from_ref(&d1),
            T0 + 2,
            &[],
        )
        .await
        .unwrap();
    store
        .create_job(
            &new_job(4, &a, &owner.id),
            std::slice::from_ref(&d1),
            T0 + 3,
            &[],
        )
        .await
        .unwrap();
    assert!(
        deliverable(d1.clone(), T0 + 6 * MINUTE).await.is_empty(),
        "none approved"
    );

    for n in [1, 2] {
        assert!(
            store
                .set_job_state(
                    &job_id(n),
                    JobState::Approved,
                    Some(&owner.id),
                    None,
                    T0,
                    &[]
                )
                .await
                .unwrap()
        );
    }
    assert!(
        store
            .set_job_state(
                &job_id(4),
                JobState::Rejected,
                Some(&owner.id),
                Some("no"),
                T0,
                &[]
            )
            .await
            .unwrap()
    );
    assert_eq!(
        deliverable(d1.clone(), T0 + MINUTE).await,
        [(job_id(1), TargetState::Waiting)],
        "job 2 is not valid yet"
    );
    assert_eq!(
        deliverable(d1.clone(), T0 + 5 * MINUTE).await,
        [
            (job_id(1), TargetState::Waiting),
            (job_id(2), TargetState::Waiting)
        ]
    );
    let (job, _) = &store
        .deliverable_jobs_for_device(&d2, T0 + MINUTE)
        .await
        .unwrap()[0];
    assert_eq!(
        (job.script.as_slice(), job.envelope.as_slice()),
        (&b"echo 1"[..], &b"envelope-1"[..])
    );

    // Delivered jobs are delivered again (reconnect) until their result arrives.
    assert!(
        store
            .mark_delivered(&job1.id, &d1, T0 + MINUTE, &[])
            .await
            .unwrap()
    );
    assert_eq!(
        deliverable(d1.clone(), T0 + 5 * MINUTE).await,
        [
            (job_id(1), TargetState::Delivered),
            (job_id(2), TargetState::Waiting)
        ]
    );
    store
        .record_result(
            &job1.id,
            &d1,
            &ran(Some(0), false, "ok"),
            T0 + 2 * MINUTE,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        deliverable(d1.clone(), T0 + 5 * MINUTE).await,
        [(job_id(2), TargetState::Waiting)]
    );
    assert_eq!(
        deliverable(d2.clone(), T0 + 5 * MINUTE).await,
        [(job_id(1), TargetState::Waiting)]
    );

    // Past expires_at: not delivered, even before expire_jobs runs...
    let end = job1.expires_at;
    assert!(deliverable(d2.clone(), end).await.is_empty());
    // ...and expire_jobs marks pending and approved jobs, not rejected ones.
    let expired: Vec<String> = store
        .expire_jobs(end)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, tenant)| {
            assert_eq!(tenant, a);
            id
        })
        .collect();
    assert_eq!(expired, [job_id(1), job_id(2), job_id(3)]);
    assert!(store.expire_jobs(end).await.unwrap().is_empty());
    let job1 = store
        .job(&TenantScope::All, &job1.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job1.state, JobState::Expired);
    assert_eq!(job1.decided_at, Some(T0), "approval time kept");
    let job3 = store
        .job(&TenantScope::All, &job_id(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (job3.state, job3.decided_at),
        (JobState::Expired, Some(end))
    );
    assert_eq!(
        store
            .job(&TenantScope::All, &job_id(4))
            .await
            .unwrap()
            .unwrap()
            .state,
        JobState::Rejected
    );
    // The waiting target stays waiting; the job is expired and never delivered.
    let targets = store
        .job_targets(&TenantScope::All, &job1.id)
        .await
        .unwrap();
    assert_eq!(targets[1].state, TargetState::Waiting);
    assert!(deliverable(d2.clone(), T0).await.is_empty());
}

async fn job_approvals_replace_envelope(store: Store) {
    let (a, devices) = tenant_with_devices(&store, "tenant-a", 1, &["d-1"]).await;
    let olivia = store
        .create_operator(&new_operator("olivia"), "owner", "test", T0)
        .await
        .unwrap();
    let tom = store
        .create_operator(&new_operator("tom"), "operator", "test", T0)
        .await
        .unwrap();
    let sam = store
        .create_operator(&new_operator("sam"), "operator", "test", T0)
        .await
        .unwrap();
    let k_olivia = store
        .add_signing_key(&new_signing_key(&olivia.id, 1, "laptop"), T0, &[])
        .await
        .unwrap();
    let k_tom = store
        .add_signing_key(&new_signing_key(&tom.id, 2, "laptop"), T0, &[])
        .await
        .unwrap();
    let k_sam = store
        .add_signing_key(&new_signing_key(&sam.id, 3, "laptop"), T0, &[])
        .await
        .unwrap();
    let job = store
        .create_job(
            &NewJob {
                signed_with: vec![k_olivia.key_id.clone()],
                ..new_job(1, &a, &olivia.id)
            },
            &ids(&devices),
            T0,
            &[],
        )
        .await
        .unwrap();
    let v1 = job.envelope.clone();

    // Tom appends his signature to what he read.
    let job = store
        .record_approval(
            &job.id,
            &tom.id,
            &k_tom.key_id,
            &v1,
            b"envelope-1+tom",
            T0 + 1,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(job.envelope, b"envelope-1+tom");
    assert_eq!(job.state, JobState::Pending);
    // Sam read the envelope before Tom's approval: refused, nothing lost.
    assert_conflict(
        store
            .record_approval(
                &job.id,
                &sam.id,
                &k_sam.key_id,
                &v1,
                b"envelope-1+sam",
                T0 + 2,
                &[],
            )
            .await,
        "job changed since it was read",
    );
    // Keys must be the approver's own, unrevoked; each signs once.
    assert_conflict(
        store
            .record_approval(
                &job.id,
                &sam.id,
                &k_tom.key_id,
                b"envelope-1+tom",
                b"x",
                T0 + 2,
                &[],
            )
            .await,
        "signing key is not the operator's or is revoked",
    );
    assert_conflict(
        store
            .record_approval(
                &job.id,
                &tom.id,
                &k_tom.key_id,
                b"envelope-1+tom",
                b"envelope-1+tom+tom",
                T0 + 2,
                &[],
            )
            .await,
        "key already signed this job",
    );
    store
        .revoke_signing_key(&sam.id, &k_sam.key_id, T0 + 2)
        .await
        .unwrap();
    assert_conflict(
        store
            .record_approval(
                &job.id,
                &sam.id,
                &k_sam.key_id,
                b"envelope-1+tom",
                b"x",
                T0 + 3,
                &[],
            )
            .await,
        "signing key is not the operator's or is revoked",
    );
    assert_not_found(
        store
            .record_approval(&job_id(99), &tom.id, &k_tom.key_id, b"", b"x", T0, &[])
            .await,
    );
    let stored = store
        .job(&TenantScope::All, &job.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.envelope, b"envelope-1+tom",
        "failed approvals change nothing"
    );

    let approvals = store
        .job_approvals(&TenantScope::All, &job.id)
        .await
        .unwrap();
    let signers: Vec<(&str, Option<&str>, i64)> = approvals
        .iter()
        .map(|a| (a.operator_username.as_str(), a.key_id.as_deref(), a.at))
        .collect();
    assert_eq!(
        signers,
        [
            ("olivia", Some(k_olivia.key_id.as_str()), T0),
            ("tom", Some(k_tom.key_id.as_str()), T0 + 1)
        ]
    );

    // Quorum met: approved; later approvals are refused.
    assert!(
        store
            .set_job_state(
                &job.id,
                JobState::Approved,
                Some(&tom.id),
                None,
                T0 + 4,
                &[]
            )
            .await
            .unwrap()
    );
    let k_sam2 = store
        .add_signing_key(&new_signing_key(&sam.id, 4, "phone"), T0, &[])
        .await
        .unwrap();
    assert_conflict(
        store
            .record_approval(
                &job.id,
                &sam.id,
                &k_sam2.key_id,
                b"envelope-1+tom",
                b"x",
                T0 + 5,
                &[],
            )
            .await,
        "job is not pending",
    );
    // A pending job past its expiry takes no more signatures.
    let job2 = store
        .create_job(&new_job(2, &a, &olivia.id), &ids(&devices), T0, &[])
        .await
        .unwrap();
    assert_conflict(
        store
            .record_approval(
                &job2.id,
                &sam.id,
                &k_sam2.key_id,
                &job2.envelope,
                b"x",
                job2.expires_at,
                &[],
            )
            .await,
        "job is not pending",
    );
}

async fn job_state_transitions(store: Store) {
    let (a, devices) = tenant_with_devices(&store, "tenant-a", 1, &["d-1"]).await;
    let olivia = store
        .create_operator(&new_operator("olivia"), "owner", "test", T0)
        .await
        .unwrap();
    for n in 1..=3 {
        store
            .create_job(&new_job(n, &a, &olivia.id), &ids(&devices), T0, &[])
            .await
            .unwrap();
    }
    // Rejected: recorded with the note, and in the approvals.
    assert!(
        store
            .set_job_state(
                &job_id(1),
                JobState::Rejected,
                Some(&olivia.id),
                Some("wrong host"),
                T0 + 1,
                &[]
            )
            .await
            .unwrap()
    );
    let job = store
        .job(&TenantScope::All, &job_id(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            job.state,
            job.decided_at,
            job.decided_by.as_deref(),
            job.decision_note.as_deref()
        ),
        (
            JobState::Rejected,
            Some(T0 + 1),
            Some(olivia.id.as_str()),
            Some("wrong host")
        )
    );
    let approvals = store
        .job_approvals(&TenantScope::All, &job_id(1))
        .await
        .unwrap();
    assert_eq!(approvals.len(), 1);
    assert_eq!(
        (
            approvals[0].decision,
            approvals[0].key_id.as_deref(),
            approvals[0].note.as_deref()
        ),
        (Decision::Reject, None, Some("wrong host"))
    );
    // Only from pending: a rejected job is not approved, an approved one not rejected.
    assert!(
        !store
            .set_job_state(
                &job_id(1),
                JobState::Approved,
                Some(&olivia.id),
                None,
                T0 + 2,
                &[]
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .set_job_state(
                &job_id(2),
                JobState::Approved,
                Some(&olivia.id),
                None,
                T0 + 2,
                &[]
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_job_state(
                &job_id(2),
                JobState::Rejected,
                Some(&olivia.id),
                None,
                T0 + 3,
                &[]
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_job_state(
                &job_id(2),
                JobState::Approved,
                Some(&olivia.id),
                None,
                T0 + 3,
                &[]
            )
            .await
            .unwrap()
    );
    assert!(matches!(
        store
            .set_job_state(&job_id(3), JobState::Pending, None, None, T0, &[])
            .await,
        Err(StoreError::Invalid(_))
    ));
    // A pending job past its expiry cannot be approved.
    let job3 = store
        .job(&TenantScope::All, &job_id(3))
        .await
        .unwrap()
        .unwrap();
    assert!(
        !store
            .set_job_state(
                &job_id(3),
                JobState::Approved,
                Some(&olivia.id),
                None,
                job3.expires_at,
                &[]
            )
            .await
            .unwrap()
    );
    assert_not_found(
        store
            .set_job_state(
                &job_id(99),
                JobState::Rejected,
                Some(&olivia.id),
                None,
                T0,
                &[],
            )
            .await,
    );
    // A job whose first signatures meet the quorum is approved at creation.
    let job4 = store
        .create_job(
            &NewJob {
                state: JobState::Approved,
                ..new_job(4, &a, &olivia.id)
            },
            &ids(&devices),
            T0 + 4,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (job4.state, job4.decided_at, job4.decided_by.as_deref()),
        (JobState::Approved, Some(T0 + 4), Some(olivia.id.as_str()))
    );
    assert_eq!(
        store
            .deliverable_jobs_for_device(&devices[0].id, T0 + 5)
            .await
            .unwrap()
            .len(),
        2,
        "jobs 2 and 4"
    );
    for state in [JobState::Rejected, JobState::Expired] {
        assert!(matches!(
            store
                .create_job(
                    &NewJob {
                        state,
                        ..new_job(5, &a, &olivia.id)
                    },
                    &ids(&devices),
                    T0,
                    &[],
                )
                .await,
            Err(StoreError::Invalid(_))
        ));
    }
    let states: Vec<(String, JobState)> = store
        .list_jobs(&TenantScope::All, &a, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|j| (j.id, j.state))
        .collect();
    assert_eq!(
        states,
        [
            (job_id(4), JobState::Approved),
            (job_id(3), JobState::Pending),
            (job_id(2), JobState::Approved),
            (job_id(1), JobState::Rejected)
        ]
    );
}

async fn job_approvals_and_results_concurrent(store: Store) {
    let (a, devices) = tenant_with_devices(&store, "tenant-a", 1, &["d-1"]).await;
    let device = devices[0].id.clone();
    let olivia = store
        .create_operator(&new_operator("olivia"), "owner", "test", T0)
        .await
        .unwrap();
    let mut approvers = Vec::new();
    for (n, name) in [(1, "tom"), (2, "sam")] {
        let op = store
            .create_operator(&new_operator(name), "operator", "test", T0)
            .await
            .unwrap();
        let key = store
            .add_signing_key(&new_signing_key(&op.id, n, "laptop"), T0, &[])
            .await
            .unwrap();
        approvers.push((op.id, key.key_id));
    }
    for round in 1..=5u8 {
        let job = store
            .create_job(&new_job(round, &a, &olivia.id), &ids(&devices), T0, &[])
            .await
            .unwrap();
        // Two approvers append to the same envelope at once: one wins, the
        // other is told to read again; no signature is silently lost.
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let tasks: Vec<_> = approvers
            .iter()
            .cloned()
            .map(|(operator, key)| {
                let (store, barrier, job) = (store.clone(), barrier.clone(), job.clone());
                tokio::spawn(async move {
                    let new = [&job.envelope[..], key.as_bytes()].concat();
                    barrier.wait().await;
                    store
                        .record_approval(&job.id, &operator, &key, &job.envelope, &new, T0 + 1, &[])
                        .await
                        .map(|job| job.envelope)
                })
            })
            .collect();
        let mut won = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(envelope) => won.push(envelope),
                Err(StoreError::Conflict("job changed since it was read")) => {}
                Err(other) => panic!("unexpected error {other:?}"),
            }
        }
        assert_eq!(won.len(), 1, "round {round}: exactly one approval lands");
        let stored = store
            .job(&TenantScope::All, &job.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.envelope, won[0]);
        assert_eq!(
            store
                .job_approvals(&TenantScope::All, &job.id)
                .await
                .unwrap()
                .len(),
            1
        );

        // The same result sent twice at once: stored once, both answered Ok.
        assert!(
            store
                .set_job_state(
                    &job.id,
                    JobState::Approved,
                    Some(&olivia.id),
                    None,
                    T0 + 2,
                    &[]
                )
                .await
                .unwrap()
        );
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let (store, barrier) = (store.clone(), barrier.clone());
                let (job_id, device) = (job.id.clone(), device.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    store
                        .record_result(&job_id, &device, &ran(Some(0), false, "ok"), T0 + 3, &[])
                        .await
                })
            })
            .collect();
        let mut stored_now = 0;
        for task in tasks {
            if task.await.unwrap().unwrap() {
                stored_now += 1;
            }
        }
        assert_eq!(stored_now, 1, "round {round}: the result is stored once");
    }
}

/// Installs (or removes) a trigger that refuses every audit event, as a
/// full disk or a broken log would: a change must then not happen at all.
async fn refuse_audit_events(store: &Store, refuse: bool) {
    let statements: &[&str] = match (store.backend(), refuse) {
        (Backend::Sqlite, true) => &["CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events \
             BEGIN SELECT RAISE(ABORT, 'audit log unavailable'); END"],
        (Backend::Sqlite, false) => &["DROP TRIGGER refuse_audit"],
        (Backend::Postgres, true) => &[
            "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'audit log unavailable'; END $$",
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events \
             FOR EACH ROW EXECUTE FUNCTION refuse_audit()",
        ],
        (Backend::Postgres, false) => &[
            "DROP TRIGGER refuse_audit ON audit_events",
            "DROP FUNCTION refuse_audit()",
        ],
    };
    let mut tx = store.begin().await.unwrap();
    for sql in statements {
        sqlx::query(sql).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// Every change that records an event does so in its own transaction:
/// when the event cannot be written, the change does not happen either,
/// and once it can, change and event land together.
async fn changes_fail_when_their_events_cannot_be_logged(store: Store) {
    let owner = store
        .create_operator(&new_operator("olivia"), "owner", "test", T0)
        .await
        .unwrap();
    let tenant = store
        .create_tenant("acme", T0, |_| Vec::new())
        .await
        .unwrap();
    store
        .create_session(session_for(&owner.id, 1, T0), &[])
        .await
        .unwrap();
    store
        .replace_recovery_codes(&owner.id, &[hash(40)], "olivia", T0)
        .await
        .unwrap();
    store
        .update_throttle(&["user:olivia"], |_| {
            (
                vec![ThrottleCounter {
                    failures: 1,
                    window_start: T0,
                    last_failure_at: T0,
                    locked_until: Some(T0 + MINUTE),
                }],
                (),
            )
        })
        .await
        .unwrap();
    let event = |action: AuditAction| NewAuditEvent::new(T0, "olivia", action, "x");
    let in_acme = |action: AuditAction| event(action).in_tenant(Some(&tenant.id));
    let actions_before = audit_actions(&store).await;
    let acme_log = tenant.id.clone();
    let acme_size = store
        .log_head(&acme_log)
        .await
        .unwrap()
        .map_or(0, |h| h.size);

    refuse_audit_events(&store, true).await;
    assert!(
        store
            .create_tenant("newco", T0, |t| vec![
                in_acme(AuditAction::TenantCreated).in_tenant(Some(&t.id))
            ])
            .await
            .is_err()
    );
    assert!(store.ensure_tenant("newco", "test", T0).await.is_err());
    assert!(
        store
            .create_session(
                session_for(&owner.id, 2, T0),
                &[event(AuditAction::LoginSucceeded)]
            )
            .await
            .is_err()
    );
    assert!(
        store
            .revoke_session(hash(1), T0 + 1, &[event(AuditAction::Logout)])
            .await
            .is_err()
    );
    assert!(
        store
            .refresh_session_mfa(hash(1), T0 + 2, &[event(AuditAction::StepUpSucceeded)])
            .await
            .is_err()
    );
    assert!(
        store
            .use_recovery_code(&owner.id, hash(40), T0, |_| vec![event(
                AuditAction::LoginRecoveryCodeUsed
            )])
            .await
            .is_err()
    );
    assert!(
        store
            .clear_throttle("user:olivia", T0, |_| vec![event(
                AuditAction::LoginUnlocked
            )])
            .await
            .is_err()
    );
    assert!(
        store
            .create_enrollment_token(
                hash(50),
                &tenant.id,
                None,
                T0,
                T0 + MINUTE,
                &[in_acme(AuditAction::EnrollmentTokenIssued)]
            )
            .await
            .is_err()
    );
    assert!(
        store
            .add_signing_key(
                &new_signing_key(&owner.id, 1, "laptop"),
                T0,
                &[event(AuditAction::SigningKeyRegistered)]
            )
            .await
            .is_err()
    );
    assert!(
        store
            .add_trust_statement(
                &tenant.id,
                TrustKind::Root,
                1,
                b"root-1",
                None,
                T0,
                &[in_acme(AuditAction::TrustRootPublished)]
            )
            .await
            .is_err()
    );
    assert!(
        store
            .create_trust_proposal(
                &proposal("p-1", &tenant.id, TrustKind::Root, 1, &owner.id),
                &[in_acme(AuditAction::TrustProposed)]
            )
            .await
            .is_err()
    );

    // Nothing changed: not the state, not the audit events, not the log.
    assert!(
        store
            .tenant_by_name(&TenantScope::All, "newco")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.session(hash(2)).await.unwrap().is_none());
    let (session, _) = store.session(hash(1)).await.unwrap().unwrap();
    assert_eq!((session.revoked_at, session.mfa_at), (None, T0));
    assert_eq!(store.recovery_codes_left(&owner.id).await.unwrap(), 1);
    assert_eq!(
        store
            .throttle_counter("user:olivia")
            .await
            .unwrap()
            .locked_until,
        Some(T0 + MINUTE)
    );
    assert!(
        store
            .signing_key(&new_signing_key(&owner.id, 1, "laptop").key_id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .trust_statements(&TenantScope::All, &tenant.id)
            .await
            .unwrap(),
        TrustSet::default()
    );
    assert!(
        store
            .trust_proposal(&TenantScope::All, "p-1", T0)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(audit_actions(&store).await, actions_before);
    assert_eq!(
        store
            .log_head(&acme_log)
            .await
            .unwrap()
            .map_or(0, |h| h.size),
        acme_size
    );

    // With the log writable again, each change lands with its event.
    refuse_audit_events(&store, false).await;
    let newco = store
        .create_tenant("newco", T0, |t| {
            vec![event(AuditAction::TenantCreated).in_tenant(Some(&t.id))]
        })
        .await
        .unwrap();
    assert_eq!(
        store.log_head(&newco.id).await.unwrap().map(|h| h.size),
        Some(1),
        "a tenant's creation is the first entry of its log"
    );
    store
        .revoke_session(hash(1), T0 + 1, &[event(AuditAction::Logout)])
        .await
        .unwrap();
    let mut left = None;
    assert!(
        store
            .use_recovery_code(&owner.id, hash(40), T0, |n| {
                left = Some(n);
                vec![event(AuditAction::LoginRecoveryCodeUsed)]
            })
            .await
            .unwrap()
    );
    assert_eq!(left, Some(0));
    // A spent code records nothing the second time.
    assert!(
        !store
            .use_recovery_code(&owner.id, hash(40), T0, |_| vec![event(
                AuditAction::LoginRecoveryCodeUsed
            )])
            .await
            .unwrap()
    );
    assert!(
        store
            .clear_throttle("user:olivia", T0, |was_locked| {
                assert!(was_locked);
                vec![event(AuditAction::LoginUnlocked)]
            })
            .await
            .unwrap()
    );
    store
        .add_trust_statement(
            &tenant.id,
            TrustKind::Root,
            1,
            b"root-1",
            None,
            T0,
            &[in_acme(AuditAction::TrustRootPublished)],
        )
        .await
        .unwrap();
    let mut added = audit_actions(&store).await;
    added.truncate(added.len() - actions_before.len());
    added.reverse();
    assert_eq!(
        added,
        [
            "tenant.created",
            "logout",
            "login.recovery_code_used",
            "login.unlocked",
            "trust.root_published"
        ]
    );
    assert_eq!(
        store
            .log_head(&acme_log)
            .await
            .unwrap()
            .map_or(0, |h| h.size),
        acme_size + 1
    );
}

/// RFD 0012: cancelling stops delivery and names the devices to tell; a
/// start is recorded once, for a delivered target; live output is kept up
/// to the cap per target, the rest counted, a resent piece ignored, and
/// nothing is kept for a target that was not sent the job or has finished.
async fn job_cancel_and_live_output(store: Store) {
    let (a, devices) = tenant_with_devices(&store, "tenant-a", 1, &["d-1", "d-2"]).await;
    let owner = store
        .create_operator(&new_operator("olivia"), "owner", "test", T0)
        .await
        .unwrap();
    let (d1, d2) = (devices[0].id.clone(), devices[1].id.clone());
    let job = store
        .create_job(
            &new_job(1, &a, &owner.id),
            &[d1.clone(), d2.clone()],
            T0,
            &[],
        )
        .await
        .unwrap();
    assert!(
        store
            .set_job_state(&job.id, JobState::Approved, Some(&owner.id), None, T0, &[])
            .await
            .unwrap()
    );
    // Output before delivery: not kept.
    assert_not_found(
        store
            .append_output(&job.id, &d1, 0, "stdout", b"early", 0, 10, T0)
            .await,
    );
    assert!(!store.mark_running(&job.id, &d1, T0 + 1).await.unwrap());
    assert!(
        store
            .mark_delivered(&job.id, &d1, T0 + 1, &[])
            .await
            .unwrap()
    );
    assert!(store.mark_running(&job.id, &d1, T0 + 2).await.unwrap());
    assert!(
        !store.mark_running(&job.id, &d1, T0 + 3).await.unwrap(),
        "once"
    );

    // A cap of 10 bytes: 6 kept, then 4 of the next 6, then none.
    use bulwark_store::Appended;
    let append = |seq: u64, data: &'static [u8], skipped: u64| {
        let (store, job, d1) = (store.clone(), job.id.clone(), d1.clone());
        async move {
            store
                .append_output(&job, &d1, seq, "stdout", data, skipped, 10, T0 + 5)
                .await
                .unwrap()
        }
    };
    assert_eq!(append(0, b"line1\n", 0).await, Appended::Stored(6));
    assert_eq!(append(0, b"line1\n", 0).await, Appended::Dropped, "resent");
    assert_eq!(append(1, b"line2\n", 3).await, Appended::Stored(4));
    assert_eq!(append(2, b"line3\n", 0).await, Appended::Dropped);
    let all = TenantScope::All;
    let chunks = store
        .job_output(&all, &job.id, Some(&d1), None, 100)
        .await
        .unwrap();
    let kept: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
    assert_eq!(kept, b"line1\nline");
    assert_eq!(chunks[1].skipped, 3);
    let after = store
        .job_output(&all, &job.id, Some(&d1), Some(0), 100)
        .await
        .unwrap();
    assert_eq!(after.iter().map(|c| c.seq).collect::<Vec<_>>(), [1, 2]);
    let target = store
        .job_targets(&all, &job.id)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.device_id == d1)
        .unwrap();
    assert_eq!(target.running_at, Some(T0 + 2));
    // 2 past the cap in piece 1, 3 skipped by the agent, 6 of piece 2.
    assert_eq!((target.live_bytes, target.live_truncated), (10, 11));
    // Another tenant's operator sees none of it.
    let other = store
        .create_operator(&new_operator("mallory"), "technician", "test", T0)
        .await
        .unwrap();
    let foreign = TenantScope::Operator(other.id.clone());
    assert!(
        store
            .job_output(&foreign, &job.id, Some(&d1), None, 100)
            .await
            .unwrap()
            .is_empty()
    );

    // Cancel: d-1 (delivered) is to be told, d-2 (waiting) is never sent it.
    let cancelled = store
        .cancel_job(&job.id, &owner.id, "stop", T0 + 10, &[])
        .await
        .unwrap();
    assert_eq!(cancelled.delivered, vec![d1.clone()]);
    assert_eq!(cancelled.waiting, 1);
    assert!(
        store
            .deliverable_jobs_for_device(&d2, T0 + 11)
            .await
            .unwrap()
            .is_empty(),
        "a cancelled job is never delivered"
    );
    assert_eq!(
        store.cancels_for_device(&d1).await.unwrap(),
        vec![(job.id.clone(), "stop".to_owned())]
    );
    assert!(store.cancels_for_device(&d2).await.unwrap().is_empty());
    assert_conflict(
        store
            .cancel_job(&job.id, &owner.id, "again", T0 + 12, &[])
            .await,
        "job already cancelled",
    );
    let stored = store.job(&all, &job.id).await.unwrap().unwrap();
    assert_eq!(stored.cancelled_at, Some(T0 + 10));
    assert_eq!(stored.cancelled_by.as_deref(), Some("olivia"));
    assert_eq!(stored.cancel_reason.as_deref(), Some("stop"));
    // The agent's answer ends it; nothing more is kept, no cancel is due.
    store
        .record_result(&job.id, &d1, &ran(None, false, ""), T0 + 13, &[])
        .await
        .unwrap();
    assert_not_found(
        store
            .append_output(&job.id, &d1, 3, "stdout", b"late", 0, 10, T0 + 14)
            .await,
    );
    assert!(store.cancels_for_device(&d1).await.unwrap().is_empty());
    assert_not_found(store.cancel_job(&job_id(9), &owner.id, "x", T0, &[]).await);

    // A finished job cannot be cancelled.
    let job2 = store
        .create_job(
            &new_job(2, &a, &owner.id),
            std::slice::from_ref(&d1),
            T0,
            &[],
        )
        .await
        .unwrap();
    store
        .set_job_state(&job2.id, JobState::Approved, Some(&owner.id), None, T0, &[])
        .await
        .unwrap();
    store
        .record_result(&job2.id, &d1, &ran(Some(0), false, "ok"), T0 + 1, &[])
        .await
        .unwrap();
    assert_conflict(
        store
            .cancel_job(&job2.id, &owner.id, "late", T0 + 2, &[])
            .await,
        "every target has finished",
    );
}
