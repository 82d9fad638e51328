//! Tags and groups of devices and the search by them (migration 0029, RFD
//! 0016): each body runs against SQLite and PostgreSQL (a fresh schema per
//! test).

#![allow(clippy::unwrap_used)]

use bulwark_store::{Device, LabelFilter, NewOperator, Store, StoreError, TenantScope, testing};

#[macro_use]
mod support;

both_backends! {
    tags_and_groups_change_with_one_event_each,
    search_filters_by_tags_group_and_tenant_inside_the_scope,
    labels_cannot_name_a_device_of_another_tenant,
}

const T0: i64 = 1_700_000_000_000;

async fn device(store: &Store, tenant_id: &str, key: u8, hostname: &str) -> Device {
    support::enrolled_device(store, tenant_id, key, hostname, T0).await
}

fn tags(list: &[&str]) -> Vec<String> {
    list.iter().map(|t| (*t).to_owned()).collect()
}

async fn events(store: &Store, tenant_id: &str, action: &str) -> Vec<String> {
    store
        .list_audit(&TenantScope::All, Some(tenant_id), 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == action)
        .map(|e| e.detail)
        .collect()
}

async fn tags_and_groups_change_with_one_event_each(store: Store) {
    let acme = store
        .create_tenant("acme", T0, |_| Vec::new())
        .await
        .unwrap();
    let d = device(&store, &acme.id, 1, "web-1").await;
    let all = TenantScope::All;
    let labels = store
        .change_device_tags(
            &all,
            &d.id,
            &tags(&["server", "finance"]),
            &[],
            "olivia",
            T0,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(labels.tags, ["finance", "server"]);
    // Adding what is there and removing what is not changes nothing: no event.
    store
        .change_device_tags(
            &all,
            &d.id,
            &tags(&["server"]),
            &tags(&["kiosk"]),
            "olivia",
            T0,
        )
        .await
        .unwrap();
    let labels = store
        .change_device_tags(
            &all,
            &d.id,
            &tags(&["kiosk"]),
            &tags(&["finance"]),
            "olivia",
            T0,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(labels.tags, ["kiosk", "server"]);
    let changed = events(&store, &acme.id, "device.tags_changed").await;
    assert_eq!(changed.len(), 2, "{changed:?}");
    assert!(changed.contains(&"added=kiosk removed=finance tags=kiosk,server".to_owned()));

    let labels = store
        .set_device_group(&all, &d.id, Some("HQ"), "olivia", T0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(labels.group.as_deref(), Some("HQ"));
    // A second device joining `hq` takes the tenant's spelling.
    let e = device(&store, &acme.id, 2, "web-2").await;
    let labels = store
        .set_device_group(&all, &e.id, Some("hq"), "olivia", T0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(labels.group.as_deref(), Some("HQ"));
    store
        .set_device_group(&all, &d.id, Some("HQ"), "olivia", T0)
        .await
        .unwrap();
    store
        .set_device_group(&all, &d.id, None, "olivia", T0)
        .await
        .unwrap();
    let changed = events(&store, &acme.id, "device.group_changed").await;
    assert_eq!(changed.len(), 3, "{changed:?}");
    assert!(changed.contains(&"group=- previous=HQ".to_owned()));
    assert_eq!(
        store.labels_of_device(&all, &d.id).await.unwrap().group,
        None
    );

    // Past the cap: refused, and nothing of the change stays.
    let many: Vec<String> = (0..40).map(|n| format!("t{n}")).collect();
    assert!(matches!(
        store
            .change_device_tags(&all, &d.id, &many, &[], "olivia", T0)
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        store.labels_of_device(&all, &d.id).await.unwrap().tags,
        ["kiosk", "server"]
    );
    // A missing device is None, and no event.
    assert!(
        store
            .change_device_tags(&all, "missing", &tags(&["x"]), &[], "olivia", T0)
            .await
            .unwrap()
            .is_none()
    );
}

async fn search_filters_by_tags_group_and_tenant_inside_the_scope(store: Store) {
    let acme = store
        .create_tenant("acme", T0, |_| Vec::new())
        .await
        .unwrap();
    let globex = store
        .create_tenant("globex", T0, |_| Vec::new())
        .await
        .unwrap();
    let a1 = device(&store, &acme.id, 1, "a-web").await;
    let a2 = device(&store, &acme.id, 2, "a-db").await;
    let g1 = device(&store, &globex.id, 3, "g-web").await;
    let all = TenantScope::All;
    for (d, t) in [
        (&a1, &["server", "finance"][..]),
        (&a2, &["server"]),
        (&g1, &["server", "finance"]),
    ] {
        store
            .change_device_tags(&all, &d.id, &tags(t), &[], "olivia", T0)
            .await
            .unwrap();
    }
    store
        .set_device_group(&all, &a1.id, Some("Branch Leeds"), "olivia", T0)
        .await
        .unwrap();
    let ids = |devices: Vec<Device>| devices.into_iter().map(|d| d.id).collect::<Vec<_>>();
    let search = |filter: LabelFilter, scope: TenantScope| {
        let store = store.clone();
        async move { ids(store.search_devices(&scope, &filter).await.unwrap()) }
    };
    assert_eq!(
        search(LabelFilter::default(), all.clone()).await,
        [a2.id.clone(), a1.id.clone(), g1.id.clone()]
    );
    let finance = LabelFilter {
        tags: tags(&["finance", "server"]),
        ..LabelFilter::default()
    };
    assert_eq!(
        search(finance.clone(), all.clone()).await,
        [a1.id.clone(), g1.id.clone()]
    );
    let in_acme = LabelFilter {
        tenant_id: Some(acme.id.clone()),
        ..finance.clone()
    };
    assert_eq!(
        search(in_acme, all.clone()).await,
        std::slice::from_ref(&a1.id)
    );
    let leeds = LabelFilter {
        group_key: Some("branch leeds".into()),
        ..LabelFilter::default()
    };
    assert_eq!(
        search(leeds, all.clone()).await,
        std::slice::from_ref(&a1.id)
    );

    // An operator granted acme only never sees globex's device.
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
    assert_eq!(
        search(finance, scope.clone()).await,
        std::slice::from_ref(&a1.id)
    );
    let labels = store.device_labels(&scope, None).await.unwrap();
    assert!(labels.contains_key(&a1.id) && !labels.contains_key(&g1.id));
    // Nor changes its labels.
    assert!(
        store
            .change_device_tags(&scope, &g1.id, &tags(&["x"]), &[], "tech", T0)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .set_device_group(&scope, &g1.id, Some("HQ"), "tech", T0)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        events(&store, &globex.id, "device.group_changed")
            .await
            .is_empty()
    );
}

async fn labels_cannot_name_a_device_of_another_tenant(store: Store) {
    let acme = store
        .create_tenant("acme", T0, |_| Vec::new())
        .await
        .unwrap();
    let globex = store
        .create_tenant("globex", T0, |_| Vec::new())
        .await
        .unwrap();
    let g1 = device(&store, &globex.id, 3, "g-web").await;
    // The schema refuses a tag row whose tenant is not its device's.
    let forged = format!(
        "INSERT INTO device_tags (device_id, tenant_id, tag) VALUES ('{}', '{}', 'server')",
        g1.id, acme.id
    );
    assert!(testing::tamper(&store, &forged).await.is_err());
}
