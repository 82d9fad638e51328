//! Tenant trust statements (roots, policies, freeze/unfreeze) and what each
//! agent reports holding.
//!
//! The store keeps signed envelopes as bytes: the server verifies them
//! (`TrustRoot::verify_rotation`, `Policy::verify_update`,
//! `FreezeState::apply`) before storing, and the agent verifies them again.
//! The store only keeps the order those checks imply: roots are a chain
//! from v1 without gaps, and a policy or freeze statement is newer than
//! every earlier one of its kind, so "the latest" is always the highest
//! version.

use crate::AuditAction;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::error::unique_or_missing;
use crate::{Millis, Store, StoreError, TenantScope, in_scope};

pub use bulwark_protocol::message::TrustKind;

/// What a tenant's agents must hold: every root envelope (v1 first), the
/// latest policy and the latest freeze statement, each with its version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustSet {
    /// Root envelopes in version order, oldest (v1) first.
    pub roots: Vec<Vec<u8>>,
    pub policy: Option<(u64, Vec<u8>)>,
    pub freeze: Option<(u64, Vec<u8>)>,
}

/// What an agent last reported holding (`TrustStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTrust {
    pub device_id: String,
    pub root_version: u64,
    pub policy_version: u64,
    pub freeze_sequence: u64,
    pub frozen: bool,
    pub updated_at: Millis,
}

/// A u64 for a BIGINT column; `Invalid(what)` above `i64::MAX`.
pub(crate) fn to_db(value: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Invalid(what))
}

/// A BIGINT column that holds a u64 (the schema refuses negative values).
pub(crate) fn from_db(row: &AnyRow, column: &str) -> Result<u64, StoreError> {
    let value: i64 = row.try_get(column)?;
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative {column} {value}")))
}

fn device_trust_from_row(row: &AnyRow) -> Result<DeviceTrust, StoreError> {
    let frozen: i64 = row.try_get("frozen")?;
    Ok(DeviceTrust {
        device_id: row.try_get("device_id")?,
        root_version: from_db(row, "root_version")?,
        policy_version: from_db(row, "policy_version")?,
        freeze_sequence: from_db(row, "freeze_sequence")?,
        frozen: frozen != 0,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Inserts a verified statement inside `tx`, checking the order its kind
/// needs (see [`Store::add_trust_statement`] for the answers).
pub(crate) async fn insert_trust_statement(
    tx: &mut Transaction<'_, Any>,
    tenant_id: &str,
    kind: TrustKind,
    version: u64,
    envelope: &[u8],
    created_by: Option<&str>,
    now: Millis,
) -> Result<(), StoreError> {
    let version = to_db(version, "trust statement version out of range")?;
    // A write first: concurrent additions to one tenant serialise here
    // (the write lock on SQLite; on PostgreSQL the same key waits for
    // the other insert and then conflicts).
    sqlx::query(
        "INSERT INTO trust_statements (tenant_id, kind, version, envelope, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(tenant_id)
    .bind(kind.as_str())
    .bind(version)
    .bind(envelope)
    .bind(created_by)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(unique_or_missing("trust statement version already exists"))?;
    let row = sqlx::query(
        "SELECT COUNT(*) AS others, COALESCE(MAX(version), -1) AS highest \
         FROM trust_statements WHERE tenant_id = $1 AND kind = $2 AND version <> $3",
    )
    .bind(tenant_id)
    .bind(kind.as_str())
    .bind(version)
    .fetch_one(&mut **tx)
    .await?;
    let others: i64 = row.try_get("others")?;
    let highest: i64 = row.try_get("highest")?;
    match kind {
        TrustKind::Root => {
            let follows = if others == 0 {
                version == 1
            } else {
                highest.checked_add(1) == Some(version)
            };
            if !follows {
                return Err(StoreError::Conflict(
                    "root version must follow the latest root",
                ));
            }
        }
        TrustKind::Policy | TrustKind::Freeze => {
            if highest > version {
                return Err(StoreError::Conflict(
                    "trust statement is older than the latest",
                ));
            }
        }
    }
    // Open proposals this statement overtakes could never be published.
    sqlx::query(
        "UPDATE trust_proposals SET state = 'withdrawn' \
         WHERE tenant_id = $1 AND kind = $2 AND state = 'open' AND version <= $3",
    )
    .bind(tenant_id)
    .bind(kind.as_str())
    .bind(version)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Stores a trust statement the server has verified, in one transaction.
    ///
    /// - `Conflict("trust statement version already exists")` if the tenant
    ///   already has this kind and version (the API's 409);
    /// - `Conflict("root version must follow the latest root")` for a root
    ///   that is not v1 of a tenant without roots or the latest + 1;
    /// - `Conflict("trust statement is older than the latest")` for a policy
    ///   or freeze statement below the latest of its kind;
    /// - `Invalid` for a version above `i64::MAX`, `NotFound` for an unknown tenant.
    ///
    /// Open proposals of the same kind at or below this version (which
    /// could never be published now) are withdrawn in the same transaction.
    ///
    /// On any error nothing is stored.
    // One argument per column, plus the events (as `record_approval`).
    #[allow(clippy::too_many_arguments)]
    pub async fn add_trust_statement(
        &self,
        tenant_id: &str,
        kind: TrustKind,
        version: u64,
        envelope: &[u8],
        created_by: Option<&str>,
        now: Millis,
        events: &[crate::NewAuditEvent],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_trust_statement(&mut tx, tenant_id, kind, version, envelope, created_by, now)
            .await?;
        crate::audit::insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The trust statements of a tenant, if it is in scope (an empty set
    /// otherwise, as for a tenant with none).
    pub async fn trust_statements(
        &self,
        scope: &TenantScope,
        tenant_id: &str,
    ) -> Result<TrustSet, StoreError> {
        const SQL: &str = concat!(
            "SELECT s.kind, s.version, s.envelope FROM trust_statements s WHERE ",
            in_scope!("s.tenant_id"),
            " AND s.tenant_id = $3 AND (s.kind = 'root' OR s.version = ",
            "(SELECT MAX(m.version) FROM trust_statements m",
            " WHERE m.tenant_id = s.tenant_id AND m.kind = s.kind))",
            " ORDER BY s.kind, s.version"
        );
        let (all, operator) = scope.args();
        let rows = sqlx::query(SQL)
            .bind(all)
            .bind(operator)
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?;
        let mut set = TrustSet::default();
        for row in &rows {
            let kind: String = row.try_get("kind")?;
            let version = from_db(row, "version")?;
            let envelope: Vec<u8> = row.try_get("envelope")?;
            match TrustKind::parse(&kind) {
                Some(TrustKind::Root) => set.roots.push(envelope),
                Some(TrustKind::Policy) => set.policy = Some((version, envelope)),
                Some(TrustKind::Freeze) => set.freeze = Some((version, envelope)),
                None => return Err(StoreError::Corrupt(format!("trust kind {kind:?}"))),
            }
        }
        Ok(set)
    }

    /// Every trust statement a tenant in scope ever published (roots,
    /// policies, freezes; oldest version first per kind), for auditors who
    /// replay its log.
    pub async fn trust_history(
        &self,
        scope: &TenantScope,
        tenant_id: &str,
    ) -> Result<Vec<(TrustKind, u64, Vec<u8>)>, StoreError> {
        const SQL: &str = concat!(
            "SELECT s.kind, s.version, s.envelope FROM trust_statements s WHERE ",
            in_scope!("s.tenant_id"),
            " AND s.tenant_id = $3 ORDER BY s.kind, s.version"
        );
        let (all, operator) = scope.args();
        let rows = sqlx::query(SQL)
            .bind(all)
            .bind(operator)
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("kind")?;
                let kind = TrustKind::parse(&kind)
                    .ok_or_else(|| StoreError::Corrupt(format!("trust kind {kind:?}")))?;
                Ok((kind, from_db(row, "version")?, row.try_get("envelope")?))
            })
            .collect()
    }

    /// The trust statements of a device's tenant, for the agent gateway.
    /// Unscoped: the caller is a device, not an operator; the gateway
    /// passes the tenant of the device it authenticated.
    pub async fn trust_for_device_tenant(&self, tenant_id: &str) -> Result<TrustSet, StoreError> {
        self.trust_statements(&TenantScope::All, tenant_id).await
    }

    /// Records what a device reports holding (insert or replace). When
    /// that differs from its last report (or is its first), appends
    /// `device.trust_applied` to its tenant's log in the same transaction,
    /// so an auditor sees when each device took each root, policy and
    /// freeze statement. Returns whether it changed.
    /// `NotFound` for an unknown device, `Invalid` for a number above `i64::MAX`.
    pub async fn set_device_trust(
        &self,
        device_id: &str,
        root_version: u64,
        policy_version: u64,
        freeze_sequence: u64,
        frozen: bool,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let held = |root: i64, policy: i64, freeze: i64, frozen: bool| {
            format!(
                "root v{root}, policy v{policy}, freeze statement {freeze} ({})",
                if frozen { "frozen" } else { "not frozen" }
            )
        };
        let reported = (
            to_db(root_version, "root version out of range")?,
            to_db(policy_version, "policy version out of range")?,
            to_db(freeze_sequence, "freeze sequence out of range")?,
            frozen,
        );
        let mut tx = self.pool.begin().await?;
        // A write first (it takes the row or write lock), returning the last
        // report.
        let before = sqlx::query(
            "UPDATE device_trust SET updated_at = $2 WHERE device_id = $1 \
             RETURNING root_version, policy_version, freeze_sequence, frozen",
        )
        .bind(device_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let before = match before {
            Some(row) => Some((
                row.try_get::<i64, _>("root_version")?,
                row.try_get::<i64, _>("policy_version")?,
                row.try_get::<i64, _>("freeze_sequence")?,
                row.try_get::<i64, _>("frozen")? != 0,
            )),
            None => None,
        };
        sqlx::query(
            "INSERT INTO device_trust (device_id, root_version, policy_version, freeze_sequence, frozen, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (device_id) DO UPDATE SET root_version = excluded.root_version, \
             policy_version = excluded.policy_version, freeze_sequence = excluded.freeze_sequence, \
             frozen = excluded.frozen, updated_at = excluded.updated_at",
        )
        .bind(device_id)
        .bind(reported.0)
        .bind(reported.1)
        .bind(reported.2)
        .bind(i64::from(frozen))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(unique_or_missing("device trust already exists"))?;
        let changed = before != Some(reported);
        if changed {
            let tenant_id: String =
                sqlx::query_scalar("SELECT tenant_id FROM devices WHERE id = $1")
                    .bind(device_id)
                    .fetch_one(&mut *tx)
                    .await?;
            let now_holds = held(reported.0, reported.1, reported.2, reported.3);
            let detail = match before {
                Some((r, p, f, z)) => format!("{now_holds}; was {}", held(r, p, f, z)),
                None => now_holds,
            };
            let event = crate::NewAuditEvent::new(
                now,
                &format!("device:{device_id}"),
                AuditAction::DeviceTrustApplied,
                device_id,
            )
            .in_tenant(Some(&tenant_id))
            .with_detail(detail);
            crate::audit::insert_audit(&mut tx, &event).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// What a device last reported holding, if the device is in scope and
    /// has reported.
    pub async fn device_trust(
        &self,
        scope: &TenantScope,
        device_id: &str,
    ) -> Result<Option<DeviceTrust>, StoreError> {
        const SQL: &str = concat!(
            "SELECT dt.device_id, dt.root_version, dt.policy_version, dt.freeze_sequence,",
            " dt.frozen, dt.updated_at FROM device_trust dt JOIN devices d ON d.id = dt.device_id WHERE ",
            in_scope!("d.tenant_id"),
            " AND dt.device_id = $3"
        );
        let (all, operator) = scope.args();
        let row = sqlx::query(SQL)
            .bind(all)
            .bind(operator)
            .bind(device_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(device_trust_from_row).transpose()
    }

    /// What each device of a tenant in scope last reported holding, for the
    /// devices that have reported, ordered by device id.
    pub async fn list_device_trust(
        &self,
        scope: &TenantScope,
        tenant_id: &str,
    ) -> Result<Vec<DeviceTrust>, StoreError> {
        const SQL: &str = concat!(
            "SELECT dt.device_id, dt.root_version, dt.policy_version, dt.freeze_sequence,",
            " dt.frozen, dt.updated_at FROM device_trust dt JOIN devices d ON d.id = dt.device_id WHERE ",
            in_scope!("d.tenant_id"),
            " AND d.tenant_id = $3 ORDER BY dt.device_id"
        );
        let (all, operator) = scope.args();
        let rows = sqlx::query(SQL)
            .bind(all)
            .bind(operator)
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(device_trust_from_row).collect()
    }
}
