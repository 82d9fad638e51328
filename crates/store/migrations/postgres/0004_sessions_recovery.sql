-- Bulwark schema, version 4, PostgreSQL dialect: visible sessions, recovery codes, API tokens.
--
-- Keep this file in step with ../sqlite/0004_sessions_recovery.sql.

-- A session's public, non-secret id: what the session list shows and what
-- `DELETE /api/v1/sessions/{id}` names. Never derived from the token or its
-- hash. Sessions older than this migration get a random one here; every new
-- session gets a UUID v4 from the store.
ALTER TABLE sessions ADD COLUMN public_id TEXT;
UPDATE sessions SET public_id = replace(gen_random_uuid()::text, '-', '') WHERE public_id IS NULL;
CREATE UNIQUE INDEX sessions_public_id ON sessions (public_id);

-- One-time recovery codes, usable in place of a TOTP code at login. Only the
-- SHA-256 of each (80-bit random) code is kept.
CREATE TABLE recovery_codes (
    operator_id TEXT   NOT NULL REFERENCES operators (id),
    code_hash   BYTEA  NOT NULL,
    created_at  BIGINT NOT NULL,
    used_at     BIGINT,
    PRIMARY KEY (operator_id, code_hash)
);

-- API tokens for integrations: named, one role on a list of tenants,
-- expiring, SHA-256 at rest. A token acts for the operator who made it and
-- never passes a step-up (privileged actions need a person).
CREATE TABLE api_tokens (
    id           TEXT    NOT NULL PRIMARY KEY,
    token_hash   BYTEA   NOT NULL UNIQUE,
    operator_id  TEXT    NOT NULL REFERENCES operators (id),
    name         TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);

CREATE INDEX api_tokens_operator_id ON api_tokens (operator_id);

CREATE TABLE api_token_tenants (
    token_id  TEXT NOT NULL REFERENCES api_tokens (id),
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    PRIMARY KEY (token_id, tenant_id)
);
