//! Operators' public signing keys: what job signatures name (by key id) and
//! what the server shows as "signed by". The private halves never reach the
//! server (invariant 3); the store keeps the public key's canonical CBOR and
//! the hex of its `KeyId` as given.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::unique_or_missing;
use crate::{Millis, Store, StoreError};

/// What kind of authenticator holds a signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKeyKind {
    /// A plain Ed25519 key (e.g. in the `bulwark` CLI's key file).
    Ed25519,
    /// A passkey / security key.
    Webauthn,
}

impl std::fmt::Display for SigningKeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl SigningKeyKind {
    /// The stored name: "ed25519" or "webauthn".
    pub fn as_str(self) -> &'static str {
        match self {
            SigningKeyKind::Ed25519 => "ed25519",
            SigningKeyKind::Webauthn => "webauthn",
        }
    }

    pub fn parse(text: &str) -> Option<SigningKeyKind> {
        match text {
            "ed25519" => Some(SigningKeyKind::Ed25519),
            "webauthn" => Some(SigningKeyKind::Webauthn),
            _ => None,
        }
    }
}

/// A key to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSigningKey {
    /// Lowercase hex of the policy `KeyId` (SHA-256 of `public_key`).
    pub key_id: String,
    pub operator_id: String,
    /// Unique among the operator's keys (revoked ones included).
    pub name: String,
    pub kind: SigningKeyKind,
    /// Canonical CBOR of the policy `PublicKey`.
    pub public_key: Vec<u8>,
}

/// A registered key, with its operator's username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub key_id: String,
    pub operator_id: String,
    pub operator_username: String,
    pub name: String,
    pub kind: SigningKeyKind,
    pub public_key: Vec<u8>,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
}

macro_rules! signing_key_select {
    () => {
        "SELECT k.key_id, k.operator_id, o.username AS operator_username, k.name, k.kind, \
         k.public_key, k.created_at, k.revoked_at \
         FROM signing_keys k JOIN operators o ON o.id = k.operator_id"
    };
}

fn signing_key_from_row(row: &AnyRow) -> Result<SigningKey, StoreError> {
    let kind: String = row.try_get("kind")?;
    Ok(SigningKey {
        key_id: row.try_get("key_id")?,
        operator_id: row.try_get("operator_id")?,
        operator_username: row.try_get("operator_username")?,
        name: row.try_get("name")?,
        kind: SigningKeyKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("signing key kind {kind:?}")))?,
        public_key: row.try_get("public_key")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

impl Store {
    /// Registers a key. `Conflict("signing key already registered")` if the
    /// key id exists (for any operator, revoked or not),
    /// `Conflict("signing key name already used")` if the operator has a key
    /// of that name, `NotFound` for an unknown operator. `events` are
    /// recorded in the same transaction.
    pub async fn add_signing_key(
        &self,
        new: &NewSigningKey,
        now: Millis,
        events: &[crate::NewAuditEvent],
    ) -> Result<SigningKey, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "INSERT INTO signing_keys (key_id, operator_id, name, kind, public_key, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&new.key_id)
        .bind(&new.operator_id)
        .bind(&new.name)
        .bind(new.kind.as_str())
        .bind(&new.public_key[..])
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(unique_or_missing("signing key already registered"))?;
        if done.rows_affected() == 0 {
            // Which of the two unique constraints refused it.
            let taken: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM signing_keys WHERE key_id = $1")
                    .bind(&new.key_id)
                    .fetch_one(&mut *tx)
                    .await?;
            return Err(StoreError::Conflict(if taken != 0 {
                "signing key already registered"
            } else {
                "signing key name already used"
            }));
        }
        const SQL: &str = concat!(signing_key_select!(), " WHERE k.key_id = $1");
        let row = sqlx::query(SQL)
            .bind(&new.key_id)
            .fetch_one(&mut *tx)
            .await?;
        let key = signing_key_from_row(&row)?;
        crate::audit::insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(key)
    }

    /// An operator's keys, revoked ones included, oldest first.
    pub async fn signing_keys_of(&self, operator_id: &str) -> Result<Vec<SigningKey>, StoreError> {
        const SQL: &str = concat!(
            signing_key_select!(),
            " WHERE k.operator_id = $1 ORDER BY k.created_at, k.key_id"
        );
        let rows = sqlx::query(SQL)
            .bind(operator_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(signing_key_from_row).collect()
    }

    /// The key with this id, revoked or not (the caller checks `revoked_at`).
    /// Keys belong to operators, not tenants: this read is unscoped.
    pub async fn signing_key(&self, key_id: &str) -> Result<Option<SigningKey>, StoreError> {
        const SQL: &str = concat!(signing_key_select!(), " WHERE k.key_id = $1");
        let row = sqlx::query(SQL)
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(signing_key_from_row).transpose()
    }

    /// Revokes one of `operator_id`'s keys. `NotFound` for an unknown,
    /// already revoked or another operator's key.
    pub async fn revoke_signing_key(
        &self,
        operator_id: &str,
        key_id: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE signing_keys SET revoked_at = $3 \
             WHERE key_id = $1 AND operator_id = $2 AND revoked_at IS NULL",
        )
        .bind(key_id)
        .bind(operator_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}
