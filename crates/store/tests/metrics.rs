//! Metrics history (RFD 0014): each body runs against SQLite and
//! PostgreSQL (a fresh schema per test).

#![allow(clippy::unwrap_used)]

use bulwark_store::metrics_plan::{Bucket, MetricKind, RAW_SPACING_MS};
use bulwark_store::{Device, NewOperator, Store, TenantScope};

#[macro_use]
mod support;

both_backends! {
    samples_are_stored_once_per_slot_and_absurd_values_are_dropped,
    compaction_rolls_up_keeping_averages_and_maxima_and_expires,
    a_flooding_device_stays_under_its_cap_and_others_keep_theirs,
    series_stay_in_their_tenant_and_the_dashboard_counts_per_tenant,
}

const T0: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

async fn device(store: &Store, tenant_id: &str, key: u8) -> Device {
    support::enrolled_device(store, tenant_id, key, &format!("host-{key}"), T0).await
}

fn cpu(v: u64) -> Vec<(String, MetricKind, u64)> {
    vec![("cpu".to_owned(), MetricKind::Cpu, v)]
}

async fn samples_are_stored_once_per_slot_and_absurd_values_are_dropped(store: Store) {
    let acme = store
        .create_tenant("acme", T0, |_| Vec::new())
        .await
        .unwrap();
    let d = device(&store, &acme.id, 1).await;
    assert_eq!(
        store
            .record_metric_samples(&d.id, &cpu(40), T0)
            .await
            .unwrap(),
        1
    );
    // A flood inside the same 10 s slot: the first sample stays.
    for v in 0..50 {
        assert_eq!(
            store
                .record_metric_samples(&d.id, &cpu(v), T0 + 9_999)
                .await
                .unwrap(),
            0
        );
    }
    // Values no agent measures: not stored, nothing else changes.
    let absurd = vec![
        ("cpu".to_owned(), MetricKind::Cpu, 101),
        ("disk-root".to_owned(), MetricKind::Disk, u64::MAX),
        ("lat".to_owned(), MetricKind::Latency, 1 << 63),
        ("load".to_owned(), MetricKind::Load, 100_001),
    ];
    assert_eq!(
        store
            .record_metric_samples(&d.id, &absurd, T0 + RAW_SPACING_MS)
            .await
            .unwrap(),
        0
    );
    // More metrics than a device may chart: only the first 32 are looked at.
    let many: Vec<_> = (0..100)
        .map(|i| (format!("m{i}"), MetricKind::Memory, 50))
        .collect();
    assert_eq!(
        store
            .record_metric_samples(&d.id, &many, T0 + 2 * RAW_SPACING_MS)
            .await
            .unwrap(),
        32
    );
    let series = store
        .metric_series(
            &TenantScope::All,
            &d.id,
            0,
            Some("cpu"),
            T0 - HOUR,
            T0 + HOUR,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].points, vec![(T0, Bucket::sample(40))]);
    assert_eq!(store.metric_rows_of(&d.id).await.unwrap(), [33, 0, 0]);
    // A tier that does not exist is an error, not a query.
    assert!(
        store
            .metric_series(&TenantScope::All, &d.id, 3, None, 0, T0)
            .await
            .is_err()
    );
}

async fn compaction_rolls_up_keeping_averages_and_maxima_and_expires(store: Store) {
    let acme = store
        .create_tenant("acme", T0, |_| Vec::new())
        .await
        .unwrap();
    let d = device(&store, &acme.id, 1).await;
    // Three days of one sample a minute, values 0..=99 cycling.
    let start = T0 - T0 % DAY;
    let mut n = 0i64;
    let mut sum = 0i64;
    for i in 0..(3 * 24 * 60) {
        let v = (i % 100) as u64;
        store
            .record_metric_samples(&d.id, &cpu(v), start + i * MIN)
            .await
            .unwrap();
        n += 1;
        sum += v as i64;
    }
    let now = start + 3 * DAY;
    let done = store.compact_metrics(now, 1_000_000).await.unwrap();
    assert_eq!(done.devices, 1);
    let [raw, quarter, daily] = store.metric_rows_of(&d.id).await.unwrap();
    // Raw: the last 48 h (aligned down to 15 min) stays; the first day rolled.
    assert_eq!(raw, 2 * 24 * 60);
    assert_eq!(quarter, 24 * 4);
    assert_eq!(daily, 0);
    // Nothing lost: counts and sums over the tiers add up, maxima kept.
    let all = |tier| store.metric_series(&TenantScope::All, &d.id, tier, None, 0, i64::MAX);
    let mut total = (0, 0);
    for tier in 0..3 {
        for s in all(tier).await.unwrap().unwrap() {
            for (_, b) in s.points {
                total.0 += b.n;
                total.1 += b.sum;
            }
        }
    }
    assert_eq!(total, (n, sum));
    let q = &all(1).await.unwrap().unwrap()[0].points;
    // The first quarter hour: minutes 0..15, values 0..14.
    assert_eq!(
        q[0],
        (
            start,
            Bucket {
                n: 15,
                sum: (0..15).sum(),
                max: 14
            }
        )
    );
    // A second pass changes nothing.
    let again = store.compact_metrics(now, 1_000_000).await.unwrap();
    assert_eq!((again.rolled, again.expired, again.capped), (0, 0, 0));
    // 40 days later: 15-minute buckets become days, raw rolled away.
    let later = now + 40 * DAY;
    store.compact_metrics(later, 1_000_000).await.unwrap();
    let [raw, quarter, daily] = store.metric_rows_of(&d.id).await.unwrap();
    assert_eq!(raw, 0);
    assert!(quarter < 4 * 24 * 3, "{quarter}");
    assert!(daily >= 1, "{daily}");
    // 500 days later: past the last tier's 400 days, everything expired.
    let expired = store
        .compact_metrics(later + 500 * DAY, 1_000_000)
        .await
        .unwrap();
    assert!(expired.expired > 0);
    assert_eq!(store.metric_rows_of(&d.id).await.unwrap(), [0, 0, 0]);
}

async fn a_flooding_device_stays_under_its_cap_and_others_keep_theirs(store: Store) {
    let acme = store
        .create_tenant("acme", T0, |_| Vec::new())
        .await
        .unwrap();
    let flood = device(&store, &acme.id, 1).await;
    let quiet = device(&store, &acme.id, 2).await;
    let metrics: Vec<_> = (0..32)
        .map(|i| (format!("disk-{i}"), MetricKind::Disk, 90))
        .collect();
    // Every slot of 20 minutes for 32 metrics: 3,840 rows.
    for i in 0..120 {
        store
            .record_metric_samples(&flood.id, &metrics, T0 + i * RAW_SPACING_MS)
            .await
            .unwrap();
    }
    store
        .record_metric_samples(&quiet.id, &cpu(5), T0)
        .await
        .unwrap();
    let done = store.compact_metrics(T0 + HOUR, 1_000).await.unwrap();
    let counts = store.metric_rows_of(&flood.id).await.unwrap();
    assert!(counts.iter().sum::<u64>() <= 1_000, "{counts:?}");
    assert_eq!(done.capped, 3_840 - counts[0]);
    // The newest rows are the ones kept.
    let kept = store
        .metric_series(&TenantScope::All, &flood.id, 0, Some("disk-0"), 0, i64::MAX)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept[0].points.last().unwrap().0, T0 + 119 * RAW_SPACING_MS);
    assert_eq!(store.metric_rows_of(&quiet.id).await.unwrap(), [1, 0, 0]);
}

async fn series_stay_in_their_tenant_and_the_dashboard_counts_per_tenant(store: Store) {
    let acme = store
        .create_tenant("acme", T0, |_| Vec::new())
        .await
        .unwrap();
    let umbrella = store
        .create_tenant("umbrella", T0, |_| Vec::new())
        .await
        .unwrap();
    let a1 = device(&store, &acme.id, 1).await;
    let a2 = device(&store, &acme.id, 2).await;
    let u1 = device(&store, &umbrella.id, 3).await;
    for (d, v) in [(&a1, 10), (&a2, 30), (&u1, 99)] {
        store
            .record_metric_samples(&d.id, &cpu(v), T0)
            .await
            .unwrap();
    }
    let points = store
        .tenant_metric_series(
            &TenantScope::All,
            &acme.id,
            "cpu",
            0,
            MIN,
            T0 - HOUR,
            T0 + HOUR,
        )
        .await
        .unwrap();
    assert_eq!(points.len(), 1);
    assert_eq!(points[0].devices, 2);
    assert_eq!(
        points[0].bucket,
        Bucket {
            n: 2,
            sum: 40,
            max: 30
        }
    );

    // An operator granted acme only sees nothing of umbrella's.
    let op = store
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
        .grant_tenant(&op.id, &acme.id, "technician")
        .await
        .unwrap();
    let scope = TenantScope::Operator(op.id.clone());
    assert!(
        store
            .metric_series(&scope, &u1.id, 0, None, 0, i64::MAX)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .tenant_metric_series(&scope, &umbrella.id, "cpu", 0, MIN, 0, i64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    let rows = store.dashboard_counts(&scope).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].name.as_str(), rows[0].devices), ("acme", 2));
    let all = store.dashboard_counts(&TenantScope::All).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["acme", "umbrella"]
    );
    assert_eq!(all[1].devices, 1);
    assert_eq!(all[1].alerts, [0, 0, 0]);
}
