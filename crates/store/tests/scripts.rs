//! The MSP's script library (migration 0030, RFD 0013): each body runs
//! against SQLite and PostgreSQL (a fresh schema per test).

#![allow(clippy::unwrap_used)]

use bulwark_store::{
    AuditAction, NewAuditEvent, NewOperator, NewScript, NewScriptVersion, Store, StoreError,
};

#[macro_use]
mod support;

both_backends! {
    versions_are_numbered_in_order_and_each_change_is_in_the_msp_log,
    a_refused_write_changes_nothing,
    reviews_are_one_per_operator_and_version,
}

const T0: i64 = 1_700_000_000_000;

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

fn version(n: u32, author: &str, content: &str) -> NewScriptVersion {
    NewScriptVersion {
        version: n,
        interpreter: "sh".into(),
        params: "n:int\nmode:choice=a|b".into(),
        content: content.into(),
        sha256: format!("{n:064x}"),
        author_id: author.into(),
        author_envelope: vec![1, 2, n as u8],
    }
}

fn event(action: AuditAction, target: &str) -> NewAuditEvent {
    NewAuditEvent::new(T0, "alice", action, target)
}

fn script(name: &str) -> NewScript {
    NewScript {
        id: format!("id-{name}"),
        name: name.into(),
        description: "cleans <b>up</b>".into(),
    }
}

async fn msp_actions(store: &Store) -> Vec<String> {
    let entries = store.log_entries("msp", 0, 1000).await.unwrap();
    entries
        .iter()
        .map(|e| {
            bulwark_protocol::audit_leaf::AuditLeaf::decode(&e.leaf)
                .unwrap()
                .action
                .to_string()
        })
        .filter(|a| a.starts_with("script."))
        .collect()
}

async fn versions_are_numbered_in_order_and_each_change_is_in_the_msp_log(store: Store) {
    let alice = operator(&store, "alice").await;
    let created = store
        .create_script(
            &script("cleanup"),
            &version(1, &alice, "echo 1\n"),
            T0,
            &[event(AuditAction::ScriptAdded, "cleanup")],
        )
        .await
        .unwrap();
    assert_eq!(created.latest_version, 1);
    assert_eq!(created.latest_reviews, 0);
    let v2 = store
        .add_script_version(
            &created.id,
            &version(2, &alice, "echo 2\n"),
            T0 + 1,
            &[event(AuditAction::ScriptVersionAdded, "cleanup")],
        )
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.author_username, "alice");
    assert_eq!(v2.author_envelope, vec![1, 2, 2]);
    let versions = store.script_versions(&created.id).await.unwrap();
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![2, 1]
    );
    let one = store.script_version(&created.id, 1).await.unwrap().unwrap();
    assert_eq!(one.content, "echo 1\n");
    assert_eq!(one.params, "n:int\nmode:choice=a|b");
    let listed = store.list_scripts().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].latest_version, 2);
    assert_eq!(
        store
            .script_by_name("cleanup")
            .await
            .unwrap()
            .unwrap()
            .description,
        "cleans <b>up</b>"
    );
    assert_eq!(store.script_by_name("nope").await.unwrap(), None);
    assert_eq!(
        msp_actions(&store).await,
        vec!["script.added", "script.version_added"]
    );
}

async fn a_refused_write_changes_nothing(store: Store) {
    let alice = operator(&store, "alice").await;
    let created = store
        .create_script(
            &script("cleanup"),
            &version(1, &alice, "echo 1\n"),
            T0,
            &[event(AuditAction::ScriptAdded, "cleanup")],
        )
        .await
        .unwrap();
    // The same name again.
    let again = store
        .create_script(
            &NewScript {
                id: "other".into(),
                ..script("cleanup")
            },
            &version(1, &alice, "evil\n"),
            T0,
            &[event(AuditAction::ScriptAdded, "cleanup")],
        )
        .await;
    assert!(matches!(
        again,
        Err(StoreError::Conflict("script name taken"))
    ));
    // Skipping a number, or rewriting version 1.
    for n in [1, 3] {
        let skipped = store
            .add_script_version(
                &created.id,
                &version(n, &alice, "evil\n"),
                T0,
                &[event(AuditAction::ScriptVersionAdded, "cleanup")],
            )
            .await;
        assert!(
            matches!(skipped, Err(StoreError::Conflict("not the next version"))),
            "{n}: {skipped:?}"
        );
    }
    // A version of no script.
    let orphan = store
        .add_script_version("missing", &version(2, &alice, "x\n"), T0, &[])
        .await;
    assert!(matches!(orphan, Err(StoreError::NotFound)));
    let one = store.script_version(&created.id, 1).await.unwrap().unwrap();
    assert_eq!(one.content, "echo 1\n");
    assert_eq!(store.script_versions(&created.id).await.unwrap().len(), 1);
    assert_eq!(store.list_scripts().await.unwrap().len(), 1);
    assert_eq!(msp_actions(&store).await, vec!["script.added"]);
}

async fn reviews_are_one_per_operator_and_version(store: Store) {
    let alice = operator(&store, "alice").await;
    let bob = operator(&store, "bob").await;
    let created = store
        .create_script(&script("cleanup"), &version(1, &alice, "echo\n"), T0, &[])
        .await
        .unwrap();
    store
        .add_script_review(
            &created.id,
            1,
            &bob,
            &[9, 9],
            T0 + 5,
            &[event(AuditAction::ScriptReviewed, "cleanup")],
        )
        .await
        .unwrap();
    let twice = store
        .add_script_review(&created.id, 1, &bob, &[8], T0 + 6, &[])
        .await;
    assert!(matches!(
        twice,
        Err(StoreError::Conflict("already reviewed"))
    ));
    let missing = store
        .add_script_review(&created.id, 7, &bob, &[8], T0 + 6, &[])
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    let reviews = store.script_reviews(&created.id, 1).await.unwrap();
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0].reviewer_username, "bob");
    assert_eq!(reviews[0].envelope, vec![9, 9]);
    assert_eq!(
        store
            .script_by_name("cleanup")
            .await
            .unwrap()
            .unwrap()
            .latest_reviews,
        1
    );
    assert_eq!(msp_actions(&store).await, vec!["script.reviewed"]);
}
