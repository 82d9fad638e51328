//! Remote shells (migration 0033, RFD 0015): access grants as their signers
//! made them, the sessions opened under them, and each session's recording
//! as the agent sent it.
//!
//! The server's columns index the signed envelope; agents verify the
//! envelope itself. A recording is kept while it matches the digest the
//! agent reported (that digest is also in the tenant's log): a piece that
//! is not the next one, or would make it longer than reported or than the
//! cap, is refused and changes nothing.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::{NewAuditEvent, insert_events};
use crate::{Millis, Store, StoreError, TenantScope, in_scope};

/// A grant to store, as the requester signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewShellGrant {
    /// Hex of the signed grant id.
    pub id: String,
    pub tenant_id: String,
    pub device_id: String,
    pub requested_by: String,
    /// Hex of the key id the grant names as grantee.
    pub grantee_key: String,
    /// "unprivileged" or "root".
    pub account: String,
    pub reason: String,
    /// Unix seconds, as signed.
    pub not_before: i64,
    pub expires_at: i64,
    pub envelope: Vec<u8>,
}

/// A stored grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellGrant {
    pub grant: NewShellGrant,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
    pub revoked_by: Option<String>,
}

/// How a session ended, as its agent said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShellEnd {
    pub refusal: Option<String>,
    pub reason: String,
    /// Hex SHA-256 and length of the recording, when there is one.
    pub recording_sha256: Option<String>,
    pub recording_len: Option<i64>,
    pub truncated: bool,
}

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellSession {
    pub id: String,
    pub grant_id: String,
    pub device_id: String,
    pub operator_id: String,
    pub opened_at: Millis,
    pub closed_at: Option<Millis>,
    pub end: ShellEnd,
    /// Bytes of the recording stored so far.
    pub stored_len: i64,
}

const GRANT_COLUMNS: &str = "g.id, g.tenant_id, g.device_id, g.requested_by, g.grantee_key, \
     g.account, g.reason, g.not_before, g.expires_at, g.envelope, g.created_at, g.revoked_at, \
     g.revoked_by";

const SESSION_COLUMNS: &str = "s.id, s.grant_id, s.device_id, s.operator_id, s.opened_at, \
     s.closed_at, s.refusal, s.reason, s.recording_sha256, s.recording_len, s.truncated, \
     s.recording_stored AS stored_len";

fn grant_row(row: &AnyRow) -> Result<ShellGrant, StoreError> {
    Ok(ShellGrant {
        grant: NewShellGrant {
            id: row.try_get("id")?,
            tenant_id: row.try_get("tenant_id")?,
            device_id: row.try_get("device_id")?,
            requested_by: row.try_get("requested_by")?,
            grantee_key: row.try_get("grantee_key")?,
            account: row.try_get("account")?,
            reason: row.try_get("reason")?,
            not_before: row.try_get("not_before")?,
            expires_at: row.try_get("expires_at")?,
            envelope: row.try_get("envelope")?,
        },
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
        revoked_by: row.try_get("revoked_by")?,
    })
}

fn session_row(row: &AnyRow) -> Result<ShellSession, StoreError> {
    Ok(ShellSession {
        id: row.try_get("id")?,
        grant_id: row.try_get("grant_id")?,
        device_id: row.try_get("device_id")?,
        operator_id: row.try_get("operator_id")?,
        opened_at: row.try_get("opened_at")?,
        closed_at: row.try_get("closed_at")?,
        end: ShellEnd {
            refusal: row.try_get("refusal")?,
            reason: row
                .try_get::<Option<String>, _>("reason")?
                .unwrap_or_default(),
            recording_sha256: row.try_get("recording_sha256")?,
            recording_len: row.try_get("recording_len")?,
            truncated: row.try_get::<i64, _>("truncated")? != 0,
        },
        stored_len: row.try_get("stored_len")?,
    })
}

impl Store {
    /// Stores a requested grant with its events. `Conflict("grant exists")`
    /// for a grant id stored before (nothing changes).
    pub async fn create_shell_grant(
        &self,
        grant: &NewShellGrant,
        now: Millis,
        events: &[NewAuditEvent],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "INSERT INTO shell_grants (id, tenant_id, device_id, requested_by, grantee_key, \
             account, reason, not_before, expires_at, envelope, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&grant.id)
        .bind(&grant.tenant_id)
        .bind(&grant.device_id)
        .bind(&grant.requested_by)
        .bind(&grant.grantee_key)
        .bind(&grant.account)
        .bind(&grant.reason)
        .bind(grant.not_before)
        .bind(grant.expires_at)
        .bind(&grant.envelope)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict("grant exists"));
        }
        insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces a grant's envelope with one carrying another approval.
    /// `NotFound`, or `Conflict("grant revoked")` (nothing changes).
    pub async fn update_shell_grant_envelope(
        &self,
        id: &str,
        envelope: &[u8],
        events: &[NewAuditEvent],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE shell_grants SET envelope = $2 WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(envelope)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            let exists = sqlx::query("SELECT 1 FROM shell_grants WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            return Err(match exists {
                Some(_) => StoreError::Conflict("grant revoked"),
                None => StoreError::NotFound,
            });
        }
        insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Revokes a grant, with its events. `NotFound`, or
    /// `Conflict("grant already revoked")` (nothing changes).
    pub async fn revoke_shell_grant(
        &self,
        id: &str,
        by: &str,
        now: Millis,
        events: &[NewAuditEvent],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE shell_grants SET revoked_at = $2, revoked_by = $3 \
             WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(now)
        .bind(by)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            let exists = sqlx::query("SELECT 1 FROM shell_grants WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            return Err(match exists {
                Some(_) => StoreError::Conflict("grant already revoked"),
                None => StoreError::NotFound,
            });
        }
        insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A tenant's grants in the caller's scope, newest first.
    pub async fn shell_grants(
        &self,
        scope: &TenantScope,
        tenant_id: &str,
    ) -> Result<Vec<ShellGrant>, StoreError> {
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM shell_grants g WHERE {} AND g.tenant_id = $3 \
             ORDER BY g.created_at DESC, g.id",
            in_scope!("g.tenant_id")
        );
        let (all, operator) = scope.args();
        let rows = sqlx::query(&sql)
            .bind(all)
            .bind(operator)
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(grant_row).collect()
    }

    /// One grant in the caller's scope (`None` outside it).
    pub async fn shell_grant(
        &self,
        scope: &TenantScope,
        id: &str,
    ) -> Result<Option<ShellGrant>, StoreError> {
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM shell_grants g WHERE {} AND g.id = $3",
            in_scope!("g.tenant_id")
        );
        let (all, operator) = scope.args();
        let row = sqlx::query(&sql)
            .bind(all)
            .bind(operator)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(grant_row).transpose()
    }

    /// Records a session the relay opened, with its events.
    /// `Conflict("session exists")` for a session id used before.
    pub async fn open_shell_session(
        &self,
        id: &str,
        grant_id: &str,
        operator_id: &str,
        now: Millis,
        events: &[NewAuditEvent],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "INSERT INTO shell_sessions (id, grant_id, device_id, operator_id, opened_at) \
             SELECT $1, g.id, g.device_id, $3, $4 FROM shell_grants g WHERE g.id = $2 \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(grant_id)
        .bind(operator_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            let grant = sqlx::query("SELECT 1 FROM shell_grants WHERE id = $1")
                .bind(grant_id)
                .fetch_optional(&mut *tx)
                .await?;
            return Err(match grant {
                None => StoreError::NotFound,
                Some(_) => StoreError::Conflict("session exists"),
            });
        }
        insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The agent of `device_id` says how its session ended (once). False
    /// for another device's session, an unknown one, or one already closed:
    /// nothing changes and no event is recorded.
    pub async fn close_shell_session(
        &self,
        id: &str,
        device_id: &str,
        end: &ShellEnd,
        now: Millis,
        events: &[NewAuditEvent],
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE shell_sessions SET closed_at = $3, refusal = $4, reason = $5, \
             recording_sha256 = $6, recording_len = $7, truncated = $8 \
             WHERE id = $1 AND device_id = $2 AND closed_at IS NULL",
        )
        .bind(id)
        .bind(device_id)
        .bind(now)
        .bind(&end.refusal)
        .bind(&end.reason)
        .bind(&end.recording_sha256)
        .bind(end.recording_len)
        .bind(i64::from(end.truncated))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Appends the next piece of a closed session's recording, from its own
    /// device. False (nothing changes) unless the piece starts where the
    /// stored bytes end and keeps them within the reported length and `cap`.
    pub async fn append_shell_recording(
        &self,
        id: &str,
        device_id: &str,
        offset: i64,
        data: &[u8],
        cap: i64,
    ) -> Result<bool, StoreError> {
        let len = i64::try_from(data.len()).unwrap_or(i64::MAX);
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE shell_sessions SET recording_stored = recording_stored + $5 \
             WHERE id = $1 AND device_id = $2 AND closed_at IS NOT NULL \
             AND recording_stored = $3 AND recording_len IS NOT NULL \
             AND $3 + $5 <= recording_len AND $3 + $5 <= $4",
        )
        .bind(id)
        .bind(device_id)
        .bind(offset)
        .bind(cap)
        .bind(len)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 || data.is_empty() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO shell_recording_pieces (session_id, \"offset\", data) VALUES ($1, $2, $3)",
        )
        .bind(id)
        .bind(offset)
        .bind(data)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A device's sessions in the caller's scope, newest first.
    pub async fn shell_sessions(
        &self,
        scope: &TenantScope,
        device_id: &str,
    ) -> Result<Vec<ShellSession>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM shell_sessions s \
             JOIN shell_grants g ON g.id = s.grant_id WHERE {} AND s.device_id = $3 \
             ORDER BY s.opened_at DESC, s.id",
            in_scope!("g.tenant_id")
        );
        let (all, operator) = scope.args();
        let rows = sqlx::query(&sql)
            .bind(all)
            .bind(operator)
            .bind(device_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(session_row).collect()
    }

    /// A tenant's sessions in the caller's scope, newest first (at most 500).
    pub async fn tenant_shell_sessions(
        &self,
        scope: &TenantScope,
        tenant_id: &str,
    ) -> Result<Vec<ShellSession>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM shell_sessions s \
             JOIN shell_grants g ON g.id = s.grant_id WHERE {} AND g.tenant_id = $3 \
             ORDER BY s.opened_at DESC, s.id LIMIT 500",
            in_scope!("g.tenant_id")
        );
        let (all, operator) = scope.args();
        let rows = sqlx::query(&sql)
            .bind(all)
            .bind(operator)
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(session_row).collect()
    }

    /// One session in the caller's scope (none outside it).
    pub async fn shell_session(
        &self,
        scope: &TenantScope,
        id: &str,
    ) -> Result<Option<ShellSession>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM shell_sessions s \
             JOIN shell_grants g ON g.id = s.grant_id WHERE {} AND s.id = $3",
            in_scope!("g.tenant_id")
        );
        let (all, operator) = scope.args();
        let Some(row) = sqlx::query(&sql)
            .bind(all)
            .bind(operator)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        session_row(&row).map(Some)
    }

    /// A session and its stored recording, in the caller's scope.
    pub async fn shell_recording(
        &self,
        scope: &TenantScope,
        id: &str,
    ) -> Result<Option<(ShellSession, Vec<u8>)>, StoreError> {
        let Some(session) = self.shell_session(scope, id).await? else {
            return Ok(None);
        };
        let pieces = sqlx::query(
            "SELECT data FROM shell_recording_pieces WHERE session_id = $1 ORDER BY \"offset\"",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let mut recording = Vec::new();
        for piece in &pieces {
            recording.extend_from_slice(&piece.try_get::<Vec<u8>, _>("data")?);
        }
        Ok(Some((session, recording)))
    }
}
