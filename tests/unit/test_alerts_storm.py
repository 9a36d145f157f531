"""Storm control per level-3 grid: thousands of alarms from one cause become few incidents and few notifications."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import pytest
from shapely.geometry import LineString, Point

from alerts.correlate import CorrelationConfig
from alerts.intake import IncidentIntake
from alerts.model import IncidentState
from alerts.routing import Router
from alerts.storm import StormGuard
from geo.model import Device, Patroller, Shift
from ingest.model import Alarm
from tests.unit.fakes import BoxIndex, FakeStore, offset

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
ALL_DAY = Shift(frozenset(range(7)), time(0, 0), time(0, 0))
G1, G2 = "430102001001001", "430102001001002"
LON, LAT = 113.85, 27.62
GRID_TOPIC = f"gridwatch/grids/{G1}/incidents"


@dataclass
class Pos:
    lon: float
    lat: float


def perimeter(n: int = 40, side_m: float = 600.0) -> list[Device]:
    """n fence zones around a square compound centred on (LON, LAT), each 60 m long (midpoints 60 m apart)."""
    step = 4 * side_m / n
    corners = [(-side_m / 2, -side_m / 2), (side_m / 2, -side_m / 2), (side_m / 2, side_m / 2), (-side_m / 2, side_m / 2)]

    def at(d: float) -> tuple[float, float]:
        side, rest = divmod(d % (4 * side_m), side_m)
        (x0, y0), (x1, y1) = corners[int(side)], corners[(int(side) + 1) % 4]
        f = rest / side_m
        return offset(LON, LAT, x0 + (x1 - x0) * f, y0 + (y1 - y0) * f)

    return [Device(f"fence-{i:02d}", "fence", f"zone {i}", LineString([at(i * step), at(i * step + step * 0.999)]), G1) for i in range(n)]


def make_intake(devices: list[Device], config: CorrelationConfig | None = None) -> IncidentIntake:
    index = BoxIndex({G1: (113.84, 27.61, 113.86, 27.63), G2: (113.86, 27.61, 113.88, 27.63)})
    patrollers = [Patroller("P1", "Li", "1", (G1,), (ALL_DAY,)), Patroller("P2", "Wang", "2", (G1,), (ALL_DAY,)),
                  Patroller("P3", "Zhao", "3", (G2,), (ALL_DAY,))]
    extra = [Device("fence-g2", "fence", "g2", Point(113.87, 27.62), G2)]
    it = IncidentIntake(Router(index, patrollers), {d.id: d for d in [*devices, *extra]}, config=config)
    it.remember_positions({"P1": Pos(*offset(LON, LAT, -250, -250)), "P2": Pos(*offset(LON, LAT, 250, 250)), "P3": Pos(113.87, 27.62)})
    return it


def fence_alarm(i: int, device: str, at: datetime, type_: str = "fence.intrusion") -> Alarm:
    return Alarm(device, f"m{i}", at, type_, 3, at, b"{}")


def feed(intakes: list[IncidentIntake], store: FakeStore, alarms: list[Alarm], batch: int, lag: timedelta = timedelta(milliseconds=50)):
    """Hand the alarms to the workers in batches (round robin, as a shared subscription does)."""
    results = []
    for n, start in enumerate(range(0, len(alarms), batch)):
        part = alarms[start:start + batch]
        with store.unit_of_work() as uow:
            results.append(intakes[n % len(intakes)].accept(uow, alarms=part, now=max(a.ts for a in part) + lag))
    return results


def patroller_notes(store: FakeStore) -> list:
    return [n for n in store.notes if n.topic.startswith("gridwatch/patrollers/")]


@pytest.mark.parametrize(("batch", "workers"), [(1, 1), (7, 2), (100, 3), (2000, 1)])
def test_2000_fence_alarms_of_40_devices_in_10s_are_few_incidents_and_few_notifications(batch: int, workers: int) -> None:
    devices = perimeter(40)
    intakes = [make_intake(devices) for _ in range(workers)]  # several workers (or restarts): state is in the store
    rng = random.Random(batch)
    types = ["fence.intrusion"] * 8 + ["fence.cut", "fence.tamper"]
    alarms = [fence_alarm(i, rng.choice(devices).id, T0 + timedelta(seconds=10 * i / 2000), rng.choice(types)) for i in range(2000)]
    store = FakeStore()
    results = feed(intakes, store, alarms, batch)

    assert len(store.alarms) == 2000 and all(iid is not None for _, iid in store.alarms.values())
    assert len(store.incidents) <= 5
    assert len(patroller_notes(store)) <= 10
    assert len(store.notes) <= 20  # grid topic included: no per-alarm chatter
    assert sum(i.alarm_count for i in store.incidents.values()) == 2000
    (storm,) = [i for i in store.incidents.values() if i.type == "storm"]
    assert storm.source == "device" and storm.route.l3 == G1 and storm.state is IncidentState.DISPATCHED
    summary = storm.details["storm"]
    assert summary["alarms"] == storm.alarm_count == sum(r.folded for r in results)
    assert sum(summary["by_type"].values()) == sum(summary["by_device"].values()) == storm.alarm_count
    assert summary["folded_incidents"] == len(summary["keys"]) > 30
    assert summary["first_alarm_at"] == storm.first_alarm_at.isoformat()
    assert summary["last_alarm_at"] == storm.last_alarm_at.isoformat() == max(a.ts for a in alarms).isoformat()
    assert sum(len(r.incidents_created) for r in results) == len(store.incidents)


def test_the_fourth_incident_of_a_grid_in_the_window_opens_the_storm_and_later_alarms_fold_into_it() -> None:
    devices = perimeter(10)
    intake, store = make_intake(devices), FakeStore()
    feed([intake], store, [fence_alarm(i, devices[i].id, T0 + timedelta(seconds=i)) for i in range(3)], batch=1)
    assert len(store.incidents) == 3 and all(i.type == "fence.intrusion" for i in store.incidents.values())
    (r4,) = feed([intake], store, [fence_alarm(3, devices[3].id, T0 + timedelta(seconds=3))], batch=1)
    (sid,) = r4.incidents_created
    storm = store.incidents[sid]
    assert storm.type == "storm" and storm.device_id is None and storm.alarm_count == 1 and r4.folded == 1
    assert storm.details["storm"]["by_device"] == {devices[3].id: 1}
    assert {n.topic for _, n in r4.notifications} == {GRID_TOPIC, f"gridwatch/patrollers/{storm.assignee}/alerts"}
    (r5,) = feed([intake], store, [fence_alarm(4, devices[4].id, T0 + timedelta(seconds=4)), fence_alarm(5, devices[5].id, T0 + timedelta(seconds=5))], batch=2)
    assert r5.incidents_created == [] and r5.incidents_joined == [sid] and r5.folded == 2
    assert store.incidents[sid].alarm_count == 3 and len(store.incidents) == 4
    assert r5.notifications == []  # the storm notified 1 s ago: rate-limited
    # a device that already has its own incident keeps joining it (cooldown dedup comes first)
    (r6,) = feed([intake], store, [fence_alarm(6, devices[0].id, T0 + timedelta(seconds=6))], batch=1)
    assert r6.folded == 0 and len(r6.incidents_joined) == 1 and r6.incidents_joined[0] != sid
    assert r6.notifications == []  # its "updated" event is muted while the grid's storm is active


def test_storm_notifications_at_most_once_per_recipient_per_interval() -> None:
    devices = perimeter(40)
    intake, store = make_intake(devices), FakeStore()
    alarms = [fence_alarm(i, devices[i % 40].id, T0 + timedelta(seconds=i)) for i in range(100)]  # 100 s, one a second
    feed([intake], store, alarms, batch=1, lag=timedelta(0))
    storm = next(i for i in store.incidents.values() if i.type == "storm")
    storm_notes = [n for n in store.notes if n.payload["id"] == storm.id]
    for topic in {n.topic for n in storm_notes}:
        times = [datetime.fromisoformat(n.payload["updated_at"]) for n in storm_notes if n.topic == topic]
        assert len(times) == 4  # created at t=3 s, then t=33, 63, 93
        assert all(b - a >= timedelta(seconds=30) for a, b in zip(times, times[1:]))
    assert storm_notes[0].payload["event"] == "created" and storm_notes[-1].payload["event"] == "updated"
    last = storm_notes[-1].payload
    assert last["details"]["storm"]["alarms"] == last["alarm_count"] > 80  # the running summary, as of t=93 s
    assert last["last_alarm_at"] == (T0 + timedelta(seconds=93)).isoformat()
    assert "notified" not in storm_notes[-1].payload["details"]


def test_storm_is_per_grid() -> None:
    devices = perimeter(10)
    intake, store = make_intake(devices), FakeStore()
    feed([intake], store, [fence_alarm(i, devices[i].id, T0 + timedelta(seconds=i)) for i in range(6)], batch=3)
    (r,) = feed([intake], store, [fence_alarm(99, "fence-g2", T0 + timedelta(seconds=7))], batch=1)
    inc = store.incidents[r.incidents_created[0]]
    assert inc.type == "fence.intrusion" and inc.route.l3 == G2


def test_a_quiet_grid_opens_incidents_again_and_the_next_storm_reuses_the_open_storm_incident() -> None:
    devices = perimeter(12)
    intake, store = make_intake(devices), FakeStore()
    feed([intake], store, [fence_alarm(i, devices[i].id, T0 + timedelta(seconds=i)) for i in range(5)], batch=1)
    (storm,) = [i for i in store.incidents.values() if i.type == "storm"]
    later = T0 + timedelta(minutes=5)  # the storm window (60 s) has passed: no storm, no recent openings
    (r,) = feed([intake], store, [fence_alarm(10, devices[6].id, later)], batch=1)
    assert store.incidents[r.incidents_created[0]].type == "fence.intrusion"
    feed([intake], store, [fence_alarm(11 + i, devices[7 + i].id, later + timedelta(seconds=1 + i)) for i in range(3)], batch=1)
    assert [i.id for i in store.incidents.values() if i.type == "storm"] == [storm.id]
    assert store.incidents[storm.id].alarm_count == 3  # 2 of the first storm + 1 of the second


def test_closed_storm_incident_is_not_reused() -> None:
    devices = perimeter(12)
    intake, store = make_intake(devices), FakeStore()
    feed([intake], store, [fence_alarm(i, devices[i].id, T0 + timedelta(seconds=i)) for i in range(4)], batch=1)
    (storm,) = [i for i in store.incidents.values() if i.type == "storm"]
    storm.state = IncidentState.CLOSED
    feed([intake], store, [fence_alarm(20, devices[8].id, T0 + timedelta(seconds=5))], batch=1)
    storms = [i for i in store.incidents.values() if i.type == "storm"]
    assert len(storms) == 2  # the grid is still over its rate: a new storm incident


def test_storm_control_can_be_turned_off() -> None:
    devices = perimeter(10)
    intake, store = make_intake(devices, CorrelationConfig(storm_max_incidents=None)), FakeStore()
    feed([intake], store, [fence_alarm(i, devices[i].id, T0 + timedelta(seconds=i)) for i in range(10)], batch=4)
    assert len(store.incidents) == 10 and "recent_incident_counts" not in store.queries


def test_storm_guard_counts_the_store_and_the_batch() -> None:
    config = CorrelationConfig(storm_max_incidents=2)
    guard = StormGuard(config, {G1: 1}, {}, T0)
    assert not guard.folds(G1) and not guard.folds(None)
    guard.note_opened(G1)
    assert guard.folds(G1) and not guard.folds(G2) and not guard.active(G1)
