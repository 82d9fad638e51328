//! Passkeys, the passkey a session was signed in with, and server settings:
//! each body below runs against SQLite (a temporary file) and PostgreSQL (a
//! fresh schema per test), like `suite.rs`. The PostgreSQL half fails, never
//! skips, when the server is unreachable.

#![allow(clippy::unwrap_used)]

use bulwark_store::AuditAction;
use bulwark_store::{
    LastPasskey, NewAuditEvent, NewOperator, NewPasskey, NewSession, Operator, SessionKind, Store,
    StoreError, TenantScope,
};

#[macro_use]
mod support;

both_backends! {
    passkeys_added_listed_and_renamed,
    passkey_counter_moves_by_compare_and_set,
    last_passkey_kept_against_concurrent_removals,
    sessions_remember_their_passkey,
    settings_are_upserted_and_audited,
    the_first_shared_secret_stored_is_the_one_every_node_gets,
}

const T0: i64 = 1_700_000_000_000;
const MINUTE: i64 = 60_000;

async fn operator(store: &Store, username: &str) -> Operator {
    store
        .create_operator(
            &NewOperator {
                username: username.to_owned(),
                password_hash: format!("$argon2id$hash-of-{username}"),
                totp_secret: format!("SECRET{username}"),
            },
            "operator",
            "test",
            T0,
        )
        .await
        .unwrap()
}

fn new_passkey(operator_id: &str, n: u8, name: &str) -> NewPasskey {
    NewPasskey {
        operator_id: operator_id.to_owned(),
        name: name.to_owned(),
        credential_id: vec![n; 16 + usize::from(n)],
        credential: vec![0xa2, n],
        sign_count: u32::from(n),
        backup_eligible: n.is_multiple_of(2),
        created_at: T0 + i64::from(n) * MINUTE,
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

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::Conflict(_))),
        "expected a conflict, got {result:?}"
    );
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::NotFound)),
        "expected not found, got {result:?}"
    );
}

async fn passkeys_added_listed_and_renamed(store: Store) {
    let dave = operator(&store, "dave").await;
    let erin = operator(&store, "erin").await;
    assert!(store.passkeys_of(&dave.id).await.unwrap().is_empty());

    let laptop = store
        .add_passkey(&new_passkey(&dave.id, 1, "laptop"), "dave")
        .await
        .unwrap();
    let key = store
        .add_passkey(&new_passkey(&dave.id, 2, "yubikey"), "dave")
        .await
        .unwrap();
    assert_eq!(laptop.sign_count, 1);
    assert!(!laptop.backup_eligible && key.backup_eligible);
    assert_eq!(laptop.last_used_at, None);
    // Another operator may use the same name; nobody may reuse a name or a credential.
    store
        .add_passkey(&new_passkey(&erin.id, 3, "laptop"), "erin")
        .await
        .unwrap();
    assert_conflict(
        store
            .add_passkey(&new_passkey(&dave.id, 4, "laptop"), "dave")
            .await,
    );
    let mut stolen = new_passkey(&erin.id, 5, "dave's");
    stolen.credential_id = laptop.credential_id.clone();
    assert_conflict(store.add_passkey(&stolen, "erin").await);
    assert_not_found(
        store
            .add_passkey(&new_passkey("no-such-operator", 6, "x"), "x")
            .await,
    );

    // Listed oldest first, exactly as stored; found by credential id.
    let listed = store.passkeys_of(&dave.id).await.unwrap();
    assert_eq!(listed, [laptop.clone(), key.clone()]);
    assert_eq!(store.passkey_count(&dave.id).await.unwrap(), 2);
    assert_eq!(store.passkey_count(&erin.id).await.unwrap(), 1);
    assert_eq!(
        store
            .passkey_by_credential_id(&key.credential_id)
            .await
            .unwrap(),
        Some(key.clone())
    );
    assert_eq!(store.passkey_by_credential_id(&[9; 3]).await.unwrap(), None);

    // Renamed by its operator only, to a free name.
    let renamed = store
        .rename_passkey(&dave.id, &key.id, "desk key", "dave", T0 + 10 * MINUTE)
        .await
        .unwrap();
    assert_eq!(renamed.name, "desk key");
    assert_eq!(renamed.credential_id, key.credential_id);
    assert_conflict(
        store
            .rename_passkey(&dave.id, &key.id, "laptop", "dave", T0)
            .await,
    );
    assert_not_found(
        store
            .rename_passkey(&erin.id, &key.id, "mine", "erin", T0)
            .await,
    );

    // Removed by its operator only.
    assert_not_found(
        store
            .remove_passkey(&erin.id, &key.id, LastPasskey::MayRemove, "erin", T0)
            .await,
    );
    let removed = store
        .remove_passkey(&dave.id, &key.id, LastPasskey::Keep, "dave", T0)
        .await
        .unwrap();
    assert_eq!(removed.name, "desk key");
    assert_not_found(
        store
            .remove_passkey(&dave.id, &key.id, LastPasskey::MayRemove, "dave", T0)
            .await,
    );
    // The last one stays when the role requires one, and goes otherwise.
    assert_conflict(
        store
            .remove_passkey(&dave.id, &laptop.id, LastPasskey::Keep, "dave", T0)
            .await,
    );
    store
        .remove_passkey(&dave.id, &laptop.id, LastPasskey::MayRemove, "dave", T0)
        .await
        .unwrap();
    assert!(store.passkeys_of(&dave.id).await.unwrap().is_empty());

    let actions = audit_actions(&store).await;
    for action in ["passkey.added", "passkey.renamed", "passkey.removed"] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
    // Refused changes record nothing.
    assert_eq!(
        actions.iter().filter(|a| *a == "passkey.added").count(),
        3,
        "{actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| *a == "passkey.removed").count(),
        2,
        "{actions:?}"
    );
}

async fn passkey_counter_moves_by_compare_and_set(store: Store) {
    let dave = operator(&store, "dave").await;
    let key = store
        .add_passkey(&new_passkey(&dave.id, 4, "key"), "dave")
        .await
        .unwrap();
    assert!(
        !store
            .record_passkey_use(&key.id, 3, 9, T0 + MINUTE)
            .await
            .unwrap(),
        "the stored counter is 4, not 3"
    );
    assert!(
        store
            .record_passkey_use(&key.id, 4, 9, T0 + MINUTE)
            .await
            .unwrap()
    );
    let used = store
        .passkey_by_credential_id(&key.credential_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(used.sign_count, 9);
    assert_eq!(used.last_used_at, Some(T0 + MINUTE));
    // The largest counter an authenticator can send is kept exactly.
    assert!(
        store
            .record_passkey_use(&key.id, 9, u32::MAX, T0 + 2 * MINUTE)
            .await
            .unwrap()
    );
    assert_eq!(
        store.passkeys_of(&dave.id).await.unwrap()[0].sign_count,
        u32::MAX
    );

    // Two logins racing with the counter they both read: exactly one wins.
    let racers: Vec<_> = (0..8)
        .map(|n| {
            let store = store.clone();
            let id = key.id.clone();
            tokio::spawn(async move {
                store
                    .record_passkey_use(&id, u32::MAX, n, T0 + 3 * MINUTE)
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
    assert!(
        !store
            .record_passkey_use("no-such-passkey", 0, 1, T0)
            .await
            .unwrap()
    );
}

async fn last_passkey_kept_against_concurrent_removals(store: Store) {
    let dave = operator(&store, "dave").await;
    for round in 0..4u8 {
        let mut ids = Vec::new();
        for n in 0..3u8 {
            let key = store
                .add_passkey(
                    &new_passkey(&dave.id, round * 3 + n + 1, &format!("key {round}-{n}")),
                    "dave",
                )
                .await
                .unwrap();
            ids.push(key.id);
        }
        // Three removals at once, each of a different passkey: one must stay.
        let racers: Vec<_> = ids
            .iter()
            .map(|id| {
                let store = store.clone();
                let (operator, id) = (dave.id.clone(), id.clone());
                tokio::spawn(async move {
                    store
                        .remove_passkey(&operator, &id, LastPasskey::Keep, "dave", T0)
                        .await
                })
            })
            .collect();
        let mut removed = 0;
        for racer in racers {
            match racer.await.unwrap() {
                Ok(_) => removed += 1,
                Err(StoreError::Conflict(_)) => {}
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(removed, 2, "round {round}");
        let left = store.passkeys_of(&dave.id).await.unwrap();
        assert_eq!(left.len(), 1, "round {round}");
        store
            .remove_passkey(&dave.id, &left[0].id, LastPasskey::MayRemove, "dave", T0)
            .await
            .unwrap();
    }
}

async fn sessions_remember_their_passkey(store: Store) {
    let dave = operator(&store, "dave").await;
    let session = |n: u8| NewSession {
        id_hash: [n; 32],
        operator_id: dave.id.clone(),
        kind: SessionKind::Browser,
        csrf_token: format!("csrf-{n}"),
        created_at: T0,
        expires_at: T0 + 60 * MINUTE,
        mfa_at: T0,
        ip: None,
        user_agent: None,
        passkey_id: None,
    };
    let signed_in = |passkey: &str| {
        NewAuditEvent::new(T0, "dave", AuditAction::LoginSucceeded, "dave")
            .with_detail(passkey.to_owned())
    };
    store
        .create_session(
            NewSession {
                passkey_id: Some("passkey-a".into()),
                ..session(1)
            },
            &[signed_in("passkey-a")],
        )
        .await
        .unwrap();
    store.create_session(session(2), &[]).await.unwrap();
    assert_eq!(
        store.session_passkey([1; 32]).await.unwrap().as_deref(),
        Some("passkey-a")
    );
    assert_eq!(store.session_passkey([2; 32]).await.unwrap(), None);
    assert_eq!(store.session_passkey([3; 32]).await.unwrap(), None);
    // A session that cannot be stored (its id is taken) records no sign-in.
    let before = store
        .list_audit(&TenantScope::All, None, 100)
        .await
        .unwrap()
        .len();
    assert!(matches!(
        store
            .create_session(session(1), &[signed_in("one-time code")])
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .list_audit(&TenantScope::All, None, 100)
            .await
            .unwrap()
            .len(),
        before
    );
    // The session row itself reads as before.
    let (read, _) = store.session([1; 32]).await.unwrap().unwrap();
    assert_eq!(read.csrf_token, "csrf-1");
}

async fn settings_are_upserted_and_audited(store: Store) {
    assert_eq!(store.setting("passkey_required_roles").await.unwrap(), None);
    let event = |at: i64, detail: &str| {
        NewAuditEvent::new(
            at,
            "olivia",
            AuditAction::SettingsPasskeyPolicyChanged,
            "passkey_required_roles",
        )
        .with_detail(detail)
    };
    store
        .put_setting(
            "passkey_required_roles",
            "owner,technician",
            &event(T0, "owner,technician"),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .setting("passkey_required_roles")
            .await
            .unwrap()
            .as_deref(),
        Some("owner,technician")
    );
    store
        .put_setting("passkey_required_roles", "", &event(T0 + MINUTE, ""))
        .await
        .unwrap();
    assert_eq!(
        store
            .setting("passkey_required_roles")
            .await
            .unwrap()
            .as_deref(),
        Some("")
    );
    assert_eq!(store.setting("other").await.unwrap(), None);
    let events: Vec<_> = store
        .list_audit(&TenantScope::All, None, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == AuditAction::SettingsPasskeyPolicyChanged.as_str())
        .collect();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.tenant_id.is_none()));
}

/// RFD 0018: the login decoy key is one per deployment, whichever node
/// asks first, so two nodes answer an unknown name alike.
async fn the_first_shared_secret_stored_is_the_one_every_node_gets(store: Store) {
    let first = store
        .shared_secret("login_decoy", [1; 32], T0)
        .await
        .unwrap();
    let second = store
        .shared_secret("login_decoy", [2; 32], T0 + MINUTE)
        .await
        .unwrap();
    assert_eq!(first, [1; 32]);
    assert_eq!(second, [1; 32], "a second node gets the stored secret");
    let other = store.shared_secret("another", [3; 32], T0).await.unwrap();
    assert_eq!(other, [3; 32]);
}
