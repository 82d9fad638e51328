-- Bulwark schema, version 39, SQLite dialect: PagerDuty Events v2 channels,
-- routing by business hours, and the outbox's follow-up events (issue 16;
-- RFD 0007, "PagerDuty", "Routing by hours").
--
-- Keep this file in step with ../postgres/0039_alert_channels.sql.
--
-- A PagerDuty channel is a webhook whose body is an Events v2 event
-- (format 'pagerduty'), sent with its integration's routing key. The kind
-- CHECK stays as it is: SQLite cannot change a CHECK without rebuilding a
-- table other tables point at.
ALTER TABLE notification_channels ADD COLUMN format TEXT NOT NULL DEFAULT 'default'
    CHECK (format IN ('default', 'pagerduty'));
ALTER TABLE notification_channels ADD COLUMN routing_key TEXT;
-- When a channel is told of an alert: always, or only when it opens (or
-- escalates) inside or outside the tenant's business hours (its SLA
-- calendar), e.g. the team's mail by day and the on-call pager by night.
ALTER TABLE notification_channels ADD COLUMN hours TEXT NOT NULL DEFAULT 'always'
    CHECK (hours IN ('always', 'business', 'after'));

-- A PagerDuty incident is opened by a trigger and closed by its own
-- resolve event: the outbox holds one row per alert, channel and event.
-- Nothing points at notifications, so it is rebuilt with the wider key.
CREATE TABLE notifications_v39 (
    id              TEXT    NOT NULL PRIMARY KEY,
    alert_id        TEXT    NOT NULL REFERENCES alerts (id),
    channel_id      TEXT    NOT NULL REFERENCES notification_channels (id),
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    sent_at         INTEGER,
    created_at      INTEGER NOT NULL,
    event           TEXT    NOT NULL DEFAULT 'trigger'
                            CHECK (event IN ('trigger', 'acknowledge', 'resolve')),
    UNIQUE (alert_id, channel_id, event)
) STRICT;
INSERT INTO notifications_v39 (id, alert_id, channel_id, state, attempts,
    next_attempt_at, last_error, sent_at, created_at, event)
    SELECT id, alert_id, channel_id, state, attempts, next_attempt_at,
           last_error, sent_at, created_at, 'trigger' FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_v39 RENAME TO notifications;
CREATE INDEX notifications_due ON notifications (state, next_attempt_at);
