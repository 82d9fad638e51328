/// What can go wrong in the store.
///
/// Only [`StoreError::NotFound`], [`StoreError::Conflict`],
/// [`StoreError::ForeignTarget`] and [`StoreError::Invalid`] carry meaning for
/// users; the other kinds are operational failures whose detail belongs in
/// the server log, never in a response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The row does not exist, or is out of scope, expired or already used.
    #[error("not found")]
    NotFound,
    /// A unique constraint, or the state of the row (e.g. a job that is no
    /// longer pending), refused the write; the text says which.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// A job target that is not a device of the job's tenant (or no device
    /// at all): the first such device id, as the caller named it.
    #[error("{0} is not a device of the job's tenant")]
    ForeignTarget(String),
    /// A value the store will not keep as given (e.g. a version above
    /// `i64::MAX`, a job without targets); the text says which.
    #[error("invalid: {0}")]
    Invalid(&'static str),
    /// The database failed. The inner error may name tables, columns and
    /// paths: log it, do not show it.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// Stored bytes did not decode (e.g. an inventory that is not canonical CBOR).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Database(error)
    }
}

/// Maps a unique-constraint violation to `Conflict(what)`, anything else to `Database`.
pub(crate) fn unique(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |error| match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
        _ => StoreError::Database(error),
    }
}

/// Like [`unique`], and maps a foreign-key violation (a referenced row that
/// does not exist) to `NotFound`.
pub(crate) fn unique_or_missing(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |error| match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
        _ => StoreError::Database(error),
    }
}
