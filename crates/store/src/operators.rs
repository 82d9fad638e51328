use crate::AuditAction;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::insert_audit;
use crate::error::unique;
use crate::{Millis, NewAuditEvent, Store, StoreError};

/// An MSP operator account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub totp_secret: String,
    pub role: String,
    pub created_at: Millis,
    pub disabled_at: Option<Millis>,
    /// The highest TOTP time step accepted so far.
    pub last_totp_step: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOperator {
    pub username: String,
    pub password_hash: String,
    pub totp_secret: String,
}

/// The operator columns of `operators o`, aliased `op_*` so that they can be
/// selected beside another table's columns.
macro_rules! operator_columns {
    () => {
        "o.id AS op_id, o.username AS op_username, o.password_hash AS op_password_hash, \
         o.totp_secret AS op_totp_secret, o.role AS op_role, o.created_at AS op_created_at, \
         o.disabled_at AS op_disabled_at, o.last_totp_step AS op_last_totp_step"
    };
}
pub(crate) use operator_columns;

/// Reads the columns selected by [`operator_columns!`].
pub(crate) fn operator_from_row(row: &AnyRow) -> Result<Operator, StoreError> {
    Ok(Operator {
        id: row.try_get("op_id")?,
        username: row.try_get("op_username")?,
        password_hash: row.try_get("op_password_hash")?,
        totp_secret: row.try_get("op_totp_secret")?,
        role: row.try_get("op_role")?,
        created_at: row.try_get("op_created_at")?,
        disabled_at: row.try_get("op_disabled_at")?,
        last_totp_step: row.try_get("op_last_totp_step")?,
    })
}

/// Inserts an operator inside a caller's transaction.
pub(crate) async fn insert_operator(
    conn: &mut sqlx::AnyConnection,
    new: &NewOperator,
    role: &str,
    now: Millis,
) -> Result<Operator, StoreError> {
    let operator = Operator {
        id: uuid::Uuid::new_v4().to_string(),
        username: new.username.clone(),
        password_hash: new.password_hash.clone(),
        totp_secret: new.totp_secret.clone(),
        role: role.to_owned(),
        created_at: now,
        disabled_at: None,
        last_totp_step: 0,
    };
    sqlx::query(
        "INSERT INTO operators (id, username, password_hash, totp_secret, role, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&operator.id)
    .bind(&operator.username)
    .bind(&operator.password_hash)
    .bind(&operator.totp_secret)
    .bind(&operator.role)
    .bind(operator.created_at)
    .execute(&mut *conn)
    .await
    .map_err(unique("username already taken"))?;
    Ok(operator)
}

impl Store {
    pub async fn operator_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM operators")
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn operator_by_username(
        &self,
        username: &str,
    ) -> Result<Option<Operator>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            operator_columns!(),
            " FROM operators o WHERE o.username = $1"
        );
        let row = sqlx::query(SQL)
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(operator_from_row).transpose()
    }

    pub async fn operator_by_id(&self, id: &str) -> Result<Option<Operator>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            operator_columns!(),
            " FROM operators o WHERE o.id = $1"
        );
        let row = sqlx::query(SQL).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(operator_from_row).transpose()
    }

    /// Creates an operator with `role` and records [`AuditAction::OperatorCreated`] by
    /// `actor`, in one transaction. `Conflict` if the username is taken.
    pub async fn create_operator(
        &self,
        new: &NewOperator,
        role: &str,
        actor: &str,
        now: Millis,
    ) -> Result<Operator, StoreError> {
        let mut tx = self.pool.begin().await?;
        let operator = insert_operator(&mut tx, new, role, now).await?;
        insert_audit(
            &mut tx,
            &NewAuditEvent {
                at: now,
                tenant_id: None,
                actor: actor.to_owned(),
                action: AuditAction::OperatorCreated,
                target: operator.id.clone(),
                detail: format!("username={} role={}", operator.username, operator.role),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(operator)
    }

    /// TOTP replay protection: records `step` as used and returns true only if
    /// it is later than every step accepted before for this operator (one
    /// atomic compare-and-set, so two logins with the same code cannot both
    /// pass). False also for an unknown operator.
    pub async fn accept_totp_step(&self, operator_id: &str, step: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE operators SET last_totp_step = $2 WHERE id = $1 AND last_totp_step < $2",
        )
        .bind(operator_id)
        .bind(step)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Disables an operator and revokes every session and API token it holds, recording
    /// [`AuditAction::OperatorDisabled`] by `actor`, in one transaction. Its next request
    /// fails whatever credential it carries. `NotFound` for an unknown or
    /// already disabled operator.
    pub async fn disable_operator(
        &self,
        operator_id: &str,
        actor: &str,
        now: Millis,
    ) -> Result<Operator, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE operators SET disabled_at = $2 WHERE id = $1 AND disabled_at IS NULL",
        )
        .bind(operator_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let revoked = sqlx::query(
            "UPDATE sessions SET revoked_at = $2 WHERE operator_id = $1 AND revoked_at IS NULL",
        )
        .bind(operator_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "UPDATE api_tokens SET revoked_at = $2 WHERE operator_id = $1 AND revoked_at IS NULL",
        )
        .bind(operator_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        const SQL: &str = concat!(
            "SELECT ",
            operator_columns!(),
            " FROM operators o WHERE o.id = $1"
        );
        let row = sqlx::query(SQL)
            .bind(operator_id)
            .fetch_one(&mut *tx)
            .await?;
        let operator = operator_from_row(&row)?;
        insert_audit(
            &mut tx,
            &NewAuditEvent {
                at: now,
                tenant_id: None,
                actor: actor.to_owned(),
                action: AuditAction::OperatorDisabled,
                target: operator.id.clone(),
                detail: format!("username={}; {revoked} sessions revoked", operator.username),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(operator)
    }
}
