-- Bulwark schema, version 36, PostgreSQL dialect: the agent release
-- mirror (RFD 0017, issue 17).
--
-- Keep this file in step with ../sqlite/0036_release_mirror.sql.
--
-- The server only mirrors a TUF repository written by the release keys'
-- holders: metadata documents (`root.json`, `2.root.json`,
-- `timestamp.json`, `3.snapshot.json`, ...) and target files (agent
-- binaries, under their TUF target path), byte for byte as imported.
-- Nothing here is trusted by an agent or the CLI: both verify every
-- document and file with the TUF client (`bulwark-releases`) against the
-- release root they hold. An import replaces a file of the same name.
CREATE TABLE release_files (
    kind        TEXT COLLATE "C" NOT NULL CHECK (kind IN ('metadata', 'target')),
    path        TEXT COLLATE "C" NOT NULL,
    content     BYTEA  NOT NULL,
    imported_at BIGINT NOT NULL,
    imported_by TEXT   NOT NULL,
    PRIMARY KEY (kind, path)
);
