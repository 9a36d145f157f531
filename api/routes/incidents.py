"""Incidents: list with filters, one with its alarms and history, workflow actions."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, Field, field_validator

from alerts import workflow
from alerts.actions import IncidentNotFoundError, perform
from alerts.model import IncidentState
from alerts.roles import SYSTEM_ACTIONS, Actor, may_act
from alerts.views import history_dict, incident_dict
from alerts.workflow import InvalidParamsError, allowed_actions, check_params
from api.deps import RuntimeDep
from store.ports import IncidentQuery

GRID_CODE = r"^[0-9A-Za-z_.:-]{1,64}$"  # design §6 codes are digits; imported grids may use others
router = APIRouter(tags=["incidents"])

#: Every action of the workflow table (alerts.workflow.TRANSITIONS) is reachable through the API.
API_ACTIONS = tuple(workflow.TRANSITIONS)
#: The actor of a body that names none (the pre-workflow API had no actors). Goes away with auth.
DEFAULT_ACTOR = "system:operator"
#: How many incidents a `light=` query scans (lights are computed from the clock, not stored).
LIGHT_SCAN_LIMIT = 100_000


class ActionCreate(BaseModel):
    """Body of POST /incidents/{id}/actions.

    Until auth lands the actor is SELF-DECLARED here and not verified: the role checks (alerts.roles)
    run against what the caller claims. Auth (another issue) will derive it from the token instead.
    """

    action: Literal[API_ACTIONS]  # type: ignore[valid-type]
    actor: str = Field(
        DEFAULT_ACTOR,
        min_length=1,
        max_length=120,
        description=(
            "who acts, self-declared until auth lands: 'center:<level 1-3>:<grid code>', 'patroller:<id>', "
            "'unit:<name>' or 'system:<name>'"
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
    def _actor(cls, value: str) -> str:
        return str(Actor.parse(value))  # strict: InvalidActorError is a ValueError → 422 naming `actor`


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
    status: Annotated[list[IncidentState] | None, Query(description="state(s); repeat or comma-free")] = None,
    grid: Annotated[str | None, Query(pattern=GRID_CODE, description="a grid code at any level: its subtree")] = None,
    bbox: Annotated[str | None, Query(description="min_lon,min_lat,max_lon,max_lat")] = None,
    since: Annotated[AwareDatetime | None, Query(description="ISO-8601 with a zone; incidents updated since")] = None,
    light: Annotated[Literal["green", "yellow", "red"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> dict[str, Any]:
    """Incidents newest first, filtered by state, grid subtree, bbox, time and light."""
    # the light depends on `now`, so it is filtered here: fetch without the limit, then cut
    fetch = limit if light is None else LIGHT_SCAN_LIMIT
    query = IncidentQuery(states=tuple(status or ()), grid=grid, bbox=_bbox(bbox), since=since, limit=fetch)
    now = rt.now()
    items = [incident_dict(i, now) for i in rt.store.incidents(query)]
    if light is not None:
        items = [i for i in items if i["light"] == light][:limit]
    return {"count": len(items), "items": items}


@router.get("/incidents/{incident_id}")
def get_incident(
    rt: RuntimeDep,
    incident_id: str,
    actor: Annotated[str | None, Query(max_length=120, description="only the actions this actor may take")] = None,
) -> dict[str, Any]:
    """One incident with its alarms, its audit history and the actions its state allows (`allowed_actions`;
    with `actor=` only those that actor may take)."""
    who = None
    if actor is not None:
        try:
            who = Actor.parse(actor)
        except ValueError as exc:
            raise RequestValidationError([{"loc": ("query", "actor"), "msg": str(exc), "type": "value_error"}]) from None
    incident = rt.store.incident(incident_id)
    if incident is None:
        raise IncidentNotFoundError(f"incident {incident_id!r} not found")
    out = incident_dict(incident, rt.now(), personal=True)  # open to any caller until issue 6 adds login and roles
    out["allowed_actions"] = [a for a in allowed_actions(incident.state)
                              if a not in SYSTEM_ACTIONS and (who is None or may_act(who, a, incident))]
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
        for a in rt.store.alarms_of(incident_id)
    ]
    out["history"] = [history_dict(h) for h in rt.store.history(incident_id)]
    return out


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
def act(rt: RuntimeDep, incident_id: str, body: ActionCreate) -> dict[str, Any]:
    """Apply a workflow action as the (self-declared, until auth lands) actor.

    422 problem+json for a bad actor or bad params (naming the field, e.g. `params.reason`), 403 when the
    actor may not take the action on this incident, 409 when the state (or a rule such as "extensions only
    before the deadline") does not allow it, 404 for an unknown incident.
    """
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
            actor=Actor.parse(body.actor),
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
