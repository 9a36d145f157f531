"""Patroller geofences: arrival with dwell/hysteresis against GPS jitter; grid exit before enter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.arrival import ArrivalTracker, GridPresence
from alerts.model import Incident, IncidentState, RouteRecord

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
LON, LAT = 113.85, 27.62
M_PER_DEG_LAT = 111_195.08


def incident(iid: str = "I1", *, assignee: str = "P1", state=IncidentState.DISPATCHED, lon=LON, lat=LAT, arrived_at=None) -> Incident:
    route = RouteRecord(lon, lat, "payload", 1, "430102001", "430102001001", "430102001001001", None, assignee, "nearest-on-duty", T0)
    return Incident(iid, "fence.intrusion", state, 3, "device", route, T0, T0, assignee=assignee, arrived_at=arrived_at)


def north(m: float) -> tuple[float, float]:
    """A point `m` metres north of the incident."""
    return LON, LAT + m / M_PER_DEG_LAT


def fix(tr: ArrivalTracker, s: float, m: float, incidents, *, acc: float | None = 5.0, who: str = "P1") -> list[str]:
    return tr.observe(who, *north(m), T0 + timedelta(seconds=s), acc, incidents)


def test_arrives_after_dwelling_inside_across_two_fixes() -> None:
    tr, incs = ArrivalTracker(), [incident()]
    assert fix(tr, 0, 200, incs) == []
    assert fix(tr, 10, 30, incs) == []  # entered
    assert fix(tr, 20, 25, incs) == []  # 10 s inside
    assert fix(tr, 30, 20, incs) == ["I1"]  # 20 s inside
    assert fix(tr, 40, 10, incs) == []  # reported once


def test_one_fix_is_not_an_arrival_even_after_a_long_gap_outside() -> None:
    tr, incs = ArrivalTracker(), [incident()]
    assert fix(tr, 0, 10, incs) == []
    assert fix(tr, 60, 300, incs) == []  # left: the dwell is reset
    assert fix(tr, 120, 10, incs) == []  # back in: a new dwell starts
    assert fix(tr, 125, 10, incs) == []
    assert fix(tr, 140, 10, incs) == ["I1"]


def test_passing_by_does_not_arrive() -> None:
    tr, incs = ArrivalTracker(), [incident()]
    for s, m in [(0, 120), (5, 40), (10, 0), (15, -40), (20, -120), (25, -200)]:
        assert fix(tr, s, m, incs) == []


def test_jitter_across_the_edge_keeps_the_dwell() -> None:
    tr, incs = ArrivalTracker(radius_m=50, dwell_s=20), [incident()]
    # standing ~50 m away; fixes with 15 m accuracy scatter between 45 and 62 m
    assert fix(tr, 0, 45, incs, acc=15) == []  # inside: the dwell starts
    assert fix(tr, 8, 62, incs, acc=15) == []  # 62 - 15 <= 50: only jitter, the dwell continues
    assert fix(tr, 16, 58, incs, acc=15) == []
    assert fix(tr, 24, 61, incs, acc=15) == ["I1"]


def test_a_fix_clearly_outside_resets_the_dwell() -> None:
    tr, incs = ArrivalTracker(radius_m=50, dwell_s=20), [incident()]
    assert fix(tr, 0, 45, incs, acc=5) == []
    assert fix(tr, 10, 62, incs, acc=5) == []  # 62 - 5 > 50: out
    assert fix(tr, 20, 48, incs, acc=5) == []  # a new dwell starts here
    assert fix(tr, 30, 40, incs, acc=5) == []
    assert fix(tr, 40, 40, incs, acc=5) == ["I1"]


def test_starting_a_dwell_needs_a_fix_inside_the_radius() -> None:
    tr, incs = ArrivalTracker(radius_m=50, dwell_s=20), [incident()]
    for s in range(0, 60, 10):
        assert fix(tr, s, 70, incs, acc=40) == []  # near the edge but never inside


def test_accuracy_allowance_is_capped_at_the_radius() -> None:
    tr, incs = ArrivalTracker(radius_m=50, dwell_s=20, max_accuracy_m=200), [incident()]
    assert fix(tr, 0, 10, incs) == []
    assert fix(tr, 10, 130, incs, acc=150) == []  # 130 - min(150, 50) > 50: out
    assert fix(tr, 20, 10, incs) == []
    assert fix(tr, 40, 10, incs) == ["I1"]


def test_inaccurate_fixes_are_ignored() -> None:
    tr, incs = ArrivalTracker(max_accuracy_m=100), [incident()]
    assert fix(tr, 0, 10, incs, acc=150) == []
    assert fix(tr, 30, 10, incs, acc=150) == []  # two inaccurate fixes inside: no arrival
    assert fix(tr, 40, 10, incs, acc=8) == []  # the dwell starts here
    assert fix(tr, 50, 500, incs, acc=300) == []  # an inaccurate fix far away does not reset it
    assert fix(tr, 60, 10, incs, acc=None) == ["I1"]  # unknown accuracy counts (no allowance)


def test_out_of_order_fixes_are_ignored() -> None:
    tr, incs = ArrivalTracker(), [incident()]
    assert fix(tr, 10, 10, incs) == []
    assert fix(tr, 40, 10, incs) == ["I1"]
    tr, incs = ArrivalTracker(), [incident()]
    assert fix(tr, 10, 10, incs) == []
    assert fix(tr, 5, 10, incs) == []  # older
    assert fix(tr, 10, 10, incs) == []  # repeated
    assert fix(tr, 20, 10, incs) == []  # 10 s since entry
    assert fix(tr, 0, 10, incs) == []  # a late old fix must not stretch the dwell
    assert fix(tr, 30, 10, incs) == ["I1"]


def test_only_own_open_unarrived_incidents_are_tracked() -> None:
    incs = [
        incident("mine"),
        incident("ack", state=IncidentState.ACKNOWLEDGED),
        incident("other", assignee="P2"),
        incident("done", state=IncidentState.RESOLVED),
        incident("reported", state=IncidentState.REPORTED),
        incident("there", arrived_at=T0),
        incident("far", lat=LAT + 0.01),
    ]
    tr = ArrivalTracker()
    assert fix(tr, 0, 0, incs) == []
    assert fix(tr, 30, 0, incs) == ["mine", "ack"]


def test_arrival_details_and_forget() -> None:
    tr, incs = ArrivalTracker(), [incident()]
    tr.observe("P1", *north(0), T0, 5, incs)
    (a,) = tr.observe_arrivals("P1", *north(3), T0 + timedelta(seconds=25), 5, incs)
    assert (a.incident_id, a.patroller_id, a.entered_at, a.confirmed_at) == ("I1", "P1", T0, T0 + timedelta(seconds=25))
    assert 2.5 < a.distance_m < 3.5
    tr.forget("I1")  # e.g. reopened for rework
    assert fix(tr, 30, 0, incs) == []
    assert fix(tr, 60, 0, incs) == ["I1"]


def test_patrollers_are_tracked_separately() -> None:
    tr = ArrivalTracker()
    a, b = incident("A", assignee="P1"), incident("B", assignee="P2")
    assert fix(tr, 0, 0, [a, b], who="P1") == []
    assert fix(tr, 30, 0, [a, b], who="P2") == []  # P2's first fix: P1's dwell is not P2's
    assert fix(tr, 31, 0, [a, b], who="P1") == ["A"]
    assert fix(tr, 60, 0, [a, b], who="P2") == ["B"]


def test_refuses_bad_settings() -> None:
    with pytest.raises(ValueError):
        ArrivalTracker(radius_m=0)


def test_grid_presence_emits_exit_before_enter() -> None:
    gp = GridPresence()
    assert gp.update("P1", "G1") == [("enter", "G1")]
    assert gp.update("P1", "G1") == []
    assert gp.update("P1", "G2") == [("exit", "G1"), ("enter", "G2")]
    assert gp.update("P1", None) == [("exit", "G2")]  # left the district
    assert gp.update("P1", "G3") == [("enter", "G3")]
    assert gp.current("P1") == "G3" and gp.current("P2") is None
    assert list(GridPresence().replay("P2", ["G1", "G1", "G2", "G3", "G3", "G1"])) == [
        ("enter", "G1"), ("exit", "G1"), ("enter", "G2"), ("exit", "G2"), ("enter", "G3"), ("exit", "G3"), ("enter", "G1"),
    ]


def test_grid_presence_ignores_out_of_order_fixes() -> None:
    gp = GridPresence()
    assert gp.update("P1", "G1", T0) == [("enter", "G1")]
    assert gp.update("P1", "G2", T0 + timedelta(seconds=10)) == [("exit", "G1"), ("enter", "G2")]
    assert gp.update("P1", "G1", T0 + timedelta(seconds=5)) == []  # late
    assert gp.current("P1") == "G2"
