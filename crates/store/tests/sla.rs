//! A tenant's SLA settings and the alert rows attainment is computed from
//! (migration 0017, RFD 0008): each body runs against SQLite and
//! PostgreSQL (a fresh schema per test), like `alerts.rs`.

#![allow(clippy::unwrap_used)]

use bulwark_store::{
    AlertState, Device, NewAlert, NewOperator, Outage, Raised, Severity, SeverityTargets,
    SlaSettings, Store, StoreError, TenantScope, UptimeTarget,
};

#[macro_use]
mod support;

both_backends! {
    settings_are_replaced_and_each_change_is_in_the_tenants_log,
    sla_alerts_are_the_tenants_in_the_period_and_inside_the_scope,
    uptime_targets_and_the_outages_of_their_groups,
}

const T0: i64 = 1_700_000_000_000;

fn settings(tenant_id: &str, ack: i64, at: i64) -> SlaSettings {
    SlaSettings {
        tenant_id: tenant_id.to_owned(),
        time_zone: "Europe/Berlin".into(),
        business_hours: "mon 09:00-17:00,tue 09:00-17:00".into(),
        holidays: "2026-12-25".into(),
        critical: SeverityTargets {
            acknowledge_minutes: Some(ack),
            resolve_minutes: Some(240),
        },
        warning: SeverityTargets::default(),
        info: SeverityTargets {
            acknowledge_minutes: None,
            resolve_minutes: Some(10_000),
        },
        patch_critical_days: Some(14),
        uptime: vec![UptimeTarget {
            group_name: "HQ".into(),
            group_key: "hq".into(),
            basis_points: 9_990,
        }],
        updated_by: "olivia".into(),
        updated_at: at,
    }
}

async fn settings_are_replaced_and_each_change_is_in_the_tenants_log(store: Store) {
    let acme = store.ensure_tenant("acme", "test", T0).await.unwrap();
    assert_eq!(
        store
            .sla_settings(&TenantScope::All, &acme.id)
            .await
            .unwrap(),
        None
    );
    let first = settings(&acme.id, 30, T0);
    store.set_sla_settings(&first).await.unwrap();
    assert_eq!(
        store
            .sla_settings(&TenantScope::All, &acme.id)
            .await
            .unwrap(),
        Some(first.clone())
    );
    let second = SlaSettings {
        time_zone: "America/New_York".into(),
        holidays: String::new(),
        patch_critical_days: None,
        uptime: Vec::new(),
        ..settings(&acme.id, 15, T0 + 1)
    };
    store.set_sla_settings(&second).await.unwrap();
    assert_eq!(
        store
            .sla_settings(&TenantScope::All, &acme.id)
            .await
            .unwrap(),
        Some(second)
    );
    let events = store
        .list_audit(&TenantScope::All, Some(&acme.id), 10)
        .await
        .unwrap();
    let changes: Vec<&str> = events
        .iter()
        .filter(|e| e.action == "sla.changed")
        .map(|e| e.detail.as_str())
        .collect();
    assert_eq!(changes.len(), 2, "{events:?}");
    assert!(
        changes[0].starts_with("from Europe/Berlin"),
        "{}",
        changes[0]
    );
    assert!(changes[0].contains("to America/New_York"), "{}", changes[0]);
    assert!(changes[0].contains("critical ack 15m"), "{}", changes[0]);
    assert!(
        changes[0].contains("uptime [HQ 99.90%]") && changes[0].ends_with("uptime []"),
        "{}",
        changes[0]
    );
    assert!(
        changes[1].starts_with("set Europe/Berlin"),
        "{}",
        changes[1]
    );
    // A target of zero is refused, and changes nothing.
    let zero = settings(&acme.id, 0, T0 + 2);
    assert!(matches!(
        store.set_sla_settings(&zero).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        store
            .sla_settings(&TenantScope::All, &acme.id)
            .await
            .unwrap()
            .unwrap()
            .time_zone,
        "America/New_York"
    );
    // A tenant that does not exist.
    assert!(matches!(
        store
            .set_sla_settings(&settings("no-such-tenant", 30, T0))
            .await,
        Err(StoreError::NotFound)
    ));
}

fn alert(tenant: Option<&str>, key: &str, severity: Severity) -> NewAlert {
    NewAlert {
        tenant_id: tenant.map(str::to_owned),
        device_id: None,
        kind: "device.offline".into(),
        severity,
        dedup_key: key.into(),
        summary: format!("alert {key}"),
        detail: String::new(),
        log_id: None,
        log_idx: None,
        silenced: None,
    }
}

async fn opened(store: &Store, new: &NewAlert, now: i64) -> String {
    match store.raise_alert(new, now, None).await.unwrap() {
        Raised::Opened { id, .. } => id,
        other => panic!("not opened: {other:?}"),
    }
}

async fn sla_alerts_are_the_tenants_in_the_period_and_inside_the_scope(store: Store) {
    let acme = store.ensure_tenant("acme", "test", T0).await.unwrap();
    let other = store.ensure_tenant("other", "test", T0).await.unwrap();
    let _before = opened(
        &store,
        &alert(Some(&acme.id), "old", Severity::Critical),
        T0 - 1,
    )
    .await;
    let first = opened(&store, &alert(Some(&acme.id), "a", Severity::Critical), T0).await;
    let second = opened(
        &store,
        &alert(Some(&acme.id), "b", Severity::Warning),
        T0 + 10,
    )
    .await;
    let _later = opened(
        &store,
        &alert(Some(&acme.id), "late", Severity::Info),
        T0 + 100,
    )
    .await;
    let _theirs = opened(
        &store,
        &alert(Some(&other.id), "c", Severity::Critical),
        T0 + 5,
    )
    .await;
    let _msp = opened(&store, &alert(None, "d", Severity::Critical), T0 + 5).await;
    store
        .set_alert_state(
            &TenantScope::All,
            &first,
            AlertState::Acknowledged,
            "bob",
            T0 + 3,
        )
        .await
        .unwrap();
    store
        .set_alert_state(
            &TenantScope::All,
            &first,
            AlertState::Resolved,
            "bob",
            T0 + 7,
        )
        .await
        .unwrap();
    let rows = store
        .sla_alerts(&TenantScope::All, &acme.id, T0, T0 + 100, 100)
        .await
        .unwrap();
    let seen: Vec<(&str, Severity, Option<i64>, Option<i64>)> = rows
        .iter()
        .map(|r| (r.id.as_str(), r.severity, r.acknowledged_at, r.resolved_at))
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                first.as_str(),
                Severity::Critical,
                Some(T0 + 3),
                Some(T0 + 7)
            ),
            (second.as_str(), Severity::Warning, None, None),
        ]
    );
    assert_eq!(rows[0].opened_at, T0);
    let limited = store
        .sla_alerts(&TenantScope::All, &acme.id, T0, T0 + 100, 1)
        .await
        .unwrap();
    assert_eq!(limited.len(), 1);
    // An operator granted only `other` reads none of acme's rows or settings.
    store
        .set_sla_settings(&settings(&acme.id, 30, T0))
        .await
        .unwrap();
    let operator = store
        .create_operator(
            &NewOperator {
                username: "auditor".into(),
                password_hash: "$argon2id$unused".into(),
                totp_secret: "UNUSED".into(),
            },
            "operator",
            "test",
            T0,
        )
        .await
        .unwrap();
    store
        .grant_tenant(&operator.id, &other.id, "tenant_auditor")
        .await
        .unwrap();
    let scope = TenantScope::Operator(operator.id.clone());
    assert!(
        store
            .sla_alerts(&scope, &acme.id, 0, i64::MAX, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.sla_settings(&scope, &acme.id).await.unwrap(), None);
    assert_eq!(
        store
            .sla_alerts(&scope, &other.id, 0, i64::MAX, 100)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn device(store: &Store, tenant_id: &str, key: u8, hostname: &str) -> Device {
    support::enrolled_device(store, tenant_id, key, hostname, T0).await
}

fn offline(tenant_id: &str, device: &Device, silenced: Option<&str>) -> NewAlert {
    NewAlert {
        device_id: Some(device.id.clone()),
        silenced: silenced.map(str::to_owned),
        ..alert(
            Some(tenant_id),
            &format!("device.offline:{}", device.id),
            Severity::Warning,
        )
    }
}

async fn uptime_targets_and_the_outages_of_their_groups(store: Store) {
    let all = TenantScope::All;
    let acme = store.ensure_tenant("acme", "test", T0).await.unwrap();
    let other = store.ensure_tenant("other", "test", T0).await.unwrap();
    let hq = device(&store, &acme.id, 1, "hq-1").await;
    let branch = device(&store, &acme.id, 2, "branch-1").await;
    let loose = device(&store, &acme.id, 3, "no-group").await;
    let theirs = device(&store, &other.id, 4, "theirs").await;
    store
        .set_device_group(&all, &hq.id, Some("HQ"), "olivia", T0)
        .await
        .unwrap();
    store
        .set_device_group(&all, &branch.id, Some("Branch"), "olivia", T0)
        .await
        .unwrap();
    store
        .set_device_group(&all, &theirs.id, Some("HQ"), "olivia", T0)
        .await
        .unwrap();
    store
        .set_sla_settings(&settings(&acme.id, 30, T0))
        .await
        .unwrap();

    // Outages: the HQ device's (one resolved, one open), one silenced by a
    // maintenance window, and devices without a target or of another tenant.
    let down = opened(&store, &offline(&acme.id, &hq, None), T0 + 100).await;
    store
        .set_alert_state(&all, &down, AlertState::Resolved, "agent", T0 + 200)
        .await
        .unwrap();
    opened(&store, &offline(&acme.id, &hq, None), T0 + 500).await;
    opened(&store, &offline(&acme.id, &branch, None), T0 + 100).await;
    opened(&store, &offline(&acme.id, &loose, None), T0 + 100).await;
    opened(&store, &offline(&other.id, &theirs, None), T0 + 100).await;

    let (devices, outages) = store
        .sla_uptime_inputs(&all, &acme.id, T0, T0 + 1_000, 100)
        .await
        .unwrap();
    let names: Vec<(&str, &str)> = devices
        .iter()
        .map(|d| (d.hostname.as_str(), d.group_key.as_str()))
        .collect();
    assert_eq!(names, [("hq-1", "hq")]);
    assert_eq!(devices[0].enrolled_at, T0);
    assert_eq!(
        outages,
        [
            Outage {
                device_id: hq.id.clone(),
                from: T0 + 100,
                until: Some(T0 + 200),
            },
            Outage {
                device_id: hq.id.clone(),
                from: T0 + 500,
                until: None,
            },
        ]
    );
    // The period clips: an outage resolved before it began is not read.
    let (_, later) = store
        .sla_uptime_inputs(&all, &acme.id, T0 + 300, T0 + 1_000, 100)
        .await
        .unwrap();
    assert_eq!(later.len(), 1);

    // A maintenance window's outage is planned: not read.
    let planned = device(&store, &acme.id, 5, "hq-2").await;
    store
        .set_device_group(&all, &planned.id, Some("hq"), "olivia", T0)
        .await
        .unwrap();
    opened(
        &store,
        &offline(&acme.id, &planned, Some("maintenance window")),
        T0 + 100,
    )
    .await;
    let (devices, outages) = store
        .sla_uptime_inputs(&all, &acme.id, T0, T0 + 1_000, 100)
        .await
        .unwrap();
    assert_eq!(devices.len(), 2);
    assert_eq!(outages.len(), 2);

    // Outside the caller's scope: nothing.
    let viewer = store
        .create_operator(
            &NewOperator {
                username: "viewer".into(),
                password_hash: "$argon2id$unused".into(),
                totp_secret: "UNUSED".into(),
            },
            "operator",
            "test",
            T0,
        )
        .await
        .unwrap();
    store
        .grant_tenant(&viewer.id, &other.id, "technician")
        .await
        .unwrap();
    let scope = TenantScope::Operator(viewer.id.clone());
    let (devices, outages) = store
        .sla_uptime_inputs(&scope, &acme.id, T0, T0 + 1_000, 100)
        .await
        .unwrap();
    assert!(devices.is_empty() && outages.is_empty());
    let (theirs_seen, _) = store
        .sla_uptime_inputs(&scope, &other.id, T0, T0 + 1_000, 100)
        .await
        .unwrap();
    assert!(theirs_seen.is_empty(), "other has no uptime target");

    // A target out of range is refused and changes nothing.
    let mut bad = settings(&acme.id, 30, T0 + 1);
    bad.uptime[0].basis_points = 10_001;
    assert!(matches!(
        store.set_sla_settings(&bad).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        store
            .sla_settings(&all, &acme.id)
            .await
            .unwrap()
            .unwrap()
            .uptime,
        settings(&acme.id, 30, T0).uptime
    );
}
