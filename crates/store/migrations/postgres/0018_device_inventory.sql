-- Bulwark schema, version 18, PostgreSQL dialect: the inventory sections kept
-- beside a device's inventory (issue 15).
--
-- Keep this file in step with ../sqlite/0018_device_inventory.sql.
--
-- Listening ports, local administrators, services and the process
-- snapshot, one row per device and section: the canonical CBOR of a
-- bulwark_protocol::inventory::Inventory holding that section only (the
-- encoding the agent sent and devices.inventory uses), replaced whenever a report carries
-- the section, all of a device's rows replaced by a full report. Not in
-- devices.inventory, which every device list decodes: services and
-- processes are tens of KiB per device and only a device's own page
-- shows them. Every byte is the agent's: untrusted, bounded by the
-- protocol's limits before it gets here.
CREATE TABLE device_inventory_sections (
    device_id  TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    -- listening_ports, local_admins, services or processes.
    section    TEXT NOT NULL,
    body       BYTEA NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (device_id, section)
);
