//! Check states per device (RFD 0009): each body runs against SQLite and
//! PostgreSQL (a fresh schema per test).

#![allow(clippy::unwrap_used)]

use bulwark_protocol::checks::{CheckReport, CheckState, CheckStatus};
use bulwark_store::{Device, Store, TenantScope};

#[macro_use]
mod support;

both_backends! {
    reports_store_states_and_return_what_changed,
    hostile_reports_are_bounded_and_stay_on_their_device,
}

const T0: i64 = 1_700_000_000_000;

async fn device(store: &Store, tenant_id: &str, key: u8) -> Device {
    support::enrolled_device(store, tenant_id, key, &format!("host-{key}"), T0).await
}

fn status(name: &str, state: CheckState, summary: &str) -> CheckStatus {
    CheckStatus {
        name: name.into(),
        state,
        value: Some(42),
        summary: summary.into(),
        since: 1_700_000_000,
        measured_at: 1_700_000_060,
    }
}

fn report(full: bool, checks: Vec<CheckStatus>) -> CheckReport {
    CheckReport {
        seq: 1,
        full,
        policy_version: 3,
        checks,
    }
}

async fn reports_store_states_and_return_what_changed(store: Store) {
    let acme = store
        .create_tenant("acme", T0, |_| Vec::new())
        .await
        .unwrap();
    let d = device(&store, &acme.id, 1).await;
    let first = store
        .record_check_report(
            &d.id,
            &report(
                true,
                vec![
                    status("disk-root", CheckState::Ok, "17% used"),
                    status("sshd", CheckState::Critical, "inactive"),
                ],
            ),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(first.len(), 2, "{first:?}");
    assert!(first.iter().all(|t| t.from.is_none()));
    // A delta: one state changes, one stays.
    let second = store
        .record_check_report(
            &d.id,
            &report(
                false,
                vec![
                    status("disk-root", CheckState::Warning, "81% used"),
                    status("sshd", CheckState::Critical, "failed"),
                ],
            ),
            T0 + 1,
        )
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(
        (second[0].name.as_str(), second[0].from, second[0].to),
        ("disk-root", Some(CheckState::Ok), CheckState::Warning)
    );
    assert_eq!(second[0].since, 1_700_000_000_000);
    let stored = store
        .device_checks(&TenantScope::All, &d.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored
            .iter()
            .map(|c| (c.name.as_str(), c.state, c.summary.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("disk-root", CheckState::Warning, "81% used"),
            ("sshd", CheckState::Critical, "failed"),
        ]
    );
    assert_eq!(stored[0].policy_version, 3);
    // A full report drops the checks it does not list: they read as ok.
    let dropped = store
        .record_check_report(
            &d.id,
            &report(true, vec![status("sshd", CheckState::Ok, "active")]),
            T0 + 2,
        )
        .await
        .unwrap();
    assert_eq!(
        dropped
            .iter()
            .map(|t| (t.name.as_str(), t.from, t.to))
            .collect::<Vec<_>>(),
        vec![
            ("sshd", Some(CheckState::Critical), CheckState::Ok),
            ("disk-root", Some(CheckState::Warning), CheckState::Ok),
        ]
    );
    assert_eq!(dropped[1].summary, "no longer in the policy the agent runs");
    let stored = store
        .device_checks(&TenantScope::All, &d.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].state, CheckState::Ok);
}

async fn hostile_reports_are_bounded_and_stay_on_their_device(store: Store) {
    let acme = store
        .create_tenant("acme", T0, |_| Vec::new())
        .await
        .unwrap();
    let other = store
        .create_tenant("other", T0, |_| Vec::new())
        .await
        .unwrap();
    let d = device(&store, &acme.id, 1).await;
    let foreign = device(&store, &other.id, 2).await;
    store
        .record_check_report(
            &foreign.id,
            &report(true, vec![status("disk-root", CheckState::Ok, "fine")]),
            T0,
        )
        .await
        .unwrap();
    // NUL, a name twice, a very long summary: stored, bounded, once.
    let changed = store
        .record_check_report(
            &d.id,
            &report(
                true,
                vec![
                    status("disk-root", CheckState::Critical, "a\0b"),
                    status("disk-root", CheckState::Ok, "second"),
                    status("long", CheckState::Ok, &"é".repeat(1000)),
                ],
            ),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(changed.len(), 2);
    let stored = store
        .device_checks(&TenantScope::All, &d.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored[0].summary, "a\u{fffd}b");
    assert_eq!(stored[0].state, CheckState::Critical);
    assert!(stored[1].summary.len() <= 256);
    // The other tenant's device kept its own state.
    let theirs = store
        .device_checks(&TenantScope::All, &foreign.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(theirs[0].summary, "fine");
    // A scope without the tenant sees no device at all.
    assert!(
        store
            .device_checks(&TenantScope::Operator("nobody".into()), &d.id)
            .await
            .unwrap()
            .is_none()
    );
}
