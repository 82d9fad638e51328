-- Bulwark schema, version 32, SQLite dialect: metrics history for charts
-- (RFD 0014).
--
-- Keep this file in step with ../postgres/0032_metric_samples.sql.
-- (Versions 0028 to 0031 may be absent in a checkout: sqlx accepts gaps.)
--
-- One row per device, tier, metric (the policy check's name) and bucket:
-- tier 0 holds raw samples (one per 10 s at most, n = 1), tier 1 15-minute
-- buckets, tier 2 UTC days. `at` is the server's time (ms) of the bucket's
-- start, never the agent's clock; avg = sum / n. Values are bounded before
-- they are stored (`bulwark_store::metrics_plan::accept`), so sum fits.
-- The compaction pass rolls tiers up, expires the last and keeps every
-- device under its cap. The key leads with (device_id, tier): compaction
-- and charts read one device's tier at a time.
CREATE TABLE metric_samples (
    device_id TEXT    NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    tier      INTEGER NOT NULL CHECK (tier IN (0, 1, 2)),
    metric    TEXT    NOT NULL,
    at        INTEGER NOT NULL,
    n         INTEGER NOT NULL CHECK (n > 0),
    sum       INTEGER NOT NULL CHECK (sum >= 0),
    max       INTEGER NOT NULL CHECK (max >= 0),
    PRIMARY KEY (device_id, tier, metric, at)
) STRICT, WITHOUT ROWID;
