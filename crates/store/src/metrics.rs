//! Metrics history (`metric_samples`, migration 0032, RFD 0014): samples
//! of the policy's numeric checks per device, rolled up in tiers and kept
//! under a per-device cap by [`Store::compact_metrics`]; and the counts the
//! dashboard shows per tenant. The decisions are in
//! [`crate::metrics_plan`] (pure); this is the I/O around them.

use sqlx::Row;

use crate::metrics_plan::{
    Bucket, MAX_METRICS_PER_DEVICE, MetricKind, Step, TIERS, accept, over_cap, plan, raw_slot,
    roll_up,
};
use crate::{Millis, Store, StoreError, TenantScope, in_scope};

/// Most rows one chart query returns (a series of 6 h raw is 2,160, of
/// 31 days at 15 minutes 2,976: 32 metrics fit).
pub const MAX_SERIES_ROWS: i64 = 100_000;

/// One metric's points in one tier: (bucket start, figures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSeries {
    pub metric: String,
    pub points: Vec<(Millis, Bucket)>,
}

/// A tenant-wide point: the buckets of `devices` devices merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantPoint {
    pub at: Millis,
    pub devices: i64,
    pub bucket: Bucket,
}

/// What one compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compaction {
    pub devices: u64,
    /// Rows read and rolled into the next tier.
    pub rolled: u64,
    /// Rows of the last tier past its retention.
    pub expired: u64,
    /// Rows deleted to keep a device under its cap.
    pub capped: u64,
}

/// A tenant's row on the dashboard (online is the server's presence, not
/// stored: the caller adds it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantCounts {
    pub tenant_id: String,
    pub name: String,
    pub devices: i64,
    /// Unresolved (open or acknowledged) alerts: critical, warning, info.
    pub alerts: [i64; 3],
    /// Checks whose last reported state is warning or critical.
    pub failing_checks: i64,
}

impl Store {
    /// Stores one raw sample per `(metric, kind, value)` at server time
    /// `now` (its 10 s slot; a slot already filled keeps its first sample).
    /// Values no honest agent measures are dropped; at most
    /// [`MAX_METRICS_PER_DEVICE`] are looked at. Returns how many were
    /// stored.
    pub async fn record_metric_samples(
        &self,
        device_id: &str,
        samples: &[(String, MetricKind, u64)],
        now: Millis,
    ) -> Result<usize, StoreError> {
        let at = raw_slot(now);
        let mut stored = 0;
        let mut tx = self.pool.begin().await?;
        for (metric, kind, value) in samples.iter().take(MAX_METRICS_PER_DEVICE) {
            let Some(value) = accept(*kind, *value) else {
                continue;
            };
            let done = sqlx::query(
                "INSERT INTO metric_samples (device_id, tier, metric, at, n, sum, max) \
                 VALUES ($1, 0, $2, $3, 1, $4, $4) ON CONFLICT DO NOTHING",
            )
            .bind(device_id)
            .bind(metric)
            .bind(at)
            .bind(value)
            .execute(&mut *tx)
            .await?;
            stored += usize::try_from(done.rows_affected()).unwrap_or(0);
        }
        tx.commit().await?;
        Ok(stored)
    }

    /// The series of a device in `scope` in `tier` between `from` and `to`
    /// (bucket starts, inclusive), by metric; `None` when the device is not
    /// in scope. `metric` narrows it to one.
    pub async fn metric_series(
        &self,
        scope: &TenantScope,
        device_id: &str,
        tier: usize,
        metric: Option<&str>,
        from: Millis,
        to: Millis,
    ) -> Result<Option<Vec<MetricSeries>>, StoreError> {
        if self.device(scope, device_id).await?.is_none() {
            return Ok(None);
        }
        let (all, operator) = scope.args();
        let rows = sqlx::query(concat!(
            "SELECT s.metric, s.at, s.n, s.sum, s.max FROM metric_samples s ",
            "JOIN devices d ON d.id = s.device_id WHERE ",
            in_scope!("d.tenant_id"),
            " AND s.device_id = $3 AND s.tier = $4 AND s.at >= $5 AND s.at <= $6",
            " AND ($7 = '' OR s.metric = $7) ORDER BY s.metric, s.at LIMIT $8"
        ))
        .bind(all)
        .bind(operator)
        .bind(device_id)
        .bind(tier_arg(tier)?)
        .bind(from)
        .bind(to)
        .bind(metric.unwrap_or(""))
        .bind(MAX_SERIES_ROWS)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<MetricSeries> = Vec::new();
        for row in &rows {
            let metric: String = row.try_get("metric")?;
            let point = (row.try_get("at")?, bucket(row)?);
            match out.last_mut() {
                Some(series) if series.metric == metric => series.points.push(point),
                _ => out.push(MetricSeries {
                    metric,
                    points: vec![point],
                }),
            }
        }
        Ok(Some(out))
    }

    /// A tenant's `metric` over all its devices in `scope`: buckets of
    /// `tier` grouped to `group` ms, merged (sum of sums, sum of counts,
    /// maximum of maxima) with the number of devices that had one.
    #[allow(clippy::too_many_arguments)]
    pub async fn tenant_metric_series(
        &self,
        scope: &TenantScope,
        tenant_id: &str,
        metric: &str,
        tier: usize,
        group: Millis,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<TenantPoint>, StoreError> {
        if group <= 0 {
            return Err(StoreError::Invalid("metric group width"));
        }
        let (all, operator) = scope.args();
        let rows = sqlx::query(concat!(
            "SELECT (s.at / $8) * $8 AS slot, COUNT(DISTINCT s.device_id) AS devices, ",
            "CAST(SUM(s.n) AS BIGINT) AS n, CAST(SUM(s.sum) AS BIGINT) AS sum, MAX(s.max) AS max ",
            "FROM metric_samples s ",
            "JOIN devices d ON d.id = s.device_id WHERE ",
            in_scope!("d.tenant_id"),
            " AND d.tenant_id = $3 AND s.tier = $4 AND s.metric = $5",
            " AND s.at >= $6 AND s.at <= $7 GROUP BY slot ORDER BY slot LIMIT $9"
        ))
        .bind(all)
        .bind(operator)
        .bind(tenant_id)
        .bind(tier_arg(tier)?)
        .bind(metric)
        .bind(from)
        .bind(to)
        .bind(group)
        .bind(MAX_SERIES_ROWS)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TenantPoint {
                    at: row.try_get("slot")?,
                    devices: row.try_get("devices")?,
                    bucket: Bucket {
                        n: row.try_get("n")?,
                        sum: row.try_get("sum")?,
                        max: row.try_get("max")?,
                    },
                })
            })
            .collect()
    }

    /// One compaction pass at `now` (RFD 0014): for each device, in one
    /// transaction, roll tiers up as [`plan`] says, expire the last tier,
    /// then delete the oldest rows (finest tier first) over `cap`.
    pub async fn compact_metrics(&self, now: Millis, cap: u64) -> Result<Compaction, StoreError> {
        let steps = plan(now);
        let mut done = Compaction::default();
        let mut after = String::new();
        loop {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT device_id FROM metric_samples WHERE device_id > $1 \
                 ORDER BY device_id LIMIT 500",
            )
            .bind(&after)
            .fetch_all(&self.pool)
            .await?;
            let Some(last) = ids.last() else {
                break;
            };
            after = last.clone();
            for id in &ids {
                self.compact_device(id, &steps, cap, &mut done).await?;
                done.devices += 1;
            }
        }
        Ok(done)
    }

    async fn compact_device(
        &self,
        device_id: &str,
        steps: &[Step],
        cap: u64,
        done: &mut Compaction,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for step in steps {
            match *step {
                Step::RollUp {
                    from,
                    before,
                    width,
                } => {
                    let rows = sqlx::query(
                        "SELECT metric, at, n, sum, max FROM metric_samples \
                         WHERE device_id = $1 AND tier = $2 AND at < $3",
                    )
                    .bind(device_id)
                    .bind(tier_arg(from)?)
                    .bind(before)
                    .fetch_all(&mut *tx)
                    .await?;
                    if rows.is_empty() {
                        continue;
                    }
                    let rows = rows
                        .iter()
                        .map(|row| Ok((row.try_get("metric")?, row.try_get("at")?, bucket(row)?)))
                        .collect::<Result<Vec<(String, Millis, Bucket)>, StoreError>>()?;
                    for ((metric, at), b) in roll_up(&rows, width) {
                        // A bucket rolled before (a pass cut short) merges.
                        let existing = sqlx::query(
                            "SELECT n, sum, max FROM metric_samples \
                             WHERE device_id = $1 AND tier = $2 AND metric = $3 AND at = $4",
                        )
                        .bind(device_id)
                        .bind(tier_arg(from + 1)?)
                        .bind(&metric)
                        .bind(at)
                        .fetch_optional(&mut *tx)
                        .await?;
                        let merged = match existing {
                            Some(row) => bucket(&row)?.merge(b),
                            None => b,
                        };
                        sqlx::query(
                            "INSERT INTO metric_samples (device_id, tier, metric, at, n, sum, max) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7) \
                             ON CONFLICT (device_id, tier, metric, at) DO UPDATE SET \
                             n = excluded.n, sum = excluded.sum, max = excluded.max",
                        )
                        .bind(device_id)
                        .bind(tier_arg(from + 1)?)
                        .bind(&metric)
                        .bind(at)
                        .bind(merged.n)
                        .bind(merged.sum)
                        .bind(merged.max)
                        .execute(&mut *tx)
                        .await?;
                    }
                    sqlx::query(
                        "DELETE FROM metric_samples WHERE device_id = $1 AND tier = $2 AND at < $3",
                    )
                    .bind(device_id)
                    .bind(tier_arg(from)?)
                    .bind(before)
                    .execute(&mut *tx)
                    .await?;
                    done.rolled += rows.len() as u64;
                }
                Step::Expire { tier, before } => {
                    let gone = sqlx::query(
                        "DELETE FROM metric_samples WHERE device_id = $1 AND tier = $2 AND at < $3",
                    )
                    .bind(device_id)
                    .bind(tier_arg(tier)?)
                    .bind(before)
                    .execute(&mut *tx)
                    .await?;
                    done.expired += gone.rows_affected();
                }
            }
        }
        let mut counts = [0u64; 3];
        let rows = sqlx::query(
            "SELECT tier, COUNT(*) AS rows FROM metric_samples WHERE device_id = $1 GROUP BY tier",
        )
        .bind(device_id)
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            let tier: i64 = row.try_get("tier")?;
            let n: i64 = row.try_get("rows")?;
            if let Some(c) = usize::try_from(tier).ok().and_then(|t| counts.get_mut(t)) {
                *c = u64::try_from(n).unwrap_or(0);
            }
        }
        for (tier, delete) in over_cap(counts, cap).into_iter().enumerate() {
            if delete == 0 {
                continue;
            }
            // The cut-off: the `delete`-th oldest bucket start of the tier
            // (ties between metrics at one start go together, so a tie can
            // take a few more rows than needed, never fewer).
            let edge: Option<Millis> = sqlx::query_scalar(
                "SELECT at FROM metric_samples WHERE device_id = $1 AND tier = $2 \
                 ORDER BY at LIMIT 1 OFFSET $3",
            )
            .bind(device_id)
            .bind(tier_arg(tier)?)
            .bind(i64::try_from(delete - 1).unwrap_or(i64::MAX))
            .fetch_optional(&mut *tx)
            .await?;
            let Some(edge) = edge else { continue };
            let gone = sqlx::query(
                "DELETE FROM metric_samples WHERE device_id = $1 AND tier = $2 AND at <= $3",
            )
            .bind(device_id)
            .bind(tier_arg(tier)?)
            .bind(edge)
            .execute(&mut *tx)
            .await?;
            done.capped += gone.rows_affected();
        }
        tx.commit().await?;
        Ok(())
    }

    /// Rows in the metrics store (for `/api/v1/metrics`).
    pub async fn metric_sample_rows(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM metric_samples")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Job targets waiting for delivery to their agent.
    pub async fn jobs_waiting(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM job_targets WHERE state = 'waiting'")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Every export cursor (SIEM sinks and the alert raiser): (sink, log
    /// id, next index).
    pub async fn siem_cursor_positions(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        let rows =
            sqlx::query("SELECT sink, log_id, next_idx FROM siem_cursors ORDER BY sink, log_id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                let next: i64 = row.try_get("next_idx")?;
                Ok((
                    row.try_get("sink")?,
                    row.try_get("log_id")?,
                    u64::try_from(next).unwrap_or(0),
                ))
            })
            .collect()
    }

    /// Rows of one device per tier (tests, the cap).
    pub async fn metric_rows_of(&self, device_id: &str) -> Result<[u64; 3], StoreError> {
        let mut counts = [0u64; 3];
        for (tier, count) in counts.iter_mut().enumerate() {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM metric_samples WHERE device_id = $1 AND tier = $2",
            )
            .bind(device_id)
            .bind(tier_arg(tier)?)
            .fetch_one(&self.pool)
            .await?;
            *count = u64::try_from(n).unwrap_or(0);
        }
        Ok(counts)
    }

    /// The dashboard's counts for every tenant in `scope`, by name.
    pub async fn dashboard_counts(
        &self,
        scope: &TenantScope,
    ) -> Result<Vec<TenantCounts>, StoreError> {
        let (all, operator) = scope.args();
        let rows = sqlx::query(concat!(
            "SELECT t.id, t.name,",
            " (SELECT COUNT(*) FROM devices d WHERE d.tenant_id = t.id) AS devices,",
            " (SELECT COUNT(*) FROM alerts a WHERE a.tenant_id = t.id AND a.state <> 'resolved'",
            "  AND a.severity = 'critical') AS critical,",
            " (SELECT COUNT(*) FROM alerts a WHERE a.tenant_id = t.id AND a.state <> 'resolved'",
            "  AND a.severity = 'warning') AS warning,",
            " (SELECT COUNT(*) FROM alerts a WHERE a.tenant_id = t.id AND a.state <> 'resolved'",
            "  AND a.severity = 'info') AS info,",
            " (SELECT COUNT(*) FROM device_checks c JOIN devices d ON d.id = c.device_id",
            "  WHERE d.tenant_id = t.id AND c.state IN ('warning', 'critical')) AS failing",
            " FROM tenants t WHERE ",
            in_scope!("t.id"),
            " ORDER BY t.name"
        ))
        .bind(all)
        .bind(operator)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TenantCounts {
                    tenant_id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    devices: row.try_get("devices")?,
                    alerts: [
                        row.try_get("critical")?,
                        row.try_get("warning")?,
                        row.try_get("info")?,
                    ],
                    failing_checks: row.try_get("failing")?,
                })
            })
            .collect()
    }
}

fn tier_arg(tier: usize) -> Result<i64, StoreError> {
    if tier >= TIERS.len() {
        return Err(StoreError::Invalid("metric tier"));
    }
    i64::try_from(tier).map_err(|_| StoreError::Invalid("metric tier"))
}

fn bucket(row: &sqlx::any::AnyRow) -> Result<Bucket, StoreError> {
    Ok(Bucket {
        n: row.try_get("n")?,
        sum: row.try_get("sum")?,
        max: row.try_get("max")?,
    })
}
