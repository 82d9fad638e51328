//! Security update spans (migration 0041): kept from each report that
//! carries a device's pending updates; each body runs against SQLite and
//! PostgreSQL (a fresh schema per test).

#![allow(clippy::unwrap_used)]

use bulwark_protocol::inventory::{Inventory, PendingUpdate};
use bulwark_store::{NewOperator, Store, TenantScope};

#[macro_use]
mod support;

both_backends! {
    spans_open_and_close_with_what_the_agent_reports,
}

const T0: i64 = 1_700_000_000_000;

fn update(name: &str, version: &str, security: bool) -> PendingUpdate {
    PendingUpdate {
        name: name.to_owned(),
        architecture: "amd64".to_owned(),
        current_version: "1.0".to_owned(),
        new_version: version.to_owned(),
        origin: if security {
            "Debian-Security:12/stable-security".to_owned()
        } else {
            "Debian:12/stable".to_owned()
        },
        security,
    }
}

fn report(updates: Option<Vec<PendingUpdate>>) -> Inventory {
    Inventory {
        pending_updates: updates,
        ..Inventory::default()
    }
}

async fn spans_open_and_close_with_what_the_agent_reports(store: Store) {
    let all = TenantScope::All;
    let acme = store.ensure_tenant("acme", "test", T0).await.unwrap();
    let other = store.ensure_tenant("other", "test", T0).await.unwrap();
    let d = support::enrolled_device(&store, &acme.id, 1, "web-1", T0).await;
    let quiet = support::enrolled_device(&store, &acme.id, 2, "no-apt", T0).await;
    let theirs = support::enrolled_device(&store, &other.id, 3, "theirs", T0).await;

    // A report without pending updates (apt not read) watches nothing.
    store
        .update_inventory(&quiet.id, true, report(None), T0)
        .await
        .unwrap();
    let (watched, spans) = store
        .patch_compliance_inputs(&all, &acme.id, 0, 100)
        .await
        .unwrap();
    assert!(watched.is_empty() && spans.is_empty());

    // Two security updates and one plain update pending.
    store
        .update_inventory(
            &d.id,
            false,
            report(Some(vec![
                update("openssl", "3.0.1", true),
                update("libc6", "2.36-9", true),
                update("vim", "9.1", false),
            ])),
            T0 + 10,
        )
        .await
        .unwrap();
    // Later: openssl's fix has a newer version, libc6 is installed.
    store
        .update_inventory(
            &d.id,
            false,
            report(Some(vec![update("openssl", "3.0.2", true)])),
            T0 + 20,
        )
        .await
        .unwrap();
    // A full report without the section changes nothing.
    store
        .update_inventory(&d.id, true, report(None), T0 + 30)
        .await
        .unwrap();
    store
        .update_inventory(
            &theirs.id,
            false,
            report(Some(vec![update("curl", "8", true)])),
            T0,
        )
        .await
        .unwrap();

    let (watched, mut spans) = store
        .patch_compliance_inputs(&all, &acme.id, 0, 100)
        .await
        .unwrap();
    assert_eq!(watched.len(), 1);
    assert_eq!(
        (watched[0].hostname.as_str(), watched[0].since),
        ("web-1", T0 + 10)
    );
    spans.sort_by(|a, b| a.package.cmp(&b.package));
    let seen: Vec<(&str, &str, i64, Option<i64>)> = spans
        .iter()
        .map(|s| {
            (
                s.package.as_str(),
                s.new_version.as_str(),
                s.first_seen_at,
                s.cleared_at,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("libc6", "2.36-9", T0 + 10, Some(T0 + 20)),
            ("openssl", "3.0.2", T0 + 10, None),
        ]
    );
    // Spans closed before the period are not read.
    let (_, recent) = store
        .patch_compliance_inputs(&all, &acme.id, T0 + 25, 100)
        .await
        .unwrap();
    assert_eq!(recent.len(), 1);

    // Installed, then offered again: a new span.
    store
        .update_inventory(&d.id, false, report(Some(vec![])), T0 + 40)
        .await
        .unwrap();
    store
        .update_inventory(
            &d.id,
            false,
            report(Some(vec![update("openssl", "3.0.3", true)])),
            T0 + 50,
        )
        .await
        .unwrap();
    let (_, spans) = store
        .patch_compliance_inputs(&all, &acme.id, T0 + 35, 100)
        .await
        .unwrap();
    let open: Vec<(i64, Option<i64>)> = spans
        .iter()
        .filter(|s| s.package == "openssl")
        .map(|s| (s.first_seen_at, s.cleared_at))
        .collect();
    assert_eq!(open, [(T0 + 10, Some(T0 + 40)), (T0 + 50, None)]);

    // An operator granted only `other` reads none of acme's rows.
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
        .grant_tenant(&operator.id, &other.id, "technician")
        .await
        .unwrap();
    let scope = TenantScope::Operator(operator.id.clone());
    let (watched, spans) = store
        .patch_compliance_inputs(&scope, &acme.id, 0, 100)
        .await
        .unwrap();
    assert!(watched.is_empty() && spans.is_empty());
    let (watched, spans) = store
        .patch_compliance_inputs(&scope, &other.id, 0, 100)
        .await
        .unwrap();
    assert_eq!((watched.len(), spans.len()), (1, 1));
}
