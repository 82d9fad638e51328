//! Operators' passkeys and security keys (WebAuthn credentials), the
//! passkey a session was signed in with, and server-wide settings.
//!
//! The store keeps what it is given: the server parses registrations and
//! verifies every assertion (`bulwark_policy::webauthn`), and decides what
//! a signature counter that does not move means. What the store guarantees
//! is atomicity: a counter only moves from the value the server saw, and
//! "never remove the last passkey" holds against concurrent removals.

use crate::AuditAction;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::insert_audit;
use crate::error::{unique, unique_or_missing};
use crate::{Millis, NewAuditEvent, Store, StoreError};

/// A credential to store, as verified at registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPasskey {
    pub operator_id: String,
    /// Unique among the operator's passkeys.
    pub name: String,
    /// The credential id the browser returned (unique across the server).
    pub credential_id: Vec<u8>,
    /// Canonical CBOR of `bulwark_policy::webauthn::WebAuthnCredential`.
    pub credential: Vec<u8>,
    pub sign_count: u32,
    pub backup_eligible: bool,
    pub created_at: Millis,
}

/// A stored passkey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passkey {
    pub id: String,
    pub operator_id: String,
    pub name: String,
    pub credential_id: Vec<u8>,
    pub credential: Vec<u8>,
    /// The signature counter as last seen (0: the authenticator keeps none).
    pub sign_count: u32,
    pub backup_eligible: bool,
    pub created_at: Millis,
    pub last_used_at: Option<Millis>,
}

/// Whether [`Store::remove_passkey`] may remove an operator's last passkey.
/// The safe default keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LastPasskey {
    /// Refuse (`Conflict`) to remove the only passkey left: the operator's
    /// role requires one.
    #[default]
    Keep,
    /// The operator may go back to one-time codes.
    MayRemove,
}

const PASSKEY_COLUMNS: &str = "p.id, p.operator_id, p.name, p.credential_id, p.credential, \
     p.sign_count, p.backup_eligible, p.created_at, p.last_used_at";

fn passkey_from_row(row: &AnyRow) -> Result<Passkey, StoreError> {
    let sign_count: i64 = row.try_get("sign_count")?;
    let backup_eligible: i64 = row.try_get("backup_eligible")?;
    Ok(Passkey {
        id: row.try_get("id")?,
        operator_id: row.try_get("operator_id")?,
        name: row.try_get("name")?,
        credential_id: row.try_get("credential_id")?,
        credential: row.try_get("credential")?,
        sign_count: u32::try_from(sign_count)
            .map_err(|_| StoreError::Corrupt(format!("passkey sign count {sign_count}")))?,
        backup_eligible: backup_eligible != 0,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

impl Store {
    /// Stores a passkey and records [`AuditAction::PasskeyAdded`] by `actor`, in one
    /// transaction. `Conflict` if the operator has a passkey of that name or
    /// the credential is registered already (to anyone); `NotFound` if the
    /// operator does not exist.
    pub async fn add_passkey(&self, new: &NewPasskey, actor: &str) -> Result<Passkey, StoreError> {
        let passkey = Passkey {
            id: uuid::Uuid::new_v4().to_string(),
            operator_id: new.operator_id.clone(),
            name: new.name.clone(),
            credential_id: new.credential_id.clone(),
            credential: new.credential.clone(),
            sign_count: new.sign_count,
            backup_eligible: new.backup_eligible,
            created_at: new.created_at,
            last_used_at: None,
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO passkeys (id, operator_id, name, credential_id, credential, sign_count, \
             backup_eligible, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&passkey.id)
        .bind(&passkey.operator_id)
        .bind(&passkey.name)
        .bind(&passkey.credential_id[..])
        .bind(&passkey.credential[..])
        .bind(i64::from(passkey.sign_count))
        .bind(i64::from(passkey.backup_eligible))
        .bind(passkey.created_at)
        .execute(&mut *tx)
        .await
        .map_err(unique_or_missing(
            "a passkey of that name exists, or this passkey is registered already",
        ))?;
        insert_audit(
            &mut tx,
            &NewAuditEvent::new(
                new.created_at,
                actor,
                AuditAction::PasskeyAdded,
                &passkey.id,
            )
            .with_detail(format!(
                "operator={} name={} backup_eligible={}",
                passkey.operator_id, passkey.name, passkey.backup_eligible
            )),
        )
        .await?;
        tx.commit().await?;
        Ok(passkey)
    }

    /// An operator's passkeys, oldest first.
    pub async fn passkeys_of(&self, operator_id: &str) -> Result<Vec<Passkey>, StoreError> {
        let sql = format!(
            "SELECT {PASSKEY_COLUMNS} FROM passkeys p WHERE p.operator_id = $1 \
             ORDER BY p.created_at, p.id"
        );
        let rows = sqlx::query(&sql)
            .bind(operator_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(passkey_from_row).collect()
    }

    /// How many passkeys an operator holds.
    pub async fn passkey_count(&self, operator_id: &str) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM passkeys WHERE operator_id = $1")
                .bind(operator_id)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The passkey with this credential id, whoever holds it.
    pub async fn passkey_by_credential_id(
        &self,
        credential_id: &[u8],
    ) -> Result<Option<Passkey>, StoreError> {
        let sql = format!("SELECT {PASSKEY_COLUMNS} FROM passkeys p WHERE p.credential_id = $1");
        let row = sqlx::query(&sql)
            .bind(credential_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(passkey_from_row).transpose()
    }

    /// Records a verified assertion: the counter moves from `seen` (the value
    /// the caller judged the new one against) to `new`, and the passkey was
    /// used at `now`. One compare-and-set: false if the stored counter is no
    /// longer `seen` (another login with the same authenticator came first)
    /// or the passkey is gone.
    pub async fn record_passkey_use(
        &self,
        id: &str,
        seen: u32,
        new: u32,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE passkeys SET sign_count = $3, last_used_at = $4 \
             WHERE id = $1 AND sign_count = $2",
        )
        .bind(id)
        .bind(i64::from(seen))
        .bind(i64::from(new))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Renames one of `operator_id`'s passkeys and records [`AuditAction::PasskeyRenamed`]
    /// by `actor`, in one transaction. `NotFound` for an unknown passkey or
    /// another operator's; `Conflict` if the name is taken.
    pub async fn rename_passkey(
        &self,
        operator_id: &str,
        id: &str,
        name: &str,
        actor: &str,
        now: Millis,
    ) -> Result<Passkey, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE passkeys SET name = $3 WHERE id = $1 AND operator_id = $2")
            .bind(id)
            .bind(operator_id)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(unique("a passkey of that name exists"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let sql = format!("SELECT {PASSKEY_COLUMNS} FROM passkeys p WHERE p.id = $1");
        let passkey = passkey_from_row(&sqlx::query(&sql).bind(id).fetch_one(&mut *tx).await?)?;
        insert_audit(
            &mut tx,
            &NewAuditEvent::new(now, actor, AuditAction::PasskeyRenamed, id)
                .with_detail(format!("operator={operator_id} name={name}")),
        )
        .await?;
        tx.commit().await?;
        Ok(passkey)
    }

    /// Removes one of `operator_id`'s passkeys and records [`AuditAction::PasskeyRemoved`]
    /// by `actor`, in one transaction. `NotFound` for an unknown passkey or
    /// another operator's. With [`LastPasskey::Keep`], `Conflict` if it is
    /// the operator's last one; two concurrent removals cannot both pass
    /// that check (the first statement locks the operator's row).
    pub async fn remove_passkey(
        &self,
        operator_id: &str,
        id: &str,
        last: LastPasskey,
        actor: &str,
        now: Millis,
    ) -> Result<Passkey, StoreError> {
        let mut tx = self.pool.begin().await?;
        // A write that changes nothing, first: it takes the operator's row
        // lock (PostgreSQL) or the write lock (SQLite), so removals of one
        // operator's passkeys run one after the other and each counts what
        // the previous one left.
        sqlx::query("UPDATE operators SET disabled_at = disabled_at WHERE id = $1")
            .bind(operator_id)
            .execute(&mut *tx)
            .await?;
        let sql = format!(
            "SELECT {PASSKEY_COLUMNS} FROM passkeys p WHERE p.id = $1 AND p.operator_id = $2"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(id)
            .bind(operator_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Err(StoreError::NotFound);
        };
        let passkey = passkey_from_row(&row)?;
        if last == LastPasskey::Keep {
            let held: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM passkeys WHERE operator_id = $1")
                    .bind(operator_id)
                    .fetch_one(&mut *tx)
                    .await?;
            if held <= 1 {
                return Err(StoreError::Conflict(
                    "this is the last passkey and the role requires one: add another first",
                ));
            }
        }
        sqlx::query("DELETE FROM passkeys WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        insert_audit(
            &mut tx,
            &NewAuditEvent::new(now, actor, AuditAction::PasskeyRemoved, id)
                .with_detail(format!("operator={operator_id} name={}", passkey.name)),
        )
        .await?;
        tx.commit().await?;
        Ok(passkey)
    }

    /// The passkey the session hashed `session_hash` was signed in with
    /// (`None`: a one-time code, a recovery code, or no such session).
    pub async fn session_passkey(
        &self,
        session_hash: [u8; 32],
    ) -> Result<Option<String>, StoreError> {
        let found: Option<Option<String>> =
            sqlx::query_scalar("SELECT passkey_id FROM sessions WHERE id_hash = $1")
                .bind(&session_hash[..])
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.flatten())
    }

    /// A server setting's value, if it was ever set.
    pub async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Sets a server setting and appends `event` (its actor is kept as the
    /// setting's `updated_by`, its time as `updated_at`), in one transaction.
    pub async fn put_setting(
        &self,
        key: &str,
        value: &str,
        event: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO settings (key, value, updated_at, updated_by) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
             updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        )
        .bind(key)
        .bind(value)
        .bind(event.at)
        .bind(&event.actor)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }
}

impl Store {
    /// Removes every passkey of `operator_id` and revokes its sessions (one
    /// of them may have been signed in with the lost authenticator),
    /// recording [`AuditAction::OperatorPasskeysReset`] by `actor`, in one transaction.
    /// Returns how many passkeys were removed. `NotFound` for an unknown
    /// operator.
    pub async fn reset_passkeys(
        &self,
        operator_id: &str,
        actor: &str,
        now: Millis,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let found = sqlx::query("UPDATE operators SET disabled_at = disabled_at WHERE id = $1")
            .bind(operator_id)
            .execute(&mut *tx)
            .await?;
        if found.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let names: Vec<String> =
            sqlx::query_scalar("SELECT name FROM passkeys WHERE operator_id = $1 ORDER BY name")
                .bind(operator_id)
                .fetch_all(&mut *tx)
                .await?;
        let removed = sqlx::query("DELETE FROM passkeys WHERE operator_id = $1")
            .bind(operator_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let revoked = sqlx::query(
            "UPDATE sessions SET revoked_at = $2 WHERE operator_id = $1 AND revoked_at IS NULL",
        )
        .bind(operator_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        insert_audit(
            &mut tx,
            &NewAuditEvent::new(now, actor, AuditAction::OperatorPasskeysReset, operator_id)
                .with_detail(format!(
                    "removed {removed} passkeys [{}]; {revoked} sessions revoked",
                    names.join(", ")
                )),
        )
        .await?;
        tx.commit().await?;
        Ok(removed)
    }
}
