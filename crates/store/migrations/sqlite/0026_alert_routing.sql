-- Bulwark schema, version 26, SQLite dialect: escalation and maintenance
-- windows in alert routing (RFD 0007, "Routing").
--
-- Keep this file in step with ../postgres/0026_alert_routing.sql.
--
-- A channel with escalate_after_ms is told of an alert only if it is still
-- open (nobody acknowledged it) that long after it opened; the notifier
-- queues it then. An alert opened while its tenant's policy is in a
-- maintenance window is recorded with why it was silenced and sent nowhere.
ALTER TABLE notification_channels ADD COLUMN escalate_after_ms INTEGER;
ALTER TABLE alerts ADD COLUMN silenced TEXT;
