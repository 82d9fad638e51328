//! API tokens for integrations: a name, one role on a list of tenants, an
//! expiry; only the SHA-256 of the secret is kept. The server decides what
//! a token may do (its grants, cut to what its operator still holds).

use crate::AuditAction;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::insert_audit;
use crate::error::unique_or_missing;
use crate::operators::{operator_columns, operator_from_row};
use crate::{Grant, Millis, NewAuditEvent, Operator, Store, StoreError};

/// A token to store. `tenant_ids` are the tenants its role applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiToken {
    pub token_hash: [u8; 32],
    pub operator_id: String,
    pub name: String,
    pub role: String,
    pub tenant_ids: Vec<String>,
    pub created_at: Millis,
    pub expires_at: Millis,
}

/// A stored token (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: String,
    pub operator_id: String,
    pub name: String,
    pub role: String,
    /// The role on each tenant, ordered by tenant name.
    pub grants: Vec<Grant>,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub last_used_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
}

const TOKEN_COLUMNS: &str = "k.id, k.operator_id, k.name, k.role, k.created_at, k.expires_at, \
     k.last_used_at, k.revoked_at";

fn token_from_row(row: &AnyRow) -> Result<ApiToken, StoreError> {
    Ok(ApiToken {
        id: row.try_get("id")?,
        operator_id: row.try_get("operator_id")?,
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        grants: Vec::new(),
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

impl Store {
    async fn token_grants(&self, token: &mut ApiToken) -> Result<(), StoreError> {
        let rows = sqlx::query(
            "SELECT kt.tenant_id, t.name AS tenant_name FROM api_token_tenants kt \
             JOIN tenants t ON t.id = kt.tenant_id WHERE kt.token_id = $1 ORDER BY t.name",
        )
        .bind(&token.id)
        .fetch_all(&self.pool)
        .await?;
        token.grants = rows
            .iter()
            .map(|row| {
                Ok(Grant {
                    tenant_id: row.try_get("tenant_id")?,
                    tenant_name: row.try_get("tenant_name")?,
                    role: token.role.clone(),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(())
    }

    /// Stores a token and records [`AuditAction::ApiTokenCreated`] by `actor`, in one
    /// transaction. `NotFound` if the operator or a tenant does not exist.
    pub async fn create_api_token(
        &self,
        new: &NewApiToken,
        actor: &str,
    ) -> Result<ApiToken, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, token_hash, operator_id, name, role, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(&new.token_hash[..])
        .bind(&new.operator_id)
        .bind(&new.name)
        .bind(&new.role)
        .bind(new.created_at)
        .bind(new.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(unique_or_missing("API token already exists"))?;
        for tenant_id in &new.tenant_ids {
            sqlx::query("INSERT INTO api_token_tenants (token_id, tenant_id) VALUES ($1, $2)")
                .bind(&id)
                .bind(tenant_id)
                .execute(&mut *tx)
                .await
                .map_err(unique_or_missing("tenant named twice"))?;
        }
        insert_audit(
            &mut tx,
            &NewAuditEvent {
                at: new.created_at,
                tenant_id: None,
                actor: actor.to_owned(),
                action: AuditAction::ApiTokenCreated,
                target: id.clone(),
                detail: format!(
                    "name={} role={} tenants={}",
                    new.name,
                    new.role,
                    new.tenant_ids.len()
                ),
            },
        )
        .await?;
        tx.commit().await?;
        let mut token = ApiToken {
            id,
            operator_id: new.operator_id.clone(),
            name: new.name.clone(),
            role: new.role.clone(),
            grants: Vec::new(),
            created_at: new.created_at,
            expires_at: new.expires_at,
            last_used_at: None,
            revoked_at: None,
        };
        self.token_grants(&mut token).await?;
        Ok(token)
    }

    /// The token a secret hashes to, with its operator, whatever their
    /// state (expired, revoked, disabled): the caller applies the policy.
    pub async fn api_token(
        &self,
        token_hash: [u8; 32],
    ) -> Result<Option<(ApiToken, Operator)>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS}, {} FROM api_tokens k JOIN operators o ON o.id = k.operator_id \
             WHERE k.token_hash = $1",
            operator_columns!()
        );
        let row = sqlx::query(&sql)
            .bind(&token_hash[..])
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let mut token = token_from_row(&row)?;
        let operator = operator_from_row(&row)?;
        self.token_grants(&mut token).await?;
        Ok(Some((token, operator)))
    }

    /// An operator's tokens that are not revoked or expired at `now`, newest first.
    pub async fn list_api_tokens(
        &self,
        operator_id: &str,
        now: Millis,
    ) -> Result<Vec<ApiToken>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens k WHERE k.operator_id = $1 \
             AND k.revoked_at IS NULL AND k.expires_at > $2 ORDER BY k.created_at DESC, k.id"
        );
        let rows = sqlx::query(&sql)
            .bind(operator_id)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        let mut tokens = rows
            .iter()
            .map(token_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        for token in &mut tokens {
            self.token_grants(token).await?;
        }
        Ok(tokens)
    }

    /// Records use of a token (a no-op once revoked).
    pub async fn touch_api_token(&self, id: &str, now: Millis) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Revokes one of `operator_id`'s tokens and records [`AuditAction::ApiTokenRevoked`]
    /// by `actor`, in one transaction. `NotFound` for an unknown, already
    /// revoked or another operator's token.
    pub async fn revoke_api_token(
        &self,
        operator_id: &str,
        id: &str,
        actor: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $3 \
             WHERE id = $1 AND operator_id = $2 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(operator_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        insert_audit(
            &mut tx,
            &NewAuditEvent::new(now, actor, AuditAction::ApiTokenRevoked, id),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
