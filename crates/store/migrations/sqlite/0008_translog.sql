-- Bulwark schema, version 8, SQLite dialect: the transparency logs
-- (RFD 0003). One log per tenant (log_id = the tenant id) and one for
-- MSP-wide events (log_id = 'msp'). Rows are only ever inserted; the head
-- row is the one thing updated, under the write lock, by each append.
--
-- Keep this file in step with ../postgres/0008_translog.sql. (Migration
-- 0007 may be absent in a checkout: sqlx accepts gaps.)

-- Every entry as the API serves it: the exact leaf bytes (their RFC 6962
-- leaf hash is what the tree commits to) and when it was appended.
CREATE TABLE log_entries (
    log_id TEXT    NOT NULL,
    idx    INTEGER NOT NULL CHECK (idx >= 0),
    leaf   BLOB    NOT NULL,
    at     INTEGER NOT NULL,
    PRIMARY KEY (log_id, idx)
) STRICT, WITHOUT ROWID;

-- The hash of every complete subtree: (level L, idx i) covers the leaves
-- [i * 2^L, (i + 1) * 2^L). Level 0 holds the leaf hashes. Written once,
-- when the append that completes the subtree commits; proofs read
-- O(log n) of these rows in one query.
CREATE TABLE log_nodes (
    log_id TEXT    NOT NULL,
    level  INTEGER NOT NULL CHECK (level >= 0 AND level < 64),
    idx    INTEGER NOT NULL CHECK (idx >= 0),
    hash   BLOB    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (log_id, level, idx)
) STRICT, WITHOUT ROWID;

-- Each log's current head: size, RFC 6962 root, and the frontier (the
-- hashes of the compact range [0, size), largest subtree first,
-- concatenated: 32 bytes per set bit of size), so that an append reads
-- this one row and nothing else.
CREATE TABLE log_heads (
    log_id     TEXT    NOT NULL PRIMARY KEY,
    size       INTEGER NOT NULL CHECK (size >= 0),
    root       BLOB    NOT NULL CHECK (length(root) = 32),
    frontier   BLOB    NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- Signed tree heads: the C2SP checkpoint note text, as signed.
CREATE TABLE log_checkpoints (
    log_id TEXT    NOT NULL,
    size   INTEGER NOT NULL CHECK (size >= 0),
    note   TEXT    NOT NULL,
    at     INTEGER NOT NULL,
    PRIMARY KEY (log_id, size)
) STRICT;

-- Where each audit event sits in its log (the tenant's, or 'msp' for an
-- event without a tenant): appended in the same transaction as the event.
-- NULL for events recorded before this migration, which are in no log.
ALTER TABLE audit_events ADD COLUMN log_idx INTEGER;
