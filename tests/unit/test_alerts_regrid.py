"""Publishing with policy `move`: open incidents whose point changed grid are re-routed and audited."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import pytest

from alerts.model import Incident, IncidentState, RouteRecord
from alerts.regrid import regrid
from alerts.routing import Router
from geo.model import Patroller, Shift
from tests.unit.fakes import BoxIndex

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
ALL_DAY = Shift(frozenset(range(7)), time(0, 0), time(0, 0))
G1, G2, G3 = "430102001001001", "430102001001002", "430102001001003"


@dataclass
class Pos:
    lon: float
    lat: float


class NewIndex(BoxIndex):
    version = 2


def incident(lon: float, state: IncidentState = IncidentState.DISPATCHED, assignee: str | None = "P1") -> Incident:
    route = RouteRecord(lon, 0.5, "payload", 1, G1[:9], G1[:12], G1, None, assignee, "nearest-on-duty", T0)
    return Incident("inc-1", "fence.intrusion", state, 3, "device", route, T0, T0, "fence-1",
                    assignee=assignee, dispatched_at=T0 if assignee else None)


@pytest.fixture
def router() -> Router:
    # the new version: G1 shrank to x < 0.5, the new grid G3 took 0.5 ≤ x < 1
    index = NewIndex({G1: (0, 0, 0.5, 1), G3: (0.5, 0, 1, 1), G2: (1, 0, 2, 1)})
    patrollers = [Patroller("P1", "Li", "1", (G1,), (ALL_DAY,)), Patroller("P3", "Zhao", "3", (G3,), (ALL_DAY,))]
    return Router(index, patrollers)


def test_incident_in_a_changed_grid_moves_to_the_new_grid_and_owner(router: Router) -> None:
    inc = incident(0.7)
    out = regrid(inc, router, now=T0 + timedelta(hours=1), actor="planner-1", positions={"P3": Pos(0.6, 0.5)})
    assert out is not None
    assert (out.from_grid, out.to_grid) == (G1, G3)
    assert inc.route.l3 == G3 and inc.route.grid_version == 2 and inc.route.rule == "regrid/nearest-on-duty"
    assert inc.assignee == "P3" and inc.state is IncidentState.DISPATCHED
    assert out.entry.action == "regrid" and out.entry.actor == "planner-1"
    assert out.entry.from_state is out.entry.to_state is IncidentState.DISPATCHED
    assert G1 in (out.entry.note or "") and G3 in (out.entry.note or "") and "P1 → P3" in (out.entry.note or "")
    topics = [n.topic for n in out.notifications]
    assert topics == [f"gridwatch/grids/{G1}/incidents", f"gridwatch/grids/{G3}/incidents",
                      "gridwatch/patrollers/P1/alerts", "gridwatch/patrollers/P3/alerts"]
    assert out.notifications[0].payload["event"] == "regrid"


def test_incident_whose_grid_is_unchanged_keeps_route_and_version(router: Router) -> None:
    inc = incident(0.2)
    before = inc.route
    assert regrid(inc, router, now=T0, actor="p", positions={}) is None
    assert inc.route is before and inc.route.grid_version == 1


def test_closed_incidents_are_not_moved(router: Router) -> None:
    inc = incident(0.7, state=IncidentState.CLOSED)
    assert regrid(inc, router, now=T0, actor="p", positions={}) is None
    assert inc.route.l3 == G1


def test_unassigned_reported_incident_moves_grid_but_stays_unassigned(router: Router) -> None:
    inc = incident(0.7, state=IncidentState.REPORTED, assignee=None)
    out = regrid(inc, router, now=T0, actor="p", positions={})
    assert out is not None and inc.assignee is None and inc.route.l3 == G3
    assert "command center → command center" in (out.entry.note or "")
