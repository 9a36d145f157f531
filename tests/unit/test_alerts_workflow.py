"""The incident state machine: every allowed and every forbidden transition of the table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from alerts import workflow
from alerts.errors import IllegalTransitionError, UnknownActionError
from alerts.model import Incident, IncidentState, RouteRecord

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def make(state: IncidentState) -> Incident:
    route = RouteRecord(113.85, 27.62, "payload", 1, "a", "b", "c", None, None, "grid-command-center", T0)
    return Incident("INC-1", "fence.intrusion", state, 3, "device", route, T0, T0)


CASES = [(action, state) for action in workflow.TRANSITIONS for state in IncidentState]


@pytest.mark.parametrize(("action", "state"), CASES)
def test_every_transition_is_allowed_or_refused_by_the_table(action: str, state: IncidentState) -> None:
    sources, target = workflow.TRANSITIONS[action]
    incident = make(state)
    if state in sources:
        entry = workflow.apply(incident, action, actor="op", at=T0)
        assert incident.state is target
        assert (entry.from_state, entry.to_state, entry.action) == (state, target, action)
    else:
        with pytest.raises(IllegalTransitionError) as err:
            workflow.apply(incident, action, actor="op", at=T0)
        assert incident.state is state
        assert state.value in str(err.value) and action in str(err.value)


def test_terminal_states_allow_nothing() -> None:
    assert workflow.allowed_actions(IncidentState.ARCHIVED) == []
    assert workflow.allowed_actions(IncidentState.CANCELLED) == []


def test_unknown_action_names_the_choices() -> None:
    with pytest.raises(UnknownActionError, match="acknowledge"):
        workflow.apply(make(IncidentState.DISPATCHED), "teleport", actor="op", at=T0)


def test_dispatch_stamps_the_clock_start() -> None:
    incident = make(IncidentState.REPORTED)
    workflow.apply(incident, "dispatch", actor="op", at=T0)
    assert incident.dispatched_at == T0
