-- Bulwark schema, version 1, SQLite dialect.
--
-- Keep this file in step with ../postgres/0001_init.sql: the same tables,
-- columns, constraints and indexes, so that one query text serves both.
-- Ids are TEXT (UUID v4), times are INTEGER unix milliseconds, byte strings
-- are BLOB, flags would be INTEGER 0/1. STRICT tables refuse values of the
-- wrong type, as PostgreSQL does.

CREATE TABLE tenants (
    id         TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE operators (
    id             TEXT    NOT NULL PRIMARY KEY,
    username       TEXT    NOT NULL UNIQUE,
    password_hash  TEXT    NOT NULL,
    totp_secret    TEXT    NOT NULL,
    role           TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    disabled_at    INTEGER,
    -- The highest TOTP time step accepted so far (replay protection).
    last_totp_step INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE operator_grants (
    operator_id TEXT NOT NULL REFERENCES operators (id),
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    role        TEXT NOT NULL,
    PRIMARY KEY (operator_id, tenant_id)
) STRICT;

CREATE INDEX operator_grants_tenant_id ON operator_grants (tenant_id);

-- The one-time code printed by `bulwark up` to create the first owner.
CREATE TABLE setup_codes (
    code_hash  BLOB    NOT NULL PRIMARY KEY,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;

-- A first-owner enrolment waiting for its TOTP confirmation.
CREATE TABLE setup_enrolments (
    id_hash       BLOB    NOT NULL PRIMARY KEY,
    username      TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    totp_secret   TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    code_hash     BLOB    NOT NULL
) STRICT;

CREATE TABLE sessions (
    id_hash      BLOB    NOT NULL PRIMARY KEY,
    operator_id  TEXT    NOT NULL REFERENCES operators (id),
    kind         TEXT    NOT NULL CHECK (kind IN ('browser', 'cli')),
    csrf_token   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    mfa_at       INTEGER NOT NULL,
    ip           TEXT,
    user_agent   TEXT,
    revoked_at   INTEGER
) STRICT;

CREATE INDEX sessions_operator_id ON sessions (operator_id);

CREATE TABLE enrollment_tokens (
    secret_hash    BLOB    NOT NULL PRIMARY KEY,
    tenant_id      TEXT    NOT NULL REFERENCES tenants (id),
    created_by     TEXT,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER,
    used_by_device TEXT
) STRICT;

CREATE INDEX enrollment_tokens_tenant_id ON enrollment_tokens (tenant_id);

CREATE TABLE devices (
    id                   TEXT    NOT NULL PRIMARY KEY,
    tenant_id            TEXT    NOT NULL REFERENCES tenants (id),
    public_key           BLOB    NOT NULL UNIQUE,
    hostname             TEXT    NOT NULL,
    agent_version        TEXT    NOT NULL,
    enrolled_at          INTEGER NOT NULL,
    last_seen_at         INTEGER,
    -- Canonical CBOR of bulwark_protocol::inventory::Inventory.
    inventory            BLOB,
    inventory_updated_at INTEGER
) STRICT;

CREATE INDEX devices_tenant_id ON devices (tenant_id);

-- A seam: the transparency log replaces this table.
CREATE TABLE audit_events (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    tenant_id TEXT,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    target    TEXT    NOT NULL,
    detail    TEXT    NOT NULL
) STRICT;

CREATE INDEX audit_events_tenant_id ON audit_events (tenant_id, seq);
