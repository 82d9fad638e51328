-- Bulwark schema, version 28, SQLite dialect: job states that say what
-- happened, cancel, live output (issue 15, RFD 0012).
--
-- Keep this file in step with ../postgres/0028_live_jobs.sql.

-- A cancelled job is never delivered again; its running targets are sent
-- a cancel (protocol version 3). Who, when and why.
ALTER TABLE jobs ADD COLUMN cancelled_at INTEGER;
ALTER TABLE jobs ADD COLUMN cancelled_by TEXT REFERENCES operators (id);
ALTER TABLE jobs ADD COLUMN cancel_reason TEXT;

-- The agent said the script started (`JobStarted`): the agent's clock.
ALTER TABLE job_targets ADD COLUMN running_at INTEGER;
-- Live output kept for this target (at most the protocol's
-- max_live_output_bytes), and the bytes not kept (past the cap, or
-- skipped by the agent): shown as a truncation marker.
ALTER TABLE job_targets ADD COLUMN live_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE job_targets ADD COLUMN live_truncated INTEGER NOT NULL DEFAULT 0;

-- Pieces of a running job's output, as the agent sent them (`JobOutput`),
-- each stored once (a resent sequence number is ignored).
CREATE TABLE job_output (
    job_id    TEXT    NOT NULL,
    device_id TEXT    NOT NULL,
    seq       INTEGER NOT NULL CHECK (seq >= 0),
    stream    TEXT    NOT NULL CHECK (stream IN ('stdout', 'stderr')),
    data      BLOB    NOT NULL,
    -- Bytes of this stream the agent did not send just before this piece.
    skipped   INTEGER NOT NULL CHECK (skipped >= 0),
    -- The server's clock.
    at        INTEGER NOT NULL,
    PRIMARY KEY (job_id, device_id, seq),
    FOREIGN KEY (job_id, device_id) REFERENCES job_targets (job_id, device_id)
) STRICT;
