-- Bulwark schema, version 27, PostgreSQL dialect: what an install-patches job
-- did on each device (issue 17).
--
-- Keep this file in step with ../sqlite/0027_patch_results.sql.
--
-- The canonical CBOR of the agent's `PatchReport` (packages installed with
-- old and new versions, failures, reboot required), as the agent sent it;
-- NULL for every other result.
ALTER TABLE job_targets ADD COLUMN patch_report BYTEA;
