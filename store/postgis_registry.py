"""Devices, device events, alarm ends, readings and dead-letter replays on PostgreSQL (migration 0004).

`PostgisRegistry` is mixed into store.postgis.PostgisStore (it uses its `_connection`, `_query` and
`_readings`); the `*_in` functions run inside a unit of work (store.postgis_uow).

Device registrations serialize on an advisory lock (the identity check and the write are one
step); touch_devices locks the touched rows (FOR UPDATE, in id order) in the same statement that
updates them, so of two workers seeing one offline device come back, exactly one reports it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from geo.model import Device
from ingest.model import AlarmEnd, DeadLetter, DeviceStatus
from store import codec
from store.ports import DeviceState, ReadingRow, StoredDeadLetter, UserRecord

if TYPE_CHECKING:
    from store.postgis_readings import Readings
    from store.postgis_uow import Conn

#: pg_advisory_xact_lock key: serializes device registrations (identity check + write) across processes
REGISTRY_LOCK = 0x6772_6964_0012

_DEVICE_SELECT = (
    "SELECT id, kind, name, ST_AsBinary(geom) AS wkb, grid_code, zones, format, identity, interval_s FROM devices"
)
_DEVICE_STAGE = (
    b"CREATE TEMP TABLE IF NOT EXISTS device_stage (id text, kind text, name text, geom geometry,"
    b" grid_code text, zones text[], format text, identity text, interval_s double precision)"
    b" ON COMMIT DELETE ROWS"
)
_DEVICE_UPSERT = (
    "WITH s AS (DELETE FROM device_stage RETURNING *)"
    " INSERT INTO devices (id, kind, name, geom, grid_code, zones, format, identity, interval_s, registered_at)"
    " SELECT id, kind, name, geom, grid_code, zones, format, identity, interval_s, %s FROM s"
    " ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, name = EXCLUDED.name, geom = EXCLUDED.geom,"
    " grid_code = EXCLUDED.grid_code, zones = EXCLUDED.zones, format = EXCLUDED.format,"
    " identity = EXCLUDED.identity, interval_s = EXCLUDED.interval_s"
)
# the CTE locks the rows (in id order) and reads their state as committed; SET sees the locked row
# an offline device comes back only with a message received after it went offline (not with a late or
# replayed older one); `stale` keeps its state
_TOUCH = (
    "WITH o AS (SELECT id, state, state_since FROM devices WHERE id = ANY(%(ids)s::text[]) ORDER BY id FOR UPDATE),"
    " s AS (SELECT s.id, s.ts, (o.state = 'offline' AND s.ts <= coalesce(o.state_since, '-infinity')) AS stale, o.state AS was"
    " FROM o JOIN unnest(%(ids)s::text[], %(ts)s::timestamptz[]) AS s (id, ts) ON s.id = o.id)"
    " UPDATE devices AS d SET last_seen = greatest(d.last_seen, s.ts),"
    " state = CASE WHEN s.stale THEN d.state ELSE 'online' END,"
    " state_since = CASE WHEN s.stale OR d.state = 'online' THEN d.state_since ELSE s.ts END"
    " FROM s WHERE d.id = s.id RETURNING d.id, s.was, d.state AS now"
)
_MARK_OFFLINE = (
    "UPDATE devices SET state = 'offline', state_since = %(basis)s, detail = detail || %(detail)s::jsonb"
    " WHERE id = %(id)s AND state <> 'offline' AND coalesce(last_seen, '-infinity') <= %(basis)s"
    " AND (%(since)s::timestamptz IS NULL OR coalesce(last_seen, registered_at) = %(since)s::timestamptz) RETURNING id"
)
LOCK_DEVICES = "SELECT id FROM devices WHERE id = ANY(%s::text[]) ORDER BY id FOR UPDATE"
MERGE_DETAIL = "UPDATE devices SET detail = detail || %(detail)s::jsonb WHERE id = %(id)s"
SET_STATE = (
    "UPDATE devices SET state_since = CASE WHEN state <> %(state)s THEN %(at)s ELSE state_since END,"
    " state = %(state)s, detail = detail || %(detail)s::jsonb WHERE id = %(id)s"
)
EVENT_INSERT = (
    "INSERT INTO device_events (device_id, ts, kind, online, detail, raw, received_at)"
    " VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s)"
)
EVENT_COPY = "COPY device_events (device_id, ts, kind, online, detail, raw, received_at) FROM STDIN"
_END_BY_ID = (
    "UPDATE alarms SET ended_at = %(at)s WHERE device_id = %(device)s AND msg_id = %(msg)s AND ended_at IS NULL"
)
_END_BY_TYPE = (
    "UPDATE alarms SET ended_at = %(at)s WHERE id = (SELECT id FROM alarms WHERE device_id = %(device)s"
    " AND (%(type)s::text IS NULL OR type = %(type)s) AND ended_at IS NULL ORDER BY ts DESC, id DESC LIMIT 1 FOR UPDATE)"
)
_DEAD_SELECT = (
    "SELECT id, topic, payload, reason, detail, received_at, replayed_at, replay_result, replays FROM dead_letters"
)
EVENTS_COPY_MIN_ROWS = 64


def upsert_devices_in(conn: Conn, devices: Sequence[Device], *, at: datetime) -> tuple[int, int]:
    """Register devices or update their registration (see store.ports.Store.upsert_devices)."""
    final = codec.last_copies(devices)
    if not final:
        return 0, 0
    registered = codec.to_utc(at, "at")
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (REGISTRY_LOCK,))
    ids = [d.id for d in final]
    identities = sorted({d.identity for d in final if d.identity is not None})
    rows = conn.execute(
        "SELECT id, identity FROM devices WHERE id = ANY(%s) OR identity = ANY(%s) ORDER BY id FOR UPDATE",
        (ids, identities),
    ).fetchall()
    stored = [(r["id"], r["identity"]) for r in rows]
    codec.check_identities(final, stored)
    wanted = {d.id: d for d in final}
    existing = {i: identity for i, identity in stored if i in wanted}
    # an identity moving between devices of this call: release the old ones first (the index is checked per row)
    moving = [i for i, identity in existing.items() if identity is not None and identity != wanted[i].identity]
    if moving:
        conn.execute("UPDATE devices SET identity = NULL WHERE id = ANY(%s)", (moving,))
    with conn.cursor() as cur:
        cur.execute(_DEVICE_STAGE)
        with cur.copy("COPY device_stage (id, kind, name, geom, grid_code, zones, format, identity, interval_s)"
                      " FROM STDIN") as copy:
            for d in final:
                copy.write_row((d.id, d.kind, d.name, codec.to_ewkb_hex(d.geometry), d.grid_code, list(d.zones),
                                d.format, d.identity, None if d.interval_s is None else float(d.interval_s)))
        cur.execute(_DEVICE_UPSERT, (registered,))
    return len(final) - len(existing), len(existing)


def touch_devices_in(conn: Conn, seen: Mapping[str, datetime]) -> list[str]:
    """last_seen = max(stored, given), state 'online', in one statement; return the ids that were offline."""
    if not seen:
        return []
    text = codec.fast_text
    pairs = sorted((text(device_id), codec.to_utc(at, "seen")) for device_id, at in seen.items())
    rows = conn.execute(_TOUCH, {"ids": [p[0] for p in pairs], "ts": [p[1] for p in pairs]}).fetchall()
    return sorted(r["id"] for r in rows if r["was"] == "offline" and r["now"] == "online")


def mark_offline_in(conn: Conn, changes: Sequence[tuple[str, datetime, dict[str, Any], datetime | None]]) -> list[str]:
    """Set devices offline as of a basis time unless they already are, or were heard after the basis (or,
    with `since`, heard at all since that last_seen); return those set."""
    out = []
    for device_id, at, detail, since in sorted(changes, key=lambda c: c[0]):
        row = conn.execute(_MARK_OFFLINE, {"id": codec.fast_text(device_id), "basis": codec.to_utc(at, "basis"),
                                           "detail": codec.json_text(dict(detail)),
                                           "since": None if since is None else codec.to_utc(since, "since")}).fetchone()
        if row is not None:
            out.append(device_id)
    return out


def state_changes(changes: Sequence[tuple[str, str, datetime, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Parameters of SET_STATE, in order (ValueError for an unknown state)."""
    return [
        {"id": device_id, "state": codec.check_device_state(state), "at": codec.to_utc(at, "at"),
         "detail": codec.json_text(dict(detail))}
        for device_id, state, at, detail in changes
    ]


def event_rows(events: Sequence[DeviceStatus]) -> list[tuple[Any, ...]]:
    """Values of device_events rows (detail as JSON text)."""
    text = codec.fast_text
    return [
        (text(e.device_id), codec.to_utc(e.ts, "status.ts"), text(e.source), None if e.online is None else bool(e.online),
         codec.json_text(e.data) if e.data else "{}", bytes(e.raw), codec.opt_utc(e.received_at, "status.received_at"))
        for e in events
    ]


def end_runs(ends: Sequence[AlarmEnd]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(statement, parameter list) runs of consecutive ends of one form, in order."""
    text = codec.fast_text
    run: list[dict[str, Any]] = []
    query = None
    for end in ends:
        q = _END_BY_ID if end.msg_id is not None else _END_BY_TYPE
        params = {"at": codec.to_utc(end.ts, "alarm_end.ts"), "device": text(end.device_id),
                  "msg": text(end.msg_id), "type": text(end.type)}
        if q is not query and run:
            yield query, run  # type: ignore[misc]
            run = []
        query = q
        run.append(params)
    if run:
        yield query, run  # type: ignore[misc]


def mark_dead_letters_in(conn: Conn, ids: Sequence[int], *, at: datetime, result: str, replayed: bool) -> int:
    """Record a replay attempt (replays + 1, result; replayed_at when accepted); return rows changed.

    An accepted replay marks only letters not replayed yet: two concurrent replays of one letter
    cannot both succeed (the second changes no row, and its caller rolls back).
    """
    if not ids:
        return 0
    cur = conn.execute(
        "UPDATE dead_letters SET replays = replays + 1, replay_result = %s,"
        " replayed_at = CASE WHEN %s THEN %s::timestamptz ELSE replayed_at END"
        " WHERE id = ANY(%s) AND replayed_at IS NULL",
        (codec.clean_text(result), bool(replayed), codec.to_utc(at, "at"), sorted({int(i) for i in ids})),
    )
    return cur.rowcount


def dead_letter_from_row(r: Mapping[str, Any]) -> StoredDeadLetter:
    """A StoredDeadLetter from a row of _DEAD_SELECT."""
    return StoredDeadLetter(
        r["id"],
        DeadLetter(r["topic"], bytes(r["payload"]), r["reason"], r["detail"], codec.to_utc(r["received_at"])),
        replayed_at=codec.opt_utc(r["replayed_at"]),
        replay_result=r["replay_result"],
        replays=int(r["replays"]),
    )


class PostgisRegistry:
    """The device, reading and dead-letter part of store.ports.Store on PostgreSQL (a mixin of PostgisStore)."""

    if TYPE_CHECKING:  # provided by PostgisStore
        _readings: Readings

        def _connection(self) -> AbstractContextManager[Conn]: ...
        def _query(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[dict[str, Any]]: ...

    # --- devices ------------------------------------------------------------------------------------
    def devices(self) -> list[Device]:
        """The device registry, ordered by id."""
        return [
            Device(r["id"], r["kind"], r["name"], codec.from_wkb(r["wkb"]), r["grid_code"], tuple(r["zones"]),
                   format=r["format"], identity=r["identity"], interval_s=r["interval_s"])
            for r in self._query(f"{_DEVICE_SELECT} ORDER BY id")
        ]

    def upsert_devices(self, devices: Sequence[Device], *, at: datetime) -> tuple[int, int]:
        """Register devices or update their registration; return (inserted, updated)."""
        with self._connection() as conn:
            return upsert_devices_in(conn, devices, at=at)

    def device_states(self) -> dict[str, DeviceState]:
        """Every device's state by id."""
        rows = self._query("SELECT id, state, state_since, last_seen, detail FROM devices ORDER BY id")
        return {
            r["id"]: DeviceState(r["id"], r["state"], codec.opt_utc(r["state_since"]), codec.opt_utc(r["last_seen"]),
                                 dict(r["detail"]))
            for r in rows
        }

    def silent_devices(self, now: datetime) -> list[tuple[str, datetime, float]]:
        """Watched devices overdue at `now`: (device_id, last_seen or registered_at, interval_s), by id."""
        rows = self._query(
            "SELECT id, coalesce(last_seen, registered_at) AS seen, interval_s FROM devices"
            " WHERE interval_s IS NOT NULL AND state <> 'offline'"
            " AND coalesce(last_seen, registered_at) + make_interval(secs => interval_s) < %s ORDER BY id",
            (codec.to_utc(now, "now"),),
        )
        return [(r["id"], codec.to_utc(r["seen"]), float(r["interval_s"])) for r in rows]

    # --- readings --------------------------------------------------------------------------------------
    def readings(self, device_id: str, *, since: datetime, until: datetime, bucket: str = "raw",
                 metric: str | None = None, limit: int = 10_000) -> list[ReadingRow]:
        """A device's readings, raw or in 1m / 1h buckets, by metric then time (see store.ports)."""
        codec.check_bucket(bucket)
        with self._connection() as conn:
            return self._readings.query(conn, device_id, since=since, until=until, bucket=bucket, metric=metric,
                                        limit=limit)

    # --- dead letters ------------------------------------------------------------------------------------
    def dead_letters(self, *, limit: int = 100, reason: str | None = None,
                     pending_only: bool = False) -> list[StoredDeadLetter]:
        """Newest dead letters first; of one reason, and/or only pending ones."""
        clauses, params = [], []
        if reason is not None:
            clauses.append("reason = %s")
            params.append(reason)
        if pending_only:
            clauses.append("replayed_at IS NULL")
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._query(f"{_DEAD_SELECT}{where} ORDER BY received_at DESC, id DESC LIMIT %s", (*params, max(0, limit)))
        return [dead_letter_from_row(r) for r in rows]

    def dead_letter(self, dead_letter_id: int) -> StoredDeadLetter | None:
        """One dead letter by id."""
        rows = self._query(f"{_DEAD_SELECT} WHERE id = %s", (int(dead_letter_id),))
        return dead_letter_from_row(rows[0]) if rows else None

    # --- users ---------------------------------------------------------------------------------------
    def save_user(self, user: UserRecord, *, at: datetime) -> bool:
        """Create or replace a user; True when it was created."""
        with self._connection() as conn:
            row = conn.execute(
                "INSERT INTO users (username, password_hash, role, grid_code, patroller_id, created_at) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, role = excluded.role,"
                " grid_code = excluded.grid_code, patroller_id = excluded.patroller_id RETURNING (xmax = 0) AS created",
                (user.username, user.password_hash, user.role, user.grid_code, user.patroller_id, codec.to_utc(at, "at")),
            ).fetchone()
        return bool(row["created"])

    def user(self, username: str) -> UserRecord | None:
        """One user by name."""
        rows = self._query("SELECT username, password_hash, role, grid_code, patroller_id FROM users WHERE username = %s", (username,))
        return UserRecord(**rows[0]) if rows else None

    def users(self) -> list[UserRecord]:
        """Every user, by name."""
        return [UserRecord(**r) for r in self._query("SELECT username, password_hash, role, grid_code, patroller_id FROM users ORDER BY username")]

    def delete_user(self, username: str) -> bool:
        """Remove a user (its tokens stop working); True when it existed."""
        with self._connection() as conn:
            return conn.execute("DELETE FROM users WHERE username = %s", (username,)).rowcount > 0

    def revoke_token(self, token_id: str, *, username: str, expires_at: datetime, at: datetime) -> None:
        """Record a token as revoked until `expires_at` (idempotent); rows of tokens expired by `at` go."""
        with self._connection() as conn:
            conn.execute("DELETE FROM revoked_tokens WHERE expires_at <= %s", (codec.to_utc(at, "at"),))
            conn.execute("INSERT INTO revoked_tokens (token_id, username, expires_at, revoked_at) VALUES (%s, %s, %s, %s)"
                         " ON CONFLICT (token_id) DO NOTHING",
                         (token_id, username, codec.to_utc(expires_at, "expires_at"), codec.to_utc(at, "at")))

    def token_revoked(self, token_id: str) -> bool:
        """Whether the token of that id was revoked."""
        return bool(self._query("SELECT 1 FROM revoked_tokens WHERE token_id = %s", (token_id,)))

    def dead_letter_counts(self) -> dict[str, dict[str, int]]:
        """Per reason: {"pending": n, "replayed": m}."""
        rows = self._query(
            "SELECT reason, count(*) FILTER (WHERE replayed_at IS NULL) AS pending, count(replayed_at) AS replayed"
            " FROM dead_letters GROUP BY reason ORDER BY reason"
        )
        return {r["reason"]: {"pending": int(r["pending"]), "replayed": int(r["replayed"])} for r in rows}

