//! Enrolment tokens and devices.

use crate::AuditAction;
use bulwark_protocol::codec::{from_canonical, to_canonical};
use bulwark_protocol::inventory::Inventory;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::insert_audit;
use crate::error::{unique, unique_or_missing};
use crate::{Millis, NewAuditEvent, Store, StoreError, TenantScope, in_scope};

/// An enrolled endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: String,
    pub tenant_id: String,
    pub tenant_name: String,
    pub hostname: String,
    pub agent_version: String,
    /// The agent's Ed25519 public key (32 bytes).
    pub public_key: Vec<u8>,
    pub enrolled_at: Millis,
    pub last_seen_at: Option<Millis>,
    pub inventory: Option<Inventory>,
    pub inventory_updated_at: Option<Millis>,
}

/// A device to enrol; its tenant is the enrolment token's.
/// A device's public key and tenant, for the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKey {
    pub public_key: Vec<u8>,
    pub tenant_id: String,
    pub tenant_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    pub id: String,
    pub public_key: [u8; 32],
    pub hostname: String,
    pub agent_version: String,
}

macro_rules! device_select {
    () => {
        "SELECT d.id, d.tenant_id, t.name AS tenant_name, d.hostname, d.agent_version, d.public_key, \
         d.enrolled_at, d.last_seen_at, d.inventory, d.inventory_updated_at \
         FROM devices d JOIN tenants t ON t.id = d.tenant_id"
    };
}
pub(crate) use device_select;

fn decode_inventory(device_id: &str, bytes: &[u8]) -> Result<Inventory, StoreError> {
    from_canonical(bytes)
        .map_err(|error| StoreError::Corrupt(format!("inventory of device {device_id}: {error}")))
}

pub(crate) fn device_from_row(row: &AnyRow) -> Result<Device, StoreError> {
    let id: String = row.try_get("id")?;
    let inventory: Option<Vec<u8>> = row.try_get("inventory")?;
    let inventory = inventory
        .map(|bytes| decode_inventory(&id, &bytes))
        .transpose()?;
    Ok(Device {
        tenant_id: row.try_get("tenant_id")?,
        tenant_name: row.try_get("tenant_name")?,
        hostname: row.try_get("hostname")?,
        agent_version: row.try_get("agent_version")?,
        public_key: row.try_get("public_key")?,
        enrolled_at: row.try_get("enrolled_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        inventory,
        inventory_updated_at: row.try_get("inventory_updated_at")?,
        id,
    })
}

impl Store {
    /// Stores the hash of a one-time enrolment token for `tenant_id`, and
    /// `events` in the same transaction. `NotFound` if the tenant does not
    /// exist.
    pub async fn create_enrollment_token(
        &self,
        secret_hash: [u8; 32],
        tenant_id: &str,
        created_by: Option<&str>,
        now: Millis,
        expires_at: Millis,
        events: &[crate::NewAuditEvent],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO enrollment_tokens (secret_hash, tenant_id, created_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&secret_hash[..])
        .bind(tenant_id)
        .bind(created_by)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await
        .map_err(unique_or_missing("enrollment token already exists"))?;
        crate::audit::insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Enrols a device with a one-time token, in one transaction:
    ///
    /// 1. mark the token used, only if it is unused and unexpired at `now`
    ///    (an unknown, used or expired token gives `NotFound`); this takes the
    ///    token's row lock (PostgreSQL) or the write lock (SQLite), so of two
    ///    concurrent uses exactly one gets past here;
    /// 2. insert the device in the token's tenant (a public key that is
    ///    already enrolled gives `Conflict`, and the rollback leaves the
    ///    token unused);
    /// 3. append [`AuditAction::DeviceEnrolled`] to the audit log, naming
    ///    the key's fingerprint (the SHA-256 jobs name it by), so an auditor
    ///    can tell which key a device id stood for from the log alone.
    pub async fn enroll_device(
        &self,
        secret_hash: [u8; 32],
        new: NewDevice,
        now: Millis,
    ) -> Result<Device, StoreError> {
        let mut tx = self.pool.begin().await?;
        // 1.
        let token = sqlx::query(
            "UPDATE enrollment_tokens SET used_at = $2, used_by_device = $3 \
             WHERE secret_hash = $1 AND used_at IS NULL AND expires_at > $2 \
             RETURNING tenant_id, created_by",
        )
        .bind(&secret_hash[..])
        .bind(now)
        .bind(&new.id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(token) = token else {
            return Err(StoreError::NotFound);
        };
        let tenant_id: String = token.try_get("tenant_id")?;
        let created_by: Option<String> = token.try_get("created_by")?;
        // 2.
        sqlx::query(
            "INSERT INTO devices (id, tenant_id, public_key, hostname, agent_version, enrolled_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&new.id)
        .bind(&tenant_id)
        .bind(&new.public_key[..])
        .bind(&new.hostname)
        .bind(&new.agent_version)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(unique("device key already enrolled"))?;
        // 3.
        insert_audit(
            &mut tx,
            &NewAuditEvent {
                at: now,
                tenant_id: Some(tenant_id.clone()),
                actor: format!("device:{}", new.id),
                action: AuditAction::DeviceEnrolled,
                target: new.id.clone(),
                detail: format!(
                    "hostname={} agent_version={} key={} token_created_by={}",
                    new.hostname,
                    new.agent_version,
                    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(new.public_key)),
                    created_by.as_deref().unwrap_or("-")
                ),
            },
        )
        .await?;
        const SQL: &str = concat!(device_select!(), " WHERE d.id = $1");
        let row = sqlx::query(SQL).bind(&new.id).fetch_one(&mut *tx).await?;
        let device = device_from_row(&row)?;
        tx.commit().await?;
        Ok(device)
    }

    /// The device with this id, if it is in scope.
    pub async fn device(
        &self,
        scope: &TenantScope,
        id: &str,
    ) -> Result<Option<Device>, StoreError> {
        const SQL: &str = concat!(
            device_select!(),
            " WHERE ",
            in_scope!("d.tenant_id"),
            " AND d.id = $3"
        );
        let (all, operator) = scope.args();
        let row = sqlx::query(SQL)
            .bind(all)
            .bind(operator)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    /// The public key and tenant name of a device, for the agent gateway's
    /// authentication. Unscoped: the caller is a device, not an operator.
    /// What the gateway needs to authenticate a device (not tenant-scoped:
    /// the gateway acts for the device, not for an operator).
    pub async fn device_public_key(&self, id: &str) -> Result<Option<DeviceKey>, StoreError> {
        let row = sqlx::query(
            "SELECT d.public_key, t.id AS tenant_id, t.name FROM devices d JOIN tenants t ON t.id = d.tenant_id WHERE d.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(DeviceKey {
            public_key: row.try_get("public_key")?,
            tenant_id: row.try_get("tenant_id")?,
            tenant_name: row.try_get("name")?,
        }))
    }

    /// The devices of one tenant, if it is in scope, ordered by hostname.
    pub async fn list_devices(
        &self,
        scope: &TenantScope,
        tenant_id: &str,
    ) -> Result<Vec<Device>, StoreError> {
        const SQL: &str = concat!(
            device_select!(),
            " WHERE ",
            in_scope!("d.tenant_id"),
            " AND d.tenant_id = $3 ORDER BY d.hostname, d.id"
        );
        let (all, operator) = scope.args();
        let rows = sqlx::query(SQL)
            .bind(all)
            .bind(operator)
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(device_from_row).collect()
    }

    /// Records that a device connected at `now` running `agent_version`.
    pub async fn device_seen(
        &self,
        id: &str,
        now: Millis,
        agent_version: &str,
    ) -> Result<(), StoreError> {
        let done =
            sqlx::query("UPDATE devices SET last_seen_at = $2, agent_version = $3 WHERE id = $1")
                .bind(id)
                .bind(now)
                .bind(agent_version)
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Records that every device in `ids` was still connected at `now`:
    /// one statement per 500 devices, instead of a write per heartbeat
    /// (the server writes this for its connected agents once an interval).
    /// Never moves a device's last-seen time backwards. Unknown ids are
    /// ignored (a device deleted while connected).
    pub async fn devices_seen(&self, ids: &[String], now: Millis) -> Result<u64, StoreError> {
        let mut updated = 0;
        for chunk in ids.chunks(500) {
            // Placeholders written out: the Any driver's query builder
            // writes `?`, which PostgreSQL does not take.
            let mut sql = String::from(
                "UPDATE devices SET last_seen_at = $1 \
                 WHERE (last_seen_at IS NULL OR last_seen_at < $2) AND id IN (",
            );
            for n in 0..chunk.len() {
                if n > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${}", n + 3));
            }
            sql.push(')');
            let mut query = sqlx::query(&sql).bind(now).bind(now);
            for id in chunk {
                query = query.bind(id.as_str());
            }
            updated += query.execute(&self.pool).await?.rows_affected();
        }
        Ok(updated)
    }

    /// Stores an inventory report, in one transaction: a `full` report
    /// replaces the stored inventory; otherwise `delta` is merged into it with
    /// [`Inventory::apply`]. The hostname follows `system.hostname` when the
    /// result has a non-empty one. Installed packages go to their own table
    /// (`device_packages`), replaced whenever the report carries them (and
    /// emptied by a full report without them); the stored inventory never
    /// holds them. Returns the stored inventory.
    pub async fn update_inventory(
        &self,
        id: &str,
        full: bool,
        delta: Inventory,
        now: Millis,
    ) -> Result<Inventory, StoreError> {
        Ok(self
            .update_inventory_with_changes(id, full, delta, now)
            .await?
            .0)
    }

    /// [`Store::update_inventory`], also saying what the report changed in
    /// the device's listening ports and administrators. Those sections,
    /// with services and processes, go to `device_inventory_sections`
    /// (migration 0018), never into the stored inventory; a full report
    /// without them removes them.
    pub async fn update_inventory_with_changes(
        &self,
        id: &str,
        full: bool,
        mut delta: Inventory,
        now: Millis,
    ) -> Result<(Inventory, crate::SecurityChanges), StoreError> {
        let packages = delta.packages.take();
        let sections = crate::inventory_sections::take_sections(&mut delta);
        let mut tx = self.pool.begin().await?;
        // Write first: this takes the row lock (PostgreSQL) or the write lock
        // (SQLite) before the read, so concurrent merges cannot lose updates.
        let done = sqlx::query("UPDATE devices SET inventory_updated_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        if full || packages.is_some() {
            crate::packages::replace_packages_tx(&mut tx, id, &packages.unwrap_or_default())
                .await?;
        }
        let changes =
            crate::inventory_sections::store_sections_tx(&mut tx, id, full, &sections, now).await?;
        if let Some(pending) = sections
            .iter()
            .find_map(|(_, section)| section.pending_updates.as_deref())
        {
            crate::patch_compliance::track_security_updates_tx(&mut tx, id, pending, now).await?;
        }
        let inventory = if full {
            delta
        } else {
            let stored: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT inventory FROM devices WHERE id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
            let mut inventory = match stored {
                Some(bytes) => decode_inventory(id, &bytes)?,
                None => Inventory::default(),
            };
            inventory.apply(delta);
            inventory
        };
        let hostname = inventory
            .system
            .as_ref()
            .map(|s| s.hostname.as_str())
            .filter(|h| !h.is_empty());
        sqlx::query(
            "UPDATE devices SET inventory = $2, hostname = COALESCE($3, hostname) WHERE id = $1",
        )
        .bind(id)
        .bind(to_canonical(&inventory))
        .bind(hostname)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((inventory, changes))
    }
}
