//! `bulwark login --device` requests (RFC 8628), shared by every node (RFD
//! 0018): the CLI polls one node while the console approves on another.
//!
//! The store keeps the rows; what a poll answers is the server's pure
//! `auth::cli_sign_in` logic. The answer that ends a request (a session or
//! a denial) is taken with one `DELETE ... RETURNING`, so it is given once.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Millis, Store, StoreError};

/// What the console answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceAnswer {
    Pending,
    Approved {
        operator_id: String,
        passkey_id: String,
        approved_at: Millis,
    },
    Denied,
}

/// One request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSignIn {
    /// SHA-256 of the device code (the CLI's secret).
    pub device_hash: [u8; 32],
    /// `XXXX-XXXX`.
    pub user_code: String,
    pub ip: String,
    pub user_agent: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub interval_ms: i64,
    pub last_poll_at: Option<Millis>,
    pub answer: DeviceAnswer,
}

/// Why a request was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceStartRefused {
    /// This address holds its most unexpired requests.
    Address,
    /// All addresses together do.
    Total,
}

const COLUMNS: &str = "device_hash, user_code, ip, user_agent, created_at, expires_at, \
                       interval_ms, last_poll_at, state, operator_id, passkey_id, approved_at";

fn from_row(row: &AnyRow) -> Result<DeviceSignIn, StoreError> {
    let hash: Vec<u8> = row.try_get("device_hash")?;
    let state: String = row.try_get("state")?;
    let answer = match state.as_str() {
        "pending" => DeviceAnswer::Pending,
        "denied" => DeviceAnswer::Denied,
        "approved" => DeviceAnswer::Approved {
            operator_id: row
                .try_get::<Option<String>, _>("operator_id")?
                .unwrap_or_default(),
            passkey_id: row
                .try_get::<Option<String>, _>("passkey_id")?
                .unwrap_or_default(),
            approved_at: row
                .try_get::<Option<i64>, _>("approved_at")?
                .unwrap_or_default(),
        },
        other => {
            return Err(StoreError::Corrupt(format!(
                "device sign-in state {other:?}"
            )));
        }
    };
    Ok(DeviceSignIn {
        device_hash: hash
            .try_into()
            .map_err(|_| StoreError::Corrupt("a device code hash is not 32 bytes".into()))?,
        user_code: row.try_get("user_code")?,
        ip: row.try_get("ip")?,
        user_agent: row.try_get("user_agent")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        interval_ms: row.try_get("interval_ms")?,
        last_poll_at: row.try_get("last_poll_at")?,
        answer,
    })
}

impl Store {
    /// Keeps a new pending request unless its address already holds
    /// `per_address` unexpired ones or all addresses `total`; first drops
    /// requests that expired before `forget_before`. A user code already in
    /// use is `Conflict` (the caller draws another). One transaction whose
    /// first statement is a write.
    pub async fn start_device_sign_in(
        &self,
        request: &DeviceSignIn,
        forget_before: Millis,
        per_address: i64,
        total: i64,
    ) -> Result<Result<(), DeviceStartRefused>, StoreError> {
        let now = request.created_at;
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM device_sign_ins WHERE expires_at < $1")
            .bind(forget_before)
            .execute(&mut *tx)
            .await?;
        let all: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM device_sign_ins WHERE expires_at > $1")
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
        if all >= total {
            return Ok(Err(DeviceStartRefused::Total));
        }
        let mine: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM device_sign_ins WHERE ip = $1 AND expires_at > $2",
        )
        .bind(&request.ip)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        if mine >= per_address {
            return Ok(Err(DeviceStartRefused::Address));
        }
        sqlx::query(&format!(
            "INSERT INTO device_sign_ins ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, 'pending', NULL, NULL, NULL)"
        ))
        .bind(&request.device_hash[..])
        .bind(&request.user_code)
        .bind(&request.ip)
        .bind(&request.user_agent)
        .bind(request.created_at)
        .bind(request.expires_at)
        .bind(request.interval_ms)
        .execute(&mut *tx)
        .await
        .map_err(crate::error::unique("user code"))?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// The request with this user code, whatever its state.
    pub async fn device_sign_in_by_code(
        &self,
        user_code: &str,
    ) -> Result<Option<DeviceSignIn>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM device_sign_ins WHERE user_code = $1"
        ))
        .bind(user_code)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The request with this device code hash, whatever its state.
    pub async fn device_sign_in(
        &self,
        device_hash: &[u8; 32],
    ) -> Result<Option<DeviceSignIn>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM device_sign_ins WHERE device_hash = $1"
        ))
        .bind(&device_hash[..])
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Answers the pending, unexpired request `user_code`; false if it is
    /// no longer one (answered, expired or gone).
    pub async fn answer_device_sign_in(
        &self,
        user_code: &str,
        answer: &DeviceAnswer,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let (state, operator, passkey, at) = match answer {
            DeviceAnswer::Pending => return Ok(false),
            DeviceAnswer::Denied => ("denied", None, None, None),
            DeviceAnswer::Approved {
                operator_id,
                passkey_id,
                approved_at,
            } => (
                "approved",
                Some(operator_id.as_str()),
                Some(passkey_id.as_str()),
                Some(*approved_at),
            ),
        };
        let done = sqlx::query(
            "UPDATE device_sign_ins SET state = $2, operator_id = $3, passkey_id = $4, \
             approved_at = $5 WHERE user_code = $1 AND state = 'pending' AND expires_at > $6",
        )
        .bind(user_code)
        .bind(state)
        .bind(operator)
        .bind(passkey)
        .bind(at)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a poll of a pending request: its time and interval.
    pub async fn record_device_poll(
        &self,
        device_hash: &[u8; 32],
        polled_at: Millis,
        interval_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE device_sign_ins SET last_poll_at = $2, interval_ms = $3 \
             WHERE device_hash = $1 AND state = 'pending'",
        )
        .bind(&device_hash[..])
        .bind(polled_at)
        .bind(interval_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes the answered request out (it works once): `None` if it is
    /// gone or no longer as `seen` (another poll, on any node, took it).
    pub async fn take_device_sign_in(
        &self,
        seen: &DeviceSignIn,
    ) -> Result<Option<DeviceSignIn>, StoreError> {
        let state = match seen.answer {
            DeviceAnswer::Pending => return Ok(None),
            DeviceAnswer::Approved { .. } => "approved",
            DeviceAnswer::Denied => "denied",
        };
        let row = sqlx::query(&format!(
            "DELETE FROM device_sign_ins WHERE device_hash = $1 AND state = $2 RETURNING {COLUMNS}"
        ))
        .bind(&seen.device_hash[..])
        .bind(state)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(from_row).transpose()
    }
}
