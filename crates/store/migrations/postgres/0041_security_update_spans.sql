-- Bulwark schema, version 41, PostgreSQL dialect: how long each security
-- update has been pending on each device (issue 17, patch compliance; RFD
-- 0008, "Patch SLA").
--
-- Keep this file in step with ../sqlite/0041_security_update_spans.sql.
--
-- Kept by the store whenever a device's report carries its pending
-- updates (the agent's simulated upgrade, RFD 0011): a security update not
-- pending before opens a span; one no longer pending closes its span
-- (cleared_at). A report without pending updates (apt not read) changes
-- nothing: unknown is not "none pending". security_update_watch says since
-- when a device's pending updates are known at all; a device without a row
-- is not measured. Compliance at any time is computed from these rows,
-- never stored. Every value is the agent's report: untrusted text, bounded
-- by the protocol's limits.
CREATE TABLE security_update_watch (
    device_id  TEXT    NOT NULL PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id),
    since      BIGINT NOT NULL
);

CREATE INDEX security_update_watch_tenant ON security_update_watch (tenant_id);

CREATE TABLE security_update_spans (
    device_id     TEXT    NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id),
    package       TEXT    NOT NULL,
    architecture  TEXT    NOT NULL,
    new_version   TEXT    NOT NULL,
    first_seen_at BIGINT NOT NULL,
    cleared_at    BIGINT,
    CHECK (cleared_at IS NULL OR cleared_at >= first_seen_at)
);

CREATE INDEX security_update_spans_open ON security_update_spans (device_id, cleared_at);
CREATE INDEX security_update_spans_tenant ON security_update_spans (tenant_id, first_seen_at);
