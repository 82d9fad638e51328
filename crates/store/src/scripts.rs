//! The MSP's script library (migration 0030, RFD 0013): scripts, their
//! immutable versions with the author's signed statement, and reviews.
//!
//! One library per server (the MSP's), not per tenant: reads take no
//! `TenantScope`. The store keeps what it is given: the server checks the
//! statements before storing them, and the operator's `bulwark` checks
//! them again (and the content's hash) before it signs a job. There is no
//! UPDATE of a version or a review: a change is a new version.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::unique_or_missing;
use crate::{Millis, NewAuditEvent, Store, StoreError};

/// A new script with its first version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewScript {
    pub id: String,
    pub name: String,
    pub description: String,
}

/// A new version (the first of a script, or the next).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewScriptVersion {
    pub version: u32,
    pub interpreter: String,
    /// `name:type` per line.
    pub params: String,
    pub content: String,
    pub sha256: String,
    pub author_id: String,
    pub author_envelope: Vec<u8>,
}

/// A script with its newest version number and how many reviews that has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub id: String,
    pub name: String,
    pub description: String,
    pub created_by: String,
    pub created_at: Millis,
    pub latest_version: u32,
    pub latest_reviews: i64,
}

/// One stored version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptVersion {
    pub script_id: String,
    pub version: u32,
    pub interpreter: String,
    pub params: String,
    pub content: String,
    pub sha256: String,
    pub author_id: String,
    pub author_username: String,
    pub author_envelope: Vec<u8>,
    pub created_at: Millis,
}

/// One stored review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptReview {
    pub reviewer_id: String,
    pub reviewer_username: String,
    pub envelope: Vec<u8>,
    pub created_at: Millis,
}

macro_rules! script_select {
    () => {
        "SELECT s.id, s.name, s.description, s.created_by, s.created_at, \
         (SELECT MAX(v.version) FROM script_versions v WHERE v.script_id = s.id) AS latest_version, \
         (SELECT COUNT(*) FROM script_reviews r WHERE r.script_id = s.id AND r.version = \
            (SELECT MAX(v.version) FROM script_versions v WHERE v.script_id = s.id)) AS latest_reviews \
         FROM scripts s"
    };
}

macro_rules! version_select {
    () => {
        "SELECT v.script_id, v.version, v.interpreter, v.params, v.content, v.sha256, \
         v.author_id, o.username AS author_username, v.author_envelope, v.created_at \
         FROM script_versions v JOIN operators o ON o.id = v.author_id"
    };
}

fn version_number(value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("script version {value}")))
}

fn script_from_row(row: &AnyRow) -> Result<Script, StoreError> {
    let latest: Option<i64> = row.try_get("latest_version")?;
    Ok(Script {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        latest_version: version_number(latest.unwrap_or_default())?,
        latest_reviews: row.try_get("latest_reviews")?,
    })
}

fn version_from_row(row: &AnyRow) -> Result<ScriptVersion, StoreError> {
    Ok(ScriptVersion {
        script_id: row.try_get("script_id")?,
        version: version_number(row.try_get("version")?)?,
        interpreter: row.try_get("interpreter")?,
        params: row.try_get("params")?,
        content: row.try_get("content")?,
        sha256: row.try_get("sha256")?,
        author_id: row.try_get("author_id")?,
        author_username: row.try_get("author_username")?,
        author_envelope: row.try_get("author_envelope")?,
        created_at: row.try_get("created_at")?,
    })
}

async fn insert_version(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    script_id: &str,
    new: &NewScriptVersion,
    now: Millis,
) -> Result<(), StoreError> {
    let done = sqlx::query(
        "INSERT INTO script_versions (script_id, version, interpreter, params, content, sha256, \
         author_id, author_envelope, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT DO NOTHING",
    )
    .bind(script_id)
    .bind(i64::from(new.version))
    .bind(&new.interpreter)
    .bind(&new.params)
    .bind(&new.content)
    .bind(&new.sha256)
    .bind(&new.author_id)
    .bind(&new.author_envelope[..])
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(unique_or_missing("script version exists"))?;
    if done.rows_affected() == 0 {
        return Err(StoreError::Conflict("script version exists"));
    }
    Ok(())
}

impl Store {
    /// Adds a script and its version 1, with `events`, in one transaction.
    /// `Conflict("script name taken")` if the name exists.
    pub async fn create_script(
        &self,
        script: &NewScript,
        first: &NewScriptVersion,
        now: Millis,
        events: &[NewAuditEvent],
    ) -> Result<Script, StoreError> {
        if first.version != 1 {
            return Err(StoreError::Invalid("a script starts at version 1"));
        }
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "INSERT INTO scripts (id, name, description, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(&script.id)
        .bind(&script.name)
        .bind(&script.description)
        .bind(&first.author_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(unique_or_missing("script name taken"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict("script name taken"));
        }
        insert_version(&mut tx, &script.id, first, now).await?;
        crate::audit::insert_events(&mut tx, events).await?;
        const SQL: &str = concat!(script_select!(), " WHERE s.id = $1");
        let row = sqlx::query(SQL)
            .bind(&script.id)
            .fetch_one(&mut *tx)
            .await?;
        let stored = script_from_row(&row)?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Adds the next version of a script: `new.version` must be the newest
    /// plus one (the author signed that number), else
    /// `Conflict("not the next version")`.
    pub async fn add_script_version(
        &self,
        script_id: &str,
        new: &NewScriptVersion,
        now: Millis,
        events: &[NewAuditEvent],
    ) -> Result<ScriptVersion, StoreError> {
        let mut tx = self.pool.begin().await?;
        let latest: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM script_versions WHERE script_id = $1")
                .bind(script_id)
                .fetch_one(&mut *tx)
                .await?;
        let Some(latest) = latest else {
            return Err(StoreError::NotFound);
        };
        if i64::from(new.version) != latest + 1 {
            return Err(StoreError::Conflict("not the next version"));
        }
        insert_version(&mut tx, script_id, new, now).await?;
        crate::audit::insert_events(&mut tx, events).await?;
        const SQL: &str = concat!(
            version_select!(),
            " WHERE v.script_id = $1 AND v.version = $2"
        );
        let row = sqlx::query(SQL)
            .bind(script_id)
            .bind(i64::from(new.version))
            .fetch_one(&mut *tx)
            .await?;
        let stored = version_from_row(&row)?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Every script of the library, by name.
    pub async fn list_scripts(&self) -> Result<Vec<Script>, StoreError> {
        const SQL: &str = concat!(script_select!(), " ORDER BY s.name");
        let rows = sqlx::query(SQL).fetch_all(&self.pool).await?;
        rows.iter().map(script_from_row).collect()
    }

    pub async fn script_by_name(&self, name: &str) -> Result<Option<Script>, StoreError> {
        const SQL: &str = concat!(script_select!(), " WHERE s.name = $1");
        let row = sqlx::query(SQL)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(script_from_row).transpose()
    }

    /// A script's versions, newest first.
    pub async fn script_versions(&self, script_id: &str) -> Result<Vec<ScriptVersion>, StoreError> {
        const SQL: &str = concat!(
            version_select!(),
            " WHERE v.script_id = $1 ORDER BY v.version DESC"
        );
        let rows = sqlx::query(SQL)
            .bind(script_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(version_from_row).collect()
    }

    pub async fn script_version(
        &self,
        script_id: &str,
        version: u32,
    ) -> Result<Option<ScriptVersion>, StoreError> {
        const SQL: &str = concat!(
            version_select!(),
            " WHERE v.script_id = $1 AND v.version = $2"
        );
        let row = sqlx::query(SQL)
            .bind(script_id)
            .bind(i64::from(version))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(version_from_row).transpose()
    }

    /// The content of a version whose recorded SHA-256 is `sha256` (lowercase
    /// hex), for a script check's agent (RFD 0009). Not checked here: the
    /// agent runs only content that hashes to its policy's value.
    pub async fn script_content_by_sha256(
        &self,
        sha256: &str,
    ) -> Result<Option<String>, StoreError> {
        const SQL: &str = "SELECT content FROM script_versions WHERE sha256 = $1 \
                           ORDER BY created_at, script_id, version LIMIT 1";
        let row = sqlx::query(SQL)
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<String, _>("content")).transpose()?)
    }

    /// Records a review. `Conflict("already reviewed")` if this operator
    /// reviewed this version before; `NotFound` for no such version.
    pub async fn add_script_review(
        &self,
        script_id: &str,
        version: u32,
        reviewer_id: &str,
        envelope: &[u8],
        now: Millis,
        events: &[NewAuditEvent],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "INSERT INTO script_reviews (script_id, version, reviewer_id, envelope, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(script_id)
        .bind(i64::from(version))
        .bind(reviewer_id)
        .bind(envelope)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(unique_or_missing("already reviewed"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict("already reviewed"));
        }
        crate::audit::insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The reviews of one version, oldest first.
    pub async fn script_reviews(
        &self,
        script_id: &str,
        version: u32,
    ) -> Result<Vec<ScriptReview>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.reviewer_id, o.username AS reviewer_username, r.envelope, r.created_at \
             FROM script_reviews r JOIN operators o ON o.id = r.reviewer_id \
             WHERE r.script_id = $1 AND r.version = $2 ORDER BY r.created_at, r.reviewer_id",
        )
        .bind(script_id)
        .bind(i64::from(version))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ScriptReview {
                    reviewer_id: row.try_get("reviewer_id")?,
                    reviewer_username: row.try_get("reviewer_username")?,
                    envelope: row.try_get("envelope")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }
}
