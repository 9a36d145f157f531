"""Cross-device correlation: alarms of different devices within R metres and T seconds join one incident."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import pytest
from shapely.geometry import Point

from alerts.correlate import (
    CORRELATE_LOCK,
    CorrelationConfig,
    NearIndex,
    combined_confidence,
)
from alerts.intake import IncidentIntake
from alerts.model import IncidentState, RouteRecord
from alerts.routing import Router, distance_m
from geo.model import Device, Patroller, Shift
from ingest.model import Alarm
from tests.unit.fakes import BoxIndex, FakeStore, offset

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
ALL_DAY = Shift(frozenset(range(7)), time(0, 0), time(0, 0))
G1, G2 = "430102001001001", "430102001001002"
LON, LAT = 113.85, 27.62  # a building in G1
FENCE_AT = (LON, LAT)
THERMAL_AT = offset(LON, LAT, east_m=20)  # 20 m away
FAR_AT = offset(LON, LAT, east_m=80)  # beyond the 50 m radius


@dataclass
class Pos:
    lon: float
    lat: float


def alarm(msg: str, device: str, type_: str, at: datetime = T0, where: tuple[float, float] | None = None, severity: int = 3) -> Alarm:
    lon, lat = where if where is not None else (None, None)
    return Alarm(device, msg, at, type_, severity, at, b"{}", lon=lon, lat=lat)


def make_intake(config: CorrelationConfig | None = None, **kw) -> IncidentIntake:
    index = BoxIndex({G1: (113.84, 27.61, 113.86, 27.63), G2: (113.86, 27.61, 113.88, 27.63)})
    router = Router(index, [Patroller("P1", "Li", "1", (G1, G2), (ALL_DAY,))])
    devices = {
        "fence-1": Device("fence-1", "fence", "f1", Point(*FENCE_AT), G1),
        "fence-2": Device("fence-2", "fence", "f2", Point(*offset(LON, LAT, north_m=30)), G1),
        "thermal-1": Device("thermal-1", "thermal", "t1", Point(*THERMAL_AT), G1),
        "thermal-far": Device("thermal-far", "thermal", "tf", Point(*FAR_AT), G1),
        "smoke-1": Device("smoke-1", "smoke", "s1", Point(*offset(LON, LAT, north_m=-10)), G1),
    }
    it = IncidentIntake(router, devices, config=config, **kw)
    it.remember_positions({"P1": Pos(LON, LAT)})
    return it


def run(intake: IncidentIntake, store: FakeStore, *batches: list[Alarm], now: datetime | None = None):
    results = []
    for batch in batches:
        with store.unit_of_work() as uow:
            results.append(intake.accept(uow, alarms=batch, now=now or max(a.ts for a in batch)))
    return results


@pytest.mark.parametrize("one_batch", [True, False], ids=["one-batch", "two-batches"])
def test_fence_and_thermal_intrusion_20m_apart_within_30s_are_one_incident(one_batch: bool) -> None:
    intake, store = make_intake(), FakeStore()
    fence = alarm("f1", "fence-1", "fence.intrusion", T0)
    thermal = alarm("t1", "thermal-1", "thermal.intrusion", T0 + timedelta(seconds=30), severity=4)
    results = run(intake, store, [fence, thermal]) if one_batch else run(intake, store, [fence], [thermal])
    (inc,) = store.incidents.values()
    assert inc.type == "fence.intrusion" and inc.device_id == "fence-1"
    assert inc.alarm_count == 2 and inc.severity == 4
    assert inc.last_alarm_at == T0 + timedelta(seconds=30) and inc.first_alarm_at == T0
    assert inc.details["devices"] == ["fence-1", "thermal-1"]
    assert inc.details["types"] == ["fence.intrusion", "thermal.intrusion"]
    assert inc.confidence == pytest.approx(1 - (1 - 0.6) * (1 - 0.7))  # raised from the fence's 0.6
    assert {a[1] for a in store.alarms.values()} == {inc.id}
    assert sum(r.correlated for r in results) == 1
    patroller_notes = [n for n in store.notes if n.topic.startswith("gridwatch/patrollers/")]
    assert len(patroller_notes) == 1  # only the creation goes to the patroller
    assert store.notes[-1].payload["confidence"] == inc.confidence
    assert store.notes[-1].payload["details"]["devices"] == ["fence-1", "thermal-1"]


def test_single_device_incident_carries_its_kind_confidence() -> None:
    intake, store = make_intake(), FakeStore()
    run(intake, store, [alarm("t1", "thermal-1", "thermal.intrusion")])
    (inc,) = store.incidents.values()
    assert inc.confidence == 0.7 and inc.details == {}


def test_no_correlation_beyond_the_radius() -> None:
    intake, store = make_intake(), FakeStore()
    run(intake, store, [alarm("f1", "fence-1", "fence.intrusion"), alarm("t1", "thermal-far", "thermal.intrusion", T0 + timedelta(seconds=5))])
    assert len(store.incidents) == 2
    assert distance_m(*FENCE_AT, *FAR_AT) > 50


@pytest.mark.parametrize("one_batch", [True, False], ids=["one-batch", "two-batches"])
def test_no_correlation_beyond_the_window(one_batch: bool) -> None:
    intake, store = make_intake(), FakeStore()
    fence = alarm("f1", "fence-1", "fence.intrusion", T0)
    thermal = alarm("t1", "thermal-1", "thermal.intrusion", T0 + timedelta(seconds=61))
    run(intake, store, [fence, thermal]) if one_batch else run(intake, store, [fence], [thermal])
    assert len(store.incidents) == 2
    assert all(i.confidence < 0.8 and "devices" not in i.details for i in store.incidents.values())


def test_alarms_of_another_family_or_device_faults_do_not_correlate() -> None:
    intake, store = make_intake(), FakeStore()
    run(intake, store, [
        alarm("f1", "fence-1", "fence.intrusion"),
        alarm("t1", "thermal-1", "thermal.fire", T0 + timedelta(seconds=2)),  # fire, not intrusion
        alarm("f2", "fence-2", "fence.low_voltage", T0 + timedelta(seconds=3)),  # a device fault
    ])
    assert len(store.incidents) == 3


def test_fire_family_correlates_thermal_fire_and_smoke() -> None:
    intake, store = make_intake(), FakeStore()
    run(intake, store, [alarm("t1", "thermal-1", "thermal.fire"), alarm("s1", "smoke-1", "smoke.alarm", T0 + timedelta(seconds=10))])
    (inc,) = store.incidents.values()
    assert inc.details["devices"] == ["thermal-1", "smoke-1"]
    assert inc.confidence == pytest.approx(1 - 0.3 * 0.2)


def test_another_type_of_the_same_device_is_not_correlation() -> None:
    intake, store = make_intake(), FakeStore()
    run(intake, store, [alarm("f1", "fence-1", "fence.intrusion"), alarm("f2", "fence-1", "fence.cut", T0 + timedelta(seconds=1))])
    assert len(store.incidents) == 2


def test_three_devices_raise_confidence_step_by_step_and_are_listed_once() -> None:
    intake, store = make_intake(), FakeStore()
    run(intake, store,
        [alarm("f1", "fence-1", "fence.intrusion")],
        [alarm("t1", "thermal-1", "thermal.intrusion", T0 + timedelta(seconds=10))],
        [alarm("f2", "fence-2", "fence.intrusion", T0 + timedelta(seconds=20)),
         alarm("t2", "thermal-1", "thermal.intrusion", T0 + timedelta(seconds=25))])
    (inc,) = store.incidents.values()
    assert inc.alarm_count == 4
    assert inc.details["devices"] == ["fence-1", "thermal-1", "fence-2"]
    assert inc.confidence == pytest.approx(1 - 0.4 * 0.3 * 0.4)


def test_a_correlated_device_keeps_joining_within_the_cooldown() -> None:
    intake, store = make_intake(), FakeStore()
    run(intake, store,
        [alarm("f1", "fence-1", "fence.intrusion"), alarm("t1", "thermal-1", "thermal.intrusion", T0 + timedelta(seconds=20))],
        [alarm("t2", "thermal-1", "thermal.intrusion", T0 + timedelta(minutes=5))])  # beyond window_s, within cooldown
    (inc,) = store.incidents.values()
    assert inc.alarm_count == 3 and inc.last_alarm_at == T0 + timedelta(minutes=5)


def test_the_window_slides_with_the_incidents_last_alarm() -> None:
    intake, store = make_intake(), FakeStore()
    run(intake, store,
        [alarm("f1", "fence-1", "fence.intrusion"), alarm("f2", "fence-1", "fence.intrusion", T0 + timedelta(seconds=50))],
        [alarm("t1", "thermal-1", "thermal.intrusion", T0 + timedelta(seconds=100))])  # 50 s after the last alarm
    assert len(store.incidents) == 1


def test_closed_incident_is_not_correlated() -> None:
    intake, store = make_intake(), FakeStore()
    run(intake, store, [alarm("f1", "fence-1", "fence.intrusion")])
    (inc,) = store.incidents.values()
    inc.state = IncidentState.CLOSED
    run(intake, store, [alarm("t1", "thermal-1", "thermal.intrusion", T0 + timedelta(seconds=10))])
    assert len(store.incidents) == 2


def test_correlation_can_be_turned_off() -> None:
    intake, store = make_intake(CorrelationConfig(radius_m=0)), FakeStore()
    run(intake, store, [alarm("f1", "fence-1", "fence.intrusion"), alarm("t1", "thermal-1", "thermal.intrusion", T0 + timedelta(seconds=1))])
    assert len(store.incidents) == 2
    assert "open_incidents_near" not in store.queries


def test_payload_positions_are_used_for_the_distance() -> None:
    intake, store = make_intake(), FakeStore()
    run(intake, store, [
        alarm("f1", "fence-1", "fence.intrusion", where=FAR_AT),  # the fence reports where the intrusion is
        alarm("t1", "thermal-far", "thermal.intrusion", T0 + timedelta(seconds=3)),  # registered at FAR_AT
    ])
    assert len(store.incidents) == 1


def test_the_batch_locks_each_device_type_and_each_grid_for_correlation() -> None:
    intake, store = make_intake(), FakeStore()
    run(intake, store, [alarm("f1", "fence-1", "fence.intrusion"), alarm("t1", "thermal-1", "thermal.intrusion")])
    (locked,) = store.lock_calls
    assert locked == sorted(locked)
    assert set(locked) == {("fence-1", "fence.intrusion"), ("thermal-1", "thermal.intrusion"), (G1, CORRELATE_LOCK)}


def test_constructor_cooldown_still_wins_over_the_config_default() -> None:
    it = make_intake(CorrelationConfig(radius_m=10), cooldown=timedelta(seconds=5))
    assert it.cooldown == timedelta(seconds=5) and it.config.radius_m == 10
    assert make_intake().cooldown == timedelta(minutes=10)


def test_config_families_and_confidence() -> None:
    c = CorrelationConfig()
    assert c.family("fence.intrusion") == c.family("thermal.intrusion") == c.family("camera.line_crossing") == "intrusion"
    assert c.family("smoke.alarm") == c.family("thermal.fire") == "fire"
    assert c.family("fence.low_voltage") is None and c.family("other.x") is None and c.family("device.offline") is None
    assert c.confidence_of("fence") == 0.6 and c.confidence_of("unknown") == c.default_confidence
    assert combined_confidence([]) == 0.0 and combined_confidence([1.0, 0.2]) == 1.0
    assert combined_confidence([0.5, 0.5]) == 0.75
    with pytest.raises(ValueError, match="radius_m"):
        CorrelationConfig(radius_m=-1)
    with pytest.raises(ValueError, match="confidence"):
        CorrelationConfig(kind_confidence={"fence": 1.5})


def test_near_index_matches_brute_force() -> None:
    from alerts.model import Incident

    rng = random.Random(7)
    index = NearIndex(50.0)
    incidents = []
    for i in range(400):
        lon, lat = offset(LON, LAT, rng.uniform(-300, 300), rng.uniform(-300, 300))
        route = RouteRecord(lon, lat, "payload", 1, None, None, None, None, None, "x", T0)
        inc = Incident(f"I{i}", "fence.intrusion", IncidentState.DISPATCHED, 3, "device", route, T0, T0)
        incidents.append(inc)
        index.add(inc)
    for _ in range(200):
        lon, lat = offset(LON, LAT, rng.uniform(-300, 300), rng.uniform(-300, 300))
        got = {i.id for _, i in index.near(lon, lat)}
        want = {i.id for i in incidents if distance_m(lon, lat, i.route.lon, i.route.lat) <= 50.0}
        assert got == want
