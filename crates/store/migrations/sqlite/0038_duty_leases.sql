-- Bulwark schema, version 38, SQLite dialect: the nodes of a
-- deployment and the background duties each runs (RFD 0018).
--
-- Keep this file in step with ../postgres/0038_duty_leases.sql.
--
-- One row per fleet-wide duty (alert mail, SIEM export, archiving, ...):
-- the node that runs it until `expires_at`, renewed each pass. `fencing`
-- grows by one at every change of holder, so a write made under an old
-- holder's token is refused once another node has taken the duty.
CREATE TABLE duty_leases (
    duty       TEXT NOT NULL PRIMARY KEY CHECK (length(duty) <= 64),
    holder     TEXT NOT NULL CHECK (length(holder) <= 128),
    expires_at INTEGER NOT NULL,
    fencing    INTEGER NOT NULL CHECK (fencing >= 1)
);

-- One row per running node (its random name on the bus), its heartbeat
-- renewed every few seconds: a node whose heartbeat expired is dead, and
-- the others stop showing its agents online.
CREATE TABLE server_nodes (
    node         TEXT NOT NULL PRIMARY KEY CHECK (length(node) <= 128),
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX server_nodes_by_expiry ON server_nodes (expires_at);
