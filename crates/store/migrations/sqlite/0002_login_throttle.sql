-- Login throttling and temporary lockouts (keep in step with ../postgres/0002_login_throttle.sql).
--
-- One row per throttled key: `user:<username>` (whether or not the account
-- exists) or `addr:<client address>`. The decisions are the server's
-- (`auth::throttle`); this table only keeps the counters.
CREATE TABLE login_throttle (
    key             TEXT    NOT NULL PRIMARY KEY,
    -- Failed or refused attempts since window_start.
    failures        INTEGER NOT NULL,
    window_start    INTEGER NOT NULL,
    last_failure_at INTEGER NOT NULL,
    locked_until    INTEGER
) STRICT;

CREATE INDEX login_throttle_locked_until ON login_throttle (locked_until);
