-- Bulwark schema, version 6, PostgreSQL dialect: passkeys (WebAuthn
-- credentials for operator login and step-up), server settings, and the
-- passkey a session was signed in with.
--
-- Keep this file in step with ../sqlite/0006_passkeys.sql.

-- An operator's passkeys and security keys. The store keeps what the
-- server verified at registration; the server checks every assertion.
CREATE TABLE passkeys (
    id              TEXT    NOT NULL PRIMARY KEY,
    operator_id     TEXT    NOT NULL REFERENCES operators (id),
    -- The operator's name for it ("laptop"); unique per operator. Byte
    -- order, as in SQLite.
    name            TEXT    COLLATE "C" NOT NULL,
    -- What the browser names the credential by (allowCredentials, rawId).
    credential_id   BYTEA   NOT NULL UNIQUE,
    -- Canonical CBOR of bulwark_policy::webauthn::WebAuthnCredential
    -- (the RP id it is bound to and its public key).
    credential      BYTEA   NOT NULL,
    -- The authenticator's signature counter as last seen (0: it keeps none).
    sign_count      BIGINT  NOT NULL CHECK (sign_count >= 0 AND sign_count <= 4294967295),
    -- The BE flag at registration: 1 for a syncable passkey, 0 for a
    -- device-bound credential (most security keys).
    backup_eligible BIGINT  NOT NULL CHECK (backup_eligible IN (0, 1)),
    created_at      BIGINT  NOT NULL,
    last_used_at    BIGINT,
    UNIQUE (operator_id, name)
);

-- Server-wide settings an owner changes at run time, one row per key. The
-- server owns the value format (today: `passkey_required_roles`, a comma-
-- separated list of role names). Every change is audited.
CREATE TABLE settings (
    key        TEXT    COLLATE "C" NOT NULL PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at BIGINT  NOT NULL,
    -- Username of the operator who made the change.
    updated_by TEXT    NOT NULL
);

-- The passkey (passkeys.id) whose assertion signed this session in; NULL
-- for a one-time code or recovery code login. Not a foreign key: removing a
-- passkey leaves the sessions it started as they are.
ALTER TABLE sessions ADD COLUMN passkey_id TEXT;
