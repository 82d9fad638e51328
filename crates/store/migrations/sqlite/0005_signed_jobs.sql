-- Bulwark schema, version 5, SQLite dialect: trust statements, operator
-- signing keys, signed jobs, their approvals and per-device results.
--
-- Keep this file in step with ../postgres/0005_signed_jobs.sql.
--
-- The store keeps signed envelopes as the bytes it is given: the server
-- verifies them before storing, and the agent verifies them again before it
-- obeys (RFD 0002). Versions and sequence numbers are u64 in the statements,
-- stored here as non-negative integers.

-- Every root, policy and freeze/unfreeze statement of a tenant. Roots are
-- kept from v1 on (the agent needs the chain); the latest policy and
-- freeze statement are the ones in force.
CREATE TABLE trust_statements (
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id),
    kind       TEXT    NOT NULL CHECK (kind IN ('root', 'policy', 'freeze')),
    version    INTEGER NOT NULL CHECK (version >= 0),
    envelope   BLOB    NOT NULL,
    -- Operator id; NULL when no operator stored it (e.g. an installer).
    created_by TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, kind, version)
) STRICT;

-- Operators' public signing keys (the private halves never reach the server).
CREATE TABLE signing_keys (
    -- Hex of the policy KeyId: SHA-256 of the canonical CBOR of the public key.
    key_id      TEXT    NOT NULL PRIMARY KEY,
    operator_id TEXT    NOT NULL REFERENCES operators (id),
    name        TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('ed25519', 'webauthn')),
    -- Canonical CBOR of bulwark_policy::keys::PublicKey.
    public_key  BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    UNIQUE (operator_id, name)
) STRICT;

-- Lets job_targets reference (device, tenant) pairs: a job's target is
-- always a device of the job's tenant, whatever the code above does.
CREATE UNIQUE INDEX devices_id_tenant_id ON devices (id, tenant_id);

CREATE TABLE jobs (
    -- 32 lowercase hex characters of the statement's 16-byte job id.
    id            TEXT    NOT NULL PRIMARY KEY,
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id),
    requested_by  TEXT    NOT NULL REFERENCES operators (id),
    class         TEXT    NOT NULL,
    reason        TEXT    NOT NULL,
    script        BLOB    NOT NULL,
    script_sha256 BLOB    NOT NULL,
    -- The job's Signed envelope with every signature gathered so far.
    envelope      BLOB    NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'expired')),
    not_before    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    decided_at    INTEGER,
    decided_by    TEXT,
    decision_note TEXT,
    UNIQUE (id, tenant_id)
) STRICT;

CREATE INDEX jobs_tenant_id_created_at ON jobs (tenant_id, created_at);
CREATE INDEX jobs_state_expires_at ON jobs (state, expires_at);

-- One row per (job, target device): its delivery and its result.
CREATE TABLE job_targets (
    job_id         TEXT    NOT NULL,
    device_id      TEXT    NOT NULL,
    tenant_id      TEXT    NOT NULL,
    state          TEXT    NOT NULL
        CHECK (state IN ('waiting', 'delivered', 'succeeded', 'failed', 'timed_out', 'refused')),
    exit_code      INTEGER,
    refusal_code   TEXT,
    refusal_reason TEXT,
    -- As the agent sent them (each truncated by the agent).
    stdout         BLOB,
    stderr         BLOB,
    -- SHA-256 of everything the script wrote (stdout, then stderr).
    output_sha256  BLOB,
    -- The agent's clock, as reported with a result of a script that ran.
    started_at     INTEGER,
    finished_at    INTEGER,
    -- The server's clock.
    delivered_at   INTEGER,
    reported_at    INTEGER,
    PRIMARY KEY (job_id, device_id),
    FOREIGN KEY (job_id, tenant_id) REFERENCES jobs (id, tenant_id),
    FOREIGN KEY (device_id, tenant_id) REFERENCES devices (id, tenant_id)
) STRICT;

-- The work waiting for a device.
CREATE INDEX job_targets_device_id_state ON job_targets (device_id, state);

-- Who signed (or rejected) a job, with which key.
CREATE TABLE job_approvals (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      TEXT    NOT NULL REFERENCES jobs (id),
    operator_id TEXT    NOT NULL REFERENCES operators (id),
    -- NULL for a rejection (nothing is signed).
    key_id      TEXT    REFERENCES signing_keys (key_id),
    decision    TEXT    NOT NULL CHECK (decision IN ('approve', 'reject')),
    note        TEXT,
    at          INTEGER NOT NULL,
    UNIQUE (job_id, key_id)
) STRICT;

-- What each agent last reported holding (TrustStatus).
CREATE TABLE device_trust (
    device_id       TEXT    NOT NULL PRIMARY KEY REFERENCES devices (id),
    root_version    INTEGER NOT NULL CHECK (root_version >= 0),
    policy_version  INTEGER NOT NULL CHECK (policy_version >= 0),
    freeze_sequence INTEGER NOT NULL CHECK (freeze_sequence >= 0),
    frozen          INTEGER NOT NULL CHECK (frozen IN (0, 1)),
    updated_at      INTEGER NOT NULL
) STRICT;
