-- Bulwark schema, version 12, PostgreSQL dialect: SIEM export cursors
-- (RFD 0003, "SIEM export").
--
-- Keep this file in step with ../sqlite/0012_siem_cursors.sql.
-- (Migration 0011 may be absent in a checkout: sqlx accepts gaps.)
--
-- For each configured sink (by its name in the server configuration) and
-- each transparency log, the index of the first entry the sink has not yet
-- acknowledged: entries [0, next_idx) were delivered. The exporter only
-- ever moves it forward, after the sink acknowledged a batch, so a restart
-- or an outage resends from here and nothing before it.
CREATE TABLE siem_cursors (
    sink       TEXT   NOT NULL,
    log_id     TEXT   NOT NULL,
    next_idx   BIGINT NOT NULL CHECK (next_idx >= 0),
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (sink, log_id)
);
