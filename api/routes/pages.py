"""HTML pages: the map wall."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from alerts.model import OPEN_STATES
from alerts.views import incident_dict
from api.deps import RuntimeDep
from api.errors import NotFoundProblem
from api.geojson import collection, grid_feature
from maps.wall import build_wall
from store.ports import IncidentQuery

router = APIRouter(tags=["pages"])


@router.get("/map", response_class=HTMLResponse)
def map_wall(rt: RuntimeDep, grid: Annotated[str | None, Query(pattern=r"^\d{9}(\d{3}){0,2}$")] = None) -> HTMLResponse:
    """The map wall: grids coloured by their worst open incident, incident markers (`?grid=` drills down)."""
    grids = [g for g in rt.store.grids() if grid is None or g.code.startswith(grid)]
    if grid is not None and not grids:
        raise NotFoundProblem(f"grid {grid!r} not found in the current version")
    shown = [g for g in grids if g.level == 3 or (grid is None and g.level == 1)]
    incidents = rt.store.incidents(IncidentQuery(states=tuple(OPEN_STATES), grid_prefix=grid, limit=2000))
    now = rt.now()
    fmap = build_wall(
        collection([grid_feature(g) for g in shown]),
        [incident_dict(i, now) for i in incidents],
        title=f"gridwatch map wall{f' · {grid}' if grid else ''}",
    )
    return HTMLResponse(fmap.get_root().render())
