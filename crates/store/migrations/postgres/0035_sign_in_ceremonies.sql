-- Bulwark schema, version 35, PostgreSQL dialect: passkey ceremonies and
-- `bulwark login --device` sign-ins in the database, so that one begun
-- through one node can be finished through another (RFD 0018).
--
-- Keep this file in step with ../sqlite/0035_sign_in_ceremonies.sql.
--
-- A passkey ceremony waiting for its answer: the SHA-256 of its public id,
-- its random challenge, what it was issued for (`purpose`, compared whole
-- when it is answered) and whose budget it uses (`pool` 'login' keyed by
-- client address `owner_key` and username `owner_name`; 'session' keyed by
-- the session's hash). Answering deletes the row (single use).
CREATE TABLE auth_ceremonies (
    id_hash    BYTEA  NOT NULL PRIMARY KEY CHECK (octet_length(id_hash) = 32),
    challenge  BYTEA  NOT NULL CHECK (octet_length(challenge) = 32),
    purpose    TEXT COLLATE "C" NOT NULL CHECK (length(purpose) <= 512),
    pool       TEXT COLLATE "C" NOT NULL CHECK (pool IN ('login', 'session')),
    owner_key  TEXT COLLATE "C" NOT NULL CHECK (length(owner_key) <= 128),
    owner_name TEXT COLLATE "C" NOT NULL CHECK (length(owner_name) <= 256),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX auth_ceremonies_by_pool ON auth_ceremonies (pool, created_at);
CREATE INDEX auth_ceremonies_by_owner ON auth_ceremonies (pool, owner_key, created_at);
CREATE INDEX auth_ceremonies_by_name ON auth_ceremonies (pool, owner_name, created_at);
CREATE INDEX auth_ceremonies_by_expiry ON auth_ceremonies (expires_at);

-- A `bulwark login --device` request (RFC 8628): the SHA-256 of its device
-- code, the user code typed in the console, who asked, and its answer.
-- The poll that hands out the session (or the denial) deletes the row.
CREATE TABLE device_sign_ins (
    device_hash  BYTEA  NOT NULL PRIMARY KEY CHECK (octet_length(device_hash) = 32),
    user_code    TEXT COLLATE "C" NOT NULL UNIQUE CHECK (length(user_code) = 9),
    ip           TEXT COLLATE "C" NOT NULL CHECK (length(ip) <= 256),
    user_agent   TEXT   NOT NULL CHECK (length(user_agent) <= 1024),
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    interval_ms  BIGINT NOT NULL,
    last_poll_at BIGINT,
    state        TEXT COLLATE "C" NOT NULL CHECK (state IN ('pending', 'approved', 'denied')),
    operator_id  TEXT COLLATE "C",
    passkey_id   TEXT COLLATE "C",
    approved_at  BIGINT
);
CREATE INDEX device_sign_ins_by_ip ON device_sign_ins (ip, expires_at);
CREATE INDEX device_sign_ins_by_expiry ON device_sign_ins (expires_at);
