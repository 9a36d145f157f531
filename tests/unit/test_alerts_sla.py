"""SLA lights from timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts import sla
from alerts.model import Incident, IncidentState, Light, RouteRecord

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def dispatched(type_: str) -> Incident:
    route = RouteRecord(0, 0, "payload", 1, None, None, None, None, None, "x", T0)
    inc = Incident("I", type_, IncidentState.DISPATCHED, 3, "device", route, T0, T0)
    inc.dispatched_at = T0
    inc.deadline = sla.deadline_for(type_, T0)
    return inc


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [(0, Light.GREEN), (11.2, Light.GREEN), (11.25, Light.YELLOW), (14.9, Light.YELLOW), (15, Light.RED), (90, Light.RED)],
)
def test_fence_intrusion_lights(minutes: float, expected: Light) -> None:
    assert sla.light(dispatched("fence.intrusion"), T0 + timedelta(minutes=minutes)) is expected


def test_longest_prefix_wins() -> None:
    assert sla.limit_for("thermal.fire") == timedelta(minutes=5)
    assert sla.limit_for("thermal.overheat") == timedelta(minutes=15)
    assert sla.limit_for("other.thing") == timedelta(hours=1)


def test_no_light_without_a_running_clock() -> None:
    inc = dispatched("fence.intrusion")
    inc.state = IncidentState.CLOSED
    assert sla.light(inc, T0) is None
