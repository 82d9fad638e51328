-- Bulwark schema, version 1, PostgreSQL dialect.
--
-- Keep this file in step with ../sqlite/0001_init.sql: the same tables,
-- columns, constraints and indexes, so that one query text serves both.
-- Ids are TEXT (UUID v4), times are BIGINT unix milliseconds, byte strings
-- are BYTEA, flags would be BIGINT 0/1. Text that is sorted uses the "C"
-- collation so that ORDER BY gives SQLite's byte order whatever the
-- database's locale.

CREATE TABLE tenants (
    id         TEXT   NOT NULL PRIMARY KEY,
    name       TEXT   COLLATE "C" NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE operators (
    id             TEXT   NOT NULL PRIMARY KEY,
    username       TEXT   COLLATE "C" NOT NULL UNIQUE,
    password_hash  TEXT   NOT NULL,
    totp_secret    TEXT   NOT NULL,
    role           TEXT   NOT NULL,
    created_at     BIGINT NOT NULL,
    disabled_at    BIGINT,
    -- The highest TOTP time step accepted so far (replay protection).
    last_totp_step BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE operator_grants (
    operator_id TEXT NOT NULL REFERENCES operators (id),
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    role        TEXT NOT NULL,
    PRIMARY KEY (operator_id, tenant_id)
);

CREATE INDEX operator_grants_tenant_id ON operator_grants (tenant_id);

-- The one-time code printed by `bulwark up` to create the first owner.
CREATE TABLE setup_codes (
    code_hash  BYTEA  NOT NULL PRIMARY KEY,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- A first-owner enrolment waiting for its TOTP confirmation.
CREATE TABLE setup_enrolments (
    id_hash       BYTEA  NOT NULL PRIMARY KEY,
    username      TEXT   NOT NULL,
    password_hash TEXT   NOT NULL,
    totp_secret   TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    code_hash     BYTEA  NOT NULL
);

CREATE TABLE sessions (
    id_hash      BYTEA  NOT NULL PRIMARY KEY,
    operator_id  TEXT   NOT NULL REFERENCES operators (id),
    kind         TEXT   NOT NULL CHECK (kind IN ('browser', 'cli')),
    csrf_token   TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    mfa_at       BIGINT NOT NULL,
    ip           TEXT,
    user_agent   TEXT,
    revoked_at   BIGINT
);

CREATE INDEX sessions_operator_id ON sessions (operator_id);

CREATE TABLE enrollment_tokens (
    secret_hash    BYTEA  NOT NULL PRIMARY KEY,
    tenant_id      TEXT   NOT NULL REFERENCES tenants (id),
    created_by     TEXT,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT,
    used_by_device TEXT
);

CREATE INDEX enrollment_tokens_tenant_id ON enrollment_tokens (tenant_id);

CREATE TABLE devices (
    id                   TEXT   NOT NULL PRIMARY KEY,
    tenant_id            TEXT   NOT NULL REFERENCES tenants (id),
    public_key           BYTEA  NOT NULL UNIQUE,
    hostname             TEXT   COLLATE "C" NOT NULL,
    agent_version        TEXT   NOT NULL,
    enrolled_at          BIGINT NOT NULL,
    last_seen_at         BIGINT,
    -- Canonical CBOR of bulwark_protocol::inventory::Inventory.
    inventory            BYTEA,
    inventory_updated_at BIGINT
);

CREATE INDEX devices_tenant_id ON devices (tenant_id);

-- A seam: the transparency log replaces this table.
CREATE TABLE audit_events (
    seq       BIGSERIAL PRIMARY KEY,
    at        BIGINT NOT NULL,
    tenant_id TEXT,
    actor     TEXT   NOT NULL,
    action    TEXT   NOT NULL,
    target    TEXT   NOT NULL,
    detail    TEXT   NOT NULL
);

CREATE INDEX audit_events_tenant_id ON audit_events (tenant_id, seq);
