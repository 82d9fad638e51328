-- Login throttling and temporary lockouts (keep in step with ../sqlite/0002_login_throttle.sql).
--
-- One row per throttled key: `user:<username>` (whether or not the account
-- exists) or `addr:<client address>`. The decisions are the server's
-- (`auth::throttle`); this table only keeps the counters.
CREATE TABLE login_throttle (
    key             TEXT   COLLATE "C" NOT NULL PRIMARY KEY,
    -- Failed or refused attempts since window_start.
    failures        BIGINT NOT NULL,
    window_start    BIGINT NOT NULL,
    last_failure_at BIGINT NOT NULL,
    locked_until    BIGINT
);

CREATE INDEX login_throttle_locked_until ON login_throttle (locked_until);
