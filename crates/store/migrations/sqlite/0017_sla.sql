-- Bulwark schema, version 17, SQLite dialect: a tenant's SLA targets and
-- business calendar (RFD 0008, "SLAs").
--
-- Keep this file in step with ../postgres/0017_sla.sql.
--
-- One row per tenant that has SLA targets. Targets are business minutes
-- (NULL: no target for that severity and measure); the calendar is an
-- IANA zone name, the week's hours as `mon 09:00-17:00,tue ...` and
-- holidays as `YYYY-MM-DD,...`, both in local time, parsed by the server
-- (alerts::business_time). Attainment is computed from the alerts table,
-- never stored. Changes are audit events (`sla.changed`).
CREATE TABLE sla_targets (
    tenant_id                TEXT    NOT NULL PRIMARY KEY REFERENCES tenants (id),
    time_zone                TEXT    NOT NULL,
    business_hours           TEXT    NOT NULL,
    holidays                 TEXT    NOT NULL,
    ack_critical_minutes     INTEGER CHECK (ack_critical_minutes > 0),
    resolve_critical_minutes INTEGER CHECK (resolve_critical_minutes > 0),
    ack_warning_minutes      INTEGER CHECK (ack_warning_minutes > 0),
    resolve_warning_minutes  INTEGER CHECK (resolve_warning_minutes > 0),
    ack_info_minutes         INTEGER CHECK (ack_info_minutes > 0),
    resolve_info_minutes     INTEGER CHECK (resolve_info_minutes > 0),
    -- Critical security updates installed within this many days: kept,
    -- not yet measured (there are no patch events to measure it from).
    patch_critical_days      INTEGER CHECK (patch_critical_days > 0),
    updated_by               TEXT    NOT NULL,
    updated_at               INTEGER NOT NULL
) STRICT;
