-- gridwatch schema 3 (SQLite): the command-center workflow's fields of an incident (design §6):
-- owning level and escalation, 督办, 五色 difficulty, 三事分流 track, correlation confidence, handling
-- unit, the running SLA stage clock, milestone times (for evaluation), self-handled reports, the last
-- published light, and details (photos, reporter, Open311 fields, storm summary).
ALTER TABLE incidents ADD COLUMN escalation_level INTEGER NOT NULL DEFAULT 3 CHECK (escalation_level BETWEEN 1 AND 3);
ALTER TABLE incidents ADD COLUMN supervised INTEGER NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN difficulty TEXT;
ALTER TABLE incidents ADD COLUMN matter_track TEXT;
ALTER TABLE incidents ADD COLUMN confidence REAL NOT NULL DEFAULT 1.0;
ALTER TABLE incidents ADD COLUMN unit TEXT;
ALTER TABLE incidents ADD COLUMN stage TEXT;
ALTER TABLE incidents ADD COLUMN stage_started_at TEXT;
ALTER TABLE incidents ADD COLUMN paused_at TEXT;
ALTER TABLE incidents ADD COLUMN reminded_at TEXT;
ALTER TABLE incidents ADD COLUMN escalated_at TEXT;
ALTER TABLE incidents ADD COLUMN acknowledged_at TEXT;
ALTER TABLE incidents ADD COLUMN arrived_at TEXT;
ALTER TABLE incidents ADD COLUMN resolved_at TEXT;
ALTER TABLE incidents ADD COLUMN closed_at TEXT;
ALTER TABLE incidents ADD COLUMN self_handled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN light TEXT;
ALTER TABLE incidents ADD COLUMN details TEXT NOT NULL DEFAULT '{}';
-- the SLA scheduler scans open incidents whose clock runs
CREATE INDEX incidents_open_deadline ON incidents (deadline) WHERE state NOT IN ('closed', 'called_back', 'archived', 'cancelled');
CREATE INDEX incidents_assignee_created ON incidents (assignee, created_at);

-- rosters: backups (level-3 grids a patroller covers when the assigned ones have nobody on duty)
-- and dated exceptions to the weekly pattern (JSON [{"date": "2026-12-01", "on": false} | {"date", "on": true, "start", "end"}])
ALTER TABLE patrollers ADD COLUMN backup_grid_codes TEXT NOT NULL DEFAULT '[]';
ALTER TABLE patrollers ADD COLUMN roster_exceptions TEXT NOT NULL DEFAULT '[]';

-- maintenance windows: alarms of a grid or building inside a window are stored but open no incident
CREATE TABLE maintenance_windows (
    id          INTEGER PRIMARY KEY,
    grid_code   TEXT,
    building    TEXT,
    starts_at   TEXT NOT NULL,
    ends_at     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    CHECK (grid_code IS NOT NULL OR building IS NOT NULL),
    CHECK (ends_at > starts_at)
);
CREATE INDEX maintenance_windows_ends ON maintenance_windows (ends_at);

-- GPS tracks of patrollers (evaluation: patrol coverage)
CREATE TABLE patroller_track (
    patroller_id TEXT NOT NULL,
    ts           TEXT NOT NULL,
    lon          REAL NOT NULL,
    lat          REAL NOT NULL,
    acc          REAL,
    PRIMARY KEY (patroller_id, ts)
);
CREATE INDEX patroller_track_ts ON patroller_track (ts);
