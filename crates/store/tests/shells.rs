//! Remote shells (migration 0033, RFD 0015): grants, sessions and
//! recordings. Each body runs against SQLite and PostgreSQL (a fresh schema
//! per test).

#![allow(clippy::unwrap_used)]

use bulwark_store::{
    AuditAction, Device, NewAuditEvent, NewDevice, NewOperator, NewShellGrant, ShellEnd, Store,
    StoreError, TenantScope,
};

#[macro_use]
mod support;

both_backends! {
    a_grant_is_stored_approved_revoked_and_logged,
    a_session_closes_once_from_its_own_device_and_its_recording_is_bounded,
    grants_and_sessions_stay_in_their_tenant,
}

const T0: i64 = 1_700_000_000_000;

async fn device(store: &Store, tenant_id: &str, key: u8) -> Device {
    store
        .create_enrollment_token([key; 32], tenant_id, None, T0, T0 + 60_000, &[])
        .await
        .unwrap();
    store
        .enroll_device(
            [key; 32],
            NewDevice {
                id: uuid::Uuid::new_v4().to_string(),
                public_key: [key; 32],
                hostname: format!("host-{key}"),
                agent_version: "0.1.0".to_owned(),
            },
            T0,
        )
        .await
        .unwrap()
}

async fn operator(store: &Store, name: &str) -> String {
    store
        .create_operator(
            &NewOperator {
                username: name.into(),
                password_hash: "$argon2id$unused".into(),
                totp_secret: "UNUSED".into(),
            },
            "operator",
            "test",
            T0,
        )
        .await
        .unwrap()
        .id
}

fn grant(id: &str, tenant_id: &str, device_id: &str, by: &str) -> NewShellGrant {
    NewShellGrant {
        id: id.into(),
        tenant_id: tenant_id.into(),
        device_id: device_id.into(),
        requested_by: by.into(),
        grantee_key: "ab".repeat(32),
        account: "unprivileged".into(),
        reason: "ticket <4711>".into(),
        not_before: 1_700_000_000,
        expires_at: 1_700_001_800,
        envelope: vec![1, 2, 3],
    }
}

fn event(tenant_id: &str, action: AuditAction, target: &str) -> NewAuditEvent {
    NewAuditEvent::new(T0, "alice", action, target).in_tenant(Some(tenant_id))
}

async fn tenant_actions(store: &Store, tenant_id: &str) -> Vec<String> {
    store
        .log_entries(tenant_id, 0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| {
            bulwark_protocol::audit_leaf::AuditLeaf::decode(&e.leaf)
                .unwrap()
                .action
                .to_string()
        })
        .filter(|a| a.starts_with("shell."))
        .collect()
}

async fn a_grant_is_stored_approved_revoked_and_logged(store: Store) {
    let acme = store
        .create_tenant("acme", T0, |_| Vec::new())
        .await
        .unwrap();
    let d = device(&store, &acme.id, 1).await;
    let alice = operator(&store, "alice").await;
    let g = grant("g1", &acme.id, &d.id, &alice);
    store
        .create_shell_grant(
            &g,
            T0,
            &[event(&acme.id, AuditAction::ShellGrantRequested, "g1")],
        )
        .await
        .unwrap();
    // The same grant id again: refused, nothing logged.
    assert!(matches!(
        store
            .create_shell_grant(
                &g,
                T0,
                &[event(&acme.id, AuditAction::ShellGrantRequested, "g1")]
            )
            .await,
        Err(StoreError::Conflict("grant exists"))
    ));
    store
        .update_shell_grant_envelope(
            "g1",
            &[4, 5, 6],
            &[event(&acme.id, AuditAction::ShellGrantApproved, "g1")],
        )
        .await
        .unwrap();
    let stored = store
        .shell_grant(&TenantScope::All, "g1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.grant.envelope, vec![4, 5, 6]);
    assert_eq!(stored.grant.reason, "ticket <4711>");
    assert_eq!(stored.revoked_at, None);

    store
        .revoke_shell_grant(
            "g1",
            &alice,
            T0 + 5,
            &[event(&acme.id, AuditAction::ShellGrantRevoked, "g1")],
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .revoke_shell_grant(
                "g1",
                &alice,
                T0 + 6,
                &[event(&acme.id, AuditAction::ShellGrantRevoked, "g1")]
            )
            .await,
        Err(StoreError::Conflict("grant already revoked"))
    ));
    // A revoked grant gathers no more approvals.
    assert!(matches!(
        store
            .update_shell_grant_envelope(
                "g1",
                &[7],
                &[event(&acme.id, AuditAction::ShellGrantApproved, "g1")]
            )
            .await,
        Err(StoreError::Conflict("grant revoked"))
    ));
    assert!(matches!(
        store.revoke_shell_grant("nope", &alice, T0, &[]).await,
        Err(StoreError::NotFound)
    ));
    let stored = store
        .shell_grant(&TenantScope::All, "g1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.revoked_at, stored.revoked_by.as_deref()),
        (Some(T0 + 5), Some(alice.as_str()))
    );
    assert_eq!(stored.grant.envelope, vec![4, 5, 6]);
    assert_eq!(
        tenant_actions(&store, &acme.id).await,
        [
            "shell.grant_requested",
            "shell.grant_approved",
            "shell.grant_revoked"
        ]
    );
}

async fn a_session_closes_once_from_its_own_device_and_its_recording_is_bounded(store: Store) {
    let acme = store
        .create_tenant("acme", T0, |_| Vec::new())
        .await
        .unwrap();
    let d = device(&store, &acme.id, 1).await;
    let other = device(&store, &acme.id, 2).await;
    let alice = operator(&store, "alice").await;
    store
        .create_shell_grant(&grant("g1", &acme.id, &d.id, &alice), T0, &[])
        .await
        .unwrap();
    store
        .open_shell_session(
            "s1",
            "g1",
            &alice,
            T0 + 1,
            &[event(&acme.id, AuditAction::ShellSessionOpened, "s1")],
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .open_shell_session("s1", "g1", &alice, T0 + 2, &[])
            .await,
        Err(StoreError::Conflict("session exists"))
    ));
    assert!(matches!(
        store
            .open_shell_session("s2", "nope", &alice, T0 + 2, &[])
            .await,
        Err(StoreError::NotFound)
    ));
    // A piece before the end is reported: refused.
    assert!(
        !store
            .append_shell_recording("s1", &d.id, 0, b"early", 1024)
            .await
            .unwrap()
    );

    let end = ShellEnd {
        refusal: None,
        reason: "the shell exited".into(),
        recording_sha256: Some("cd".repeat(32)),
        recording_len: Some(10),
        truncated: false,
    };
    let logged =
        [event(&acme.id, AuditAction::ShellSession, "s1").with_detail("sha256 cdcd… 10 bytes")];
    // Another device's agent cannot close it.
    assert!(
        !store
            .close_shell_session("s1", &other.id, &end, T0 + 3, &logged)
            .await
            .unwrap()
    );
    assert!(
        store
            .close_shell_session("s1", &d.id, &end, T0 + 3, &logged)
            .await
            .unwrap()
    );
    // Once only: a second report changes nothing and logs nothing.
    let lie = ShellEnd {
        recording_sha256: Some("00".repeat(32)),
        ..end.clone()
    };
    assert!(
        !store
            .close_shell_session("s1", &d.id, &lie, T0 + 4, &logged)
            .await
            .unwrap()
    );

    // Pieces: in order, from the device, within the reported length and the cap.
    assert!(
        !store
            .append_shell_recording("s1", &other.id, 0, b"hello", 1024)
            .await
            .unwrap()
    );
    assert!(
        !store
            .append_shell_recording("s1", &d.id, 3, b"hello", 1024)
            .await
            .unwrap()
    );
    assert!(
        store
            .append_shell_recording("s1", &d.id, 0, b"hello", 1024)
            .await
            .unwrap()
    );
    assert!(
        !store
            .append_shell_recording("s1", &d.id, 0, b"hello", 1024)
            .await
            .unwrap(),
        "resent"
    );
    assert!(
        !store
            .append_shell_recording("s1", &d.id, 5, b"world!", 1024)
            .await
            .unwrap(),
        "past the reported length"
    );
    assert!(
        !store
            .append_shell_recording("s1", &d.id, 5, b"world", 8)
            .await
            .unwrap(),
        "past the cap"
    );
    assert!(
        store
            .append_shell_recording("s1", &d.id, 5, b"world", 1024)
            .await
            .unwrap()
    );

    let sessions = store
        .shell_sessions(&TenantScope::All, &d.id)
        .await
        .unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].end, end);
    assert_eq!(
        (sessions[0].stored_len, sessions[0].closed_at),
        (10, Some(T0 + 3))
    );
    let (session, bytes) = store
        .shell_recording(&TenantScope::All, "s1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.id, "s1");
    assert_eq!(bytes, b"helloworld");
    assert_eq!(
        tenant_actions(&store, &acme.id).await,
        ["shell.session_opened", "shell.session"]
    );
}

async fn grants_and_sessions_stay_in_their_tenant(store: Store) {
    let acme = store
        .create_tenant("acme", T0, |_| Vec::new())
        .await
        .unwrap();
    let globex = store
        .create_tenant("globex", T0, |_| Vec::new())
        .await
        .unwrap();
    let d = device(&store, &acme.id, 1).await;
    let alice = operator(&store, "alice").await;
    let mallory = operator(&store, "mallory").await;
    store
        .set_operator_grants(
            &mallory,
            &[(globex.id.clone(), "technician".into())],
            "test",
            T0,
        )
        .await
        .unwrap();
    store
        .create_shell_grant(&grant("g1", &acme.id, &d.id, &alice), T0, &[])
        .await
        .unwrap();
    store
        .open_shell_session("s1", "g1", &alice, T0, &[])
        .await
        .unwrap();
    let foreign = TenantScope::Operator(mallory.clone());
    assert!(store.shell_grant(&foreign, "g1").await.unwrap().is_none());
    assert!(
        store
            .shell_grants(&foreign, &acme.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .shell_sessions(&foreign, &d.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .shell_recording(&foreign, "s1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.shell_session(&foreign, "s1").await.unwrap().is_none());
    assert_eq!(
        store
            .shell_session(&TenantScope::All, "s1")
            .await
            .unwrap()
            .map(|s| s.grant_id),
        Some("g1".to_owned())
    );
    assert_eq!(
        store
            .shell_grants(&TenantScope::All, &acme.id)
            .await
            .unwrap()
            .len(),
        1
    );
}
