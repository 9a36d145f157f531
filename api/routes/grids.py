"""Grids of the current (or a given) version as GeoJSON."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import RuntimeDep
from api.errors import NotFoundProblem
from api.geojson import collection, grid_feature

router = APIRouter(tags=["grids"])


@router.get("/grids")
def list_grids(
    rt: RuntimeDep,
    level: Annotated[int | None, Query(ge=1, le=3)] = None,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    """A FeatureCollection of grids, optionally of one level or version."""
    if version is not None and not rt.store.grids(version=version, level=1):
        raise NotFoundProblem(f"grid version {version} not found")
    return collection([grid_feature(g) for g in rt.store.grids(level=level, version=version)])


@router.get("/grids/{code}")
def get_grid(rt: RuntimeDep, code: str) -> dict[str, Any]:
    """One grid as a Feature."""
    grid = rt.store.grid(code)
    if grid is None:
        raise NotFoundProblem(f"grid {code!r} not found in the current version")
    return grid_feature(grid)
