//! Patch policies (migration 0043, RFD 0021): two signed install-patches
//! schedules, the canary ring's and ring 2's, and the soak between them.
//! The schedules are stored as schedules (the scheduler delivers them);
//! this row only ties them together for the server's release of ring 2
//! and for people. Agents trust none of it.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::insert_events;
use crate::error::unique_or_missing;
use crate::schedules::insert_schedule;
use crate::{Millis, NewAuditEvent, NewSchedule, Store, StoreError, TenantScope, in_scope};

/// A stored patch policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchPolicy {
    /// The canary schedule's id.
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub rest_schedule_id: String,
    pub soak_secs: i64,
    pub created_by: String,
    pub created_by_username: String,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
}

macro_rules! policy_select {
    () => {
        "SELECT p.id, p.tenant_id, p.name, p.rest_schedule_id, p.soak_secs, p.created_by, \
         o.username AS created_by_username, p.created_at, p.revoked_at \
         FROM patch_policies p JOIN operators o ON o.id = p.created_by"
    };
}

fn policy_from_row(row: &AnyRow) -> Result<PatchPolicy, StoreError> {
    Ok(PatchPolicy {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        rest_schedule_id: row.try_get("rest_schedule_id")?,
        soak_secs: row.try_get("soak_secs")?,
        created_by: row.try_get("created_by")?,
        created_by_username: row.try_get("created_by_username")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

impl Store {
    /// Stores both rings' schedules and the policy with `events`, in one
    /// transaction. `Conflict` for a schedule id already stored or a live
    /// policy of that name in the tenant.
    pub async fn create_patch_policy(
        &self,
        name: &str,
        canary: &NewSchedule,
        rest: &NewSchedule,
        soak_secs: i64,
        now: Millis,
        events: &[NewAuditEvent],
    ) -> Result<PatchPolicy, StoreError> {
        if canary.tenant_id != rest.tenant_id || canary.id == rest.id || soak_secs < 0 {
            return Err(StoreError::Invalid(
                "a patch policy is two schedules of one tenant",
            ));
        }
        let mut tx = self.pool.begin().await?;
        insert_schedule(&mut tx, canary, now).await?;
        insert_schedule(&mut tx, rest, now).await?;
        sqlx::query(
            "INSERT INTO patch_policies (id, tenant_id, name, rest_schedule_id, soak_secs, \
             created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&canary.id)
        .bind(&canary.tenant_id)
        .bind(name)
        .bind(&rest.id)
        .bind(soak_secs)
        .bind(&canary.created_by)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(unique_or_missing("a live patch policy has this name"))?;
        insert_events(&mut tx, events).await?;
        const SQL: &str = concat!(policy_select!(), " WHERE p.id = $1");
        let row = sqlx::query(SQL)
            .bind(&canary.id)
            .fetch_one(&mut *tx)
            .await?;
        let stored = policy_from_row(&row)?;
        tx.commit().await?;
        Ok(stored)
    }

    /// The policy with this id, if its tenant is in scope.
    pub async fn patch_policy(
        &self,
        scope: &TenantScope,
        id: &str,
    ) -> Result<Option<PatchPolicy>, StoreError> {
        const SQL: &str = concat!(
            policy_select!(),
            " WHERE ",
            in_scope!("p.tenant_id"),
            " AND p.id = $3"
        );
        let (all, operator) = scope.args();
        let row = sqlx::query(SQL)
            .bind(all)
            .bind(operator)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(policy_from_row).transpose()
    }

    /// A tenant's policies in scope, newest first.
    pub async fn list_patch_policies(
        &self,
        scope: &TenantScope,
        tenant_id: &str,
        limit: i64,
    ) -> Result<Vec<PatchPolicy>, StoreError> {
        const SQL: &str = concat!(
            policy_select!(),
            " WHERE ",
            in_scope!("p.tenant_id"),
            " AND p.tenant_id = $3 ORDER BY p.created_at DESC, p.id DESC LIMIT $4"
        );
        let (all, operator) = scope.args();
        let rows = sqlx::query(SQL)
            .bind(all)
            .bind(operator)
            .bind(tenant_id)
            .bind(limit.max(0))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(policy_from_row).collect()
    }

    /// The live policy whose ring 2 is this schedule, if any: what the
    /// scheduler asks before it delivers an occurrence. Not tenant-scoped.
    pub async fn patch_policy_of_ring_two(
        &self,
        schedule_id: &str,
    ) -> Result<Option<PatchPolicy>, StoreError> {
        const SQL: &str = concat!(
            policy_select!(),
            " WHERE p.rest_schedule_id = $1 AND p.revoked_at IS NULL"
        );
        let row = sqlx::query(SQL)
            .bind(schedule_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(policy_from_row).transpose()
    }

    /// Revokes a policy and both its schedules with `events`, in one
    /// transaction. `NotFound` for another tenant's or an unknown one,
    /// `Conflict("patch policy already revoked")`.
    pub async fn revoke_patch_policy(
        &self,
        tenant_id: &str,
        id: &str,
        by: &str,
        now: Millis,
        events: &[NewAuditEvent],
    ) -> Result<PatchPolicy, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE patch_policies SET revoked_at = $1, revoked_by = $2 \
             WHERE id = $3 AND tenant_id = $4 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(by)
        .bind(id)
        .bind(tenant_id)
        .execute(&mut *tx)
        .await?;
        const SQL: &str = concat!(policy_select!(), " WHERE p.id = $1 AND p.tenant_id = $2");
        let row = sqlx::query(SQL)
            .bind(id)
            .bind(tenant_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict("patch policy already revoked"));
        }
        let stored = policy_from_row(&row)?;
        sqlx::query(
            "UPDATE schedules SET revoked_at = $1, revoked_by = $2 \
             WHERE id IN ($3, $4) AND tenant_id = $5 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(by)
        .bind(&stored.id)
        .bind(&stored.rest_schedule_id)
        .bind(tenant_id)
        .execute(&mut *tx)
        .await?;
        insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(stored)
    }
}
