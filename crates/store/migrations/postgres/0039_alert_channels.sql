-- Bulwark schema, version 39, PostgreSQL dialect: PagerDuty Events v2
-- channels, routing by business hours, and the outbox's follow-up events (issue 16; RFD 0007,
-- "PagerDuty").
--
-- Keep this file in step with ../sqlite/0039_alert_channels.sql.
ALTER TABLE notification_channels ADD COLUMN format TEXT NOT NULL DEFAULT 'default'
    CHECK (format IN ('default', 'pagerduty'));
ALTER TABLE notification_channels ADD COLUMN routing_key TEXT;
-- When a channel is told of an alert: always, or only when it opens (or
-- escalates) inside or outside the tenant's business hours (its SLA
-- calendar), e.g. the team's mail by day and the on-call pager by night.
ALTER TABLE notification_channels ADD COLUMN hours TEXT NOT NULL DEFAULT 'always'
    CHECK (hours IN ('always', 'business', 'after'));

ALTER TABLE notifications ADD COLUMN event TEXT NOT NULL DEFAULT 'trigger'
    CHECK (event IN ('trigger', 'acknowledge', 'resolve'));
ALTER TABLE notifications DROP CONSTRAINT notifications_alert_id_channel_id_key;
ALTER TABLE notifications ADD CONSTRAINT notifications_alert_channel_event
    UNIQUE (alert_id, channel_id, event);
