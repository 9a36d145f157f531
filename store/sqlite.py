"""The embedded backend: one SQLite file (stdlib sqlite3, WAL, WKB geometry blobs).

Thread-safe by giving each thread its own connection. Every write runs in `BEGIN IMMEDIATE`, so
writers queue on the database lock (busy_timeout) instead of failing half-way. `:memory:` is not
supported: each thread's connection would see a different empty database. Devices, device events,
alarm ends, readings and dead-letter replays live in store.sqlite_registry.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

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
from store.migrate import load_migrations, pending, split_statements
from store.ports import IncidentQuery, IncidentRecord, Position, StoredWindow
from store.sqlite_registry import SqliteRegistry, upsert_devices_in
from store.sqlite_uow import (
    ALARM_SELECT,
    INCIDENT_SELECT,
    OPEN_STATE_NAMES,
    SqliteUnitOfWork,
    alarm_from_row,
    from_ts_text,
    incident_from_row,
    to_json,
    ts_text,
)
from store.sqlite_versions import (
    VERSION_SELECT,
    SqliteVersions,
    audit_in,
    insert_grid_rows,
    insert_version,
    publish_in,
    version_from_row,
)

logger = logging.getLogger(__name__)

_HISTORY_SELECT = "SELECT incident_id, at, action, from_state, to_state, actor, note FROM incident_history"


def _path_of(url: str) -> Path:
    """The file of a `sqlite:///relative/path` or `sqlite:////absolute/path` URL."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url:
        raise ValueError(f"database URL {url!r}: expected sqlite:///relative/path or sqlite:////absolute/path")
    path = url[len(prefix) :]
    if path in ("", ":memory:") or path.startswith("file:"):
        raise ValueError(f"database URL {url!r}: expected a file path (in-memory databases are not supported)")
    return Path(path)


@contextmanager
def _translated() -> Iterator[None]:
    """Turn sqlite3 errors into store errors (callers never import sqlite3)."""
    try:
        yield
    except sqlite3.IntegrityError as e:
        if getattr(e, "sqlite_errorname", "") in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"):
            raise ConflictError(f"sqlite: {e}") from e
        raise StoreError(f"sqlite: {type(e).__name__}: {e}") from e
    except sqlite3.Error as e:
        raise StoreError(f"sqlite: {type(e).__name__}: {e}") from e


class SqliteStore(SqliteRegistry, SqliteVersions):
    """store.ports.Store on one SQLite file."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 10_000, url: str | None = None) -> None:
        self.path = Path(path)
        self.url = url if url is not None else f"sqlite:///{self.path}"
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        # every open connection, with the finalizer that closes it when its thread is gone
        self._connections: dict[sqlite3.Connection, weakref.finalize[[sqlite3.Connection], threading.Thread]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _translated():
            mode = self._conn().execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            logger.warning("sqlite %s: journal_mode is %s, not wal", self.path, mode)

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        """Open `sqlite:///path` (parent folders are created)."""
        return cls(_path_of(url), url=url)

    # --- connections and transactions -----------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        with self._lock:
            if self._closed:
                raise StoreError(f"store {self.url}: closed")
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
            )
            self._connections[conn] = weakref.finalize(threading.current_thread(), self._release, conn)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        conn.execute("PRAGMA foreign_keys = ON")
        # FULL: a commit is on disk before MQTT acks are sent (design §7)
        conn.execute("PRAGMA synchronous = FULL")
        self._local.conn = conn
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT on this thread's connection; ROLLBACK on any exception."""
        with self._begin("IMMEDIATE") as conn:
            with _translated():
                yield conn
                conn.execute("COMMIT")

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """A read transaction on this thread's connection: its queries see one state of the database (WAL)."""
        with self._begin("DEFERRED"):
            yield

    @contextmanager
    def _begin(self, kind: str) -> Iterator[sqlite3.Connection]:
        """BEGIN `kind` on this thread's connection (one at a time); rolled back unless the block committed."""
        conn = self._conn()
        if conn.in_transaction:
            raise StoreError(f"store {self.url}: a unit of work is already open on this thread")
        with _translated():
            conn.execute(f"BEGIN {kind}")
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.rollback()

    def _query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[sqlite3.Row]:
        with _translated():
            return self._conn().execute(sql, params).fetchall()

    def migrate(self) -> list[str]:
        """Apply pending schema migrations; return the names applied."""
        conn = self._conn()
        with _translated():
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
        done = {r[0] for r in self._query("SELECT version FROM schema_migrations")}
        applied: list[str] = []
        for migration in pending(load_migrations("sqlite"), done):
            with self._transaction() as tx:
                # re-check under the write lock: another process may have just applied it
                if tx.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)).fetchone():
                    continue
                for statement in split_statements(migration.sql):
                    tx.execute(statement)
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, ts_text(codec.now_utc())),
                )
            logger.info("sqlite %s: applied migration %s", self.path, migration.name)
            applied.append(migration.name)
        return applied

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, {}
        for conn, finalizer in connections.items():
            finalizer.detach()
            conn.close()
        self._local = threading.local()

    def _release(self, conn: sqlite3.Connection) -> None:
        """Close the connection of a thread that has ended."""
        with self._lock:
            self._connections.pop(conn, None)
        conn.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def unit_of_work(self) -> Iterator[SqliteUnitOfWork]:
        """Open a transaction (BEGIN IMMEDIATE): commit on leaving the block, roll back on an exception."""
        with self._transaction() as conn:
            yield SqliteUnitOfWork(conn)

    # --- grid versions and what they place -------------------------------------------------------
    def load_district(self, district: District, label: str, *, at: datetime | None = None) -> GridVersion:
        """Store a district as a new current grid version valid from `at` (default now; idempotent by label:
        returns the existing one)."""
        with self._transaction() as tx:
            row = tx.execute(f"{VERSION_SELECT} WHERE label = ?", (label,)).fetchone()
            if row is not None:
                logger.info("sqlite: grid version %r exists (id %s), not loaded again", label, row["id"])
                return version_from_row(row)
            now = codec.to_utc(at, "at") if at is not None else codec.now_utc()
            version_id = insert_version(tx, label, at=now, source=district.name, crs="EPSG:4326", actor="seed")
            insert_grid_rows(tx, version_id, district.grids, district.buildings)
            audit_in(tx, version_id, at=now, actor="seed", action="import",
                     detail={"source": district.name, "grids": len(district.grids), "buildings": len(district.buildings)})
            upsert_devices_in(tx, district.devices, at=now)
            tx.executemany(
                "INSERT INTO patrollers (id, name, phone, grid_codes, shifts, home, backup_grid_codes, roster_exceptions)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET name = excluded.name, phone = excluded.phone,"
                " grid_codes = excluded.grid_codes, shifts = excluded.shifts, home = excluded.home,"
                " backup_grid_codes = excluded.backup_grid_codes, roster_exceptions = excluded.roster_exceptions",
                [
                    (
                        p.id,
                        p.name,
                        p.phone,
                        to_json(list(p.grid_codes)),
                        to_json(codec.shifts_to_json(p.shifts)),
                        None if p.home is None else codec.to_wkb(Point(p.home)),
                        to_json(list(p.backup_grid_codes)),
                        to_json([e.to_dict() for e in p.exceptions]),
                    )
                    for p in district.patrollers
                ],
            )
            version = publish_in(tx, version_id, at=now, actor="seed", detail={"seed": label})
        logger.info(
            "sqlite: loaded %s as grid version %s (%d grids, %d buildings, %d devices, %d patrollers)",
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
        rows = self._query(f"{VERSION_SELECT} WHERE is_current = 1")
        return version_from_row(rows[0]) if rows else None

    def grids(self, *, level: int | None = None, version: int | None = None) -> list[Grid]:
        """Grids of a version (default current), optionally of one level, ordered by code."""
        rows = self._query(
            "SELECT code, level, name, parent_code, geom FROM grids"
            " WHERE version_id = coalesce(:version, (SELECT id FROM grid_versions WHERE is_current = 1))"
            " AND (:level IS NULL OR level = :level) ORDER BY code",
            {"version": version, "level": level},
        )
        return codec.grids_from_rows(rows, "geom")

    def grid(self, code: str, *, version: int | None = None) -> Grid | None:
        """One grid by code."""
        rows = self._query(
            "SELECT code, level, name, parent_code, geom FROM grids"
            " WHERE version_id = coalesce(:version, (SELECT id FROM grid_versions WHERE is_current = 1))"
            " AND code = :code",
            {"version": version, "code": code},
        )
        return _grid(rows[0]) if rows else None

    def buildings(self, *, version: int | None = None) -> list[Building]:
        """Buildings of a version (default current), ordered by code."""
        rows = self._query(
            "SELECT code, grid_code, name, geom FROM buildings"
            " WHERE version_id = coalesce(:version, (SELECT id FROM grid_versions WHERE is_current = 1))"
            " ORDER BY code",
            {"version": version},
        )
        return [Building(r["code"], r["grid_code"], r["name"], codec.from_wkb(r["geom"])) for r in rows]

    def patrollers(self) -> list[Patroller]:
        """Patrollers with assignments and shifts, ordered by id."""
        rows = self._query(
            "SELECT id, name, phone, grid_codes, shifts, home, backup_grid_codes, roster_exceptions FROM patrollers ORDER BY id"
        )
        result = []
        for r in rows:
            home = None if r["home"] is None else codec.from_wkb(r["home"])
            result.append(
                Patroller(
                    id=r["id"],
                    name=r["name"],
                    phone=r["phone"],
                    grid_codes=tuple(json.loads(r["grid_codes"])),
                    shifts=codec.shifts_from_json(json.loads(r["shifts"])),
                    home=None if home is None else (home.x, home.y),
                    exceptions=tuple(RosterException.from_dict(e) for e in json.loads(r["roster_exceptions"])),
                    backup_grid_codes=tuple(json.loads(r["backup_grid_codes"])),
                )
            )
        return result

    def set_roster(self, patroller_id: str, *, shifts: Sequence[Shift], exceptions: Sequence[RosterException],
                   backup_grid_codes: Sequence[str]) -> bool:
        """Replace a patroller's weekly shifts, dated exceptions and backup grids; False if no such patroller."""
        with self._transaction() as tx:
            cur = tx.execute(
                "UPDATE patrollers SET shifts = ?, roster_exceptions = ?, backup_grid_codes = ? WHERE id = ?",
                (to_json(codec.shifts_to_json(tuple(shifts))), to_json([e.to_dict() for e in exceptions]),
                 to_json(list(backup_grid_codes)), patroller_id),
            )
            return cur.rowcount > 0

    def positions(self) -> dict[str, Position]:
        """Last known positions by patroller id."""
        rows = self._query("SELECT patroller_id, ts, lon, lat, acc FROM patroller_positions")
        return {
            r["patroller_id"]: Position(r["patroller_id"], from_ts_text(r["ts"]), r["lon"], r["lat"], r["acc"])
            for r in rows
        }

    # --- incidents -----------------------------------------------------------------------------------
    def incidents(self, query: IncidentQuery) -> list[Incident]:
        """Incidents matching the query, newest (by created_at) first; `since` compares with updated_at."""
        clauses: list[str] = []
        params: list[Any] = []
        if query.states:
            clauses.append(f"state IN ({', '.join('?' * len(query.states))})")
            params.extend(str(s) for s in query.states)
        if query.grid_prefix is not None:
            clauses.append("substr(l3, 1, ?) = ?")
            params.extend((len(query.grid_prefix), query.grid_prefix))
        if query.assignees:
            clauses.append(f"assignee IN ({', '.join('?' * len(query.assignees))})")
            params.extend(query.assignees)
        if query.patroller_scope is not None:
            pid, fence = query.patroller_scope
            inside = f" OR l3 IN ({', '.join('?' * len(fence))})" if fence else ""
            clauses.append(f"(assignee = ?{inside})")
            params.extend((pid, *fence))
        if query.grid is not None:
            clauses.append("(l3 = ? OR l2 = ? OR l1 = ?)")
            params.extend((query.grid, query.grid, query.grid))
        if query.bbox is not None:
            min_lon, min_lat, max_lon, max_lat = query.bbox
            clauses.append("lon BETWEEN ? AND ? AND lat BETWEEN ? AND ?")
            params.extend((min_lon, max_lon, min_lat, max_lat))
        if query.since is not None:
            clauses.append("updated_at >= ?")
            params.append(ts_text(query.since, "query.since"))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(max(0, query.limit))
        rows = self._query(f"{INCIDENT_SELECT}{where} ORDER BY created_at DESC, id DESC LIMIT ?", params)
        return [incident_from_row(r) for r in rows]

    def sla_candidates(self, now: datetime, *, yellow_at: float, working_prefixes: Sequence[str],
                       limit: int = 100_000) -> list[Incident]:
        """Open incidents whose light may change at `now` (see store.ports)."""
        working = " OR ".join("substr(type, 1, ?) = ?" for _ in working_prefixes) or "0"
        rows = self._query(
            f"{INCIDENT_SELECT} WHERE state IN ({', '.join('?' * len(OPEN_STATE_NAMES))}) AND ("
            " (deadline IS NULL AND light IS NOT NULL) OR light IN ('yellow', 'red')"
            " OR (deadline IS NOT NULL AND (stage_started_at IS NULL"
            "     OR julianday(deadline) - (julianday(deadline) - julianday(stage_started_at)) * ? <= julianday(?)))"
            f" OR (deadline IS NOT NULL AND ({working}))) ORDER BY deadline LIMIT ?",
            (*OPEN_STATE_NAMES, 1.0 - yellow_at, ts_text(now, "now"),
             *[v for p in working_prefixes for v in (len(p), p)], limit),
        )
        return [incident_from_row(r) for r in rows]

    def incident(self, incident_id: str) -> Incident | None:
        """One incident."""
        rows = self._query(f"{INCIDENT_SELECT} WHERE id = ?", (incident_id,))
        return incident_from_row(rows[0]) if rows else None

    def history(self, incident_id: str) -> list[HistoryEntry]:
        """An incident's audit log, oldest first."""
        rows = self._query(f"{_HISTORY_SELECT} WHERE incident_id = ? ORDER BY at, id", (incident_id,))
        return [codec.history_from_values({**dict(r), "at": from_ts_text(r["at"])}) for r in rows]

    def incidents_mark(self) -> tuple[Any, ...]:
        """The newest updated_at and the open count (two index lookups in one statement; see store.ports)."""
        # the open count's predicate is the partial index incidents_open_deadline's: the complement of OPEN_STATES
        row = self._query("SELECT (SELECT max(updated_at) FROM incidents), (SELECT count(*) FROM incidents"
                          " WHERE state NOT IN ('closed', 'called_back', 'archived', 'cancelled'))")[0]
        return row[0], row[1]

    def incident_record(self, incident_id: str) -> IncidentRecord | None:
        """One incident with its alarms and history, read in one snapshot (a deferred read transaction)."""
        with self._snapshot():
            incident = self.incident(incident_id)
            if incident is None:
                return None
            return IncidentRecord(incident, self.alarms_of(incident_id), self.history(incident_id))

    # --- maintenance windows -------------------------------------------------------------------
    def add_maintenance_window(self, window: MaintenanceWindow, *, actor: str) -> int:
        """Store a maintenance window; return its id."""
        with self._transaction() as tx:
            cur = tx.execute(
                "INSERT INTO maintenance_windows (grid_code, building, starts_at, ends_at, reason, created_by, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (window.grid_code, window.building, ts_text(window.starts_at, "starts_at"), ts_text(window.ends_at, "ends_at"),
                 window.reason, actor, ts_text(codec.now_utc())),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def maintenance_windows(self, *, active_from: datetime | None = None) -> list[StoredWindow]:
        """Windows that end after `active_from` (all when None), by start."""
        rows = self._query(
            "SELECT id, grid_code, building, starts_at, ends_at, reason, created_by FROM maintenance_windows"
            " WHERE ? IS NULL OR ends_at > ? ORDER BY starts_at, id",
            (None, None) if active_from is None else (ts_text(active_from), ts_text(active_from)),
        )
        return [StoredWindow(r["id"], MaintenanceWindow(r["grid_code"], r["building"], from_ts_text(r["starts_at"]),
                                                        from_ts_text(r["ends_at"]), r["reason"]), r["created_by"]) for r in rows]

    def end_maintenance_window(self, window_id: int, at: datetime) -> bool:
        """End a window early at `at` (one that has not started yet is removed); False if none is running."""
        t = ts_text(at)
        with self._transaction() as tx:
            cur = tx.execute("UPDATE maintenance_windows SET ends_at = ? WHERE id = ? AND starts_at < ? AND ends_at > ?",
                             (t, window_id, t, t))
            if cur.rowcount == 0:
                cur = tx.execute("DELETE FROM maintenance_windows WHERE id = ? AND starts_at >= ?", (window_id, t))
            return cur.rowcount > 0

    def history_for(self, incident_ids: Sequence[str]) -> dict[str, list[HistoryEntry]]:
        """Audit logs of many incidents at once, oldest first per incident."""
        out: dict[str, list[HistoryEntry]] = {i: [] for i in incident_ids}
        ids = list(out)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = self._query(
                f"{_HISTORY_SELECT} WHERE incident_id IN ({', '.join('?' * len(chunk))}) ORDER BY incident_id, at, id", chunk
            )
            for r in rows:
                out[r["incident_id"]].append(codec.history_from_values({**dict(r), "at": from_ts_text(r["at"])}))
        return out

    def track(self, since: datetime, until: datetime, *, patroller_id: str | None = None) -> list[tuple[str, datetime, float, float]]:
        """GPS fixes (patroller_id, ts, lon, lat) in [since, until), by patroller then time."""
        rows = self._query(
            "SELECT patroller_id, ts, lon, lat FROM patroller_track WHERE ts >= ? AND ts < ? AND (? IS NULL OR patroller_id = ?)"
            " ORDER BY patroller_id, ts",
            (ts_text(since, "since"), ts_text(until, "until"), patroller_id, patroller_id),
        )
        return [(r[0], from_ts_text(r[1]), r[2], r[3]) for r in rows]

    def alarms_of(self, incident_id: str) -> list[Alarm]:
        """The alarms joined into an incident, oldest first."""
        rows = self._query(f"{ALARM_SELECT} WHERE incident_id = ? ORDER BY ts, id", (incident_id,))
        return [alarm_from_row(r) for r in rows]

    def count_alarms(self) -> int:
        """How many alarms are stored."""
        return int(self._query("SELECT count(*) FROM alarms")[0][0])

    # --- dead letters and outbox -----------------------------------------------------------------
    def pending_notifications(self, *, limit: int = 500) -> list[tuple[int, Notification]]:
        """Outbox rows not yet delivered, oldest first."""
        rows = self._query(
            "SELECT id, topic, payload FROM outbox WHERE delivered_at IS NULL ORDER BY id LIMIT ?", (max(0, limit),)
        )
        return [(r["id"], Notification(r["topic"], json.loads(r["payload"]))) for r in rows]

    def mark_notifications(self, ids: Sequence[int], *, delivered: bool, error: str | None = None) -> None:
        """Record a delivery (or a failed attempt: attempts + 1, last error); delivered rows stay delivered."""
        if not ids:
            return
        id_list = to_json([int(i) for i in ids])
        if delivered:
            # synchronous=NORMAL for this commit (WAL: no fsync wait): a mark lost in a crash right
            # after only makes the relay send that notification again (at-least-once), never loses one
            conn = self._conn()
            with _translated():
                conn.execute("PRAGMA synchronous = NORMAL")
            try:
                with self._transaction() as tx:
                    tx.execute(
                        "UPDATE outbox SET delivered_at = ?, attempts = attempts + 1"
                        " WHERE id IN (SELECT value FROM json_each(?)) AND delivered_at IS NULL",
                        (ts_text(codec.now_utc()), id_list),
                    )
            finally:
                with _translated():
                    conn.execute("PRAGMA synchronous = FULL")
            return
        with self._transaction() as tx:  # a failed attempt: recorded durably
            tx.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = coalesce(?, last_error)"
                " WHERE id IN (SELECT value FROM json_each(?)) AND delivered_at IS NULL",
                (error, id_list),
            )

    def notification_counters(self) -> dict[str, int]:
        """Outbox counters: pending, delivered, failed_attempts, and retrying (pending after a failure)."""
        row = self._query(codec.OUTBOX_COUNTERS_SQL)[0]
        return {k: int(row[k]) for k in codec.OUTBOX_COUNTERS}


def _grid(row: sqlite3.Row) -> Grid:
    return Grid(row["code"], row["level"], row["name"], codec.from_wkb(row["geom"]), row["parent_code"])
