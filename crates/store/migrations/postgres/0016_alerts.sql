-- Bulwark schema, version 16, PostgreSQL dialect: alerts and where they are
-- sent (RFD 0007, "Alerts").
--
-- Keep this file in step with ../sqlite/0016_alerts.sql.
-- (Migrations 0014 and 0015 may be absent in a checkout: sqlx accepts gaps.)
--
-- An alert is raised from an entry of a transparency log (an agent's
-- refusal, a mass action entering its delay, ...). While it is not
-- resolved, the same dedup_key raises nothing new: it counts one more
-- occurrence. tenant_id NULL: an MSP-wide alert (owners see it).
CREATE TABLE alerts (
    id              TEXT    NOT NULL PRIMARY KEY,
    tenant_id       TEXT    REFERENCES tenants (id),
    device_id       TEXT,
    kind            TEXT    NOT NULL,
    severity        TEXT    NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    dedup_key       TEXT    NOT NULL,
    summary         TEXT    NOT NULL,
    detail          TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    opened_at       BIGINT NOT NULL,
    last_seen_at    BIGINT NOT NULL,
    occurrences     BIGINT NOT NULL CHECK (occurrences >= 1),
    acknowledged_by TEXT,
    acknowledged_at BIGINT,
    resolved_by     TEXT,
    resolved_at     BIGINT,
    -- The log entry that raised it first: where an auditor checks it
    -- (NULL for what the server observed itself: a device gone silent).
    log_id          TEXT,
    log_idx         BIGINT
);
CREATE UNIQUE INDEX alerts_unresolved ON alerts (dedup_key) WHERE state <> 'resolved';
CREATE INDEX alerts_by_tenant ON alerts (tenant_id, state, opened_at);

-- Where a tenant's alerts (tenant_id set) or every alert (NULL) go: an
-- e-mail address or a webhook URL, from a minimum severity on. Removing
-- one keeps the row (removed_at) so the audit trail still names it.
CREATE TABLE notification_channels (
    id           TEXT    NOT NULL PRIMARY KEY,
    tenant_id    TEXT    REFERENCES tenants (id),
    kind         TEXT    NOT NULL CHECK (kind IN ('email', 'webhook')),
    target       TEXT    NOT NULL,
    min_severity TEXT    NOT NULL CHECK (min_severity IN ('info', 'warning', 'critical')),
    created_by   TEXT    NOT NULL,
    created_at   BIGINT NOT NULL,
    removed_at   BIGINT
);
CREATE INDEX notification_channels_by_tenant ON notification_channels (tenant_id);

-- The outbox: one row per alert and channel, written in the transaction
-- that opens the alert, sent (and retried) by the notifier.
CREATE TABLE notifications (
    id              TEXT    NOT NULL PRIMARY KEY,
    alert_id        TEXT    NOT NULL REFERENCES alerts (id),
    channel_id      TEXT    NOT NULL REFERENCES notification_channels (id),
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        BIGINT NOT NULL CHECK (attempts >= 0),
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    sent_at         BIGINT,
    created_at      BIGINT NOT NULL,
    UNIQUE (alert_id, channel_id)
);
CREATE INDEX notifications_due ON notifications (state, next_attempt_at);
