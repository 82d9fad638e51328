-- Bulwark schema, version 33, PostgreSQL dialect: remote shells (issue 15,
-- RFD 0015): access grants, sessions and their recordings.
--
-- Keep this file in step with ../sqlite/0033_remote_shells.sql.

-- An access grant as its signers made it: the envelope is what agents
-- verify; the other columns are the server's index of it (a lie there
-- changes what people see, never what an agent accepts).
CREATE TABLE shell_grants (
    id            TEXT    PRIMARY KEY,           -- hex of the signed grant id
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id),
    device_id     TEXT    NOT NULL REFERENCES devices (id),
    requested_by  TEXT    NOT NULL REFERENCES operators (id),
    grantee_key   TEXT    NOT NULL,              -- hex key id the grant names
    account       TEXT    NOT NULL CHECK (account IN ('unprivileged', 'root')),
    reason        TEXT    NOT NULL,
    not_before    BIGINT NOT NULL,              -- Unix seconds, as signed
    expires_at    BIGINT NOT NULL,              -- Unix seconds, as signed
    envelope      BYTEA    NOT NULL,              -- with every signature so far
    created_at    BIGINT NOT NULL,
    revoked_at    BIGINT,
    revoked_by    TEXT    REFERENCES operators (id),
    CHECK (expires_at > not_before)
);
CREATE INDEX shell_grants_by_tenant ON shell_grants (tenant_id, created_at);

-- A session opened under a grant, and its recording as the agent sent it.
-- `recording_sha256` is the agent's digest (also in the tenant's log as
-- `shell.session`); the bytes, in pieces, only up to its length.
CREATE TABLE shell_sessions (
    id               TEXT    PRIMARY KEY,        -- hex of the session id
    grant_id         TEXT    NOT NULL REFERENCES shell_grants (id),
    device_id        TEXT    NOT NULL REFERENCES devices (id),
    operator_id      TEXT    NOT NULL REFERENCES operators (id),
    opened_at        BIGINT NOT NULL,
    closed_at        BIGINT,
    refusal          TEXT,                       -- the agent's code, if any
    reason           TEXT,
    recording_sha256 TEXT,
    recording_len    BIGINT CHECK (recording_len >= 0),
    truncated        BIGINT NOT NULL DEFAULT 0,
    -- Bytes of the recording stored in shell_recording_pieces.
    recording_stored BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX shell_sessions_by_device ON shell_sessions (device_id, opened_at);

-- A recording's pieces, each where the previous one ended.
CREATE TABLE shell_recording_pieces (
    session_id TEXT    NOT NULL REFERENCES shell_sessions (id),
    "offset"   BIGINT NOT NULL CHECK ("offset" >= 0),
    data       BYTEA    NOT NULL,
    PRIMARY KEY (session_id, "offset")
);
