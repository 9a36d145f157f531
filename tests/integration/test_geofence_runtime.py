"""Patroller geofences on the real stores: GPS fixes inside an incident's buffer for the dwell time mark
it arrived (acknowledging it if needed); moving between grids emits exit before enter."""

from __future__ import annotations

from datetime import timedelta

import pytest

from api.runtime import Runtime
from tests.integration.apphelpers import Clock, alarm_message, location_message

pytestmark = pytest.mark.integration


def dispatched_incident(rt: Runtime, clock: Clock) -> tuple[str, str, float, float]:
    for device in sorted(rt.devices.values(), key=lambda d: d.id):
        if device.kind != "fence":
            continue
        result = rt.handle_messages([alarm_message(device.id, f"geo-{device.id}", at=clock.now)])
        incident = rt.store.incident(result.incidents_created[0]) if result.incidents_created else None
        if incident is not None and incident.assignee:
            return incident.id, incident.assignee, incident.route.lon, incident.route.lat
    raise AssertionError("no fence incident was dispatched to a patroller")


def test_dwell_inside_the_buffer_marks_arrived(rt: Runtime, clock: Clock) -> None:
    iid, pid, lon, lat = dispatched_incident(rt, clock)
    t0 = clock.advance(minutes=2)
    far = lon + 0.01  # ~1 km east
    rt.handle_messages([location_message(pid, far, lat, at=t0, acc=5)])
    rt.handle_messages([location_message(pid, lon + 0.0001, lat, at=t0 + timedelta(seconds=30), acc=5)])  # ~10 m: enters
    assert rt.store.incident(iid).arrived_at is None  # type: ignore[union-attr]  # no dwell yet
    rt.handle_messages([location_message(pid, lon, lat + 0.0001, at=t0 + timedelta(seconds=55), acc=5)])  # 25 s later
    incident = rt.store.incident(iid)
    assert incident is not None and incident.arrived_at == t0 + timedelta(seconds=30)
    assert incident.state.value == "acknowledged" and incident.stage == "handle"
    history = [(h.action, h.actor) for h in rt.store.history(iid)]
    assert history[-2:] == [("acknowledge", f"patroller:{pid}"), ("arrive", f"patroller:{pid}")]
    assert "geofence" in (rt.store.history(iid)[-1].note or "")
    rt.handle_messages([location_message(pid, lon, lat, at=t0 + timedelta(seconds=90), acc=5)])
    assert [h.action for h in rt.store.history(iid)].count("arrive") == 1  # once


def test_jittery_or_vague_fixes_do_not_arrive(rt: Runtime, clock: Clock) -> None:
    iid, pid, lon, lat = dispatched_incident(rt, clock)
    t0 = clock.advance(minutes=2)
    rt.handle_messages([location_message(pid, lon, lat, at=t0, acc=500)])  # too vague: ignored
    rt.handle_messages([location_message(pid, lon, lat, at=t0 + timedelta(seconds=30), acc=500)])
    rt.handle_messages([location_message(pid, lon + 0.0001, lat, at=t0 + timedelta(seconds=40), acc=5)])  # starts a dwell
    rt.handle_messages([location_message(pid, lon + 0.01, lat, at=t0 + timedelta(seconds=50), acc=5)])  # clearly out
    rt.handle_messages([location_message(pid, lon, lat, at=t0 + timedelta(seconds=65), acc=5)])  # re-enters: new dwell
    assert rt.store.incident(iid).arrived_at is None  # type: ignore[union-attr]


def test_moving_between_grids_emits_exit_before_enter(rt: Runtime, clock: Clock) -> None:
    a, b = sorted(rt.store.grids(level=3), key=lambda g: g.code)[:2]
    pa, pb = a.geometry.representative_point(), b.geometry.representative_point()
    rt.handle_messages([location_message("P0001", pa.x, pa.y, at=clock.now)])
    rt.handle_messages([location_message("P0001", pb.x, pb.y, at=clock.now + timedelta(seconds=10))])
    topics = [(n.topic, n.payload["event"]) for _, n in rt.store.pending_notifications(limit=10_000)
              if n.topic.endswith("/patrollers") and n.payload.get("patroller_id") == "P0001"]
    assert topics[-2:] == [(f"gridwatch/grids/{a.code}/patrollers", "exit"), (f"gridwatch/grids/{b.code}/patrollers", "enter")]


def test_fixes_from_before_the_dispatch_are_not_an_arrival(rt: Runtime, clock: Clock) -> None:
    iid, pid, lon, lat = dispatched_incident(rt, clock)
    dispatched = clock.now
    rt.handle_messages([location_message(pid, lon, lat, at=dispatched - timedelta(seconds=60), acc=5)])
    rt.handle_messages([location_message(pid, lon, lat, at=dispatched - timedelta(seconds=30), acc=5)])
    assert rt.store.incident(iid).arrived_at is None  # type: ignore[union-attr]
    rt.handle_messages([location_message(pid, lon, lat, at=dispatched + timedelta(seconds=1), acc=5)])
    rt.handle_messages([location_message(pid, lon, lat, at=dispatched + timedelta(seconds=30), acc=5)])
    incident = rt.store.incident(iid)
    assert incident is not None and incident.arrived_at == dispatched + timedelta(seconds=1)
    assert incident.acknowledged_at is not None and incident.acknowledged_at >= incident.dispatched_at  # type: ignore[operator]
