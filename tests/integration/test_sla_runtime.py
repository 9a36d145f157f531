"""SLA clocks on the real stores: the runtime's sweep turns an unacknowledged dispatch yellow at 75 %,
red at 100 % (one reminder) and escalates it to the street center after another full limit."""

from __future__ import annotations

from datetime import timedelta

import pytest

from api.runtime import Runtime
from store.ports import IncidentQuery
from tests.integration.apphelpers import Clock, alarm_message

pytestmark = pytest.mark.integration


def outbox_topics(rt: Runtime) -> list[str]:
    return [n.topic for _, n in rt.store.pending_notifications(limit=10_000)]


def test_unacknowledged_dispatch_goes_yellow_red_and_escalates(rt: Runtime, clock: Clock) -> None:
    device = next(d for d in rt.devices.values() if d.kind == "fence")
    (iid,) = rt.handle_messages([alarm_message(device.id, "sla-1", at=clock.now)]).incidents_created
    incident = rt.store.incident(iid)
    assert incident is not None and incident.state.value == "dispatched" and incident.stage == "acknowledge"
    limit = rt.sla_config.limit(incident.type, "acknowledge", incident.severity)
    start = clock.now

    def at(fraction: float) -> None:
        clock.now = start + limit * fraction
        rt.sla_sweep()

    at(0.5)
    assert rt.store.incident(iid).light in (None, "green")  # type: ignore[union-attr]
    at(0.76)
    assert rt.store.incident(iid).light == "yellow"  # type: ignore[union-attr]
    at(1.01)
    red = rt.store.incident(iid)
    assert red is not None and red.light == "red" and red.reminded_at is not None and red.escalation_level == 3
    at(1.5)  # red, but not another full limit yet: nothing more
    assert [h.action for h in rt.store.history(iid)].count("remind") == 1
    assert rt.store.incident(iid).escalation_level == 3  # type: ignore[union-attr]
    at(2.01)
    escalated = rt.store.incident(iid)
    assert escalated is not None and escalated.escalation_level == 2 and escalated.supervised
    actions = [h.action for h in rt.store.history(iid)]
    assert actions.count("remind") == 1 and "escalate" in actions and "supervise" in actions
    assert f"gridwatch/centers/2/{escalated.route.l2}/incidents" in outbox_topics(rt)
    at(2.02)  # a repeated sweep changes nothing
    assert [h.action for h in rt.store.history(iid)] == actions
    assert rt.store.incidents(IncidentQuery(grid=escalated.route.l2))[0].id == iid


def test_acknowledged_in_time_stays_green(rt: Runtime, clock: Clock) -> None:
    from alerts.actions import perform

    device = next(d for d in rt.devices.values() if d.kind == "fence")
    (iid,) = rt.handle_messages([alarm_message(device.id, "sla-2", at=clock.now)]).incidents_created
    incident = rt.store.incident(iid)
    assert incident is not None
    clock.advance(minutes=1)
    actor = f"patroller:{incident.assignee}" if incident.assignee else "system:test"
    perform(rt.store.unit_of_work, iid, "acknowledge", actor=actor, now=clock.now)
    acked = rt.store.incident(iid)
    assert acked is not None and acked.stage == "handle" and acked.acknowledged_at == clock.now
    clock.advance(seconds=1)
    rt.sla_sweep()
    assert rt.store.incident(iid).light in (None, "green")  # type: ignore[union-attr]



def test_a_custom_sla_file_drives_every_path(store_backend, clock: Clock, tmp_path) -> None:  # noqa: ANN001
    """GRIDWATCH_SLA_CONFIG applies to auto-dispatch, API actions, lights and the sweep alike."""
    from alerts import sla
    from tests.integration.apphelpers import (
        actor_headers,
        client_for,
        make_runtime,
        seed,
    )

    (tmp_path / "sla.yaml").write_text(
        'types:\n  "":\n    calendar: natural\n    limits: {register: 30m, acknowledge: 1h, handle: 1h, check: 1h}\n'
        '  fence.intrusion:\n    limits: {acknowledge: 2h, handle: 3h}\n'
    )
    seed(store_backend)
    rt = make_runtime(store_backend, clock, sla_config=str(tmp_path / "sla.yaml"))
    try:
        device = next(d for d in rt.devices.values() if d.kind == "fence")
        (iid,) = rt.handle_messages([alarm_message(device.id, "custom-1", at=clock.now)]).incidents_created
        incident = rt.store.incident(iid)
        assert incident is not None and incident.deadline == clock.now + timedelta(hours=2)
        clock.advance(minutes=5)
        with client_for(rt) as client:
            actor = f"patroller:{incident.assignee}" if incident.assignee else "system:test"
            body = client.post(f"/api/v1/incidents/{iid}/actions", json={"action": "acknowledge"}, headers=actor_headers(rt, actor)).json()
            assert body["deadline"] == (clock.now + timedelta(hours=3)).isoformat()
            clock.advance(hours=2, minutes=20)  # 2h20m of 3h: 78 % → yellow with the custom limits (red with the packaged 15 min)
            assert client.get(f"/api/v1/incidents/{iid}").json()["light"] == "yellow"
            rt.sla_sweep()
            assert rt.store.incident(iid).light == "yellow"  # type: ignore[union-attr]
    finally:
        rt.close()
        sla.activate(sla.DEFAULT)
