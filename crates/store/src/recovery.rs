//! One-time recovery codes, usable in place of a TOTP code at login. The
//! store keeps only the hashes it is given; making and checking codes is the
//! server's.

use crate::AuditAction;
use crate::{Millis, Store, StoreError};

impl Store {
    /// Replaces every recovery code of `operator_id` (used or not) with
    /// `hashes`, and records [`AuditAction::RecoveryCodesGenerated`] by `actor`, in one
    /// transaction.
    pub async fn replace_recovery_codes(
        &self,
        operator_id: &str,
        hashes: &[[u8; 32]],
        actor: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM recovery_codes WHERE operator_id = $1")
            .bind(operator_id)
            .execute(&mut *tx)
            .await?;
        for hash in hashes {
            sqlx::query(
                "INSERT INTO recovery_codes (operator_id, code_hash, created_at) VALUES ($1, $2, $3)",
            )
            .bind(operator_id)
            .bind(&hash[..])
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(crate::error::unique_or_missing("recovery code repeated"))?;
        }
        crate::audit::insert_audit(
            &mut tx,
            &crate::NewAuditEvent {
                at: now,
                tenant_id: None,
                actor: actor.to_owned(),
                action: AuditAction::RecoveryCodesGenerated,
                target: operator_id.to_owned(),
                detail: format!("{} codes", hashes.len()),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Spends the unused recovery code hashed `hash` of `operator_id`: true
    /// only the first time (one atomic update, so two logins with the same
    /// code cannot both pass). When it is spent, `events(codes_left)` are
    /// recorded in the same transaction.
    pub async fn use_recovery_code<F>(
        &self,
        operator_id: &str,
        hash: [u8; 32],
        now: Millis,
        events: F,
    ) -> Result<bool, StoreError>
    where
        F: FnOnce(i64) -> Vec<crate::NewAuditEvent> + Send,
    {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE recovery_codes SET used_at = $3 \
             WHERE operator_id = $1 AND code_hash = $2 AND used_at IS NULL",
        )
        .bind(operator_id)
        .bind(&hash[..])
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        let left: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM recovery_codes WHERE operator_id = $1 AND used_at IS NULL",
        )
        .bind(operator_id)
        .fetch_one(&mut *tx)
        .await?;
        crate::audit::insert_events(&mut tx, &events(left)).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// How many unused recovery codes `operator_id` has.
    pub async fn recovery_codes_left(&self, operator_id: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM recovery_codes WHERE operator_id = $1 AND used_at IS NULL",
        )
        .bind(operator_id)
        .fetch_one(&self.pool)
        .await?)
    }
}
