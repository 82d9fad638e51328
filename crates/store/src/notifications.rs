//! Where alerts go: the channels (e-mail, webhooks, PagerDuty; routed by
//! severity, escalation delay and business hours) and the outbox of
//! notifications the notifier sends and retries (migrations 0016, 0026,
//! 0039; RFD 0007). Alerts themselves are in [`crate::alerts`].

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::alerts::{Alert, Severity, bounded, corrupt};
use crate::audit::insert_audit;
use crate::error::unique_or_missing;
use crate::{AuditAction, Millis, NewAuditEvent, Store, StoreError, TenantScope, in_scope};

/// Channel kinds. A PagerDuty channel is stored as a webhook whose body
/// is an Events v2 event (`format = 'pagerduty'`; migration 0039).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    Email,
    Webhook,
    PagerDuty,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Email => "email",
            ChannelKind::Webhook => "webhook",
            ChannelKind::PagerDuty => "pagerduty",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Email, Self::Webhook, Self::PagerDuty]
            .into_iter()
            .find(|k| k.as_str() == text)
    }

    /// The `kind` and `format` columns.
    fn columns(self) -> (&'static str, &'static str) {
        match self {
            ChannelKind::Email => ("email", "default"),
            ChannelKind::Webhook => ("webhook", "default"),
            ChannelKind::PagerDuty => ("webhook", "pagerduty"),
        }
    }

    fn from_columns(kind: &str, format: &str) -> Option<Self> {
        match (kind, format) {
            ("email", "default") => Some(ChannelKind::Email),
            ("webhook", "default") => Some(ChannelKind::Webhook),
            ("webhook", "pagerduty") => Some(ChannelKind::PagerDuty),
            _ => None,
        }
    }
}

/// What a notification tells its channel: an alert opened (every
/// channel), or, for PagerDuty, that it was acknowledged or resolved, so
/// the incident there follows the alert here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationEvent {
    Trigger,
    Acknowledge,
    Resolve,
}

impl NotificationEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationEvent::Trigger => "trigger",
            NotificationEvent::Acknowledge => "acknowledge",
            NotificationEvent::Resolve => "resolve",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Trigger, Self::Acknowledge, Self::Resolve]
            .into_iter()
            .find(|e| e.as_str() == text)
    }
}

/// When a channel is told of an alert, by the tenant's business hours
/// (its SLA calendar) at the moment the alert opens or escalates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelHours {
    Always,
    /// Inside business hours only (the team's mail by day).
    Business,
    /// Outside business hours only (the on-call pager by night).
    After,
}

impl ChannelHours {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelHours::Always => "always",
            ChannelHours::Business => "business",
            ChannelHours::After => "after",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Always, Self::Business, Self::After]
            .into_iter()
            .find(|h| h.as_str() == text)
    }

    /// Whether a channel of these hours is told now; `business_hours`
    /// `None` (the tenant has no calendar, or it cannot be read) tells
    /// every channel: missing settings never drop an alert.
    pub fn tells(self, business_hours: Option<bool>) -> bool {
        match (self, business_hours) {
            (ChannelHours::Always, _) | (_, None) => true,
            (ChannelHours::Business, Some(open)) => open,
            (ChannelHours::After, Some(open)) => !open,
        }
    }
}

/// An escalation the notifier may queue: the alert, the channel, and what
/// decides whether the channel's hours allow it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalation {
    pub alert_id: String,
    pub channel_id: String,
    pub tenant_id: Option<String>,
    pub hours: ChannelHours,
}

/// A channel to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChannel {
    /// `None`: every alert, MSP-wide ones included.
    pub tenant_id: Option<String>,
    pub kind: ChannelKind,
    pub target: String,
    pub min_severity: Severity,
    pub created_by: String,
    /// Told only of alerts still open (unacknowledged) this long after
    /// they opened: the next line of an escalation.
    pub escalate_after_ms: Option<i64>,
    /// The PagerDuty integration's routing key (PagerDuty channels only).
    pub routing_key: Option<String>,
    pub hours: ChannelHours,
}

/// A stored channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationChannel {
    pub id: String,
    pub tenant_id: Option<String>,
    pub kind: ChannelKind,
    pub target: String,
    pub min_severity: Severity,
    pub created_by: String,
    pub created_at: Millis,
    pub escalate_after_ms: Option<i64>,
    pub routing_key: Option<String>,
    pub hours: ChannelHours,
}

/// A notification whose time has come, with what it needs to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueNotification {
    pub id: String,
    pub event: NotificationEvent,
    pub attempts: u32,
    pub alert: Alert,
    pub channel: NotificationChannel,
}

/// Longest channel target (an address or a URL).
pub const MAX_TARGET: usize = 512;
/// Longest PagerDuty routing key (PagerDuty's are 32 characters).
pub const MAX_ROUTING_KEY: usize = 64;

pub(crate) const CHANNEL_COLUMNS: &str = "c.id, c.tenant_id, c.kind, c.target, c.min_severity, c.created_by, c.created_at, \
     c.escalate_after_ms, c.format, c.routing_key, c.hours";

pub(crate) fn channel_from_row(row: &AnyRow) -> Result<NotificationChannel, StoreError> {
    let kind: String = row.try_get("kind")?;
    let format: String = row.try_get("format")?;
    let min: String = row.try_get("min_severity")?;
    let hours: String = row.try_get("hours")?;
    Ok(NotificationChannel {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        kind: ChannelKind::from_columns(&kind, &format).ok_or_else(|| corrupt("channel kind"))?,
        target: row.try_get("target")?,
        min_severity: Severity::parse(&min).ok_or_else(|| corrupt("channel severity"))?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        escalate_after_ms: row.try_get("escalate_after_ms")?,
        routing_key: row.try_get("routing_key")?,
        hours: ChannelHours::parse(&hours).ok_or_else(|| corrupt("channel hours"))?,
    })
}

impl Store {
    /// Adds a channel, recorded in the audit log.
    pub async fn add_notification_channel(
        &self,
        new: &NewChannel,
        now: Millis,
    ) -> Result<NotificationChannel, StoreError> {
        if new.target.is_empty() || new.target.len() > MAX_TARGET {
            return Err(StoreError::Invalid("channel target length"));
        }
        if (new.kind == ChannelKind::PagerDuty) != new.routing_key.is_some()
            || new
                .routing_key
                .as_ref()
                .is_some_and(|key| key.is_empty() || key.len() > MAX_ROUTING_KEY)
        {
            return Err(StoreError::Invalid(
                "a routing key is for PagerDuty channels, and every one has one",
            ));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO notification_channels (id, tenant_id, kind, target, min_severity, \
             created_by, created_at, escalate_after_ms, format, routing_key, hours) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&id)
        .bind(new.tenant_id.as_deref())
        .bind(new.kind.columns().0)
        .bind(&new.target)
        .bind(new.min_severity.as_str())
        .bind(&new.created_by)
        .bind(now)
        .bind(new.escalate_after_ms)
        .bind(new.kind.columns().1)
        .bind(new.routing_key.as_deref())
        .bind(new.hours.as_str())
        .execute(&mut *tx)
        .await
        .map_err(unique_or_missing("notification channel"))?;
        let event = NewAuditEvent::new(
            now,
            &new.created_by,
            AuditAction::NotificationChannelAdded,
            &id,
        )
        .in_tenant(new.tenant_id.as_deref())
        .with_detail(
            format!(
                "{} {} from {}{}",
                new.kind.as_str(),
                new.target,
                new.min_severity.as_str(),
                new.escalate_after_ms
                    .map(|ms| format!(", escalation after {} s", ms / 1000))
                    .unwrap_or_default()
            ) + match new.hours {
                ChannelHours::Always => "",
                ChannelHours::Business => ", in business hours only",
                ChannelHours::After => ", outside business hours only",
            },
        );
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(NotificationChannel {
            id,
            tenant_id: new.tenant_id.clone(),
            kind: new.kind,
            target: new.target.clone(),
            min_severity: new.min_severity,
            created_by: new.created_by.clone(),
            created_at: now,
            escalate_after_ms: new.escalate_after_ms,
            routing_key: new.routing_key.clone(),
            hours: new.hours,
        })
    }

    /// The escalations due at `now`: every escalation channel, for each
    /// open (unacknowledged, not silenced) alert of its tenant, of its
    /// severity or above, open for its delay, that it was not told of.
    /// The notifier drops those its hours forbid now and queues the rest
    /// ([`Store::queue_escalations`]) on every pass.
    pub async fn escalations_due(&self, now: Millis) -> Result<Vec<Escalation>, StoreError> {
        const RANK: &str = "CASE {} WHEN 'critical' THEN 2 WHEN 'warning' THEN 1 ELSE 0 END";
        let rank = |column: &str| RANK.replace("{}", column);
        let rows = sqlx::query(&format!(
            "SELECT a.id AS alert_id, c.id AS channel_id, a.tenant_id, c.hours FROM alerts a \
             JOIN notification_channels c ON (c.tenant_id IS NULL OR c.tenant_id = a.tenant_id) \
             WHERE a.state = 'open' AND a.silenced IS NULL AND c.removed_at IS NULL \
             AND c.escalate_after_ms IS NOT NULL AND a.opened_at + c.escalate_after_ms <= $1 \
             AND {} >= {} \
             AND NOT EXISTS (SELECT 1 FROM notifications n \
                             WHERE n.alert_id = a.id AND n.channel_id = c.id \
                             AND n.event = 'trigger') \
             ORDER BY a.opened_at, a.id LIMIT 500",
            rank("a.severity"),
            rank("c.min_severity")
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let hours: String = row.try_get("hours")?;
                Ok(Escalation {
                    alert_id: row.try_get("alert_id")?,
                    channel_id: row.try_get("channel_id")?,
                    tenant_id: row.try_get("tenant_id")?,
                    hours: ChannelHours::parse(&hours).ok_or_else(|| corrupt("channel hours"))?,
                })
            })
            .collect()
    }

    /// Queues `escalations`, due at `now`; returns how many were new (a
    /// concurrent pass may have queued one: the unique key decides).
    pub async fn queue_escalations(
        &self,
        escalations: &[Escalation],
        now: Millis,
    ) -> Result<usize, StoreError> {
        let mut queued = 0;
        for e in escalations {
            let done = sqlx::query(
                "INSERT INTO notifications (id, alert_id, channel_id, state, attempts, \
                 next_attempt_at, created_at) VALUES ($1, $2, $3, 'pending', 0, $4, $4) \
                 ON CONFLICT (alert_id, channel_id, event) DO NOTHING",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(&e.alert_id)
            .bind(&e.channel_id)
            .bind(now)
            .execute(&self.pool)
            .await?;
            queued += usize::try_from(done.rows_affected()).unwrap_or(0);
        }
        Ok(queued)
    }

    /// The channels in use of one tenant (`Some`) or the MSP-wide ones
    /// (`None`, owners only: the scope must be [`TenantScope::All`]).
    pub async fn notification_channels(
        &self,
        scope: &TenantScope,
        tenant_id: Option<&str>,
    ) -> Result<Vec<NotificationChannel>, StoreError> {
        let sql = format!(
            "SELECT {CHANNEL_COLUMNS} FROM notification_channels c WHERE c.removed_at IS NULL \
             AND {} AND (($3 = '' AND c.tenant_id IS NULL) OR c.tenant_id = $3) \
             ORDER BY c.created_at, c.id",
            in_scope!("c.tenant_id")
        );
        let (all, operator) = scope.args();
        let rows = sqlx::query(&sql)
            .bind(all)
            .bind(operator)
            .bind(tenant_id.unwrap_or(""))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(channel_from_row).collect()
    }

    /// One channel in use inside `scope`.
    pub async fn notification_channel(
        &self,
        scope: &TenantScope,
        id: &str,
    ) -> Result<Option<NotificationChannel>, StoreError> {
        let sql = format!(
            "SELECT {CHANNEL_COLUMNS} FROM notification_channels c WHERE c.removed_at IS NULL \
             AND {} AND c.id = $3",
            in_scope!("c.tenant_id")
        );
        let (all, operator) = scope.args();
        let row = sqlx::query(&sql)
            .bind(all)
            .bind(operator)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(channel_from_row).transpose()
    }

    /// Stops using a channel (its pending notifications are not sent),
    /// recorded in the audit log.
    pub async fn remove_notification_channel(
        &self,
        channel: &NotificationChannel,
        actor: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE notification_channels SET removed_at = $2 WHERE id = $1 AND removed_at IS NULL",
        )
        .bind(&channel.id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::NotFound);
        }
        sqlx::query(
            "UPDATE notifications SET state = 'failed', last_error = 'channel removed' \
             WHERE channel_id = $1 AND state = 'pending'",
        )
        .bind(&channel.id)
        .execute(&mut *tx)
        .await?;
        let event = NewAuditEvent::new(
            now,
            actor,
            AuditAction::NotificationChannelRemoved,
            &channel.id,
        )
        .in_tenant(channel.tenant_id.as_deref())
        .with_detail(format!("{} {}", channel.kind.as_str(), channel.target));
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Up to `limit` pending notifications due at `now`, oldest first. For
    /// one alert and channel, events go in order: an acknowledge or resolve
    /// waits while the trigger is pending, a resolve while the acknowledge
    /// is (nobody hears of a close before its opening).
    pub async fn due_notifications(
        &self,
        now: Millis,
        limit: u32,
    ) -> Result<Vec<DueNotification>, StoreError> {
        let rows = sqlx::query(
            "SELECT n.id, n.event, n.attempts, n.alert_id, n.channel_id FROM notifications n \
             WHERE n.state = 'pending' AND n.next_attempt_at <= $1 \
             AND NOT EXISTS ( \
                 SELECT 1 FROM notifications t WHERE t.alert_id = n.alert_id \
                 AND t.channel_id = n.channel_id AND t.state = 'pending' \
                 AND (CASE t.event WHEN 'trigger' THEN 0 WHEN 'acknowledge' THEN 1 ELSE 2 END) \
                   < (CASE n.event WHEN 'trigger' THEN 0 WHEN 'acknowledge' THEN 1 ELSE 2 END)) \
             ORDER BY n.next_attempt_at, n.id LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut due = Vec::with_capacity(rows.len());
        for row in &rows {
            let alert_id: String = row.try_get("alert_id")?;
            let channel_id: String = row.try_get("channel_id")?;
            let attempts: i64 = row.try_get("attempts")?;
            let event: String = row.try_get("event")?;
            let alert = self
                .alert(&TenantScope::All, &alert_id)
                .await?
                .ok_or_else(|| corrupt("notification of no alert"))?;
            let channel = sqlx::query(&format!(
                "SELECT {CHANNEL_COLUMNS} FROM notification_channels c WHERE c.id = $1"
            ))
            .bind(&channel_id)
            .fetch_one(&self.pool)
            .await?;
            due.push(DueNotification {
                id: row.try_get("id")?,
                event: NotificationEvent::parse(&event)
                    .ok_or_else(|| corrupt("notification event"))?,
                attempts: u32::try_from(attempts).map_err(|_| corrupt("attempts"))?,
                alert,
                channel: channel_from_row(&channel)?,
            });
        }
        Ok(due)
    }

    /// Records that notification `id` was sent (the receiver accepted it).
    pub async fn notification_sent(&self, id: &str, now: Millis) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE notifications SET state = 'sent', sent_at = $2, attempts = attempts + 1, \
             last_error = NULL WHERE id = $1 AND state = 'pending'",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a failed attempt: tried again at `retry_at`, or given up
    /// (`None`), which the audit log records.
    pub async fn notification_attempt_failed(
        &self,
        due: &DueNotification,
        error: &str,
        retry_at: Option<Millis>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let error = bounded(error, 500);
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE notifications SET attempts = attempts + 1, last_error = $2, \
             next_attempt_at = $3, state = $4 WHERE id = $1 AND state = 'pending'",
        )
        .bind(&due.id)
        .bind(&error)
        .bind(retry_at.unwrap_or(now))
        .bind(if retry_at.is_some() {
            "pending"
        } else {
            "failed"
        })
        .execute(&mut *tx)
        .await?;
        if retry_at.is_none() {
            let event = NewAuditEvent::new(
                now,
                "bulwark",
                AuditAction::NotificationFailed,
                &due.alert.id,
            )
            .in_tenant(due.alert.tenant_id.as_deref())
            .with_detail(format!(
                "{} {}: {error}",
                due.channel.kind.as_str(),
                due.channel.target
            ));
            insert_audit(&mut tx, &event).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The notifications of one alert: (channel kind, and the event when
    /// it is a follow-up; target, state, attempts, last error), for the
    /// alert's page.
    pub async fn alert_notifications(
        &self,
        alert_id: &str,
    ) -> Result<Vec<(String, String, String, i64, Option<String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.kind, c.format, n.event, c.target, n.state, n.attempts, n.last_error \
             FROM notifications n \
             JOIN notification_channels c ON c.id = n.channel_id WHERE n.alert_id = $1 \
             ORDER BY n.created_at, n.id",
        )
        .bind(alert_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("kind")?;
                let format: String = row.try_get("format")?;
                let event: String = row.try_get("event")?;
                let kind = ChannelKind::from_columns(&kind, &format)
                    .ok_or_else(|| corrupt("channel kind"))?;
                Ok((
                    if event == "trigger" {
                        kind.as_str().to_owned()
                    } else {
                        format!("{} {event}", kind.as_str())
                    },
                    row.try_get("target")?,
                    row.try_get("state")?,
                    row.try_get("attempts")?,
                    row.try_get("last_error")?,
                ))
            })
            .collect()
    }
}
