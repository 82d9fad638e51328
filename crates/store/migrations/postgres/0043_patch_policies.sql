-- Bulwark schema, version 43, PostgreSQL dialect: patch policies and rings
-- (issue 17, RFD 0021).
--
-- Keep this file in step with ../sqlite/0043_patch_policies.sql.
--
-- A patch policy ties two signed install-patches schedules: the canary
-- ring's and ring 2's. What installs, where, when and not before when is
-- in their envelopes, which agents verify at every run; nothing here is
-- trusted by them. The soak is the server's own rule for withholding
-- ring 2 (agents enforce only ring 2's signed not_before).

CREATE TABLE patch_policies (
    -- The canary schedule's id.
    id                 TEXT    NOT NULL PRIMARY KEY,
    tenant_id          TEXT    NOT NULL REFERENCES tenants (id),
    name               TEXT    NOT NULL,
    rest_schedule_id   TEXT    NOT NULL UNIQUE,
    soak_secs          BIGINT NOT NULL,
    created_by         TEXT    NOT NULL REFERENCES operators (id),
    created_at         BIGINT NOT NULL,
    revoked_at         BIGINT,
    revoked_by         TEXT    REFERENCES operators (id),
    FOREIGN KEY (id, tenant_id) REFERENCES schedules (id, tenant_id),
    FOREIGN KEY (rest_schedule_id, tenant_id) REFERENCES schedules (id, tenant_id),
    CHECK (soak_secs >= 0 AND id <> rest_schedule_id)
);

CREATE UNIQUE INDEX patch_policies_live_name ON patch_policies (tenant_id, name)
    WHERE revoked_at IS NULL;
