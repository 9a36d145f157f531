"""Alarm → incident: creation with route record, auto-dispatch, cooldown join, redelivery dedup."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import pytest
from shapely.geometry import Point

from alerts.intake import IncidentIntake
from alerts.model import IncidentState
from alerts.routing import Router
from geo.model import Device, Patroller, Shift
from ingest.model import Alarm, DeadLetter, PatrollerPosition
from tests.unit.fakes import BoxIndex, FakeStore

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai, a Saturday
ALL_DAY = Shift(frozenset(range(7)), time(0, 0), time(0, 0))
G1, G2 = "430102001001001", "430102001001002"


@dataclass
class Pos:
    lon: float
    lat: float


def alarm(msg: str, *, device: str = "fence-001", type_: str = "fence.intrusion", at: datetime = T0, lon=None, lat=None) -> Alarm:
    return Alarm(device, msg, at, type_, 3, at, b"{}", lon=lon, lat=lat)


@pytest.fixture
def intake() -> IncidentIntake:
    index = BoxIndex({G1: (0, 0, 1, 1), G2: (1, 0, 2, 1)})
    patrollers = [
        Patroller("P1", "Li", "1", (G1,), (ALL_DAY,)),
        Patroller("P2", "Wang", "2", (G1,), (ALL_DAY,)),
        Patroller("P3", "Off", "3", (G2,), ()),
    ]
    router = Router(index, patrollers)
    devices = {"fence-001": Device("fence-001", "fence", "f", Point(0.5, 0.5), G1),
               "thermal-001": Device("thermal-001", "thermal", "t", Point(1.5, 0.5), G2)}
    it = IncidentIntake(router, devices, cooldown=timedelta(minutes=10))
    it.remember_positions({"P1": Pos(0.9, 0.9), "P2": Pos(0.4, 0.4)})
    return it


def test_alarm_opens_dispatched_incident_routed_to_nearest_on_duty_patroller(intake: IncidentIntake) -> None:
    store = FakeStore()
    with store.unit_of_work() as uow:
        res = intake.accept(uow, alarms=[alarm("m1", lon=0.5, lat=0.5)], now=T0)
    (iid,) = res.incidents_created
    inc = store.incidents[iid]
    assert inc.state is IncidentState.DISPATCHED
    assert inc.assignee == "P2"  # (0.4, 0.4) is nearer to (0.5, 0.5) than (0.9, 0.9)
    assert (inc.route.l3, inc.route.l2, inc.route.l1) == (G1, G1[:12], G1[:9])
    assert inc.route.rule == "nearest-on-duty" and inc.route.point_source == "payload"
    assert inc.deadline == T0 + timedelta(minutes=15)
    assert [h.action for h in store.history] == ["report", "register", "dispatch"]
    topics = {n.topic for n in store.notes}
    assert topics == {f"gridwatch/grids/{G1}/incidents", "gridwatch/patrollers/P2/alerts"}


def test_alarm_without_position_uses_the_device_location_and_falls_back_to_command_center(intake: IncidentIntake) -> None:
    store = FakeStore()
    with store.unit_of_work() as uow:
        res = intake.accept(uow, alarms=[alarm("m1", device="thermal-001", type_="thermal.fire")], now=T0)
    inc = store.incidents[res.incidents_created[0]]
    assert inc.route.point_source == "device" and inc.route.l3 == G2
    assert inc.assignee is None and inc.route.rule == "grid-command-center"
    assert [n.topic for n in store.notes] == [f"gridwatch/grids/{G2}/incidents"]


def test_repeats_within_cooldown_join_the_open_incident(intake: IncidentIntake) -> None:
    store = FakeStore()
    with store.unit_of_work() as uow:
        intake.accept(uow, alarms=[alarm("m1"), alarm("m2", at=T0 + timedelta(minutes=3))], now=T0)
    with store.unit_of_work() as uow:
        res = intake.accept(uow, alarms=[alarm("m3", at=T0 + timedelta(minutes=9))], now=T0)
    assert len(store.incidents) == 1
    (inc,) = store.incidents.values()
    assert inc.alarm_count == 3 and res.incidents_joined == [inc.id]
    assert inc.last_alarm_at == T0 + timedelta(minutes=9)
    assert len(store.alarms) == 3


def test_repeat_after_cooldown_or_of_another_type_opens_a_new_incident(intake: IncidentIntake) -> None:
    store = FakeStore()
    with store.unit_of_work() as uow:
        intake.accept(uow, alarms=[alarm("m1"), alarm("m2", type_="fence.cut")], now=T0)
    with store.unit_of_work() as uow:
        intake.accept(uow, alarms=[alarm("m3", at=T0 + timedelta(minutes=11))], now=T0)
    assert len(store.incidents) == 3


def test_redelivered_alarm_is_stored_once_and_counts_once(intake: IncidentIntake) -> None:
    store = FakeStore()
    with store.unit_of_work() as uow:
        res1 = intake.accept(uow, alarms=[alarm("m1"), alarm("m1")], now=T0)
    with store.unit_of_work() as uow:
        res2 = intake.accept(uow, alarms=[alarm("m1")], now=T0)
    assert res1.duplicates == 1 and res2.duplicates == 1 and res2.incidents_created == []
    (inc,) = store.incidents.values()
    assert inc.alarm_count == 1 and len(store.alarms) == 1


def test_closed_incident_is_not_joined(intake: IncidentIntake) -> None:
    store = FakeStore()
    with store.unit_of_work() as uow:
        intake.accept(uow, alarms=[alarm("m1")], now=T0)
    (inc,) = store.incidents.values()
    inc.state = IncidentState.CLOSED
    with store.unit_of_work() as uow:
        intake.accept(uow, alarms=[alarm("m2", at=T0 + timedelta(minutes=1))], now=T0)
    assert len(store.incidents) == 2


def test_positions_and_dead_letters_are_written(intake: IncidentIntake) -> None:
    store = FakeStore()
    dl = DeadLetter("gridwatch/devices/x/alarm", b"{", "invalid_json", "line 1", T0)
    pos = PatrollerPosition("P1", T0, 0.51, 0.51)
    with store.unit_of_work() as uow:
        res = intake.accept(uow, positions=[pos], dead_letters=[dl], now=T0)
    assert store.dead == [dl] and res.positions == 1
    with store.unit_of_work() as uow:
        res = intake.accept(uow, alarms=[alarm("m1", lon=0.5, lat=0.5)], now=T0)
    assert store.incidents[res.incidents_created[0]].assignee == "P1"  # P1 moved next to the alarm


def test_failed_batch_leaves_nothing(intake: IncidentIntake) -> None:
    store = FakeStore()
    with pytest.raises(RuntimeError):
        with store.unit_of_work() as uow:
            intake.accept(uow, alarms=[alarm("m1")], now=T0)
            raise RuntimeError("commit failed")
    assert store.incidents == {} and store.alarms == {}


# --- maintenance windows -------------------------------------------------------------------------
from alerts.maintenance import MaintenanceCalendar, MaintenanceWindow  # noqa: E402

B1 = G1 + "00001"


def window(grid=None, building=None, *, start=T0 - timedelta(hours=1), end=T0 + timedelta(hours=1), reason="fence repair") -> MaintenanceWindow:
    return MaintenanceWindow(grid, building, start, end, reason)


@pytest.mark.parametrize("w", [window(G1), window(G1[:12]), window(G1[:9]), window(building=B1)], ids=["l3", "l2", "l1", "building"])
def test_alarm_in_a_maintenance_window_is_stored_muted_and_opens_nothing(w: MaintenanceWindow) -> None:
    index = BoxIndex({G1: (0, 0, 1, 1), G2: (1, 0, 2, 1)}, buildings={B1: (0.4, 0.4, 0.6, 0.6)})
    devices = {"fence-001": Device("fence-001", "fence", "f", Point(0.5, 0.5), G1)}
    it = IncidentIntake(Router(index, [Patroller("P1", "Li", "1", (G1,), (ALL_DAY,))]), devices, maintenance=[w])
    store = FakeStore()
    with store.unit_of_work() as uow:
        res = it.accept(uow, alarms=[alarm("m1"), alarm("m2", at=T0 + timedelta(seconds=1))], now=T0)
    assert res.muted == 2 and res.alarms_stored == 2 and res.incidents_created == [] and res.notifications == []
    assert store.incidents == {} and store.notes == [] and store.history == []
    for stored, incident_id in store.alarms.values():
        assert incident_id is None and stored.warnings == ("muted: fence repair",)
    with store.unit_of_work() as uow:  # the mute is recorded, and a redelivery is still a duplicate
        res = it.accept(uow, alarms=[alarm("m1")], now=T0)
    assert res.duplicates == 1 and res.muted == 0


def test_maintenance_window_mutes_only_its_grid_building_and_time(intake: IncidentIntake) -> None:
    intake.set_maintenance([window(G2), window(G1, start=T0 + timedelta(minutes=5)), window(G1, end=T0)])
    store = FakeStore()
    with store.unit_of_work() as uow:
        res = intake.accept(uow, alarms=[
            alarm("m1", lon=0.5, lat=0.5),  # G1: its windows start later / ended at T0 (end exclusive)
            alarm("m2", device="thermal-001", type_="thermal.fire"),  # G2: muted
            alarm("m3", lon=0.5, lat=0.5, at=T0 + timedelta(minutes=6), type_="fence.cut"),  # G1, inside the later window
        ], now=T0 + timedelta(minutes=6))
    assert res.muted == 2 and len(res.incidents_created) == 1
    assert store.alarms[("fence-001", "m1")][1] == res.incidents_created[0]
    assert store.alarms[("thermal-001", "m2")][1] is None and store.alarms[("fence-001", "m3")][1] is None
    intake.set_maintenance([])
    with store.unit_of_work() as uow:
        res = intake.accept(uow, alarms=[alarm("m4", device="thermal-001", type_="thermal.fire")], now=T0)
    assert res.muted == 0 and len(res.incidents_created) == 1


def test_muted_alarms_keep_their_warnings_and_count_toward_no_storm(intake: IncidentIntake) -> None:
    intake.set_maintenance([window(G1, reason="drill")])
    store = FakeStore()
    a = Alarm("fence-001", "m1", T0, "other.beep", 3, T0, b"{}", warnings=("unknown type",))
    with store.unit_of_work() as uow:
        intake.accept(uow, alarms=[a, *(alarm(f"n{i}", at=T0 + timedelta(seconds=i)) for i in range(10))], now=T0)
    assert store.alarms[a.key][0].warnings == ("unknown type", "muted: drill")
    assert store.incidents == {} and "recent_incident_counts" not in store.queries


def test_maintenance_window_validation_and_calendar() -> None:
    with pytest.raises(ValueError, match="grid_code or a building"):
        MaintenanceWindow(None, None, T0, T0 + timedelta(hours=1), "x")
    with pytest.raises(ValueError, match="not after"):
        MaintenanceWindow(G1, None, T0, T0, "x")
    cal = MaintenanceCalendar([window(G1, reason="b", start=T0 - timedelta(minutes=1)), window(G1, reason="a", start=T0 - timedelta(minutes=2))])
    from tests.unit.fakes import Hit

    assert cal.muting(Hit(G1[:9], G1[:12], G1, None), T0).reason == "a"  # the earliest-starting active window
    assert cal.muting(Hit(G2[:9], G2[:12], G2, None), T0) is None and cal.muting(None, T0) is None
    assert not MaintenanceCalendar()
