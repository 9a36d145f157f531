"""Incidents: list with filters, one with its alarms and history, workflow actions."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field

from alerts.actions import IncidentNotFoundError, perform
from alerts.model import IncidentState
from alerts.views import history_dict, incident_dict
from api.deps import RuntimeDep
from store.ports import IncidentQuery

GRID_CODE = r"^[0-9A-Za-z_.:-]{1,64}$"  # design §6 codes are digits; imported grids may use others
router = APIRouter(tags=["incidents"])

#: Actions wired in the API today; the rest of the workflow table arrives with the workflow issue.
API_ACTIONS = ("acknowledge", "resolve", "close")
#: How many incidents a `light=` query scans (lights are computed from the clock, not stored).
LIGHT_SCAN_LIMIT = 100_000


class ActionCreate(BaseModel):
    """Body of POST /incidents/{id}/actions."""

    action: Literal["acknowledge", "resolve", "close"]
    actor: str = Field("operator", min_length=1, max_length=100, description="who acts (until auth lands)")
    note: str | None = Field(None, max_length=2000)


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
def get_incident(rt: RuntimeDep, incident_id: str) -> dict[str, Any]:
    """One incident with its alarms and its audit history."""
    incident = rt.store.incident(incident_id)
    if incident is None:
        raise IncidentNotFoundError(f"incident {incident_id!r} not found")
    out = incident_dict(incident, rt.now())
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


@router.post("/incidents/{incident_id}/actions")
def act(rt: RuntimeDep, incident_id: str, body: ActionCreate) -> dict[str, Any]:
    """Apply a workflow action; 409 problem+json when the state does not allow it."""
    outcome = perform(rt.store.unit_of_work, incident_id, body.action, actor=body.actor, now=rt.now(), note=body.note)
    rt.outbox.submit(outcome.notifications)
    out = incident_dict(outcome.incident, rt.now())
    out["history_entry"] = history_dict(outcome.entry)
    return out
