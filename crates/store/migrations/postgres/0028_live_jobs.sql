-- Bulwark schema, version 28, PostgreSQL dialect: job states that say what
-- happened, cancel, live output (issue 15, RFD 0012).
--
-- Keep this file in step with ../sqlite/0028_live_jobs.sql.

-- A cancelled job is never delivered again; its running targets are sent
-- a cancel (protocol version 3). Who, when and why.
ALTER TABLE jobs ADD COLUMN cancelled_at BIGINT;
ALTER TABLE jobs ADD COLUMN cancelled_by TEXT REFERENCES operators (id);
ALTER TABLE jobs ADD COLUMN cancel_reason TEXT;

-- The agent said the script started (`JobStarted`): the agent's clock.
ALTER TABLE job_targets ADD COLUMN running_at BIGINT;
-- Live output kept for this target (at most the protocol's
-- max_live_output_bytes), and the bytes not kept (past the cap, or
-- skipped by the agent): shown as a truncation marker.
ALTER TABLE job_targets ADD COLUMN live_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE job_targets ADD COLUMN live_truncated BIGINT NOT NULL DEFAULT 0;

-- Pieces of a running job's output, as the agent sent them (`JobOutput`),
-- each stored once (a resent sequence number is ignored).
CREATE TABLE job_output (
    job_id    TEXT    NOT NULL,
    device_id TEXT    NOT NULL,
    seq       BIGINT  NOT NULL CHECK (seq >= 0),
    stream    TEXT    NOT NULL CHECK (stream IN ('stdout', 'stderr')),
    data      BYTEA   NOT NULL,
    -- Bytes of this stream the agent did not send just before this piece.
    skipped   BIGINT  NOT NULL CHECK (skipped >= 0),
    -- The server's clock.
    at        BIGINT  NOT NULL,
    PRIMARY KEY (job_id, device_id, seq),
    FOREIGN KEY (job_id, device_id) REFERENCES job_targets (job_id, device_id)
);
