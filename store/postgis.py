"""The production backend: PostgreSQL + PostGIS through psycopg 3 and a connection pool.

Bulk writes go through COPY: load_district copies grids and buildings straight into their tables
and devices/patrollers into session-local staging tables, then upserts them with one
`INSERT … SELECT … ON CONFLICT`; add_alarms does the same (store.postgis_uow). Staging tables are
`ON COMMIT DELETE ROWS` temp tables kept per pooled connection. All driver errors leave as
store.errors (ConflictError for unique violations, serialization failures and deadlocks).

Devices, device events, alarm ends and dead-letter replays live in store.postgis_registry; readings
(TimescaleDB hypertable or monthly partitions, chosen by the `timescale` setting and the server) in
store.postgis_readings.
"""

from __future__ import annotations

import json
import logging
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool
from shapely.geometry import Point

from alerts.maintenance import MaintenanceWindow
from alerts.model import HistoryEntry, Incident, Notification
from geo.model import (
    Building,
    District,
    Grid,
    GridVersion,
    Patroller,
    RosterException,
    Shift,
)
from ingest.model import Alarm
from store import codec
from store.errors import ConflictError, StoreError
from store.migrate import load_migrations, pending
from store.ports import IncidentQuery, IncidentRecord, Position, StoredWindow
from store.postgis_readings import Readings
from store.postgis_registry import PostgisRegistry, upsert_devices_in
from store.postgis_uow import (
    ALARM_SELECT,
    INCIDENT_SELECT,
    OPEN_STATE_NAMES,
    Conn,
    OutboxIds,
    PostgisUnitOfWork,
    create_staging_tables,
)
from store.postgis_versions import (
    VERSION_SELECT,
    PostgisVersions,
    audit_in,
    insert_grid_rows,
    insert_version,
    publish_in,
    version_from_row,
)

logger = logging.getLogger(__name__)

#: pg_advisory_xact_lock keys: serialize migrations and district loads across processes
_MIGRATE_LOCK = 0x6772_6964_0001
_LOAD_LOCK = 0x6772_6964_0002

_HISTORY_SELECT = "SELECT incident_id, at, action, from_state, to_state, actor, note FROM incident_history"
_CURRENT = "(SELECT id FROM grid_versions WHERE is_current)"


def redact(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


@contextmanager
def _translated(url: str) -> Iterator[None]:
    """Turn psycopg errors into store errors (callers never import psycopg)."""
    try:
        yield
    except (psycopg.errors.UniqueViolation, psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected) as e:
        raise ConflictError(f"{redact(url)}: {type(e).__name__}: {e}") from e
    except psycopg.Error as e:
        raise StoreError(f"{redact(url)}: {type(e).__name__}: {e}") from e


CHECK_AFTER_IDLE_S = 1.0
"""A pooled connection is checked (one round trip) when handed out after resting this long."""
_checked_at: weakref.WeakKeyDictionary[Conn, float] = weakref.WeakKeyDictionary()


def _check_if_rested(conn: Conn) -> None:
    """Pool check: test a connection that was not used for a while, not one that just finished a transaction.

    A busy ingest worker takes a connection for every batch; testing it each time would add a round
    trip per batch. A connection that broke since its last use makes that batch fail, and the worker
    retries it (unacked) on a fresh one.
    """
    now = time.monotonic()
    if now - _checked_at.get(conn, -CHECK_AFTER_IDLE_S) >= CHECK_AFTER_IDLE_S:
        ConnectionPool.check_connection(conn)
    _checked_at[conn] = now


class PostgisStore(PostgisRegistry, PostgisVersions):
    """store.ports.Store on PostgreSQL + PostGIS."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 30.0,
                 timescale: str = "auto") -> None:
        self.url = url
        self._outbox_ids = OutboxIds()
        # readings: TimescaleDB hypertable or monthly partitions (store.postgis_readings); "off": never TimescaleDB
        self._readings = Readings(url, timescale=timescale)
        self.pool: ConnectionPool[Conn] = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            kwargs={"row_factory": dict_row},
            check=_check_if_rested,
            configure=create_staging_tables,
            name="gridwatch",
            open=False,
        )
        with _translated(url):
            self.pool.open()
            try:
                self.pool.wait(timeout=timeout)
            except BaseException:
                self.pool.close()
                raise

    @classmethod
    def from_url(cls, url: str, *, timescale: str = "auto") -> PostgisStore:
        """Open a pool on `postgresql://user:password@host:port/dbname` (timescale: "auto" | "off")."""
        return cls(url, timescale=timescale)

    @property
    def readings_mode(self) -> str:
        """How readings are stored: "timescaledb" or "partitioned" (see store.postgis_readings)."""
        with self._connection() as conn:
            return self._readings.mode(conn)[0]

    @contextmanager
    def _connection(self) -> Iterator[Conn]:
        """A pooled connection in a transaction: committed on leaving, rolled back on an exception."""
        with _translated(self.url), self.pool.connection() as conn:
            yield conn

    def _query(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with self._connection() as conn:
            return conn.execute(sql, params).fetchall()

    def migrate(self) -> list[str]:
        """Apply pending schema migrations; return the names applied."""
        migrations = load_migrations("postgres")
        applied: list[str] = []
        with self._connection() as conn:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations"
                    " (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                done = {r["version"] for r in conn.execute("SELECT version FROM schema_migrations")}
            for migration in pending(migrations, done):
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
                    # re-check under the lock: another process may have just applied it
                    if conn.execute(
                        "SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,)
                    ).fetchone():
                        continue
                    conn.execute(migration.sql.encode())  # several statements, no parameters
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                logger.info("%s: applied migration %s", redact(self.url), migration.name)
                applied.append(migration.name)
        with _translated(self.url):  # not a numbered migration: its DDL depends on the server (TimescaleDB or not)
            self._readings.migrate(self.pool)
        return applied

    def close(self) -> None:
        """Close the pool."""
        self.pool.close()

    def __enter__(self) -> PostgisStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def unit_of_work(self) -> Iterator[PostgisUnitOfWork]:
        """Open a transaction on a pooled connection: commit on leaving the block, roll back on an exception."""
        with self._connection() as conn:
            uow = PostgisUnitOfWork(conn, self._outbox_ids, self._readings)
            try:
                yield uow
            except BaseException:
                uow.abandon()
                raise
            uow.finish()

    # --- grid versions and what they place -------------------------------------------------------
    def load_district(self, district: District, label: str, *, at: datetime | None = None) -> GridVersion:
        """Store a district as a new current grid version valid from `at` (default now; idempotent by label:
        returns the existing one)."""
        with self._connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOAD_LOCK,))
            row = cur.execute(f"{VERSION_SELECT} WHERE label = %s", (label,)).fetchone()
            if row is not None:
                logger.info("grid version %r exists (id %s), not loaded again", label, row["id"])
                return version_from_row(row)
            now = codec.to_utc(at, "at") if at is not None else codec.now_utc()
            version_id = insert_version(conn, label, at=now, source=district.name, crs="EPSG:4326", actor="seed")
            insert_grid_rows(conn, version_id, district.grids, district.buildings)
            audit_in(conn, version_id, at=now, actor="seed", action="import",
                     detail={"source": district.name, "grids": len(district.grids), "buildings": len(district.buildings)})
            upsert_devices_in(conn, district.devices, at=now)
            _upsert_patrollers(cur, district.patrollers)
            version = publish_in(conn, version_id, at=now, actor="seed", detail={"seed": label})
        logger.info(
            "loaded %s as grid version %s (%d grids, %d buildings, %d devices, %d patrollers)",
            label,
            version_id,
            len(district.grids),
            len(district.buildings),
            len(district.devices),
            len(district.patrollers),
        )
        return version

    def current_version(self) -> GridVersion | None:
        """Return the current grid version."""
        rows = self._query(f"{VERSION_SELECT} WHERE is_current")
        return version_from_row(rows[0]) if rows else None

    def grids(self, *, level: int | None = None, version: int | None = None) -> list[Grid]:
        """Grids of a version (default current), optionally of one level, ordered by code."""
        rows = self._query(
            "SELECT code, level, name, parent_code, ST_AsBinary(geom) AS wkb FROM grids"
            f" WHERE version_id = coalesce(%(version)s::bigint, {_CURRENT})"
            " AND (%(level)s::integer IS NULL OR level = %(level)s) ORDER BY code",
            {"version": version, "level": level},
        )
        return codec.grids_from_rows(rows, "wkb")

    def grid(self, code: str, *, version: int | None = None) -> Grid | None:
        """One grid by code."""
        rows = self._query(
            "SELECT code, level, name, parent_code, ST_AsBinary(geom) AS wkb FROM grids"
            f" WHERE version_id = coalesce(%(version)s::bigint, {_CURRENT}) AND code = %(code)s",
            {"version": version, "code": code},
        )
        return _grid(rows[0]) if rows else None

    def buildings(self, *, version: int | None = None) -> list[Building]:
        """Buildings of a version (default current), ordered by code."""
        rows = self._query(
            "SELECT code, grid_code, name, ST_AsBinary(geom) AS wkb FROM buildings"
            f" WHERE version_id = coalesce(%s::bigint, {_CURRENT}) ORDER BY code",
            (version,),
        )
        return [Building(r["code"], r["grid_code"], r["name"], codec.from_wkb(r["wkb"])) for r in rows]

    def patrollers(self) -> list[Patroller]:
        """Patrollers with assignments and shifts, ordered by id."""
        rows = self._query(
            "SELECT id, name, phone, grid_codes, shifts, ST_X(home) AS home_lon, ST_Y(home) AS home_lat,"
            " backup_grid_codes, roster_exceptions FROM patrollers ORDER BY id"
        )
        return [
            Patroller(
                id=r["id"],
                name=r["name"],
                phone=r["phone"],
                grid_codes=tuple(r["grid_codes"]),
                shifts=codec.shifts_from_json(r["shifts"]),
                home=None if r["home_lon"] is None else (r["home_lon"], r["home_lat"]),
                exceptions=tuple(RosterException.from_dict(e) for e in r["roster_exceptions"]),
                backup_grid_codes=tuple(r["backup_grid_codes"]),
            )
            for r in rows
        ]

    def set_roster(self, patroller_id: str, *, shifts: Sequence[Shift], exceptions: Sequence[RosterException],
                   backup_grid_codes: Sequence[str]) -> bool:
        """Replace a patroller's weekly shifts, dated exceptions and backup grids; False if no such patroller."""
        rows = self._query(
            "UPDATE patrollers SET shifts = %s::jsonb, roster_exceptions = %s::jsonb, backup_grid_codes = %s WHERE id = %s"
            " RETURNING id",
            (json.dumps(codec.shifts_to_json(tuple(shifts))), json.dumps([e.to_dict() for e in exceptions]),
             list(backup_grid_codes), patroller_id),
        )
        return bool(rows)

    def positions(self) -> dict[str, Position]:
        """Last known positions by patroller id."""
        rows = self._query("SELECT patroller_id, ts, lon, lat, acc FROM patroller_positions")
        return {
            r["patroller_id"]: Position(r["patroller_id"], codec.to_utc(r["ts"]), r["lon"], r["lat"], r["acc"])
            for r in rows
        }

    # --- incidents -----------------------------------------------------------------------------------
    def incidents(self, query: IncidentQuery) -> list[Incident]:
        """Incidents matching the query, newest (by created_at) first; `since` compares with updated_at."""
        clauses: list[str] = []
        params: list[Any] = []
        if query.states:
            clauses.append("state = ANY(%s)")
            params.append([str(s) for s in query.states])
        if query.grid_prefix is not None:
            clauses.append("l3 LIKE %s")
            params.append(_like_prefix(query.grid_prefix))
        if query.assignees:
            clauses.append("assignee = ANY(%s)")
            params.append(list(query.assignees))
        if query.patroller_scope is not None:
            clauses.append("(assignee = %s OR l3 = ANY(%s))")
            params.extend((query.patroller_scope[0], list(query.patroller_scope[1])))
        if query.grid is not None:
            clauses.append("(l3 = %s OR l2 = %s OR l1 = %s)")
            params.extend((query.grid, query.grid, query.grid))
        if query.bbox is not None:
            clauses.append("geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326)")
            params.extend(float(c) for c in query.bbox)
        if query.since is not None:
            clauses.append("updated_at >= %s")
            params.append(codec.to_utc(query.since, "query.since"))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(max(0, query.limit))
        rows = self._query(f"{INCIDENT_SELECT}{where} ORDER BY created_at DESC, id DESC LIMIT %s", params)
        return [codec.incident_from_values(r) for r in rows]

    def sla_candidates(self, now: datetime, *, yellow_at: float, working_prefixes: Sequence[str],
                       limit: int = 100_000) -> list[Incident]:
        """Open incidents whose light may change at `now` (see store.ports)."""
        rows = self._query(
            f"{INCIDENT_SELECT} WHERE state = ANY(%(open)s) AND ("
            " (deadline IS NULL AND light IS NOT NULL) OR light IN ('yellow', 'red')"
            " OR (deadline IS NOT NULL AND (stage_started_at IS NULL"
            "     OR deadline - (deadline - stage_started_at) * %(rest)s <= %(now)s))"
            " OR (deadline IS NOT NULL AND type ^@ ANY(%(working)s::text[])))"
            " ORDER BY deadline LIMIT %(limit)s",
            {"open": OPEN_STATE_NAMES, "rest": 1.0 - yellow_at, "now": codec.to_utc(now, "now"),
             "working": list(working_prefixes), "limit": limit},
        )
        return [codec.incident_from_values(r) for r in rows]

    def incident(self, incident_id: str) -> Incident | None:
        """One incident."""
        rows = self._query(f"{INCIDENT_SELECT} WHERE id = %s", (incident_id,))
        return codec.incident_from_values(rows[0]) if rows else None

    def history(self, incident_id: str) -> list[HistoryEntry]:
        """An incident's audit log, oldest first."""
        rows = self._query(f"{_HISTORY_SELECT} WHERE incident_id = %s ORDER BY at, id", (incident_id,))
        return [codec.history_from_values(r) for r in rows]

    def incidents_mark(self) -> tuple[Any, ...]:
        """The newest updated_at and the open count (one statement; see store.ports)."""
        row = self._query("SELECT (SELECT max(updated_at) FROM incidents) AS newest, (SELECT count(*) FROM incidents"
                          " WHERE state NOT IN ('closed', 'called_back', 'archived', 'cancelled')) AS n_open")[0]
        return row["newest"], row["n_open"]

    def incident_record(self, incident_id: str) -> IncidentRecord | None:
        """One incident with its alarms and history, read in one REPEATABLE READ snapshot."""
        with self._connection() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            row = conn.execute(f"{INCIDENT_SELECT} WHERE id = %s", (incident_id,)).fetchone()
            if row is None:
                return None
            alarms = conn.execute(f"{ALARM_SELECT} WHERE incident_id = %s ORDER BY ts, id", (incident_id,)).fetchall()
            history = conn.execute(f"{_HISTORY_SELECT} WHERE incident_id = %s ORDER BY at, id", (incident_id,)).fetchall()
        return IncidentRecord(codec.incident_from_values(row), [codec.alarm_from_values(r) for r in alarms],
                              [codec.history_from_values(r) for r in history])

    # --- maintenance windows -------------------------------------------------------------------
    def add_maintenance_window(self, window: MaintenanceWindow, *, actor: str) -> int:
        """Store a maintenance window; return its id."""
        rows = self._query(
            "INSERT INTO maintenance_windows (grid_code, building, starts_at, ends_at, reason, created_by)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (window.grid_code, window.building, codec.to_utc(window.starts_at, "starts_at"),
             codec.to_utc(window.ends_at, "ends_at"), window.reason, actor),
        )
        return int(rows[0]["id"])

    def maintenance_windows(self, *, active_from: datetime | None = None) -> list[StoredWindow]:
        """Windows that end after `active_from` (all when None), by start."""
        rows = self._query(
            "SELECT id, grid_code, building, starts_at, ends_at, reason, created_by FROM maintenance_windows"
            " WHERE %(at)s::timestamptz IS NULL OR ends_at > %(at)s ORDER BY starts_at, id",
            {"at": None if active_from is None else codec.to_utc(active_from, "active_from")},
        )
        return [StoredWindow(r["id"], MaintenanceWindow(r["grid_code"], r["building"], codec.to_utc(r["starts_at"]),
                                                        codec.to_utc(r["ends_at"]), r["reason"]), r["created_by"]) for r in rows]

    def end_maintenance_window(self, window_id: int, at: datetime) -> bool:
        """End a window early at `at` (one that has not started yet is removed); False if none is running."""
        params = {"at": codec.to_utc(at, "at"), "id": window_id}
        with self._connection() as conn:
            row = conn.execute("UPDATE maintenance_windows SET ends_at = %(at)s WHERE id = %(id)s AND starts_at < %(at)s"
                               " AND ends_at > %(at)s RETURNING id", params).fetchone()
            if row is None:
                row = conn.execute("DELETE FROM maintenance_windows WHERE id = %(id)s AND starts_at >= %(at)s RETURNING id",
                                   params).fetchone()
        return row is not None

    def history_for(self, incident_ids: Sequence[str]) -> dict[str, list[HistoryEntry]]:
        """Audit logs of many incidents at once, oldest first per incident."""
        out: dict[str, list[HistoryEntry]] = {i: [] for i in incident_ids}
        if out:
            rows = self._query(f"{_HISTORY_SELECT} WHERE incident_id = ANY(%s) ORDER BY incident_id, at, id", (list(out),))
            for r in rows:
                out[r["incident_id"]].append(codec.history_from_values({**r, "at": codec.to_utc(r["at"])}))
        return out

    def track(self, since: datetime, until: datetime, *, patroller_id: str | None = None) -> list[tuple[str, datetime, float, float]]:
        """GPS fixes (patroller_id, ts, lon, lat) in [since, until), by patroller then time."""
        rows = self._query(
            "SELECT patroller_id, ts, lon, lat FROM patroller_track WHERE ts >= %(since)s AND ts < %(until)s"
            " AND (%(p)s::text IS NULL OR patroller_id = %(p)s) ORDER BY patroller_id, ts",
            {"since": codec.to_utc(since, "since"), "until": codec.to_utc(until, "until"), "p": patroller_id},
        )
        return [(r["patroller_id"], codec.to_utc(r["ts"]), r["lon"], r["lat"]) for r in rows]

    def alarms_of(self, incident_id: str) -> list[Alarm]:
        """The alarms joined into an incident, oldest first."""
        rows = self._query(f"{ALARM_SELECT} WHERE incident_id = %s ORDER BY ts, id", (incident_id,))
        return [codec.alarm_from_values(r) for r in rows]

    def count_alarms(self) -> int:
        """How many alarms are stored."""
        return int(self._query("SELECT count(*) AS n FROM alarms")[0]["n"])

    # --- dead letters and outbox -----------------------------------------------------------------
    def pending_notifications(self, *, limit: int = 500) -> list[tuple[int, Notification]]:
        """Outbox rows not yet delivered, oldest first."""
        rows = self._query(
            "SELECT id, topic, payload FROM outbox WHERE delivered_at IS NULL ORDER BY id LIMIT %s", (max(0, limit),)
        )
        return [(r["id"], Notification(r["topic"], r["payload"])) for r in rows]

    def mark_notifications(self, ids: Sequence[int], *, delivered: bool, error: str | None = None) -> None:
        """Record a delivery (or a failed attempt: attempts + 1, last error); delivered rows stay delivered."""
        if not ids:
            return
        id_list = [int(i) for i in ids]
        with self._connection() as conn:
            if delivered:
                # synchronous_commit off for this transaction (no wait for the WAL flush): a mark lost
                # in a crash right after only makes the relay send that notification again
                # (at-least-once), it never loses one
                conn.execute(
                    "WITH async AS (SELECT set_config('synchronous_commit', 'off', true) AS v)"
                    " UPDATE outbox SET delivered_at = now(), attempts = attempts + 1"
                    " FROM async WHERE async.v = 'off' AND id = ANY(%s) AND delivered_at IS NULL",
                    (id_list,),
                )
            else:
                conn.execute(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = coalesce(%s, last_error)"
                    " WHERE id = ANY(%s) AND delivered_at IS NULL",
                    (error, id_list),
                )

    def notification_counters(self) -> dict[str, int]:
        """Outbox counters: pending, delivered, failed_attempts, and retrying (pending after a failure)."""
        row = self._query(codec.OUTBOX_COUNTERS_SQL)[0]
        return {k: int(row[k]) for k in codec.OUTBOX_COUNTERS}


def _upsert_patrollers(cur: psycopg.Cursor[dict[str, Any]], patrollers: Sequence[Patroller]) -> None:
    """COPY patrollers into a staging table, then upsert them by id (the last copy of an id wins)."""
    cur.execute(
        b"CREATE TEMP TABLE IF NOT EXISTS patroller_stage (seq integer NOT NULL, id text, name text, phone text,"
        b" grid_codes text[], shifts jsonb, home geometry, backup_grid_codes text[], roster_exceptions jsonb)"
        b" ON COMMIT DELETE ROWS; TRUNCATE patroller_stage"
    )
    with cur.copy("COPY patroller_stage (seq, id, name, phone, grid_codes, shifts, home, backup_grid_codes,"
                  " roster_exceptions) FROM STDIN") as copy:
        for seq, p in enumerate(patrollers):
            home = None if p.home is None else codec.to_ewkb_hex(Point(p.home))
            shifts = json.dumps(codec.shifts_to_json(p.shifts))
            exceptions = json.dumps([e.to_dict() for e in p.exceptions])
            copy.write_row((seq, p.id, p.name, p.phone, list(p.grid_codes), shifts, home, list(p.backup_grid_codes), exceptions))
    cur.execute(
        "INSERT INTO patrollers (id, name, phone, grid_codes, shifts, home, backup_grid_codes, roster_exceptions)"
        " SELECT DISTINCT ON (id) id, name, phone, grid_codes, shifts, home, backup_grid_codes, roster_exceptions"
        " FROM patroller_stage ORDER BY id, seq DESC"
        " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, phone = EXCLUDED.phone,"
        " grid_codes = EXCLUDED.grid_codes, shifts = EXCLUDED.shifts, home = EXCLUDED.home,"
        " backup_grid_codes = EXCLUDED.backup_grid_codes, roster_exceptions = EXCLUDED.roster_exceptions"
    )


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching strings that start with `prefix` (default escape character: backslash)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%"


def _grid(row: dict[str, Any]) -> Grid:
    return Grid(row["code"], row["level"], row["name"], codec.from_wkb(row["wkb"]), row["parent_code"])
