"""Who may act: actor parsing (strict and legacy), and the allowed/forbidden table per actor kind."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from alerts import roles, workflow
from alerts.model import Incident, IncidentState, RouteRecord
from alerts.roles import (
    CENTER_ACTIONS,
    HANDLER_ACTIONS,
    Actor,
    ForbiddenActionError,
    InvalidActorError,
    may_act,
    why_not,
)

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
L1, L2, L3 = "430102001", "430102001002", "430102001002003"


def make(**fields: Any) -> Incident:
    route = RouteRecord(113.85, 27.62, "payload", 1, L1, L2, L3, None, "P1", "nearest", T0)
    incident = Incident("INC-1", "fence.intrusion", IncidentState.DISPATCHED, 3, "device", route, T0, T0, assignee="P1")
    for name, value in fields.items():
        setattr(incident, name, value)
    return incident


# --- parsing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "actor"),
    [
        (f"center:3:{L3}", Actor("center", L3, 3, L3)),
        (f"center:1:{L1}", Actor("center", L1, 1, L1)),
        ("patroller:P1", Actor("patroller", "P1")),
        ("unit:water-co", Actor("unit", "water-co")),
        ("system:auto-dispatch", Actor("system", "auto-dispatch")),
    ],
)
def test_parse_round_trips(text: str, actor: Actor) -> None:
    assert Actor.parse(text) == actor
    assert str(actor) == text
    assert Actor.parse(actor) is actor


@pytest.mark.parametrize(
    "text", ["op", "auto", "", "center:4:430102001", "center:0:x", "center:2", "center:2:", "center:two:x", "patroller:", "wizard:merlin", "patroller: P1", "unit:a b"]
)
def test_strict_parse_rejects_junk(text: str) -> None:
    with pytest.raises(InvalidActorError) as err:
        Actor.parse(text)
    assert isinstance(err.value, ValueError) and "actor" in str(err.value)


def test_legacy_parse_makes_plain_strings_system_actors() -> None:
    assert Actor.parse("op", legacy=True) == Actor("system", "op")
    assert Actor.parse("auto", legacy=True) == Actor("system", "auto")
    assert Actor.parse("patroller:P1", legacy=True) == Actor("patroller", "P1")
    with pytest.raises(InvalidActorError):
        Actor.parse("", legacy=True)


# --- the action sets -------------------------------------------------------------------------------
def test_every_action_belongs_to_exactly_one_actor_set() -> None:
    from alerts.roles import SYSTEM_ACTIONS

    assert HANDLER_ACTIONS | CENTER_ACTIONS | SYSTEM_ACTIONS == set(workflow.TRANSITIONS)
    assert not HANDLER_ACTIONS & CENTER_ACTIONS and not SYSTEM_ACTIONS & (HANDLER_ACTIONS | CENTER_ACTIONS)
    assert HANDLER_ACTIONS == {"acknowledge", "arrive", "return", "request_extension", "resolve"}


# --- the table -------------------------------------------------------------------------------------
ALL = sorted(workflow.TRANSITIONS)
CENTER3, CENTER2, CENTER1 = Actor.center(3, L3), Actor.center(2, L2), Actor.center(1, L1)


@pytest.mark.parametrize("action", ALL)
def test_system_actors_may_do_anything(action: str) -> None:
    assert may_act(Actor("system", "scheduler"), action, make())


@pytest.mark.parametrize("action", ALL)
def test_patroller_does_handler_actions_on_its_own_incidents_only(action: str) -> None:
    mine, other = Actor("patroller", "P1"), Actor("patroller", "P2")
    assert may_act(mine, action, make()) == (action in HANDLER_ACTIONS)
    assert not may_act(other, action, make())
    assert not may_act(mine, action, make(assignee=None, unit="P1"))


@pytest.mark.parametrize("action", ALL)
def test_unit_does_handler_actions_on_incidents_dispatched_to_it(action: str) -> None:
    unit = Actor("unit", "water-co")
    assert may_act(unit, action, make(assignee=None, unit="water-co")) == (action in HANDLER_ACTIONS)
    assert not may_act(unit, action, make(assignee=None, unit="power-co"))
    assert not may_act(unit, action, make())


@pytest.mark.parametrize("action", ALL)
@pytest.mark.parametrize("center", [CENTER3, CENTER2, CENTER1])
def test_centers_of_the_subtree_do_center_actions(action: str, center: Actor) -> None:
    assert may_act(center, action, make()) == (action in CENTER_ACTIONS)


@pytest.mark.parametrize("action", sorted(HANDLER_ACTIONS))
def test_a_center_handles_an_incident_nobody_was_dispatched_to(action: str) -> None:
    assert may_act(CENTER3, action, make(assignee=None))
    assert "handler" in (why_not(CENTER3, action, make()) or "")


@pytest.mark.parametrize(
    "center",
    [Actor.center(3, "430102001002004"), Actor.center(2, "430102001003"), Actor.center(1, "430102002"), Actor.center(2, L3), Actor.center(3, L2)],
)
def test_centers_outside_the_subtree_may_not(center: Actor) -> None:
    reason = why_not(center, "close", make())
    assert reason is not None and "subtree" in reason


@pytest.mark.parametrize(("owner", "allowed"), [(3, {1, 2, 3}), (2, {1, 2}), (1, {1})])
def test_only_centers_at_or_above_the_owning_level(owner: int, allowed: set[int]) -> None:
    incident = make(escalation_level=owner)
    assert {c.level for c in (CENTER3, CENTER2, CENTER1) if may_act(c, "dispatch", incident)} == allowed


@pytest.mark.parametrize(("difficulty", "allowed"), [("green", {1, 2, 3}), ("blue", {1, 2, 3}), ("yellow", {1, 2}), ("orange", {1}), ("red", {1})])
def test_the_difficulty_colour_sets_the_lowest_level_that_may_own(difficulty: str, allowed: set[int]) -> None:
    incident = make(difficulty=difficulty)  # escalation_level left at 3 on purpose
    assert {c.level for c in (CENTER3, CENTER2, CENTER1) if may_act(c, "close", incident)} == allowed


def test_check_raises_forbidden_with_the_reason() -> None:
    with pytest.raises(ForbiddenActionError) as err:
        roles.check(Actor("patroller", "P2"), "acknowledge", make())
    assert err.value.actor == "patroller:P2" and err.value.action == "acknowledge"
    assert "P1" in str(err.value) and "INC-1" in str(err.value)
    roles.check(Actor("patroller", "P1"), "acknowledge", make())


# --- alerts.actions.perform: roles enforced, audit, notifications ----------------------------------
@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from tests.unit.fakes import FakeStore
    from tests.unit.test_alerts_workflow import FakeSla

    FakeSla().install(monkeypatch)
    fake = FakeStore()
    fake.incidents["INC-1"] = make()
    return fake


def topics(outcome: Any) -> list[str]:
    return [n.topic for _, n in outcome.notifications]


def test_perform_refuses_a_forbidden_actor_and_writes_nothing(store: Any) -> None:
    from alerts.actions import perform

    with pytest.raises(ForbiddenActionError):
        perform(store.unit_of_work, "INC-1", "acknowledge", actor=Actor("patroller", "P2"), now=T0)
    assert store.incidents["INC-1"].state is IncidentState.DISPATCHED and store.history == [] and store.notes == []


def test_perform_audits_with_the_actor_text_and_notifies_grid_and_assignee(store: Any) -> None:
    from alerts.actions import perform

    outcome = perform(store.unit_of_work, "INC-1", "acknowledge", actor=Actor("patroller", "P1"), now=T0, note="on my way")
    assert outcome.entry.actor == "patroller:P1" and store.history == [outcome.entry]
    assert topics(outcome) == [f"gridwatch/grids/{L3}/incidents", "gridwatch/patrollers/P1/alerts"]
    assert outcome.notifications[0][1].payload["event"] == "acknowledge"


def test_perform_accepts_legacy_actor_strings(store: Any) -> None:
    from alerts.actions import perform

    outcome = perform(store.unit_of_work, "INC-1", "acknowledge", actor="op", now=T0)
    assert outcome.entry.actor == "system:op"


def test_redispatch_notifies_the_new_and_the_previous_assignee(store: Any) -> None:
    from alerts.actions import perform

    returned = perform(store.unit_of_work, "INC-1", "return", actor=Actor("patroller", "P1"), now=T0, params={"reason": "not ours"})
    # the grid topic (and the live views fed from it) say whose incident it was
    assert {n.payload["previous_assignee"] for _, n in returned.notifications} == {"P1"}
    outcome = perform(store.unit_of_work, "INC-1", "dispatch", actor=CENTER3, now=T0, params={"assignee": "P2"})
    assert topics(outcome) == [f"gridwatch/grids/{L3}/incidents", "gridwatch/patrollers/P2/alerts"]
    assert all("previous_assignee" not in n.payload for _, n in outcome.notifications)  # nobody had it
    assert store.incidents["INC-1"].assignee == "P2"


@pytest.mark.parametrize(("action", "params", "center"), [
    ("escalate", None, f"gridwatch/centers/2/{L2}/incidents"),
    ("supervise", None, f"gridwatch/centers/3/{L3}/incidents"),
    ("set_difficulty", {"difficulty": "orange"}, f"gridwatch/centers/1/{L1}/incidents"),
])
def test_escalate_and_supervise_notify_the_owning_center(store: Any, action: str, params: Any, center: str) -> None:
    from alerts.actions import perform

    outcome = perform(store.unit_of_work, "INC-1", action, actor=CENTER3, now=T0, params=params)
    assert topics(outcome) == [f"gridwatch/grids/{L3}/incidents", "gridwatch/patrollers/P1/alerts", center]


def test_only_the_system_may_clear() -> None:
    from alerts.roles import Actor, why_not

    incident = _incident_for_clear()
    assert why_not(Actor.parse("system:health"), "clear", incident) is None
    for who in ("center:1:" + incident.route.l1, "patroller:" + (incident.assignee or "P1")):
        reason = why_not(Actor.parse(who), "clear", incident)
        assert reason is not None and "only the system" in reason


def _incident_for_clear():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from alerts.model import Incident, IncidentState, RouteRecord

    t0 = datetime(2026, 11, 21, tzinfo=UTC)
    route = RouteRecord(113.85, 27.62, "device", 1, "a", "b", "c", None, "P1", "nearest-on-duty", t0)
    return Incident("INC-9", "device.offline", IncidentState.DISPATCHED, 3, "device", route, t0, t0, assignee="P1")
