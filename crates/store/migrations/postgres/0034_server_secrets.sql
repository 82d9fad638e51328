-- Bulwark schema, version 34, PostgreSQL dialect: secrets every node of a
-- deployment shares (RFD 0018).
--
-- Keep this file in step with ../sqlite/0034_server_secrets.sql.
--
-- One row per named secret, 32 random bytes made by the first node that
-- needs it and never changed. `login_decoy`: the key of the stand-in
-- credential ids that login options give for names without passkeys; per
-- process before, so two nodes answered an unknown name differently and
-- a known one alike, which told accounts apart.
CREATE TABLE server_secrets (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    secret     BYTEA  NOT NULL CHECK (octet_length(secret) = 32),
    created_at BIGINT NOT NULL
);
