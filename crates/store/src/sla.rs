//! A tenant's SLA targets and business calendar (migration 0017, RFD
//! 0008), and the alert times attainment is computed from.
//!
//! The store keeps the calendar as text (zone name, hours, holidays) and
//! only reads rows: what the text means and how attainment is computed is
//! the server's (`alerts::business_time`, `alerts::sla`), pure functions
//! over these rows.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::insert_audit;
use crate::error::unique_or_missing;
use crate::{
    AuditAction, Millis, NewAuditEvent, Severity, Store, StoreError, TenantScope, in_scope,
};

/// Targets of one severity, in business minutes; `None`: no target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeverityTargets {
    pub acknowledge_minutes: Option<i64>,
    pub resolve_minutes: Option<i64>,
}

/// A tenant's SLA settings as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaSettings {
    pub tenant_id: String,
    /// An IANA time zone name (`Europe/Berlin`).
    pub time_zone: String,
    /// `mon 09:00-17:00,tue 09:00-17:00`, local time.
    pub business_hours: String,
    /// `2026-12-25,2026-12-26`, local dates.
    pub holidays: String,
    pub critical: SeverityTargets,
    pub warning: SeverityTargets,
    pub info: SeverityTargets,
    /// Critical security updates within this many days (not measured yet).
    pub patch_critical_days: Option<i64>,
    /// Uptime targets per device group, by group key.
    pub uptime: Vec<UptimeTarget>,
    pub updated_by: String,
    pub updated_at: Millis,
}

/// The share of time a device group is to be connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UptimeTarget {
    /// As devices carry it (`device_groups.group_name`).
    pub group_name: String,
    /// Its ASCII lower case, what devices are matched by.
    pub group_key: String,
    /// 9990: 99.90 %.
    pub basis_points: i64,
}

/// A device of a group with an uptime target: measured from its
/// enrolment (or the period's start, if later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UptimeDevice {
    pub device_id: String,
    pub hostname: String,
    pub group_key: String,
    pub enrolled_at: Millis,
}

/// A span a device was offline: a `device.offline` alert not silenced by
/// a maintenance window, from its opening to its resolution (or now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    pub device_id: String,
    pub from: Millis,
    pub until: Option<Millis>,
}

impl SlaSettings {
    pub fn targets(&self, severity: Severity) -> SeverityTargets {
        match severity {
            Severity::Critical => self.critical,
            Severity::Warning => self.warning,
            Severity::Info => self.info,
        }
    }

    /// One line for the audit log.
    fn summary(&self) -> String {
        let minutes = |m: Option<i64>| m.map_or("-".to_owned(), |m| format!("{m}m"));
        let targets = [
            ("critical", self.critical),
            ("warning", self.warning),
            ("info", self.info),
        ]
        .iter()
        .map(|(name, t)| {
            format!(
                "{name} ack {} resolve {}",
                minutes(t.acknowledge_minutes),
                minutes(t.resolve_minutes)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
        let uptime = self
            .uptime
            .iter()
            .map(|u| {
                format!(
                    "{} {}.{:02}%",
                    u.group_name,
                    u.basis_points / 100,
                    u.basis_points % 100
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{} [{}] holidays [{}]; {targets}; patch critical {}; uptime [{uptime}]",
            self.time_zone,
            self.business_hours,
            self.holidays,
            self.patch_critical_days
                .map_or("-".to_owned(), |d| format!("{d}d"))
        )
    }
}

/// The times of one alert, as attainment needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaAlert {
    pub id: String,
    pub kind: String,
    pub severity: Severity,
    pub summary: String,
    pub opened_at: Millis,
    pub acknowledged_at: Option<Millis>,
    pub resolved_at: Option<Millis>,
}

const COLUMNS: &str = "tenant_id, time_zone, business_hours, holidays, ack_critical_minutes, \
     resolve_critical_minutes, ack_warning_minutes, resolve_warning_minutes, ack_info_minutes, \
     resolve_info_minutes, patch_critical_days, updated_by, updated_at";

fn settings_from_row(row: &AnyRow) -> Result<SlaSettings, StoreError> {
    let pair = |ack: &str, resolve: &str| -> Result<SeverityTargets, StoreError> {
        Ok(SeverityTargets {
            acknowledge_minutes: row.try_get(ack)?,
            resolve_minutes: row.try_get(resolve)?,
        })
    };
    Ok(SlaSettings {
        tenant_id: row.try_get("tenant_id")?,
        time_zone: row.try_get("time_zone")?,
        business_hours: row.try_get("business_hours")?,
        holidays: row.try_get("holidays")?,
        critical: pair("ack_critical_minutes", "resolve_critical_minutes")?,
        warning: pair("ack_warning_minutes", "resolve_warning_minutes")?,
        info: pair("ack_info_minutes", "resolve_info_minutes")?,
        patch_critical_days: row.try_get("patch_critical_days")?,
        uptime: Vec::new(),
        updated_by: row.try_get("updated_by")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    /// The SLA settings of `tenant_id` (inside `scope`), if it has any.
    pub async fn sla_settings(
        &self,
        scope: &TenantScope,
        tenant_id: &str,
    ) -> Result<Option<SlaSettings>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM sla_targets WHERE {} AND tenant_id = $3",
            in_scope!("tenant_id")
        );
        let (all, operator) = scope.args();
        let row = sqlx::query(&sql)
            .bind(all)
            .bind(operator)
            .bind(tenant_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(mut settings) = row.as_ref().map(settings_from_row).transpose()? else {
            return Ok(None);
        };
        settings.uptime = uptime_targets(&self.pool, tenant_id).await?;
        Ok(Some(settings))
    }

    /// Replaces a tenant's SLA settings (`updated_by`, `updated_at` from
    /// `new`), recording `sla.changed` with what they were and are in the
    /// tenant's log, in one transaction.
    pub async fn set_sla_settings(&self, new: &SlaSettings) -> Result<(), StoreError> {
        let positive = |m: Option<i64>| m.is_none_or(|m| m > 0);
        let all_positive = [new.critical, new.warning, new.info]
            .iter()
            .all(|t| positive(t.acknowledge_minutes) && positive(t.resolve_minutes))
            && positive(new.patch_critical_days)
            && new
                .uptime
                .iter()
                .all(|u| (1..=10_000).contains(&u.basis_points));
        if !all_positive {
            return Err(StoreError::Invalid("SLA targets must be positive"));
        }
        let mut tx = self.pool.begin().await?;
        let before = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM sla_targets WHERE tenant_id = $1"
        ))
        .bind(&new.tenant_id)
        .fetch_optional(&mut *tx)
        .await?
        .as_ref()
        .map(settings_from_row)
        .transpose()?;
        sqlx::query(&format!(
            "INSERT INTO sla_targets ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (tenant_id) DO UPDATE SET time_zone = excluded.time_zone, \
             business_hours = excluded.business_hours, holidays = excluded.holidays, \
             ack_critical_minutes = excluded.ack_critical_minutes, \
             resolve_critical_minutes = excluded.resolve_critical_minutes, \
             ack_warning_minutes = excluded.ack_warning_minutes, \
             resolve_warning_minutes = excluded.resolve_warning_minutes, \
             ack_info_minutes = excluded.ack_info_minutes, \
             resolve_info_minutes = excluded.resolve_info_minutes, \
             patch_critical_days = excluded.patch_critical_days, \
             updated_by = excluded.updated_by, updated_at = excluded.updated_at"
        ))
        .bind(&new.tenant_id)
        .bind(&new.time_zone)
        .bind(&new.business_hours)
        .bind(&new.holidays)
        .bind(new.critical.acknowledge_minutes)
        .bind(new.critical.resolve_minutes)
        .bind(new.warning.acknowledge_minutes)
        .bind(new.warning.resolve_minutes)
        .bind(new.info.acknowledge_minutes)
        .bind(new.info.resolve_minutes)
        .bind(new.patch_critical_days)
        .bind(&new.updated_by)
        .bind(new.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(unique_or_missing("tenant"))?;
        let before = match before {
            Some(mut before) => {
                before.uptime = uptime_targets(&mut *tx, &new.tenant_id).await?;
                Some(before)
            }
            None => None,
        };
        sqlx::query("DELETE FROM sla_uptime_targets WHERE tenant_id = $1")
            .bind(&new.tenant_id)
            .execute(&mut *tx)
            .await?;
        for target in &new.uptime {
            sqlx::query(
                "INSERT INTO sla_uptime_targets (tenant_id, group_key, group_name, basis_points) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&new.tenant_id)
            .bind(&target.group_key)
            .bind(&target.group_name)
            .bind(target.basis_points)
            .execute(&mut *tx)
            .await
            .map_err(unique_or_missing("uptime target"))?;
        }
        let detail = match before {
            Some(before) => format!("from {} to {}", before.summary(), new.summary()),
            None => format!("set {}", new.summary()),
        };
        let event = NewAuditEvent::new(
            new.updated_at,
            &new.updated_by,
            AuditAction::SlaChanged,
            &new.tenant_id,
        )
        .in_tenant(Some(&new.tenant_id))
        .with_detail(detail);
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The alerts of `tenant_id` (inside `scope`) opened in `[since,
    /// until)`, oldest first, at most `limit`: what SLA attainment is
    /// computed from.
    pub async fn sla_alerts(
        &self,
        scope: &TenantScope,
        tenant_id: &str,
        since: Millis,
        until: Millis,
        limit: u32,
    ) -> Result<Vec<SlaAlert>, StoreError> {
        let sql = format!(
            "SELECT a.id, a.kind, a.severity, a.summary, a.opened_at, a.acknowledged_at, \
             a.resolved_at FROM alerts a WHERE {} AND a.tenant_id = $3 \
             AND a.opened_at >= $4 AND a.opened_at < $5 ORDER BY a.opened_at, a.id LIMIT $6",
            in_scope!("a.tenant_id")
        );
        let (all, operator) = scope.args();
        let rows = sqlx::query(&sql)
            .bind(all)
            .bind(operator)
            .bind(tenant_id)
            .bind(since)
            .bind(until)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let severity: String = row.try_get("severity")?;
                Ok(SlaAlert {
                    id: row.try_get("id")?,
                    kind: row.try_get("kind")?,
                    severity: Severity::parse(&severity)
                        .ok_or_else(|| StoreError::Corrupt("alerts: severity".to_owned()))?,
                    summary: row.try_get("summary")?,
                    opened_at: row.try_get("opened_at")?,
                    acknowledged_at: row.try_get("acknowledged_at")?,
                    resolved_at: row.try_get("resolved_at")?,
                })
            })
            .collect()
    }
}

/// A tenant's uptime targets, by group key.
async fn uptime_targets<'c, E>(
    executor: E,
    tenant_id: &str,
) -> Result<Vec<UptimeTarget>, StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let rows = sqlx::query(
        "SELECT group_name, group_key, basis_points FROM sla_uptime_targets \
         WHERE tenant_id = $1 ORDER BY group_key",
    )
    .bind(tenant_id)
    .fetch_all(executor)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(UptimeTarget {
                group_name: row.try_get("group_name")?,
                group_key: row.try_get("group_key")?,
                basis_points: row.try_get("basis_points")?,
            })
        })
        .collect()
}

impl Store {
    /// What uptime per group is computed from: the devices of `tenant_id`
    /// (inside `scope`) in a group with an uptime target, and their
    /// outages overlapping `[since, until)`, oldest first, at most `limit`.
    pub async fn sla_uptime_inputs(
        &self,
        scope: &TenantScope,
        tenant_id: &str,
        since: Millis,
        until: Millis,
        limit: u32,
    ) -> Result<(Vec<UptimeDevice>, Vec<Outage>), StoreError> {
        let (all, operator) = scope.args();
        let sql = format!(
            "SELECT d.id, d.hostname, g.group_key, d.enrolled_at FROM devices d \
             JOIN device_groups g ON g.device_id = d.id \
             JOIN sla_uptime_targets u ON u.tenant_id = d.tenant_id AND u.group_key = g.group_key \
             WHERE {} AND d.tenant_id = $3 ORDER BY g.group_key, d.hostname, d.id LIMIT $4",
            in_scope!("d.tenant_id")
        );
        let rows = sqlx::query(&sql)
            .bind(all)
            .bind(operator)
            .bind(tenant_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let devices = rows
            .iter()
            .map(|row| {
                Ok(UptimeDevice {
                    device_id: row.try_get("id")?,
                    hostname: row.try_get("hostname")?,
                    group_key: row.try_get("group_key")?,
                    enrolled_at: row.try_get("enrolled_at")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let sql = format!(
            "SELECT a.device_id, a.opened_at, a.resolved_at FROM alerts a \
             JOIN device_groups g ON g.device_id = a.device_id \
             JOIN sla_uptime_targets u ON u.tenant_id = a.tenant_id AND u.group_key = g.group_key \
             WHERE {} AND a.tenant_id = $3 AND a.kind = 'device.offline' AND a.silenced IS NULL \
             AND a.opened_at < $5 AND (a.resolved_at IS NULL OR a.resolved_at > $4) \
             ORDER BY a.opened_at, a.id LIMIT $6",
            in_scope!("a.tenant_id")
        );
        let rows = sqlx::query(&sql)
            .bind(all)
            .bind(operator)
            .bind(tenant_id)
            .bind(since)
            .bind(until)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let outages = rows
            .iter()
            .map(|row| {
                Ok(Outage {
                    device_id: row.try_get("device_id")?,
                    from: row.try_get("opened_at")?,
                    until: row.try_get("resolved_at")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((devices, outages))
    }
}
