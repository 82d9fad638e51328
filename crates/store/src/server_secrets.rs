//! Secrets every node of a deployment shares (RFD 0018): made once, by
//! whichever node asks first, and never changed.

use crate::{Millis, Store, StoreError};

impl Store {
    /// The secret `name`: the stored one, or `candidate` if none was
    /// stored yet (stored now). Two nodes asking at once both get the one
    /// that was stored first.
    pub async fn shared_secret(
        &self,
        name: &str,
        candidate: [u8; 32],
        now: Millis,
    ) -> Result<[u8; 32], StoreError> {
        sqlx::query(
            "INSERT INTO server_secrets (name, secret, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(&candidate[..])
        .bind(now)
        .execute(&self.pool)
        .await?;
        let stored: Vec<u8> =
            sqlx::query_scalar("SELECT secret FROM server_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await?;
        stored
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("server secret {name} is not 32 bytes")))
    }
}
