-- Bulwark schema, version 13, SQLite dialect: retention with archives
-- (RFD 0003, "Retention and archives").
--
-- Keep this file in step with ../postgres/0013_log_archive.sql.
--
-- Entries [0, archived_below) of a log were written to an archive under
-- the data directory, verified there, and removed from log_entries (in
-- the transaction that sets this column). Their subtree hashes
-- (log_nodes), the head and the signed heads stay: every proof still
-- works; only the leaf bytes left. Only ever moves forward.
ALTER TABLE log_heads ADD COLUMN archived_below INTEGER NOT NULL DEFAULT 0
    CHECK (archived_below >= 0 AND archived_below <= size);
