"""The store contract: one suite, run against a real SQLite file and a real PostGIS database."""

from __future__ import annotations

import dataclasses
import gc
import os
import sqlite3
import threading
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
import shapely
from shapely.geometry import LineString, MultiPolygon, Point, box

from alerts.model import (
    HistoryEntry,
    Incident,
    IncidentState,
    Notification,
    RouteRecord,
)
from geo.model import (
    Building,
    Device,
    District,
    Grid,
    Patroller,
    RosterException,
    Shift,
)
from ingest.model import Alarm, DeadLetter, PatrollerPosition
from store import open_store
from store.errors import ConflictError, StoreError
from store.migrate import Migration, load_migrations
from store.ports import IncidentQuery, Store
from store.postgis import PostgisStore

pytestmark = pytest.mark.integration

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 21, 8, 15, 2, 123456, tzinfo=CST)

L1 = "430102001"
L2A, L2B = "430102001001", "430102001002"
L3A, L3B, L3C = "430102001001001", "430102001001002", "430102001002001"
HEAD = [m.name for m in load_migrations("sqlite")]


class Boom(Exception):
    """Raised inside a unit of work to force a rollback."""


# --- builders -------------------------------------------------------------------------------------
def make_district(name: str = "Test district", *, shift_name: str = "A") -> District:
    """Three levels of hand-made boxes around lon 113.85, lat 27.62; L3C is a MultiPolygon."""
    grids = (
        Grid(L1, 1, "Street 1", box(113.80, 27.60, 113.90, 27.70)),
        Grid(L2A, 2, "Community A", box(113.80, 27.60, 113.90, 27.65), L1),
        Grid(L2B, 2, "Community B", box(113.80, 27.65, 113.90, 27.70), L1),
        Grid(L3A, 3, "Unit A1", box(113.80, 27.60, 113.85, 27.65), L2A),
        Grid(L3B, 3, "Unit A2", box(113.85, 27.60, 113.90, 27.65), L2A),
        Grid(
            L3C,
            3,
            "Unit B1",
            MultiPolygon([box(113.80, 27.65, 113.85, 27.70), box(113.85, 27.65, 113.90, 27.70)]),
            L2B,
        ),
    )
    buildings = (
        Building(f"{L3A}00001", L3A, "Block 1", box(113.81, 27.61, 113.812, 27.612)),
        Building(f"{L3B}00001", L3B, "Block 2", box(113.86, 27.61, 113.862, 27.612)),
    )
    devices = (
        Device("fence-1", "fence", "North fence", LineString([(113.80, 27.65), (113.85, 27.65)]), L3A, ("Z1", "Z2")),
        Device("thermal-1", "thermal", "Tower camera", Point(113.86, 27.62), L3B),
        Device("smoke-1", "smoke", "Block 1 smoke", Point(113.811, 27.611), L3A),
    )
    patrollers = (
        Patroller(
            "p-1",
            f"Patroller {shift_name}",
            "13800000001",
            (L3A, L3B),
            (Shift(frozenset({0, 1, 2, 3, 4}), time(8), time(20)), Shift(frozenset({5, 6}), time(22), time(6))),
            (113.82, 27.62),
        ),
        Patroller("p-2", "Patroller B", "13800000002", (L3C,), exceptions=(
            RosterException(date(2026, 12, 1), False), RosterException(date(2026, 12, 2), True, time(22), time(6)),
        ), backup_grid_codes=(L3A, L3B)),
    )
    return District(name, grids, buildings, patrollers, devices)


def make_alarm(device_id: str, msg_id: str, *, at: datetime = T0, type: str = "fence.intrusion", **kw: Any) -> Alarm:
    """An alarm; its raw payload names the key so round-trips can be checked."""
    return Alarm(
        device_id=device_id,
        msg_id=msg_id,
        ts=at,
        type=type,
        severity=kw.pop("severity", 3),
        received_at=at + timedelta(seconds=1),
        raw=kw.pop("raw", f'{{"id": "{msg_id}"}}'.encode()),
        **kw,
    )


def make_route(l3: str = L3A, lon: float = 113.82, lat: float = 27.62) -> RouteRecord:
    """A route record of a point in one L3 grid."""
    return RouteRecord(
        lon=lon,
        lat=lat,
        point_source="payload",
        grid_version=1,
        l1=l3[:9],
        l2=l3[:12],
        l3=l3,
        building=None,
        patroller_id="p-1",
        rule="nearest-on-duty-assigned",
        routed_at=T0,
    )


def make_incident(
    incident_id: str,
    *,
    device_id: str | None = "fence-1",
    type: str = "fence.intrusion",
    state: IncidentState = IncidentState.REPORTED,
    created: datetime = T0,
    last_alarm: datetime | None = None,
    route: RouteRecord | None = None,
    updated: datetime | None = None,
) -> Incident:
    """An incident created at `created` whose last alarm is `last_alarm` (default: created)."""
    return Incident(
        id=incident_id,
        type=type,
        state=state,
        severity=3,
        source="device",
        route=route or make_route(),
        created_at=created,
        updated_at=updated or created,
        device_id=device_id,
        first_alarm_at=created,
        last_alarm_at=last_alarm or created,
    )


def assert_utc(value: datetime) -> None:
    """The store gives back aware datetimes in UTC."""
    assert value.tzinfo is not None and value.utcoffset() == timedelta(0), value


def same_geometry(a: shapely.Geometry, b: shapely.Geometry) -> bool:
    """Same type and the exact same coordinates."""
    return a.geom_type == b.geom_type and bool(shapely.equals_exact(a, b, tolerance=0))


# --- migrations and opening ---------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["sqlite", "postgis"])
def test_migrate_applies_once_then_is_a_noop(backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_blank_url")
    store = open_store(url)
    try:
        assert store.migrate() == HEAD
        assert store.migrate() == []
        assert store.count_alarms() == 0
    finally:
        store.close()
    reopened = open_store(url)
    try:
        assert reopened.migrate() == []
    finally:
        reopened.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgis"])
def test_a_failing_migration_leaves_nothing_behind(
    backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    dialect = "sqlite" if backend == "sqlite" else "postgres"
    module = "store.sqlite" if backend == "sqlite" else "store.postgis"
    head = load_migrations(dialect)
    n = head[-1].version + 1
    broken = Migration(n, f"{n:04d}_broken", "CREATE TABLE extra (x integer);\nSELECT no_such_function();\n")
    fixed = Migration(n, f"{n:04d}_extra", "CREATE TABLE extra (x integer);\n")

    def tables() -> set[str]:
        if backend == "sqlite":
            with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
                return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        with psycopg.connect(url) as conn:
            return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}

    store = open_store(url)
    try:
        store.migrate()
        monkeypatch.setattr(f"{module}.load_migrations", lambda _dialect: [*head, broken])
        with pytest.raises(StoreError, match="no_such_function"):
            store.migrate()
        assert "extra" not in tables()
        monkeypatch.setattr(f"{module}.load_migrations", lambda _dialect: [*head, fixed])
        assert store.migrate() == [f"{n:04d}_extra"]
        assert store.migrate() == []
        assert "extra" in tables()
    finally:
        store.close()


def test_migrations_are_the_same_list_on_both_backends() -> None:
    assert [m.name for m in load_migrations("postgres")] == HEAD


def test_sqlite_url_forms(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="in-memory"):
        open_store("sqlite:///:memory:")
    nested = tmp_path / "a" / "b" / "gw.db"
    store = open_store(f"sqlite:///{nested}")
    try:
        assert store.migrate() == HEAD
        assert nested.is_file()
    finally:
        store.close()


# --- grid versions -------------------------------------------------------------------------------------------
def test_empty_store_has_no_current_version(store_backend: Store) -> None:
    assert store_backend.current_version() is None
    assert store_backend.grids() == []
    assert store_backend.grid(L1) is None
    assert store_backend.buildings() == []


def test_load_district_round_trip(store_backend: Store) -> None:
    district = make_district()
    version = store_backend.load_district(district, "2026-11")

    assert version.label == "2026-11" and version.is_current
    assert_utc(version.created_at)
    assert store_backend.current_version() == version

    grids = store_backend.grids()
    assert [g.code for g in grids] == sorted(g.code for g in district.grids)
    by_code = {g.code: g for g in district.grids}
    for got in grids:
        want = by_code[got.code]
        assert (got.level, got.name, got.parent_code) == (want.level, want.name, want.parent_code)
        assert same_geometry(got.geometry, want.geometry), got.code
    assert [g.code for g in store_backend.grids(level=3)] == [L3A, L3B, L3C]
    assert [g.code for g in store_backend.grids(level=2, version=version.id)] == [L2A, L2B]
    one = store_backend.grid(L3C)
    assert one is not None and one.geometry.geom_type == "MultiPolygon"
    assert store_backend.grid("430102009009009") is None

    buildings = store_backend.buildings()
    assert [(b.code, b.grid_code, b.name) for b in buildings] == [
        (b.code, b.grid_code, b.name) for b in district.buildings
    ]
    assert all(same_geometry(g.geometry, w.geometry) for g, w in zip(buildings, district.buildings, strict=True))

    devices = store_backend.devices()
    want_devices = sorted(district.devices, key=lambda d: d.id)
    assert [(d.id, d.kind, d.name, d.grid_code, d.zones) for d in devices] == [
        (d.id, d.kind, d.name, d.grid_code, d.zones) for d in want_devices
    ]
    assert all(same_geometry(g.geometry, w.geometry) for g, w in zip(devices, want_devices, strict=True))

    assert store_backend.patrollers() == sorted(district.patrollers, key=lambda p: p.id)


def test_load_district_is_idempotent_by_label(store_backend: Store) -> None:
    first = store_backend.load_district(make_district(), "v1")
    again = store_backend.load_district(make_district("changed", shift_name="X"), "v1")
    assert again == first
    assert len(store_backend.grids()) == 6
    assert len(store_backend.buildings()) == 2
    assert [p.name for p in store_backend.patrollers()] == ["Patroller A", "Patroller B"]

    second = store_backend.load_district(make_district(shift_name="Z"), "v2")
    assert second.id != first.id and second.is_current
    current = store_backend.current_version()
    assert current is not None and current.id == second.id
    # the older version stays queryable; the registry (patrollers, devices) follows the newest load
    assert len(store_backend.grids(version=first.id)) == 6
    assert len(store_backend.grids()) == 6
    assert [p.name for p in store_backend.patrollers()] == ["Patroller Z", "Patroller B"]
    assert len(store_backend.devices()) == 3

    # loading an old label again returns it unchanged and does not switch the current version
    old = store_backend.load_district(make_district(), "v1")
    assert old.id == first.id and not old.is_current
    current = store_backend.current_version()
    assert current is not None and current.id == second.id


# --- alarms and units of work ---------------------------------------------------------------------------
def test_add_alarms_stores_each_key_once(store_backend: Store) -> None:
    a1 = make_alarm("fence-1", "m-1", lon=113.82, lat=27.62, zone="Z1", data={"voltage_kv": 7.9, "ok": [1, "二"]})
    # bytes and text that COPY's text format must escape: NUL, \N, tabs, newlines, backslashes
    a2 = make_alarm(
        "fence-1",
        "m-2",
        at=T0 + timedelta(seconds=5),
        warnings=("unknown type", "tab\there"),
        raw=b"\x00\xff\\N\t\r\n\\x41 end",
        zone="Z\t2\\N",
    )
    a3 = make_alarm("fence-1", "m-3", data={"text": "a\tb\nc \\N \\ 二", "none": None}, raw=b"")
    a1_again = make_alarm("fence-1", "m-1", type="fence.cut")  # same key, different content: ignored
    other_device = make_alarm("thermal-1", "m-1", type="thermal.fire")

    with store_backend.unit_of_work() as uow:
        assert uow.known_alarm_keys([a1.key, a2.key]) == set()
        assert uow.add_alarms([(a1, "inc-1"), (a2, "inc-1"), (a1_again, "inc-1")]) == 2
        assert uow.known_alarm_keys([a1.key, a2.key, ("fence-1", "m-9")]) == {a1.key, a2.key}
        assert uow.add_alarms([(a3, "inc-3")]) == 1
    with store_backend.unit_of_work() as uow:
        assert uow.known_alarm_keys([a1.key, other_device.key, a1.key]) == {a1.key}
        assert uow.add_alarms([(a1, "inc-1"), (a2, "inc-1"), (other_device, "inc-2")]) == 1
        assert uow.add_alarms([]) == 0

    assert store_backend.count_alarms() == 4
    assert store_backend.alarms_of("inc-3") == [a3]
    stored = store_backend.alarms_of("inc-1")
    assert stored == [a1, a2]  # the first copy of m-1 won; fields, data, raw and warnings round-trip
    assert all(a.ts.utcoffset() == timedelta(0) and a.received_at.utcoffset() == timedelta(0) for a in stored)
    assert stored[1].lon is None and stored[1].data == {}
    assert store_backend.alarms_of("inc-2") == [other_device]
    assert store_backend.alarms_of("inc-404") == []


def test_unit_of_work_rolls_back_everything_on_exception(store_backend: Store) -> None:
    with pytest.raises(Boom):
        with store_backend.unit_of_work() as uow:
            uow.add_alarms([(make_alarm("fence-1", "m-1"), "inc-1")])
            uow.save_incidents([make_incident("inc-1")])
            uow.add_history([HistoryEntry("inc-1", T0, "create", None, IncidentState.REPORTED, "system")])
            uow.add_dead_letters([DeadLetter("gridwatch/devices/x/alarm", b"{", "json", "bad json", T0)])
            uow.add_notifications([Notification("gridwatch/patrollers/p-1/alerts", {"id": "inc-1"})])
            uow.set_positions([PatrollerPosition("p-1", T0, 113.82, 27.62, 5.0)])
            raise Boom

    assert store_backend.count_alarms() == 0
    assert store_backend.incident("inc-1") is None
    assert store_backend.history("inc-1") == []
    assert store_backend.dead_letters() == []
    assert store_backend.pending_notifications() == []
    assert store_backend.positions() == {}
    # the store is still usable after the rollback
    with store_backend.unit_of_work() as uow:
        assert uow.add_alarms([(make_alarm("fence-1", "m-1"), "inc-1")]) == 1
    assert store_backend.count_alarms() == 1


def test_text_no_backend_can_store_does_not_fail_the_batch(store_backend: Store) -> None:
    """NUL, lone surrogates and NaN from a device are cleaned; the raw bytes keep the original."""
    raw = b'{"id": "m\\u0000", "data": {"x": "\\ud800", "v": NaN}}'
    alarm = make_alarm("fence-1", "m\x00", zone="Z\ud800", data={"x": "\ud800", "v": float("nan")}, raw=raw)
    letter = DeadLetter("gridwatch/devices/x\x00/alarm", b"\x00", "json", "bad \x00 byte \udcff", T0)
    with store_backend.unit_of_work() as uow:
        assert uow.add_alarms([(alarm, "inc-1")]) == 1
        assert uow.known_alarm_keys([alarm.key]) == {alarm.key}  # keys are cleaned the same way
        assert uow.add_alarms([(alarm, "inc-1")]) == 0
        uow.add_dead_letters([letter])
        uow.add_notifications([Notification("t", {"text": "\x00", "n": float("inf")})])
    [stored] = store_backend.alarms_of("inc-1")
    assert (stored.msg_id, stored.zone, stored.data) == ("m\ufffd", "Z\ufffd", {"x": "\ufffd", "v": "NaN"})
    assert stored.raw == raw
    [dead] = store_backend.dead_letters()
    assert (dead.dead_letter.topic, dead.dead_letter.detail) == (
        "gridwatch/devices/x\ufffd/alarm",
        "bad \ufffd byte \ufffd",
    )
    assert dead.dead_letter.payload == b"\x00"
    assert store_backend.pending_notifications()[0][1].payload == {"text": "\ufffd", "n": "Infinity"}


def test_naive_datetimes_are_refused(store_backend: Store) -> None:
    naive = datetime(2026, 11, 21, 8, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        with store_backend.unit_of_work() as uow:
            uow.add_alarms([(make_alarm("fence-1", "m-1", at=naive), "inc-1")])
    assert store_backend.count_alarms() == 0


def test_units_of_work_from_many_threads(store_backend: Store) -> None:
    """Threads adding overlapping keys at once: each key is stored exactly once, nothing fails."""
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for batch in range(5):
                alarms = [(make_alarm("fence-1", f"m-{batch}-{i}"), f"inc-{worker}") for i in range(20)]
                with store_backend.unit_of_work() as uow:
                    uow.add_alarms(alarms)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store_backend.count_alarms() == 100


# --- incidents -----------------------------------------------------------------------------------------------
def test_open_incidents_for_picks_the_newest_open_recent_one(store_backend: Store) -> None:
    minute = timedelta(minutes=1)
    since = T0
    incidents = [
        make_incident("A", created=T0 - minute, last_alarm=T0 + minute),
        make_incident("B", created=T0 + 2 * minute, last_alarm=T0 + 3 * minute),  # newest open: wins
        make_incident("C", created=T0 + 5 * minute, last_alarm=T0 + 6 * minute, state=IncidentState.CLOSED),
        make_incident("D", device_id="fence-2", type="fence.cut", created=T0 - 60 * minute, last_alarm=T0 - minute),
        make_incident("E", device_id="thermal-1", type="thermal.fire", state=IncidentState.DISPATCHED, last_alarm=T0),
        make_incident("F", device_id="smoke-1", type="smoke.alarm", last_alarm=T0 + minute),
        make_incident("G", device_id="smoke-2", type="smoke.alarm", state=IncidentState.ARCHIVED),
        make_incident("H", device_id="smoke-3", type="smoke.alarm", state=IncidentState.CANCELLED),
    ]
    with store_backend.unit_of_work() as uow:
        uow.save_incidents(incidents)
    keys = [
        ("fence-1", "fence.intrusion"),
        ("fence-2", "fence.cut"),  # only an old one
        ("thermal-1", "thermal.fire"),  # last alarm exactly at `since`: included
        ("smoke-2", "smoke.alarm"),  # archived
        ("smoke-3", "smoke.alarm"),  # cancelled
        ("nobody", "fence.intrusion"),
        ("fence-1", "fence.intrusion"),  # a repeated key is fine
    ]
    with store_backend.unit_of_work() as uow:
        found = uow.open_incidents_for(keys, since)
        assert uow.open_incidents_for([], since) == {}
    assert {k: v.id for k, v in found.items()} == {
        ("fence-1", "fence.intrusion"): "B",
        ("thermal-1", "thermal.fire"): "E",
    }
    assert found[("fence-1", "fence.intrusion")] == incidents[1]
    with store_backend.unit_of_work() as uow:
        older = uow.open_incidents_for(iter([("fence-2", "fence.cut")]), T0 - 2 * minute)
    assert [i.id for i in older.values()] == ["D"]


def test_save_incidents_upserts_by_id(store_backend: Store) -> None:
    incident = make_incident("inc-1", route=make_route(L3B, 113.86, 27.62))
    with store_backend.unit_of_work() as uow:
        uow.save_incidents([incident])
        assert uow.get_incident("inc-1") == incident
        assert uow.get_incident("nope") is None

    stored = store_backend.incident("inc-1")
    assert stored == incident
    assert stored is not None and stored.grid_code == L3B
    for value in (stored.created_at, stored.updated_at, stored.route.routed_at, stored.last_alarm_at):
        assert value is not None
        assert_utc(value)

    with store_backend.unit_of_work() as uow:
        locked = uow.get_incident("inc-1", for_update=True)
        assert locked is not None
        locked.state = IncidentState.DISPATCHED
        locked.alarm_count = 7
        locked.assignee = "p-1"
        locked.dispatched_at = T0 + timedelta(minutes=2)
        locked.deadline = T0 + timedelta(minutes=17)
        locked.last_alarm_at = T0 + timedelta(minutes=3)
        locked.note = "备注: on the way"
        locked.updated_at = T0 + timedelta(minutes=3)
        uow.save_incidents([locked, make_incident("inc-2")])

    updated = store_backend.incident("inc-1")
    assert updated == locked
    assert len(store_backend.incidents(IncidentQuery())) == 2


def test_history_is_ordered_and_per_incident(store_backend: Store) -> None:
    entries = [
        HistoryEntry(
            "inc-1", T0 + timedelta(minutes=2), "dispatch", IncidentState.REGISTERED, IncidentState.DISPATCHED, "op-1"
        ),
        HistoryEntry("inc-1", T0, "create", None, IncidentState.REPORTED, "system", "from fence-1"),
        HistoryEntry("inc-2", T0, "create", None, IncidentState.REPORTED, "system"),
    ]
    with store_backend.unit_of_work() as uow:
        uow.add_history(entries[:2])
    with store_backend.unit_of_work() as uow:
        uow.add_history([entries[2]])
        uow.add_history([])
        later = HistoryEntry(
            "inc-1", T0 + timedelta(minutes=1), "register", IncidentState.REPORTED, IncidentState.REGISTERED, "op-1"
        )
        uow.add_history([later])

    history = store_backend.history("inc-1")
    assert history == [entries[1], later, entries[0]]
    assert all(h.at.utcoffset() == timedelta(0) for h in history)
    assert store_backend.history("inc-2") == [entries[2]]
    assert store_backend.history("inc-404") == []


def test_incident_record_reads_the_incident_its_alarms_and_history_from_one_snapshot(store_backend: Store) -> None:
    incident = make_incident("inc-1")
    alarm = make_alarm("fence-1", "m-1")
    created = HistoryEntry("inc-1", T0, "create", None, IncidentState.REPORTED, "system")
    with store_backend.unit_of_work() as uow:
        uow.save_incidents([incident])
        uow.add_alarms([(alarm, "inc-1")])
        uow.add_history([created])
    record = store_backend.incident_record("inc-1")
    assert record is not None
    assert (record.incident, record.alarms, record.history) == (incident, [alarm], [created])
    assert store_backend.incident_record("inc-404") is None

    # a writer flips the state, with its history entry, in one unit of work after another; every
    # record read meanwhile must show a last history entry that agrees with the state
    states = (IncidentState.VERIFYING, IncidentState.REGISTERED)
    done = threading.Event()
    errors: list[BaseException] = []

    def flip() -> None:
        try:
            current = incident
            for i in range(150):
                after = states[i % 2]
                entry = HistoryEntry("inc-1", T0 + timedelta(seconds=i + 1), "verify", current.state, after, "op-1")
                current = dataclasses.replace(current, state=after, updated_at=entry.at)
                with store_backend.unit_of_work() as uow:
                    uow.save_incidents([current])
                    uow.add_history([entry])
        except BaseException as exc:  # reported by the reader below
            errors.append(exc)
        finally:
            done.set()

    writer = threading.Thread(target=flip)
    writer.start()
    reads = 0
    while not done.is_set() or reads == 0:
        seen = store_backend.incident_record("inc-1")
        assert seen is not None
        assert seen.history[-1].to_state == seen.incident.state, (
            f"read {reads}: state {seen.incident.state} but the last history entry says {seen.history[-1].to_state}")
        reads += 1
    writer.join()
    assert not errors, errors
    final = store_backend.incident_record("inc-1")
    assert final is not None and len(final.history) == 151 and final.incident.state is states[149 % 2]


def test_the_incidents_mark_changes_when_an_incident_is_created_or_written(store_backend: Store) -> None:
    empty = store_backend.incidents_mark()
    assert store_backend.incidents_mark() == empty  # reading changes nothing
    incident = make_incident("inc-1", updated=T0)
    with store_backend.unit_of_work() as uow:
        uow.save_incidents([incident])
    created = store_backend.incidents_mark()
    assert created != empty
    with store_backend.unit_of_work() as uow:
        uow.add_alarms([(make_alarm("fence-1", "m-1"), "inc-1")])  # not an incident write
    assert store_backend.incidents_mark() == created
    with store_backend.unit_of_work() as uow:  # a write with a later updated_at
        uow.save_incidents([dataclasses.replace(incident, state=IncidentState.VERIFYING, updated_at=T0 + timedelta(seconds=1))])
    written = store_backend.incidents_mark()
    assert written not in (empty, created)
    with store_backend.unit_of_work() as uow:  # closed without a newer updated_at: the open count still tells
        uow.save_incidents([dataclasses.replace(incident, state=IncidentState.CLOSED, updated_at=T0 + timedelta(seconds=1))])
    assert store_backend.incidents_mark() not in (empty, created, written)


def test_incident_filters(store_backend: Store) -> None:
    minute = timedelta(minutes=1)
    a = make_incident("a", created=T0, route=make_route(L3A, 113.82, 27.62))
    b = make_incident("b", created=T0 + minute, route=make_route(L3B, 113.87, 27.62), state=IncidentState.DISPATCHED)
    c = make_incident("c", created=T0 + 2 * minute, route=make_route(L3C, 113.83, 27.68), state=IncidentState.CLOSED)
    d = make_incident("d", created=T0 + 3 * minute, route=make_route(L3A, 113.849, 27.649))
    with store_backend.unit_of_work() as uow:
        uow.save_incidents([a, b, c, d])

    def ids(**kw: Any) -> list[str]:
        return [i.id for i in store_backend.incidents(IncidentQuery(**kw))]

    assert ids() == ["d", "c", "b", "a"]  # newest first
    assert ids(limit=2) == ["d", "c"]
    assert ids(states=(IncidentState.REPORTED,)) == ["d", "a"]
    assert ids(states=(IncidentState.DISPATCHED, IncidentState.CLOSED)) == ["c", "b"]
    assert ids(grid_prefix=L1) == ["d", "c", "b", "a"]
    assert ids(grid_prefix=L2A) == ["d", "b", "a"]
    assert ids(grid_prefix=L3A) == ["d", "a"]
    assert ids(grid_prefix="430102001001%") == []  # a wildcard is not a wildcard
    assert ids(grid_prefix="43999") == []
    assert ids(grid=L1) == ["d", "c", "b", "a"] and ids(grid=L2A) == ["d", "b", "a"] and ids(grid=L3A) == ["d", "a"]
    assert ids(grid="430102001001") == ["d", "b", "a"] and ids(grid="4301020") == []  # whole codes, not prefixes
    assert ids(assignees=("nobody",)) == []
    assert ids(bbox=(113.80, 27.60, 113.85, 27.65)) == ["d", "a"]
    assert ids(bbox=(113.849, 27.649, 113.849, 27.649)) == ["d"]  # edges are inside
    assert ids(bbox=(113.86, 27.60, 113.90, 27.70)) == ["b"]
    assert ids(bbox=(0.0, 0.0, 1.0, 1.0)) == []
    assert ids(since=T0 + 2 * minute) == ["d", "c"]
    assert ids(since=(T0 + 2 * minute).astimezone(UTC)) == ["d", "c"]
    assert ids(states=(IncidentState.REPORTED,), grid_prefix=L3A, bbox=(113.84, 27.64, 113.85, 27.65)) == ["d"]
    foreign = dataclasses.replace(make_route(L3A), l1="D1", l2="S-1", l3="U-17")
    with store_backend.unit_of_work() as uow:
        uow.save_incidents([make_incident("e", created=T0 + 4 * minute, route=foreign)])
    assert ids(grid="S-1") == ["e"] and ids(grid="D1") == ["e"] and ids(grid=L1) == ["d", "c", "b", "a"]
    # a patroller's scope: assigned to it, or inside its geofence
    with store_backend.unit_of_work() as uow:
        uow.save_incidents([dataclasses.replace(b, assignee="P7")])
    assert ids(patroller_scope=("P7", (L3A,))) == ["d", "b", "a"]
    assert ids(patroller_scope=("P7", ())) == ["b"] and ids(patroller_scope=("P8", ())) == []
    assert ids(patroller_scope=("P8", (L3C, "U-17"))) == ["e", "c"]
    assert ids(patroller_scope=("P7", (L3A,)), states=(IncidentState.REPORTED,)) == ["d", "a"]


# --- dead letters, outbox, positions ---------------------------------------------------------------------------
def test_dead_letters_newest_first(store_backend: Store) -> None:
    letters = [
        DeadLetter("gridwatch/devices/fence-1/alarm", b"\xff\xfe not json", "json", "invalid UTF-8", T0),
        DeadLetter(
            "gridwatch/devices/fence-1/alarm",
            b'{"id": 1}',
            "schema",
            "id: expected a string",
            T0 + timedelta(seconds=2),
        ),
        DeadLetter("frigate/events", b"", "empty", "empty payload", T0 + timedelta(seconds=1)),
    ]
    with store_backend.unit_of_work() as uow:
        uow.add_dead_letters(letters)
        uow.add_dead_letters([])

    stored = store_backend.dead_letters()
    assert [s.dead_letter for s in stored] == [letters[1], letters[2], letters[0]]
    assert len({s.id for s in stored}) == 3
    assert_utc(stored[0].dead_letter.received_at)
    assert [s.dead_letter for s in store_backend.dead_letters(limit=1)] == [letters[1]]


def test_outbox_pending_marks_and_counters(store_backend: Store) -> None:
    assert store_backend.notification_counters() == {"pending": 0, "delivered": 0, "failed_attempts": 0, "retrying": 0}
    payload = {"id": "inc-1", "state": "dispatched", "route": {"l3": L3A}, "note": "围栏入侵", "n": [1, 2.5, None]}
    with store_backend.unit_of_work() as uow:
        ids = uow.add_notifications(
            [
                Notification("gridwatch/patrollers/p-1/alerts", payload),
                Notification(f"gridwatch/grids/{L3A}/incidents", {}),
            ]
        )
        more = uow.add_notifications([Notification("gridwatch/patrollers/p-2/alerts", {"id": "inc-2"})])
        assert uow.add_notifications([]) == []
    assert len(ids) == 2 and ids[0] < ids[1] < more[0]

    pending = store_backend.pending_notifications()
    assert [i for i, _ in pending] == [*ids, *more]
    assert pending[0][1] == Notification("gridwatch/patrollers/p-1/alerts", payload)
    assert store_backend.pending_notifications(limit=1) == pending[:1]

    store_backend.mark_notifications([ids[0]], delivered=False, error="broker unavailable")
    store_backend.mark_notifications([ids[0], more[0]], delivered=False, error="timeout")
    assert store_backend.notification_counters() == {"pending": 3, "delivered": 0, "failed_attempts": 3, "retrying": 2}

    store_backend.mark_notifications([ids[0], ids[1]], delivered=True)
    store_backend.mark_notifications([ids[0]], delivered=True)  # a second mark changes nothing
    store_backend.mark_notifications([ids[0]], delivered=False, error="late")  # nor does a late failure
    store_backend.mark_notifications([], delivered=True)
    assert [i for i, _ in store_backend.pending_notifications()] == more
    assert store_backend.notification_counters() == {"pending": 1, "delivered": 2, "failed_attempts": 3, "retrying": 1}


def test_positions_keep_the_newest(store_backend: Store) -> None:
    with store_backend.unit_of_work() as uow:
        uow.set_positions(
            [
                PatrollerPosition("p-1", T0, 113.82, 27.62, 5.0),
                PatrollerPosition("p-1", T0 + timedelta(seconds=10), 113.83, 27.63, None),
                PatrollerPosition("p-1", T0 + timedelta(seconds=5), 113.99, 27.99, 1.0),  # older: ignored
                PatrollerPosition("p-2", T0, 113.86, 27.66),
            ]
        )
    with store_backend.unit_of_work() as uow:
        uow.set_positions([PatrollerPosition("p-2", T0 - timedelta(minutes=1), 0.0, 0.0, 9.0)])  # older: ignored
        uow.set_positions([])

    positions = store_backend.positions()
    assert set(positions) == {"p-1", "p-2"}
    p1 = positions["p-1"]
    assert (p1.ts, p1.lon, p1.lat, p1.acc) == (T0 + timedelta(seconds=10), 113.83, 27.63, None)
    assert_utc(p1.ts)
    p2 = positions["p-2"]
    assert (p2.ts, p2.lon, p2.lat, p2.acc) == (T0, 113.86, 27.66, None)


# --- backend specifics -------------------------------------------------------------------------------------
def test_postgis_unreachable_database_is_a_store_error(pg_cluster: Any) -> None:
    """A database that is down fails fast with a StoreError that does not leak the password."""
    url = f"postgresql://postgres:s3cret@127.0.0.1:{pg_cluster.port}/no_such_database"
    with pytest.raises(StoreError) as caught:
        PostgisStore(url, timeout=1)
    assert "s3cret" not in str(caught.value) and "no_such_database" in str(caught.value)


def test_postgis_geometry_columns_have_gist_indexes(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT f_table_name, f_geometry_column, srid FROM geometry_columns WHERE f_table_schema = 'public'"
        ).fetchall()
        gist = {
            (r[0], r[1])
            for r in conn.execute(
                "SELECT t.relname, a.attname FROM pg_index x"
                " JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am am ON am.oid = i.relam"
                " JOIN pg_class t ON t.oid = x.indrelid"
                " JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(x.indkey)"
                " WHERE am.amname = 'gist'"
            ).fetchall()
        }
    columns = {(r[0], r[1]) for r in rows}
    assert {(r[0], r[2]) for r in rows} >= {
        ("grids", 4326),
        ("buildings", 4326),
        ("devices", 4326),
        ("incidents", 4326),
    }
    assert all(srid == 4326 for _, _, srid in rows)
    assert columns - {("patrollers", "home")} <= gist
    assert {("grids", "geom"), ("buildings", "geom"), ("devices", "geom"), ("incidents", "geom")} <= gist


def test_postgis_add_alarms_goes_through_copy(postgis_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    copies: list[str] = []
    original = psycopg.Cursor.copy

    def spy(self: psycopg.Cursor[Any], statement: Any, *args: Any, **kwargs: Any) -> Any:
        copies.append(str(statement))
        return original(self, statement, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "copy", spy)
    alarms = [
        (make_alarm(f"fence-{i % 50}", f"m-{i}", at=T0 + timedelta(milliseconds=i)), "inc-1") for i in range(5000)
    ]
    duplicates = alarms[:250]  # the same keys again inside the same call
    with postgis_store.unit_of_work() as uow:
        assert uow.add_alarms(alarms + duplicates) == 5000
    assert any(c.startswith("COPY alarm_stage") for c in copies)
    with postgis_store.unit_of_work() as uow:
        assert uow.add_alarms(alarms) == 0  # all known: nothing inserted
        assert uow.add_alarms(alarms[:10]) == 0  # a second COPY in the same transaction
        assert len(uow.known_alarm_keys([a.key for a, _ in alarms])) == 5000
    assert postgis_store.count_alarms() == 5000
    stored = postgis_store.alarms_of("inc-1")
    assert len(stored) == 5000 and stored[0] == alarms[0][0] and stored[-1] == alarms[-1][0]


def test_postgis_load_district_goes_through_copy(postgis_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    copies: list[str] = []
    original = psycopg.Cursor.copy

    def spy(self: psycopg.Cursor[Any], statement: Any, *args: Any, **kwargs: Any) -> Any:
        copies.append(str(statement).split(" (")[0])
        return original(self, statement, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "copy", spy)
    postgis_store.load_district(make_district(), "v1")
    assert copies == ["COPY grids", "COPY buildings", "COPY device_stage", "COPY patroller_stage"]


def test_history_is_append_only_in_the_database(store_backend: Store, request: pytest.FixtureRequest) -> None:
    with store_backend.unit_of_work() as uow:
        uow.add_history([HistoryEntry("inc-1", T0, "create", None, IncidentState.REPORTED, "system")])
    if request.node.callspec.params["store_backend"] == "sqlite":
        path = request.getfixturevalue("sqlite_url").removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn, pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE incident_history SET note = 'rewritten'")
        with sqlite3.connect(path) as conn, pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM incident_history")
    else:
        url = request.getfixturevalue("pg_url")
        with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("UPDATE incident_history SET note = 'rewritten'")
        with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("DELETE FROM incident_history")
    assert len(store_backend.history("inc-1")) == 1


def test_sqlite_uses_wal_and_refuses_nested_units_of_work(sqlite_store: Store, sqlite_url: str) -> None:
    path = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(StoreError, match="already open"):
        with sqlite_store.unit_of_work(), sqlite_store.unit_of_work():
            pass
    assert sqlite_store.count_alarms() == 0


def test_sqlite_connections_of_finished_threads_are_closed(sqlite_store: Store, sqlite_url: str) -> None:
    """A connection per thread, closed when its thread ends: no file descriptors pile up."""
    db = os.path.realpath(sqlite_url.removeprefix("sqlite:///"))

    def open_fds() -> int:
        fds = Path("/proc/self/fd")
        return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == db) if fds.is_dir() else 0

    def round_of_threads() -> int:
        threads = [threading.Thread(target=sqlite_store.count_alarms) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        del threads, t
        gc.collect()
        return open_fds()

    # SQLite defers closing a file descriptor while the process holds locks on the file, and reuses
    # it for the next open; so the count may stay up after one round, but must not grow with more
    first = round_of_threads()
    assert round_of_threads() <= first
    assert round_of_threads() <= first


def test_closed_sqlite_store_refuses_work(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    store.migrate()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.count_alarms()


def test_database_errors_become_store_errors(store_backend: Store) -> None:
    """Callers catch StoreError, never a driver's exception (alerts/ingest import no database module)."""
    with pytest.raises(StoreError) as caught:
        with store_backend.unit_of_work() as uow:
            uow.save_incidents([make_incident("inc-1", type=None)])  # type: ignore[arg-type]  # NOT NULL
    assert not isinstance(caught.value, ConflictError)
    assert caught.value.__cause__ is not None  # the driver's error stays attached for the log
    assert store_backend.incident("inc-1") is None


def test_workflow_fields_round_trip(store_backend: Store) -> None:
    """Every workflow field of an incident (migration 0003) is stored and read back, on both write paths."""
    minute = timedelta(minutes=1)
    full = dataclasses.replace(
        make_incident("wf-1", state=IncidentState.ACKNOWLEDGED), escalation_level=2, supervised=True,
        difficulty="yellow", matter_track="community", confidence=0.84, unit="water-works", stage="handle",
        stage_started_at=T0 + minute, paused_at=T0 + 2 * minute, reminded_at=T0 + 3 * minute,
        escalated_at=T0 + 4 * minute, acknowledged_at=T0 + 5 * minute, arrived_at=T0 + 6 * minute,
        resolved_at=T0 + 7 * minute, closed_at=T0 + 8 * minute, self_handled=True, light="red",
        details={"photos": [{"sha256": "ab", "bytes": 3}], "devices": ["fence-1", "thermal-1"], "名": "网格"},
    )
    many = [dataclasses.replace(full, id=f"wf-bulk-{k}") for k in range(70)]  # the COPY path on PostGIS
    with store_backend.unit_of_work() as uow:
        uow.save_incidents([full])
        uow.save_incidents(many)
    for incident_id in ("wf-1", "wf-bulk-69"):
        got = store_backend.incident(incident_id)
        assert got is not None
        assert dataclasses.replace(got, id="x") == dataclasses.replace(full, id="x")
    plain = store_backend.incident("wf-1")
    assert plain is not None and plain.details["名"] == "网格"
    with store_backend.unit_of_work() as uow:
        uow.save_incidents([make_incident("wf-2")])
    fresh = store_backend.incident("wf-2")
    assert fresh is not None and (fresh.escalation_level, fresh.supervised, fresh.details, fresh.light) == (3, False, {}, None)


def test_tracks_and_bulk_history(store_backend: Store) -> None:
    second = timedelta(seconds=1)
    fixes = [PatrollerPosition("p-1", T0 + k * second, 113.82 + k * 1e-5, 27.62, 5.0) for k in range(5)]
    with store_backend.unit_of_work() as uow:
        uow.set_positions(fixes[:3])
        uow.set_positions(fixes[2:])  # a repeated fix is stored once
        uow.set_positions([PatrollerPosition("p-2", T0, 113.9, 27.7, None)])
    track = store_backend.track(T0, T0 + 4 * second)
    assert [(p, ts) for p, ts, _, _ in track] == [("p-1", T0 + k * second) for k in range(4)] + [("p-2", T0)]
    assert len(store_backend.track(T0, T0 + 10 * second, patroller_id="p-1")) == 5
    with store_backend.unit_of_work() as uow:
        uow.save_incidents([make_incident("h-1"), make_incident("h-2")])
        uow.add_history([
            HistoryEntry("h-1", T0, "report", None, IncidentState.REPORTED, "device:fence-1"),
            HistoryEntry("h-2", T0, "report", None, IncidentState.REPORTED, "device:fence-1"),
            HistoryEntry("h-1", T0 + second, "dispatch", IncidentState.REPORTED, IncidentState.DISPATCHED, "auto"),
        ])
    got = store_backend.history_for(["h-1", "h-2", "nope"])
    assert [e.action for e in got["h-1"]] == ["report", "dispatch"] and len(got["h-2"]) == 1 and got["nope"] == []


def test_maintenance_windows(store_backend: Store) -> None:
    from alerts.maintenance import MaintenanceWindow

    hour = timedelta(hours=1)
    a = store_backend.add_maintenance_window(MaintenanceWindow(L3A, None, T0, T0 + hour, "fence repair"), actor="center:3:x")
    b = store_backend.add_maintenance_window(MaintenanceWindow(None, "b-1", T0 + 2 * hour, T0 + 3 * hour, "paint"), actor="op")
    assert [w.id for w in store_backend.maintenance_windows()] == [a, b]
    assert [w.id for w in store_backend.maintenance_windows(active_from=T0 + hour)] == [b]
    got = store_backend.maintenance_windows()[0]
    assert (got.window.grid_code, got.window.reason, got.created_by, got.window.starts_at) == (L3A, "fence repair", "center:3:x", T0)
    assert store_backend.end_maintenance_window(a, T0 + 30 * timedelta(minutes=1))
    assert store_backend.maintenance_windows()[0].window.ends_at == T0 + 30 * timedelta(minutes=1)
    assert store_backend.end_maintenance_window(b, T0)  # not started yet: removed
    assert [w.id for w in store_backend.maintenance_windows()] == [a]
    assert not store_backend.end_maintenance_window(999, T0)


def test_correlation_and_storm_queries(store_backend: Store) -> None:
    minute = timedelta(minutes=1)
    near = make_incident("n-1", route=make_route(L3A, 113.82, 27.62), created=T0)
    far = make_incident("n-2", route=make_route(L3A, 113.83, 27.62), created=T0)  # ~990 m east
    old = make_incident("n-3", route=make_route(L3A, 113.8201, 27.62), created=T0 - 10 * minute)
    closed = make_incident("n-4", route=make_route(L3A, 113.8202, 27.62), state=IncidentState.CLOSED)
    storm = dataclasses.replace(make_incident("s-1", type="storm", route=make_route(L3A, 113.82, 27.62)),
                                created_at=T0 + minute)
    storm_old = dataclasses.replace(make_incident("s-0", type="storm", route=make_route(L3A, 113.82, 27.62)))
    other = make_incident("n-5", route=make_route(L3B, 113.87, 27.62), created=T0 + minute)
    with store_backend.unit_of_work() as uow:
        uow.save_incidents([near, far, old, closed, storm, storm_old, other])
    with store_backend.unit_of_work() as uow:
        got = uow.open_incidents_near([(113.8203, 27.62), (113.9, 27.7)], 50.0, T0 - minute)
        assert [i.id for i in got] == ["n-1"]  # 29 m away; n-2 too far, n-3 too old, n-4 closed, storms excluded
        assert {i.id for i in uow.open_incidents_near([(113.8203, 27.62)], 50.0, T0 - 20 * minute)} == {"n-1", "n-3"}
        assert uow.open_incidents_near([], 50.0, T0) == []
        assert uow.recent_incident_counts([L3A, L3B, L3C], T0) == {L3A: 3, L3B: 1}  # any state; storms, older excluded
        assert {g: i.id for g, i in uow.open_storm_incidents([L3A, L3B]).items()} == {L3A: "s-1"}


def test_sla_candidates_skip_green_clocks_far_from_yellow(store_backend: Store) -> None:
    hour = timedelta(hours=1)

    def clocked(iid: str, started: datetime, deadline: datetime | None, light: str | None = None, type_: str = "fence.intrusion",
                state: IncidentState = IncidentState.DISPATCHED) -> Incident:
        return dataclasses.replace(make_incident(iid, type=type_, state=state), stage="acknowledge",
                                   stage_started_at=started, deadline=deadline, light=light)

    now = T0
    with store_backend.unit_of_work() as uow:
        uow.save_incidents([
            clocked("far", now, now + hour),  # 0 % used: skipped
            clocked("yellowish", now - 50 * timedelta(minutes=1), now + 10 * timedelta(minutes=1)),  # 83 %: in
            clocked("red", now - 2 * hour, now - hour, light="red"),  # in
            clocked("stopped", now, None, light="green"),  # clock stopped, light to clear: in
            clocked("closed", now - 2 * hour, now - hour, state=IncidentState.CLOSED),  # not open: out
            clocked("city", now, now + 100 * hour, type_="city.litter"),  # working time: always in
            dataclasses.replace(clocked("legacy", now, now + hour), stage=None, stage_started_at=None),  # old rows: in
        ])
    got = {i.id for i in store_backend.sla_candidates(now, yellow_at=0.75, working_prefixes=["city"])}
    assert got == {"yellowish", "red", "stopped", "city", "legacy"}
    assert "city" not in {i.id for i in store_backend.sla_candidates(now, yellow_at=0.75, working_prefixes=[])}
