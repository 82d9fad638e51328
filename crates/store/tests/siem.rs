//! SIEM export cursors: each body below runs against SQLite (a temporary
//! file) and PostgreSQL (a fresh schema per test), like `translog.rs`. The
//! PostgreSQL half fails, never skips, when the server is unreachable.

#![allow(clippy::unwrap_used)]

use bulwark_store::AuditAction;
use bulwark_store::{MSP_LOG, NewAuditEvent, Store, StoreError};

#[macro_use]
mod support;

both_backends! {
    cursors_start_at_zero_and_only_move_forward,
    cursors_are_per_sink_and_per_log,
    cursor_cannot_pass_the_log_head,
    log_heads_list_every_log_in_pages,
    concurrent_advances_keep_the_maximum,
}

const T0: i64 = 1_700_000_000_000;

async fn fill(store: &Store, log: &str, n: usize) {
    let leaves: Vec<Vec<u8>> = (0..n).map(|i| format!("{log} {i}").into_bytes()).collect();
    store.append_log_entries(log, &leaves, T0).await.unwrap();
}

async fn cursors_start_at_zero_and_only_move_forward(store: Store) {
    fill(&store, MSP_LOG, 10).await;
    assert_eq!(store.siem_cursor("soc", MSP_LOG).await.unwrap(), 0);
    assert_eq!(
        store
            .advance_siem_cursor("soc", MSP_LOG, 4, T0)
            .await
            .unwrap(),
        4
    );
    assert_eq!(store.siem_cursor("soc", MSP_LOG).await.unwrap(), 4);
    // Backwards and equal: nothing changes, the stored value is returned.
    assert_eq!(
        store
            .advance_siem_cursor("soc", MSP_LOG, 2, T0 + 1)
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        store
            .advance_siem_cursor("soc", MSP_LOG, 4, T0 + 1)
            .await
            .unwrap(),
        4
    );
    assert_eq!(store.siem_cursor("soc", MSP_LOG).await.unwrap(), 4);
    assert_eq!(
        store
            .advance_siem_cursor("soc", MSP_LOG, 10, T0 + 2)
            .await
            .unwrap(),
        10
    );
    assert_eq!(store.siem_cursor("soc", MSP_LOG).await.unwrap(), 10);
}

async fn cursors_are_per_sink_and_per_log(store: Store) {
    let tenant = store
        .create_tenant("Acme", T0, |_| Vec::new())
        .await
        .unwrap();
    // Tenant creation is itself audited, in the tenant's log or the MSP log;
    // add entries to both so each has some.
    fill(&store, MSP_LOG, 5).await;
    fill(&store, &tenant.id, 5).await;
    store
        .advance_siem_cursor("a", MSP_LOG, 3, T0)
        .await
        .unwrap();
    store
        .advance_siem_cursor("b", &tenant.id, 2, T0)
        .await
        .unwrap();
    assert_eq!(store.siem_cursor("a", MSP_LOG).await.unwrap(), 3);
    assert_eq!(store.siem_cursor("a", &tenant.id).await.unwrap(), 0);
    assert_eq!(store.siem_cursor("b", MSP_LOG).await.unwrap(), 0);
    assert_eq!(store.siem_cursor("b", &tenant.id).await.unwrap(), 2);
    assert_eq!(
        store.siem_cursors("a", None, 100).await.unwrap(),
        vec![(MSP_LOG.to_owned(), 3)]
    );
    assert_eq!(
        store.siem_cursors("b", None, 100).await.unwrap(),
        vec![(tenant.id.clone(), 2)]
    );
    assert!(store.siem_cursors("c", None, 100).await.unwrap().is_empty());
}

async fn cursor_cannot_pass_the_log_head(store: Store) {
    // A log that does not exist has size 0.
    assert!(matches!(
        store.advance_siem_cursor("soc", "nolog", 1, T0).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(
        store
            .siem_cursors("soc", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    fill(&store, MSP_LOG, 3).await;
    assert!(matches!(
        store.advance_siem_cursor("soc", MSP_LOG, 4, T0).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.siem_cursor("soc", MSP_LOG).await.unwrap(), 0);
    assert_eq!(
        store
            .advance_siem_cursor("soc", MSP_LOG, 3, T0)
            .await
            .unwrap(),
        3
    );
    assert!(matches!(
        store
            .advance_siem_cursor("soc", MSP_LOG, u64::MAX, T0)
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.advance_siem_cursor("", MSP_LOG, 1, T0).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store
            .advance_siem_cursor(&"x".repeat(129), MSP_LOG, 1, T0)
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.siem_cursor("soc", MSP_LOG).await.unwrap(), 3);
}

async fn log_heads_list_every_log_in_pages(store: Store) {
    let mut logs = vec![MSP_LOG.to_owned()];
    for i in 0..5 {
        logs.push(format!("00000000-0000-4000-8000-00000000000{i}"));
    }
    for (i, log) in logs.iter().enumerate() {
        fill(&store, log, i + 1).await;
    }
    // An audit event makes (or extends) its log too.
    store
        .append_audit(NewAuditEvent::new(
            T0,
            "tester",
            AuditAction::TenantCreated,
            "x",
        ))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.log_heads(after.as_deref(), 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.log_id.clone());
        seen.extend(page);
    }
    let mut expected = logs.clone();
    expected.sort();
    assert_eq!(
        seen.iter().map(|h| h.log_id.clone()).collect::<Vec<_>>(),
        expected
    );
    for head in &seen {
        let fresh = store.log_head(&head.log_id).await.unwrap().unwrap();
        assert_eq!(&fresh, head);
    }
    let msp = seen.iter().find(|h| h.log_id == MSP_LOG).unwrap();
    assert_eq!(msp.size, 2, "one leaf from fill, one audit event");
}

async fn concurrent_advances_keep_the_maximum(store: Store) {
    fill(&store, MSP_LOG, 200).await;
    let mut tasks = Vec::new();
    for i in 0..20u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for step in 0..10u64 {
                // Interleaved values, some going "back".
                let value = (step * 20 + i * 7) % 201;
                store
                    .advance_siem_cursor("soc", MSP_LOG, value, T0)
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let max = (0..20u64)
        .flat_map(|i| (0..10u64).map(move |step| (step * 20 + i * 7) % 201))
        .max()
        .unwrap();
    assert_eq!(store.siem_cursor("soc", MSP_LOG).await.unwrap(), max);
}
