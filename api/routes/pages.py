"""HTML pages: the map wall and the planner's diff map."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from alerts.model import OPEN_STATES
from alerts.views import incident_dict
from api.deps import RuntimeDep
from api.errors import NotFoundProblem
from api.geojson import collection, device_properties, grid_feature
from api.routes.incidents import GRID_CODE
from geo.model import Grid
from maps.wall import build_wall
from store.ports import IncidentQuery

router = APIRouter(tags=["pages"])


def subtree(grids: list[Grid], code: str | None) -> list[Grid]:
    """The grid `code` and everything below it, by parent_code (codes need not share prefixes); all if None."""
    if code is None:
        return grids
    children: dict[str | None, list[Grid]] = {}
    for g in grids:
        children.setdefault(g.parent_code, []).append(g)
    out = [g for g in grids if g.code == code]
    frontier = [code]
    while frontier:
        kids = [k for c in frontier for k in children.get(c, ())]
        out += kids
        frontier = [k.code for k in kids]
    return out


@router.get("/map", response_class=HTMLResponse)
def map_wall(rt: RuntimeDep, grid: Annotated[str | None, Query(pattern=GRID_CODE)] = None) -> HTMLResponse:
    """The map wall: grids coloured by their worst open incident, incident markers (`?grid=` drills down)."""
    grids = subtree(rt.store.grids(), grid)
    if grid is not None and not grids:
        raise NotFoundProblem(f"grid {grid!r} not found in the current version")
    shown = [g for g in grids if g.level == 3 or (grid is None and g.level == 1)]
    incidents = rt.store.incidents(IncidentQuery(states=tuple(OPEN_STATES), grid=grid, limit=2000))
    now = rt.now()
    fmap = build_wall(
        collection([grid_feature(g) for g in shown]),
        [incident_dict(i, now) for i in incidents],
        title=f"gridwatch map wall{f' · {grid}' if grid else ''}",
        devices=_device_markers(rt, {g.code for g in grids} if grid is not None else None, incidents),
    )
    return HTMLResponse(fmap.get_root().render())


def _device_markers(rt: Any, codes: set[str] | None, incidents: list[Any]) -> list[dict[str, Any]]:
    """Device dicts for the wall: state from the store, alarming when an open incident is theirs."""
    from alerts.routing import device_point

    states = rt.store.device_states()
    alarming = {i.device_id for i in incidents if getattr(i, "device_id", None)}
    out = []
    for d in rt.devices.values():
        if codes is not None and d.grid_code not in codes:
            continue
        lon, lat = device_point(d)
        out.append({**device_properties(d, states.get(d.id)), "lon": lon, "lat": lat, "alarming": d.id in alarming})
    return out


@router.get("/plan/{version_id}", response_class=HTMLResponse)
def plan_page(
    rt: RuntimeDep,
    version_id: int,
    days: Annotated[int, Query(ge=0, le=3660, description="what-if: replay the incidents of the last N days")] = 30,
) -> HTMLResponse:
    """The planner's diff map: old and new boundaries, changed grids, findings, what moves, the what-if."""
    from api.planning import Planning, version_dict
    from maps.plan import build_plan_map

    planning = Planning(rt.store, clock=rt.now, timezone=rt.settings.timezone)
    version = planning.version(version_id)
    validation = planning.validation(version_id)
    current = rt.store.current_version()
    diff = whatif = None
    old_grids = []
    base = current if version.status == "draft" else None
    if version.status == "published":  # a published version: show it against its predecessor
        older = [v for v in rt.store.grid_versions() if v.status == "published" and v.valid_to is not None
                 and version.valid_from is not None and v.valid_to <= version.valid_from]
        base = max(older, key=lambda v: v.valid_to) if older else None  # type: ignore[arg-type,return-value]
    if base is not None:
        body = planning.diff(version_id, against=base.id if base is not current else None, days=days)
        diff, whatif = body["diff"], body["whatif"]
        if "error" in whatif:
            whatif = None
        old_grids = rt.store.grids(version=base.id)
    html = build_plan_map(version=version_dict(version), old_grids=old_grids, new_grids=rt.store.grids(version=version_id),
                          diff=diff, validation=validation, whatif=whatif)
    return HTMLResponse(html)
