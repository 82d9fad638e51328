-- Bulwark schema, version 25, PostgreSQL dialect: the states of the policy's
-- monitoring checks per device (RFD 0009).
--
-- Keep this file in step with ../sqlite/0025_device_checks.sql.
-- (Versions 0017 to 0024 may be absent in a checkout: sqlx accepts gaps.)
--
-- One row per device and check: the state the device's agent last
-- reported, after the policy's thresholds and "for N seconds", which the
-- agent applies itself. Every text is the agent's: untrusted, bounded by
-- the protocol's limits. A full report replaces the device's rows.
CREATE TABLE device_checks (
    device_id      TEXT COLLATE "C" NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    name           TEXT COLLATE "C" NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('ok', 'unknown', 'warning', 'critical')),
    value          BIGINT,
    summary        TEXT NOT NULL,
    -- Agent times (ms): when the reported state began, the last measurement.
    since          BIGINT NOT NULL,
    measured_at    BIGINT NOT NULL,
    policy_version BIGINT NOT NULL,
    -- Server time (ms) of the report that stored the row.
    reported_at    BIGINT NOT NULL,
    PRIMARY KEY (device_id, name)
);
