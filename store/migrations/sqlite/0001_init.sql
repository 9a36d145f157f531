-- gridwatch schema 1 (SQLite).
-- Geometries: WKB blobs (shapely.to_wkb), WGS84 lon/lat (EPSG:4326).
-- Datetimes: ISO-8601 text in UTC with microseconds ("2026-11-21T00:15:02.000000+00:00"), so that
-- text order is time order. JSON columns hold JSON text.
-- alarms.incident_id and incident_history.incident_id have no foreign key on purpose: one ingest
-- batch writes alarms, incidents and history in any order, and an accepted alarm must never be lost
-- to a constraint on the incident side (design §7).

CREATE TABLE grid_versions (
    id          INTEGER PRIMARY KEY,
    label       TEXT    NOT NULL UNIQUE,
    created_at  TEXT    NOT NULL,
    is_current  INTEGER NOT NULL DEFAULT 0 CHECK (is_current IN (0, 1)),
    valid_from  TEXT,
    valid_to    TEXT
);
-- at most one current version
CREATE UNIQUE INDEX grid_versions_one_current ON grid_versions (is_current) WHERE is_current = 1;

CREATE TABLE grids (
    version_id  INTEGER NOT NULL REFERENCES grid_versions (id) ON DELETE CASCADE,
    code        TEXT    NOT NULL,
    level       INTEGER NOT NULL CHECK (level BETWEEN 1 AND 3),
    name        TEXT    NOT NULL,
    parent_code TEXT,
    geom        BLOB    NOT NULL,
    PRIMARY KEY (version_id, code)
);
CREATE INDEX grids_version_level ON grids (version_id, level, code);

CREATE TABLE buildings (
    version_id  INTEGER NOT NULL REFERENCES grid_versions (id) ON DELETE CASCADE,
    code        TEXT    NOT NULL,
    grid_code   TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    geom        BLOB    NOT NULL,
    PRIMARY KEY (version_id, code)
);
CREATE INDEX buildings_version_grid ON buildings (version_id, grid_code);

CREATE TABLE devices (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    geom        BLOB NOT NULL,
    grid_code   TEXT NOT NULL,
    zones       TEXT NOT NULL DEFAULT '[]'  -- JSON array of zone names
);
CREATE INDEX devices_grid ON devices (grid_code);

CREATE TABLE patrollers (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    phone       TEXT NOT NULL,
    grid_codes  TEXT NOT NULL DEFAULT '[]',  -- JSON array of level-3 codes
    shifts      TEXT NOT NULL DEFAULT '[]',  -- JSON [{"weekdays": [0..6], "start": "08:00:00", "end": "20:00:00"}]
    home        BLOB                         -- WKB point or NULL
);

CREATE TABLE patroller_positions (
    patroller_id TEXT PRIMARY KEY,
    ts           TEXT NOT NULL,
    lon          REAL NOT NULL,
    lat          REAL NOT NULL,
    acc          REAL,
    updated_at   TEXT NOT NULL
);

CREATE TABLE alarms (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT    NOT NULL,
    msg_id      TEXT    NOT NULL,
    ts          TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    severity    INTEGER NOT NULL,
    lon         REAL,
    lat         REAL,
    zone        TEXT,
    data        TEXT    NOT NULL DEFAULT '{}',
    raw         BLOB    NOT NULL,
    received_at TEXT    NOT NULL,
    incident_id TEXT,
    warnings    TEXT    NOT NULL DEFAULT '[]',
    -- the exactly-once guarantee: a (device, message) pair is stored once
    CONSTRAINT alarms_device_msg UNIQUE (device_id, msg_id)
);
CREATE INDEX alarms_incident ON alarms (incident_id, ts);
CREATE INDEX alarms_device_ts ON alarms (device_id, ts);

CREATE TABLE incidents (
    id             TEXT PRIMARY KEY,
    type           TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    severity       INTEGER NOT NULL,
    source         TEXT    NOT NULL,
    device_id      TEXT,
    route          TEXT    NOT NULL,  -- RouteRecord.to_dict() as JSON
    l1             TEXT,
    l2             TEXT,
    l3             TEXT,
    building       TEXT,
    lon            REAL    NOT NULL,
    lat            REAL    NOT NULL,
    alarm_count    INTEGER NOT NULL DEFAULT 1,
    first_alarm_at TEXT,
    last_alarm_at  TEXT,
    assignee       TEXT,
    dispatched_at  TEXT,
    deadline       TEXT,
    note           TEXT,
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL
);
CREATE INDEX incidents_device_type_state ON incidents (device_id, type, state, last_alarm_at);
CREATE INDEX incidents_l3_created ON incidents (l3, created_at);
CREATE INDEX incidents_created ON incidents (created_at);
CREATE INDEX incidents_updated ON incidents (updated_at);
CREATE INDEX incidents_lon_lat ON incidents (lon, lat);

CREATE TABLE incident_history (
    id          INTEGER PRIMARY KEY,
    incident_id TEXT NOT NULL,
    at          TEXT NOT NULL,
    action      TEXT NOT NULL,
    from_state  TEXT,
    to_state    TEXT NOT NULL,
    actor       TEXT NOT NULL,
    note        TEXT
);
CREATE INDEX incident_history_incident ON incident_history (incident_id, at, id);
CREATE TRIGGER incident_history_no_update BEFORE UPDATE ON incident_history
BEGIN
    SELECT RAISE(ABORT, 'incident_history is append-only');
END;
CREATE TRIGGER incident_history_no_delete BEFORE DELETE ON incident_history
BEGIN
    SELECT RAISE(ABORT, 'incident_history is append-only');
END;

-- AUTOINCREMENT: these ids are shown to operators (deadletters replay ID), never reuse them
CREATE TABLE dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    topic       TEXT NOT NULL,
    payload     BLOB NOT NULL,
    reason      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE INDEX dead_letters_received ON dead_letters (received_at, id);

CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    topic        TEXT    NOT NULL,
    payload      TEXT    NOT NULL,  -- JSON
    created_at   TEXT    NOT NULL,
    delivered_at TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,  -- every delivery attempt, the successful one included
    last_error   TEXT
);
CREATE INDEX outbox_pending ON outbox (id) WHERE delivered_at IS NULL;
