-- Bulwark schema, version 14, PostgreSQL dialect: installed software per device.
--
-- Keep this file in step with ../sqlite/0014_device_packages.sql.
--
-- What the device's agent last reported installed (dpkg), replaced as a
-- whole whenever a report carries the package list (the agent sends the
-- full list when it changed), in the transaction that stores the report.
-- Every text is the agent's: untrusted, bounded by the protocol's limits
-- (bulwark_protocol::Limits::max_packages rows per device, max_text bytes
-- per field) before it gets here.
CREATE TABLE device_packages (
    device_id      TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    name           TEXT COLLATE "C" NOT NULL,
    architecture   TEXT COLLATE "C" NOT NULL,
    version        TEXT NOT NULL,
    source         TEXT NOT NULL,
    source_version TEXT NOT NULL,
    PRIMARY KEY (device_id, name, architecture)
);
