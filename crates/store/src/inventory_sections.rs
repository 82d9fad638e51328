//! The inventory sections kept beside a device's inventory
//! (`device_inventory_sections`, migration 0018): listening ports, local
//! administrators, services, the process snapshot and the pending updates.
//!
//! Each row is one section as an [`Inventory`] holding only it, in
//! canonical CBOR: decoding a device's rows and [`Inventory::apply`]ing
//! them gives the sections back. They stay out of `devices.inventory`,
//! which every device list decodes.

use bulwark_protocol::codec::{from_canonical, to_canonical};
use bulwark_protocol::inventory::{Inventory, ListeningPort, LocalAdmin};
use sqlx::Row;

use crate::{Millis, Store, StoreError, TenantScope, in_scope};

/// What a stored report changed in the sections that matter for security:
/// each `(before, after)` when the device had reported the section before
/// and the report carried it changed. A device's first report gives none:
/// there is nothing it changed from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityChanges {
    pub listening_ports: Option<(Vec<ListeningPort>, Vec<ListeningPort>)>,
    pub local_admins: Option<(Vec<LocalAdmin>, Vec<LocalAdmin>)>,
}

/// Takes the kept-beside sections out of `inventory`, each as an
/// inventory of its own, with its name.
pub(crate) fn take_sections(inventory: &mut Inventory) -> Vec<(&'static str, Inventory)> {
    let mut sections = Vec::new();
    if let Some(s) = inventory.listening_ports.take() {
        let one = Inventory {
            listening_ports: Some(s),
            ..Inventory::default()
        };
        sections.push(("listening_ports", one));
    }
    if let Some(s) = inventory.local_admins.take() {
        let one = Inventory {
            local_admins: Some(s),
            ..Inventory::default()
        };
        sections.push(("local_admins", one));
    }
    if let Some(s) = inventory.services.take() {
        sections.push((
            "services",
            Inventory {
                services: Some(s),
                ..Inventory::default()
            },
        ));
    }
    if let Some(s) = inventory.pending_updates.take() {
        sections.push((
            "pending_updates",
            Inventory {
                pending_updates: Some(s),
                ..Inventory::default()
            },
        ));
    }
    if let Some(s) = inventory.processes.take() {
        sections.push((
            "processes",
            Inventory {
                processes: Some(s),
                ..Inventory::default()
            },
        ));
    }
    sections
}

fn decode(device_id: &str, bytes: &[u8]) -> Result<Inventory, StoreError> {
    from_canonical(bytes).map_err(|error| {
        StoreError::Corrupt(format!("inventory section of device {device_id}: {error}"))
    })
}

/// Stores `sections` of a report inside the caller's transaction: a `full`
/// report first removes every section of the device (one it does not
/// carry is gone). Returns what changed in ports and administrators.
pub(crate) async fn store_sections_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    device_id: &str,
    full: bool,
    sections: &[(&'static str, Inventory)],
    now: Millis,
) -> Result<SecurityChanges, StoreError> {
    let mut changes = SecurityChanges::default();
    for (name, section) in sections {
        if !matches!(*name, "listening_ports" | "local_admins") {
            continue;
        }
        let before: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT body FROM device_inventory_sections WHERE device_id = $1 AND section = $2",
        )
        .bind(device_id)
        .bind(*name)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(before) = before else { continue };
        let before = decode(device_id, &before)?;
        if let (Some(b), Some(a)) = (&before.listening_ports, &section.listening_ports)
            && b != a
        {
            changes.listening_ports = Some((b.clone(), a.clone()));
        }
        if let (Some(b), Some(a)) = (&before.local_admins, &section.local_admins)
            && b != a
        {
            changes.local_admins = Some((b.clone(), a.clone()));
        }
    }
    if full {
        sqlx::query("DELETE FROM device_inventory_sections WHERE device_id = $1")
            .bind(device_id)
            .execute(&mut **tx)
            .await?;
    }
    for (name, section) in sections {
        sqlx::query(
            "INSERT INTO device_inventory_sections (device_id, section, body, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (device_id, section) \
             DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(device_id)
        .bind(*name)
        .bind(to_canonical(section))
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(changes)
}

impl Store {
    /// The listening ports, local administrators, services, process
    /// snapshot and pending updates of a device in `scope`, as one inventory holding only them
    /// (each absent until reported). `None` when the device is not in scope.
    pub async fn device_inventory_sections(
        &self,
        scope: &TenantScope,
        device_id: &str,
    ) -> Result<Option<Inventory>, StoreError> {
        const SQL: &str = concat!(
            "SELECT s.body FROM device_inventory_sections s JOIN devices d ON d.id = s.device_id WHERE ",
            in_scope!("d.tenant_id"),
            " AND s.device_id = $3 ORDER BY s.section"
        );
        let Some(_) = self.device(scope, device_id).await? else {
            return Ok(None);
        };
        let (all, operator) = scope.args();
        let rows = sqlx::query(SQL)
            .bind(all)
            .bind(operator)
            .bind(device_id)
            .fetch_all(&self.pool)
            .await?;
        let mut inventory = Inventory::default();
        for row in &rows {
            let body: Vec<u8> = row.try_get("body")?;
            inventory.apply(decode(device_id, &body)?);
        }
        Ok(Some(inventory))
    }
}
