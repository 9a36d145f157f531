"""Devices, device events, alarm ends, readings and dead-letter replays on SQLite (migration 0004).

`SqliteRegistry` is mixed into store.sqlite.SqliteStore (it uses its `_transaction` and `_query`);
the `*_in` functions run inside a unit of work (store.sqlite_uow). Every write runs under
BEGIN IMMEDIATE, so the read-then-write steps below (came-back devices, identity checks, detail
merges) cannot interleave with another writer.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from geo.model import Device
from ingest.model import AlarmEnd, DeadLetter, DeviceStatus, Reading
from store import codec
from store.ports import DeviceState, ReadingRow, StoredDeadLetter, UserRecord
from store.sqlite_uow import (
    from_ts_text,
    opt_from_ts_text,
    opt_ts_text,
    to_json,
    ts_text,
)

_DEVICE_SELECT = "SELECT id, kind, name, geom, grid_code, zones, format, identity, interval_s FROM devices"
_DEVICE_UPSERT = (
    "INSERT INTO devices (id, kind, name, geom, grid_code, zones, format, identity, interval_s, registered_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, name = excluded.name, geom = excluded.geom,"
    " grid_code = excluded.grid_code, zones = excluded.zones, format = excluded.format,"
    " identity = excluded.identity, interval_s = excluded.interval_s"
)
_DEAD_SELECT = (
    "SELECT id, topic, payload, reason, detail, received_at, replayed_at, replay_result, replays FROM dead_letters"
)
# the bucket start of a fixed-width UTC text time ("2026-11-21T00:15:02.123456+00:00")
_BUCKET_TEXT = {"1m": ("substr(ts, 1, 16)", ":00+00:00"), "1h": ("substr(ts, 1, 13)", ":00:00+00:00")}


def upsert_devices_in(tx: sqlite3.Connection, devices: Sequence[Device], *, at: datetime) -> tuple[int, int]:
    """Register devices or update their registration (see store.ports.Store.upsert_devices)."""
    final = codec.last_copies(devices)
    if not final:
        return 0, 0
    ids = [d.id for d in final]
    identities = sorted({d.identity for d in final if d.identity is not None})
    rows = tx.execute(
        "SELECT id, identity FROM devices WHERE id IN (SELECT value FROM json_each(?))"
        " OR identity IN (SELECT value FROM json_each(?))",
        (to_json(ids), to_json(identities)),
    ).fetchall()
    stored = [(r["id"], r["identity"]) for r in rows]
    codec.check_identities(final, stored)
    wanted = {d.id: d for d in final}
    existing = {i: identity for i, identity in stored if i in wanted}
    # an identity moving between devices of this call: release the old ones first (the index is checked per row)
    tx.executemany(
        "UPDATE devices SET identity = NULL WHERE id = ?",
        [(i,) for i, identity in existing.items() if identity is not None and identity != wanted[i].identity],
    )
    registered = ts_text(at, "at")
    tx.executemany(
        _DEVICE_UPSERT,
        [
            (d.id, d.kind, d.name, codec.to_wkb(d.geometry), d.grid_code, to_json(list(d.zones)), d.format,
             d.identity, None if d.interval_s is None else float(d.interval_s), registered)
            for d in final
        ],
    )
    return len(final) - len(existing), len(existing)


def device_from_row(r: sqlite3.Row) -> Device:
    """A Device from a row of _DEVICE_SELECT."""
    return Device(
        r["id"], r["kind"], r["name"], codec.from_wkb(r["geom"]), r["grid_code"], tuple(json.loads(r["zones"])),
        format=r["format"], identity=r["identity"], interval_s=r["interval_s"],
    )


def touch_devices_in(tx: sqlite3.Connection, seen: Mapping[str, datetime]) -> list[str]:
    """last_seen = max(stored, given), state 'online'; return the ids that were offline (sorted)."""
    if not seen:
        return []
    rows = [(ts_text(at, "seen"), codec.fast_text(device_id)) for device_id, at in seen.items()]
    offline = dict(tx.execute(
        "SELECT id, coalesce(state_since, '') FROM devices WHERE state = 'offline' AND id IN (SELECT value FROM json_each(?))",
        (to_json([device_id for _, device_id in rows]),),
    ).fetchall())
    # an offline device comes back only with a message received after it went offline (not a late or replayed one)
    stale = {device_id for ts, device_id in rows if device_id in offline and ts <= offline[device_id]}
    back = sorted(device_id for _, device_id in rows if device_id in offline and device_id not in stale)
    # SET expressions see the row as it was: state_since moves only when the state changes
    tx.executemany(
        "UPDATE devices SET last_seen = CASE WHEN last_seen IS NULL OR last_seen < ?1 THEN ?1 ELSE last_seen END,"
        " state_since = CASE WHEN ?3 OR state = 'online' THEN state_since ELSE ?1 END,"
        " state = CASE WHEN ?3 THEN state ELSE 'online' END WHERE id = ?2",
        [(ts, device_id, int(device_id in stale)) for ts, device_id in rows],
    )
    return back


def mark_offline_in(tx: sqlite3.Connection, changes: Sequence[tuple[str, datetime, dict[str, Any], datetime | None]]) -> list[str]:
    """Set devices offline as of a basis time unless they already are, or were heard after the basis (or,
    with `since`, heard at all since that last_seen); return those set."""
    out = []
    for device_id, at, detail, since in sorted(changes, key=lambda c: c[0]):
        since_text = None if since is None else ts_text(since, "since")
        row = tx.execute(
            "SELECT detail FROM devices WHERE id = ? AND state <> 'offline' AND coalesce(last_seen, '') <= ?"
            " AND (? IS NULL OR coalesce(last_seen, registered_at) = ?)",
            (device_id, ts_text(at, "basis"), since_text, since_text),
        ).fetchone()
        if row is None:
            continue
        merged = {**json.loads(row[0]), **codec.clean_json(dict(detail))}
        tx.execute("UPDATE devices SET state = 'offline', state_since = ?, detail = ? WHERE id = ?",
                   (ts_text(at, "at"), codec.json_text(merged), device_id))
        out.append(device_id)
    return out


def merge_device_detail_in(tx: sqlite3.Connection, changes: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Merge top-level keys into devices' detail."""
    for device_id, patch in changes:
        row = tx.execute("SELECT detail FROM devices WHERE id = ?", (device_id,)).fetchone()
        if row is not None:
            merged = {**json.loads(row[0]), **codec.clean_json(dict(patch))}
            tx.execute("UPDATE devices SET detail = ? WHERE id = ?", (codec.json_text(merged), device_id))


def set_device_states_in(tx: sqlite3.Connection, changes: Sequence[tuple[str, str, datetime, dict[str, Any]]]) -> None:
    """Set states in order; `detail` merged (top-level keys) into the stored detail."""
    for device_id, state, at, detail in changes:
        codec.check_device_state(state)
        row = tx.execute("SELECT detail FROM devices WHERE id = ?", (device_id,)).fetchone()
        if row is None:
            continue
        merged = {**json.loads(row[0]), **codec.clean_json(dict(detail))}
        tx.execute(
            "UPDATE devices SET state_since = CASE WHEN state <> ?1 THEN ?2 ELSE state_since END, state = ?1,"
            " detail = ?3 WHERE id = ?4",
            (state, ts_text(at, "at"), codec.json_text(merged), device_id),
        )


def add_device_events_in(tx: sqlite3.Connection, events: Sequence[DeviceStatus]) -> None:
    """Append device status events."""
    text = codec.fast_text
    tx.executemany(
        "INSERT INTO device_events (device_id, ts, kind, online, detail, raw, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (text(e.device_id), ts_text(e.ts, "status.ts"), text(e.source), None if e.online is None else int(e.online),
             codec.json_text(e.data) if e.data else "{}", bytes(e.raw), opt_ts_text(e.received_at, "status.received_at"))
            for e in events
        ],
    )


def end_alarms_in(tx: sqlite3.Connection, ends: Sequence[AlarmEnd]) -> int:
    """End stored alarms (by message id, else the newest not-ended one of a type); return rows changed."""
    changed = 0
    text = codec.fast_text
    for end in ends:
        at = ts_text(end.ts, "alarm_end.ts")
        if end.msg_id is not None:
            cur = tx.execute(
                "UPDATE alarms SET ended_at = ? WHERE device_id = ? AND msg_id = ? AND ended_at IS NULL",
                (at, text(end.device_id), text(end.msg_id)),
            )
        else:
            cur = tx.execute(
                "UPDATE alarms SET ended_at = ?1 WHERE id = (SELECT id FROM alarms WHERE device_id = ?2"
                " AND (?3 IS NULL OR type = ?3) AND ended_at IS NULL ORDER BY ts DESC, id DESC LIMIT 1)",
                (at, text(end.device_id), text(end.type)),
            )
        changed += max(0, cur.rowcount)
    return changed


def add_readings_in(tx: sqlite3.Connection, readings: Sequence[Reading]) -> int:
    """Store readings, skipping (device_id, metric, ts) already stored; return rows inserted."""
    rows = [(d, ts_text(ts), m, v, u) for d, ts, m, v, u in codec.reading_rows(readings)]
    if not rows:
        return 0
    cur = tx.executemany("INSERT OR IGNORE INTO readings (device_id, ts, metric, value, unit) VALUES (?, ?, ?, ?, ?)", rows)
    return max(0, cur.rowcount)


def mark_dead_letters_in(tx: sqlite3.Connection, ids: Sequence[int], *, at: datetime, result: str, replayed: bool) -> int:
    """Record a replay attempt (replays + 1, result; replayed_at when accepted) of letters not replayed yet; return rows changed."""
    if not ids:
        return 0
    cur = tx.execute(
        "UPDATE dead_letters SET replays = replays + 1, replay_result = ?,"
        " replayed_at = CASE WHEN ? THEN ? ELSE replayed_at END"
        " WHERE id IN (SELECT value FROM json_each(?)) AND replayed_at IS NULL",
        (codec.clean_text(result), int(replayed), ts_text(at, "at"), to_json(sorted({int(i) for i in ids}))),
    )
    return cur.rowcount


def dead_letter_from_row(r: sqlite3.Row) -> StoredDeadLetter:
    """A StoredDeadLetter from a row of _DEAD_SELECT."""
    return StoredDeadLetter(
        r["id"],
        DeadLetter(r["topic"], bytes(r["payload"]), r["reason"], r["detail"], from_ts_text(r["received_at"])),
        replayed_at=opt_from_ts_text(r["replayed_at"]),
        replay_result=r["replay_result"],
        replays=int(r["replays"]),
    )


class SqliteRegistry:
    """The device, reading and dead-letter part of store.ports.Store on SQLite (a mixin of SqliteStore)."""

    if TYPE_CHECKING:  # provided by SqliteStore
        def _transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...
        def _query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[sqlite3.Row]: ...

    # --- devices ------------------------------------------------------------------------------------
    def devices(self) -> list[Device]:
        """The device registry, ordered by id."""
        return [device_from_row(r) for r in self._query(f"{_DEVICE_SELECT} ORDER BY id")]

    def upsert_devices(self, devices: Sequence[Device], *, at: datetime) -> tuple[int, int]:
        """Register devices or update their registration; return (inserted, updated)."""
        with self._transaction() as tx:
            return upsert_devices_in(tx, devices, at=at)

    def device_states(self) -> dict[str, DeviceState]:
        """Every device's state by id."""
        rows = self._query("SELECT id, state, state_since, last_seen, detail FROM devices ORDER BY id")
        return {
            r["id"]: DeviceState(r["id"], r["state"], opt_from_ts_text(r["state_since"]),
                                 opt_from_ts_text(r["last_seen"]), json.loads(r["detail"]))
            for r in rows
        }

    def silent_devices(self, now: datetime) -> list[tuple[str, datetime, float]]:
        """Watched devices overdue at `now`: (device_id, last_seen or registered_at, interval_s), by id."""
        utc = codec.to_utc(now, "now")
        # julianday prefilter (a second of slack for its rounding), then the exact test on datetimes
        rows = self._query(
            "SELECT id, coalesce(last_seen, registered_at) AS seen, interval_s FROM devices"
            " WHERE interval_s IS NOT NULL AND state <> 'offline'"
            " AND julianday(coalesce(last_seen, registered_at)) + (interval_s - 1.0) / 86400.0 < julianday(?)"
            " ORDER BY id",
            (ts_text(utc),),
        )
        found = []
        for r in rows:
            seen = from_ts_text(r["seen"])
            interval = float(r["interval_s"])
            if seen + timedelta(seconds=interval) < utc:
                found.append((r["id"], seen, interval))
        return found

    # --- readings --------------------------------------------------------------------------------------
    def readings(self, device_id: str, *, since: datetime, until: datetime, bucket: str = "raw",
                 metric: str | None = None, limit: int = 10_000) -> list[ReadingRow]:
        """A device's readings, raw or in 1m / 1h buckets, by metric then time (see store.ports)."""
        width = codec.check_bucket(bucket)
        where = "device_id = ? AND ts >= ? AND ts < ?" + ("" if metric is None else " AND metric = ?")
        if width is None:
            lo, hi = codec.to_utc(since, "since"), codec.to_utc(until, "until")
        else:
            lo, hi = codec.bucket_window(since, until, width)
        params: list[Any] = [device_id, ts_text(lo), ts_text(hi)] + ([] if metric is None else [metric])
        params.append(max(0, limit))
        if width is None:
            rows = self._query(f"SELECT ts, metric, value, unit FROM readings WHERE {where} ORDER BY metric, ts LIMIT ?", params)
            return [ReadingRow(from_ts_text(r[0]), r[1], r[3], 1, r[2], r[2], r[2]) for r in rows]
        start, suffix = _BUCKET_TEXT[bucket]
        rows = self._query(
            f"SELECT {start} AS b, metric, max(unit), count(*), min(value), max(value), avg(value) FROM readings"
            f" WHERE {where} GROUP BY metric, b ORDER BY metric, b LIMIT ?",
            params,
        )
        return [ReadingRow(from_ts_text(r[0] + suffix), r[1], r[2], int(r[3]), r[4], r[5], r[6]) for r in rows]

    # --- dead letters ------------------------------------------------------------------------------------
    def dead_letters(self, *, limit: int = 100, reason: str | None = None,
                     pending_only: bool = False) -> list[StoredDeadLetter]:
        """Newest dead letters first; of one reason, and/or only pending ones."""
        clauses, params = [], []
        if reason is not None:
            clauses.append("reason = ?")
            params.append(reason)
        if pending_only:
            clauses.append("replayed_at IS NULL")
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._query(f"{_DEAD_SELECT}{where} ORDER BY received_at DESC, id DESC LIMIT ?", (*params, max(0, limit)))
        return [dead_letter_from_row(r) for r in rows]

    def dead_letter(self, dead_letter_id: int) -> StoredDeadLetter | None:
        """One dead letter by id."""
        rows = self._query(f"{_DEAD_SELECT} WHERE id = ?", (int(dead_letter_id),))
        return dead_letter_from_row(rows[0]) if rows else None

    # --- users ---------------------------------------------------------------------------------------
    def save_user(self, user: UserRecord, *, at: datetime) -> bool:
        """Create or replace a user; True when it was created."""
        with self._transaction() as tx:
            created = tx.execute("SELECT 1 FROM users WHERE username = ?", (user.username,)).fetchone() is None
            tx.execute(
                "INSERT INTO users (username, password_hash, role, grid_code, patroller_id, created_at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, role = excluded.role,"
                " grid_code = excluded.grid_code, patroller_id = excluded.patroller_id",
                (user.username, user.password_hash, user.role, user.grid_code, user.patroller_id, ts_text(at, "at")),
            )
        return created

    def user(self, username: str) -> UserRecord | None:
        """One user by name."""
        rows = self._query("SELECT username, password_hash, role, grid_code, patroller_id FROM users WHERE username = ?", (username,))
        return UserRecord(*rows[0]) if rows else None

    def users(self) -> list[UserRecord]:
        """Every user, by name."""
        return [UserRecord(*r) for r in self._query("SELECT username, password_hash, role, grid_code, patroller_id FROM users ORDER BY username")]

    def delete_user(self, username: str) -> bool:
        """Remove a user (its tokens stop working); True when it existed."""
        with self._transaction() as tx:
            return tx.execute("DELETE FROM users WHERE username = ?", (username,)).rowcount > 0

    def revoke_token(self, token_id: str, *, username: str, expires_at: datetime, at: datetime) -> None:
        """Record a token as revoked until `expires_at` (idempotent); rows of tokens expired by `at` go."""
        with self._transaction() as tx:
            tx.execute("DELETE FROM revoked_tokens WHERE expires_at <= ?", (ts_text(at, "at"),))
            tx.execute("INSERT INTO revoked_tokens (token_id, username, expires_at, revoked_at) VALUES (?, ?, ?, ?)"
                       " ON CONFLICT (token_id) DO NOTHING",
                       (token_id, username, ts_text(expires_at, "expires_at"), ts_text(at, "at")))

    def token_revoked(self, token_id: str) -> bool:
        """Whether the token of that id was revoked."""
        return bool(self._query("SELECT 1 FROM revoked_tokens WHERE token_id = ?", (token_id,)))

    def dead_letter_counts(self) -> dict[str, dict[str, int]]:
        """Per reason: {"pending": n, "replayed": m}."""
        rows = self._query(
            "SELECT reason, count(*) FILTER (WHERE replayed_at IS NULL), count(replayed_at) FROM dead_letters"
            " GROUP BY reason ORDER BY reason"
        )
        return {r[0]: {"pending": int(r[1]), "replayed": int(r[2])} for r in rows}
