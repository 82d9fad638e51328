-- Bulwark schema, version 37, PostgreSQL dialect: scheduled jobs (issue 15,
-- RFD 0019).
--
-- Keep this file in step with ../sqlite/0037_schedules.sql.
--
-- A schedule is kept as the signed envelope given; agents verify it again
-- at every run, so nothing here is trusted by them. The copied columns
-- (class, reason, times) serve listings and the scheduler's index only:
-- the scheduler computes occurrences from the envelope.

CREATE TABLE schedules (
    -- 32 lowercase hex characters of the statement's 16-byte schedule id.
    id          TEXT    NOT NULL PRIMARY KEY,
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
    created_by  TEXT    NOT NULL REFERENCES operators (id),
    class       TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    -- The script body (empty for an action without one).
    script      BYTEA   NOT NULL,
    -- The Signed schedule statement as submitted, every signature included.
    envelope    BYTEA   NOT NULL,
    -- Milliseconds, from the statement's not_before and not_after.
    not_before  BIGINT NOT NULL,
    not_after   BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    revoked_by  TEXT    REFERENCES operators (id),
    UNIQUE (id, tenant_id),
    CHECK (not_after > not_before)
);

CREATE INDEX schedules_tenant_id_created_at ON schedules (tenant_id, created_at);
CREATE INDEX schedules_live ON schedules (revoked_at, not_after);

-- One row per occurrence a node took on to deliver: the primary key is the
-- claim, so two nodes never deliver one occurrence twice.
CREATE TABLE schedule_runs (
    schedule_id TEXT    NOT NULL,
    tenant_id   TEXT    NOT NULL,
    -- Unix seconds of the occurrence (what the agent is asked to run).
    occurrence  BIGINT NOT NULL,
    -- 32 hex characters: bulwark_policy::schedule::run_job_id.
    job_id      TEXT    NOT NULL UNIQUE,
    -- Which node claimed it (its name in presence).
    claimed_by  TEXT    NOT NULL,
    claimed_at  BIGINT NOT NULL,
    PRIMARY KEY (schedule_id, occurrence),
    FOREIGN KEY (schedule_id, tenant_id) REFERENCES schedules (id, tenant_id)
);
