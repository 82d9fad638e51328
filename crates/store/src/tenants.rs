use crate::AuditAction;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::unique;
use crate::{Millis, Store, StoreError, TenantScope, in_scope};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub created_at: Millis,
}

/// A tenant as listed, with the number of its devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSummary {
    pub id: String,
    pub name: String,
    pub created_at: Millis,
    pub device_count: i64,
}

fn tenant_from_row(row: &AnyRow) -> Result<Tenant, StoreError> {
    Ok(Tenant {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Creates a tenant and records `events(&tenant)` (its creation, the
    /// first entry of its log) in the same transaction; `Conflict` if the
    /// name is taken.
    pub async fn create_tenant<F>(
        &self,
        name: &str,
        now: Millis,
        events: F,
    ) -> Result<Tenant, StoreError>
    where
        F: FnOnce(&Tenant) -> Vec<crate::NewAuditEvent> + Send,
    {
        let tenant = Tenant {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_owned(),
            created_at: now,
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&tenant.id)
            .bind(&tenant.name)
            .bind(tenant.created_at)
            .execute(&mut *tx)
            .await
            .map_err(unique("tenant name already exists"))?;
        crate::audit::insert_events(&mut tx, &events(&tenant)).await?;
        tx.commit().await?;
        Ok(tenant)
    }

    /// Returns the tenant called `name`, creating it first if there is none
    /// and then recording `tenant.created` by `actor` in the same
    /// transaction. Idempotent, and safe when several callers race to
    /// create the same name.
    pub async fn ensure_tenant(
        &self,
        name: &str,
        actor: &str,
        now: Millis,
    ) -> Result<Tenant, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let mut tx = self.pool.begin().await?;
        let created = sqlx::query(
            "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&id)
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if created.rows_affected() == 1 {
            let event = crate::NewAuditEvent::new(now, actor, AuditAction::TenantCreated, name)
                .in_tenant(Some(&id));
            crate::audit::insert_audit(&mut tx, &event).await?;
        }
        tx.commit().await?;
        self.tenant_by_name(&TenantScope::All, name)
            .await?
            .ok_or(StoreError::NotFound)
    }

    pub async fn tenant_by_name(
        &self,
        scope: &TenantScope,
        name: &str,
    ) -> Result<Option<Tenant>, StoreError> {
        const SQL: &str = concat!(
            "SELECT t.id, t.name, t.created_at FROM tenants t WHERE ",
            in_scope!("t.id"),
            " AND t.name = $3"
        );
        let (all, operator) = scope.args();
        let row = sqlx::query(SQL)
            .bind(all)
            .bind(operator)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    /// The tenants in scope, ordered by name (byte order).
    pub async fn list_tenants(
        &self,
        scope: &TenantScope,
    ) -> Result<Vec<TenantSummary>, StoreError> {
        const SQL: &str = concat!(
            "SELECT t.id, t.name, t.created_at,",
            " (SELECT COUNT(*) FROM devices d WHERE d.tenant_id = t.id) AS device_count",
            " FROM tenants t WHERE ",
            in_scope!("t.id"),
            " ORDER BY t.name"
        );
        let (all, operator) = scope.args();
        let rows = sqlx::query(SQL)
            .bind(all)
            .bind(operator)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let Tenant {
                    id,
                    name,
                    created_at,
                } = tenant_from_row(row)?;
                Ok(TenantSummary {
                    id,
                    name,
                    created_at,
                    device_count: row.try_get("device_count")?,
                })
            })
            .collect()
    }

    /// Grants an operator a role on a tenant (replacing any earlier role there).
    /// `NotFound` if the operator or the tenant does not exist.
    pub async fn grant_tenant(
        &self,
        operator_id: &str,
        tenant_id: &str,
        role: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO operator_grants (operator_id, tenant_id, role) VALUES ($1, $2, $3) \
             ON CONFLICT (operator_id, tenant_id) DO UPDATE SET role = excluded.role",
        )
        .bind(operator_id)
        .bind(tenant_id)
        .bind(role)
        .execute(&self.pool)
        .await
        .map_err(crate::error::unique_or_missing("grant already exists"))?;
        Ok(())
    }
}
