"""The SQLite unit of work (the ingest path's writes) and the row codecs shared with store.sqlite.

Datetimes are stored as fixed-width UTC ISO text (`ts_text`), so that text order is time order and
`>=` comparisons in SQL are time comparisons.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

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

INCIDENT_SELECT = f"SELECT {', '.join(codec.INCIDENT_COLUMNS)} FROM incidents"
ALARM_SELECT = f"SELECT {', '.join(codec.ALARM_COLUMNS)} FROM alarms"
OPEN_STATE_NAMES = sorted(str(s) for s in OPEN_STATES)
INCIDENT_TIMES = ("first_alarm_at", "last_alarm_at", "dispatched_at", "deadline", "created_at", "updated_at",
                  *codec.INCIDENT_WORKFLOW_TIMES)


def ts_text(value: datetime, field: str = "datetime") -> str:
    """Fixed-width UTC ISO text, so that text order is time order."""
    return codec.to_utc(value, field).isoformat(timespec="microseconds")


def opt_ts_text(value: datetime | None, field: str = "datetime") -> str | None:
    """ts_text for an optional value."""
    return None if value is None else ts_text(value, field)


def from_ts_text(text: str) -> datetime:
    """Inverse of ts_text."""
    return datetime.fromisoformat(text)


def opt_from_ts_text(text: str | None) -> datetime | None:
    """from_ts_text for an optional value."""
    return None if text is None else datetime.fromisoformat(text)


def to_json(value: Any) -> str:
    """Compact JSON text (UTF-8 kept as is)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class SqliteUnitOfWork:
    """store.ports.UnitOfWork inside one SQLite transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def lock_keys(self, keys: Sequence[tuple[str, str]]) -> None:
        """Nothing to do: BEGIN IMMEDIATE already serializes every writer of the database."""
        del keys

    def prefetch_open_incidents(self, keys: Sequence[tuple[str, str]], since: datetime) -> None:
        """Nothing to gain in-process: `open_incidents_for` runs its query when called."""
        del keys, since

    def known_alarm_keys(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Return which (device_id, msg_id) keys are already stored."""
        wanted = codec.key_map(keys)
        if not wanted:
            return set()
        # CROSS JOIN keeps the key list as the outer loop: one unique-index probe per key
        rows = self._conn.execute(
            "SELECT a.device_id, a.msg_id FROM json_each(?) AS k CROSS JOIN alarms AS a"
            " WHERE a.device_id = json_extract(k.value, '$[0]') AND a.msg_id = json_extract(k.value, '$[1]')",
            (to_json(list(wanted)),),
        ).fetchall()
        return {key for r in rows for key in wanted[(r[0], r[1])]}

    def add_alarms(self, alarms: Sequence[tuple[Alarm, str]]) -> int:
        """Store (alarm, incident_id) pairs; a key already stored is skipped. Return rows inserted."""
        if not alarms:
            return 0
        columns = codec.ALARM_COLUMNS
        text, js = codec.fast_text, codec.json_text
        # the order of codec.ALARM_COLUMNS; values as codec.alarm_values makes them, JSON serialized once
        rows = [
            (
                text(a.device_id), text(a.msg_id), ts_text(a.ts, "alarm.ts"), text(a.type), a.severity, a.lon, a.lat,
                text(a.zone), js(a.data) if a.data else "{}", bytes(a.raw), ts_text(a.received_at, "alarm.received_at"),
                text(incident_id), js(list(a.warnings)) if a.warnings else "[]",
            )
            for a, incident_id in alarms
        ]  # fmt: skip
        cur = self._conn.executemany(
            f"INSERT INTO alarms ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            " ON CONFLICT (device_id, msg_id) DO NOTHING",
            rows,
        )
        return max(0, cur.rowcount)

    def open_incidents_for(self, keys: Iterable[tuple[str, str]], since: datetime) -> dict[tuple[str, str], Incident]:
        """Newest (by created_at) open incident per (device_id, type) whose last alarm is at or after `since`."""
        wanted = codec.key_map(keys)
        if not wanted:
            return {}
        rows = self._conn.execute(
            f"SELECT {', '.join('i.' + c for c in codec.INCIDENT_COLUMNS)}"
            " FROM json_each(?) AS k CROSS JOIN incidents AS i"
            " WHERE i.device_id = json_extract(k.value, '$[0]') AND i.type = json_extract(k.value, '$[1]')"
            f" AND i.state IN ({', '.join('?' * len(OPEN_STATE_NAMES))}) AND i.last_alarm_at >= ?"
            " ORDER BY i.device_id, i.type, i.created_at DESC, i.id DESC",
            (to_json(list(wanted)), *OPEN_STATE_NAMES, ts_text(since, "since")),
        ).fetchall()
        found: dict[tuple[str, str], Incident] = {}
        for r in rows:
            for key in wanted[(r["device_id"], r["type"])]:
                if key not in found:  # rows come newest first per key
                    found[key] = incident_from_row(r)
        return found

    def open_incidents_near(self, points: Sequence[tuple[float, float]], radius_m: float, since: datetime) -> list[Incident]:
        """Open incidents (storms excluded) within `radius_m` of any point, last alarm at or after `since`."""
        if not points:
            return []
        x0, y0, x1, y1 = codec.near_bbox(points, radius_m)
        rows = self._conn.execute(
            f"{INCIDENT_SELECT} WHERE lon BETWEEN ? AND ? AND lat BETWEEN ? AND ? AND type <> 'storm'"
            f" AND state IN ({', '.join('?' * len(OPEN_STATE_NAMES))}) AND last_alarm_at >= ? ORDER BY created_at, id",
            (x0, x1, y0, y1, *OPEN_STATE_NAMES, ts_text(since, "since")),
        ).fetchall()
        return codec.within_radius([incident_from_row(r) for r in rows], points, radius_m)

    def recent_incident_counts(self, grids: Sequence[str], since: datetime) -> dict[str, int]:
        """Per level-3 grid: device incidents (storms excluded) created at or after `since`."""
        if not grids:
            return {}
        rows = self._conn.execute(
            "SELECT l3, count(*) FROM incidents WHERE l3 IN (SELECT value FROM json_each(?)) AND source = 'device'"
            " AND type <> 'storm' AND created_at >= ? GROUP BY l3",
            (to_json(sorted(set(grids))), ts_text(since, "since")),
        ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def open_storm_incidents(self, grids: Sequence[str]) -> dict[str, Incident]:
        """Per level-3 grid: its newest open storm incident."""
        if not grids:
            return {}
        rows = self._conn.execute(
            f"{INCIDENT_SELECT} WHERE l3 IN (SELECT value FROM json_each(?)) AND type = 'storm'"
            f" AND state IN ({', '.join('?' * len(OPEN_STATE_NAMES))}) ORDER BY created_at DESC, id DESC",
            (to_json(sorted(set(grids))), *OPEN_STATE_NAMES),
        ).fetchall()
        found: dict[str, Incident] = {}
        for r in rows:
            found.setdefault(r["l3"], incident_from_row(r))
        return found

    def get_incident(self, incident_id: str, *, for_update: bool = False) -> Incident | None:
        """Return one incident (the transaction already holds SQLite's write lock, so for_update needs nothing)."""
        del for_update  # BEGIN IMMEDIATE already serializes writers
        row = self._conn.execute(f"{INCIDENT_SELECT} WHERE id = ?", (incident_id,)).fetchone()
        return None if row is None else incident_from_row(row)

    def save_incidents(self, incidents: Sequence[Incident]) -> None:
        """Insert or update incidents (upsert by id; created_at is kept from the first save)."""
        if not incidents:
            return
        columns = codec.INCIDENT_COLUMNS
        text, js = codec.fast_text, codec.json_text
        rows = []
        for i in incidents:
            r = i.route
            # the order of codec.INCIDENT_COLUMNS; values as codec.incident_values makes them
            rows.append((
                text(i.id), text(i.type), text(str(i.state)), i.severity, text(i.source), text(i.device_id),
                js(r.to_dict()), text(r.l1), text(r.l2), text(r.l3), text(r.building), r.lon, r.lat, i.alarm_count,
                opt_ts_text(i.first_alarm_at, "incident.first_alarm_at"),
                opt_ts_text(i.last_alarm_at, "incident.last_alarm_at"), text(i.assignee),
                opt_ts_text(i.dispatched_at, "incident.dispatched_at"), opt_ts_text(i.deadline, "incident.deadline"),
                text(i.note), ts_text(i.created_at, "incident.created_at"), ts_text(i.updated_at, "incident.updated_at"),
                *codec.incident_workflow_row(i, opt_ts_text, js),
            ))  # fmt: skip
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in ("id", "created_at"))
        self._conn.executemany(
            f"INSERT INTO incidents ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            f" ON CONFLICT (id) DO UPDATE SET {updates}",
            rows,
        )

    def add_history(self, entries: Sequence[HistoryEntry]) -> None:
        """Append audit-log rows."""
        rows = []
        for entry in entries:
            v = codec.history_values(entry)
            rows.append(
                (v["incident_id"], ts_text(v["at"]), v["action"], v["from_state"], v["to_state"], v["actor"], v["note"])
            )
        self._conn.executemany(
            "INSERT INTO incident_history (incident_id, at, action, from_state, to_state, actor, note)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    def add_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Store dead letters with their reasons."""
        rows = []
        for letter in letters:
            v = codec.dead_letter_values(letter)
            rows.append((v["topic"], v["payload"], v["reason"], v["detail"], ts_text(v["received_at"])))
        self._conn.executemany(
            "INSERT INTO dead_letters (topic, payload, reason, detail, received_at) VALUES (?, ?, ?, ?, ?)", rows
        )

    def add_notifications(self, notifications: Sequence[Notification]) -> list[int]:
        """Write notifications to the outbox; return their ids."""
        now = ts_text(codec.now_utc())
        ids: list[int] = []
        texts: dict[int, str] = {}  # a payload shared by several notifications is serialized once
        execute = self._conn.execute
        for n in notifications:
            payload = texts.get(id(n.payload))
            if payload is None:
                payload = texts[id(n.payload)] = codec.json_text(dict(n.payload))
            cur = execute("INSERT INTO outbox (topic, payload, created_at) VALUES (?, ?, ?)",
                          (codec.fast_text(n.topic), payload, now))
            assert cur.lastrowid is not None
            ids.append(cur.lastrowid)
        return ids

    def set_positions(self, positions: Sequence[PatrollerPosition]) -> None:
        """Update last known positions (keep the newest by ts)."""
        now = ts_text(codec.now_utc())
        self._conn.executemany(
            "INSERT INTO patroller_positions (patroller_id, ts, lon, lat, acc, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (patroller_id) DO UPDATE SET ts = excluded.ts, lon = excluded.lon, lat = excluded.lat,"
            " acc = excluded.acc, updated_at = excluded.updated_at WHERE excluded.ts > patroller_positions.ts",
            [(p.patroller_id, ts_text(p.ts, "position.ts"), p.lon, p.lat, p.acc, now) for p in positions],
        )
        self._conn.executemany(  # the track (evaluation: patrol coverage); a repeated fix is stored once
            "INSERT INTO patroller_track (patroller_id, ts, lon, lat, acc) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [(p.patroller_id, ts_text(p.ts, "position.ts"), p.lon, p.lat, p.acc) for p in positions],
        )


    # --- publishing a grid version (store.sqlite_versions) ----------------------------------------
    def publish_version(self, version_id: int, *, at: datetime, actor: str, detail: dict[str, Any],
                        expected_current: int | None = None) -> GridVersion:
        """Make a draft the current version from `at`, with an audit row."""
        from store.sqlite_versions import publish_in

        return publish_in(self._conn, version_id, at=at, actor=actor, detail=detail, expected_current=expected_current)

    def move_devices(self, moves: Sequence[tuple[str, str]]) -> None:
        """Set devices' owner grids."""
        from store.sqlite_versions import move_devices_in

        move_devices_in(self._conn, moves)

    def set_patroller_grids(self, moves: Sequence[tuple[str, tuple[str, ...]]]) -> None:
        """Set patrollers' level-3 assignments."""
        from store.sqlite_versions import set_patroller_grids_in

        set_patroller_grids_in(self._conn, moves)

    # --- devices, readings, alarm ends, dead letters (store.sqlite_registry) -------------------------
    def touch_devices(self, seen: Mapping[str, datetime]) -> list[str]:
        """last_seen = max(stored, given), state 'online'; return the ids that were 'offline' (came back)."""
        from store.sqlite_registry import touch_devices_in

        return touch_devices_in(self._conn, seen)

    def lock_devices(self, device_ids: Iterable[str]) -> None:
        """Nothing to do: a SQLite write transaction already excludes every other writer."""

    def mark_offline(self, changes: Sequence[tuple[str, datetime, dict[str, Any], datetime | None]]) -> list[str]:
        """Set devices offline as of a basis time (see the port); return the ids set."""
        from store.sqlite_registry import mark_offline_in

        return mark_offline_in(self._conn, changes)

    def merge_device_detail(self, changes: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Merge top-level keys into devices' detail."""
        from store.sqlite_registry import merge_device_detail_in

        merge_device_detail_in(self._conn, changes)

    def set_device_states(self, changes: Sequence[tuple[str, str, datetime, dict[str, Any]]]) -> None:
        """Set (device_id, state, at, detail) in order, detail merged into the stored one."""
        from store.sqlite_registry import set_device_states_in

        set_device_states_in(self._conn, changes)

    def add_device_events(self, events: Sequence[DeviceStatus]) -> None:
        """Append device status events."""
        from store.sqlite_registry import add_device_events_in

        add_device_events_in(self._conn, events)

    def end_alarms(self, ends: Sequence[AlarmEnd]) -> int:
        """End stored alarms (by message id, else the newest not-ended one of a type); return rows changed."""
        from store.sqlite_registry import end_alarms_in

        return end_alarms_in(self._conn, ends)

    def add_readings(self, readings: Sequence[Reading]) -> int:
        """Store readings (INSERT OR IGNORE: a stored sample is skipped); return rows inserted."""
        from store.sqlite_registry import add_readings_in

        return add_readings_in(self._conn, readings)

    def mark_dead_letters(self, ids: Sequence[int], *, at: datetime, result: str, replayed: bool) -> int:
        """Record a replay attempt of dead letters not replayed yet; return rows changed."""
        from store.sqlite_registry import mark_dead_letters_in

        return mark_dead_letters_in(self._conn, ids, at=at, result=result, replayed=replayed)


def incident_from_row(row: sqlite3.Row) -> Incident:
    """Decode an `incidents` row selected with INCIDENT_SELECT."""
    v = dict(row)
    v["route"] = json.loads(v["route"])
    for c in INCIDENT_TIMES:
        v[c] = opt_from_ts_text(v[c])
    return codec.incident_from_values(v)


def alarm_from_row(row: sqlite3.Row) -> Alarm:
    """Decode an `alarms` row selected with ALARM_SELECT."""
    v = dict(row)
    v.update(ts=from_ts_text(v["ts"]), received_at=from_ts_text(v["received_at"]), data=json.loads(v["data"]))
    v["warnings"] = json.loads(v["warnings"])
    return codec.alarm_from_values(v)
