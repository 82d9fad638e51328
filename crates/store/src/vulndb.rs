//! The offline vulnerability database (migration 0015, issue 17).
//!
//! An import fills a `staging` generation batch by batch
//! ([`Store::vulndb_begin_import`], [`Store::vulndb_add_records`]); one
//! transaction switches it in ([`Store::vulndb_commit_import`]): the old
//! `current` becomes `previous` and the generation before that is deleted,
//! so at most two complete generations exist. Every read joins the
//! `current` generation in its one statement: readers see the old set
//! until the switch commits, and the new one after, never nothing.
//!
//! The store checks no version: rows are what `bulwark_vulndb` parsed, and
//! matching happens in Rust over [`Store::vulndb_candidates`].

use sqlx::Row;

use crate::{Millis, NewAuditEvent, Store, StoreError, audit};

/// One advisory to store, as `bulwark_vulndb` reduced it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewVulnAdvisory {
    pub id: String,
    pub modified: String,
    pub published: Option<String>,
    pub aliases: Vec<String>,
    pub summary: String,
    pub affected: Vec<NewVulnAffected>,
}

/// One affected package of an advisory.
#[derive(Debug, Clone, PartialEq)]
pub struct NewVulnAffected {
    pub ecosystem: String,
    /// The source package name.
    pub package: String,
    /// `bulwark_vulndb::stored` text.
    pub ranges: String,
    pub severity: Option<VulnSeverity>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VulnSeverity {
    pub kind: String,
    pub vector: String,
    pub score_tenths: Option<i64>,
    pub rating: Option<String>,
}

/// A stored package entry of the current generation, with its advisory.
#[derive(Debug, Clone, PartialEq)]
pub struct VulnCandidate {
    pub generation: i64,
    pub advisory_id: String,
    pub modified: String,
    pub published: Option<String>,
    pub aliases: Vec<String>,
    pub summary: String,
    pub ecosystem: String,
    pub package: String,
    pub ranges: String,
    pub severity: Option<VulnSeverity>,
}

/// One generation's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VulnGeneration {
    pub id: i64,
    pub records: i64,
    pub created_by: String,
    pub switched_at: Option<Millis>,
}

/// Per ecosystem release: advisories and distinct packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VulnEcosystemCount {
    pub ecosystem: String,
    pub advisories: i64,
    pub packages: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VulnDbStatus {
    pub current: Option<VulnGeneration>,
    pub previous: Option<VulnGeneration>,
    pub ecosystems: Vec<VulnEcosystemCount>,
}

fn join_aliases(aliases: &[String]) -> String {
    aliases.join("\n")
}

pub(crate) fn split_aliases(text: &str) -> Vec<String> {
    text.lines()
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn delete_generation(
    conn: &mut sqlx::AnyConnection,
    generation: i64,
) -> Result<(), StoreError> {
    for sql in [
        "DELETE FROM vulndb_affected WHERE generation = $1",
        "DELETE FROM vulndb_advisories WHERE generation = $1",
        "DELETE FROM vulndb_generations WHERE id = $1",
    ] {
        sqlx::query(sql)
            .bind(generation)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

impl Store {
    /// Starts an import: a new `staging` generation, returned. An earlier
    /// import that never switched in (its CLI stopped) is deleted: the
    /// newer import supersedes it, and its next batch finds nothing.
    pub async fn vulndb_begin_import(&self, now: Millis, actor: &str) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        // A write first (the crate's rule), so concurrent starts serialise:
        // a SQLite transaction that read first cannot always become a writer.
        sqlx::query("UPDATE vulndb_generations SET records = records WHERE state = 'staging'")
            .execute(&mut *tx)
            .await?;
        let stale: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM vulndb_generations WHERE state = 'staging'")
                .fetch_all(&mut *tx)
                .await?;
        // Ids are never reused (a superseded import's late batch must not
        // land in this one): the next id is taken before stale ones go.
        let id: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM vulndb_generations")
            .fetch_one(&mut *tx)
            .await?;
        for stale in stale {
            delete_generation(&mut tx, stale).await?;
        }
        sqlx::query(
            "INSERT INTO vulndb_generations (id, state, created_at, created_by) \
             VALUES ($1, 'staging', $2, $3)",
        )
        .bind(id)
        .bind(now)
        .bind(actor)
        .execute(&mut *tx)
        .await
        .map_err(crate::error::unique(
            "another import started at the same time",
        ))?;
        tx.commit().await?;
        Ok(id)
    }

    /// Adds a batch of advisories to a staging generation, all or none.
    /// `NotFound`: the generation is not staging (switched in, or
    /// superseded); `Conflict`: an advisory id already in it.
    pub async fn vulndb_add_records(
        &self,
        generation: i64,
        advisories: &[NewVulnAdvisory],
    ) -> Result<(), StoreError> {
        let count =
            i64::try_from(advisories.len()).map_err(|_| StoreError::Invalid("batch size"))?;
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE vulndb_generations SET records = records + $2 WHERE id = $1 AND state = 'staging'",
        )
        .bind(generation)
        .bind(count)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated != 1 {
            return Err(StoreError::NotFound);
        }
        for a in advisories {
            sqlx::query(
                "INSERT INTO vulndb_advisories (generation, id, modified, published, aliases, summary) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(generation)
            .bind(&a.id)
            .bind(&a.modified)
            .bind(a.published.as_deref())
            .bind(join_aliases(&a.aliases))
            .bind(&a.summary)
            .execute(&mut *tx)
            .await
            .map_err(crate::error::unique("an advisory id appears twice in the import"))?;
            for p in &a.affected {
                let s = p.severity.as_ref();
                sqlx::query(
                    "INSERT INTO vulndb_affected (generation, advisory_id, ecosystem, package, ranges, \
                     severity_kind, severity_vector, score_tenths, rating) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(generation)
                .bind(&a.id)
                .bind(&p.ecosystem)
                .bind(&p.package)
                .bind(&p.ranges)
                .bind(s.map(|s| s.kind.as_str()))
                .bind(s.map(|s| s.vector.as_str()))
                .bind(s.and_then(|s| s.score_tenths))
                .bind(s.and_then(|s| s.rating.as_deref()))
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Switches a staging generation in, with the audit events that record
    /// it, in one transaction. `NotFound`: not staging any more;
    /// `Invalid`: it holds no advisory (an empty database would hide every
    /// finding). Returns the generation's record count.
    pub async fn vulndb_commit_import(
        &self,
        generation: i64,
        now: Millis,
        events: impl FnOnce(i64) -> Vec<NewAuditEvent>,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let records: Option<i64> = sqlx::query_scalar(
            "UPDATE vulndb_generations SET switched_at = $2 WHERE id = $1 AND state = 'staging' \
             RETURNING records",
        )
        .bind(generation)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(records) = records else {
            tx.rollback().await?;
            return Err(StoreError::NotFound);
        };
        if records == 0 {
            // Released now, not when the connection next runs: the caller
            // may start another import at once.
            tx.rollback().await?;
            return Err(StoreError::Invalid("an import with no advisories"));
        }
        let previous: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM vulndb_generations WHERE state = 'previous'")
                .fetch_all(&mut *tx)
                .await?;
        for id in previous {
            delete_generation(&mut tx, id).await?;
        }
        sqlx::query("UPDATE vulndb_generations SET state = 'previous' WHERE state = 'current'")
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE vulndb_generations SET state = 'current' WHERE id = $1")
            .bind(generation)
            .execute(&mut *tx)
            .await?;
        audit::insert_events(&mut tx, &events(records)).await?;
        tx.commit().await?;
        Ok(records)
    }

    /// The current and previous generations and the current one's counts.
    pub async fn vulndb_status(&self) -> Result<VulnDbStatus, StoreError> {
        let rows = sqlx::query(
            "SELECT id, state, records, created_by, switched_at FROM vulndb_generations \
             WHERE state IN ('current', 'previous')",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut status = VulnDbStatus {
            current: None,
            previous: None,
            ecosystems: Vec::new(),
        };
        for row in rows {
            let generation = VulnGeneration {
                id: row.try_get("id")?,
                records: row.try_get("records")?,
                created_by: row.try_get("created_by")?,
                switched_at: row.try_get("switched_at")?,
            };
            match row.try_get::<String, _>("state")?.as_str() {
                "current" => status.current = Some(generation),
                _ => status.previous = Some(generation),
            }
        }
        let rows = sqlx::query(
            "SELECT a.ecosystem AS ecosystem, COUNT(DISTINCT a.advisory_id) AS advisories, \
             COUNT(DISTINCT a.package) AS packages FROM vulndb_affected a \
             JOIN vulndb_generations g ON g.id = a.generation AND g.state = 'current' \
             GROUP BY a.ecosystem ORDER BY a.ecosystem",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            status.ecosystems.push(VulnEcosystemCount {
                ecosystem: row.try_get("ecosystem")?,
                advisories: row.try_get("advisories")?,
                packages: row.try_get("packages")?,
            });
        }
        Ok(status)
    }

    /// Every stored entry for `package` (a source package name) in
    /// `ecosystem`, in the current generation, by advisory id. One
    /// statement: a switch committing meanwhile is seen whole or not at all.
    pub async fn vulndb_candidates(
        &self,
        ecosystem: &str,
        package: &str,
    ) -> Result<Vec<VulnCandidate>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.generation AS generation, v.id AS id, v.modified AS modified, v.published AS published, \
             v.aliases AS aliases, v.summary AS summary, a.ecosystem AS ecosystem, \
             a.package AS package, a.ranges AS ranges, a.severity_kind AS severity_kind, \
             a.severity_vector AS severity_vector, a.score_tenths AS score_tenths, \
             a.rating AS rating \
             FROM vulndb_affected a \
             JOIN vulndb_generations g ON g.id = a.generation AND g.state = 'current' \
             JOIN vulndb_advisories v ON v.generation = a.generation AND v.id = a.advisory_id \
             WHERE a.ecosystem = $1 AND a.package = $2 ORDER BY v.id",
        )
        .bind(ecosystem)
        .bind(package)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let kind: Option<String> = row.try_get("severity_kind")?;
                let severity = match kind {
                    None => None,
                    Some(kind) => Some(VulnSeverity {
                        kind,
                        vector: row
                            .try_get::<Option<String>, _>("severity_vector")?
                            .unwrap_or_default(),
                        score_tenths: row.try_get("score_tenths")?,
                        rating: row.try_get("rating")?,
                    }),
                };
                Ok(VulnCandidate {
                    generation: row.try_get("generation")?,
                    advisory_id: row.try_get("id")?,
                    modified: row.try_get("modified")?,
                    published: row.try_get("published")?,
                    aliases: split_aliases(&row.try_get::<String, _>("aliases")?),
                    summary: row.try_get("summary")?,
                    ecosystem: row.try_get("ecosystem")?,
                    package: row.try_get("package")?,
                    ranges: row.try_get("ranges")?,
                    severity,
                })
            })
            .collect()
    }
}
