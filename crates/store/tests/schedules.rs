//! Scheduled jobs (migration 0037, RFD 0019): each body runs against
//! SQLite and PostgreSQL (a fresh schema per test).

#![allow(clippy::unwrap_used)]

use bulwark_store::{
    AuditAction, Claim, NewAuditEvent, NewOperator, NewSchedule, Store, StoreError, TenantScope,
};

#[macro_use]
mod support;

both_backends! {
    a_schedule_is_stored_listed_and_logged_in_its_tenant,
    an_occurrence_is_claimed_once_whoever_claims_it,
    a_revoked_schedule_is_no_longer_claimed_or_live,
    a_refused_write_changes_nothing,
    other_tenants_and_operators_without_a_grant_see_nothing,
    a_claimed_occurrence_is_a_job_delivered_as_a_scheduled_run,
}

const T0: i64 = 1_800_000_000_000;

async fn operator(store: &Store, name: &str) -> String {
    store
        .create_operator(
            &NewOperator {
                username: name.into(),
                password_hash: "$argon2id$unused".into(),
                totp_secret: "UNUSED".into(),
            },
            "technician",
            "test",
            T0,
        )
        .await
        .unwrap()
        .id
}

async fn tenant(store: &Store, name: &str) -> String {
    store
        .create_tenant(name, T0, |_| Vec::new())
        .await
        .unwrap()
        .id
}

fn schedule(id: u8, tenant: &str, by: &str) -> NewSchedule {
    NewSchedule {
        id: format!("{id:032x}"),
        tenant_id: tenant.into(),
        created_by: by.into(),
        class: "run-script".into(),
        reason: "nightly <b>cleanup</b>".into(),
        script: b"#!/bin/sh\nuptime\n".to_vec(),
        envelope: vec![0xa3, id],
        not_before: T0,
        not_after: T0 + 86_400_000,
    }
}

fn event(tenant: &str, action: AuditAction, target: &str) -> NewAuditEvent {
    NewAuditEvent::new(T0, "alice", action, target).in_tenant(Some(tenant))
}

async fn tenant_actions(store: &Store, tenant: &str) -> Vec<String> {
    let entries = store.log_entries(tenant, 0, 1000).await.unwrap();
    entries
        .iter()
        .map(|e| {
            bulwark_protocol::audit_leaf::AuditLeaf::decode(&e.leaf)
                .unwrap()
                .action
                .to_string()
        })
        .filter(|a| a.starts_with("schedule."))
        .collect()
}

async fn a_schedule_is_stored_listed_and_logged_in_its_tenant(store: Store) {
    let alice = operator(&store, "alice").await;
    let acme = tenant(&store, "acme").await;
    let new = schedule(1, &acme, &alice);
    let stored = store
        .create_schedule(
            &new,
            T0,
            &[event(&acme, AuditAction::ScheduleCreated, &new.id)],
        )
        .await
        .unwrap();
    assert_eq!(stored.envelope, new.envelope);
    assert_eq!(stored.script, new.script);
    assert_eq!(stored.reason, new.reason);
    assert_eq!(stored.created_by_username, "alice");
    assert_eq!(stored.revoked_at, None);
    let later = schedule(2, &acme, &alice);
    store.create_schedule(&later, T0 + 1, &[]).await.unwrap();
    let listed = store
        .list_schedules(&TenantScope::All, &acme, 10)
        .await
        .unwrap();
    let ids: Vec<&str> = listed.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, [later.id.as_str(), new.id.as_str()], "newest first");
    let found = store.schedule(&TenantScope::All, &new.id).await.unwrap();
    assert_eq!(found, Some(stored));
    assert_eq!(tenant_actions(&store, &acme).await, ["schedule.created"]);
    // Live until its end, by the server's clock.
    assert_eq!(store.live_schedules(T0).await.unwrap().len(), 2);
    assert!(
        store
            .live_schedules(T0 + 86_400_000)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn an_occurrence_is_claimed_once_whoever_claims_it(store: Store) {
    let alice = operator(&store, "alice").await;
    let acme = tenant(&store, "acme").await;
    let new = schedule(1, &acme, &alice);
    store.create_schedule(&new, T0, &[]).await.unwrap();
    let occurrence = T0 / 1000 + 300;
    let claim = |node: &'static str, job: &'static str| {
        let store = store.clone();
        let id = new.id.clone();
        let acme = acme.clone();
        async move {
            store
                .claim_occurrence(
                    &Claim {
                        schedule_id: &id,
                        occurrence,
                        job_id: job,
                        script_sha256: &[0; 32],
                        targets: &[],
                        run_window_ms: 600_000,
                    },
                    node,
                    T0,
                    &[event(&acme, AuditAction::ScheduleOccurrenceDelivered, &id)],
                )
                .await
                .unwrap()
        }
    };
    // Two nodes at once: exactly one wins, and one event is logged.
    let (a, b) = tokio::join!(
        tokio::spawn(claim("node-a", "00000000000000000000000000000aaa")),
        tokio::spawn(claim("node-b", "00000000000000000000000000000aaa"))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a ^ b, "one claim wins: {a} {b}");
    assert!(
        !claim("node-a", "00000000000000000000000000000aaa").await,
        "a replayed tick claims nothing"
    );
    assert!(
        !claim("node-b", "00000000000000000000000000000bbb").await,
        "one claim per occurrence"
    );
    let runs = store
        .schedule_runs(&TenantScope::All, &new.id, 10)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].occurrence, occurrence);
    assert_eq!(
        tenant_actions(&store, &acme).await,
        ["schedule.occurrence_delivered"]
    );
    // The next occurrence is a claim of its own.
    let next = store
        .claim_occurrence(
            &Claim {
                schedule_id: &new.id,
                occurrence: occurrence + 300,
                job_id: "00000000000000000000000000000ccc",
                script_sha256: &[0; 32],
                targets: &[],
                run_window_ms: 600_000,
            },
            "node-b",
            T0,
            &[],
        )
        .await
        .unwrap();
    assert!(next);
    let runs = store
        .schedule_runs(&TenantScope::All, &new.id, 10)
        .await
        .unwrap();
    let occurrences: Vec<i64> = runs.iter().map(|r| r.occurrence).collect();
    assert_eq!(occurrences, [occurrence + 300, occurrence], "newest first");
}

async fn a_revoked_schedule_is_no_longer_claimed_or_live(store: Store) {
    let alice = operator(&store, "alice").await;
    let acme = tenant(&store, "acme").await;
    let new = schedule(1, &acme, &alice);
    store.create_schedule(&new, T0, &[]).await.unwrap();
    let revoked = store
        .revoke_schedule(
            &acme,
            &new.id,
            &alice,
            T0 + 5,
            &[event(&acme, AuditAction::ScheduleRevoked, &new.id)],
        )
        .await
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(T0 + 5));
    assert_eq!(revoked.revoked_by.as_deref(), Some(alice.as_str()));
    assert!(store.live_schedules(T0).await.unwrap().is_empty());
    let claimed = store
        .claim_occurrence(
            &Claim {
                schedule_id: &new.id,
                occurrence: T0 / 1000 + 60,
                job_id: "00000000000000000000000000000aaa",
                script_sha256: &[0; 32],
                targets: &[],
                run_window_ms: 600_000,
            },
            "node-a",
            T0,
            &[],
        )
        .await
        .unwrap();
    assert!(!claimed);
    assert!(matches!(
        store
            .revoke_schedule(&acme, &new.id, &alice, T0 + 6, &[])
            .await,
        Err(StoreError::Conflict("schedule already revoked"))
    ));
    assert_eq!(tenant_actions(&store, &acme).await, ["schedule.revoked"]);
}

async fn a_refused_write_changes_nothing(store: Store) {
    let alice = operator(&store, "alice").await;
    let acme = tenant(&store, "acme").await;
    let new = schedule(1, &acme, &alice);
    store.create_schedule(&new, T0, &[]).await.unwrap();
    // The same id again, even for another tenant.
    let other = tenant(&store, "other").await;
    assert!(matches!(
        store
            .create_schedule(
                &schedule(1, &other, &alice),
                T0,
                &[event(&other, AuditAction::ScheduleCreated, "x")]
            )
            .await,
        Err(StoreError::Conflict("schedule exists"))
    ));
    assert!(tenant_actions(&store, &other).await.is_empty());
    // An unknown tenant or operator.
    assert!(
        store
            .create_schedule(&schedule(2, "no-such-tenant", &alice), T0, &[])
            .await
            .is_err()
    );
    assert!(
        store
            .create_schedule(&schedule(3, &acme, "no-such-operator"), T0, &[])
            .await
            .is_err()
    );
    // A life that ends before it starts.
    let backwards = NewSchedule {
        not_after: T0,
        ..schedule(4, &acme, &alice)
    };
    assert!(matches!(
        store.create_schedule(&backwards, T0, &[]).await,
        Err(StoreError::Invalid(_))
    ));
    // Revoking another tenant's schedule.
    assert!(matches!(
        store
            .revoke_schedule(&other, &new.id, &alice, T0, &[])
            .await,
        Err(StoreError::NotFound)
    ));
    let listed = store
        .list_schedules(&TenantScope::All, &acme, 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].revoked_at, None);
}

async fn other_tenants_and_operators_without_a_grant_see_nothing(store: Store) {
    let alice = operator(&store, "alice").await;
    let acme = tenant(&store, "acme").await;
    let other = tenant(&store, "other").await;
    let new = schedule(1, &acme, &alice);
    store.create_schedule(&new, T0, &[]).await.unwrap();
    store
        .claim_occurrence(
            &Claim {
                schedule_id: &new.id,
                occurrence: 60,
                job_id: "00000000000000000000000000000aaa",
                script_sha256: &[0; 32],
                targets: &[],
                run_window_ms: 600_000,
            },
            "node-a",
            T0,
            &[],
        )
        .await
        .unwrap();
    let stranger = TenantScope::Operator(operator(&store, "mallory").await);
    assert_eq!(store.schedule(&stranger, &new.id).await.unwrap(), None);
    assert!(
        store
            .list_schedules(&stranger, &acme, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .schedule_runs(&stranger, &new.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_schedules(&TenantScope::All, &other, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_claimed_occurrence_is_a_job_delivered_as_a_scheduled_run(store: Store) {
    let alice = operator(&store, "alice").await;
    let acme = tenant(&store, "acme").await;
    let other = tenant(&store, "other").await;
    let ws = support::enrolled_device(&store, &acme, 1, "ws", T0).await;
    let foreign = support::enrolled_device(&store, &other, 2, "foreign", T0).await;
    let new = schedule(1, &acme, &alice);
    store
        .create_schedule(
            &new,
            T0,
            &[event(&acme, AuditAction::ScheduleCreated, &new.id)],
        )
        .await
        .unwrap();
    let occurrence = T0 / 1000 + 60;
    let job_id = "000000000000000000000000000000aa";
    let targets = [ws.id.clone(), foreign.id.clone()];
    let claim = Claim {
        schedule_id: &new.id,
        occurrence,
        job_id,
        script_sha256: &[7; 32],
        targets: &targets,
        run_window_ms: 600_000,
    };
    assert!(
        store
            .claim_occurrence(&claim, "node-a", T0, &[])
            .await
            .unwrap()
    );
    // The run is a job of the tenant, approved, for the tenant's device only.
    let job = store.job(&TenantScope::All, job_id).await.unwrap().unwrap();
    assert_eq!(job.tenant_id, acme);
    assert_eq!(job.state.as_str(), "approved");
    assert_eq!(job.envelope, new.envelope);
    let on = store.job_targets(&TenantScope::All, job_id).await.unwrap();
    assert_eq!(on.len(), 1);
    assert_eq!(on[0].device_id, ws.id);
    // Delivered as a scheduled run with its schedule's log entry, never as a job.
    let at = occurrence * 1000 + 1000;
    let runs = store.scheduled_runs_for_device(&ws.id, at).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].job_id, job_id);
    assert_eq!(runs[0].occurrence, occurrence);
    assert_eq!(runs[0].script, new.script);
    assert!(runs[0].log_idx.is_some());
    assert!(
        store
            .deliverable_jobs_for_device(&ws.id, at)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .scheduled_runs_for_device(&foreign.id, at)
            .await
            .unwrap()
            .is_empty()
    );
    // Past its run window, or once revoked, it is delivered no more.
    assert!(
        store
            .scheduled_runs_for_device(&ws.id, occurrence * 1000 + 600_000)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .revoke_schedule(&acme, &new.id, &alice, T0, &[])
        .await
        .unwrap();
    assert!(
        store
            .scheduled_runs_for_device(&ws.id, at)
            .await
            .unwrap()
            .is_empty()
    );
}
