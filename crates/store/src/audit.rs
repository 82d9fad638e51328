//! The audit table, and the audit leaf appended to the transparency log
//! (`crate::transparency_log`) in the same transaction as each event: the tenant's
//! log for an event with a tenant, the MSP log otherwise. The table stays
//! as the queryable index; the log is what auditors verify.

use sqlx::{AnyConnection, Row};

use crate::transparency_log::{self, MSP_LOG, append_leaves};
use crate::{AuditAction, Millis, Store, StoreError, TenantScope, in_scope};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Position in the log; grows with every append.
    pub seq: i64,
    pub at: Millis,
    /// None for events that belong to no tenant (e.g. operator accounts).
    pub tenant_id: Option<String>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEvent {
    pub at: Millis,
    pub tenant_id: Option<String>,
    pub actor: String,
    pub action: AuditAction,
    pub target: String,
    pub detail: String,
}

impl NewAuditEvent {
    /// This event as its transparency-log leaf (RFD 0003).
    pub fn leaf(&self) -> bulwark_protocol::audit_leaf::AuditLeaf {
        bulwark_protocol::audit_leaf::AuditLeaf::new(
            self.at,
            self.tenant_id.clone(),
            self.actor.as_str(),
            self.action.as_str(),
            self.target.as_str(),
            self.detail.as_str(),
        )
    }

    /// An event that belongs to no tenant, with no detail; see the builders below.
    pub fn new(at: Millis, actor: &str, action: AuditAction, target: &str) -> Self {
        Self {
            at,
            tenant_id: None,
            actor: actor.to_owned(),
            action,
            target: target.to_owned(),
            detail: String::new(),
        }
    }

    pub fn in_tenant(mut self, tenant_id: Option<&str>) -> Self {
        self.tenant_id = tenant_id.map(str::to_owned);
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

/// Records `events` (and their log entries) in the caller's transaction:
/// the audit trail of a change commits with the change, or not at all.
pub(crate) async fn insert_events(
    conn: &mut sqlx::AnyConnection,
    events: &[NewAuditEvent],
) -> Result<(), StoreError> {
    for event in events {
        insert_audit(conn, event).await?;
    }
    Ok(())
}

/// Audit rows inserted by one statement (seven parameters each).
const AUDIT_CHUNK: usize = 200;

/// Records `events` like [`insert_events`], with one log append per log and
/// a few multi-row inserts instead of a round of statements per event: the
/// same rows and leaves, in the same order within each log.
pub(crate) async fn insert_events_batched(
    conn: &mut sqlx::AnyConnection,
    events: &[NewAuditEvent],
) -> Result<(), StoreError> {
    let mut logs: Vec<(&str, Vec<&NewAuditEvent>)> = Vec::new();
    for event in events {
        let log_id = audit_log_id(event);
        match logs.iter_mut().find(|(id, _)| *id == log_id) {
            Some((_, of_log)) => of_log.push(event),
            None => logs.push((log_id, vec![event])),
        }
    }
    for (log_id, of_log) in logs {
        let leaves: Vec<Vec<u8>> = of_log.iter().map(|e| e.leaf().encode()).collect();
        let at = of_log.iter().map(|e| e.at).max().unwrap_or_default();
        let first_idx = append_leaves(conn, log_id, &leaves, at).await?.first_idx;
        for (n, chunk) in of_log.chunks(AUDIT_CHUNK).enumerate() {
            let mut sql = String::from(
                "INSERT INTO audit_events (at, tenant_id, actor, action, target, detail, log_idx) VALUES ",
            );
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push(',');
                }
                let p = 7 * i;
                sql.push_str(&format!(
                    "(${},${},${},${},${},${},${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6,
                    p + 7
                ));
            }
            let mut query = sqlx::query(&sql);
            let start = first_idx + (n * AUDIT_CHUNK) as u64;
            for (i, event) in chunk.iter().enumerate() {
                // Below `i64::MAX`: the append checked the log's new size.
                query = query
                    .bind(event.at)
                    .bind(event.tenant_id.as_deref())
                    .bind(&event.actor)
                    .bind(event.action.as_str())
                    .bind(&event.target)
                    .bind(&event.detail)
                    .bind((start + i as u64) as i64);
            }
            query.execute(&mut *conn).await?;
        }
    }
    Ok(())
}

/// Appends an event inside a caller's transaction, and its leaf to its log
/// (locking that log's head until the transaction ends); returns its `seq`.
pub(crate) async fn insert_audit(
    conn: &mut sqlx::AnyConnection,
    event: &NewAuditEvent,
) -> Result<i64, StoreError> {
    let log_idx = append_audit_leaf(conn, event).await?;
    let seq = sqlx::query_scalar(
        "INSERT INTO audit_events (at, tenant_id, actor, action, target, detail, log_idx) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq",
    )
    .bind(event.at)
    .bind(event.tenant_id.as_deref())
    .bind(&event.actor)
    .bind(event.action.as_str())
    .bind(&event.target)
    .bind(&event.detail)
    // Below `i64::MAX`: the append checked the log's new size.
    .bind(log_idx as i64)
    .fetch_one(&mut *conn)
    .await?;
    Ok(seq)
}

/// The log an audit event belongs to: its tenant's, else [`MSP_LOG`].
pub fn audit_log_id(event: &NewAuditEvent) -> &str {
    event.tenant_id.as_deref().unwrap_or(MSP_LOG)
}

/// Appends an audit event's leaf to its log inside the caller's
/// transaction; returns its index in that log.
pub(crate) async fn append_audit_leaf(
    conn: &mut AnyConnection,
    event: &NewAuditEvent,
) -> Result<u64, StoreError> {
    let leaf = event.leaf().encode();
    let appended = append_leaves(conn, audit_log_id(event), &[leaf], event.at).await?;
    Ok(appended.first_idx)
}

impl Store {
    /// Removes entries `[from, below)` of `log_id` once they are archived
    /// and records `events` (`log.archived` in the MSP log and in the
    /// archived log itself), in one transaction
    /// (`transparency_log::prune_entries` says what stays and what it
    /// refuses). Returns how many entry rows were deleted.
    pub async fn prune_log_entries(
        &self,
        log_id: &str,
        from: u64,
        below: u64,
        events: &[NewAuditEvent],
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The prune writes first: it takes the head's lock, so appends to
        // this log wait until it commits.
        let deleted = transparency_log::prune_entries(&mut tx, log_id, from, below).await?;
        for event in events {
            insert_audit(&mut tx, event).await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }

    /// Appends an event, and its leaf to its log, in one transaction;
    /// returns its `seq`.
    pub async fn append_audit(&self, event: NewAuditEvent) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let seq = insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(seq)
    }

    /// Records an audit event that comes with no other change: a failed
    /// attempt (a wrong password, a refused step-up or approval) or an alarm
    /// (a refused trust statement, a failing SIEM sink). The event is the
    /// whole change, in a transaction of its own. A change's own events go to
    /// the store method that makes it, in the same transaction (invariant 4).
    /// A failure to record is logged loudly: the attempt fails either way.
    pub async fn record_event(&self, event: NewAuditEvent) {
        let action = event.action;
        if let Err(error) = self.append_audit(event).await {
            tracing::error!(%error, %action, "Cannot record audit event.");
        }
    }

    /// [`Store::append_audit`] inside the caller's transaction (see
    /// [`Store::begin`]), so that the event and its log entry commit with
    /// the change they record, or not at all.
    pub async fn append_audit_tx(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        event: &NewAuditEvent,
    ) -> Result<i64, StoreError> {
        insert_audit(tx, event).await
    }

    /// The newest `limit` events in scope, newest first, optionally only those
    /// of one tenant. An operator scope never sees events without a tenant.
    pub async fn list_audit(
        &self,
        scope: &TenantScope,
        tenant_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        const SQL: &str = concat!(
            "SELECT a.seq, a.at, a.tenant_id, a.actor, a.action, a.target, a.detail FROM audit_events a WHERE ",
            in_scope!("a.tenant_id"),
            " AND ($3 IS NULL OR a.tenant_id = $3) ORDER BY a.seq DESC LIMIT $4"
        );
        let (all, operator) = scope.args();
        let rows = sqlx::query(SQL)
            .bind(all)
            .bind(operator)
            .bind(tenant_id)
            .bind(limit.max(0))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEvent {
                    seq: row.try_get("seq")?,
                    at: row.try_get("at")?,
                    tenant_id: row.try_get("tenant_id")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    target: row.try_get("target")?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect()
    }
}
