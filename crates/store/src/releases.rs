//! The agent release mirror (RFD 0017): TUF metadata and target files,
//! stored byte for byte as an owner imported them. The store checks
//! nothing about them; agents and the CLI verify everything they read.

use crate::audit::insert_audit;
use crate::{Millis, NewAuditEvent, Store, StoreError};

/// Which half of a TUF repository a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseFileKind {
    /// `metadata/*.json`: root, timestamp, snapshot, targets documents.
    Metadata,
    /// `targets/...`: release binaries under their TUF target path.
    Target,
}

impl ReleaseFileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseFileKind::Metadata => "metadata",
            ReleaseFileKind::Target => "target",
        }
    }
}

impl Store {
    /// Stores (or replaces) one release file and records the import in the
    /// MSP log, in one transaction.
    pub async fn put_release_file(
        &self,
        kind: ReleaseFileKind,
        path: &str,
        content: &[u8],
        now: Millis,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO release_files (kind, path, content, imported_at, imported_by) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (kind, path) DO UPDATE SET content = excluded.content, \
             imported_at = excluded.imported_at, imported_by = excluded.imported_by",
        )
        .bind(kind.as_str())
        .bind(path)
        .bind(content)
        .bind(now)
        .bind(&audit.actor)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One release file, if the mirror has it.
    pub async fn release_file(
        &self,
        kind: ReleaseFileKind,
        path: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT content FROM release_files WHERE kind = $1 AND path = $2")
                .bind(kind.as_str())
                .bind(path)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}
