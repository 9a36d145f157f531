"""The PostgreSQL unit of work: the ingest path's writes inside one transaction.

Big writes (COPY_MIN_ROWS rows or more) go through COPY: alarms straight into their table inside a
savepoint (binary COPY; a key stored meanwhile, or repeated in the call, rolls the savepoint back
and takes the staging path: COPY into a temp table, then `INSERT … SELECT … ON CONFLICT (device_id,
msg_id) DO NOTHING`), incidents through a staging table and one upsert by id, history and outbox
rows straight into their tables (outbox ids drawn from its sequence first, so they come back in
order). The staging tables are `ON COMMIT DELETE ROWS` temp tables created once per pooled
connection (`create_staging_tables`; no catalog churn per batch, and the commit empties their
files, so they never bloat); the statement that reads one also empties it (`WITH s AS (DELETE …
RETURNING *)`), so a second write in the same transaction starts clean.

Small writes (a paced stream: a few alarms per batch) go as executemany in psycopg's pipeline mode,
and the ones whose result nobody waits for (advisory locks, incidents, history) are only queued:
they travel with the next statement that returns rows, or with the COMMIT. A small batch thus
costs about five round trips instead of a dozen. JSON columns are serialized once (codec.json_text).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack, suppress
from datetime import datetime
from typing import Any

import psycopg

from alerts.model import OPEN_STATES, HistoryEntry, Incident, Notification
from geo.model import GridVersion
from ingest.model import (
    Alarm,
    AlarmEnd,
    DeadLetter,
    DeviceStatus,
    PatrollerPosition,
    Reading,
)
from store import codec
from store.postgis_readings import READING_STAGE, Readings

Conn = psycopg.Connection[dict[str, Any]]
INCIDENT_SELECT = f"SELECT {', '.join(codec.INCIDENT_COLUMNS)} FROM incidents"
ALARM_SELECT = f"SELECT {', '.join(codec.ALARM_COLUMNS)} FROM alarms"
OPEN_STATE_NAMES = sorted(str(s) for s in OPEN_STATES)

# binary COPY (no text escaping of payload bytes, no timestamp parsing); JSON travels as text and
# is cast to jsonb by the INSERT
COPY_MIN_ROWS = 64
"""Writes of fewer rows go as one pipelined executemany (one round trip); bigger ones through COPY."""

_ALARM_STAGE = (
    b"CREATE TEMP TABLE IF NOT EXISTS alarm_stage (seq integer NOT NULL, device_id text, msg_id text,"
    b" ts timestamptz, type text, severity integer, lon double precision, lat double precision,"
    b" zone text, data text, raw bytea, received_at timestamptz, incident_id text, warnings text)"
    b" ON COMMIT DELETE ROWS"
)
_ALARM_COPY = f"COPY alarm_stage (seq, {', '.join(codec.ALARM_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_ALARM_COPY_TYPES = ("int4", "text", "text", "timestamptz", "text", "int4", "float8", "float8", "text", "text",
                     "bytea", "timestamptz", "text", "text")
_ALARM_COPY_DIRECT = f"COPY alarms ({', '.join(codec.ALARM_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_ALARM_DIRECT_TYPES = ("text", "text", "timestamptz", "text", "int4", "float8", "float8", "text", "bytea", "bytea",
                       "timestamptz", "text", "bytea")
"""Binary COPY types of codec.ALARM_COLUMNS; the jsonb columns go as raw bytes in jsonb's binary form (b"\\x01" + JSON)."""
_ALARM_INSERT = (
    f"WITH s AS (DELETE FROM alarm_stage RETURNING *)"
    f" INSERT INTO alarms ({', '.join(codec.ALARM_COLUMNS)})"
    f" SELECT {', '.join(c + '::jsonb' if c in ('data', 'warnings') else c for c in codec.ALARM_COLUMNS)} FROM s"
    " ORDER BY seq ON CONFLICT ON CONSTRAINT alarms_device_msg DO NOTHING"
)
_INCIDENT_STAGE = (
    b"CREATE TEMP TABLE IF NOT EXISTS incident_stage (seq integer NOT NULL, id text, type text, state text,"
    b" severity integer, source text, device_id text, route jsonb, l1 text, l2 text, l3 text, building text,"
    b" lon double precision, lat double precision, alarm_count integer, first_alarm_at timestamptz,"
    b" last_alarm_at timestamptz, assignee text, dispatched_at timestamptz, deadline timestamptz, note text,"
    b" created_at timestamptz, updated_at timestamptz, escalation_level integer, supervised boolean,"
    b" difficulty text, matter_track text, confidence double precision, unit text, stage text,"
    b" stage_started_at timestamptz, paused_at timestamptz, reminded_at timestamptz, escalated_at timestamptz,"
    b" acknowledged_at timestamptz, arrived_at timestamptz, resolved_at timestamptz, closed_at timestamptz,"
    b" self_handled boolean, light text, details jsonb) ON COMMIT DELETE ROWS"
)
_INCIDENT_COPY = f"COPY incident_stage (seq, {', '.join(codec.INCIDENT_COLUMNS)}) FROM STDIN"
_INCIDENT_UPSERT = (
    f"WITH s AS (DELETE FROM incident_stage RETURNING *)"
    f" INSERT INTO incidents ({', '.join(codec.INCIDENT_COLUMNS)})"
    f" SELECT DISTINCT ON (id) {', '.join(codec.INCIDENT_COLUMNS)} FROM s ORDER BY id, seq DESC"
    " ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in codec.INCIDENT_COLUMNS if c not in ("id", "created_at"))
)
_ALARM_INSERT_ROW = (
    f"INSERT INTO alarms ({', '.join(codec.ALARM_COLUMNS)})"
    f" VALUES ({', '.join('%s::jsonb' if c in ('data', 'warnings') else '%s' for c in codec.ALARM_COLUMNS)})"
    " ON CONFLICT ON CONSTRAINT alarms_device_msg DO NOTHING"
)
_INCIDENT_UPSERT_ROW = (
    f"INSERT INTO incidents ({', '.join(codec.INCIDENT_COLUMNS)})"
    f" VALUES ({', '.join('%s::jsonb' if c in ('route', 'details') else '%s' for c in codec.INCIDENT_COLUMNS)})"
    " ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in codec.INCIDENT_COLUMNS if c not in ("id", "created_at"))
)
_HISTORY_INSERT_ROW = (
    "INSERT INTO incident_history (incident_id, at, action, from_state, to_state, actor, note)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
)
_OUTBOX_INSERT_ROW = "INSERT INTO outbox (id, topic, payload) VALUES (%s, %s, %s::jsonb)"
_HISTORY_COPY = "COPY incident_history (incident_id, at, action, from_state, to_state, actor, note) FROM STDIN"
_OUTBOX_IDS = "SELECT nextval(pg_get_serial_sequence('outbox', 'id')) AS id FROM generate_series(1, %s) ORDER BY 1"


OUTBOX_ID_BLOCK = 1000
"""Outbox ids drawn from the sequence at a time (OutboxIds)."""


class OutboxIds:
    """Outbox ids drawn from the table's sequence in blocks and handed out in increasing order.

    With the ids known up front, an outbox insert needs no RETURNING: small ones are only queued and
    travel with the COMMIT (one round trip less per batch). nextval() is not transactional, so an id
    taken by a unit of work that rolls back is simply never used (a gap, as with a serial column).
    Shared by the store's connections (thread-safe); ids stay increasing within the process.
    """

    def __init__(self, block: int = OUTBOX_ID_BLOCK) -> None:
        self.block = block
        self._lock = threading.Lock()
        self._ids: list[int] = []  # drawn, not handed out yet (increasing)

    def take(self, conn: Conn, n: int) -> list[int]:
        """n unused outbox ids, increasing (and above every id this object handed out before)."""
        with self._lock:
            if len(self._ids) < n:
                rows = conn.execute(_OUTBOX_IDS, (max(n - len(self._ids), self.block),)).fetchall()
                self._ids.extend(int(r["id"]) for r in rows)
            ids, self._ids = self._ids[:n], self._ids[n:]
            return ids


# LATERAL … LIMIT 1 FOR UPDATE: the row stays locked until commit, so an operator's action on the same
# incident (which also locks it) cannot be overwritten by an ingest join, nor vice versa.
_OPEN_INCIDENTS = (
    f"SELECT {', '.join('i.' + c for c in codec.INCIDENT_COLUMNS)}"
    " FROM unnest(%s::text[], %s::text[]) AS k(device_id, type)"
    " CROSS JOIN LATERAL (SELECT * FROM incidents AS j"
    "  WHERE j.device_id = k.device_id AND j.type = k.type AND j.state = ANY(%s) AND j.last_alarm_at >= %s"
    "  ORDER BY j.created_at DESC, j.id DESC LIMIT 1 FOR UPDATE) AS i"
)


def _open_params(wanted: dict[tuple[str, str], Any], since: datetime) -> tuple[Any, ...]:
    return ([k[0] for k in wanted], [k[1] for k in wanted], OPEN_STATE_NAMES, since)


def create_staging_tables(conn: Conn) -> None:
    """Create the session's staging tables (the pool runs this once on every new connection)."""
    conn.execute(_ALARM_STAGE)
    conn.execute(_INCIDENT_STAGE)
    conn.execute(READING_STAGE)
    conn.commit()


class PostgisUnitOfWork:
    """store.ports.UnitOfWork inside one PostgreSQL transaction."""

    def __init__(self, conn: Conn, outbox_ids: OutboxIds | None = None, readings: Readings | None = None) -> None:
        self._conn = conn
        self._pipeline: ExitStack | None = None
        self._outbox_ids = outbox_ids
        self._readings = readings if readings is not None else Readings()  # no URL: partitions made in-transaction
        self._wrote_readings = False  # this transaction holds a lock on `readings` (see Readings.ensure_partitions)
        self._prefetched: tuple[list[tuple[str, str]], datetime, psycopg.Cursor[dict[str, Any]]] | None = None

    # Small writes whose result nobody waits for (incidents, history) are only queued in psycopg's
    # pipeline mode; they travel with the next statement that needs an answer (the outbox ids) or
    # with the COMMIT (`finish`), instead of one round trip each. COPY and reads leave pipeline mode.
    def _defer(self) -> None:
        if self._pipeline is None:
            stack = ExitStack()
            stack.enter_context(self._conn.pipeline())
            self._pipeline = stack

    # Reads may run in pipeline mode too: fetching their rows sends everything queued before them.
    def _sync(self) -> None:
        """Leave pipeline mode: send what is queued and raise its error, if any."""
        if self._pipeline is not None:
            stack, self._pipeline = self._pipeline, None
            stack.close()

    def finish(self) -> None:
        """Commit, in the same round trip as the writes still queued."""
        if self._pipeline is not None:
            self._conn.commit()
            self._sync()

    def abandon(self) -> None:
        """Leave pipeline mode after an error (the transaction is rolled back by the caller)."""
        if self._pipeline is not None:
            stack, self._pipeline = self._pipeline, None
            with suppress(Exception):
                stack.close()

    def lock_keys(self, keys: Sequence[tuple[str, str]]) -> None:
        """Take transaction-scoped advisory locks on the (device_id, type) keys, in hash order (no deadlocks).

        Two ingest workers sharing a subscription may get alarms of the same device: the second waits
        here until the first commits, then sees its alarms and incidents (no double incident, no lost count).
        Queued: it travels with the next read, which the server runs after it, with a fresh snapshot.
        """
        self._defer()
        names = sorted({f"{d}\x1f{t}" for d, t in keys})
        if names:
            self._conn.execute(
                "SELECT pg_advisory_xact_lock(h) FROM"
                " (SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest(%s::text[]) AS k ORDER BY 1) AS s",
                (names,),
            )

    def known_alarm_keys(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Return which (device_id, msg_id) keys are already stored."""
        wanted = codec.key_map(keys)
        if not wanted:
            return set()
        rows = self._conn.execute(
            "SELECT a.device_id, a.msg_id FROM unnest(%s::text[], %s::text[]) AS k(device_id, msg_id)"
            " JOIN alarms AS a ON a.device_id = k.device_id AND a.msg_id = k.msg_id",
            ([k[0] for k in wanted], [k[1] for k in wanted]),
        ).fetchall()
        return {key for r in rows for key in wanted[(r["device_id"], r["msg_id"])]}

    def add_alarms(self, alarms: Sequence[tuple[Alarm, str]]) -> int:
        """Store (alarm, incident_id) pairs through COPY; a key already stored is skipped. Return rows inserted."""
        self._sync()
        if not alarms:
            return 0
        text, to_utc, js = codec.fast_text, codec.to_utc, codec.json_text
        # the order of codec.ALARM_COLUMNS; values as codec.alarm_values makes them
        rows = [
            (
                text(a.device_id), text(a.msg_id), to_utc(a.ts, "alarm.ts"), text(a.type), a.severity, a.lon, a.lat,
                text(a.zone), js(a.data) if a.data else "{}", bytes(a.raw), to_utc(a.received_at, "alarm.received_at"),
                text(incident_id), js(list(a.warnings)) if a.warnings else "[]",
            )
            for a, incident_id in alarms
        ]  # fmt: skip
        with self._conn.cursor() as cur:
            if len(rows) < COPY_MIN_ROWS:  # one pipelined round trip, in order: the first copy of a key wins
                cur.executemany(_ALARM_INSERT_ROW, rows)
                return max(0, cur.rowcount)
            try:
                # the common case (the intake passes only keys it did not find, under its locks):
                # straight into alarms, inside a savepoint; a key stored meanwhile, or twice in this
                # batch, rolls the savepoint back and takes the staging path below
                with self._conn.transaction(), cur.copy(_ALARM_COPY_DIRECT) as copy:
                    copy.set_types(_ALARM_DIRECT_TYPES)
                    for r in rows:
                        copy.write_row((*r[:8], b"\x01" + r[8].encode(), r[9], r[10], r[11], b"\x01" + r[12].encode()))
                return len(rows)
            except psycopg.errors.UniqueViolation:
                pass
            with cur.copy(_ALARM_COPY) as copy:
                copy.set_types(_ALARM_COPY_TYPES)
                for seq, row in enumerate(rows):
                    copy.write_row((seq, *row))
            # ORDER BY seq: within one batch the first copy of a key wins, ids follow arrival order
            cur.execute(_ALARM_INSERT)
            return max(0, cur.rowcount)

    def prefetch_open_incidents(self, keys: Iterable[tuple[str, str]], since: datetime) -> None:
        """Queue `open_incidents_for(keys, since)` so that it travels with the next read (the known-key check).

        A later `open_incidents_for` with the same keys and `since` (the common case: no redelivered
        alarm in the batch) takes this result instead of another round trip; any other call runs its
        own query. The prefetch locks the same rows the real query would, after the same advisory locks.
        """
        wanted = codec.key_map(keys)
        if not wanted:
            return
        self._defer()
        utc = codec.to_utc(since, "since")
        self._prefetched = (list(wanted), utc, self._conn.execute(_OPEN_INCIDENTS, _open_params(wanted, utc)))

    def open_incidents_for(self, keys: Iterable[tuple[str, str]], since: datetime) -> dict[tuple[str, str], Incident]:
        """Newest (by created_at) open incident per (device_id, type) whose last alarm is at or after `since`."""
        self._sync()
        wanted = codec.key_map(keys)
        prefetched, self._prefetched = self._prefetched, None
        if not wanted:
            return {}
        utc = codec.to_utc(since, "since")
        if prefetched is not None and prefetched[0] == list(wanted) and prefetched[1] == utc:
            rows = prefetched[2].fetchall()
        else:
            rows = self._conn.execute(_OPEN_INCIDENTS, _open_params(wanted, utc)).fetchall()
        found: dict[tuple[str, str], Incident] = {}
        for r in rows:
            for key in wanted[(r["device_id"], r["type"])]:
                found[key] = codec.incident_from_values(r)
        return found

    def open_incidents_near(self, points: Sequence[tuple[float, float]], radius_m: float, since: datetime) -> list[Incident]:
        """Open incidents (storms excluded) within `radius_m` of any point, last alarm at or after `since`."""
        if not points:
            return []
        self._sync()
        x0, y0, x1, y1 = codec.near_bbox(points, radius_m)
        rows = self._conn.execute(
            f"{INCIDENT_SELECT} WHERE geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326) AND type <> 'storm'"
            " AND state = ANY(%s) AND last_alarm_at >= %s ORDER BY id FOR UPDATE",
            (x0, y0, x1, y1, OPEN_STATE_NAMES, codec.to_utc(since, "since")),
        ).fetchall()
        # locked (FOR UPDATE, in id order) like open_incidents_for: the intake saves the whole row, so an
        # operator action committed meanwhile must not be overwritten; sorted back to creation order
        found = sorted((codec.incident_from_values(r) for r in rows), key=lambda i: (i.created_at, i.id))
        return codec.within_radius(found, points, radius_m)

    def recent_incident_counts(self, grids: Sequence[str], since: datetime) -> dict[str, int]:
        """Per level-3 grid: device incidents (storms excluded) created at or after `since`."""
        if not grids:
            return {}
        self._sync()
        rows = self._conn.execute(
            "SELECT l3, count(*) AS n FROM incidents WHERE l3 = ANY(%s) AND source = 'device' AND type <> 'storm'"
            " AND created_at >= %s GROUP BY l3",
            (sorted(set(grids)), codec.to_utc(since, "since")),
        ).fetchall()
        return {r["l3"]: int(r["n"]) for r in rows}

    def open_storm_incidents(self, grids: Sequence[str]) -> dict[str, Incident]:
        """Per level-3 grid: its newest open storm incident."""
        if not grids:
            return {}
        self._sync()
        rows = self._conn.execute(
            f"{INCIDENT_SELECT} WHERE l3 = ANY(%s) AND type = 'storm' AND state = ANY(%s)"
            " ORDER BY created_at DESC, id DESC FOR UPDATE",
            (sorted(set(grids)), OPEN_STATE_NAMES),
        ).fetchall()
        found: dict[str, Incident] = {}
        for r in rows:
            found.setdefault(r["l3"], codec.incident_from_values(r))
        return found

    def get_incident(self, incident_id: str, *, for_update: bool = False) -> Incident | None:
        """Return one incident (locking its row until the end of the unit of work when `for_update`)."""
        self._sync()
        lock = " FOR UPDATE" if for_update else ""
        row = self._conn.execute(f"{INCIDENT_SELECT} WHERE id = %s{lock}", (incident_id,)).fetchone()
        return None if row is None else codec.incident_from_values(row)

    def save_incidents(self, incidents: Sequence[Incident]) -> None:
        """Insert or update incidents (upsert by id; created_at is kept from the first save; the last copy of an id wins)."""
        if not incidents:
            return
        text, to_utc, opt_utc, js = codec.fast_text, codec.to_utc, codec.opt_utc, codec.json_text
        rows = []
        for i in incidents:
            r = i.route
            # the order of codec.INCIDENT_COLUMNS; values as codec.incident_values makes them
            rows.append((
                text(i.id), text(i.type), text(str(i.state)), i.severity, text(i.source), text(i.device_id),
                js(r.to_dict()), text(r.l1), text(r.l2), text(r.l3), text(r.building), r.lon, r.lat,
                i.alarm_count, opt_utc(i.first_alarm_at, "incident.first_alarm_at"),
                opt_utc(i.last_alarm_at, "incident.last_alarm_at"), text(i.assignee),
                opt_utc(i.dispatched_at, "incident.dispatched_at"), opt_utc(i.deadline, "incident.deadline"),
                text(i.note), to_utc(i.created_at, "incident.created_at"), to_utc(i.updated_at, "incident.updated_at"),
                *codec.incident_workflow_row(i, opt_utc, js),
            ))  # fmt: skip
        if len(rows) < COPY_MIN_ROWS:  # queued; upserts in order, so the last copy wins
            self._defer()
            with self._conn.cursor() as cur:
                cur.executemany(_INCIDENT_UPSERT_ROW, rows)
            return
        self._sync()
        with self._conn.cursor() as cur:
            with cur.copy(_INCIDENT_COPY) as copy:
                for seq, row in enumerate(rows):
                    copy.write_row((seq, *row))
            cur.execute(_INCIDENT_UPSERT)

    def add_history(self, entries: Sequence[HistoryEntry]) -> None:
        """Append audit-log rows (ids in the order given)."""
        if not entries:
            return
        text, to_utc = codec.fast_text, codec.to_utc
        rows = [
            (
                text(e.incident_id), to_utc(e.at, "history.at"), text(e.action),
                None if e.from_state is None else text(str(e.from_state)), text(str(e.to_state)),
                text(e.actor), text(e.note),
            )
            for e in entries
        ]  # fmt: skip
        if len(rows) < COPY_MIN_ROWS:  # queued, in order
            self._defer()
            with self._conn.cursor() as cur:
                cur.executemany(_HISTORY_INSERT_ROW, rows)
            return
        self._sync()
        with self._conn.cursor() as cur, cur.copy(_HISTORY_COPY) as copy:
            for row in rows:
                copy.write_row(row)

    def add_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Store dead letters with their reasons."""
        self._sync()
        if not letters:
            return
        with self._conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO dead_letters (topic, payload, reason, detail, received_at)"
                " VALUES (%(topic)s, %(payload)s, %(reason)s, %(detail)s, %(received_at)s)",
                [codec.dead_letter_values(d) for d in letters],
            )

    def add_notifications(self, notifications: Sequence[Notification]) -> list[int]:
        """Write notifications to the outbox; return their ids (increasing, in the order given)."""
        if not notifications:
            return []
        texts: dict[int, str] = {}  # a payload shared by several notifications is serialized once
        rows = []
        for n in notifications:
            payload = texts.get(id(n.payload))
            if payload is None:
                payload = texts[id(n.payload)] = codec.json_text(n.payload)
            rows.append((codec.fast_text(n.topic), payload))
        # no round trip while the block lasts (drawing a new one also sends the writes queued so far)
        ids = (self._outbox_ids or OutboxIds(block=0)).take(self._conn, len(rows))
        if len(rows) < COPY_MIN_ROWS:  # queued: travels with the next read or with the COMMIT
            self._defer()
            with self._conn.cursor() as cur:
                cur.executemany(_OUTBOX_INSERT_ROW, [(row_id, *row) for row_id, row in zip(ids, rows, strict=True)])
            return ids
        self._sync()
        with self._conn.cursor() as cur:
            with cur.copy("COPY outbox (id, topic, payload) FROM STDIN") as copy:
                for row_id, row in zip(ids, rows, strict=True):
                    copy.write_row((row_id, *row))
        return ids

    # --- publishing a grid version (store.postgis_versions) ---------------------------------------
    def publish_version(self, version_id: int, *, at: datetime, actor: str, detail: dict[str, Any],
                        expected_current: int | None = None) -> GridVersion:
        """Make a draft the current version from `at`, with an audit row."""
        from store.postgis_versions import publish_in

        self._sync()
        return publish_in(self._conn, version_id, at=at, actor=actor, detail=detail, expected_current=expected_current)

    def move_devices(self, moves: Sequence[tuple[str, str]]) -> None:
        """Set devices' owner grids."""
        from store.postgis_versions import move_devices_in

        self._sync()
        move_devices_in(self._conn, moves)

    def set_patroller_grids(self, moves: Sequence[tuple[str, tuple[str, ...]]]) -> None:
        """Set patrollers' level-3 assignments."""
        from store.postgis_versions import set_patroller_grids_in

        self._sync()
        set_patroller_grids_in(self._conn, moves)

    def set_positions(self, positions: Sequence[PatrollerPosition]) -> None:
        """Update last known positions (keep the newest by ts)."""
        self._sync()
        if not positions:
            return
        with self._conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO patroller_positions (patroller_id, ts, lon, lat, acc, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, now())"
                " ON CONFLICT (patroller_id) DO UPDATE SET ts = EXCLUDED.ts, lon = EXCLUDED.lon, lat = EXCLUDED.lat,"
                " acc = EXCLUDED.acc, updated_at = EXCLUDED.updated_at WHERE EXCLUDED.ts > patroller_positions.ts",
                [(p.patroller_id, codec.to_utc(p.ts, "position.ts"), p.lon, p.lat, p.acc) for p in positions],
            )
            cur.executemany(  # the track (evaluation: patrol coverage); a repeated fix is stored once
                "INSERT INTO patroller_track (patroller_id, ts, lon, lat, acc) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                [(p.patroller_id, codec.to_utc(p.ts, "position.ts"), p.lon, p.lat, p.acc) for p in positions],
            )

    # --- devices, readings, alarm ends, dead letters (store.postgis_registry, store.postgis_readings) ---
    def touch_devices(self, seen: Mapping[str, datetime]) -> list[str]:
        """last_seen = max(stored, given), state 'online' (rows locked, one statement); return the ids that were offline."""
        from store.postgis_registry import touch_devices_in

        self._sync()
        return touch_devices_in(self._conn, seen)

    def lock_devices(self, device_ids: Iterable[str]) -> None:
        """Lock device rows until commit, in id order (every writer takes device rows first, in this order)."""
        from store.postgis_registry import LOCK_DEVICES

        ids = sorted({codec.fast_text(d) for d in device_ids})
        if ids:
            self._sync()
            self._conn.execute(LOCK_DEVICES, (ids,))

    def mark_offline(self, changes: Sequence[tuple[str, datetime, dict[str, Any], datetime | None]]) -> list[str]:
        """Set devices offline as of a basis time (see the port); return the ids set."""
        from store.postgis_registry import mark_offline_in

        self._sync()
        return mark_offline_in(self._conn, changes)

    def merge_device_detail(self, changes: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Merge top-level keys into devices' detail (queued)."""
        from store.postgis_registry import MERGE_DETAIL

        if changes:
            self._defer()
            with self._conn.cursor() as cur:
                cur.executemany(MERGE_DETAIL, [{"id": d, "detail": codec.json_text(dict(v))} for d, v in changes])

    def set_device_states(self, changes: Sequence[tuple[str, str, datetime, dict[str, Any]]]) -> None:
        """Set (device_id, state, at, detail) in order, detail merged into the stored one (queued)."""
        from store.postgis_registry import SET_STATE, state_changes

        params = state_changes(changes)
        if params:
            self._defer()
            with self._conn.cursor() as cur:
                cur.executemany(SET_STATE, params)

    def add_device_events(self, events: Sequence[DeviceStatus]) -> None:
        """Append device status events (queued when few, COPY when many)."""
        from store.postgis_registry import (
            EVENT_COPY,
            EVENT_INSERT,
            EVENTS_COPY_MIN_ROWS,
            event_rows,
        )

        rows = event_rows(events)
        if not rows:
            return
        if len(rows) < EVENTS_COPY_MIN_ROWS:
            self._defer()
            with self._conn.cursor() as cur:
                cur.executemany(EVENT_INSERT, rows)
            return
        self._sync()
        with self._conn.cursor() as cur, cur.copy(EVENT_COPY) as copy:
            for row in rows:
                copy.write_row(row)

    def end_alarms(self, ends: Sequence[AlarmEnd]) -> int:
        """End stored alarms (by message id, else the newest not-ended one of a type); return rows changed."""
        from store.postgis_registry import end_runs

        self._sync()
        changed = 0
        with self._conn.cursor() as cur:
            for query, params in end_runs(ends):
                cur.executemany(query, params)
                changed += max(0, cur.rowcount)
        return changed

    def add_readings(self, readings: Sequence[Reading]) -> int:
        """Store readings (a stored sample is skipped); return rows inserted. See store.postgis_readings."""
        self._sync()
        if not readings:
            return 0
        inserted = self._readings.insert(self._conn, readings, touched=self._wrote_readings)
        self._wrote_readings = True
        return inserted

    def mark_dead_letters(self, ids: Sequence[int], *, at: datetime, result: str, replayed: bool) -> int:
        """Record a replay attempt of dead letters not replayed yet; return rows changed."""
        from store.postgis_registry import mark_dead_letters_in

        self._sync()
        return mark_dead_letters_in(self._conn, ids, at=at, result=result, replayed=replayed)
