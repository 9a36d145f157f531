"""The incident state machine of design §6 (pure: time comes in as an argument, no I/O).

Each action moves an incident from one of its allowed source states to a target state and yields the
audit-log row. The table covers the whole national workflow; the HTTP API exposes the actions that
are wired today (see api/routes/incidents.py).
"""

from __future__ import annotations

from datetime import datetime

from alerts.errors import IllegalTransitionError, UnknownActionError
from alerts.model import HistoryEntry, Incident
from alerts.model import IncidentState as S

#: action -> (allowed source states, target state)
TRANSITIONS: dict[str, tuple[frozenset[S], S]] = {
    "verify": (frozenset({S.REPORTED}), S.VERIFYING),
    "register": (frozenset({S.REPORTED, S.VERIFYING}), S.REGISTERED),
    "dispatch": (frozenset({S.REPORTED, S.REGISTERED, S.RETURNED, S.CALLED_BACK}), S.DISPATCHED),
    "return": (frozenset({S.DISPATCHED}), S.RETURNED),
    "acknowledge": (frozenset({S.DISPATCHED, S.REWORK, S.PARKED}), S.ACKNOWLEDGED),
    "request_extension": (frozenset({S.ACKNOWLEDGED}), S.EXTENSION_REQUESTED),
    "approve_extension": (frozenset({S.EXTENSION_REQUESTED}), S.ACKNOWLEDGED),
    "park": (frozenset({S.ACKNOWLEDGED}), S.PARKED),
    "resolve": (frozenset({S.ACKNOWLEDGED}), S.RESOLVED),
    "check": (frozenset({S.RESOLVED}), S.CHECKING),
    "rework": (frozenset({S.CHECKING}), S.REWORK),
    "close": (frozenset({S.REGISTERED, S.RESOLVED, S.CHECKING}), S.CLOSED),
    "call_back": (frozenset({S.CLOSED}), S.CALLED_BACK),
    "archive": (frozenset({S.CLOSED, S.CALLED_BACK}), S.ARCHIVED),
    "cancel": (frozenset({S.REPORTED, S.VERIFYING, S.PARKED}), S.CANCELLED),
}


def allowed_actions(state: S) -> list[str]:
    """The actions allowed in a state, in table order."""
    return [name for name, (sources, _) in TRANSITIONS.items() if state in sources]


def apply(incident: Incident, action: str, *, actor: str, at: datetime, note: str | None = None) -> HistoryEntry:
    """Apply `action` to `incident` in place and return its audit row; raise on an illegal move."""
    try:
        sources, target = TRANSITIONS[action]
    except KeyError:
        raise UnknownActionError(
            f"action {action!r}: expected one of {', '.join(TRANSITIONS)}"
        ) from None
    if incident.state not in sources:
        raise IllegalTransitionError(incident.id, incident.state.value, action, allowed_actions(incident.state))
    before = incident.state
    incident.state = target
    incident.updated_at = at
    if note:
        incident.note = note
    if target is S.DISPATCHED:
        incident.dispatched_at = at
    return HistoryEntry(incident.id, at, action, before, target, actor, note)
