-- gridwatch schema 4 (SQLite): the device registry learns formats, vendor identities, heartbeat
-- intervals and an online state; device status events; alarm ends; dead-letter replay bookkeeping;
-- readings (time series).

-- devices is rebuilt (SQLite cannot ADD COLUMN with a non-constant default such as registered_at's).
-- state: unknown (never heard from) | online | offline; state_since: when it last changed;
-- last_seen: the newest message time; detail: the last status data (battery, rssi, ...), JSON.
CREATE TABLE devices_v4 (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    name          TEXT NOT NULL,
    geom          BLOB NOT NULL,
    grid_code     TEXT NOT NULL,
    zones         TEXT NOT NULL DEFAULT '[]',  -- JSON array of zone names
    format        TEXT NOT NULL DEFAULT 'gridwatch',
    identity      TEXT,                        -- `<format>:<key>`; unique when set
    interval_s    REAL,                        -- expected longest silence; NULL: not watched
    state         TEXT NOT NULL DEFAULT 'unknown' CHECK (state IN ('unknown', 'online', 'offline')),
    state_since   TEXT,
    last_seen     TEXT,
    registered_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%S', 'now') || '.000000+00:00'),
    detail        TEXT NOT NULL DEFAULT '{}'
);
INSERT INTO devices_v4 (id, kind, name, geom, grid_code, zones)
    SELECT id, kind, name, geom, grid_code, zones FROM devices ORDER BY id;
DROP TABLE devices;
ALTER TABLE devices_v4 RENAME TO devices;
CREATE INDEX devices_grid ON devices (grid_code);
CREATE UNIQUE INDEX devices_identity ON devices (identity) WHERE identity IS NOT NULL;

-- what devices said about themselves: heartbeats, status messages, MQTT wills, availability
CREATE TABLE device_events (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL,
    ts          TEXT NOT NULL,
    kind        TEXT NOT NULL,             -- DeviceStatus.source: heartbeat | status | will | availability
    online      INTEGER CHECK (online IN (0, 1)),
    detail      TEXT NOT NULL DEFAULT '{}',  -- JSON
    raw         BLOB NOT NULL DEFAULT x'',
    received_at TEXT
);
CREATE INDEX device_events_device_ts ON device_events (device_id, ts);

-- a source said the alarm is over (Frigate end, Dahua Stop, ONVIF false, Zigbee smoke: false)
ALTER TABLE alarms ADD COLUMN ended_at TEXT;

-- replaying dead letters: how often, the last outcome, and when one was accepted
ALTER TABLE dead_letters ADD COLUMN replayed_at TEXT;
ALTER TABLE dead_letters ADD COLUMN replay_result TEXT;
ALTER TABLE dead_letters ADD COLUMN replays INTEGER NOT NULL DEFAULT 0;
CREATE INDEX dead_letters_reason ON dead_letters (reason, id);

-- readings: one numeric sample per (device, metric, time); a redelivered sample is stored once.
-- ts: the same fixed-width UTC text as every other time column, so text order is time order.
CREATE TABLE readings (
    device_id TEXT NOT NULL,
    ts        TEXT NOT NULL,
    metric    TEXT NOT NULL,
    value     REAL NOT NULL,
    unit      TEXT,
    PRIMARY KEY (device_id, metric, ts)
) WITHOUT ROWID;
