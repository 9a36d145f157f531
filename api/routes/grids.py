"""Grids of the current (or a given) version as GeoJSON."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.access import PEOPLE, Scope, chain, in_scope
from api.deps import RuntimeDep, ScopeDep, allow
from api.errors import NotFoundProblem
from api.geojson import collection, grid_feature
from geo.model import Grid

router = APIRouter(tags=["grids"], dependencies=[Depends(allow(*PEOPLE))])


def _visible(scope: Scope, grid: Grid, grids: dict[str, Grid]) -> bool:
    """Admins and planners: every grid; a commander: its subtree; a patroller: its geofence's grids and their parents."""
    p = scope.principal
    if p.role in ("admin", "planner"):
        return True
    if p.role == "commander":
        return in_scope(p, grid.code, grids)
    return any(grid.code in chain(c, grids) for c in scope.fence)


@router.get("/grids")
def list_grids(
    rt: RuntimeDep,
    scope: ScopeDep,
    level: Annotated[int | None, Query(ge=1, le=3)] = None,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    """A FeatureCollection of grids, optionally of one level or version."""
    if version is not None and not rt.store.grids(version=version, level=1):
        raise NotFoundProblem(f"grid version {version} not found")
    grids = rt.store.grids(level=level, version=version)
    if scope.principal.role not in ("admin", "planner"):
        by_code = rt.grid_by_code if version is None else {g.code: g for g in rt.store.grids(version=version)}
        grids = [g for g in grids if _visible(scope, g, by_code)]
    return collection([grid_feature(g) for g in grids])


@router.get("/grids/{code}")
def get_grid(rt: RuntimeDep, scope: ScopeDep, code: str) -> dict[str, Any]:
    """One grid as a Feature."""
    grid = rt.store.grid(code)
    if grid is None or not _visible(scope, grid, rt.grid_by_code):
        raise NotFoundProblem(f"grid {code!r} not found in the current version")
    return grid_feature(grid)
