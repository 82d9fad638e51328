-- Bulwark schema, version 9, PostgreSQL dialect: trust statements being
-- signed by several people (RFD 0002, "Proposals").
--
-- Keep this file in step with ../sqlite/0009_trust_proposals.sql.
--
-- The server only collects signatures: each row holds the envelope with
-- every signature gathered so far. When the statement passes the checks
-- of its publish route it is stored in trust_statements and the proposal
-- is marked published; agents verify it again, as any statement.
CREATE TABLE trust_proposals (
    -- 32 lowercase hex characters (16 random bytes).
    id           TEXT    COLLATE "C" NOT NULL PRIMARY KEY,
    tenant_id    TEXT    NOT NULL REFERENCES tenants (id),
    kind         TEXT    NOT NULL CHECK (kind IN ('root', 'policy', 'freeze')),
    version      BIGINT NOT NULL CHECK (version >= 0),
    envelope     BYTEA   NOT NULL,
    proposed_by  TEXT    NOT NULL REFERENCES operators (id),
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('open', 'published', 'withdrawn', 'expired')),
    published_at BIGINT
);

CREATE INDEX trust_proposals_tenant_id_state ON trust_proposals (tenant_id, state);
CREATE INDEX trust_proposals_state_expires_at ON trust_proposals (state, expires_at);
