"""Devices, device events, alarm ends, readings and dead-letter replays (migration 0004), on both backends.

The contract part runs against a real SQLite file and a real PostgreSQL + PostGIS database. On
PostgreSQL the readings live in monthly partitions here (TimescaleDB is not installed on the test
server); the TimescaleDB path is checked with a fake connection: the mode detection and the DDL it
sends (it could not run against a real TimescaleDB here).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from shapely.geometry import Point

from alerts.model import IncidentState
from alerts.regrid import regrid_in
from alerts.routing import Router
from geo.index import GridIndex
from geo.model import Device
from ingest.model import AlarmEnd, DeadLetter, DeviceStatus, Reading
from store import open_store
from store.errors import ConflictError, IdentityConflictError, StoreError
from store.ports import DeviceState, ReadingRow, Store
from store.postgis import PostgisStore
from store.postgis_readings import (
    CAGGS,
    Readings,
    choose_mode,
    ensure_readings_schema,
    partition_bounds,
    partition_name,
)
from store.postgis_uow import COPY_MIN_ROWS
from store.sqlite import SqliteStore
from tests.integration.test_store_contract import (
    L3A,
    L3B,
    T0,
    make_alarm,
    make_district,
    make_incident,
    make_route,
)
from tests.integration.test_store_versions import T1, redraw

pytestmark = pytest.mark.integration

AT = datetime(2026, 11, 21, 0, 0, tzinfo=UTC)


def dev(device_id: str, *, identity: str | None = None, interval_s: float | None = None, fmt: str = "gridwatch",
        name: str | None = None, grid: str = L3A) -> Device:
    """A point device."""
    return Device(device_id, "sensor", name or f"Device {device_id}", Point(113.81, 27.61), grid,
                  format=fmt, identity=identity, interval_s=interval_s)


def sql_rows(store: Store, query: str) -> list[tuple[Any, ...]]:
    """Rows of a literal query, straight from the database (no store code in between)."""
    if isinstance(store, SqliteStore):
        with closing(sqlite3.connect(store.path)) as conn:
            return [tuple(r) for r in conn.execute(query)]
    assert isinstance(store, PostgisStore)
    with psycopg.connect(store.url) as conn:
        return [tuple(r) for r in conn.execute(query)]


# --- device registry ---------------------------------------------------------------------------------
def test_upsert_devices_counts_and_round_trips_the_new_fields(store_backend: Store) -> None:
    first = [dev("cam-1", identity="frigate:front_door", interval_s=60, fmt="frigate"), dev("smoke-9")]
    assert store_backend.upsert_devices(first, at=AT) == (2, 0)
    got = {d.id: d for d in store_backend.devices()}
    assert (got["cam-1"].format, got["cam-1"].identity, got["cam-1"].interval_s) == ("frigate", "frigate:front_door", 60.0)
    assert (got["smoke-9"].format, got["smoke-9"].identity, got["smoke-9"].interval_s) == ("gridwatch", None, None)
    assert got["cam-1"].geometry.equals(Point(113.81, 27.61)) and got["cam-1"].kind == "sensor"

    with store_backend.unit_of_work() as uow:
        uow.touch_devices({"cam-1": AT + timedelta(seconds=5)})
    # an update keeps state, last_seen and registered_at; the last copy of an id in the call wins
    again = [dev("cam-1", identity="frigate:porch", interval_s=30, fmt="frigate", name="old"),
             dev("cam-1", identity="frigate:porch", interval_s=30, fmt="frigate", name="Porch"), dev("fence-7")]
    assert store_backend.upsert_devices(again, at=AT + timedelta(days=1)) == (1, 1)
    got = {d.id: d for d in store_backend.devices()}
    assert (got["cam-1"].name, got["cam-1"].identity, got["cam-1"].interval_s) == ("Porch", "frigate:porch", 30.0)
    state = store_backend.device_states()["cam-1"]
    assert (state.state, state.last_seen, state.since) == ("online", AT + timedelta(seconds=5), AT + timedelta(seconds=5))
    assert store_backend.upsert_devices([], at=AT) == (0, 0)


def test_an_identity_belongs_to_one_device(store_backend: Store) -> None:
    store_backend.upsert_devices([dev("cam-1", identity="frigate:front_door")], at=AT)
    with pytest.raises(IdentityConflictError, match="cam-2.*frigate:front_door.*cam-1") as caught:
        store_backend.upsert_devices([dev("fence-1"), dev("cam-2", identity="frigate:front_door")], at=AT)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, ConflictError)
    assert (caught.value.device_id, caught.value.holder_id) == ("cam-2", "cam-1")
    assert [d.id for d in store_backend.devices()] == ["cam-1"]  # nothing of the refused call was written
    with pytest.raises(IdentityConflictError, match="'b'.*'a'"):  # two devices of one call
        store_backend.upsert_devices([dev("a", identity="x:1"), dev("b", identity="x:1")], at=AT)
    # moving identities between devices in one call is fine (the old holder gives its identity up)
    store_backend.upsert_devices([dev("cam-2", identity="frigate:back_door")], at=AT)
    assert store_backend.upsert_devices(
        [dev("cam-1", identity="frigate:back_door"), dev("cam-2", identity="frigate:front_door")], at=AT
    ) == (0, 2)
    assert {d.id: d.identity for d in store_backend.devices()} == {"cam-1": "frigate:back_door",
                                                                   "cam-2": "frigate:front_door"}
    # many devices may have no identity
    assert store_backend.upsert_devices([dev("s-1"), dev("s-2")], at=AT) == (2, 0)


def test_the_seed_registers_devices_with_defaults(store_backend: Store) -> None:
    store_backend.load_district(make_district(), "v1")
    devices = store_backend.devices()
    assert [(d.id, d.format, d.identity, d.interval_s) for d in devices] == [
        ("fence-1", "gridwatch", None, None), ("smoke-1", "gridwatch", None, None), ("thermal-1", "gridwatch", None, None)]
    states = store_backend.device_states()
    assert states["fence-1"] == DeviceState("fence-1", "unknown", None, None, {})


def test_touch_devices_reports_the_ones_that_came_back(store_backend: Store) -> None:
    store_backend.upsert_devices([dev("a", interval_s=60), dev("b", interval_s=60), dev("c")], at=AT)
    t1, t2 = AT + timedelta(seconds=10), AT + timedelta(seconds=20)
    with store_backend.unit_of_work() as uow:
        assert uow.touch_devices({"a": t1, "b": t2, "ghost": t2}) == []  # unknown -> online is no come-back
        uow.set_device_states([("b", "offline", t2 + timedelta(minutes=5), {"reason": "silent"})])
    states = store_backend.device_states()
    assert (states["a"].state, states["a"].since, states["a"].last_seen) == ("online", t1, t1)
    assert (states["b"].state, states["b"].since, states["b"].last_seen) == ("offline", t2 + timedelta(minutes=5), t2)
    assert states["c"].state == "unknown" and "ghost" not in states

    t3 = AT + timedelta(minutes=10)
    with store_backend.unit_of_work() as uow:
        assert uow.touch_devices({"b": t3, "a": t3}) == ["b"]
        assert uow.touch_devices({"b": t3 + timedelta(seconds=1)}) == []  # online now
        assert uow.touch_devices({}) == []
    states = store_backend.device_states()
    assert (states["b"].state, states["b"].since, states["b"].last_seen) == ("online", t3, t3 + timedelta(seconds=1))
    assert states["a"].since == t1  # already online: state_since unchanged
    # last_seen never moves back (a late message)
    with store_backend.unit_of_work() as uow:
        uow.touch_devices({"a": AT})
    assert store_backend.device_states()["a"].last_seen == t3
    assert store_backend.device_states()["b"].detail == {"reason": "silent"}


def test_touch_devices_from_two_workers_reports_a_come_back_once(store_backend: Store) -> None:
    store_backend.upsert_devices([dev(f"d{i}", interval_s=60) for i in range(20)], at=AT)
    with store_backend.unit_of_work() as uow:
        uow.set_device_states([(f"d{i}", "offline", AT, {}) for i in range(20)])
    results: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def worker(offset: int) -> None:
        try:
            barrier.wait()
            with store_backend.unit_of_work() as uow:
                results.append(uow.touch_devices({f"d{i}": AT + timedelta(seconds=offset) for i in range(20)}))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results[0] + results[1]) == sorted(f"d{i}" for i in range(20))  # each came back exactly once


def test_set_device_states_merges_detail_and_moves_since_on_change(store_backend: Store) -> None:
    store_backend.upsert_devices([dev("a")], at=AT)
    with store_backend.unit_of_work() as uow:
        uow.set_device_states([("a", "online", AT, {"battery": 80, "fw": "1.2"}),
                               ("a", "online", AT + timedelta(minutes=1), {"battery": 79}),
                               ("nobody", "offline", AT, {"x": 1})])
    s = store_backend.device_states()["a"]
    assert (s.state, s.since, s.detail) == ("online", AT, {"battery": 79, "fw": "1.2"})
    with store_backend.unit_of_work() as uow:
        uow.set_device_states([("a", "offline", AT + timedelta(minutes=2), {"reason": "will", "nested": {"k": [1]}})])
    s = store_backend.device_states()["a"]
    assert (s.state, s.since) == ("offline", AT + timedelta(minutes=2))
    assert s.detail == {"battery": 79, "fw": "1.2", "reason": "will", "nested": {"k": [1]}}
    with pytest.raises(ValueError, match="sleeping"), store_backend.unit_of_work() as uow:
        uow.set_device_states([("a", "sleeping", AT, {})])


def test_silent_devices(store_backend: Store) -> None:
    store_backend.upsert_devices([dev("hb-60", interval_s=60), dev("hb-300", interval_s=300), dev("free")], at=AT)
    assert store_backend.silent_devices(AT + timedelta(seconds=60)) == []  # not past: exactly due
    assert store_backend.silent_devices(AT + timedelta(seconds=60, microseconds=1)) == [("hb-60", AT, 60.0)]
    with store_backend.unit_of_work() as uow:
        uow.touch_devices({"hb-60": AT + timedelta(seconds=100)})
    assert store_backend.silent_devices(AT + timedelta(seconds=150)) == []
    assert store_backend.silent_devices(AT + timedelta(seconds=400)) == [
        ("hb-300", AT, 300.0), ("hb-60", AT + timedelta(seconds=100), 60.0)]
    with store_backend.unit_of_work() as uow:
        uow.set_device_states([("hb-60", "offline", AT + timedelta(seconds=170), {"reason": "silent"})])
    assert [s[0] for s in store_backend.silent_devices(AT + timedelta(seconds=400))] == ["hb-300"]
    assert_utc_rows = store_backend.silent_devices(AT + timedelta(days=1))
    assert all(r[1].utcoffset() == timedelta(0) for r in assert_utc_rows)


def test_device_events_are_appended(store_backend: Store) -> None:
    events = [
        DeviceStatus("cam-1", T0, True, "heartbeat", T0 + timedelta(seconds=1), b'{"ts":1}', {"battery": 91}),
        DeviceStatus("cam-1", T0 + timedelta(minutes=1), False, "will", T0 + timedelta(minutes=1), b"offline"),
    ]
    many = [DeviceStatus(f"s-{i}", T0 + timedelta(seconds=i), True, "status", T0, b"\x00\xff", {"i": i, "v": float("nan")})
            for i in range(COPY_MIN_ROWS + 6)]
    with store_backend.unit_of_work() as uow:
        uow.add_device_events(events)
        uow.add_device_events([])
        uow.add_device_events(many)
    rows = sql_rows(store_backend, "SELECT device_id, kind, online, raw FROM device_events ORDER BY id")
    assert len(rows) == 2 + len(many)
    assert [(r[0], r[1], bool(r[2]), bytes(r[3])) for r in rows[:2]] == [
        ("cam-1", "heartbeat", True, b'{"ts":1}'), ("cam-1", "will", False, b"offline")]
    assert bytes(rows[2][3]) == b"\x00\xff"
    details = sql_rows(store_backend, "SELECT detail FROM device_events WHERE device_id = 's-3'")
    detail = details[0][0] if isinstance(details[0][0], dict) else json.loads(details[0][0])
    assert detail == {"i": 3, "v": "NaN"}


# --- alarm ends -------------------------------------------------------------------------------------
def test_end_alarms_by_message_id_and_by_type(store_backend: Store) -> None:
    alarms = [
        make_alarm("cam-1", "evt-1", at=T0, type="camera.region_entrance"),
        make_alarm("cam-1", "evt-2", at=T0 + timedelta(seconds=10), type="camera.region_entrance"),
        make_alarm("cam-1", "evt-3", at=T0 + timedelta(seconds=20), type="camera.line_crossing"),
        make_alarm("smoke-1", "z-1", at=T0, type="smoke.alarm"),
        make_alarm("smoke-1", "z-2", at=T0 + timedelta(seconds=5), type="smoke.alarm"),
        make_alarm("smoke-2", "y-1", at=T0, type="smoke.alarm"),
        make_alarm("smoke-2", "y-2", at=T0 + timedelta(seconds=5), type="smoke.alarm"),
        make_alarm("smoke-2", "y-3", at=T0 + timedelta(seconds=9), type="smoke.alarm"),
    ]
    with store_backend.unit_of_work() as uow:
        uow.add_alarms([(a, "inc-1") for a in alarms])

    def ended() -> dict[str, Any]:
        return {r[0]: r[1] for r in sql_rows(store_backend, "SELECT msg_id, ended_at FROM alarms ORDER BY id")}

    end_at = T0 + timedelta(minutes=1)
    with store_backend.unit_of_work() as uow:
        assert uow.end_alarms([AlarmEnd("cam-1", end_at, end_at, b"end", msg_id="evt-1")]) == 1
        assert uow.end_alarms([AlarmEnd("cam-1", end_at, end_at, b"end", msg_id="evt-1")]) == 0  # ended already
        assert uow.end_alarms([AlarmEnd("cam-1", end_at, end_at, b"end", msg_id="nope"),
                               AlarmEnd("ghost", end_at, end_at, b"end", type="smoke.alarm")]) == 0
    assert {k for k, v in ended().items() if v is not None} == {"evt-1"}
    with store_backend.unit_of_work() as uow:
        # no message id: the newest not-ended alarm of the type; two ends end the two newest
        assert uow.end_alarms([AlarmEnd("smoke-1", end_at, end_at, b"false", type="smoke.alarm")]) == 1
    assert {k for k, v in ended().items() if v is not None} == {"evt-1", "z-2"}
    with store_backend.unit_of_work() as uow:
        assert uow.end_alarms([AlarmEnd("smoke-1", end_at, end_at, b"false", type="smoke.alarm")] * 2) == 1
        # no type either: the device's newest not-ended alarm of any type
        assert uow.end_alarms([AlarmEnd("cam-1", end_at, end_at, b"stop")]) == 1
        # ends of both forms in one call apply in order
        assert uow.end_alarms([AlarmEnd("smoke-2", end_at, end_at, b"", type="smoke.alarm"),
                               AlarmEnd("smoke-2", end_at, end_at, b"", msg_id="y-1"),
                               AlarmEnd("smoke-2", end_at, end_at, b"", type="smoke.alarm")]) == 3
    got = ended()
    assert {k for k, v in got.items() if v is not None} == {"evt-1", "z-1", "z-2", "evt-3", "y-1", "y-2", "y-3"}
    assert store_backend.count_alarms() == 8  # an end never inserts
    ended_evt3 = got["evt-3"]
    if isinstance(ended_evt3, str):
        ended_evt3 = datetime.fromisoformat(ended_evt3)
    assert ended_evt3 == end_at


# --- readings ----------------------------------------------------------------------------------------
def at(hh: int, mm: int, ss: int, us: int = 0) -> datetime:
    return datetime(2026, 11, 21, hh, mm, ss, us, tzinfo=UTC)


SAMPLES = [
    Reading("th-1", at(10, 0, 5), "temp", 20.0, "°C"),
    Reading("th-1", at(10, 0, 35), "temp", 22.0, "°C"),
    Reading("th-1", at(10, 1, 10), "temp", 30.0, "°C"),
    Reading("th-1", at(11, 5, 0), "temp", 10.0, "°C"),
    Reading("th-1", at(10, 0, 20), "volt", 7.5, "kV"),
    Reading("other", at(10, 0, 6), "temp", 99.0, "°C"),
]


def test_add_readings_skips_duplicates(store_backend: Store) -> None:
    with store_backend.unit_of_work() as uow:
        assert uow.add_readings(SAMPLES + [SAMPLES[0], Reading("th-1", at(10, 0, 5), "temp", 55.0)]) == len(SAMPLES)
        assert uow.add_readings([]) == 0
    with store_backend.unit_of_work() as uow:  # a redelivered message
        assert uow.add_readings(SAMPLES[:3] + [Reading("th-1", at(10, 0, 5, 1), "temp", 21.0, "°C")]) == 1
        # not a sample: skipped, not counted
        assert uow.add_readings([Reading("th-1", at(12, 0, 0), "temp", math.nan), Reading("th-1", at(12, 0, 1), "temp", math.inf)]) == 0
    raw = store_backend.readings("th-1", since=at(0, 0, 0), until=at(23, 0, 0), metric="temp")
    assert [(r.ts, r.avg) for r in raw][:2] == [(at(10, 0, 5), 20.0), (at(10, 0, 5, 1), 21.0)]
    assert len(raw) == 5


def test_raw_readings_are_ordered_by_metric_then_time(store_backend: Store) -> None:
    with store_backend.unit_of_work() as uow:
        uow.add_readings(SAMPLES)
    rows = store_backend.readings("th-1", since=at(10, 0, 0), until=at(11, 0, 0))
    assert rows == [
        ReadingRow(at(10, 0, 5), "temp", "°C", 1, 20.0, 20.0, 20.0),
        ReadingRow(at(10, 0, 35), "temp", "°C", 1, 22.0, 22.0, 22.0),
        ReadingRow(at(10, 1, 10), "temp", "°C", 1, 30.0, 30.0, 30.0),
        ReadingRow(at(10, 0, 20), "volt", "kV", 1, 7.5, 7.5, 7.5),
    ]
    assert all(r.ts.utcoffset() == timedelta(0) for r in rows)
    # [since, until): until excluded; a zone other than UTC is the same instant
    cst = datetime(2026, 11, 21, 18, 0, 35, tzinfo=T0.tzinfo)  # 10:00:35 UTC
    assert [r.ts for r in store_backend.readings("th-1", since=at(10, 0, 5), until=cst, metric="temp")] == [at(10, 0, 5)]
    assert len(store_backend.readings("th-1", since=at(0, 0, 0), until=at(23, 0, 0), limit=2)) == 2
    assert store_backend.readings("nobody", since=at(0, 0, 0), until=at(23, 0, 0)) == []
    with pytest.raises(ValueError, match="5m"):
        store_backend.readings("th-1", since=at(0, 0, 0), until=at(23, 0, 0), bucket="5m")


def test_bucketed_readings_match_hand_computed_numbers(store_backend: Store) -> None:
    with store_backend.unit_of_work() as uow:
        uow.add_readings(SAMPLES)
    minutes = store_backend.readings("th-1", since=at(10, 0, 0), until=at(12, 0, 0), bucket="1m")
    assert minutes == [
        ReadingRow(at(10, 0, 0), "temp", "°C", 2, 20.0, 22.0, pytest.approx(21.0)),
        ReadingRow(at(10, 1, 0), "temp", "°C", 1, 30.0, 30.0, pytest.approx(30.0)),
        ReadingRow(at(11, 5, 0), "temp", "°C", 1, 10.0, 10.0, pytest.approx(10.0)),
        ReadingRow(at(10, 0, 0), "volt", "kV", 1, 7.5, 7.5, pytest.approx(7.5)),
    ]
    hours = store_backend.readings("th-1", since=at(10, 0, 0), until=at(12, 0, 0), bucket="1h", metric="temp")
    assert hours == [
        ReadingRow(at(10, 0, 0), "temp", "°C", 3, 20.0, 30.0, pytest.approx(24.0)),
        ReadingRow(at(11, 0, 0), "temp", "°C", 1, 10.0, 10.0, pytest.approx(10.0)),
    ]
    # every bucket overlapping [since, until) comes whole: 10:00:30 .. 10:01:05 -> the 10:00 and 10:01 minutes
    edge = store_backend.readings("th-1", since=at(10, 0, 30), until=at(10, 1, 5), bucket="1m", metric="temp")
    assert [(r.ts, r.count, r.avg) for r in edge] == [(at(10, 0, 0), 2, pytest.approx(21.0)), (at(10, 1, 0), 1, 30.0)]
    # an until on a bucket boundary excludes that bucket
    assert [r.ts for r in store_backend.readings("th-1", since=at(10, 0, 0), until=at(10, 1, 0), bucket="1m",
                                                 metric="temp")] == [at(10, 0, 0)]
    assert [r.ts for r in store_backend.readings("th-1", since=at(10, 30, 0), until=at(11, 0, 0, 1), bucket="1h",
                                                 metric="temp")] == [at(10, 0, 0), at(11, 0, 0)]
    assert len(store_backend.readings("th-1", since=at(10, 0, 0), until=at(12, 0, 0), bucket="1m", limit=3)) == 3


def test_many_readings_go_through_the_bulk_path(store_backend: Store) -> None:
    n = COPY_MIN_ROWS * 4
    batch = [Reading(f"dev-{i % 5}", at(9, 0, 0) + timedelta(seconds=i), "temp", float(i), "°C") for i in range(n)]
    with store_backend.unit_of_work() as uow:
        assert uow.add_readings(batch + batch[:10]) == n  # repeats inside the call: the first copy wins
    with store_backend.unit_of_work() as uow:
        assert uow.add_readings(batch[: n // 2] + [Reading("dev-new", at(9, 0, 0), "temp", 1.0)] * 2) == 1
    rows = store_backend.readings("dev-0", since=at(0, 0, 0), until=at(23, 0, 0), bucket="1h")
    want = [float(i) for i in range(0, n, 5)]
    assert rows == [ReadingRow(at(9, 0, 0), "temp", "°C", len(want), min(want), max(want), pytest.approx(sum(want) / len(want)))]


# --- dead letters ----------------------------------------------------------------------------------------
def test_dead_letter_filters_counters_and_replay_marks(store_backend: Store) -> None:
    letters = [
        DeadLetter("gridwatch/devices/a/alarm", b"{", "json", "bad json", T0),
        DeadLetter("gridwatch/devices/b/alarm", b"{}", "schema", "no ts", T0 + timedelta(seconds=1)),
        DeadLetter("gridwatch/devices/c/alarm", b"[", "json", "bad json", T0 + timedelta(seconds=2)),
    ]
    with store_backend.unit_of_work() as uow:
        uow.add_dead_letters(letters)
    stored = store_backend.dead_letters()
    assert [s.dead_letter for s in stored] == letters[::-1]
    assert all((s.replayed_at, s.replay_result, s.replays, s.pending) == (None, None, 0, True) for s in stored)
    ids = {s.dead_letter.payload: s.id for s in stored}
    assert [s.id for s in store_backend.dead_letters(reason="json")] == [ids[b"["], ids[b"{"]]
    assert store_backend.dead_letter_counts() == {"json": {"pending": 2, "replayed": 0}, "schema": {"pending": 1, "replayed": 0}}

    later = T0 + timedelta(hours=1)
    with store_backend.unit_of_work() as uow:
        uow.mark_dead_letters([ids[b"{"], ids[b"{}"]], at=later, result="still invalid: no ts", replayed=False)
        uow.mark_dead_letters([ids[b"{"]], at=later + timedelta(minutes=1), result="accepted", replayed=True)
        uow.mark_dead_letters([], at=later, result="x", replayed=True)
        uow.mark_dead_letters([999_999], at=later, result="x", replayed=True)  # unknown: ignored
    one = store_backend.dead_letter(ids[b"{"])
    assert one is not None and (one.replays, one.replay_result, one.replayed_at, one.pending) == (
        2, "accepted", later + timedelta(minutes=1), False)
    assert one.replayed_at is not None and one.replayed_at.utcoffset() == timedelta(0)
    assert one.dead_letter == letters[0]
    schema = store_backend.dead_letter(ids[b"{}"])
    assert schema is not None and (schema.replays, schema.replay_result, schema.replayed_at) == (1, "still invalid: no ts", None)
    assert store_backend.dead_letter(999_999) is None
    assert store_backend.dead_letter_counts() == {"json": {"pending": 1, "replayed": 1}, "schema": {"pending": 1, "replayed": 0}}
    assert [s.id for s in store_backend.dead_letters(pending_only=True)] == [ids[b"["], ids[b"{}"]]
    assert [s.id for s in store_backend.dead_letters(reason="json", pending_only=True, limit=5)] == [ids[b"["]]
    assert [s.id for s in store_backend.dead_letters(limit=1)] == [ids[b"["]]  # the old call still works


# --- publishing a grid version with the new device columns -----------------------------------------------
def test_publish_moves_devices_and_keeps_their_registration(store_backend: Store) -> None:
    store_backend.load_district(make_district(), "v1")
    store_backend.upsert_devices([dev("thermal-1", identity="hikvision:aa/1", interval_s=120, fmt="hikvision", grid=L3B)],
                                 at=AT)
    with store_backend.unit_of_work() as uow:
        uow.touch_devices({"thermal-1": AT + timedelta(seconds=3)})
        uow.set_device_states([("thermal-1", "online", AT + timedelta(seconds=3), {"battery": 50})])
        # an open incident in L3B, which the redraw merges into L3A
        uow.save_incidents([make_incident("inc-b", route=make_route(L3B, lon=113.86, lat=27.62), created=T0,
                                          state=IncidentState.REPORTED)])
    grids, buildings = redraw()
    draft = store_backend.create_draft("redraw-1", grids, buildings, source=None, crs=None, actor="planner", at=T1)
    router = Router(GridIndex(store_backend.grids(version=draft.id), store_backend.buildings(version=draft.id),
                              version=draft.id), store_backend.patrollers())
    with store_backend.unit_of_work() as uow:
        uow.publish_version(draft.id, at=T1, actor="planner", detail={"policy": "move"})
        uow.move_devices([("thermal-1", L3A)])
        outcome = regrid_in(uow, "inc-b", router, now=T1, actor="planner", positions={})
    assert outcome is not None and (outcome.from_grid, outcome.to_grid) == (L3B, L3A)
    moved = {d.id: d for d in store_backend.devices()}["thermal-1"]
    assert (moved.grid_code, moved.format, moved.identity, moved.interval_s) == (L3A, "hikvision", "hikvision:aa/1", 120.0)
    state = store_backend.device_states()["thermal-1"]
    assert (state.state, state.last_seen, state.detail) == ("online", AT + timedelta(seconds=3), {"battery": 50})
    incident = store_backend.incident("inc-b")
    assert incident is not None and incident.route.l3 == L3A


# --- PostgreSQL: partitions (the fallback when TimescaleDB is not usable) ---------------------------------
@contextmanager
def pg(store: PostgisStore) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(store.url, autocommit=True) as conn:
        conn.execute("SET timezone = 'UTC'")  # the test server's zone is Asia/Shanghai
        yield conn


def partitions(store: PostgisStore) -> list[str]:
    with pg(store) as conn:
        rows = conn.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                            " WHERE i.inhparent = 'readings'::regclass ORDER BY 1").fetchall()
    return [r[0] for r in rows]


def test_postgis_readings_use_monthly_partitions_with_brin(postgis_store: PostgisStore) -> None:
    assert postgis_store.readings_mode == "partitioned"
    with pg(postgis_store) as conn:
        assert conn.execute("SELECT relkind::text FROM pg_class WHERE oid = 'readings'::regclass").fetchone() == ("p",)
        meta = dict(conn.execute("SELECT key, value FROM readings_meta").fetchall())
    assert meta == {"mode": "partitioned", "caggs": "no"}
    assert partitions(postgis_store) == []
    # CST times: 2026-12-01 07:59 +08 is still November in UTC; a month's partition follows UTC
    cst = T0.tzinfo
    batch = [
        Reading("th-1", datetime(2026, 12, 1, 7, 59, tzinfo=cst), "temp", 1.0),
        Reading("th-1", datetime(2026, 12, 1, 8, 0, tzinfo=cst), "temp", 2.0),
        Reading("th-1", datetime(2026, 12, 31, 23, 0, tzinfo=UTC), "temp", 3.0),
    ]
    with postgis_store.unit_of_work() as uow:
        assert uow.add_readings(batch) == 3
    assert partitions(postgis_store) == ["readings_p2026_11", "readings_p2026_12"]
    with pg(postgis_store) as conn:
        per_partition = dict(conn.execute("SELECT tableoid::regclass::text, count(*) FROM readings GROUP BY 1").fetchall())
        assert per_partition == {"readings_p2026_11": 1, "readings_p2026_12": 2}
        parent = {r[0]: r[1] for r in conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'readings'")}
        assert "USING brin (ts)" in parent["readings_ts_brin"]
        assert "UNIQUE" in parent["readings_key"] and "(device_id, metric, ts)" in parent["readings_key"]
        for name in ("readings_p2026_11", "readings_p2026_12"):
            methods = sorted(
                (r[0], r[1]) for r in conn.execute(
                    "SELECT a.amname, i.indisunique FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                    " JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = %s::regclass", (name,)))
            assert methods == [("brin", False), ("btree", True)]
        bounds = conn.execute("SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = 'readings_p2026_11'").fetchone()
        assert bounds is not None and "2026-11-01 00:00:00+00" in bounds[0].replace("'", "")
    # a second store (another process) finds them and writes without creating anything
    other = PostgisStore(postgis_store.url, min_size=1, max_size=2)
    try:
        with other.unit_of_work() as uow:
            assert uow.add_readings([Reading("th-2", datetime(2026, 11, 2, tzinfo=UTC), "temp", 4.0)]) == 1
    finally:
        other.close()
    assert len(partitions(postgis_store)) == 2
    rows = postgis_store.readings("th-1", since=datetime(2026, 11, 30, tzinfo=UTC), until=datetime(2027, 1, 1, tzinfo=UTC),
                                  bucket="1h")
    assert [(r.ts, r.count) for r in rows] == [(datetime(2026, 11, 30, 23, 0, tzinfo=UTC), 1),
                                              (datetime(2026, 12, 1, 0, 0, tzinfo=UTC), 1),
                                              (datetime(2026, 12, 31, 23, 0, tzinfo=UTC), 1)]


def test_postgis_partitions_made_inside_a_writing_transaction(postgis_store: PostgisStore) -> None:
    jan, feb, mar = (datetime(2027, m, 3, tzinfo=UTC) for m in (1, 2, 3))
    with postgis_store.unit_of_work() as uow:
        assert uow.add_readings([Reading("a", jan, "m", 1.0)]) == 1  # separate connection
        assert uow.add_readings([Reading("a", feb, "m", 1.0)]) == 1  # holds readings: savepoint in this transaction
    assert partitions(postgis_store) == ["readings_p2027_01", "readings_p2027_02"]

    class Boom(Exception):
        pass

    with pytest.raises(Boom), postgis_store.unit_of_work() as uow:
        uow.add_readings([Reading("a", feb, "m", 2.0, "x")])
        uow.add_readings([Reading("a", mar, "m", 1.0)])  # made in this transaction: rolled back with it
        raise Boom
    assert partitions(postgis_store) == ["readings_p2027_01", "readings_p2027_02"]
    with postgis_store.unit_of_work() as uow:  # not cached as existing: made again
        assert uow.add_readings([Reading("a", mar, "m", 1.0), Reading("a", feb, "m", 2.0)]) == 1
    assert partitions(postgis_store)[-1] == "readings_p2027_03"


def test_postgis_partitions_made_by_concurrent_writers_once(postgis_store: PostgisStore) -> None:
    months = [datetime(2028, m, 15, tzinfo=UTC) for m in range(1, 7)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def writer(k: int) -> None:
        store = PostgisStore(postgis_store.url, min_size=1, max_size=1)  # a process of its own: an empty cache
        try:
            barrier.wait()
            with store.unit_of_work() as uow:
                uow.add_readings([Reading(f"w{k}", t, "m", float(k)) for t in months])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            store.close()

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert partitions(postgis_store) == [f"readings_p2028_{m:02d}" for m in range(1, 7)]
    with pg(postgis_store) as conn:
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (24,)


def test_postgis_a_dropped_partition_is_made_again_on_retry(postgis_store: PostgisStore) -> None:
    t = datetime(2029, 4, 1, tzinfo=UTC)
    with postgis_store.unit_of_work() as uow:
        uow.add_readings([Reading("a", t, "m", 1.0)])
    with pg(postgis_store) as conn:
        conn.execute("DROP TABLE readings_p2029_04")  # retention
    with pytest.raises(StoreError, match="no partition"), postgis_store.unit_of_work() as uow:
        uow.add_readings([Reading("a", t, "m", 1.0)])  # the cache still believed in it
    with postgis_store.unit_of_work() as uow:  # the redelivery
        assert uow.add_readings([Reading("a", t, "m", 1.0)]) == 1


def test_postgis_readings_mode_is_recorded_once_and_kept(pg_blank_url: str) -> None:
    store = PostgisStore(pg_blank_url, min_size=1, max_size=2, timescale="off")
    try:
        store.migrate()
        assert store.readings_mode == "partitioned"
        assert store.migrate() == []
        with psycopg.connect(pg_blank_url, autocommit=True) as conn:
            assert ensure_readings_schema(conn, timescale="auto") == "partitioned"  # an existing table keeps its mode
            assert choose_mode(conn, "auto") == "partitioned"  # no TimescaleDB on this server
            assert not conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone()[0]
    finally:
        store.close()


def test_open_store_timescale_setting(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDWATCH_TIMESCALE", "sometimes")
    with pytest.raises(ValueError, match="GRIDWATCH_TIMESCALE"):
        open_store(pg_url)
    monkeypatch.setenv("GRIDWATCH_TIMESCALE", "off")
    store = open_store(pg_url)
    try:
        assert isinstance(store, PostgisStore) and store._readings.timescale == "off"
    finally:
        store.close()
    store = open_store(pg_url, timescale="auto")
    try:
        assert store._readings.timescale == "auto"  # type: ignore[attr-defined]
    finally:
        store.close()
    with pytest.raises(ValueError, match="timescale"):
        PostgisStore(pg_url, timescale="on")


# --- TimescaleDB mode: detection and DDL, against a fake connection ----------------------------------------
class FakeCursor:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows


class FakeTimescaleServer:
    """Answers what ensure_readings_schema asks; records every statement and whether it ran in a transaction."""

    def __init__(self, *, available: bool = True, preload: bool = True, extversion: str = "2.17.2",
                 hypertable_fails: bool = False, tsl: bool = True) -> None:
        self.autocommit = True
        self.available, self.preload, self.extversion = available, preload, extversion
        self.hypertable_fails, self.tsl = hypertable_fails, tsl
        self.log: list[tuple[str, bool]] = []
        self.params: list[Any] = []
        self._depth = 0

    def execute(self, query: Any, params: Any = None) -> FakeCursor:
        text = query if isinstance(query, str) else query.as_string(None)
        self.log.append((text, self._depth > 0))
        if params is not None:
            self.params.append(tuple(params))
        if "pg_available_extensions" in text:
            return FakeCursor([(1 if self.available else 0,)])
        if text.startswith("CREATE EXTENSION"):
            if not self.preload:
                raise psycopg.errors.FeatureNotSupported('extension "timescaledb" must be preloaded')
            return FakeCursor([])
        if "extversion" in text:
            return FakeCursor([(self.extversion,)])
        if "to_regclass('readings')" in text:
            return FakeCursor([(False,)])
        if "create_hypertable" in text and self.hypertable_fails:
            raise psycopg.errors.InternalError("hypertable refused")
        if ("timescaledb.compress" in text or "timescaledb.continuous" in text) and not self.tsl:
            raise psycopg.errors.FeatureNotSupported("functionality not supported under the current \"apache\" license")
        if "CREATE MATERIALIZED VIEW" in text and self._depth:
            raise psycopg.errors.ActiveSqlTransaction("cannot run inside a transaction block")
        return FakeCursor([])

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1

    def sent(self, needle: str) -> list[tuple[str, bool]]:
        return [(s, tx) for s, tx in self.log if needle in s]


def test_timescale_mode_is_chosen_when_the_extension_can_be_created() -> None:
    server = FakeTimescaleServer()
    assert choose_mode(server, "auto") == "timescaledb"  # type: ignore[arg-type]
    assert server.sent("CREATE EXTENSION IF NOT EXISTS timescaledb")
    for fake, why in ((FakeTimescaleServer(available=False), "not installed"),
                      (FakeTimescaleServer(preload=False), "not in shared_preload_libraries")):
        assert choose_mode(fake, "auto") == "partitioned", why  # type: ignore[arg-type]
    off = FakeTimescaleServer()
    assert choose_mode(off, "off") == "partitioned" and off.log == []  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sometimes"):
        choose_mode(off, "sometimes")  # type: ignore[arg-type]


def test_timescale_schema_ddl() -> None:
    server = FakeTimescaleServer()
    assert ensure_readings_schema(server, timescale="auto") == "timescaledb"  # type: ignore[arg-type]
    [(hyper, in_tx)] = server.sent("create_hypertable")
    assert in_tx and "by_range('ts', INTERVAL '1 day')" in hyper and "if_not_exists => TRUE" in hyper
    assert server.sent("CREATE UNIQUE INDEX IF NOT EXISTS readings_key ON readings (device_id, metric, ts)")
    [(compress, _)] = server.sent("timescaledb.compress,")
    assert "compress_segmentby = 'device_id, metric'" in compress and "compress_orderby = 'ts DESC'" in compress
    assert server.sent("add_compression_policy('readings', compress_after => INTERVAL '7 days'")
    views = server.sent("CREATE MATERIALIZED VIEW")
    assert [v.split()[6] for v, _ in views] == [name for name, *_ in CAGGS] == ["readings_1m", "readings_1h"]
    assert all(not tx for _, tx in views)  # outside a transaction block
    assert all("timescaledb.materialized_only = false" in v and "time_bucket(INTERVAL" in v for v, _ in views)
    assert len(server.sent("add_continuous_aggregate_policy")) == 2
    assert not server.sent("PARTITION BY")
    assert ("mode", "timescaledb") in server.params and ("caggs", "yes") in server.params
    # before TimescaleDB 2.13: the old create_hypertable interface
    old = FakeTimescaleServer(extversion="2.11.2")
    assert ensure_readings_schema(old, timescale="auto") == "timescaledb"  # type: ignore[arg-type]
    assert "chunk_time_interval => INTERVAL '1 day'" in old.sent("create_hypertable")[0][0]


def test_timescale_failures_fall_back() -> None:
    refused = FakeTimescaleServer(hypertable_fails=True)
    assert ensure_readings_schema(refused, timescale="auto") == "partitioned"  # type: ignore[arg-type]
    assert refused.sent("PARTITION BY RANGE (ts)") and refused.sent("USING brin (ts)")
    apache = FakeTimescaleServer(tsl=False)  # the Apache-2 build: a hypertable, no compression, no aggregates
    assert ensure_readings_schema(apache, timescale="auto") == "timescaledb"  # type: ignore[arg-type]
    assert not apache.sent("add_continuous_aggregate_policy") and ("caggs", "no") in apache.params
    assert ensure_readings_schema(FakeTimescaleServer(preload=False), timescale="auto") == "partitioned"  # type: ignore[arg-type]


def test_partition_naming_and_bounds() -> None:
    assert partition_name((2026, 1)) == "readings_p2026_01"
    assert partition_bounds((2026, 12)) == ("2026-12-01 00:00:00+00", "2027-01-01 00:00:00+00")
    assert Readings(None).timescale == "auto"
