//! Alerts, channels and the outbox (RFD 0007): each body runs against
//! SQLite and PostgreSQL (a fresh schema per test), like `siem.rs`.

#![allow(clippy::unwrap_used)]

use bulwark_store::{
    AlertState, ChannelHours, ChannelKind, NewAlert, NewChannel, NewOperator, NotificationEvent,
    Raised, Severity, Store, StoreError, TenantScope,
};

#[macro_use]
mod support;

both_backends! {
    an_unresolved_alert_counts_repeats_and_a_resolved_one_reopens,
    notifications_go_to_matching_channels_only,
    alerts_stay_inside_the_callers_scope,
    the_outbox_retries_and_gives_up_on_the_record,
    concurrent_raises_open_one_alert,
    escalation_tells_late_channels_of_unacknowledged_alerts_only,
    pagerduty_incidents_follow_the_alert,
    channels_kept_for_hours_are_told_in_those_hours_only,
}

const T0: i64 = 1_700_000_000_000;

fn alert(tenant: Option<&str>, key: &str, severity: Severity) -> NewAlert {
    NewAlert {
        tenant_id: tenant.map(str::to_owned),
        device_id: Some("d1".into()),
        kind: "alert.log_refused".into(),
        severity,
        dedup_key: key.into(),
        summary: "an agent refused job j1".into(),
        detail: "x".repeat(10_000),
        log_id: Some(tenant.unwrap_or("msp").into()),
        log_idx: Some(3),
        silenced: None,
    }
}

fn email(tenant: Option<&str>, target: &str, min: Severity) -> NewChannel {
    NewChannel {
        tenant_id: tenant.map(str::to_owned),
        kind: ChannelKind::Email,
        target: target.into(),
        min_severity: min,
        created_by: "olivia".into(),
        escalate_after_ms: None,
        routing_key: None,
        hours: ChannelHours::Always,
    }
}

/// Queues every escalation due, as the notifier does for channels of any hours.
async fn escalate(store: &Store, now: i64) -> usize {
    let due = store.escalations_due(now).await.unwrap();
    store.queue_escalations(&due, now).await.unwrap()
}

async fn opened(store: &Store, new: &NewAlert, now: i64) -> (String, usize) {
    match store.raise_alert(new, now, None).await.unwrap() {
        Raised::Opened { id, queued } => (id, queued),
        other => panic!("not opened: {other:?}"),
    }
}

async fn an_unresolved_alert_counts_repeats_and_a_resolved_one_reopens(store: Store) {
    let acme = store.ensure_tenant("acme", "test", T0).await.unwrap();
    let new = alert(Some(&acme.id), "k1", Severity::Critical);
    let (id, _) = opened(&store, &new, T0).await;
    for i in 1..=3 {
        assert_eq!(
            store.raise_alert(&new, T0 + i, None).await.unwrap(),
            Raised::Repeated { id: id.clone() }
        );
    }
    let stored = store.alert(&TenantScope::All, &id).await.unwrap().unwrap();
    assert_eq!((stored.occurrences, stored.last_seen_at), (4, T0 + 3));
    assert_eq!(stored.tenant_name.as_deref(), Some("acme"));
    // Agent text is bounded.
    assert_eq!(stored.detail.len(), bulwark_store::MAX_ALERT_DETAIL);
    // Acknowledged still deduplicates; resolved does not.
    let acked = store
        .set_alert_state(
            &TenantScope::All,
            &id,
            AlertState::Acknowledged,
            "bob",
            T0 + 5,
        )
        .await
        .unwrap();
    assert_eq!(acked.acknowledged_by.as_deref(), Some("bob"));
    // Repeats move nothing the console is told of; an acknowledgement does.
    let pulse = store.alert_pulse(&TenantScope::All).await.unwrap();
    assert_eq!(
        (
            pulse.open,
            pulse.acknowledged,
            pulse.critical,
            pulse.changed_at
        ),
        (0, 1, 1, T0 + 5)
    );
    assert!(matches!(
        store.raise_alert(&new, T0 + 6, None).await.unwrap(),
        Raised::Repeated { .. }
    ));
    assert!(matches!(
        store
            .set_alert_state(
                &TenantScope::All,
                &id,
                AlertState::Acknowledged,
                "bob",
                T0 + 7
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .set_alert_state(&TenantScope::All, &id, AlertState::Resolved, "bob", T0 + 8)
        .await
        .unwrap();
    let (again, _) = opened(&store, &new, T0 + 9).await;
    assert_ne!(again, id);
    // Each handling is in the audit log.
    let actions: Vec<String> = store
        .list_audit(&TenantScope::All, Some(&acme.id), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(actions.contains(&"alerting.acknowledged".to_owned()));
    assert!(actions.contains(&"alerting.resolved".to_owned()));
}

async fn notifications_go_to_matching_channels_only(store: Store) {
    let acme = store.ensure_tenant("acme", "test", T0).await.unwrap();
    let other = store.ensure_tenant("other", "test", T0).await.unwrap();
    let critical_only = store
        .add_notification_channel(&email(Some(&acme.id), "a@x.test", Severity::Critical), T0)
        .await
        .unwrap();
    store
        .add_notification_channel(&email(Some(&acme.id), "b@x.test", Severity::Warning), T0)
        .await
        .unwrap();
    store
        .add_notification_channel(&email(Some(&other.id), "c@x.test", Severity::Info), T0)
        .await
        .unwrap();
    store
        .add_notification_channel(&email(None, "noc@msp.test", Severity::Info), T0)
        .await
        .unwrap();
    // A warning of acme: acme's warning channel and the MSP-wide one.
    let (_, queued) = opened(&store, &alert(Some(&acme.id), "w", Severity::Warning), T0).await;
    assert_eq!(queued, 2);
    // A critical one: all three of acme's and the MSP's.
    let (_, queued) = opened(&store, &alert(Some(&acme.id), "c", Severity::Critical), T0).await;
    assert_eq!(queued, 3);
    // A removed channel gets nothing more, and its pending ones are dropped.
    store
        .remove_notification_channel(&critical_only, "olivia", T0 + 1)
        .await
        .unwrap();
    let (_, queued) = opened(&store, &alert(Some(&acme.id), "c2", Severity::Critical), T0).await;
    assert_eq!(queued, 2);
    let due = store.due_notifications(T0 + 1, 100).await.unwrap();
    assert!(due.iter().all(|n| n.channel.id != critical_only.id));
    assert_eq!(due.len(), 2 + 2 + 2);
    // Listing: a tenant's own; the MSP-wide ones only for owners.
    let mine = store
        .notification_channels(&TenantScope::All, Some(&acme.id))
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    let msp = store
        .notification_channels(&TenantScope::All, None)
        .await
        .unwrap();
    assert_eq!(msp.len(), 1);
    assert!(
        store
            .notification_channels(&TenantScope::Operator("nobody".into()), None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        store
            .remove_notification_channel(&critical_only, "olivia", T0 + 2)
            .await,
        Err(StoreError::NotFound)
    ));
}

async fn alerts_stay_inside_the_callers_scope(store: Store) {
    let acme = store.ensure_tenant("acme", "test", T0).await.unwrap();
    let other = store.ensure_tenant("other", "test", T0).await.unwrap();
    let (mine, _) = opened(&store, &alert(Some(&acme.id), "m", Severity::Warning), T0).await;
    let (theirs, _) = opened(&store, &alert(Some(&other.id), "t", Severity::Warning), T0).await;
    let (msp, _) = opened(&store, &alert(None, "msp", Severity::Warning), T0).await;
    let operator = store
        .create_operator(
            &NewOperator {
                username: "tech".into(),
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
        .grant_tenant(&operator.id, &acme.id, "technician")
        .await
        .unwrap();
    let scope = TenantScope::Operator(operator.id.clone());
    let seen: Vec<String> = store
        .alerts(&scope, None, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(seen, vec![mine.clone()]);
    // The live stream's counts see the same alerts.
    let pulse = store.alert_pulse(&scope).await.unwrap();
    assert_eq!(
        (
            pulse.open,
            pulse.acknowledged,
            pulse.critical,
            pulse.changed_at
        ),
        (1, 0, 0, T0)
    );
    assert_eq!(store.alert_pulse(&TenantScope::All).await.unwrap().open, 3);
    assert!(store.alert(&scope, &theirs).await.unwrap().is_none());
    assert!(store.alert(&scope, &msp).await.unwrap().is_none());
    assert!(matches!(
        store
            .set_alert_state(&scope, &theirs, AlertState::Resolved, "tech", T0)
            .await,
        Err(StoreError::NotFound)
    ));
    let all = store
        .alerts(&TenantScope::All, None, Some(AlertState::Open), 100)
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    let only_other = store
        .alerts(&TenantScope::All, Some(&other.id), None, 100)
        .await
        .unwrap();
    assert_eq!(only_other.len(), 1);
}

async fn the_outbox_retries_and_gives_up_on_the_record(store: Store) {
    let acme = store.ensure_tenant("acme", "test", T0).await.unwrap();
    store
        .add_notification_channel(&email(Some(&acme.id), "a@x.test", Severity::Info), T0)
        .await
        .unwrap();
    let (id, _) = opened(&store, &alert(Some(&acme.id), "o", Severity::Warning), T0).await;
    let due = store.due_notifications(T0, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].attempts, due[0].alert.id.as_str()),
        (0, id.as_str())
    );
    // A failure with a retry: not due before it.
    store
        .notification_attempt_failed(&due[0], "relay down", Some(T0 + 10_000), T0)
        .await
        .unwrap();
    assert!(
        store
            .due_notifications(T0 + 9_999, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let due = store.due_notifications(T0 + 10_000, 10).await.unwrap();
    assert_eq!(due[0].attempts, 1);
    // Given up: recorded, and never due again.
    store
        .notification_attempt_failed(&due[0], "relay down", None, T0 + 10_000)
        .await
        .unwrap();
    assert!(
        store
            .due_notifications(i64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let sent = store.alert_notifications(&id).await.unwrap();
    assert_eq!(sent[0].2, "failed");
    assert_eq!(sent[0].3, 2);
    let actions: Vec<String> = store
        .list_audit(&TenantScope::All, Some(&acme.id), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(actions.contains(&"notification.failed".to_owned()));
    // A sent one is done.
    let (id2, _) = opened(&store, &alert(Some(&acme.id), "o2", Severity::Warning), T0).await;
    let due = store.due_notifications(T0, 10).await.unwrap();
    store.notification_sent(&due[0].id, T0 + 1).await.unwrap();
    assert!(
        store
            .due_notifications(i64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.alert_notifications(&id2).await.unwrap()[0].2, "sent");
}

async fn concurrent_raises_open_one_alert(store: Store) {
    let acme = store.ensure_tenant("acme", "test", T0).await.unwrap();
    let new = alert(Some(&acme.id), "race", Severity::Critical);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (store, new) = (store.clone(), new.clone());
        tasks.spawn(async move { store.raise_alert(&new, T0 + i, None).await.unwrap() });
    }
    let mut opened = 0;
    while let Some(raised) = tasks.join_next().await {
        if matches!(raised.unwrap(), Raised::Opened { .. }) {
            opened += 1;
        }
    }
    assert_eq!(opened, 1);
    let all = store
        .alerts(&TenantScope::All, None, None, 10)
        .await
        .unwrap();
    assert_eq!((all.len(), all[0].occurrences), (1, 8));
}

async fn escalation_tells_late_channels_of_unacknowledged_alerts_only(store: Store) {
    let acme = store.ensure_tenant("acme", "test", T0).await.unwrap();
    let other = store.ensure_tenant("other", "test", T0).await.unwrap();
    store
        .add_notification_channel(
            &email(Some(&acme.id), "first@x.test", Severity::Warning),
            T0,
        )
        .await
        .unwrap();
    let late = store
        .add_notification_channel(
            &NewChannel {
                escalate_after_ms: Some(60_000),
                ..email(Some(&acme.id), "boss@x.test", Severity::Critical)
            },
            T0,
        )
        .await
        .unwrap();
    assert_eq!(late.escalate_after_ms, Some(60_000));
    store
        .add_notification_channel(
            &NewChannel {
                escalate_after_ms: Some(1),
                ..email(Some(&other.id), "theirs@x.test", Severity::Info)
            },
            T0,
        )
        .await
        .unwrap();
    // At first only the first line is told.
    let (acked, queued) = opened(&store, &alert(Some(&acme.id), "a", Severity::Critical), T0).await;
    assert_eq!(queued, 1);
    let (open, _) = opened(&store, &alert(Some(&acme.id), "b", Severity::Critical), T0).await;
    let (warning, _) = opened(&store, &alert(Some(&acme.id), "c", Severity::Warning), T0).await;
    let silenced = NewAlert {
        silenced: Some("maintenance window".into()),
        ..alert(Some(&acme.id), "d", Severity::Critical)
    };
    let (quiet, queued) = opened(&store, &silenced, T0).await;
    assert_eq!(queued, 0, "a silenced alert is sent nowhere");
    let stored = store
        .alert(&TenantScope::All, &quiet)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.silenced.as_deref(), Some("maintenance window"));
    store
        .set_alert_state(
            &TenantScope::All,
            &acked,
            AlertState::Acknowledged,
            "bob",
            T0 + 1,
        )
        .await
        .unwrap();
    // Not yet due.
    assert_eq!(escalate(&store, T0 + 59_999).await, 0);
    // Due: only the open, critical, unsilenced one of acme; once.
    assert_eq!(escalate(&store, T0 + 60_000).await, 1);
    assert_eq!(escalate(&store, T0 + 120_000).await, 0);
    let due = store.due_notifications(T0 + 120_000, 100).await.unwrap();
    let escalated: Vec<_> = due.iter().filter(|n| n.channel.id == late.id).collect();
    assert_eq!(escalated.len(), 1);
    assert_eq!(escalated[0].alert.id, open);
    assert!(due.iter().all(|n| n.alert.id != quiet));
    assert!(due.iter().any(|n| n.alert.id == warning));
}

async fn pagerduty_incidents_follow_the_alert(store: Store) {
    let acme = store.ensure_tenant("acme", "test", T0).await.unwrap();
    let pd = NewChannel {
        kind: ChannelKind::PagerDuty,
        routing_key: Some("R0UT1NGKEY0000000000000000000000".into()),
        ..email(
            Some(&acme.id),
            "https://events.pagerduty.com/v2/enqueue",
            Severity::Warning,
        )
    };
    // A routing key belongs to PagerDuty channels, and each has one.
    for bad in [
        NewChannel {
            routing_key: None,
            ..pd.clone()
        },
        NewChannel {
            routing_key: Some(String::new()),
            ..pd.clone()
        },
        NewChannel {
            routing_key: Some("k".into()),
            ..email(Some(&acme.id), "a@x.test", Severity::Info)
        },
    ] {
        assert!(matches!(
            store.add_notification_channel(&bad, T0).await,
            Err(StoreError::Invalid(_))
        ));
    }
    let channel = store.add_notification_channel(&pd, T0).await.unwrap();
    store
        .add_notification_channel(&email(Some(&acme.id), "a@x.test", Severity::Info), T0)
        .await
        .unwrap();
    let listed = store
        .notification_channels(&TenantScope::All, Some(&acme.id))
        .await
        .unwrap();
    let stored = listed.iter().find(|c| c.id == channel.id).unwrap();
    assert_eq!(stored.kind, ChannelKind::PagerDuty);
    assert_eq!(stored.routing_key, pd.routing_key);

    let (id, queued) = opened(&store, &alert(Some(&acme.id), "p", Severity::Critical), T0).await;
    assert_eq!(queued, 2);
    // Resolved while the trigger is still being retried: the resolve
    // waits, so PagerDuty never hears of a close before its open.
    store
        .set_alert_state(&TenantScope::All, &id, AlertState::Resolved, "bob", T0 + 1)
        .await
        .unwrap();
    let due = store.due_notifications(T0 + 1, 10).await.unwrap();
    let events: Vec<_> = due
        .iter()
        .filter(|n| n.channel.id == channel.id)
        .map(|n| n.event)
        .collect();
    assert_eq!(events, [NotificationEvent::Trigger]);
    let trigger = due.iter().find(|n| n.channel.id == channel.id).unwrap();
    store.notification_sent(&trigger.id, T0 + 2).await.unwrap();
    let due = store.due_notifications(T0 + 2, 10).await.unwrap();
    let resolve: Vec<_> = due.iter().filter(|n| n.channel.id == channel.id).collect();
    assert_eq!(resolve.len(), 1);
    assert_eq!(resolve[0].event, NotificationEvent::Resolve);
    assert_eq!(resolve[0].alert.id, id);
    // The e-mail channel's resolve waits for its own trigger, then follows.
    let mail: Vec<_> = due
        .iter()
        .filter(|n| n.channel.kind == ChannelKind::Email && n.alert.id == id)
        .collect();
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].event, NotificationEvent::Trigger);
    store.notification_sent(&mail[0].id, T0 + 2).await.unwrap();
    let due = store.due_notifications(T0 + 2, 10).await.unwrap();
    assert!(due.iter().any(|n| n.channel.kind == ChannelKind::Email
        && n.alert.id == id
        && n.event == NotificationEvent::Resolve));
    let kinds: Vec<String> = store
        .alert_notifications(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.0)
        .collect();
    assert!(kinds.contains(&"pagerduty resolve".to_owned()), "{kinds:?}");

    // Acknowledged then resolved: both follow, once each; a trigger that
    // was given up on opened no incident, so nothing follows it.
    let (id2, _) = opened(&store, &alert(Some(&acme.id), "q", Severity::Critical), T0).await;
    let (id3, _) = opened(&store, &alert(Some(&acme.id), "r", Severity::Critical), T0).await;
    for n in store.due_notifications(T0 + 3, 100).await.unwrap() {
        if n.alert.id == id2 {
            store.notification_sent(&n.id, T0 + 3).await.unwrap();
        } else if n.alert.id == id3 {
            store
                .notification_attempt_failed(&n, "down", None, T0 + 3)
                .await
                .unwrap();
        }
    }
    for (alert_id, to) in [
        (&id2, AlertState::Acknowledged),
        (&id2, AlertState::Resolved),
        (&id3, AlertState::Resolved),
    ] {
        store
            .set_alert_state(&TenantScope::All, alert_id, to, "bob", T0 + 4)
            .await
            .unwrap();
    }
    // Each channel: the acknowledge first, the resolve once it is sent.
    let follow = |due: &[bulwark_store::DueNotification]| -> Vec<(String, NotificationEvent)> {
        due.iter()
            .filter(|n| n.alert.id == id2 || n.alert.id == id3)
            .map(|n| (n.channel.id.clone(), n.event))
            .collect()
    };
    let due = store.due_notifications(T0 + 4, 100).await.unwrap();
    let first = follow(&due);
    assert_eq!(first.len(), 2, "{first:?}");
    assert!(
        first
            .iter()
            .all(|(_, e)| *e == NotificationEvent::Acknowledge)
    );
    for n in due.iter().filter(|n| n.alert.id == id2) {
        store.notification_sent(&n.id, T0 + 5).await.unwrap();
    }
    let then = follow(&store.due_notifications(T0 + 5, 100).await.unwrap());
    assert_eq!(then.len(), 2, "{then:?}");
    assert!(then.iter().all(|(_, e)| *e == NotificationEvent::Resolve));
}

async fn channels_kept_for_hours_are_told_in_those_hours_only(store: Store) {
    let acme = store.ensure_tenant("acme", "test", T0).await.unwrap();
    let mut ids = Vec::new();
    for (target, hours) in [
        ("always@x.test", ChannelHours::Always),
        ("day@x.test", ChannelHours::Business),
        ("night@x.test", ChannelHours::After),
    ] {
        let channel = NewChannel {
            hours,
            ..email(Some(&acme.id), target, Severity::Info)
        };
        let added = store.add_notification_channel(&channel, T0).await.unwrap();
        assert_eq!(added.hours, hours);
        ids.push(added.id);
    }
    let listed = store
        .notification_channels(&TenantScope::All, Some(&acme.id))
        .await
        .unwrap();
    let mut stored: Vec<(&str, ChannelHours)> = listed
        .iter()
        .map(|c| (c.target.as_str(), c.hours))
        .collect();
    stored.sort_by_key(|(target, _)| *target);
    assert_eq!(
        stored,
        [
            ("always@x.test", ChannelHours::Always),
            ("day@x.test", ChannelHours::Business),
            ("night@x.test", ChannelHours::After),
        ]
    );
    let told = async |key: &str, business_hours: Option<bool>| {
        let Raised::Opened { id, .. } = store
            .raise_alert(
                &alert(Some(&acme.id), key, Severity::Warning),
                T0,
                business_hours,
            )
            .await
            .unwrap()
        else {
            panic!("not opened")
        };
        let mut targets: Vec<String> = store
            .alert_notifications(&id)
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.1)
            .collect();
        targets.sort();
        targets
    };
    assert_eq!(
        told("day", Some(true)).await,
        ["always@x.test", "day@x.test"]
    );
    assert_eq!(
        told("night", Some(false)).await,
        ["always@x.test", "night@x.test"]
    );
    // Hours unknown: everyone, rather than no one.
    assert_eq!(
        told("unknown", None).await,
        ["always@x.test", "day@x.test", "night@x.test"]
    );
    // Escalations carry the channel's hours for the notifier to decide.
    store
        .add_notification_channel(
            &NewChannel {
                escalate_after_ms: Some(1),
                hours: ChannelHours::After,
                ..email(Some(&acme.id), "oncall@x.test", Severity::Info)
            },
            T0,
        )
        .await
        .unwrap();
    let due = store.escalations_due(T0 + 1).await.unwrap();
    assert_eq!(due.len(), 3, "{due:?}");
    assert!(
        due.iter()
            .all(|e| e.hours == ChannelHours::After && e.tenant_id.as_deref() == Some(&acme.id))
    );
    assert_eq!(store.queue_escalations(&due[..1], T0 + 1).await.unwrap(), 1);
    assert_eq!(store.escalations_due(T0 + 1).await.unwrap().len(), 2);
    assert_eq!(store.queue_escalations(&due[..1], T0 + 1).await.unwrap(), 0);
}
