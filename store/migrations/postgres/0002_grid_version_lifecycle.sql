-- gridwatch schema 2 (PostgreSQL): grid versions get a lifecycle (draft → published), provenance,
-- stored reports (validation, diff) and an append-only audit log; published grids are immutable.
-- Versions that exist already were published by `seed` (status defaults to 'published').

ALTER TABLE grid_versions
    ADD COLUMN status text NOT NULL DEFAULT 'published' CHECK (status IN ('draft', 'published')),
    ADD COLUMN source text,
    ADD COLUMN crs text,
    ADD COLUMN created_by text,
    ADD COLUMN published_at timestamptz,
    ADD COLUMN published_by text;
CREATE INDEX grid_versions_valid ON grid_versions (valid_from, valid_to) WHERE status = 'published';

-- a draft holds what the planner imported, duplicate codes included (validation reports them and
-- they block publishing), so grids get their own row id instead of the (version_id, code) key
ALTER TABLE grids DROP CONSTRAINT grids_pkey;
ALTER TABLE grids ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY;
CREATE INDEX grids_version_code ON grids (version_id, code);

CREATE TABLE grid_version_reports (
    version_id  bigint      NOT NULL REFERENCES grid_versions (id) ON DELETE CASCADE,
    kind        text        NOT NULL,  -- "validation" | "diff" | ...
    created_at  timestamptz NOT NULL DEFAULT now(),
    body        jsonb       NOT NULL,
    PRIMARY KEY (version_id, kind)
);

CREATE TABLE grid_version_audit (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version_id  bigint      NOT NULL,
    at          timestamptz NOT NULL,
    actor       text        NOT NULL,
    action      text        NOT NULL,  -- "import" | "publish" | "delete"
    detail      jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX grid_version_audit_version ON grid_version_audit (version_id, id);

CREATE FUNCTION grid_version_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'grid_version_audit is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER grid_version_audit_append_only BEFORE UPDATE OR DELETE ON grid_version_audit
    FOR EACH ROW EXECUTE FUNCTION grid_version_audit_append_only();

-- a published version's grids and buildings never change
CREATE FUNCTION grid_rows_of_published_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v bigint := CASE WHEN TG_OP = 'INSERT' THEN NEW.version_id ELSE OLD.version_id END;
BEGIN
    IF (SELECT status FROM grid_versions WHERE id = v) = 'published' THEN
        RAISE EXCEPTION '% of a published grid version are immutable (% refused, version %)', TG_TABLE_NAME, TG_OP, v;
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;
CREATE TRIGGER grids_published_immutable BEFORE INSERT OR UPDATE OR DELETE ON grids
    FOR EACH ROW EXECUTE FUNCTION grid_rows_of_published_immutable();
CREATE TRIGGER buildings_published_immutable BEFORE INSERT OR UPDATE OR DELETE ON buildings
    FOR EACH ROW EXECUTE FUNCTION grid_rows_of_published_immutable();

CREATE FUNCTION grid_version_published_stays() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'a published grid version cannot be deleted (version %)', OLD.id;
    END IF;
    IF NEW.status <> 'published' OR NEW.label <> OLD.label THEN
        RAISE EXCEPTION 'a published grid version is immutable (status, label; version %)', OLD.id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER grid_versions_published_stays BEFORE UPDATE OR DELETE ON grid_versions
    FOR EACH ROW WHEN (OLD.status = 'published') EXECUTE FUNCTION grid_version_published_stays();

-- incidents of a grid at any level, by their route chain (codes need not follow the §6 prefix rule)
CREATE INDEX incidents_l2_created ON incidents (l2, created_at);
CREATE INDEX incidents_l1_created ON incidents (l1, created_at);
