"""HTML pages: the map wall and the planner's diff map."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse

from api.access import ForbiddenError, grid_filter
from api.auth import Principal
from api.deps import RuntimeDep
from api.errors import NotFoundProblem
from api.routes.incidents import GRID_CODE
from api.routes.login import page_principal
from maps.wall import build_wall
from maps.wallmodel import fit_zoom

router = APIRouter(tags=["pages"])


@router.get("/map", response_class=HTMLResponse)
def map_wall(rt: RuntimeDep, principal: Annotated[Principal, Depends(page_principal)],
             grid: Annotated[str | None, Query(pattern=GRID_CODE)] = None) -> HTMLResponse:
    """The live map wall (`?grid=` drills down): the page shell; `/static/wall.js` loads the data from
    `/api/v1/wall/*`. Admins and commanders (a commander's wall opens on its own grid and stays inside its subtree)."""
    if principal.role not in ("admin", "commander"):
        raise ForbiddenError(f"role {principal.role!r}: the map wall is for commanders and admins")
    if principal.role == "commander":
        grid = grid_filter(principal, grid, rt.grid_by_code)
    if grid is not None and grid not in rt.grid_by_code:
        raise NotFoundProblem(f"grid {grid!r} not found in the current version")
    bbox = rt.grid_by_code[grid].geometry.bounds if grid is not None else (rt.index.bounds if rt.grid_by_code else None)
    page = build_wall(grid=grid, role=principal.role, username=principal.username, tiles=rt.settings.map_tiles,
                      bbox=bbox, zoom=fit_zoom(bbox) if bbox is not None else 13)
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


@router.get("/plan/{version_id}", response_class=HTMLResponse)
def plan_page(
    rt: RuntimeDep,
    principal: Annotated[Principal, Depends(page_principal)],
    version_id: int,
    days: Annotated[int, Query(ge=0, le=3660, description="what-if: replay the incidents of the last N days")] = 30,
) -> HTMLResponse:
    """The planner's diff map: old and new boundaries, changed grids, findings, what moves, the what-if."""
    from api.planning import Planning, version_dict

    if principal.role not in ("admin", "planner"):
        raise ForbiddenError(f"role {principal.role!r}: the plan map is for planners and admins")
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
