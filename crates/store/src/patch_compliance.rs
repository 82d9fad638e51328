//! How long security updates have been pending on each device
//! (`security_update_spans`, `security_update_watch`, migration 0041):
//! what patch compliance and the patch SLA are computed from (RFD 0008,
//! "Patch SLA"; the computation is the server's, pure, over these rows).

use std::collections::BTreeMap;

use bulwark_protocol::inventory::PendingUpdate;
use sqlx::Row;

use crate::{Millis, Store, StoreError, TenantScope, in_scope};

/// A device whose pending updates are known, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchWatch {
    pub device_id: String,
    pub hostname: String,
    pub since: Millis,
}

/// A security update pending on a device from `first_seen_at` until
/// `cleared_at` (installed, or no longer offered), or still pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecuritySpan {
    pub device_id: String,
    pub package: String,
    pub new_version: String,
    pub first_seen_at: Millis,
    pub cleared_at: Option<Millis>,
}

/// Keeps a device's spans in step with the pending updates it reported
/// now, inside the caller's transaction.
pub(crate) async fn track_security_updates_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    device_id: &str,
    pending: &[PendingUpdate],
    now: Millis,
) -> Result<(), StoreError> {
    let tenant_id: String = sqlx::query_scalar("SELECT tenant_id FROM devices WHERE id = $1")
        .bind(device_id)
        .fetch_one(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO security_update_watch (device_id, tenant_id, since) VALUES ($1, $2, $3) \
         ON CONFLICT (device_id) DO NOTHING",
    )
    .bind(device_id)
    .bind(&tenant_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let now_pending: BTreeMap<(&str, &str), &str> = pending
        .iter()
        .filter(|u| u.security)
        .map(|u| {
            (
                (u.name.as_str(), u.architecture.as_str()),
                u.new_version.as_str(),
            )
        })
        .collect();
    let open = sqlx::query(
        "SELECT package, architecture, new_version FROM security_update_spans \
         WHERE device_id = $1 AND cleared_at IS NULL",
    )
    .bind(device_id)
    .fetch_all(&mut **tx)
    .await?;
    let mut open_keys = Vec::with_capacity(open.len());
    for row in &open {
        let package: String = row.try_get("package")?;
        let architecture: String = row.try_get("architecture")?;
        let version: String = row.try_get("new_version")?;
        match now_pending.get(&(package.as_str(), architecture.as_str())) {
            None => {
                sqlx::query(
                    "UPDATE security_update_spans SET cleared_at = $4 WHERE device_id = $1 \
                     AND package = $2 AND architecture = $3 AND cleared_at IS NULL",
                )
                .bind(device_id)
                .bind(&package)
                .bind(&architecture)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            }
            // A newer fix for the same package: still the same exposure,
            // pending since it was first seen.
            Some(new) if *new != version => {
                sqlx::query(
                    "UPDATE security_update_spans SET new_version = $4 WHERE device_id = $1 \
                     AND package = $2 AND architecture = $3 AND cleared_at IS NULL",
                )
                .bind(device_id)
                .bind(&package)
                .bind(&architecture)
                .bind(*new)
                .execute(&mut **tx)
                .await?;
            }
            Some(_) => {}
        }
        open_keys.push((package, architecture));
    }
    for ((package, architecture), version) in &now_pending {
        if open_keys
            .iter()
            .any(|(p, a)| p == package && a == architecture)
        {
            continue;
        }
        sqlx::query(
            "INSERT INTO security_update_spans (device_id, tenant_id, package, architecture, \
             new_version, first_seen_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(device_id)
        .bind(&tenant_id)
        .bind(*package)
        .bind(*architecture)
        .bind(*version)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

impl Store {
    /// What patch compliance of `tenant_id` (inside `scope`) is computed
    /// from: the devices whose pending updates are known, and the spans
    /// still open at `since` or opened after, at most `limit` of each.
    pub async fn patch_compliance_inputs(
        &self,
        scope: &TenantScope,
        tenant_id: &str,
        since: Millis,
        limit: u32,
    ) -> Result<(Vec<PatchWatch>, Vec<SecuritySpan>), StoreError> {
        let (all, operator) = scope.args();
        let sql = format!(
            "SELECT w.device_id, d.hostname, w.since FROM security_update_watch w \
             JOIN devices d ON d.id = w.device_id \
             WHERE {} AND w.tenant_id = $3 ORDER BY d.hostname, w.device_id LIMIT $4",
            in_scope!("w.tenant_id")
        );
        let rows = sqlx::query(&sql)
            .bind(all)
            .bind(operator)
            .bind(tenant_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let watched = rows
            .iter()
            .map(|row| {
                Ok(PatchWatch {
                    device_id: row.try_get("device_id")?,
                    hostname: row.try_get("hostname")?,
                    since: row.try_get("since")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let sql = format!(
            "SELECT s.device_id, s.package, s.new_version, s.first_seen_at, s.cleared_at \
             FROM security_update_spans s WHERE {} AND s.tenant_id = $3 \
             AND (s.cleared_at IS NULL OR s.cleared_at > $4) \
             ORDER BY s.first_seen_at, s.device_id, s.package LIMIT $5",
            in_scope!("s.tenant_id")
        );
        let rows = sqlx::query(&sql)
            .bind(all)
            .bind(operator)
            .bind(tenant_id)
            .bind(since)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let spans = rows
            .iter()
            .map(|row| {
                Ok(SecuritySpan {
                    device_id: row.try_get("device_id")?,
                    package: row.try_get("package")?,
                    new_version: row.try_get("new_version")?,
                    first_seen_at: row.try_get("first_seen_at")?,
                    cleared_at: row.try_get("cleared_at")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((watched, spans))
    }
}
