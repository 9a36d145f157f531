-- gridwatch schema 2 (SQLite): grid versions get a lifecycle (draft → published), provenance,
-- stored reports (validation, diff) and an append-only audit log; published grids are immutable.
-- Versions that exist already were published by `seed` (status defaults to 'published').

ALTER TABLE grid_versions ADD COLUMN status TEXT NOT NULL DEFAULT 'published'
    CHECK (status IN ('draft', 'published'));
ALTER TABLE grid_versions ADD COLUMN source TEXT;
ALTER TABLE grid_versions ADD COLUMN crs TEXT;
ALTER TABLE grid_versions ADD COLUMN created_by TEXT;
ALTER TABLE grid_versions ADD COLUMN published_at TEXT;
ALTER TABLE grid_versions ADD COLUMN published_by TEXT;
CREATE INDEX grid_versions_valid ON grid_versions (valid_from, valid_to) WHERE status = 'published';

-- a draft holds what the planner imported, duplicate codes included (validation reports them and
-- they block publishing), so grids get their own row id instead of the (version_id, code) key
CREATE TABLE grids_v2 (
    id          INTEGER PRIMARY KEY,
    version_id  INTEGER NOT NULL REFERENCES grid_versions (id) ON DELETE CASCADE,
    code        TEXT    NOT NULL,
    level       INTEGER NOT NULL CHECK (level BETWEEN 1 AND 3),
    name        TEXT    NOT NULL,
    parent_code TEXT,
    geom        BLOB    NOT NULL
);
INSERT INTO grids_v2 (version_id, code, level, name, parent_code, geom)
    SELECT version_id, code, level, name, parent_code, geom FROM grids ORDER BY version_id, code;
DROP TABLE grids;
ALTER TABLE grids_v2 RENAME TO grids;
CREATE INDEX grids_version_code ON grids (version_id, code);
CREATE INDEX grids_version_level ON grids (version_id, level, code);

CREATE TABLE grid_version_reports (
    version_id  INTEGER NOT NULL REFERENCES grid_versions (id) ON DELETE CASCADE,
    kind        TEXT    NOT NULL,  -- "validation" | "diff" | ...
    created_at  TEXT    NOT NULL,
    body        TEXT    NOT NULL,  -- JSON
    PRIMARY KEY (version_id, kind)
);

CREATE TABLE grid_version_audit (
    id          INTEGER PRIMARY KEY,
    version_id  INTEGER NOT NULL,
    at          TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,  -- "import" | "publish" | "retire" | "delete"
    detail      TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX grid_version_audit_version ON grid_version_audit (version_id, id);
CREATE TRIGGER grid_version_audit_no_update BEFORE UPDATE ON grid_version_audit
BEGIN
    SELECT RAISE(ABORT, 'grid_version_audit is append-only (UPDATE refused)');
END;
CREATE TRIGGER grid_version_audit_no_delete BEFORE DELETE ON grid_version_audit
BEGIN
    SELECT RAISE(ABORT, 'grid_version_audit is append-only (DELETE refused)');
END;

-- a published version's grids and buildings never change
CREATE TRIGGER grids_published_no_insert BEFORE INSERT ON grids
WHEN (SELECT status FROM grid_versions WHERE id = NEW.version_id) = 'published'
BEGIN
    SELECT RAISE(ABORT, 'grids of a published grid version are immutable');
END;
CREATE TRIGGER grids_published_no_update BEFORE UPDATE ON grids
WHEN (SELECT status FROM grid_versions WHERE id = OLD.version_id) = 'published'
BEGIN
    SELECT RAISE(ABORT, 'grids of a published grid version are immutable');
END;
CREATE TRIGGER grids_published_no_delete BEFORE DELETE ON grids
WHEN (SELECT status FROM grid_versions WHERE id = OLD.version_id) = 'published'
BEGIN
    SELECT RAISE(ABORT, 'grids of a published grid version are immutable');
END;
CREATE TRIGGER buildings_published_no_insert BEFORE INSERT ON buildings
WHEN (SELECT status FROM grid_versions WHERE id = NEW.version_id) = 'published'
BEGIN
    SELECT RAISE(ABORT, 'buildings of a published grid version are immutable');
END;
CREATE TRIGGER buildings_published_no_update BEFORE UPDATE ON buildings
WHEN (SELECT status FROM grid_versions WHERE id = OLD.version_id) = 'published'
BEGIN
    SELECT RAISE(ABORT, 'buildings of a published grid version are immutable');
END;
CREATE TRIGGER buildings_published_no_delete BEFORE DELETE ON buildings
WHEN (SELECT status FROM grid_versions WHERE id = OLD.version_id) = 'published'
BEGIN
    SELECT RAISE(ABORT, 'buildings of a published grid version are immutable');
END;
-- a published version stays published and keeps its id and label
CREATE TRIGGER grid_versions_published_no_delete BEFORE DELETE ON grid_versions
WHEN OLD.status = 'published'
BEGIN
    SELECT RAISE(ABORT, 'a published grid version cannot be deleted');
END;
CREATE TRIGGER grid_versions_published_stays BEFORE UPDATE OF status, label ON grid_versions
WHEN OLD.status = 'published' AND (NEW.status <> 'published' OR NEW.label <> OLD.label)
BEGIN
    SELECT RAISE(ABORT, 'a published grid version is immutable (status, label)');
END;

-- incidents of a grid at any level, by their route chain (codes need not follow the §6 prefix rule)
CREATE INDEX incidents_l2_created ON incidents (l2, created_at);
CREATE INDEX incidents_l1_created ON incidents (l1, created_at);
