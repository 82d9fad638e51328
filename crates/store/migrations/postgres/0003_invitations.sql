-- Bulwark schema, version 3, PostgreSQL dialect: operator invitations.
--
-- Keep this file in step with ../sqlite/0003_invitations.sql.
--
-- `operators.role` is now 'owner' (every tenant) or 'operator' (only the
-- tenants in `operator_grants`, each with its own role there).

UPDATE operators SET role = 'operator' WHERE role <> 'owner';

-- A one-time, expiring link an owner sends to a new operator. Only the
-- SHA-256 of the link's token is kept.
CREATE TABLE invitations (
    id               TEXT    NOT NULL PRIMARY KEY,
    token_hash       BYTEA   NOT NULL UNIQUE,
    username         TEXT    COLLATE "C" NOT NULL,
    -- 'owner' or 'operator', as operators.role.
    account_role     TEXT    NOT NULL CHECK (account_role IN ('owner', 'operator')),
    created_by       TEXT    NOT NULL,
    created_at       BIGINT  NOT NULL,
    expires_at       BIGINT  NOT NULL,
    revoked_at       BIGINT,
    used_at          BIGINT,
    used_by_operator TEXT
);

-- The grants the invited operator receives, copied to operator_grants when
-- the invitation is redeemed.
CREATE TABLE invitation_grants (
    invitation_id TEXT NOT NULL REFERENCES invitations (id),
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    role          TEXT NOT NULL,
    PRIMARY KEY (invitation_id, tenant_id)
);

-- An invitation being redeemed: password chosen, waiting for the TOTP proof.
CREATE TABLE invitation_enrolments (
    id_hash       BYTEA   NOT NULL PRIMARY KEY,
    invitation_id TEXT    NOT NULL REFERENCES invitations (id),
    password_hash TEXT    NOT NULL,
    totp_secret   TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL
);

CREATE INDEX invitation_enrolments_invitation_id ON invitation_enrolments (invitation_id);
