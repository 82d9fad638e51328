-- Bulwark schema, version 9, SQLite dialect: trust statements being
-- signed by several people (RFD 0002, "Proposals").
--
-- Keep this file in step with ../postgres/0009_trust_proposals.sql.
--
-- The server only collects signatures: each row holds the envelope with
-- every signature gathered so far. When the statement passes the checks
-- of its publish route it is stored in trust_statements and the proposal
-- is marked published; agents verify it again, as any statement.
CREATE TABLE trust_proposals (
    -- 32 lowercase hex characters (16 random bytes).
    id           TEXT    NOT NULL PRIMARY KEY,
    tenant_id    TEXT    NOT NULL REFERENCES tenants (id),
    kind         TEXT    NOT NULL CHECK (kind IN ('root', 'policy', 'freeze')),
    version      INTEGER NOT NULL CHECK (version >= 0),
    envelope     BLOB    NOT NULL,
    proposed_by  TEXT    NOT NULL REFERENCES operators (id),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('open', 'published', 'withdrawn', 'expired')),
    published_at INTEGER
) STRICT;

CREATE INDEX trust_proposals_tenant_id_state ON trust_proposals (tenant_id, state);
CREATE INDEX trust_proposals_state_expires_at ON trust_proposals (state, expires_at);
