"""The PostgreSQL unit of work: the ingest path's writes inside one transaction.

add_alarms goes through COPY into a session-local staging table, then one
`INSERT … SELECT … ON CONFLICT (device_id, msg_id) DO NOTHING`; the other writes use executemany
(pipelined by psycopg). The staging table is an `ON COMMIT DELETE ROWS` temp table kept per pooled
connection, so a busy ingest path does not create and drop catalog entries for every batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from alerts.model import OPEN_STATES, HistoryEntry, Incident, Notification
from ingest.model import Alarm, DeadLetter, PatrollerPosition
from store import codec

Conn = psycopg.Connection[dict[str, Any]]
INCIDENT_SELECT = f"SELECT {', '.join(codec.INCIDENT_COLUMNS)} FROM incidents"
ALARM_SELECT = f"SELECT {', '.join(codec.ALARM_COLUMNS)} FROM alarms"
OPEN_STATE_NAMES = sorted(str(s) for s in OPEN_STATES)


class PostgisUnitOfWork:
    """store.ports.UnitOfWork inside one PostgreSQL transaction."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    def lock_keys(self, keys: Sequence[tuple[str, str]]) -> None:
        """Take transaction-scoped advisory locks on the (device_id, type) keys, in hash order (no deadlocks).

        Two ingest workers sharing a subscription may get alarms of the same device: the second waits
        here until the first commits, then sees its alarms and incidents (no double incident, no lost count).
        """
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
        if not alarms:
            return 0
        columns = codec.ALARM_COLUMNS
        with self._conn.cursor() as cur:
            cur.execute(
                b"CREATE TEMP TABLE IF NOT EXISTS alarm_stage (seq integer NOT NULL, device_id text, msg_id text,"
                b" ts timestamptz, type text, severity integer, lon double precision, lat double precision,"
                b" zone text, data jsonb, raw bytea, received_at timestamptz, incident_id text, warnings jsonb)"
                b" ON COMMIT DELETE ROWS; TRUNCATE alarm_stage"
            )
            with cur.copy(f"COPY alarm_stage (seq, {', '.join(columns)}) FROM STDIN") as copy:
                for seq, (alarm, incident_id) in enumerate(alarms):
                    v = codec.alarm_values(alarm, incident_id)
                    v["data"] = json.dumps(v["data"], ensure_ascii=False)
                    v["warnings"] = json.dumps(v["warnings"], ensure_ascii=False)
                    copy.write_row((seq, *(v[c] for c in columns)))
            # ORDER BY seq: within one batch the first copy of a key wins, ids follow arrival order
            cur.execute(
                f"INSERT INTO alarms ({', '.join(columns)}) SELECT {', '.join(columns)} FROM alarm_stage"
                " ORDER BY seq ON CONFLICT ON CONSTRAINT alarms_device_msg DO NOTHING"
            )
            return max(0, cur.rowcount)

    def open_incidents_for(self, keys: Iterable[tuple[str, str]], since: datetime) -> dict[tuple[str, str], Incident]:
        """Newest (by created_at) open incident per (device_id, type) whose last alarm is at or after `since`."""
        wanted = codec.key_map(keys)
        if not wanted:
            return {}
        rows = self._conn.execute(
            # LATERAL … LIMIT 1 FOR UPDATE: the row stays locked until commit, so an operator's action
            # on the same incident (which also locks it) cannot be overwritten by this join, nor vice versa.
            f"SELECT {', '.join('i.' + c for c in codec.INCIDENT_COLUMNS)}"
            " FROM unnest(%s::text[], %s::text[]) AS k(device_id, type)"
            " CROSS JOIN LATERAL (SELECT * FROM incidents AS j"
            "  WHERE j.device_id = k.device_id AND j.type = k.type AND j.state = ANY(%s) AND j.last_alarm_at >= %s"
            "  ORDER BY j.created_at DESC, j.id DESC LIMIT 1 FOR UPDATE) AS i",
            ([k[0] for k in wanted], [k[1] for k in wanted], OPEN_STATE_NAMES, codec.to_utc(since, "since")),
        ).fetchall()
        found: dict[tuple[str, str], Incident] = {}
        for r in rows:
            for key in wanted[(r["device_id"], r["type"])]:
                found[key] = codec.incident_from_values(r)
        return found

    def get_incident(self, incident_id: str, *, for_update: bool = False) -> Incident | None:
        """Return one incident (locking its row until the end of the unit of work when `for_update`)."""
        lock = " FOR UPDATE" if for_update else ""
        row = self._conn.execute(f"{INCIDENT_SELECT} WHERE id = %s{lock}", (incident_id,)).fetchone()
        return None if row is None else codec.incident_from_values(row)

    def save_incidents(self, incidents: Sequence[Incident]) -> None:
        """Insert or update incidents (upsert by id; created_at is kept from the first save)."""
        if not incidents:
            return
        columns = codec.INCIDENT_COLUMNS
        rows = []
        for incident in incidents:
            v = codec.incident_values(incident)
            v["route"] = Jsonb(v["route"])
            rows.append(v)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in ("id", "created_at"))
        with self._conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO incidents ({', '.join(columns)}) VALUES ({', '.join(f'%({c})s' for c in columns)})"
                f" ON CONFLICT (id) DO UPDATE SET {updates}",
                rows,
            )

    def add_history(self, entries: Sequence[HistoryEntry]) -> None:
        """Append audit-log rows."""
        if not entries:
            return
        with self._conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO incident_history (incident_id, at, action, from_state, to_state, actor, note)"
                " VALUES (%(incident_id)s, %(at)s, %(action)s, %(from_state)s, %(to_state)s, %(actor)s, %(note)s)",
                [codec.history_values(e) for e in entries],
            )

    def add_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Store dead letters with their reasons."""
        if not letters:
            return
        with self._conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO dead_letters (topic, payload, reason, detail, received_at)"
                " VALUES (%(topic)s, %(payload)s, %(reason)s, %(detail)s, %(received_at)s)",
                [codec.dead_letter_values(d) for d in letters],
            )

    def add_notifications(self, notifications: Sequence[Notification]) -> list[int]:
        """Write notifications to the outbox; return their ids."""
        if not notifications:
            return []
        ids: list[int] = []
        with self._conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO outbox (topic, payload) VALUES (%s, %s) RETURNING id",
                [
                    (v["topic"], Jsonb(v["payload"]))
                    for v in (codec.notification_values(n.topic, n.payload) for n in notifications)
                ],
                returning=True,
            )
            while True:
                row = cur.fetchone()
                assert row is not None
                ids.append(int(row["id"]))
                if not cur.nextset():
                    break
        return ids

    def set_positions(self, positions: Sequence[PatrollerPosition]) -> None:
        """Update last known positions (keep the newest by ts)."""
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
