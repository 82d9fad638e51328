-- Bulwark schema, version 11, PostgreSQL dialect: each job's entry in its
-- tenant's transparency log (RFD 0003, "Jobs in the log").
--
-- Keep this file in step with ../sqlite/0011_job_release_log.sql.
--
-- signed_sha256: SHA-256 of the bytes the job's signers sign (DSSE PAE of
-- the statement), fixed at creation; the job.released entry names it.
-- release_log_idx: the index of that entry in the tenant's log, set in the
-- transaction that approves the job. Jobs from before this migration have
-- neither and are never delivered with a proof (agents refuse them).
ALTER TABLE jobs ADD COLUMN signed_sha256 BYTEA;
ALTER TABLE jobs ADD COLUMN release_log_idx BIGINT;
