//! Installed software per device (`device_packages`, migration 0014).
//!
//! The list comes from the device's agent and is untrusted: it is bounded
//! ([`MAX_PACKAGES_PER_DEVICE`]), duplicates are dropped rather than failing
//! the report, and NUL (which PostgreSQL text refuses) is replaced, so no
//! agent can make its report fail to store on one dialect only.

use bulwark_protocol::inventory::InstalledPackage;
use sqlx::Row;

use crate::{Store, StoreError, TenantScope, in_scope};

/// Most packages stored per device: the protocol's `max_packages` (the
/// gateway's frame decoder already refuses more; this holds for any caller).
pub const MAX_PACKAGES_PER_DEVICE: usize = 10_000;

/// Rows per INSERT: 6 parameters each stays far below SQLite's 32,766.
const BATCH: usize = 200;

/// Replaces the device's packages with `packages`, inside the caller's
/// transaction (the one storing the report).
pub(crate) async fn replace_packages_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    device_id: &str,
    packages: &[InstalledPackage],
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM device_packages WHERE device_id = $1")
        .bind(device_id)
        .execute(&mut **tx)
        .await?;
    let packages = &packages[..packages.len().min(MAX_PACKAGES_PER_DEVICE)];
    for batch in packages.chunks(BATCH) {
        let mut sql = String::from(
            "INSERT INTO device_packages \
             (device_id, name, architecture, version, source, source_version) VALUES ",
        );
        for i in 0..batch.len() {
            let p = 2 + i * 5;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "($1, ${}, ${}, ${}, ${}, ${})",
                p,
                p + 1,
                p + 2,
                p + 3,
                p + 4
            ));
        }
        // A hostile agent may list a package twice: keep the first.
        sql.push_str(" ON CONFLICT DO NOTHING");
        let mut query = sqlx::query(&sql).bind(device_id);
        for p in batch {
            for field in [
                &p.name,
                &p.architecture,
                &p.version,
                &p.source,
                &p.source_version,
            ] {
                query = query.bind(field.replace('\0', "\u{fffd}"));
            }
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// `text` as a LIKE pattern matching names that contain it, any case.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl Store {
    /// The packages of a device in `scope` whose name contains `name_contains`
    /// (any case; all when empty), by name and architecture, at most `limit`,
    /// and how many match in all. `None` when the device is not in scope.
    pub async fn device_packages(
        &self,
        scope: &TenantScope,
        device_id: &str,
        name_contains: &str,
        limit: usize,
    ) -> Result<Option<(Vec<InstalledPackage>, u64)>, StoreError> {
        const FROM: &str = concat!(
            " FROM device_packages p JOIN devices d ON d.id = p.device_id WHERE ",
            in_scope!("d.tenant_id"),
            " AND p.device_id = $3 AND LOWER(p.name) LIKE $4 ESCAPE '\\'"
        );
        let (all, operator) = scope.args();
        let Some(_) = self.device(scope, device_id).await? else {
            return Ok(None);
        };
        let pattern = contains_pattern(name_contains);
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*){FROM}"))
            .bind(all)
            .bind(operator)
            .bind(device_id)
            .bind(&pattern)
            .fetch_one(&self.pool)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT p.name, p.version, p.architecture, p.source, p.source_version{FROM} \
             ORDER BY p.name, p.architecture LIMIT $5"
        ))
        .bind(all)
        .bind(operator)
        .bind(device_id)
        .bind(&pattern)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let packages = rows
            .iter()
            .map(|row| {
                Ok(InstalledPackage {
                    name: row.try_get("name")?,
                    version: row.try_get("version")?,
                    architecture: row.try_get("architecture")?,
                    source: row.try_get("source")?,
                    source_version: row.try_get("source_version")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Some((packages, u64::try_from(total).unwrap_or(0))))
    }
}

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(contains_pattern(""), "%%");
        assert_eq!(contains_pattern("LibC6"), "%libc6%");
        assert_eq!(contains_pattern("a_b%c\\"), "%a\\_b\\%c\\\\%");
    }
}
