//! Alerts (migration 0016, RFD 0007 "Alerts"); the channels they go to
//! and the outbox of notifications are in [`crate::notifications`].
//!
//! [`Store::raise_alert`] opens an alert and, in the same transaction,
//! queues one notification per matching channel; while an alert with the
//! same `dedup_key` is unresolved it only counts another occurrence, so a
//! flapping source sends one message, not fifty. The notifier takes due
//! rows from the outbox and records each attempt.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::insert_audit;
use crate::error::unique_or_missing;
use crate::notifications::{CHANNEL_COLUMNS, NotificationEvent, channel_from_row};
use crate::{AuditAction, Millis, NewAuditEvent, Store, StoreError, TenantScope, in_scope};

/// How urgent an alert is; channels choose a minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    Open,
    Acknowledged,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Open => "open",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Open, Self::Acknowledged, Self::Resolved]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// An alert to raise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    pub tenant_id: Option<String>,
    pub device_id: Option<String>,
    pub kind: String,
    pub severity: Severity,
    pub dedup_key: String,
    pub summary: String,
    pub detail: String,
    /// The log entry it comes from (none for what the server observed
    /// itself, such as a device gone silent).
    pub log_id: Option<String>,
    pub log_idx: Option<u64>,
    /// Why nobody is told (a maintenance window): the alert is recorded
    /// and shown, and no notification is queued.
    pub silenced: Option<String>,
}

/// A stored alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub id: String,
    pub tenant_id: Option<String>,
    pub tenant_name: Option<String>,
    pub device_id: Option<String>,
    pub kind: String,
    pub severity: Severity,
    pub summary: String,
    pub detail: String,
    pub state: AlertState,
    pub opened_at: Millis,
    pub last_seen_at: Millis,
    pub occurrences: i64,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<Millis>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<Millis>,
    pub log_id: Option<String>,
    pub log_idx: Option<u64>,
    pub silenced: Option<String>,
}

/// What [`Store::raise_alert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raised {
    /// A new alert, with this many notifications queued.
    Opened { id: String, queued: usize },
    /// An unresolved alert with the same key counted one more occurrence.
    Repeated { id: String },
}

/// What [`Store::alert_counts`] counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertCounts {
    pub unresolved: Vec<(Severity, i64)>,
    pub notifications_pending: i64,
    pub notifications_failed: i64,
}

/// What the console's live stream watches of the alerts in a scope
/// ([`Store::alert_pulse`]): when any of it moves, the pages say so.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertPulse {
    pub open: i64,
    pub acknowledged: i64,
    /// Unresolved critical alerts.
    pub critical: i64,
    /// The latest opening, acknowledgement or resolution (0: none); a
    /// repeat of an unresolved alert only counts an occurrence.
    pub changed_at: Millis,
}

/// The dedup key of a device's offline alert is this and the device id.
pub const OFFLINE_KEY_PREFIX: &str = "device.offline:";

/// Longest summary and detail kept (the texts come partly from agents).
pub const MAX_SUMMARY: usize = 300;
pub const MAX_DETAIL: usize = 4000;

const ALERT_COLUMNS: &str = "a.id, a.tenant_id, t.name AS tenant_name, a.device_id, a.kind, \
     a.severity, a.summary, a.detail, a.state, a.opened_at, a.last_seen_at, a.occurrences, \
     a.acknowledged_by, a.acknowledged_at, a.resolved_by, a.resolved_at, a.log_id, a.log_idx, \
     a.silenced";

pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("alerts: {what}"))
}

fn alert_from_row(row: &AnyRow) -> Result<Alert, StoreError> {
    let severity: String = row.try_get("severity")?;
    let state: String = row.try_get("state")?;
    let log_idx: Option<i64> = row.try_get("log_idx")?;
    Ok(Alert {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        tenant_name: row.try_get("tenant_name")?,
        device_id: row.try_get("device_id")?,
        kind: row.try_get("kind")?,
        severity: Severity::parse(&severity).ok_or_else(|| corrupt("severity"))?,
        summary: row.try_get("summary")?,
        detail: row.try_get("detail")?,
        state: AlertState::parse(&state).ok_or_else(|| corrupt("state"))?,
        opened_at: row.try_get("opened_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        occurrences: row.try_get("occurrences")?,
        acknowledged_by: row.try_get("acknowledged_by")?,
        acknowledged_at: row.try_get("acknowledged_at")?,
        resolved_by: row.try_get("resolved_by")?,
        resolved_at: row.try_get("resolved_at")?,
        log_id: row.try_get("log_id")?,
        log_idx: log_idx
            .map(u64::try_from)
            .transpose()
            .map_err(|_| corrupt("log index"))?,
        silenced: row.try_get("silenced")?,
    })
}

/// `text` cut to at most `max` bytes on a character boundary.
pub(crate) fn bounded(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl Store {
    /// Opens `new`, queueing a notification for every channel of its
    /// tenant (and every MSP-wide channel) whose minimum it reaches, or,
    /// when an alert with its key is unresolved, counts one more occurrence.
    /// `business_hours` says whether the tenant is in its business hours
    /// now (`None`: unknown), for channels that are told only then or only
    /// outside them.
    pub async fn raise_alert(
        &self,
        new: &NewAlert,
        now: Millis,
        business_hours: Option<bool>,
    ) -> Result<Raised, StoreError> {
        match self.raise_alert_once(new, now, business_hours).await {
            // Another raiser opened the same key between our look and our
            // insert: it is now a repeat.
            Err(StoreError::Conflict(_)) => self.raise_alert_once(new, now, business_hours).await,
            other => other,
        }
    }

    async fn raise_alert_once(
        &self,
        new: &NewAlert,
        now: Millis,
        business_hours: Option<bool>,
    ) -> Result<Raised, StoreError> {
        let log_idx = new
            .log_idx
            .map(i64::try_from)
            .transpose()
            .map_err(|_| StoreError::Invalid("log index"))?;
        let mut tx = self.pool.begin().await?;
        let repeated: Option<String> = sqlx::query_scalar(
            "UPDATE alerts SET occurrences = occurrences + 1, last_seen_at = $2 \
             WHERE dedup_key = $1 AND state <> 'resolved' RETURNING id",
        )
        .bind(&new.dedup_key)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = repeated {
            tx.commit().await?;
            return Ok(Raised::Repeated { id });
        }
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO alerts (id, tenant_id, device_id, kind, severity, dedup_key, summary, \
             detail, state, opened_at, last_seen_at, occurrences, log_id, log_idx, silenced) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', $9, $9, 1, $10, $11, $12)",
        )
        .bind(&id)
        .bind(new.tenant_id.as_deref())
        .bind(new.device_id.as_deref())
        .bind(&new.kind)
        .bind(new.severity.as_str())
        .bind(&new.dedup_key)
        .bind(bounded(&new.summary, MAX_SUMMARY))
        .bind(bounded(&new.detail, MAX_DETAIL))
        .bind(now)
        .bind(new.log_id.as_deref())
        .bind(log_idx)
        .bind(new.silenced.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(unique_or_missing("an unresolved alert with this key"))?;
        if new.silenced.is_some() {
            tx.commit().await?;
            return Ok(Raised::Opened { id, queued: 0 });
        }
        let rows = sqlx::query(&format!(
            "SELECT {CHANNEL_COLUMNS} FROM notification_channels c \
             WHERE c.removed_at IS NULL AND (c.tenant_id IS NULL OR c.tenant_id = $1)"
        ))
        .bind(new.tenant_id.as_deref())
        .fetch_all(&mut *tx)
        .await?;
        let mut queued = 0;
        for row in &rows {
            let channel = channel_from_row(row)?;
            // Escalation channels are queued later, if nobody acknowledges.
            if new.severity < channel.min_severity
                || channel.escalate_after_ms.is_some()
                || !channel.hours.tells(business_hours)
            {
                continue;
            }
            sqlx::query(
                "INSERT INTO notifications (id, alert_id, channel_id, state, attempts, \
                 next_attempt_at, created_at) VALUES ($1, $2, $3, 'pending', 0, $4, $4)",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(&id)
            .bind(&channel.id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            queued += 1;
        }
        tx.commit().await?;
        Ok(Raised::Opened { id, queued })
    }

    /// Alerts inside `scope` (MSP-wide ones only for [`TenantScope::All`]),
    /// newest first: of one tenant if given, in one state if given.
    pub async fn alerts(
        &self,
        scope: &TenantScope,
        tenant_id: Option<&str>,
        state: Option<AlertState>,
        limit: u32,
    ) -> Result<Vec<Alert>, StoreError> {
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts a LEFT JOIN tenants t ON t.id = a.tenant_id \
             WHERE {} AND ($3 = '' OR a.tenant_id = $3) AND ($4 = '' OR a.state = $4) \
             ORDER BY a.opened_at DESC, a.id LIMIT $5",
            in_scope!("a.tenant_id")
        );
        let (all, operator) = scope.args();
        let rows = sqlx::query(&sql)
            .bind(all)
            .bind(operator)
            .bind(tenant_id.unwrap_or(""))
            .bind(state.map_or("", AlertState::as_str))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(alert_from_row).collect()
    }

    /// One alert inside `scope`.
    pub async fn alert(&self, scope: &TenantScope, id: &str) -> Result<Option<Alert>, StoreError> {
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts a LEFT JOIN tenants t ON t.id = a.tenant_id \
             WHERE {} AND a.id = $3",
            in_scope!("a.tenant_id")
        );
        let (all, operator) = scope.args();
        let row = sqlx::query(&sql)
            .bind(all)
            .bind(operator)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(alert_from_row).transpose()
    }

    /// Moves alert `id` to `to` (acknowledged from open; resolved from open
    /// or acknowledged) as `actor`, recording it in the audit log in the
    /// same transaction. `Conflict` when it is not in a state that allows it.
    pub async fn set_alert_state(
        &self,
        scope: &TenantScope,
        id: &str,
        to: AlertState,
        actor: &str,
        now: Millis,
    ) -> Result<Alert, StoreError> {
        let alert = self.alert(scope, id).await?.ok_or(StoreError::NotFound)?;
        let (sql, action) = match to {
            AlertState::Acknowledged => (
                "UPDATE alerts SET state = 'acknowledged', acknowledged_by = $2, \
                 acknowledged_at = $3 WHERE id = $1 AND state = 'open'",
                AuditAction::AlertAcknowledged,
            ),
            AlertState::Resolved => (
                "UPDATE alerts SET state = 'resolved', resolved_by = $2, resolved_at = $3 \
                 WHERE id = $1 AND state <> 'resolved'",
                AuditAction::AlertResolved,
            ),
            AlertState::Open => return Err(StoreError::Invalid("an alert cannot be reopened")),
        };
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(sql)
            .bind(id)
            .bind(actor)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(
                "the alert is not in a state that allows this",
            ));
        }
        let event = NewAuditEvent::new(now, actor, action, id)
            .in_tenant(alert.tenant_id.as_deref())
            .with_detail(format!("{} {}", alert.kind, alert.summary));
        insert_audit(&mut tx, &event).await?;
        let follow_up = match to {
            AlertState::Acknowledged => NotificationEvent::Acknowledge,
            _ => NotificationEvent::Resolve,
        };
        // Every channel told of the alert is told what became of it: the
        // PagerDuty incident follows it there, a mailbox or a chat room
        // learns who took it (a trigger given up on told nobody).
        let channels: Vec<String> = sqlx::query_scalar(
            "SELECT n.channel_id FROM notifications n \
             WHERE n.alert_id = $1 AND n.event = 'trigger' AND n.state <> 'failed' \
             ORDER BY n.channel_id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        for channel_id in &channels {
            sqlx::query(
                "INSERT INTO notifications (id, alert_id, channel_id, event, state, attempts, \
                 next_attempt_at, created_at) VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5) \
                 ON CONFLICT (alert_id, channel_id, event) DO NOTHING",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(id)
            .bind(channel_id)
            .bind(follow_up.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.alert(scope, id).await?.ok_or(StoreError::NotFound)
    }

    /// Devices last heard of in `[since, until)` that are not known to be
    /// back and have no unresolved `device.offline` alert: (device id,
    /// tenant id, host name, last seen), at most `limit`.
    pub async fn devices_gone_silent(
        &self,
        since: Millis,
        until: Millis,
        limit: u32,
    ) -> Result<Vec<(String, String, String, Millis)>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.id, d.tenant_id, d.hostname, d.last_seen_at FROM devices d \
             WHERE d.last_seen_at >= $1 AND d.last_seen_at < $2 AND NOT EXISTS ( \
               SELECT 1 FROM alerts a WHERE a.dedup_key = $3 || d.id AND a.state <> 'resolved') \
             ORDER BY d.last_seen_at, d.id LIMIT $4",
        )
        .bind(since)
        .bind(until)
        .bind(OFFLINE_KEY_PREFIX)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("id")?,
                    row.try_get("tenant_id")?,
                    row.try_get("hostname")?,
                    row.try_get("last_seen_at")?,
                ))
            })
            .collect()
    }

    /// The unresolved `device.offline` alerts: (alert id, device id).
    pub async fn unresolved_offline_alerts(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, device_id FROM alerts WHERE kind = 'device.offline' \
             AND state <> 'resolved' AND device_id IS NOT NULL ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("device_id")?)))
            .collect()
    }

    /// The counts and latest change of the alerts inside `scope` (MSP-wide
    /// ones only for [`TenantScope::All`]), in one indexed scan.
    pub async fn alert_pulse(&self, scope: &TenantScope) -> Result<AlertPulse, StoreError> {
        let sql = format!(
            "SELECT \
               COALESCE(SUM(CASE WHEN a.state = 'open' THEN 1 ELSE 0 END), 0) AS open_n, \
               COALESCE(SUM(CASE WHEN a.state = 'acknowledged' THEN 1 ELSE 0 END), 0) AS ack_n, \
               COALESCE(SUM(CASE WHEN a.state <> 'resolved' AND a.severity = 'critical' \
                 THEN 1 ELSE 0 END), 0) AS critical_n, \
               MAX(a.opened_at) AS opened, MAX(a.acknowledged_at) AS acked, \
               MAX(a.resolved_at) AS resolved \
             FROM alerts a WHERE {}",
            in_scope!("a.tenant_id")
        );
        let (all, operator) = scope.args();
        let row = sqlx::query(&sql)
            .bind(all)
            .bind(operator)
            .fetch_one(&self.pool)
            .await?;
        let latest = ["opened", "acked", "resolved"]
            .into_iter()
            .map(|c| row.try_get::<Option<i64>, _>(c))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(0);
        Ok(AlertPulse {
            open: row.try_get("open_n")?,
            acknowledged: row.try_get("ack_n")?,
            critical: row.try_get("critical_n")?,
            changed_at: latest,
        })
    }

    /// For the server's own metrics: unresolved alerts by severity, and
    /// notifications pending and given up.
    pub async fn alert_counts(&self) -> Result<AlertCounts, StoreError> {
        let mut counts = AlertCounts::default();
        let rows = sqlx::query(
            "SELECT severity, COUNT(*) AS n FROM alerts WHERE state <> 'resolved' GROUP BY severity",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            let severity: String = row.try_get("severity")?;
            let n: i64 = row.try_get("n")?;
            let severity = Severity::parse(&severity).ok_or_else(|| corrupt("severity"))?;
            counts.unresolved.push((severity, n));
        }
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM notifications WHERE state <> 'sent' GROUP BY state",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            let state: String = row.try_get("state")?;
            let n: i64 = row.try_get("n")?;
            match state.as_str() {
                "pending" => counts.notifications_pending = n,
                _ => counts.notifications_failed = n,
            }
        }
        Ok(counts)
    }
}
