//! First-run setup: the one-time setup code and the first owner's enrolment.

use crate::AuditAction;
use sqlx::Row;

use crate::audit::insert_audit;
use crate::error::unique;
use crate::operators::insert_operator;
use crate::{Millis, NewAuditEvent, NewOperator, Operator, Store, StoreError};

/// A first-owner enrolment waiting for its TOTP confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupEnrolment {
    /// The setup code this enrolment was started with; consumed at confirmation.
    pub code_hash: [u8; 32],
    pub username: String,
    pub password_hash: String,
    pub totp_secret: String,
    pub created_at: Millis,
    pub expires_at: Millis,
}

impl Store {
    /// Stores the hash of a new setup code, valid until `expires_at`, and
    /// deletes every earlier code.
    pub async fn replace_setup_code(
        &self,
        code_hash: [u8; 32],
        now: Millis,
        expires_at: Millis,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM setup_codes")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO setup_codes (code_hash, created_at, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(&code_hash[..])
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// True if a setup code with this hash exists and is unexpired at `now`.
    pub async fn setup_code_valid(
        &self,
        code_hash: [u8; 32],
        now: Millis,
    ) -> Result<bool, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM setup_codes WHERE code_hash = $1 AND expires_at > $2",
        )
        .bind(&code_hash[..])
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(count > 0)
    }

    /// Stores an enrolment under the hash of its id, and deletes enrolments
    /// that expired before `enrolment.created_at`.
    pub async fn create_setup_enrolment(
        &self,
        id_hash: [u8; 32],
        enrolment: &SetupEnrolment,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM setup_enrolments WHERE expires_at <= $1")
            .bind(enrolment.created_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO setup_enrolments (id_hash, username, password_hash, totp_secret, created_at, expires_at, code_hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id_hash[..])
        .bind(&enrolment.username)
        .bind(&enrolment.password_hash)
        .bind(&enrolment.totp_secret)
        .bind(enrolment.created_at)
        .bind(enrolment.expires_at)
        .bind(&enrolment.code_hash[..])
        .execute(&mut *tx)
        .await
        .map_err(unique("setup enrolment already exists"))?;
        tx.commit().await?;
        Ok(())
    }

    /// The enrolment with this id hash, if it is unexpired at `now`.
    pub async fn setup_enrolment(
        &self,
        id_hash: [u8; 32],
        now: Millis,
    ) -> Result<Option<SetupEnrolment>, StoreError> {
        let row = sqlx::query(
            "SELECT username, password_hash, totp_secret, created_at, expires_at, code_hash FROM setup_enrolments \
             WHERE id_hash = $1 AND expires_at > $2",
        )
        .bind(&id_hash[..])
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let code_hash: Vec<u8> = row.try_get("code_hash")?;
        Ok(Some(SetupEnrolment {
            code_hash: code_hash
                .try_into()
                .map_err(|_| StoreError::Corrupt("setup enrolment code hash".into()))?,
            username: row.try_get("username")?,
            password_hash: row.try_get("password_hash")?,
            totp_secret: row.try_get("totp_secret")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
        }))
    }

    /// Creates the first owner from a confirmed enrolment, in one transaction:
    ///
    /// 1. consume the setup code (it must exist and be unexpired, else `NotFound`);
    /// 2. consume the enrolment (it must exist, be unexpired and have been
    ///    started with this same code, else `NotFound`);
    /// 3. refuse if any operator exists (`Conflict("an owner already exists")`);
    /// 4. insert the operator with role "owner";
    /// 5. append [`AuditAction::OperatorCreated`] to the audit log.
    ///
    /// On any error nothing changes (the code and enrolment stay as they were).
    /// Consuming the code first takes its row lock (PostgreSQL) or the write
    /// lock (SQLite), so two concurrent calls cannot both create an owner.
    pub async fn create_first_owner(
        &self,
        code_hash: [u8; 32],
        enrolment_id_hash: [u8; 32],
        now: Millis,
    ) -> Result<Operator, StoreError> {
        let mut tx = self.pool.begin().await?;
        // 1.
        let codes = sqlx::query("DELETE FROM setup_codes WHERE code_hash = $1 AND expires_at > $2")
            .bind(&code_hash[..])
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if codes.rows_affected() != 1 {
            return Err(StoreError::NotFound);
        }
        // 2.
        let enrolment = sqlx::query(
            "DELETE FROM setup_enrolments WHERE id_hash = $1 AND expires_at > $2 AND code_hash = $3 \
             RETURNING username, password_hash, totp_secret",
        )
        .bind(&enrolment_id_hash[..])
        .bind(now)
        .bind(&code_hash[..])
        .fetch_optional(&mut *tx)
        .await?;
        let Some(enrolment) = enrolment else {
            return Err(StoreError::NotFound);
        };
        let new = NewOperator {
            username: enrolment.try_get("username")?,
            password_hash: enrolment.try_get("password_hash")?,
            totp_secret: enrolment.try_get("totp_secret")?,
        };
        // 3.
        let operators: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM operators")
            .fetch_one(&mut *tx)
            .await?;
        if operators != 0 {
            return Err(StoreError::Conflict("an owner already exists"));
        }
        // 4.
        let operator = insert_operator(&mut tx, &new, "owner", now).await?;
        // 5.
        insert_audit(
            &mut tx,
            &NewAuditEvent {
                at: now,
                tenant_id: None,
                actor: operator.username.clone(),
                action: AuditAction::OperatorCreated,
                target: operator.id.clone(),
                detail: format!("username={} role=owner first_owner=1", operator.username),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(operator)
    }
}
