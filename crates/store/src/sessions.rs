//! Operator sessions, stored under the hash of their id. The store keeps the
//! rows; the server decides what expiry and idle limits mean.

use crate::AuditAction;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::{insert_audit, insert_events};
use crate::error::unique_or_missing;
use crate::operators::{operator_columns, operator_from_row};
use crate::{Millis, NewAuditEvent, Operator, Store, StoreError};

/// How a session authenticates its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// A console session: a cookie plus a CSRF token.
    Browser,
    /// A `bulwark` CLI session: a bearer token.
    Cli,
}

impl SessionKind {
    /// The stored name: "browser" or "cli".
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Browser => "browser",
            SessionKind::Cli => "cli",
        }
    }

    fn parse(text: &str) -> Option<SessionKind> {
        match text {
            "browser" => Some(SessionKind::Browser),
            "cli" => Some(SessionKind::Cli),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id_hash: [u8; 32],
    /// A non-secret id for listing and revoking (never derived from the token).
    pub public_id: String,
    pub operator_id: String,
    pub kind: SessionKind,
    pub csrf_token: String,
    pub created_at: Millis,
    pub last_seen_at: Millis,
    pub expires_at: Millis,
    /// When the operator last passed MFA in this session.
    pub mfa_at: Millis,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub revoked_at: Option<Millis>,
}

/// A new session; `last_seen_at` starts at `created_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub id_hash: [u8; 32],
    pub operator_id: String,
    pub kind: SessionKind,
    pub csrf_token: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub mfa_at: Millis,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The passkey the session was signed in with (`None`: a one-time or
    /// recovery code).
    pub passkey_id: Option<String>,
}

macro_rules! session_columns {
    () => {
        "s.id_hash, s.public_id, s.operator_id, s.kind, s.csrf_token, s.created_at, \
         s.last_seen_at, s.expires_at, s.mfa_at, s.ip, s.user_agent, s.revoked_at"
    };
}

fn session_from_row(row: &AnyRow) -> Result<Session, StoreError> {
    let id_hash: Vec<u8> = row.try_get("id_hash")?;
    let kind: String = row.try_get("kind")?;
    Ok(Session {
        id_hash: id_hash.try_into().map_err(|bytes: Vec<u8>| {
            StoreError::Corrupt(format!("session id hash of {} bytes", bytes.len()))
        })?,
        public_id: row.try_get("public_id")?,
        operator_id: row.try_get("operator_id")?,
        kind: SessionKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("session kind {kind:?}")))?,
        csrf_token: row.try_get("csrf_token")?,
        created_at: row.try_get("created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        expires_at: row.try_get("expires_at")?,
        mfa_at: row.try_get("mfa_at")?,
        ip: row.try_get("ip")?,
        user_agent: row.try_get("user_agent")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

impl Store {
    /// `Conflict` if the id hash exists, `NotFound` if the operator (or the
    /// passkey) does not. The session gets a fresh public id (UUID v4).
    /// `events` (the sign-in) are recorded in the same transaction.
    pub async fn create_session(
        &self,
        new: NewSession,
        events: &[NewAuditEvent],
    ) -> Result<Session, StoreError> {
        let public_id = uuid::Uuid::new_v4().to_string();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO sessions (id_hash, operator_id, kind, csrf_token, created_at, last_seen_at, \
             expires_at, mfa_at, ip, user_agent, public_id, passkey_id) \
             VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&new.id_hash[..])
        .bind(&new.operator_id)
        .bind(new.kind.as_str())
        .bind(&new.csrf_token)
        .bind(new.created_at)
        .bind(new.expires_at)
        .bind(new.mfa_at)
        .bind(new.ip.as_deref())
        .bind(new.user_agent.as_deref())
        .bind(&public_id)
        .bind(new.passkey_id.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(unique_or_missing("session already exists"))?;
        insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(Session {
            id_hash: new.id_hash,
            public_id,
            operator_id: new.operator_id,
            kind: new.kind,
            csrf_token: new.csrf_token,
            created_at: new.created_at,
            last_seen_at: new.created_at,
            expires_at: new.expires_at,
            mfa_at: new.mfa_at,
            ip: new.ip,
            user_agent: new.user_agent,
            revoked_at: None,
        })
    }

    /// The session row and its operator, whatever their state (expired,
    /// revoked, operator disabled): the caller applies the policy.
    pub async fn session(
        &self,
        id_hash: [u8; 32],
    ) -> Result<Option<(Session, Operator)>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            session_columns!(),
            ", ",
            operator_columns!(),
            " FROM sessions s JOIN operators o ON o.id = s.operator_id WHERE s.id_hash = $1"
        );
        let row = sqlx::query(SQL)
            .bind(&id_hash[..])
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some((session_from_row(&row)?, operator_from_row(&row)?)))
    }

    /// Records activity on a session. A no-op for a revoked or unknown
    /// session (a request that raced a logout is not an error).
    pub async fn touch_session(&self, id_hash: [u8; 32], now: Millis) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE sessions SET last_seen_at = $2 WHERE id_hash = $1 AND revoked_at IS NULL",
        )
        .bind(&id_hash[..])
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Revokes a session (idempotent: the first revocation time is kept)
    /// and records `events` (the sign-out) in the same transaction;
    /// `NotFound` if there is no such session.
    pub async fn revoke_session(
        &self,
        id_hash: [u8; 32],
        now: Millis,
        events: &[NewAuditEvent],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = COALESCE(revoked_at, $2) WHERE id_hash = $1",
        )
        .bind(&id_hash[..])
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(())
    }

    /// An operator's sessions that are neither revoked nor past their
    /// absolute expiry at `now`, newest first. (Idle limits are the server's
    /// policy: it filters those.)
    pub async fn list_sessions(
        &self,
        operator_id: &str,
        now: Millis,
    ) -> Result<Vec<Session>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions s WHERE s.operator_id = $1 AND s.revoked_at IS NULL \
             AND s.expires_at > $2 ORDER BY s.created_at DESC, s.public_id"
        );
        let rows = sqlx::query(SQL)
            .bind(operator_id)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(session_from_row).collect()
    }

    /// Revokes one of `operator_id`'s own live sessions by its public id and
    /// records [`AuditAction::SessionRevoked`] by `actor`, in one transaction. `NotFound`
    /// for an unknown, already revoked or another operator's session (the
    /// caller answers all three alike).
    pub async fn revoke_own_session(
        &self,
        operator_id: &str,
        public_id: &str,
        actor: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = $3 \
             WHERE public_id = $1 AND operator_id = $2 AND revoked_at IS NULL",
        )
        .bind(public_id)
        .bind(operator_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        insert_audit(
            &mut tx,
            &NewAuditEvent::new(now, actor, AuditAction::SessionRevoked, public_id),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Revokes every live session of `operator_id` but the one hashed
    /// `keep`, and records [`AuditAction::SessionRevokedOthers`] with the count, in one
    /// transaction. Returns how many were revoked.
    pub async fn revoke_other_sessions(
        &self,
        operator_id: &str,
        keep: [u8; 32],
        actor: &str,
        now: Millis,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = $3 \
             WHERE operator_id = $1 AND id_hash <> $2 AND revoked_at IS NULL",
        )
        .bind(operator_id)
        .bind(&keep[..])
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let count = done.rows_affected();
        insert_audit(
            &mut tx,
            &NewAuditEvent::new(now, actor, AuditAction::SessionRevokedOthers, operator_id)
                .with_detail(format!("{count} sessions")),
        )
        .await?;
        tx.commit().await?;
        Ok(count)
    }

    /// Records a passed MFA check (step-up) on a live session, and
    /// `events` in the same transaction. `NotFound` for an unknown or
    /// revoked session.
    pub async fn refresh_session_mfa(
        &self,
        id_hash: [u8; 32],
        now: Millis,
        events: &[NewAuditEvent],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE sessions SET mfa_at = $2 WHERE id_hash = $1 AND revoked_at IS NULL",
        )
        .bind(&id_hash[..])
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(())
    }
}
