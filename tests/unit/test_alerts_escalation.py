"""The SLA scheduler's sweep on a simulated clock: lights, one reminder 催办 per red period, escalation 督办."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from alerts import sla
from alerts.escalation import SweepEffect, center_topic, sweep
from alerts.intake import grid_topic, patroller_topic
from alerts.model import Incident, IncidentState, RouteRecord

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
CST = ZoneInfo("Asia/Shanghai")
L1, L2, L3 = "430102001", "430102001001", "430102001001001"
M = timedelta(minutes=1)
H = timedelta(hours=1)
STEP = timedelta(seconds=10)


def dispatched(type_: str = "pothole", *, at: datetime = T0, assignee: str | None = "P1", level: int = 3) -> Incident:
    """An unacknowledged dispatched incident whose acknowledge clock started at `at`."""
    route = RouteRecord(0.5, 0.5, "payload", 1, L1, L2, L3, None, assignee, "nearest-on-duty", at)
    inc = Incident("INC-1", type_, IncidentState.DISPATCHED, 3, "report", route, at, at,
                   assignee=assignee, dispatched_at=at, escalation_level=level)
    sla.start_stage(inc, "acknowledge", at)
    return inc


def run(inc: Incident, start: datetime, end: datetime, step: timedelta = STEP) -> list[tuple[datetime, SweepEffect]]:
    """Sweep every `step` from `start` to `end` (inclusive), sweeping twice per tick to catch duplicates."""
    out: list[tuple[datetime, SweepEffect]] = []
    now = start
    while now <= end:
        for _ in range(2):
            out.extend((now, e) for e in sweep([inc], now))
        now += step
    return out


def actions(effects: list[tuple[datetime, SweepEffect]]) -> list[tuple[timedelta, str]]:
    return [(t - T0, h.action) for t, e in effects for h in e.history]


def events(effects: list[tuple[datetime, SweepEffect]]) -> list[tuple[timedelta, str, str, str | None]]:
    return [(t - T0, n.topic, n.payload["event"], n.payload["light"]) for t, e in effects for n in e.notifications]


GRID = grid_topic(L3)
PHONE = patroller_topic("P1")


def test_acceptance_unacknowledged_incident_goes_yellow_red_and_escalates_to_the_street() -> None:
    inc = dispatched()  # acknowledge limit L = 1 h, natural time
    limit = sla.DEFAULT.limit(inc.type, "acknowledge")
    assert limit == H and inc.deadline == T0 + H

    effects = run(inc, T0, T0 + 2 * limit - STEP)
    assert events(effects) == [
        (timedelta(0), GRID, "light", "green"),
        (45 * M, GRID, "light", "yellow"),  # 75 % of L
        (45 * M, PHONE, "light", "yellow"),
        (60 * M, GRID, "light", "red"),  # 100 % of L
        (60 * M, PHONE, "light", "red"),
        (60 * M, PHONE, "remind", "red"),  # one 催办
        (60 * M, GRID, "remind", "red"),
    ]
    assert actions(effects) == [(60 * M, "remind")]
    assert inc.escalation_level == 3 and not inc.supervised and inc.escalated_at is None  # not earlier
    assert inc.light == "red" and inc.reminded_at == T0 + H

    effects = run(inc, T0 + 2 * limit, T0 + 3 * limit - STEP)  # red for another full L
    assert actions(effects) == [(2 * H, "escalate"), (2 * H, "supervise")]
    assert (inc.escalation_level, inc.supervised, inc.escalated_at) == (2, True, T0 + 2 * H)
    street = center_topic(2, L2)
    assert street == f"gridwatch/centers/2/{L2}/incidents"
    assert events(effects) == [(2 * H, GRID, "escalate", "red"), (2 * H, street, "escalate", "red")]
    (_, effect), = effects
    assert effect.changed and effect.incident is inc
    assert effect.notifications[1].payload["escalation_level"] == 2
    assert all(h.actor == "system:sla" and h.from_state is h.to_state is IncidentState.DISPATCHED for h in effect.history)

    effects = run(inc, T0 + 3 * limit, T0 + 6 * limit, step=timedelta(minutes=1))  # once more, to the district
    assert actions(effects) == [(3 * H, "escalate"), (3 * H, "supervise")]
    assert events(effects) == [(3 * H, GRID, "escalate", "red"), (3 * H, center_topic(1, L1), "escalate", "red")]
    assert inc.escalation_level == 1  # never past 1


def test_no_effects_when_nothing_changes() -> None:
    inc = dispatched()
    assert len(sweep([inc], T0)) == 1
    assert sweep([inc], T0 + M) == []
    assert sweep([inc], T0 + 10 * M) == []


def test_late_sweep_reminds_and_escalates_once() -> None:
    inc = dispatched()
    (effect,) = sweep([inc], T0 + 5 * H)  # the scheduler was down: it catches up one step at a time
    assert [h.action for h in effect.history] == ["remind", "escalate", "supervise"]
    assert inc.escalation_level == 2
    assert sweep([inc], T0 + 5 * H + STEP) == []
    (effect,) = sweep([inc], T0 + 6 * H)  # a full limit after that escalation
    assert [h.action for h in effect.history] == ["escalate", "supervise"] and inc.escalation_level == 1


def test_paused_incident_does_not_go_red_nor_escalate() -> None:
    inc = dispatched()
    sweep([inc], T0)
    sla.pause(inc, T0 + 30 * M)
    inc.state = IncidentState.PARKED
    assert run(inc, T0 + 30 * M, T0 + 5 * H, step=M) == []
    assert inc.light == "green" and inc.reminded_at is None and inc.escalation_level == 3
    inc.state = IncidentState.ACKNOWLEDGED
    sla.resume(inc, T0 + 5 * H)
    assert inc.deadline == T0 + 5 * H + 30 * M
    effects = run(inc, T0 + 5 * H, T0 + 5 * H + 30 * M, step=M)
    assert [(t - T0, h.action) for t, e in effects for h in e.history] == [(5 * H + 30 * M, "remind")]


def test_paused_while_red_neither_reminds_again_nor_escalates() -> None:
    inc = dispatched()
    sweep([inc], T0 + H)  # red + reminder
    sla.pause(inc, T0 + H + M)
    assert run(inc, T0 + H + M, T0 + 10 * H, step=5 * M) == []
    assert inc.escalation_level == 3


def test_a_new_red_period_after_an_extension_gets_a_new_reminder() -> None:
    inc = dispatched()
    sweep([inc], T0 + H)
    first = inc.reminded_at
    sla.extend(inc, T0 + 3 * H)
    (effect,) = sweep([inc], T0 + H + M)
    assert inc.light == "green" and effect.history == []
    assert [n.payload["light"] for n in effect.notifications] == ["green"]
    assert actions(run(inc, T0 + H + M, T0 + 4 * H - STEP, step=M)) == [(3 * H, "remind")]
    assert inc.reminded_at == T0 + 3 * H != first
    assert inc.escalation_level == 3  # the red period restarted with the new deadline
    assert actions(run(inc, T0 + 4 * H, T0 + 4 * H)) == [(4 * H, "escalate"), (4 * H, "supervise")]


def test_rework_keeps_the_reminded_red_period() -> None:
    inc = dispatched()
    sweep([inc], T0 + H)
    inc.state = IncidentState.REWORK
    sla.start_stage(inc, "acknowledge", T0 + H + M, keep_deadline=True)
    assert actions(run(inc, T0 + H + M, T0 + H + 10 * M)) == []  # already reminded for this deadline


def test_incident_owned_by_the_district_is_supervised_once() -> None:
    inc = dispatched(level=1)
    effects = run(inc, T0, T0 + 4 * H, step=M)
    assert actions(effects) == [(H, "remind"), (2 * H, "supervise")]
    assert inc.supervised and inc.escalation_level == 1
    assert (2 * H, center_topic(1, L1), "escalate", "red") in events(effects)


def test_without_an_assignee_the_grid_is_reminded() -> None:
    inc = dispatched(assignee=None)
    (effect,) = sweep([inc], T0 + H)
    assert [(n.topic, n.payload["event"]) for n in effect.notifications] == [(GRID, "light"), (GRID, "remind")]


def test_working_hours_escalation_waits_for_working_time() -> None:
    fri_1630 = datetime(2026, 11, 20, 16, 30, tzinfo=CST)
    inc = dispatched("city.litter", at=fri_1630)
    inc.state = IncidentState.ACKNOWLEDGED
    sla.start_stage(inc, "handle", fri_1630)  # 4 working hours: Monday 11:30
    deadline = datetime(2026, 11, 23, 11, 30, tzinfo=CST)
    assert inc.deadline == deadline
    sweep([inc], fri_1630)
    assert sweep([inc], datetime(2026, 11, 22, 23, tzinfo=CST)) == []  # the weekend does not count
    (effect,) = sweep([inc], deadline)
    assert [h.action for h in effect.history] == ["remind"]
    assert sweep([inc], datetime(2026, 11, 23, 15, 30, tzinfo=CST)) == []  # 4 natural hours later: not yet
    assert sweep([inc], datetime(2026, 11, 23, 16, 59, tzinfo=CST)) == []
    (effect,) = sweep([inc], datetime(2026, 11, 23, 17, tzinfo=CST))  # 4 working hours later (lunch excluded)
    assert [h.action for h in effect.history] == ["escalate", "supervise"]


def test_incidents_saved_before_the_stage_clocks_still_get_lights() -> None:
    inc = dispatched()
    inc.stage = inc.stage_started_at = None
    inc.deadline = sla.deadline_for("fence.intrusion", T0)  # as intake saves it: 15 min
    effects = run(inc, T0, T0 + 29 * M, step=M)
    assert [(t - T0, n.payload["light"]) for t, e in effects for n in e.notifications if n.topic == GRID
            and n.payload["event"] == "light"] == [(timedelta(0), "green"), (12 * M, "yellow"), (15 * M, "red")]
    assert actions(effects) == [(15 * M, "remind")]
    assert actions(run(inc, T0 + 30 * M, T0 + 30 * M)) == [(30 * M, "escalate"), (30 * M, "supervise")]


def test_stopped_clock_clears_the_light_silently_and_closed_incidents_are_skipped() -> None:
    inc = dispatched()
    sweep([inc], T0)
    sla.start_stage(inc, None, T0 + M)
    (effect,) = sweep([inc], T0 + 2 * M)
    assert inc.light is None and effect.changed and effect.notifications == [] and effect.history == []
    closed = dispatched()
    closed.state = IncidentState.CLOSED
    assert sweep([closed], T0 + 5 * H) == []


def test_sweep_is_fast_enough_for_thousands() -> None:
    import time

    incidents = [dispatched("litter" if i % 2 else "fence.intrusion") for i in range(5000)]
    sweep(incidents, T0)
    started = time.perf_counter()
    assert sweep(incidents, T0 + M) == []
    assert time.perf_counter() - started < 2.0  # typically ~0.05 s
