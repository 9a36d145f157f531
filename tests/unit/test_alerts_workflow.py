"""The incident state machine: every allowed and every forbidden (action, state) pair of the table, params,
guards, milestone stamps, escalation, and the SLA clock calls (through a stand-in of the alerts.sla
stage interface, so these tests pin what the workflow asks of the clocks, not how sla computes them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alerts import sla, workflow
from alerts.errors import IllegalTransitionError, UnknownActionError
from alerts.model import OPEN_STATES, Incident, IncidentState, RouteRecord
from alerts.workflow import InvalidParamsError, TransitionRefusedError

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
S = IncidentState


@dataclass
class FakeSla:
    """A stand-in of the alerts.sla stage interface that records the calls and keeps simple clocks."""

    limits: dict[str, timedelta] = field(
        default_factory=lambda: {
            "register": timedelta(minutes=30),
            "acknowledge": timedelta(hours=1),
            "handle": timedelta(minutes=15),
            "check": timedelta(hours=1),
        }
    )
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def start_stage(self, incident: Incident, stage: str | None, at: datetime, config: Any = None, *, keep_deadline: bool = False) -> None:
        self.calls.append(("start", stage, keep_deadline))
        incident.stage = stage
        incident.stage_started_at = at if stage else None
        if stage is None:
            incident.deadline = incident.paused_at = None
        elif not keep_deadline:
            incident.deadline = at + self.limits[stage]

    def pause(self, incident: Incident, at: datetime) -> None:
        self.calls.append(("pause",))
        incident.paused_at = at

    def resume(self, incident: Incident, at: datetime, config: Any = None) -> None:
        self.calls.append(("resume",))
        if incident.paused_at is not None and incident.deadline is not None:
            incident.deadline += at - incident.paused_at
        incident.paused_at = None

    def extend(self, incident: Incident, until: datetime) -> None:
        self.calls.append(("extend", until))
        incident.deadline = until

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeSla:
        for name in ("start_stage", "pause", "resume", "extend"):
            monkeypatch.setattr(sla, name, getattr(self, name), raising=False)
        return self


@pytest.fixture(autouse=True)
def clocks(monkeypatch: pytest.MonkeyPatch) -> FakeSla:
    return FakeSla().install(monkeypatch)


def make(state: IncidentState, **fields: Any) -> Incident:
    route = RouteRecord(113.85, 27.62, "payload", 1, "a", "b", "c", None, "P1", "grid-command-center", T0)
    incident = Incident("INC-1", "fence.intrusion", state, 3, "device", route, T0, T0, assignee="P1")
    for name, value in fields.items():
        setattr(incident, name, value)
    return incident


#: valid params of each action that needs some
PARAMS: dict[str, dict[str, Any]] = {
    "dispatch": {"assignee": "P2"},
    "return": {"reason": "not our grid"},
    "approve_extension": {"until": (T0 + timedelta(hours=2)).isoformat()},
    "park": {"reason": "waiting for the utility company"},
    "clear": {"reason": "device back online"},
    "call_back": {"satisfied": False},
    "set_track": {"track": "public"},
    "set_difficulty": {"difficulty": "blue"},
}
NON_STATE = {"arrive", "escalate", "supervise", "remind", "set_track", "set_difficulty"}
CASES = [(action, state) for action in workflow.TRANSITIONS for state in IncidentState]


@pytest.mark.parametrize(("action", "state"), CASES)
def test_every_transition_is_allowed_or_refused_by_the_table(action: str, state: IncidentState) -> None:
    sources, target = workflow.TRANSITIONS[action]
    incident = make(state, details={"call_back": {"satisfied": False}} if state is S.CALLED_BACK else {})
    if state in sources:
        entry = workflow.apply(incident, action, actor="op", at=T0, params=PARAMS.get(action))
        expected = state if target is None else target
        assert incident.state is expected
        assert (entry.from_state, entry.to_state, entry.action, entry.actor) == (state, expected, action, "op")
        assert action in workflow.allowed_actions(state)
    else:
        with pytest.raises(IllegalTransitionError) as err:
            workflow.apply(incident, action, actor="op", at=T0, params=PARAMS.get(action))
        assert incident.state is state and incident.updated_at == T0
        assert state.value in str(err.value) and action in str(err.value)
        assert (err.value.state, err.value.action) == (state.value, action)
        assert action not in workflow.allowed_actions(state)


def test_the_table_follows_design_section_6() -> None:
    nexts = {
        state: sorted({t.value for a, (src, t) in workflow.TRANSITIONS.items() if state in src and t is not None and t is not state})
        for state in IncidentState
    }
    assert nexts == {
        S.REPORTED: ["cancelled", "closed", "registered", "verifying"],  # closed: only by the system's "clear"
        S.VERIFYING: ["cancelled", "closed", "registered"],
        S.REGISTERED: ["closed", "dispatched"],
        S.DISPATCHED: ["acknowledged", "closed", "returned"],  # closed: only by the system's "clear"
        S.RETURNED: ["closed", "dispatched"],
        S.ACKNOWLEDGED: ["closed", "extension_requested", "parked", "resolved"],
        S.EXTENSION_REQUESTED: ["acknowledged", "closed"],
        S.PARKED: ["acknowledged", "cancelled", "closed"],
        S.RESOLVED: ["checking"],
        S.CHECKING: ["closed", "rework"],
        S.REWORK: ["acknowledged", "closed"],
        S.CLOSED: ["archived", "called_back"],
        S.CALLED_BACK: ["archived", "dispatched"],
        S.ARCHIVED: [],
        S.CANCELLED: [],
    }
    for action in NON_STATE:
        assert workflow.TRANSITIONS[action][1] is None
    for action in NON_STATE - {"arrive"}:
        assert workflow.TRANSITIONS[action][0] == OPEN_STATES


def test_terminal_states_allow_nothing() -> None:
    assert workflow.allowed_actions(IncidentState.ARCHIVED) == []
    assert workflow.allowed_actions(IncidentState.CANCELLED) == []


def test_unknown_action_names_the_choices() -> None:
    with pytest.raises(UnknownActionError, match="acknowledge"):
        workflow.apply(make(IncidentState.DISPATCHED), "teleport", actor="op", at=T0)


def test_legacy_dispatch_without_params_stamps_the_clock_start_and_keeps_the_assignee() -> None:
    incident = make(IncidentState.REGISTERED, assignee=None)
    entry = workflow.apply(incident, "dispatch", actor="system:auto-dispatch", at=T0)
    assert incident.dispatched_at == T0 and incident.assignee is None and entry.actor == "system:auto-dispatch"


def test_dispatch_to_a_patroller_or_a_unit() -> None:
    incident = make(IncidentState.REGISTERED, assignee=None)
    entry = workflow.apply(incident, "dispatch", actor="op", at=T0, params={"assignee": "P7"})
    assert (incident.assignee, incident.unit, incident.dispatched_at) == ("P7", None, T0)
    assert entry.note == "to patroller P7"

    workflow.apply(incident, "return", actor="patroller:P7", at=T0, params={"reason": "not ours"})
    assert (incident.assignee, incident.unit, incident.details["return_reason"]) == (None, None, "not ours")
    workflow.apply(incident, "dispatch", actor="op", at=T0 + timedelta(minutes=5), params={"unit": "water-co"})
    assert (incident.state, incident.assignee, incident.unit) == (S.DISPATCHED, None, "water-co")
    assert incident.dispatched_at == T0 + timedelta(minutes=5)


# --- params ----------------------------------------------------------------------------------------
BAD_PARAMS = [
    ("dispatch", S.REGISTERED, {}, "assignee"),
    ("dispatch", S.REGISTERED, {"assignee": "P1", "unit": "u"}, "assignee"),
    ("dispatch", S.REGISTERED, {"assignee": ""}, "assignee"),
    ("dispatch", S.REGISTERED, {"who": "P1"}, "who"),
    ("return", S.DISPATCHED, {}, "reason"),
    ("return", S.DISPATCHED, {"reason": "   "}, "reason"),
    ("park", S.ACKNOWLEDGED, {}, "reason"),
    ("approve_extension", S.EXTENSION_REQUESTED, {}, "until"),
    ("approve_extension", S.EXTENSION_REQUESTED, {"until": "tomorrow"}, "until"),
    ("approve_extension", S.EXTENSION_REQUESTED, {"until": "2026-11-21T12:00:00"}, "until"),  # no zone
    ("request_extension", S.ACKNOWLEDGED, {"until": 5}, "until"),
    ("resolve", S.ACKNOWLEDGED, {"photos": "a.jpg"}, "photos"),
    ("resolve", S.ACKNOWLEDGED, {"photos": [""]}, "photos"),
    ("resolve", S.ACKNOWLEDGED, {"photos": ["x"] * 21}, "photos"),
    ("resolve", S.ACKNOWLEDGED, {"photos": [{"path": "../../var/gridwatch.db", "sha256": "ab"}]}, "photos"),
    ("resolve", S.ACKNOWLEDGED, {"photos": ["javascript:alert(1)"]}, "photos"),
    ("call_back", S.CLOSED, {}, "satisfied"),
    ("call_back", S.CLOSED, {"satisfied": "yes"}, "satisfied"),
    ("set_track", S.DISPATCHED, {}, "track"),
    ("set_track", S.DISPATCHED, {"track": "secret"}, "track"),
    ("set_difficulty", S.DISPATCHED, {"difficulty": "purple"}, "difficulty"),
    ("arrive", S.ACKNOWLEDGED, {"x": 1}, "x"),
]


@pytest.mark.parametrize(("action", "state", "params", "field_"), BAD_PARAMS)
def test_bad_params_name_the_field_and_change_nothing(action: str, state: IncidentState, params: dict[str, Any], field_: str) -> None:
    incident = make(state)
    with pytest.raises(InvalidParamsError) as err:
        workflow.apply(incident, action, actor="op", at=T0 + timedelta(minutes=1), params=params)
    assert (err.value.action, err.value.field) == (action, field_)
    assert f"params.{field_}" in str(err.value)
    assert incident.state is state and incident.updated_at == T0
    with pytest.raises(InvalidParamsError):
        workflow.check_params(action, params)


def test_check_params_normalizes() -> None:
    until = workflow.check_params("approve_extension", {"until": "2026-11-21T18:00:00+08:00"})["until"]
    assert until == datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    assert workflow.check_params("resolve", None) == {"photos": []}
    assert workflow.check_params("remind", {}) == {}


# --- clocks ----------------------------------------------------------------------------------------
def test_each_stage_of_the_happy_path_drives_the_sla_clocks(clocks: FakeSla) -> None:
    incident = make(IncidentState.REPORTED, assignee=None)
    steps: list[tuple[str, dict[str, Any] | None, list[tuple[Any, ...]], str | None]] = [
        ("verify", None, [("start", "register", False)], "register"),
        ("register", None, [], "register"),  # the register clock keeps running
        ("dispatch", {"assignee": "P1"}, [("start", "acknowledge", False)], "acknowledge"),
        ("acknowledge", None, [("start", "handle", False)], "handle"),
        ("arrive", None, [], "handle"),
        ("resolve", {"photos": ["https://img.example/p1.jpg"]}, [("start", "check", False)], "check"),
        ("check", None, [], "check"),
        ("close", None, [("start", None, False)], None),
        ("call_back", {"satisfied": True}, [], None),
        ("archive", None, [], None),
    ]
    at = T0
    for action, params, calls, stage in steps:
        at += timedelta(minutes=2)
        clocks.calls.clear()
        workflow.apply(incident, action, actor="op", at=at, params=params)
        assert (action, clocks.calls, incident.stage) == (action, calls, stage)
    assert incident.state is S.ARCHIVED and incident.deadline is None


@pytest.mark.parametrize("action", ["cancel"])
@pytest.mark.parametrize("state", [S.REPORTED, S.VERIFYING, S.PARKED])
def test_cancel_stops_the_clock(clocks: FakeSla, action: str, state: IncidentState) -> None:
    incident = make(state, stage="handle", deadline=T0 + timedelta(minutes=9))
    workflow.apply(incident, action, actor="op", at=T0)
    assert clocks.calls == [("start", None, False)] and incident.deadline is None and incident.stage is None


def test_returned_goes_back_to_the_register_clock(clocks: FakeSla) -> None:
    incident = make(S.DISPATCHED, stage="acknowledge")
    workflow.apply(incident, "return", actor="op", at=T0, params={"reason": "wrong grid"})
    assert clocks.calls == [("start", "register", False)]


def test_park_stops_and_resume_restarts_the_clock_pushing_the_deadline(clocks: FakeSla) -> None:
    incident = make(S.ACKNOWLEDGED, stage="handle", deadline=T0 + timedelta(minutes=15))
    workflow.apply(incident, "park", actor="op", at=T0 + timedelta(minutes=5), params={"reason": "road closed"})
    assert incident.state is S.PARKED and incident.paused_at == T0 + timedelta(minutes=5)
    assert incident.details["park_reason"] == "road closed"

    entry = workflow.apply(incident, "resume", actor="op", at=T0 + timedelta(hours=2, minutes=5))
    assert incident.state is S.ACKNOWLEDGED and incident.paused_at is None
    assert incident.deadline == T0 + timedelta(hours=2, minutes=15)
    assert clocks.calls == [("pause",), ("resume",)]
    assert (entry.from_state, entry.to_state) == (S.PARKED, S.ACKNOWLEDGED)


def test_extension_only_before_the_deadline() -> None:
    deadline = T0 + timedelta(minutes=15)
    late = make(S.ACKNOWLEDGED, deadline=deadline)
    with pytest.raises(TransitionRefusedError) as err:
        workflow.apply(late, "request_extension", actor="op", at=deadline)
    assert isinstance(err.value, IllegalTransitionError)
    assert "deadline" in str(err.value) and err.value.state == "acknowledged" and late.state is S.ACKNOWLEDGED

    early = make(S.ACKNOWLEDGED, deadline=deadline)
    workflow.apply(early, "request_extension", actor="op", at=deadline - timedelta(seconds=1), params={"reason": "parts"})
    assert early.state is S.EXTENSION_REQUESTED


def test_approve_extension_sets_the_new_deadline(clocks: FakeSla) -> None:
    incident = make(S.EXTENSION_REQUESTED, stage="handle", deadline=T0 + timedelta(minutes=15))
    until = T0 + timedelta(hours=3)
    entry = workflow.apply(incident, "approve_extension", actor="op", at=T0 + timedelta(minutes=5), params={"until": until.isoformat()})
    assert (incident.state, incident.deadline, incident.stage) == (S.ACKNOWLEDGED, until, "handle")
    assert clocks.calls == [("extend", until)]
    assert until.isoformat() in (entry.note or "")


def test_approve_extension_must_move_the_deadline_later() -> None:
    incident = make(S.EXTENSION_REQUESTED, deadline=T0 + timedelta(minutes=15))
    with pytest.raises(InvalidParamsError, match="until"):
        workflow.apply(incident, "approve_extension", actor="op", at=T0, params={"until": (T0 + timedelta(minutes=10)).isoformat()})
    assert incident.state is S.EXTENSION_REQUESTED and incident.deadline == T0 + timedelta(minutes=15)


def test_reject_extension_keeps_the_deadline(clocks: FakeSla) -> None:
    incident = make(S.EXTENSION_REQUESTED, stage="handle", deadline=T0 + timedelta(minutes=15))
    workflow.apply(incident, "reject_extension", actor="op", at=T0 + timedelta(minutes=5))
    assert (incident.state, incident.deadline, clocks.calls) == (S.ACKNOWLEDGED, T0 + timedelta(minutes=15), [])


def test_rework_keeps_the_original_handle_deadline(clocks: FakeSla) -> None:
    incident = make(S.DISPATCHED, assignee="P1")
    workflow.apply(incident, "acknowledge", actor="op", at=T0)
    original = incident.deadline
    assert original == T0 + timedelta(minutes=15)
    workflow.apply(incident, "resolve", actor="op", at=T0 + timedelta(minutes=10))
    workflow.apply(incident, "check", actor="op", at=T0 + timedelta(minutes=20))
    assert incident.deadline != original  # the check clock runs

    clocks.calls.clear()
    workflow.apply(incident, "rework", actor="op", at=T0 + timedelta(minutes=30))
    assert clocks.calls == [("start", "handle", True)]
    assert (incident.state, incident.stage, incident.deadline) == (S.REWORK, "handle", original)
    workflow.apply(incident, "acknowledge", actor="op", at=T0 + timedelta(minutes=31))
    assert (incident.state, incident.deadline) == (S.ACKNOWLEDGED, original)
    assert incident.acknowledged_at == T0  # the first acknowledgement stays the milestone


def test_sla_config_is_passed_to_the_clocks(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    monkeypatch.setattr(sla, "start_stage", lambda i, s, at, config=None, *, keep_deadline=False: seen.append(config), raising=False)
    config = object()
    workflow.apply(make(S.DISPATCHED), "acknowledge", actor="op", at=T0, sla=config)
    assert seen == [config]


# --- milestones ------------------------------------------------------------------------------------
def test_milestone_times_are_stamped() -> None:
    incident = make(S.REGISTERED, assignee=None)
    times = {a: T0 + timedelta(minutes=n) for n, a in enumerate(["dispatch", "acknowledge", "arrive", "resolve", "check", "close"])}
    params = {"dispatch": {"assignee": "P1"}}
    for action, at in times.items():
        workflow.apply(incident, action, actor="op", at=at, params=params.get(action))
    del times["check"]
    assert (incident.dispatched_at, incident.acknowledged_at, incident.arrived_at, incident.resolved_at, incident.closed_at) == tuple(times.values())
    assert incident.state is S.CLOSED and not incident.self_handled
    workflow.apply(incident, "archive", actor="op", at=T0 + timedelta(hours=1))
    assert incident.closed_at == times["close"]


def test_arrive_stays_acknowledged_and_keeps_the_first_arrival() -> None:
    incident = make(S.ACKNOWLEDGED)
    entry = workflow.apply(incident, "arrive", actor="patroller:P1", at=T0 + timedelta(minutes=4))
    workflow.apply(incident, "arrive", actor="patroller:P1", at=T0 + timedelta(minutes=9))
    assert (entry.from_state, entry.to_state) == (S.ACKNOWLEDGED, S.ACKNOWLEDGED)
    assert incident.state is S.ACKNOWLEDGED and incident.arrived_at == T0 + timedelta(minutes=4)


def test_close_from_registered_is_self_handled() -> None:
    incident = make(S.REGISTERED)
    entry = workflow.apply(incident, "close", actor="op", at=T0, note="fixed on the spot")
    assert incident.self_handled and incident.closed_at == T0
    assert entry.note == "self-handled; fixed on the spot" and incident.note == "fixed on the spot"


def test_resolve_keeps_photos_in_details() -> None:
    reported = {"path": "photos/INC-1/ab.jpg", "sha256": "ab"}
    incident = make(S.ACKNOWLEDGED, details={"photos": [reported]})
    params = {"photos": ["https://img.example/after.jpg", "cd" * 32]}
    entry = workflow.apply(incident, "resolve", actor="op", at=T0, note="gate repaired", params=params)
    assert incident.details["photos"] == [
        reported,
        {"url": "https://img.example/after.jpg", "action": "resolve"},
        {"sha256": "cd" * 32, "action": "resolve"},
    ]
    assert incident.note == "gate repaired" and entry.note == "2 photo(s); gate repaired"
    assert incident.resolved_at == T0


# --- call-back and reopening -----------------------------------------------------------------------
def test_unsatisfied_call_back_is_reopened_by_a_dispatch() -> None:
    incident = make(S.CLOSED, closed_at=T0, resolved_at=T0, acknowledged_at=T0, arrived_at=T0)
    entry = workflow.apply(incident, "call_back", actor="op", at=T0 + timedelta(days=1), params={"satisfied": False})
    assert entry.note == "not satisfied" and incident.details["call_back"]["satisfied"] is False

    workflow.apply(incident, "dispatch", actor="op", at=T0 + timedelta(days=1, hours=1), params={"assignee": "P2"})
    assert (incident.state, incident.assignee) == (S.DISPATCHED, "P2")
    assert (incident.acknowledged_at, incident.arrived_at, incident.resolved_at, incident.closed_at) == (None, None, None, None)


def test_satisfied_call_back_cannot_be_reopened() -> None:
    incident = make(S.CLOSED)
    workflow.apply(incident, "call_back", actor="op", at=T0, params={"satisfied": True})
    with pytest.raises(TransitionRefusedError, match="satisfied"):
        workflow.apply(incident, "dispatch", actor="op", at=T0, params={"assignee": "P2"})
    assert incident.state is S.CALLED_BACK
    workflow.apply(incident, "archive", actor="op", at=T0)
    assert incident.state is S.ARCHIVED


# --- cross-cutting actions -------------------------------------------------------------------------
def test_escalate_goes_one_level_up_and_not_past_the_district() -> None:
    incident = make(S.DISPATCHED)
    for level, minute in ((2, 1), (1, 2)):
        entry = workflow.apply(incident, "escalate", actor="op", at=T0 + timedelta(minutes=minute))
        assert (incident.escalation_level, incident.escalated_at) == (level, T0 + timedelta(minutes=minute))
        assert (entry.from_state, entry.to_state, incident.state) == (S.DISPATCHED,) * 3
        assert entry.note == f"escalation_level {level + 1} -> {level}"
    with pytest.raises(TransitionRefusedError, match="level 1"):
        workflow.apply(incident, "escalate", actor="op", at=T0 + timedelta(minutes=3))
    assert incident.escalation_level == 1 and incident.escalated_at == T0 + timedelta(minutes=2)


def test_supervise_and_remind_mark_without_changing_the_state(clocks: FakeSla) -> None:
    incident = make(S.ACKNOWLEDGED, deadline=T0)
    workflow.apply(incident, "supervise", actor="op", at=T0 + timedelta(minutes=1))
    workflow.apply(incident, "remind", actor="op", at=T0 + timedelta(minutes=2))
    assert incident.supervised and incident.reminded_at == T0 + timedelta(minutes=2)
    assert incident.state is S.ACKNOWLEDGED and incident.deadline == T0 and clocks.calls == []


def test_set_track_is_audited() -> None:
    incident = make(S.REGISTERED)
    entry = workflow.apply(incident, "set_track", actor="center:3:c", at=T0, params={"track": "community"})
    assert incident.matter_track == "community" and entry.note == "matter_track None -> community"


@pytest.mark.parametrize(
    ("level", "difficulty", "expected"),
    [(3, "green", 3), (3, "blue", 3), (3, "yellow", 2), (3, "orange", 1), (3, "red", 1), (2, "blue", 2), (1, "green", 1), (2, "yellow", 2)],
)
def test_set_difficulty_raises_the_owning_level_when_needed(level: int, difficulty: str, expected: int) -> None:
    incident = make(S.DISPATCHED, escalation_level=level)
    entry = workflow.apply(incident, "set_difficulty", actor="op", at=T0, params={"difficulty": difficulty})
    assert (incident.difficulty, incident.escalation_level) == (difficulty, expected)
    assert (incident.escalated_at is not None) == (expected != level)
    assert entry.note is not None and f"-> {difficulty}" in entry.note


def test_a_refused_action_changes_nothing() -> None:
    incident = make(S.ACKNOWLEDGED, deadline=T0)
    before = (incident.state, incident.updated_at, dict(incident.details), incident.note)
    with pytest.raises(TransitionRefusedError):
        workflow.apply(incident, "request_extension", actor="op", at=T0 + timedelta(minutes=1), note="n")
    assert (incident.state, incident.updated_at, incident.details, incident.note) == before
