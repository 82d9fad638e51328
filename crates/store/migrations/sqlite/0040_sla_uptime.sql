-- Bulwark schema, version 40, SQLite dialect: uptime targets per device
-- group in a tenant's SLA (RFD 0008, "Uptime per group").
--
-- Keep this file in step with ../postgres/0040_sla_uptime.sql.
--
-- A target is the share of time the group's devices are to be connected,
-- in basis points (9990: 99.90 %). The group is named as devices carry it
-- (device_groups.group_name) and matched by its key (ASCII lower case).
-- Rows are replaced with the tenant's sla_targets row, in the same
-- transaction and the same `sla.changed` audit event. Uptime itself is
-- computed from the device.offline alerts, never stored.
CREATE TABLE sla_uptime_targets (
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
    group_key   TEXT    NOT NULL,
    group_name  TEXT    NOT NULL,
    basis_points INTEGER NOT NULL CHECK (basis_points > 0 AND basis_points <= 10000),
    PRIMARY KEY (tenant_id, group_key)
) STRICT;
