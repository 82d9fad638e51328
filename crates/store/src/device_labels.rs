//! Tags and groups of devices (migration 0029, RFD 0016), and the search
//! that filters devices by them.
//!
//! Names arrive checked (`bulwark_api::fleet::{parse_tag, parse_group}`);
//! the store keeps them as given. Each change takes the device's row first
//! (a write, so concurrent changes to one device serialise) and records
//! what it changed as one event in the device's tenant log, in its own
//! transaction; a change that changes nothing records nothing.

use std::collections::HashMap;

use sqlx::Row;

use crate::audit::insert_audit;
use crate::devices::{device_from_row, device_select};
use crate::{AuditAction, Device, Millis, NewAuditEvent, Store, StoreError, TenantScope, in_scope};

/// The most tags one device carries (`bulwark_api::fleet::MAX_TAGS_PER_DEVICE`).
pub const MAX_TAGS_PER_DEVICE: usize = 32;

/// A device's tags (sorted) and group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceLabels {
    pub tags: Vec<String>,
    pub group: Option<String>,
}

/// Which devices a search keeps, in SQL (the rest of a search, text and
/// presence, is the server's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelFilter {
    /// Only this tenant (its id).
    pub tenant_id: Option<String>,
    /// Devices carrying every one of these tags.
    pub tags: Vec<String>,
    /// Devices in the group of this key (ASCII lower case).
    pub group_key: Option<String>,
}

/// The ASCII lower case a group is compared by (`bulwark_api::fleet::group_key`).
fn group_key(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// Takes the device's row in scope; its tenant id, or `None` when the
/// device is missing or out of scope.
async fn lock_device(
    conn: &mut sqlx::AnyConnection,
    scope: &TenantScope,
    device_id: &str,
) -> Result<Option<String>, StoreError> {
    const SQL: &str = concat!(
        "UPDATE devices SET tenant_id = tenant_id WHERE ",
        in_scope!("tenant_id"),
        " AND id = $3 RETURNING tenant_id"
    );
    let (all, operator) = scope.args();
    Ok(sqlx::query_scalar(SQL)
        .bind(all)
        .bind(operator)
        .bind(device_id)
        .fetch_optional(&mut *conn)
        .await?)
}

async fn labels_of(
    conn: &mut sqlx::AnyConnection,
    device_id: &str,
) -> Result<DeviceLabels, StoreError> {
    let tags: Vec<String> =
        sqlx::query_scalar("SELECT tag FROM device_tags WHERE device_id = $1 ORDER BY tag")
            .bind(device_id)
            .fetch_all(&mut *conn)
            .await?;
    let group: Option<String> =
        sqlx::query_scalar("SELECT group_name FROM device_groups WHERE device_id = $1")
            .bind(device_id)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(DeviceLabels { tags, group })
}

impl Store {
    /// Adds and removes tags of a device in scope, in one transaction with
    /// its `device.tags_changed` event (what was added and removed). `None`
    /// when the device is missing or out of scope; `Invalid` past
    /// [`MAX_TAGS_PER_DEVICE`] (nothing changed).
    pub async fn change_device_tags(
        &self,
        scope: &TenantScope,
        device_id: &str,
        add: &[String],
        remove: &[String],
        actor: &str,
        now: Millis,
    ) -> Result<Option<DeviceLabels>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(tenant_id) = lock_device(&mut tx, scope, device_id).await? else {
            return Ok(None);
        };
        let mut added = Vec::new();
        for tag in add {
            let done = sqlx::query(
                "INSERT INTO device_tags (device_id, tenant_id, tag) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(device_id)
            .bind(&tenant_id)
            .bind(tag)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() > 0 {
                added.push(tag.as_str());
            }
        }
        let mut removed = Vec::new();
        for tag in remove {
            let done = sqlx::query("DELETE FROM device_tags WHERE device_id = $1 AND tag = $2")
                .bind(device_id)
                .bind(tag)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() > 0 {
                removed.push(tag.as_str());
            }
        }
        let labels = labels_of(&mut tx, device_id).await?;
        if labels.tags.len() > MAX_TAGS_PER_DEVICE {
            return Err(StoreError::Invalid("a device carries at most 32 tags"));
        }
        if !added.is_empty() || !removed.is_empty() {
            let list = |tags: &[&str]| {
                if tags.is_empty() {
                    "-".to_owned()
                } else {
                    tags.join(",")
                }
            };
            let event = NewAuditEvent::new(now, actor, AuditAction::DeviceTagsChanged, device_id)
                .in_tenant(Some(&tenant_id))
                .with_detail(format!(
                    "added={} removed={} tags={}",
                    list(&added),
                    list(&removed),
                    list(&labels.tags.iter().map(String::as_str).collect::<Vec<_>>())
                ));
            insert_audit(&mut tx, &event).await?;
        }
        tx.commit().await?;
        Ok(Some(labels))
    }

    /// Puts a device in scope into a group (or none), in one transaction
    /// with its `device.group_changed` event. A group another device of the
    /// tenant is in under another case (`hq` for `HQ`) takes that spelling,
    /// so a tenant shows each group one way. `None` when the device is
    /// missing or out of scope.
    pub async fn set_device_group(
        &self,
        scope: &TenantScope,
        device_id: &str,
        group: Option<&str>,
        actor: &str,
        now: Millis,
    ) -> Result<Option<DeviceLabels>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(tenant_id) = lock_device(&mut tx, scope, device_id).await? else {
            return Ok(None);
        };
        let before = labels_of(&mut tx, device_id).await?.group;
        let group = match group {
            Some(name) => {
                let key = group_key(name);
                let known: Option<String> = sqlx::query_scalar(
                    "SELECT group_name FROM device_groups \
                     WHERE tenant_id = $1 AND group_key = $2 AND device_id <> $3 LIMIT 1",
                )
                .bind(&tenant_id)
                .bind(&key)
                .bind(device_id)
                .fetch_optional(&mut *tx)
                .await?;
                let name = known.unwrap_or_else(|| name.to_owned());
                sqlx::query(
                    "INSERT INTO device_groups (device_id, tenant_id, group_name, group_key) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (device_id) DO UPDATE \
                     SET group_name = excluded.group_name, group_key = excluded.group_key",
                )
                .bind(device_id)
                .bind(&tenant_id)
                .bind(&name)
                .bind(&key)
                .execute(&mut *tx)
                .await?;
                Some(name)
            }
            None => {
                sqlx::query("DELETE FROM device_groups WHERE device_id = $1")
                    .bind(device_id)
                    .execute(&mut *tx)
                    .await?;
                None
            }
        };
        if group != before {
            let event = NewAuditEvent::new(now, actor, AuditAction::DeviceGroupChanged, device_id)
                .in_tenant(Some(&tenant_id))
                .with_detail(format!(
                    "group={} previous={}",
                    group.as_deref().unwrap_or("-"),
                    before.as_deref().unwrap_or("-")
                ));
            insert_audit(&mut tx, &event).await?;
        }
        let labels = labels_of(&mut tx, device_id).await?;
        tx.commit().await?;
        Ok(Some(labels))
    }

    /// The tags and group of every device in scope (of one tenant, if
    /// given) that has any, by device id.
    pub async fn device_labels(
        &self,
        scope: &TenantScope,
        tenant_id: Option<&str>,
    ) -> Result<HashMap<String, DeviceLabels>, StoreError> {
        const TAGS: &str = concat!(
            "SELECT device_id, tag FROM device_tags WHERE ",
            in_scope!("tenant_id"),
            " AND ($3 = '' OR tenant_id = $3) ORDER BY device_id, tag"
        );
        const GROUPS: &str = concat!(
            "SELECT device_id, group_name FROM device_groups WHERE ",
            in_scope!("tenant_id"),
            " AND ($3 = '' OR tenant_id = $3)"
        );
        let (all, operator) = scope.args();
        let tenant = tenant_id.unwrap_or_default();
        let mut labels: HashMap<String, DeviceLabels> = HashMap::new();
        for row in sqlx::query(TAGS)
            .bind(all)
            .bind(operator)
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?
        {
            labels
                .entry(row.try_get("device_id")?)
                .or_default()
                .tags
                .push(row.try_get("tag")?);
        }
        for row in sqlx::query(GROUPS)
            .bind(all)
            .bind(operator)
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?
        {
            labels.entry(row.try_get("device_id")?).or_default().group =
                Some(row.try_get("group_name")?);
        }
        Ok(labels)
    }

    /// The tags and group of one device in scope (empty when it has none
    /// or is out of scope).
    pub async fn labels_of_device(
        &self,
        scope: &TenantScope,
        device_id: &str,
    ) -> Result<DeviceLabels, StoreError> {
        if self.device(scope, device_id).await?.is_none() {
            return Ok(DeviceLabels::default());
        }
        let mut conn = self.pool.acquire().await?;
        labels_of(&mut conn, device_id).await
    }

    /// The devices in scope that `filter` keeps, by host name then id.
    pub async fn search_devices(
        &self,
        scope: &TenantScope,
        filter: &LabelFilter,
    ) -> Result<Vec<Device>, StoreError> {
        let mut sql = format!(
            "{} WHERE {} AND ($3 = '' OR d.tenant_id = $3)",
            device_select!(),
            in_scope!("d.tenant_id")
        );
        let mut next = 4;
        for _ in &filter.tags {
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM device_tags dt WHERE dt.device_id = d.id AND dt.tag = ${next})"
            ));
            next += 1;
        }
        if filter.group_key.is_some() {
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM device_groups dg WHERE dg.device_id = d.id AND dg.group_key = ${next})"
            ));
        }
        sql.push_str(" ORDER BY d.hostname, d.id");
        let (all, operator) = scope.args();
        let mut query = sqlx::query(&sql)
            .bind(all)
            .bind(operator)
            .bind(filter.tenant_id.as_deref().unwrap_or_default());
        for tag in &filter.tags {
            query = query.bind(tag.as_str());
        }
        if let Some(key) = &filter.group_key {
            query = query.bind(group_key(key));
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(device_from_row).collect()
    }
}
