"""The incident state machine of design §6 (pure: time comes in as an argument, no I/O).

Each action moves an incident from one of its allowed source states to a target state and yields the
audit-log row. Some actions keep the state (arrive, escalate, supervise, remind, set_track,
set_difficulty): their target is None in the table and their audit row has from_state == to_state.

Who may act is decided by alerts.roles (the caller checks it); this module checks states, guards
(e.g. an extension only before the deadline) and parameters, stamps milestone times and drives the SLA
clocks through alerts.sla (start_stage / pause / resume / extend).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from alerts import sla as _sla
from alerts.errors import AlertsError, IllegalTransitionError, UnknownActionError
from alerts.model import OPEN_STATES, HistoryEntry, Incident
from alerts.model import IncidentState as S

_OPEN = frozenset(OPEN_STATES)

#: action -> (allowed source states, target state; None = the state does not change)
TRANSITIONS: dict[str, tuple[frozenset[S], S | None]] = {
    "verify": (frozenset({S.REPORTED}), S.VERIFYING),
    "register": (frozenset({S.REPORTED, S.VERIFYING}), S.REGISTERED),
    "dispatch": (frozenset({S.REGISTERED, S.RETURNED, S.CALLED_BACK}), S.DISPATCHED),
    "return": (frozenset({S.DISPATCHED}), S.RETURNED),
    "acknowledge": (frozenset({S.DISPATCHED, S.REWORK}), S.ACKNOWLEDGED),
    "arrive": (frozenset({S.ACKNOWLEDGED}), None),
    "request_extension": (frozenset({S.ACKNOWLEDGED}), S.EXTENSION_REQUESTED),
    "approve_extension": (frozenset({S.EXTENSION_REQUESTED}), S.ACKNOWLEDGED),
    "reject_extension": (frozenset({S.EXTENSION_REQUESTED}), S.ACKNOWLEDGED),
    "park": (frozenset({S.ACKNOWLEDGED}), S.PARKED),
    "resume": (frozenset({S.PARKED}), S.ACKNOWLEDGED),
    "resolve": (frozenset({S.ACKNOWLEDGED}), S.RESOLVED),
    "check": (frozenset({S.RESOLVED}), S.CHECKING),
    "rework": (frozenset({S.CHECKING}), S.REWORK),
    "close": (frozenset({S.REGISTERED, S.CHECKING}), S.CLOSED),
    "call_back": (frozenset({S.CLOSED}), S.CALLED_BACK),
    "archive": (frozenset({S.CLOSED, S.CALLED_BACK}), S.ARCHIVED),
    "cancel": (frozenset({S.REPORTED, S.VERIFYING, S.PARKED}), S.CANCELLED),
    # the system closes a device-status incident whose cause went away (device.offline: the device is back)
    "clear": (frozenset({S.REPORTED, S.VERIFYING, S.REGISTERED, S.DISPATCHED, S.RETURNED, S.ACKNOWLEDGED,
                         S.EXTENSION_REQUESTED, S.PARKED, S.REWORK}), S.CLOSED),
    # cross-cutting actions on open incidents: the state stays
    "escalate": (_OPEN, None),
    "supervise": (_OPEN, None),
    "remind": (_OPEN, None),
    "set_track": (_OPEN, None),
    "set_difficulty": (_OPEN, None),
}

_SHA256 = re.compile(r"[0-9a-f]{64}")
_URL = re.compile(r"https?://[^\s<>\"]{1,2000}")

#: The SLA stage whose clock runs in each state (None: no clock).
STAGE_OF: dict[S, str | None] = {
    S.REPORTED: "register",
    S.VERIFYING: "register",
    S.REGISTERED: "register",
    S.RETURNED: "register",  # back with the center, which re-routes it
    S.DISPATCHED: "acknowledge",
    S.ACKNOWLEDGED: "handle",
    S.EXTENSION_REQUESTED: "handle",
    S.PARKED: "handle",  # paused
    S.REWORK: "handle",  # keeps the original deadline
    S.RESOLVED: "check",
    S.CHECKING: "check",
    S.CLOSED: None,
    S.CALLED_BACK: None,
    S.ARCHIVED: None,
    S.CANCELLED: None,
}

MATTER_TRACKS = ("public", "community", "private")
MAX_PHOTOS = 20
DIFFICULTIES = ("green", "blue", "yellow", "orange", "red")
#: 五色 difficulty → the lowest command level allowed to own the incident
DIFFICULTY_LEVEL = {"green": 3, "blue": 3, "yellow": 2, "orange": 1, "red": 1}


class InvalidParamsError(AlertsError, ValueError):
    """An action's params are missing or wrong (map to 422; `field` names the bad parameter)."""

    def __init__(self, action: str, field: str, message: str) -> None:
        self.action = action
        self.field = field
        self.message = message
        super().__init__(f"{action}: params.{field}: {message}")


class TransitionRefusedError(IllegalTransitionError):
    """The state allows the action but a rule refuses it now (extension after the deadline, escalating past
    level 1, re-dispatching after a satisfied call-back). A 409 like IllegalTransitionError, with a reason."""

    def __init__(self, incident_id: str, state: str, action: str, allowed: list[str], reason: str) -> None:
        super().__init__(incident_id, state, action, allowed)
        self.reason = reason
        self.args = (f"incident {incident_id}: action {action!r} is refused in state {state!r}: {reason}",)


def allowed_actions(state: S) -> list[str]:
    """The actions allowed in a state, in table order."""
    return [name for name, (sources, _) in TRANSITIONS.items() if state in sources]


# --- parameters ----------------------------------------------------------------------------------
def _text(action: str, params: Mapping[str, Any], key: str, *, required: bool) -> str | None:
    value = params.get(key)
    if value is None:
        if required:
            raise InvalidParamsError(action, key, "required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidParamsError(action, key, "expected a non-empty string")
    if len(value) > 2000:
        raise InvalidParamsError(action, key, "at most 2000 characters")
    return value.strip()


def _time(action: str, params: Mapping[str, Any], key: str, *, required: bool) -> datetime | None:
    value = params.get(key)
    if value is None:
        if required:
            raise InvalidParamsError(action, key, "required (ISO-8601 time with a zone)")
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidParamsError(action, key, f"expected an ISO-8601 time with a zone, got {value!r}") from None
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidParamsError(action, key, "expected an ISO-8601 time with a zone")
    return value


def _choice(action: str, params: Mapping[str, Any], key: str, choices: tuple[str, ...]) -> str:
    value = params.get(key)
    if value is None:
        raise InvalidParamsError(action, key, f"required: one of {', '.join(choices)}")
    if value not in choices:
        raise InvalidParamsError(action, key, f"expected one of {', '.join(choices)}, got {value!r}")
    return str(value)


#: action -> the parameter names it accepts
PARAMS: dict[str, tuple[str, ...]] = {
    "dispatch": ("assignee", "unit"),
    "return": ("reason",),
    "request_extension": ("until", "reason"),
    "approve_extension": ("until",),
    "reject_extension": ("reason",),
    "park": ("reason",),
    "resolve": ("photos",),
    "call_back": ("satisfied",),
    "cancel": ("reason",),
    "clear": ("reason",),
    "set_track": ("track",),
    "set_difficulty": ("difficulty",),
}


def check_params(action: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate and normalize the params of `action` (pure); raise InvalidParamsError naming the field.

    dispatch: exactly one of `assignee` (patroller id) or `unit` (handling unit name);
    return, park, clear: `reason`; request_extension: optional `until`, `reason`; approve_extension: `until`
    (the new deadline, ISO-8601 with a zone); reject_extension, cancel: optional `reason`;
    resolve: optional `photos` (photo references: URL strings or objects such as those of POST /reports;
    kept in details["photos"] as dicts tagged {"action": "resolve"}); call_back: `satisfied` (bool);
    set_track: `track` (public / community / private); set_difficulty: `difficulty` (green / blue /
    yellow / orange / red). Other actions take no params.
    """
    if action not in TRANSITIONS:
        raise UnknownActionError(f"action {action!r}: expected one of {', '.join(TRANSITIONS)}")
    params = dict(params or {})
    accepted = PARAMS.get(action, ())
    for key in params:
        if key not in accepted:
            hint = f"accepted: {', '.join(accepted)}" if accepted else "this action takes no params"
            raise InvalidParamsError(action, key, f"unknown parameter ({hint})")
    out: dict[str, Any] = {}
    if action == "dispatch":
        assignee = _text(action, params, "assignee", required=False)
        unit = _text(action, params, "unit", required=False)
        if (assignee is None) == (unit is None):
            raise InvalidParamsError(action, "assignee", "give exactly one of assignee (patroller id) or unit")
        out = {"assignee": assignee, "unit": unit}
    elif action in ("return", "park", "clear"):
        out = {"reason": _text(action, params, "reason", required=True)}
    elif action in ("reject_extension", "cancel"):
        out = {"reason": _text(action, params, "reason", required=False)}
    elif action == "request_extension":
        out = {"until": _time(action, params, "until", required=False), "reason": _text(action, params, "reason", required=False)}
    elif action == "approve_extension":
        out = {"until": _time(action, params, "until", required=True)}
    elif action == "resolve":
        photos = params.get("photos", [])
        if not isinstance(photos, list) or not all(isinstance(p, str) and (_SHA256.fullmatch(p) or _URL.fullmatch(p))
                                                   for p in photos):
            raise InvalidParamsError(action, "photos", "expected a list of photo hashes (uploaded with POST"
                                     " /incidents/{id}/photos) or http(s) URLs")
        if len(photos) > MAX_PHOTOS:
            raise InvalidParamsError(action, "photos", f"at most {MAX_PHOTOS} photos")
        # kept in details["photos"] tagged with the action; a hash only refers to a photo stored for this
        # incident (the photo route finds the file by incident and hash, never by a client-given path)
        out = {"photos": [{"sha256": p, "action": action} if _SHA256.fullmatch(p) else {"url": p, "action": action}
                          for p in photos]}
    elif action == "call_back":
        satisfied = params.get("satisfied")
        if not isinstance(satisfied, bool):
            raise InvalidParamsError(action, "satisfied", "required: true or false")
        out = {"satisfied": satisfied}
    elif action == "set_track":
        out = {"track": _choice(action, params, "track", MATTER_TRACKS)}
    elif action == "set_difficulty":
        out = {"difficulty": _choice(action, params, "difficulty", DIFFICULTIES)}
    return out


# --- applying ------------------------------------------------------------------------------------
def apply(
    incident: Incident,
    action: str,
    *,
    actor: object,
    at: datetime,
    note: str | None = None,
    params: Mapping[str, Any] | None = None,
    sla: Any = None,
) -> HistoryEntry:
    """Apply `action` to `incident` in place and return its audit row.

    `actor` is written to the audit row as text (a plain string or an alerts.roles.Actor; this function
    does not check roles). `sla` is the alerts.sla.SlaConfig (None: the packaged defaults). Raises
    UnknownActionError, IllegalTransitionError (TransitionRefusedError for a refused rule) or
    InvalidParamsError; on any error the incident is unchanged.

    `params=None` on dispatch is the legacy internal call (auto-dispatch): assignee and unit are left
    as they are.
    """
    try:
        sources, target = TRANSITIONS[action]
    except KeyError:
        raise UnknownActionError(f"action {action!r}: expected one of {', '.join(TRANSITIONS)}") from None
    before = incident.state
    if before not in sources:
        raise IllegalTransitionError(incident.id, before.value, action, allowed_actions(before))
    legacy_dispatch = action == "dispatch" and params is None
    p = {} if legacy_dispatch else check_params(action, params)

    def refuse(reason: str) -> TransitionRefusedError:
        return TransitionRefusedError(incident.id, before.value, action, allowed_actions(before), reason)

    # guards: checked before anything changes
    if action == "request_extension" and incident.deadline is not None and at >= incident.deadline:
        raise refuse(f"the deadline {incident.deadline.isoformat()} has passed")
    if action == "approve_extension" and incident.deadline is not None and p["until"] <= incident.deadline:
        raise InvalidParamsError(action, "until", f"must be later than the current deadline {incident.deadline.isoformat()}")
    if action == "approve_extension" and p["until"] <= at:
        raise InvalidParamsError(action, "until", "must be in the future")
    if action == "escalate" and incident.escalation_level <= 1:
        raise refuse("already owned by the district (level 1)")
    if action == "dispatch" and before is S.CALLED_BACK and incident.details.get("call_back", {}).get("satisfied", True):
        raise refuse("the call-back was satisfied; only an unsatisfied call-back reopens the incident")

    audit = _effects(incident, action, before, p, at, legacy_dispatch)
    after = target if target is not None else before
    incident.state = after
    incident.updated_at = at
    if note:
        incident.note = note
    _clock(incident, action, before, after, p, at, sla)
    text = "; ".join(x for x in (audit, note) if x) or None
    return HistoryEntry(incident.id, at, action, before, after, str(actor), text)


def _effects(incident: Incident, action: str, before: S, p: dict[str, Any], at: datetime, legacy: bool) -> str | None:
    """Field changes of `action` other than state and clocks; returns the audit text they add."""
    details = incident.details
    if action == "dispatch":
        if before is S.CALLED_BACK:  # reopened: a new round of milestones
            incident.acknowledged_at = incident.arrived_at = incident.resolved_at = incident.closed_at = None
            incident.self_handled = False
        incident.dispatched_at = at
        if legacy:
            return None
        incident.assignee, incident.unit = p["assignee"], p["unit"]
        return f"to patroller {p['assignee']}" if p["assignee"] else f"to unit {p['unit']}"
    if action == "return":
        details["return_reason"] = p["reason"]
        handler = incident.assignee or incident.unit
        incident.assignee = incident.unit = None  # back with the center
        return f"returned by {handler or 'nobody'}: {p['reason']}"
    if action == "acknowledge":
        if incident.acknowledged_at is None:
            incident.acknowledged_at = at
        return None
    if action == "arrive":
        if incident.arrived_at is None:
            incident.arrived_at = at
        return None
    if action == "request_extension":
        details["extension_requested_until"] = p["until"].isoformat() if p["until"] else None
        return "; ".join(x for x in (p["until"] and f"until {p['until'].isoformat()}", p["reason"]) if x) or None
    if action == "approve_extension":
        details.pop("extension_requested_until", None)
        was = incident.deadline.isoformat() if incident.deadline else None
        return f"deadline {was} -> {p['until'].isoformat()}"
    if action == "reject_extension":
        details.pop("extension_requested_until", None)
        return p["reason"]
    if action == "park":
        details["park_reason"] = p["reason"]
        return p["reason"]
    if action == "resolve":
        incident.resolved_at = at
        # the handle deadline, for a rework (which keeps it) after the check clock has replaced it
        details["handle_deadline"] = incident.deadline.isoformat() if incident.deadline else None
        if p["photos"]:
            details["photos"] = [*details.get("photos", []), *p["photos"]]
            return f"{len(p['photos'])} photo(s)"
        return None
    if action == "close":
        incident.closed_at = at
        if before is S.REGISTERED:
            incident.self_handled = True
            return "self-handled"
        return None
    if action == "call_back":
        details["call_back"] = {"satisfied": p["satisfied"], "at": at.isoformat()}
        return "satisfied" if p["satisfied"] else "not satisfied"
    if action == "cancel":
        return p["reason"]
    if action == "clear":
        incident.closed_at = at
        details["cleared"] = {"reason": p["reason"], "at": at.isoformat()}
        return p["reason"]
    if action == "escalate":
        was = incident.escalation_level
        incident.escalation_level = was - 1
        incident.escalated_at = at
        return f"escalation_level {was} -> {incident.escalation_level}"
    if action == "supervise":
        incident.supervised = True
        return None
    if action == "remind":
        incident.reminded_at = at
        return None
    if action == "set_track":
        was = incident.matter_track
        incident.matter_track = p["track"]
        return f"matter_track {was} -> {p['track']}"
    if action == "set_difficulty":
        was, was_level = incident.difficulty, incident.escalation_level
        incident.difficulty = p["difficulty"]
        text = f"difficulty {was} -> {p['difficulty']}"
        needed = DIFFICULTY_LEVEL[p["difficulty"]]
        if needed < incident.escalation_level:
            incident.escalation_level = needed
            incident.escalated_at = at
            text += f"; escalation_level {was_level} -> {needed}"
        return text
    return None


def _clock(incident: Incident, action: str, before: S, after: S, p: dict[str, Any], at: datetime, config: Any) -> None:
    """Drive the SLA stage clocks (alerts.sla) for a transition."""
    kw = {} if config is None else {"config": config}
    if action == "park":
        _sla.pause(incident, at)
    elif action == "resume":
        _sla.resume(incident, at, **kw)
    elif action == "approve_extension":
        _sla.extend(incident, p["until"])
    elif action == "rework":
        kept = incident.details.get("handle_deadline")
        if kept:  # the original handle deadline, saved when it was resolved
            incident.deadline = datetime.fromisoformat(kept)
        _sla.start_stage(incident, "handle", at, **kw, keep_deadline=bool(kept))
    elif after is not before:
        stage = STAGE_OF[after]
        if stage != incident.stage or (stage is None and incident.deadline is not None):
            _sla.start_stage(incident, stage, at, **kw)
