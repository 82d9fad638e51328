//! Patch policies (migration 0043, RFD 0021): two schedules and the soak,
//! stored in one transaction; each body runs against SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)]

use bulwark_store::{
    AuditAction, NewAuditEvent, NewOperator, NewSchedule, Store, StoreError, TenantScope,
};

#[macro_use]
mod support;

both_backends! {
    a_policy_stores_both_rings_at_once_and_revokes_both,
    a_refused_policy_changes_nothing,
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
        class: "install-patches".into(),
        reason: "security updates".into(),
        script: Vec::new(),
        envelope: vec![0xa3, id],
        not_before: T0,
        not_after: T0 + 86_400_000,
    }
}

fn event(tenant: &str, action: AuditAction, target: &str) -> NewAuditEvent {
    NewAuditEvent::new(T0, "alice", action, target).in_tenant(Some(tenant))
}

async fn a_policy_stores_both_rings_at_once_and_revokes_both(store: Store) {
    let alice = operator(&store, "alice").await;
    let acme = tenant(&store, "acme").await;
    let other = tenant(&store, "other").await;
    let (canary, rest) = (schedule(1, &acme, &alice), schedule(2, &acme, &alice));
    let events = [
        event(&acme, AuditAction::ScheduleCreated, &canary.id),
        event(&acme, AuditAction::ScheduleCreated, &rest.id),
        event(&acme, AuditAction::PatchPolicyCreated, &canary.id),
    ];
    let policy = store
        .create_patch_policy("nightly", &canary, &rest, 3600, T0, &events)
        .await
        .unwrap();
    assert_eq!(policy.id, canary.id);
    assert_eq!(policy.rest_schedule_id, rest.id);
    assert_eq!(
        (policy.soak_secs, policy.created_by_username.as_str()),
        (3600, "alice")
    );
    assert_eq!(store.live_schedules(T0).await.unwrap().len(), 2);
    let found = store.patch_policy_of_ring_two(&rest.id).await.unwrap();
    assert_eq!(found.as_ref(), Some(&policy));
    assert_eq!(
        store.patch_policy_of_ring_two(&canary.id).await.unwrap(),
        None
    );
    let listed = store
        .list_patch_policies(&TenantScope::All, &acme, 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0], policy);
    // The same name again while it lives: refused.
    let again = store
        .create_patch_policy(
            "nightly",
            &schedule(3, &acme, &alice),
            &schedule(4, &acme, &alice),
            0,
            T0,
            &[],
        )
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    // Another tenant cannot revoke it.
    let foreign = store
        .revoke_patch_policy(&other, &policy.id, &alice, T0 + 1, &[])
        .await;
    assert!(matches!(foreign, Err(StoreError::NotFound)), "{foreign:?}");
    let revoked = store
        .revoke_patch_policy(
            &acme,
            &policy.id,
            &alice,
            T0 + 1,
            &[event(&acme, AuditAction::PatchPolicyRevoked, &policy.id)],
        )
        .await
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(T0 + 1));
    assert!(
        store.live_schedules(T0).await.unwrap().is_empty(),
        "both rings revoked"
    );
    assert_eq!(
        store.patch_policy_of_ring_two(&rest.id).await.unwrap(),
        None
    );
    let twice = store
        .revoke_patch_policy(&acme, &policy.id, &alice, T0 + 2, &[])
        .await;
    assert!(matches!(twice, Err(StoreError::Conflict(_))), "{twice:?}");
}

async fn a_refused_policy_changes_nothing(store: Store) {
    let alice = operator(&store, "alice").await;
    let acme = tenant(&store, "acme").await;
    let canary = schedule(1, &acme, &alice);
    store.create_schedule(&canary, T0, &[]).await.unwrap();
    // Ring 2 new, the canary's id taken: nothing of it stays.
    let taken = store
        .create_patch_policy(
            "nightly",
            &canary,
            &schedule(2, &acme, &alice),
            60,
            T0,
            &[event(&acme, AuditAction::PatchPolicyCreated, &canary.id)],
        )
        .await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
    assert_eq!(store.live_schedules(T0).await.unwrap().len(), 1);
    let listed = store
        .list_patch_policies(&TenantScope::All, &acme, 10)
        .await
        .unwrap();
    assert!(listed.is_empty());
    let same = store
        .create_patch_policy("x", &canary, &canary, 60, T0, &[])
        .await;
    assert!(matches!(same, Err(StoreError::Invalid(_))), "{same:?}");
}
