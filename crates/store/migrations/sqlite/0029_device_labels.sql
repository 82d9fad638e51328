-- Bulwark schema, version 29, SQLite dialect: tags and groups of devices
-- (RFD 0016), what technicians find devices by and aim jobs at.
--
-- Keep this file in step with ../postgres/0029_device_labels.sql.
--
-- Each row carries its device's tenant, tied to the device by a foreign
-- key on (device_id, tenant_id), so a label can never name a device of
-- another tenant, and a tenant's labels are read without touching
-- devices. Tags are stored lower case (bulwark_api::fleet::parse_tag); a
-- group keeps its case for showing and is compared by `group_key`, its
-- ASCII lower case. The indexes serve the filters: every device with a
-- tag (or in a group) across tenants, and one tenant's.
CREATE UNIQUE INDEX devices_id_tenant ON devices (id, tenant_id);

CREATE TABLE device_tags (
    device_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    tag       TEXT NOT NULL,
    PRIMARY KEY (device_id, tag),
    FOREIGN KEY (device_id, tenant_id) REFERENCES devices (id, tenant_id) ON DELETE CASCADE
) STRICT;

CREATE INDEX device_tags_tag ON device_tags (tag, device_id);
CREATE INDEX device_tags_tenant_tag ON device_tags (tenant_id, tag);

CREATE TABLE device_groups (
    device_id  TEXT NOT NULL PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    group_name TEXT NOT NULL,
    group_key  TEXT NOT NULL,
    FOREIGN KEY (device_id, tenant_id) REFERENCES devices (id, tenant_id) ON DELETE CASCADE
) STRICT;

CREATE INDEX device_groups_key ON device_groups (group_key, device_id);
CREATE INDEX device_groups_tenant_key ON device_groups (tenant_id, group_key);
