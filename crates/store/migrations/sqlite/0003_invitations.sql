-- Bulwark schema, version 3, SQLite dialect: operator invitations.
--
-- Keep this file in step with ../postgres/0003_invitations.sql.
--
-- `operators.role` is now 'owner' (every tenant) or 'operator' (only the
-- tenants in `operator_grants`, each with its own role there).

UPDATE operators SET role = 'operator' WHERE role <> 'owner';

-- A one-time, expiring link an owner sends to a new operator. Only the
-- SHA-256 of the link's token is kept.
CREATE TABLE invitations (
    id               TEXT    NOT NULL PRIMARY KEY,
    token_hash       BLOB    NOT NULL UNIQUE,
    username         TEXT    NOT NULL,
    -- 'owner' or 'operator', as operators.role.
    account_role     TEXT    NOT NULL CHECK (account_role IN ('owner', 'operator')),
    created_by       TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    revoked_at       INTEGER,
    used_at          INTEGER,
    used_by_operator TEXT
) STRICT;

-- The grants the invited operator receives, copied to operator_grants when
-- the invitation is redeemed.
CREATE TABLE invitation_grants (
    invitation_id TEXT NOT NULL REFERENCES invitations (id),
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    role          TEXT NOT NULL,
    PRIMARY KEY (invitation_id, tenant_id)
) STRICT;

-- An invitation being redeemed: password chosen, waiting for the TOTP proof.
CREATE TABLE invitation_enrolments (
    id_hash       BLOB    NOT NULL PRIMARY KEY,
    invitation_id TEXT    NOT NULL REFERENCES invitations (id),
    password_hash TEXT    NOT NULL,
    totp_secret   TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
) STRICT;

CREATE INDEX invitation_enrolments_invitation_id ON invitation_enrolments (invitation_id);
