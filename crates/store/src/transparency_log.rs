//! The transparency logs' storage (RFD 0003): one append-only RFC 6962 log
//! per tenant, whose log id is the tenant id, and one for MSP-wide events
//! ([`MSP_LOG`]).
//!
//! Tables (migration 0008): `log_entries` holds each leaf's exact bytes,
//! `log_nodes` the hash of every complete subtree (what
//! [`Frontier::append_with`] reports), `log_heads` each log's size, root and
//! serialised frontier, `log_checkpoints` the signed tree heads.
//!
//! - An append reads one row (the head, locked by the `UPDATE` that reads
//!   it: a row lock on PostgreSQL, the write lock on SQLite), then inserts
//!   the entries and the subtrees they complete and rewrites the head, all
//!   in the caller's transaction.
//! - A proof is planned by the pure crate ([`inclusion_plan`],
//!   [`consistency_plan`]), which names the O(log n) complete subtrees it
//!   needs; they are read in one query and folded into the proof (hashes
//!   of incomplete right edges are folded from the complete subtrees that
//!   cover them).
//!
//! Hashing is `bulwark_translog`'s; the store checks no signature (a
//! checkpoint note is stored as the server signed it).

use std::collections::HashMap;

pub use bulwark_protocol::audit_leaf::AuditLeaf;
use bulwark_translog::proof::{ProofPlan, consistency_plan, inclusion_plan};
use bulwark_translog::tree::{Frontier, NodeId, frontier_nodes};
use bulwark_translog::{HASH_LEN, Hash, ProofError, leaf_hash};
use sqlx::{Any, AnyConnection, Row, Transaction};

use crate::error::unique;
use crate::{Millis, Store, StoreError};

/// The log id of the MSP-wide log (events that belong to no tenant).
pub use bulwark_protocol::audit_leaf::MSP_LOG;

/// A tree hash as stored: a root, a subtree hash or a proof component.
pub type LogHash = [u8; HASH_LEN];

/// Entries per `INSERT` statement (2 parameters each, far below the
/// 32,766 SQLite and 65,535 PostgreSQL allow).
const ENTRY_CHUNK: usize = 1000;
/// Subtree hashes per `INSERT` statement (3 parameters each).
const NODE_CHUNK: usize = 1000;
/// Node lookups are padded to a multiple of this, so that proof queries
/// come in few distinct shapes (each one a cached prepared statement).
const LOOKUP_PAD: usize = 8;

/// A log's current head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogHead {
    pub log_id: String,
    /// Number of entries.
    pub size: u64,
    /// The RFC 6962 root of those entries.
    pub root: LogHash,
    /// When the last append committed.
    pub updated_at: Millis,
    /// Entries `[0, archived_below)` were archived and left `log_entries`
    /// (RFD 0003, "Retention and archives"); their subtree hashes stay.
    pub archived_below: u64,
}

/// The entries of a log that may be archived next (see
/// [`Store::archive_candidates`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveCandidates {
    /// Entries below this index are already archived.
    pub archived_below: u64,
    /// The log's size.
    pub size: u64,
    /// Entries from `archived_below` on whose `at` column is before the
    /// cutoff, in index order (see [`Store::archive_candidates`]).
    pub entries: Vec<LogEntry>,
}

/// One entry, as the API serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub idx: u64,
    /// The exact leaf bytes; the tree commits to `SHA-256(0x00 || leaf)`.
    pub leaf: Vec<u8>,
    pub at: Millis,
    /// The leaf hash the tree holds at this index (its level-0 node), read
    /// apart from `leaf`: when an entry's bytes were changed behind the
    /// log's back, the two disagree, and this one is what heads sign.
    pub hash: Hash,
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogAppend {
    /// The index of the first entry appended (the others follow in order).
    pub first_idx: u64,
    /// The log's size after the append.
    pub size: u64,
    /// The log's root after the append.
    pub root: LogHash,
}

/// A signed tree head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCheckpoint {
    pub log_id: String,
    pub size: u64,
    /// The C2SP checkpoint, as a signed note.
    pub note: String,
    pub at: Millis,
}

fn to_i64(value: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Invalid(what))
}

fn to_u64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative {what}")))
}

/// The columns [`entry_from_row`] reads: an entry (`e`) and its leaf node (`n`).
macro_rules! entry_columns {
    () => {
        "e.idx, e.leaf, e.at, n.hash"
    };
}

/// Joins each entry `e` to its leaf node `n` (the tree's level 0).
macro_rules! leaf_node_join {
    () => {
        "LEFT JOIN log_nodes n ON n.log_id = e.log_id AND n.level = 0 AND n.idx = e.idx"
    };
}

fn entry_from_row(row: &sqlx::any::AnyRow) -> Result<LogEntry, StoreError> {
    let hash: Option<Vec<u8>> = row.try_get("hash")?;
    let hash =
        hash.ok_or_else(|| StoreError::Corrupt("a log entry without its leaf node".into()))?;
    Ok(LogEntry {
        idx: to_u64(row.try_get("idx")?, "entry index")?,
        leaf: row.try_get("leaf")?,
        at: row.try_get("at")?,
        hash: to_hash(&hash, "leaf node")?,
    })
}

fn to_hash(bytes: &[u8], what: &str) -> Result<Hash, StoreError> {
    Hash::try_from(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn plan_error(error: ProofError) -> StoreError {
    match error {
        ProofError::IndexOutOfRange { .. } => {
            StoreError::Invalid("the entry is not in a tree of that size")
        }
        ProofError::OldSizeZero => StoreError::Invalid("no consistency proof from the empty tree"),
        ProofError::OldSizeLarger { .. } => {
            StoreError::Invalid("the old tree size is larger than the new one")
        }
        other => StoreError::Corrupt(format!("proof: {other}")),
    }
}

fn serialise_frontier(frontier: &Frontier) -> Vec<u8> {
    frontier.hashes().iter().flat_map(|h| h.0).collect()
}

/// Appends `leaves` to `log_id` on `conn`, which must be inside a
/// transaction (the head row stays locked until it ends).
pub(crate) async fn append_leaves<L: AsRef<[u8]>>(
    conn: &mut AnyConnection,
    log_id: &str,
    leaves: &[L],
    now: Millis,
) -> Result<LogAppend, StoreError> {
    if leaves.is_empty() {
        return Err(StoreError::Invalid("an append needs at least one entry"));
    }
    // 1. Lock and read the head. The first statement is a write, so
    //    concurrent appenders queue here on both backends.
    const LOCK: &str =
        "UPDATE log_heads SET updated_at = $2 WHERE log_id = $1 RETURNING size, frontier";
    let mut head = sqlx::query(LOCK)
        .bind(log_id)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?;
    if head.is_none() {
        // A new log. A concurrent creator makes this wait (PostgreSQL) and do
        // nothing; the UPDATE below then locks the row it committed.
        sqlx::query(
            "INSERT INTO log_heads (log_id, size, root, frontier, updated_at) \
             VALUES ($1, 0, $2, $3, $4) ON CONFLICT (log_id) DO NOTHING",
        )
        .bind(log_id)
        .bind(Hash::empty_tree().0.to_vec())
        .bind(Vec::<u8>::new())
        .bind(now)
        .execute(&mut *conn)
        .await?;
        head = sqlx::query(LOCK)
            .bind(log_id)
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?;
    }
    let head = head.ok_or(StoreError::Corrupt("log head vanished".to_owned()))?;
    let size = to_u64(head.try_get("size")?, "log size")?;
    let frontier_bytes: Vec<u8> = head.try_get("frontier")?;
    if !frontier_bytes.len().is_multiple_of(HASH_LEN) {
        return Err(StoreError::Corrupt("ragged log frontier".to_owned()));
    }
    let hashes = frontier_bytes
        .chunks(HASH_LEN)
        .map(|c| to_hash(c, "log frontier"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut frontier =
        Frontier::from_parts(size, hashes).map_err(|e| StoreError::Corrupt(e.to_string()))?;

    // 2. Extend the frontier, collecting every subtree the append completes.
    let mut nodes: Vec<(NodeId, Hash)> = Vec::with_capacity(leaves.len() * 2 + 64);
    for leaf in leaves {
        frontier
            .append_with(leaf_hash(leaf.as_ref()), |id, hash| nodes.push((id, *hash)))
            .map_err(|_| StoreError::Invalid("the log is full"))?;
    }
    let new_size = frontier.size();
    to_i64(new_size, "the log is full")?;
    let first_idx = size;

    // 3. The entries.
    for (n, chunk) in leaves.chunks(ENTRY_CHUNK).enumerate() {
        let mut sql = String::from("INSERT INTO log_entries (log_id, idx, leaf, at) VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("($1,${},${},$2)", 3 + 2 * i, 4 + 2 * i));
        }
        let mut query = sqlx::query(&sql)
            .persistent(persistent(chunk.len(), ENTRY_CHUNK))
            .bind(log_id)
            .bind(now);
        let start = first_idx + (n * ENTRY_CHUNK) as u64;
        for (i, leaf) in chunk.iter().enumerate() {
            // `start + i < new_size <= i64::MAX`, checked above.
            query = query
                .bind((start + i as u64) as i64)
                .bind(leaf.as_ref().to_vec());
        }
        query
            .execute(&mut *conn)
            .await
            .map_err(unique("log entry already stored"))?;
    }

    // 4. The complete subtrees.
    for chunk in nodes.chunks(NODE_CHUNK) {
        let mut sql = String::from("INSERT INTO log_nodes (log_id, level, idx, hash) VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "($1,${},${},${})",
                2 + 3 * i,
                3 + 3 * i,
                4 + 3 * i
            ));
        }
        let mut query = sqlx::query(&sql)
            .persistent(persistent(chunk.len(), NODE_CHUNK))
            .bind(log_id);
        for (id, hash) in chunk {
            // A subtree index is at most its first leaf, below `new_size`.
            query = query
                .bind(i16::from(id.level))
                .bind(id.index as i64)
                .bind(hash.0.to_vec());
        }
        query
            .execute(&mut *conn)
            .await
            .map_err(unique("log subtree already stored"))?;
    }

    // 5. The new head.
    let root = frontier.root();
    sqlx::query("UPDATE log_heads SET size = $2, root = $3, frontier = $4 WHERE log_id = $1")
        .bind(log_id)
        .bind(new_size as i64)
        .bind(root.0.to_vec())
        .bind(serialise_frontier(&frontier))
        .execute(&mut *conn)
        .await?;
    Ok(LogAppend {
        first_idx,
        size: new_size,
        root: root.0,
    })
}

/// The one query that reads `n` complete subtrees of log `$1` (ids bound as
/// `$3, $4, ...` pairs of level and index), provided the log holds at least
/// `$2` entries. A join with a VALUES list: both SQLite and PostgreSQL look
/// each pair up in the primary key (`(level, idx) IN (VALUES ...)` makes
/// SQLite scan the whole log).
fn subtree_lookup_sql(n: usize) -> String {
    let mut sql = String::from("SELECT n.level, n.idx, n.hash FROM (VALUES ");
    for i in 0..n {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&format!("(${},${})", 3 + 2 * i, 4 + 2 * i));
    }
    sql.push_str(
        ") AS w JOIN log_nodes n \
         ON n.log_id = $1 AND n.level = w.column1 AND n.idx = w.column2 \
         WHERE EXISTS (SELECT 1 FROM log_heads h WHERE h.log_id = $1 AND h.size >= $2)",
    );
    sql
}

/// Whether a statement with `rows` rows is worth a cached prepared
/// statement: full chunks and small ones recur; odd remainders do not.
fn persistent(rows: usize, chunk: usize) -> bool {
    rows == chunk || rows <= 32
}

/// Removes entries `[from, below)` of `log_id` from `log_entries` inside
/// the caller's transaction and moves the log's `archived_below` from
/// `from` to `below`. The subtree hashes, the head and the signed heads
/// stay, so every proof still works. `Conflict` if the log's
/// `archived_below` is not `from` (another pruner moved it); `Invalid` if
/// `below` is not above `from` or beyond the log. Returns how many entry
/// rows were deleted.
pub(crate) async fn prune_entries(
    conn: &mut AnyConnection,
    log_id: &str,
    from: u64,
    below: u64,
) -> Result<u64, StoreError> {
    if below <= from {
        return Err(StoreError::Invalid(
            "an archived range must hold at least one entry",
        ));
    }
    let from_i = to_i64(from, "archive start beyond the log")?;
    let below_i = to_i64(below, "archive end beyond the log")?;
    // The first statement writes: it takes the head's lock, so appends
    // to this log wait until the prune commits.
    let moved = sqlx::query(
        "UPDATE log_heads SET archived_below = $3 \
         WHERE log_id = $1 AND archived_below = $2 AND size >= $3",
    )
    .bind(log_id)
    .bind(from_i)
    .bind(below_i)
    .execute(&mut *conn)
    .await?;
    if moved.rows_affected() == 0 {
        let head = sqlx::query("SELECT size, archived_below FROM log_heads WHERE log_id = $1")
            .bind(log_id)
            .fetch_optional(&mut *conn)
            .await?;
        return match head {
            None => Err(StoreError::Invalid("no such log")),
            Some(row) => {
                let size = to_u64(row.try_get("size")?, "log size")?;
                if size < below {
                    Err(StoreError::Invalid("archive end beyond the log"))
                } else {
                    Err(StoreError::Conflict(
                        "the log's archived prefix moved meanwhile",
                    ))
                }
            }
        };
    }
    let deleted =
        sqlx::query("DELETE FROM log_entries WHERE log_id = $1 AND idx >= $2 AND idx < $3")
            .bind(log_id)
            .bind(from_i)
            .bind(below_i)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    Ok(deleted)
}

impl Store {
    /// Opens a transaction, for composing a change with a log append
    /// ([`Store::append_log_entries_tx`], [`Store::append_audit_tx`]) so that
    /// both commit or neither does.
    pub async fn begin(&self) -> Result<Transaction<'static, Any>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    /// Appends `leaves` (in order) to the log `log_id` inside the caller's
    /// transaction: locks the log's head row until the transaction ends,
    /// inserts the entries and every complete subtree they finish, and
    /// updates the head. Nothing is visible, and the head stays locked,
    /// until the caller commits; dropping the transaction undoes it all.
    /// On SQLite, make this (or another write) the transaction's first
    /// statement, as everywhere in the store.
    pub async fn append_log_entries_tx(
        tx: &mut Transaction<'_, Any>,
        log_id: &str,
        leaves: &[Vec<u8>],
        now: Millis,
    ) -> Result<LogAppend, StoreError> {
        append_leaves(tx, log_id, leaves, now).await
    }

    /// [`Store::append_log_entries_tx`] in a transaction of its own.
    pub async fn append_log_entries(
        &self,
        log_id: &str,
        leaves: &[Vec<u8>],
        now: Millis,
    ) -> Result<LogAppend, StoreError> {
        let mut tx = self.pool.begin().await?;
        let appended = append_leaves(&mut tx, log_id, leaves, now).await?;
        tx.commit().await?;
        Ok(appended)
    }

    /// The head of `log_id`; `None` while nothing was ever appended to it
    /// (the empty tree).
    pub async fn log_head(&self, log_id: &str) -> Result<Option<LogHead>, StoreError> {
        let row = sqlx::query(
            "SELECT size, root, updated_at, archived_below FROM log_heads WHERE log_id = $1",
        )
        .bind(log_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            let root: Vec<u8> = row.try_get("root")?;
            Ok(LogHead {
                log_id: log_id.to_owned(),
                size: to_u64(row.try_get("size")?, "log size")?,
                root: to_hash(&root, "log root")?.0,
                updated_at: row.try_get("updated_at")?,
                archived_below: to_u64(row.try_get("archived_below")?, "archived_below")?,
            })
        })
        .transpose()
    }

    /// The entries of `log_id` from the first entry not yet archived whose
    /// `at` column is before `cutoff`, in index order, at most `limit`.
    /// `None` for a log with no head.
    ///
    /// Not what decides archiving: `at` is no part of the leaf, and whoever
    /// holds the database can change it. The server's retention reads each
    /// entry's time from its leaf bytes (RFD 0003, "Retention and
    /// archives") and pages through [`Store::log_entries`] instead.
    pub async fn archive_candidates(
        &self,
        log_id: &str,
        cutoff: Millis,
        limit: u32,
    ) -> Result<Option<ArchiveCandidates>, StoreError> {
        let Some(head) = self.log_head(log_id).await? else {
            return Ok(None);
        };
        let rows = sqlx::query(concat!(
            "SELECT ",
            entry_columns!(),
            " FROM log_entries e ",
            leaf_node_join!(),
            " WHERE e.log_id = $1 AND e.idx >= $2 AND e.at < $3 ORDER BY e.idx LIMIT $4"
        ))
        .bind(log_id)
        .bind(to_i64(head.archived_below, "archived_below")?)
        .bind(cutoff)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let entries = rows
            .iter()
            .map(entry_from_row)
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(ArchiveCandidates {
            archived_below: head.archived_below,
            size: head.size,
            entries,
        }))
    }

    /// The compact range of the first `tree_size` entries of `log_id`:
    /// the hashes of the complete subtrees covering `[0, tree_size)`,
    /// largest first (what a verifier resumes from when entries below
    /// `tree_size` are archived). `Invalid` if the log is shorter.
    pub async fn log_frontier_at(
        &self,
        log_id: &str,
        tree_size: u64,
    ) -> Result<Vec<LogHash>, StoreError> {
        let ids = frontier_nodes(tree_size);
        let hashes = self.subtree_hashes(log_id, tree_size, &ids).await?;
        Ok(hashes.into_iter().map(|h| h.0).collect())
    }

    /// Up to `limit` entries of `log_id` from index `from`, in order.
    pub async fn log_entries(
        &self,
        log_id: &str,
        from: u64,
        limit: u32,
    ) -> Result<Vec<LogEntry>, StoreError> {
        let Ok(from) = i64::try_from(from) else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(concat!(
            "SELECT ",
            entry_columns!(),
            " FROM log_entries e ",
            leaf_node_join!(),
            " WHERE e.log_id = $1 AND e.idx >= $2 ORDER BY e.idx LIMIT $3"
        ))
        .bind(log_id)
        .bind(from)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// The hashes of complete subtrees `ids` of `log_id`, in that order, in
    /// one query, provided the log holds at least `size` entries (else
    /// `Invalid`).
    async fn subtree_hashes(
        &self,
        log_id: &str,
        size: u64,
        ids: &[NodeId],
    ) -> Result<Vec<Hash>, StoreError> {
        let size_i64 = to_i64(size, "tree size beyond the log")?;
        let mut found: HashMap<NodeId, Hash> = HashMap::with_capacity(ids.len());
        if let Some(last) = ids.last() {
            // Pad with the last id: repeats change nothing in an IN list.
            let padded = ids.len().div_ceil(LOOKUP_PAD) * LOOKUP_PAD;
            let sql = subtree_lookup_sql(padded);
            let mut query = sqlx::query(&sql).bind(log_id).bind(size_i64);
            for id in ids
                .iter()
                .chain(std::iter::repeat_n(last, padded - ids.len()))
            {
                query = query.bind(i16::from(id.level)).bind(id.index as i64);
            }
            for row in query.fetch_all(&self.pool).await? {
                let level: i16 = row.try_get("level")?;
                let index: i64 = row.try_get("idx")?;
                let hash: Vec<u8> = row.try_get("hash")?;
                let level = u8::try_from(level)
                    .map_err(|_| StoreError::Corrupt("subtree level".to_owned()))?;
                found.insert(
                    NodeId::new(level, to_u64(index, "subtree index")?),
                    to_hash(&hash, "subtree hash")?,
                );
            }
        }
        // Nothing found: the log is shorter than `size` (the EXISTS above), or
        // a subtree is missing. Nothing asked for (a one-entry tree, equal
        // sizes): the size has not been checked yet.
        if found.len() < ids.len() || (ids.is_empty() && size > 0) {
            let stored = self.log_head(log_id).await?.map_or(0, |h| h.size);
            if stored < size {
                return Err(StoreError::Invalid("tree size beyond the log"));
            }
            if found.len() < ids.len() {
                return Err(StoreError::Corrupt(format!(
                    "log {log_id}: {} of {} subtrees missing",
                    ids.len() - found.len(),
                    ids.len()
                )));
            }
        }
        ids.iter()
            .map(|id| {
                found.get(id).copied().ok_or_else(|| {
                    StoreError::Corrupt(format!("log {log_id}: subtree {id:?} missing"))
                })
            })
            .collect()
    }

    async fn run_plan(
        &self,
        log_id: &str,
        size: u64,
        plan: ProofPlan,
    ) -> Result<Vec<LogHash>, StoreError> {
        let hashes = self.subtree_hashes(log_id, size, plan.node_ids()).await?;
        let proof = plan.assemble(&hashes).map_err(plan_error)?;
        Ok(proof.into_iter().map(|h| h.0).collect())
    }

    /// The RFC 9162 inclusion proof of entry `idx` in the tree of the first
    /// `tree_size` entries of `log_id`: one query for O(log n) rows.
    /// `Invalid` if `idx >= tree_size` or the log is shorter than `tree_size`.
    pub async fn inclusion_proof(
        &self,
        log_id: &str,
        idx: u64,
        tree_size: u64,
    ) -> Result<Vec<LogHash>, StoreError> {
        let plan = inclusion_plan(idx, tree_size).map_err(plan_error)?;
        self.run_plan(log_id, tree_size, plan).await
    }

    /// The RFC 9162 consistency proof from the tree of `old_size` entries
    /// of `log_id` to the tree of `new_size`: one query for O(log n) rows.
    /// `Invalid` if `old_size` is 0 or above `new_size`, or the log is
    /// shorter than `new_size`.
    pub async fn consistency_proof(
        &self,
        log_id: &str,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<LogHash>, StoreError> {
        let plan = consistency_plan(old_size, new_size).map_err(plan_error)?;
        self.run_plan(log_id, new_size, plan).await
    }

    /// The root of the tree of the first `tree_size` entries of `log_id`
    /// (one query for at most 64 rows). `Invalid` if the log is shorter.
    pub async fn log_root_at(&self, log_id: &str, tree_size: u64) -> Result<LogHash, StoreError> {
        let ids = frontier_nodes(tree_size);
        let hashes = self.subtree_hashes(log_id, tree_size, &ids).await?;
        Ok(bulwark_translog::tree::fold_frontier(&hashes).0)
    }

    /// Logs that grew since their last checkpoint (or have none): what the
    /// server signs a new tree head for.
    pub async fn logs_without_current_checkpoint(&self) -> Result<Vec<String>, StoreError> {
        let ids = sqlx::query_scalar(
            "SELECT h.log_id FROM log_heads h WHERE h.size > \
             COALESCE((SELECT MAX(c.size) FROM log_checkpoints c WHERE c.log_id = h.log_id), -1) \
             ORDER BY h.log_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    /// Every log that has a head, ordered by id.
    pub async fn log_ids(&self) -> Result<Vec<String>, StoreError> {
        let ids = sqlx::query_scalar("SELECT log_id FROM log_heads ORDER BY log_id")
            .fetch_all(&self.pool)
            .await?;
        Ok(ids)
    }

    /// The signed tree heads of `log_id` with `size >= from_size`, smallest
    /// first, at most `limit`.
    pub async fn checkpoints(
        &self,
        log_id: &str,
        from_size: u64,
        limit: u32,
    ) -> Result<Vec<LogCheckpoint>, StoreError> {
        let Ok(from) = i64::try_from(from_size) else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(
            "SELECT size, note, at FROM log_checkpoints WHERE log_id = $1 AND size >= $2 \
             ORDER BY size LIMIT $3",
        )
        .bind(log_id)
        .bind(from)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| checkpoint(log_id, row)).collect()
    }

    /// Stores a signed tree head of `log_id` at `size` (the note as
    /// signed; the store checks no signature). `Invalid` if the log holds
    /// fewer than `size` entries; `Conflict` if one is stored for that size.
    pub async fn add_checkpoint(
        &self,
        log_id: &str,
        size: u64,
        note: &str,
        at: Millis,
    ) -> Result<(), StoreError> {
        let size = to_i64(size, "tree size beyond the log")?;
        let inserted = sqlx::query(
            "INSERT INTO log_checkpoints (log_id, size, note, at) SELECT $1, $2, $3, $4 \
             WHERE $2 = 0 OR EXISTS (SELECT 1 FROM log_heads WHERE log_id = $1 AND size >= $2)",
        )
        .bind(log_id)
        .bind(size)
        .bind(note)
        .bind(at)
        .execute(&self.pool)
        .await
        .map_err(unique("a checkpoint is already stored for that size"))?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Invalid("tree size beyond the log"));
        }
        Ok(())
    }

    /// Replaces the note of `log_id`'s checkpoint at `size` with `new_note`
    /// if it is still `old_note` (the server adds witnesses' cosignature
    /// lines to the note it signed; the store reads neither). Returns
    /// whether it replaced it: `false` if another task changed it first.
    pub async fn replace_checkpoint_note(
        &self,
        log_id: &str,
        size: u64,
        old_note: &str,
        new_note: &str,
    ) -> Result<bool, StoreError> {
        let size = to_i64(size, "tree size beyond the log")?;
        let updated = sqlx::query(
            "UPDATE log_checkpoints SET note = $4 WHERE log_id = $1 AND size = $2 AND note = $3",
        )
        .bind(log_id)
        .bind(size)
        .bind(old_note)
        .bind(new_note)
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// The checkpoint of `log_id` with the largest size.
    pub async fn latest_checkpoint(
        &self,
        log_id: &str,
    ) -> Result<Option<LogCheckpoint>, StoreError> {
        let row = sqlx::query(
            "SELECT size, note, at FROM log_checkpoints WHERE log_id = $1 \
             ORDER BY size DESC LIMIT 1",
        )
        .bind(log_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| checkpoint(log_id, &row)).transpose()
    }

    /// The checkpoint of `log_id` at exactly `size`.
    pub async fn checkpoint_at(
        &self,
        log_id: &str,
        size: u64,
    ) -> Result<Option<LogCheckpoint>, StoreError> {
        let Ok(size) = i64::try_from(size) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT size, note, at FROM log_checkpoints WHERE log_id = $1 AND size = $2",
        )
        .bind(log_id)
        .bind(size)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| checkpoint(log_id, &row)).transpose()
    }
}

fn checkpoint(log_id: &str, row: &sqlx::any::AnyRow) -> Result<LogCheckpoint, StoreError> {
    Ok(LogCheckpoint {
        log_id: log_id.to_owned(),
        size: to_u64(row.try_get("size")?, "checkpoint size")?,
        note: row.try_get("note")?,
        at: row.try_get("at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A proof reads O(log n) rows: every lookup is a primary-key search,
    /// never a scan of the log (SQLite's plan; PostgreSQL's is a nested loop
    /// of index scans, see RFD 0003).
    #[tokio::test]
    async fn subtree_lookups_search_the_primary_key() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(&crate::testing::sqlite_test_url(dir.path()))
            .await
            .expect("open");
        let sql = format!("EXPLAIN QUERY PLAN {}", subtree_lookup_sql(8));
        let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(&sql)
            .bind("log")
            .bind(1i64);
        for i in 0..8i64 {
            query = query.bind(0i16).bind(i);
        }
        let plan: Vec<String> = query
            .fetch_all(&store.pool)
            .await
            .expect("plan")
            .into_iter()
            .map(|row| row.3)
            .collect();
        assert!(
            plan.iter()
                .any(|l| l.contains("SEARCH n USING PRIMARY KEY (log_id=? AND level=? AND idx=?)")),
            "{plan:?}"
        );
        assert!(!plan.iter().any(|l| l.starts_with("SCAN n")), "{plan:?}");
        store.close().await;
    }
}
