"""Incidents: list with filters, one with its alarms and history, workflow actions."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, Field, field_validator

from alerts import workflow
from alerts.actions import IncidentNotFoundError, perform
from alerts.model import Incident, IncidentState
from alerts.roles import SYSTEM_ACTIONS, Actor, may_act
from alerts.views import history_dict, incident_dict
from alerts.workflow import InvalidParamsError, allowed_actions, check_params
from api.access import FIELD, ForbiddenError, Scope, grid_filter
from api.auth import Principal
from api.deps import RuntimeDep, ScopeDep, allow
from store.ports import IncidentQuery

GRID_CODE = r"^[0-9A-Za-z_.:-]{1,64}$"  # design §6 codes are digits; imported grids may use others
router = APIRouter(tags=["incidents"], dependencies=[Depends(allow(*FIELD))])

#: Every action of the workflow table (alerts.workflow.TRANSITIONS) is reachable through the API.
API_ACTIONS = tuple(workflow.TRANSITIONS)
#: How many incidents a `light=` query scans (lights are computed from the clock, not stored).
LIGHT_SCAN_LIMIT = 100_000


class ActionCreate(BaseModel):
    """Body of POST /incidents/{id}/actions.

    The actor is the login's (api.auth.Principal.actor); the workflow's role checks (alerts.roles) run
    against it.
    """

    action: Literal[API_ACTIONS]  # type: ignore[valid-type]
    actor: str | None = Field(
        None,
        min_length=1,
        max_length=120,
        description=(
            "optional and only checked: who acts comes from the login (a commander acts as "
            "'center:<level>:<grid>', a patroller as 'patroller:<id>'); a different actor here is refused"
        ),
    )
    note: str | None = Field(None, max_length=2000)
    params: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "per action: dispatch {assignee | unit}; return, park {reason}; request_extension {until?, reason?}; "
            "approve_extension {until}; reject_extension, cancel {reason?}; resolve {photos?: [url | photo object]}; "
            "call_back {satisfied: bool}; set_track {track: public|community|private}; "
            "set_difficulty {difficulty: green|blue|yellow|orange|red}"
        ),
    )

    @field_validator("actor")
    @classmethod
    def _actor(cls, value: str | None) -> str | None:
        return None if value is None else str(Actor.parse(value))  # strict: InvalidActorError is a ValueError → 422 naming `actor`


def _bbox(raw: str | None) -> tuple[float, float, float, float] | None:
    if raw is None:
        return None
    parts = raw.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or not (values[0] <= values[2] and values[1] <= values[3]):
        from fastapi.exceptions import RequestValidationError

        raise RequestValidationError(
            [{"loc": ("query", "bbox"), "msg": f"expected min_lon,min_lat,max_lon,max_lat, got {raw!r}", "type": "value_error"}]
        )
    return values  # type: ignore[return-value]


@router.get("/incidents")
def list_incidents(
    rt: RuntimeDep,
    scope: ScopeDep,
    status: Annotated[list[IncidentState] | None, Query(description="state(s); repeat or comma-free")] = None,
    grid: Annotated[str | None, Query(pattern=GRID_CODE, description="a grid code at any level: its subtree")] = None,
    bbox: Annotated[str | None, Query(description="min_lon,min_lat,max_lon,max_lat")] = None,
    since: Annotated[AwareDatetime | None, Query(description="ISO-8601 with a zone; incidents updated since")] = None,
    light: Annotated[Literal["green", "yellow", "red"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> dict[str, Any]:
    """Incidents newest first, filtered by state, grid subtree, bbox, time and light — within the caller's
    scope: a commander's grid subtree (its own grid when `grid` is not given; 403 for a grid outside it), a
    patroller's own incidents and those inside its geofence."""
    p = scope.principal
    if p.role == "commander":
        grid = grid_filter(p, grid, rt.grid_by_code)
    mine = (p.patroller_id or "", tuple(sorted(scope.fence))) if p.role == "patroller" else None
    # the light depends on `now`, so it is filtered here: fetch without the limit, then cut
    fetch = limit if light is None else LIGHT_SCAN_LIMIT
    query = IncidentQuery(states=tuple(status or ()), grid=grid, bbox=_bbox(bbox), since=since, limit=fetch, patroller_scope=mine)
    now = rt.now()
    items = [incident_dict(i, now) for i in rt.store.incidents(query)]
    if light is not None:
        items = [i for i in items if i["light"] == light]
    items = items[:limit]
    return {"count": len(items), "items": items}


@router.get("/incidents/{incident_id}")
def get_incident(rt: RuntimeDep, scope: ScopeDep, incident_id: str) -> dict[str, Any]:
    """One incident with its alarms, its audit history and the actions the caller may take in its state
    (`allowed_actions`). A reporter's contact details are shown to admins, the owning commanders and the
    assignee only. 404 for an incident outside the caller's scope."""
    record = rt.store.incident_record(incident_id)  # one snapshot: the state and the history agree
    if record is None or not scope.sees_incident(record.incident):
        raise IncidentNotFoundError(f"incident {incident_id!r} not found")
    incident = record.incident
    who = actor_of(rt, scope.principal)
    out = incident_dict(incident, rt.now(), personal=scope.sees_personal(incident))
    out["allowed_actions"] = [a for a in allowed_actions(incident.state)
                              if a not in SYSTEM_ACTIONS and may_act(who, a, incident)]
    out["alarms"] = [
        {
            "device_id": a.device_id,
            "msg_id": a.msg_id,
            "ts": a.ts.isoformat(),
            "type": a.type,
            "severity": a.severity,
            "lon": a.lon,
            "lat": a.lat,
            "zone": a.zone,
            "data": a.data,
            "received_at": a.received_at.isoformat(),
            "raw": _raw_text(a.raw),
        }
        for a in record.alarms
    ]
    out["history"] = [history_dict(h) for h in record.history]
    return out


def visible_incident(rt: Any, scope: Scope, incident_id: str) -> Incident:
    """The incident when the caller's scope shows it; IncidentNotFoundError (404) otherwise, so that ids
    outside the scope cannot be told from unknown ones."""
    incident = rt.store.incident(incident_id)
    if incident is None or not scope.sees_incident(incident):
        raise IncidentNotFoundError(f"incident {incident_id!r} not found")
    return incident


def actor_of(rt: Any, principal: Principal) -> Actor:
    """The workflow actor of a login; a commander's level is its grid's stored level."""
    grid = rt.grid_by_code.get(principal.grid) if principal.grid is not None else None
    return principal.actor(level=grid.level if grid is not None else None)


def _raw_text(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw).decode()


def _params_problem(exc: InvalidParamsError) -> RequestValidationError:
    return RequestValidationError(
        [{"loc": ("body", "params", exc.field), "msg": f"{exc.action}: {exc.message}", "type": "value_error"}]
    )


@router.post("/incidents/{incident_id}/actions")
def act(rt: RuntimeDep, scope: ScopeDep, incident_id: str, body: ActionCreate) -> dict[str, Any]:
    """Apply a workflow action as the login's actor (a commander: the command center of its grid).

    422 problem+json for a bad actor or bad params (naming the field, e.g. `params.reason`), 403 when the
    actor may not take the action on this incident (or `actor` names someone else), 404 for an incident
    outside the caller's scope, 409 when the state (or a rule such as "extensions only
    before the deadline") does not allow it, 404 for an unknown incident.
    """
    if body.action in SYSTEM_ACTIONS:
        raise ForbiddenError(f"action {body.action!r} is taken by gridwatch itself (e.g. a device came back), not over the API")
    actor = actor_of(rt, scope.principal)
    if body.actor is not None and body.actor != str(actor):
        raise ForbiddenError(f"actor {body.actor!r}: you act as {actor} (your login); omit `actor`")
    visible_incident(rt, scope, incident_id)
    try:
        params = check_params(body.action, body.params)
        if params.get("assignee") is not None and params["assignee"] not in {p.id for p in rt.patrollers}:
            raise InvalidParamsError(body.action, "assignee", f"no patroller has the id {params['assignee']!r}")
    except InvalidParamsError as exc:
        raise _params_problem(exc) from None
    try:
        outcome = perform(
            rt.store.unit_of_work,
            incident_id,
            body.action,
            actor=actor,
            now=rt.now(),
            note=body.note,
            params=body.params,
        )
    except InvalidParamsError as exc:  # a rule on params that needs the incident (e.g. until > deadline)
        raise _params_problem(exc) from None
    rt.outbox.submit(outcome.notifications)
    out = incident_dict(outcome.incident, rt.now())
    out["history_entry"] = history_dict(outcome.entry)
    return out
