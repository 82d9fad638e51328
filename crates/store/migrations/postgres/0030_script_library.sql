-- Bulwark schema, version 30, PostgreSQL dialect: the MSP's script library
-- (issue 15, RFD 0013).
--
-- Keep this file in step with ../sqlite/0030_script_library.sql.
--
-- One library per MSP (per server), not per tenant. Versions are immutable
-- (no UPDATE path in the store); the author's and each reviewer's signed
-- statement are kept as the bytes given. None of this is trusted by
-- anyone: the operator's `bulwark` checks the content's hash and the
-- signatures against a tenant's verified policy before it signs a job.

CREATE TABLE scripts (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    COLLATE "C" NOT NULL UNIQUE,
    description TEXT    NOT NULL,
    created_by  TEXT    NOT NULL REFERENCES operators (id),
    created_at  BIGINT  NOT NULL
);

CREATE TABLE script_versions (
    script_id       TEXT    NOT NULL REFERENCES scripts (id),
    version         BIGINT  NOT NULL CHECK (version >= 1),
    -- sh, bash or python3.
    interpreter     TEXT    NOT NULL,
    -- The parameter schema, `name:type` per line (bulwark_scripts::ParamSpec).
    params          TEXT    NOT NULL,
    content         TEXT    NOT NULL,
    -- Lowercase hex SHA-256 of content.
    sha256          TEXT    NOT NULL,
    author_id       TEXT    NOT NULL REFERENCES operators (id),
    -- The author's signed VersionStatement (DSSE envelope, canonical CBOR).
    author_envelope BYTEA   NOT NULL,
    created_at      BIGINT  NOT NULL,
    PRIMARY KEY (script_id, version)
);

CREATE TABLE script_reviews (
    script_id   TEXT    NOT NULL,
    version     BIGINT  NOT NULL,
    reviewer_id TEXT    NOT NULL REFERENCES operators (id),
    -- The reviewer's signed VersionStatement.
    envelope    BYTEA   NOT NULL,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (script_id, version, reviewer_id),
    FOREIGN KEY (script_id, version) REFERENCES script_versions (script_id, version)
);
