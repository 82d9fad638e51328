//! Passkey ceremonies waiting for their answer, shared by every node (RFD
//! 0018): one begun through node A is answered through node B.
//!
//! The store keeps the rows and enforces the budgets the server gives
//! ([`CeremonyBudgets`]): a full budget never refuses, its oldest ceremony
//! gives way (`auth::ceremonies` in the server says why). Answering
//! ([`Store::take_ceremony`]) deletes the row and returns it in one
//! statement, so a ceremony is answered once across all nodes.

use sqlx::Row;

use crate::{Millis, Store, StoreError};

/// Whose budget a waiting ceremony uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CeremonyOwner {
    /// Unauthenticated: asked from this client address key to sign in as
    /// this username.
    Login { addr: String, username: String },
    /// Started by the signed-in session whose token hashes to this.
    Session([u8; 32]),
}

/// A ceremony to keep until it is answered or expires.
#[derive(Debug, Clone)]
pub struct NewCeremony {
    pub id_hash: [u8; 32],
    pub challenge: [u8; 32],
    /// What it was issued for, compared whole when it is answered (at most
    /// 512 bytes).
    pub purpose: String,
    pub owner: CeremonyOwner,
    pub created_at: Millis,
    pub expires_at: Millis,
}

/// How many ceremonies may wait (the server's documented limits).
#[derive(Debug, Clone, Copy)]
pub struct CeremonyBudgets {
    pub logins: i64,
    pub logins_per_address: i64,
    pub logins_per_username: i64,
    pub sessions: i64,
    pub per_session: i64,
}

/// A ceremony taken out to be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenCeremony {
    pub challenge: [u8; 32],
    pub purpose: String,
    pub expires_at: Millis,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Deletes the `excess` oldest ceremonies matching `filter` (binds from
/// `$3`), never `keep` (`$1`), in `tx`. `order` puts the first to go first.
async fn give_way(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    filter: &str,
    order: &str,
    keep: &[u8; 32],
    excess: i64,
    binds: &[&str],
) -> Result<(), StoreError> {
    if excess <= 0 {
        return Ok(());
    }
    let sql = format!(
        "DELETE FROM auth_ceremonies WHERE id_hash IN (SELECT id_hash FROM auth_ceremonies \
         WHERE id_hash <> $1 AND {filter} ORDER BY {order} created_at, id_hash LIMIT $2)"
    );
    let mut query = sqlx::query(&sql).bind(&keep[..]).bind(excess);
    for b in binds {
        query = query.bind(*b);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

async fn count(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    filter: &str,
    binds: &[&str],
) -> Result<i64, StoreError> {
    let sql = format!("SELECT COUNT(*) FROM auth_ceremonies WHERE {filter}");
    let mut query = sqlx::query_scalar(&sql);
    for b in binds {
        query = query.bind(*b);
    }
    Ok(query.fetch_one(&mut **tx).await?)
}

impl Store {
    /// Keeps `ceremony`, first dropping the expired ones and then, while a
    /// budget of its owner is over, the oldest that stand in the way: for a
    /// login, the username's oldest asked from the same address (else the
    /// username's oldest), then the address's oldest, then the oldest login
    /// of all; for a session, its own oldest, then the oldest signed-in
    /// ceremony of all. One transaction whose first statement is a write.
    /// Two starts at the same moment through two nodes may leave a budget
    /// one over until the next start trims it.
    pub async fn start_ceremony(
        &self,
        ceremony: &NewCeremony,
        budgets: &CeremonyBudgets,
    ) -> Result<(), StoreError> {
        if ceremony.purpose.len() > 512 {
            return Err(StoreError::Invalid(
                "a ceremony purpose is at most 512 bytes",
            ));
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM auth_ceremonies WHERE expires_at <= $1")
            .bind(ceremony.created_at)
            .execute(&mut *tx)
            .await?;
        let (pool, key, name) = match &ceremony.owner {
            CeremonyOwner::Login { addr, username } => ("login", addr.clone(), username.clone()),
            CeremonyOwner::Session(hash) => ("session", hex(hash), String::new()),
        };
        sqlx::query(
            "INSERT INTO auth_ceremonies (id_hash, challenge, purpose, pool, owner_key, \
             owner_name, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&ceremony.id_hash[..])
        .bind(&ceremony.challenge[..])
        .bind(&ceremony.purpose)
        .bind(pool)
        .bind(&key)
        .bind(&name)
        .bind(ceremony.created_at)
        .bind(ceremony.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(crate::error::unique("ceremony id"))?;
        let keep = &ceremony.id_hash;
        if pool == "login" {
            let of_name = "pool = 'login' AND owner_name = $3";
            let n = count(
                &mut tx,
                "pool = 'login' AND owner_name = $1",
                &[name.as_str()],
            )
            .await?;
            give_way(
                &mut tx,
                of_name,
                "CASE WHEN owner_key = $4 THEN 0 ELSE 1 END,",
                keep,
                n - budgets.logins_per_username,
                &[name.as_str(), key.as_str()],
            )
            .await?;
            let n = count(
                &mut tx,
                "pool = 'login' AND owner_key = $1",
                &[key.as_str()],
            )
            .await?;
            give_way(
                &mut tx,
                "pool = 'login' AND owner_key = $3",
                "",
                keep,
                n - budgets.logins_per_address,
                &[key.as_str()],
            )
            .await?;
            let n = count(&mut tx, "pool = 'login'", &[]).await?;
            give_way(&mut tx, "pool = 'login'", "", keep, n - budgets.logins, &[]).await?;
        } else {
            let n = count(
                &mut tx,
                "pool = 'session' AND owner_key = $1",
                &[key.as_str()],
            )
            .await?;
            give_way(
                &mut tx,
                "pool = 'session' AND owner_key = $3",
                "",
                keep,
                n - budgets.per_session,
                &[key.as_str()],
            )
            .await?;
            let n = count(&mut tx, "pool = 'session'", &[]).await?;
            give_way(
                &mut tx,
                "pool = 'session'",
                "",
                keep,
                n - budgets.sessions,
                &[],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Takes ceremony `id_hash` out (whatever the caller then decides, it
    /// is gone): one statement, so of two nodes answering it at once only
    /// one gets it.
    pub async fn take_ceremony(
        &self,
        id_hash: &[u8; 32],
    ) -> Result<Option<TakenCeremony>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM auth_ceremonies WHERE id_hash = $1 \
             RETURNING challenge, purpose, expires_at",
        )
        .bind(&id_hash[..])
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let challenge: Vec<u8> = row.try_get("challenge")?;
        Ok(Some(TakenCeremony {
            challenge: challenge
                .try_into()
                .map_err(|_| StoreError::Corrupt("a ceremony challenge is not 32 bytes".into()))?,
            purpose: row.try_get("purpose")?,
            expires_at: row.try_get("expires_at")?,
        }))
    }

    /// How many ceremonies wait (expired or not), for tests and metrics.
    pub async fn ceremony_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM auth_ceremonies")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Drops the ceremonies expired at `now`, and the device sign-ins
    /// expired before `keep_until`: the sweep a background duty runs (a
    /// start also drops expired ceremonies). Returns how many rows went.
    pub async fn sweep_sign_in_state(
        &self,
        now: Millis,
        device_expired_before: Millis,
    ) -> Result<u64, StoreError> {
        let ceremonies = sqlx::query("DELETE FROM auth_ceremonies WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let devices = sqlx::query("DELETE FROM device_sign_ins WHERE expires_at < $1")
            .bind(device_expired_before)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(ceremonies + devices)
    }
}
