-- Bulwark schema, version 15, SQLite dialect: the offline vulnerability
-- database (issue 17), imported from OSV files by an owner.
--
-- Keep this file in step with ../postgres/0015_vulndb.sql.
-- (Migration 0014, the device package inventory, may be absent in a
-- checkout: sqlx applies any migration not yet applied, in version order,
-- and accepts gaps. Nothing here depends on 0014.)
--
-- Imports go into a new generation ('staging') that readers never see;
-- one transaction makes it 'current', the old current 'previous', and
-- deletes the generation before that. Readers find rows through the
-- 'current' generation in the same statement, so they see the old set or
-- the new one, never an empty or half-written one.
CREATE TABLE vulndb_generations (
    id          INTEGER NOT NULL PRIMARY KEY,
    state       TEXT    NOT NULL CHECK (state IN ('staging', 'current', 'previous')),
    created_at  INTEGER NOT NULL,
    created_by  TEXT    NOT NULL,
    switched_at INTEGER,
    records     INTEGER NOT NULL DEFAULT 0 CHECK (records >= 0)
) STRICT;
CREATE UNIQUE INDEX vulndb_one_current ON vulndb_generations (state) WHERE state = 'current';
CREATE UNIQUE INDEX vulndb_one_previous ON vulndb_generations (state) WHERE state = 'previous';

-- One OSV record. `aliases` is newline-separated (OSV text has no control
-- characters once bulwark-vulndb accepted it). No foreign keys: a
-- generation's rows are deleted explicitly, table by table, in the switch.
CREATE TABLE vulndb_advisories (
    generation INTEGER NOT NULL,
    id         TEXT    NOT NULL,
    modified   TEXT    NOT NULL,
    published  TEXT,
    aliases    TEXT    NOT NULL,
    summary    TEXT    NOT NULL,
    PRIMARY KEY (generation, id)
) STRICT;

-- One affected package of one ecosystem release (`Debian:12`,
-- `Ubuntu:22.04:LTS`); `package` is the source package name, as Debian
-- and Ubuntu advisories name it, so a device's packages join on their
-- source name. `ranges` is bulwark_vulndb::stored's text: versions compare
-- with dpkg's rules in Rust, not in SQL. Severity: CVSS v3 base score in
-- tenths, rating, and the vector as given.
CREATE TABLE vulndb_affected (
    generation      INTEGER NOT NULL,
    advisory_id     TEXT    NOT NULL,
    ecosystem       TEXT    NOT NULL,
    package         TEXT    NOT NULL,
    ranges          TEXT    NOT NULL,
    severity_kind   TEXT,
    severity_vector TEXT,
    score_tenths    INTEGER CHECK (score_tenths BETWEEN 0 AND 100),
    rating          TEXT
) STRICT;
CREATE INDEX vulndb_affected_by_package ON vulndb_affected (generation, ecosystem, package);
CREATE INDEX vulndb_affected_by_advisory ON vulndb_affected (generation, advisory_id);
