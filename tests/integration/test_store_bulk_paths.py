"""The bulk write paths of the units of work, on both backends.

PostgreSQL writes a few rows with one pipelined executemany and more than COPY_MIN_ROWS through
COPY (alarms straight into their table, falling back to a staging table when a key is already
there); the contract suite mostly exercises the small path, these tests the big one. Either way
the results must be the same as the contract says: keys stored once, the first copy wins, ids in
the order given, the last copy of an incident wins, text and JSON cleaned.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerts.model import HistoryEntry, IncidentState, Notification
from store.ports import Store
from store.postgis_uow import COPY_MIN_ROWS
from tests.integration.test_store_contract import L3A, T0, make_alarm, make_incident

pytestmark = pytest.mark.integration

N = COPY_MIN_ROWS * 3


def test_many_new_alarms_are_stored_once_in_order(store_backend: Store) -> None:
    alarms = [
        (make_alarm(f"fence-{i % 7}", f"m-{i}", at=T0 + timedelta(milliseconds=i), data={"i": i, "note": "入侵"}), "inc-1")
        for i in range(N)
    ]
    with store_backend.unit_of_work() as uow:
        assert uow.add_alarms(alarms) == N  # all new: PostgreSQL copies them straight into the table
    with store_backend.unit_of_work() as uow:
        assert uow.add_alarms(alarms[: N // 2] + [(make_alarm("fence-x", "m-new"), "inc-2")] * 2) == 1
    assert store_backend.count_alarms() == N + 1
    stored = store_backend.alarms_of("inc-1")
    assert stored == [a for a, _ in alarms]


def test_many_alarms_with_dirty_text_and_repeats(store_backend: Store) -> None:
    base = [make_alarm("fence-1", f"m\x00{i}", zone="Z\ud800", data={"v": float("nan"), "s": "\x00"}) for i in range(N)]
    batch = [(a, "inc-1") for a in base] + [(base[0], "inc-other")]  # a repeat inside the call: the first copy wins
    with store_backend.unit_of_work() as uow:
        assert uow.add_alarms(batch) == N
        assert len(uow.known_alarm_keys([a.key for a in base])) == N
    stored = store_backend.alarms_of("inc-1")
    assert len(stored) == N and store_backend.alarms_of("inc-other") == []
    assert {(a.zone, a.data["s"], a.data["v"]) for a in stored} == {("Z\ufffd", "\ufffd", "NaN")}
    assert sorted(a.msg_id for a in stored) == sorted(f"m\ufffd{i}" for i in range(N))


def test_many_incidents_upsert_and_the_last_copy_wins(store_backend: Store) -> None:
    first = [make_incident(f"inc-{i:03d}", created=T0 + timedelta(seconds=i)) for i in range(N)]
    with store_backend.unit_of_work() as uow:
        uow.save_incidents(first)
    changed = []
    for inc in first[: N // 2]:
        inc.alarm_count = 5
        inc.note = "第二次"
        changed.append(inc)
    again = make_incident("inc-000", created=T0)
    again.alarm_count = 9  # the same id twice in one call: the later copy wins
    with store_backend.unit_of_work() as uow:
        uow.save_incidents([*changed, again])
    assert store_backend.incident("inc-000").alarm_count == 9  # type: ignore[union-attr]
    assert store_backend.incident("inc-001").note == "第二次"  # type: ignore[union-attr]
    assert store_backend.incident(f"inc-{N - 1:03d}").alarm_count == 1  # type: ignore[union-attr]
    assert store_backend.incident("inc-002").route.l3 == L3A  # type: ignore[union-attr]


def test_many_history_rows_keep_their_order(store_backend: Store) -> None:
    entries = [
        HistoryEntry("inc-1", T0, "report" if i % 2 == 0 else "dispatch", None, IncidentState.REPORTED, f"a-{i}")
        for i in range(N)
    ]
    with store_backend.unit_of_work() as uow:
        uow.add_history(entries)
    assert [e.actor for e in store_backend.history("inc-1")] == [f"a-{i}" for i in range(N)]


def test_many_notifications_get_increasing_ids_in_order(store_backend: Store) -> None:
    shared = {"id": "inc-1", "note": "围栏", "route": {"l3": L3A}}
    notes = [Notification(f"gridwatch/patrollers/p-{i}/alerts", shared if i % 2 else {"i": i}) for i in range(N)]
    with store_backend.unit_of_work() as uow:
        ids = uow.add_notifications(notes)
    assert len(ids) == N and ids == sorted(ids) and len(set(ids)) == N
    pending = store_backend.pending_notifications(limit=N)
    assert [i for i, _ in pending] == ids
    assert [n for _, n in pending] == notes


def test_postgis_keeps_no_rows_in_its_staging_tables(postgis_store: Store) -> None:
    alarms = [(make_alarm("fence-1", f"m-{i}"), "inc-1") for i in range(N)]
    with postgis_store.unit_of_work() as uow:
        uow.add_alarms(alarms + alarms[:1])  # a repeat: the staging path
        uow.save_incidents([make_incident(f"inc-{i}") for i in range(N)])
        conn = uow._conn  # type: ignore[attr-defined]
        assert conn.execute("SELECT count(*) AS n FROM alarm_stage").fetchone()["n"] == 0
        assert conn.execute("SELECT count(*) AS n FROM incident_stage").fetchone()["n"] == 0
    with postgis_store.unit_of_work() as uow:  # committed: ON COMMIT DELETE ROWS emptied the files too
        conn = uow._conn  # type: ignore[attr-defined]
        assert conn.execute("SELECT pg_relation_size('alarm_stage') AS n").fetchone()["n"] == 0
        assert conn.execute("SELECT pg_relation_size('incident_stage') AS n").fetchone()["n"] == 0
