"""Data of the live map wall (`/map`): one level of grids at a time, the side panel, buildings, the heatmap.

All routes are for admins and commanders; a commander sees its grid's subtree only (403 for a
`parent`/`grid` outside it). Lights are computed from the clock (alerts.views / alerts.sla), per request.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from datetime import timedelta
from typing import Annotated, Any

import shapely
from fastapi import APIRouter, Depends, Query

from alerts import sla
from alerts.model import OPEN_STATES, Incident
from api.access import WATCHERS, chain, grid_filter
from api.auth import Principal
from api.deps import RuntimeDep, allow
from api.errors import InvalidQueryProblem, NotFoundProblem
from api.routes.incidents import GRID_CODE
from geo.model import Building, Grid
from maps import wallmodel
from store.ports import IncidentQuery

router = APIRouter(prefix="/wall", tags=["map wall"])
Watcher = Annotated[Principal, Depends(allow(*WATCHERS))]
GridParam = Annotated[str | None, Query(pattern=GRID_CODE, description="a grid code (any level): its subtree")]

SCAN_LIMIT = 200_000
"""Most open incidents a counter scans (the counters are not capped below this)."""
OPEN_MAX_AGE_S = 5.0
"""Longest a snapshot of the open incidents is reused while the store's mark stays the same (a backstop for a
write whose updated_at is not the newest, e.g. from a worker whose clock lags)."""
LIST_LIMIT = 500
"""Most incidents in the side panel's list."""
CACHE_SIZE = 128
"""Simplified geometry kept per (parent, zoom) of the current grid version."""


class WallCache:
    """Per runtime and grid version: children by parent, simplified geometry (bounded LRU), buildings by grid."""

    def __init__(self, version: int, grids: dict[str, Grid]) -> None:
        self.version, self.grids = version, grids
        self.children: dict[str | None, list[Grid]] = {}
        for g in sorted(grids.values(), key=lambda g: g.code):
            parent = g.parent_code if g.parent_code in grids else None
            self.children.setdefault(parent, []).append(g)
        self.shapes: OrderedDict[tuple[str | None, int], list[dict[str, Any]]] = OrderedDict()
        self.buildings: dict[str, list[Building]] | None = None
        self.lock = threading.Lock()
        self._open: tuple[tuple[Any, ...], float, list[Incident]] | None = None  # (store mark, taken at, incidents)
        self._open_lock = threading.Lock()

    def open_incidents(self, store: Any) -> list[Incident]:
        """Every open incident (newest first), shared by all walls until the store's mark changes (an incident
        created or written) or OPEN_MAX_AGE_S passed: many walls refreshing on the same event cost one scan,
        not two each. One request scans at a time; the others wait for its answer."""
        with self._open_lock:
            mark = store.incidents_mark()
            held = self._open
            if held is not None and held[0] == mark and time.monotonic() - held[1] < OPEN_MAX_AGE_S:
                return held[2]
            found = store.incidents(IncidentQuery(states=tuple(OPEN_STATES), limit=SCAN_LIMIT))
            self._open = (mark, time.monotonic(), found)
            return found

    def simplified(self, parent: str | None, grids: list[Grid], zoom: int) -> list[dict[str, Any]]:
        key = (parent, zoom)
        with self.lock:
            hit = self.shapes.get(key)
            if hit is not None:
                self.shapes.move_to_end(key)
                return hit
        shapes = wallmodel.simplified([g.geometry for g in grids], zoom)
        with self.lock:
            self.shapes[key] = shapes
            while len(self.shapes) > CACHE_SIZE:
                self.shapes.popitem(last=False)
        return shapes


_caches: weakref.WeakKeyDictionary[Any, WallCache] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def cache_of(rt: Any) -> WallCache:
    """The wall cache of the runtime's current grid version (a new one after a version change)."""
    version, grids = rt.index.version, rt.grid_by_code
    with _caches_lock:
        cache = _caches.get(rt)
        if cache is None or cache.version != version or cache.grids is not grids:
            cache = _caches[rt] = WallCache(version, grids)
    return cache


def _scoped(rt: Any, principal: Principal, grid: str | None) -> str | None:
    """The grid a query is limited to (a commander: inside its subtree, else 403); 404 for an unknown grid."""
    if principal.role != "admin":
        grid = grid_filter(principal, grid, rt.grid_by_code)
    if grid is not None and grid not in rt.grid_by_code:
        raise NotFoundProblem(f"grid {grid!r} not found in the current version")
    return grid


def _open_incidents(rt: Any, grid: str | None) -> list[Incident]:
    """The open incidents of a grid's subtree (all without one), from the shared snapshot."""
    found = cache_of(rt).open_incidents(rt.store)
    if grid is None:
        return found
    return [i for i in found if grid in (i.route.l3, i.route.l2, i.route.l1)]


def _light(incident: Incident, now: Any) -> str | None:
    light = sla.light(incident, now)
    return light.value if light is not None else None


def _crumb(g: Grid) -> dict[str, Any]:
    return {"code": g.code, "name": g.name, "level": g.level}


def _bbox(geoms: list[Any]) -> list[float] | None:
    if not geoms:
        return None
    return [round(float(v), 6) for v in shapely.total_bounds(geoms)]


@router.get("/grids")
def wall_grids(
    rt: RuntimeDep,
    principal: Watcher,
    parent: Annotated[str | None, Query(pattern=GRID_CODE, description="show this grid's children (default: the top)")] = None,
    zoom: Annotated[int | None, Query(ge=0, le=wallmodel.MAX_ZOOM, description="map zoom the grids are drawn at")] = None,
    geometry: Annotated[bool, Query(description="false: properties only (a refresh recolours grids it has drawn)")] = True,
) -> dict[str, Any]:
    """The children of `parent` (the level-1 grids without one; a commander: its own grid's children) as a
    FeatureCollection simplified to about a pixel at `zoom` (default: the zoom that fits the parent), each with
    code, name, level, light (worst of its subtree's open incidents), open, fill, has_children. A grid without
    children shows itself. With `breadcrumbs` (the parent's chain from the top the caller may see) and `bbox`.
    `geometry=false` leaves the geometry out (null): what a wall's refresh needs to recolour what it has drawn."""
    parent = _scoped(rt, principal, parent)  # a commander without `parent`: its own grid
    cache = cache_of(rt)
    top = None if principal.role == "admin" else principal.grid
    shown, key = cache.children.get(parent, []), parent
    if parent is not None and not shown:  # a unit grid (or a childless one): itself
        shown, key = [cache.grids[parent]], f"={parent}"
    level = shown[0].level if shown else 1
    bbox = _bbox([cache.grids[parent].geometry] if parent is not None else [g.geometry for g in shown])
    if zoom is None:
        zoom = wallmodel.fit_zoom(bbox) if bbox is not None else 12
    shapes = cache.simplified(key, shown, zoom) if geometry else [None] * len(shown)
    now = rt.now()
    lights = wallmodel.lights_by_grid(
        ((i.route.l1, i.route.l2, i.route.l3), _light(i, now)) for i in _open_incidents(rt, parent))
    features = []
    for g, geometry in zip(shown, shapes, strict=True):
        gl = lights.get(g.code, wallmodel.GridLight())
        props = {"code": g.code, "name": g.name, "level": g.level, "light": gl.light, "open": gl.open, "fill": gl.fill,
                 "has_children": bool(cache.children.get(g.code))}
        features.append({"type": "Feature", "id": g.code, "geometry": geometry, "properties": props})
    crumbs = []
    if parent is not None:
        codes = chain(parent, cache.grids)
        if top is not None:
            codes = codes[: codes.index(top) + 1] if top in codes else codes[:1]
        crumbs = [_crumb(cache.grids[c]) for c in reversed(codes) if c in cache.grids]
    return {"type": "FeatureCollection", "features": features, "parent": crumbs[-1] if crumbs else None, "level": level,
            "zoom": zoom, "bbox": bbox, "breadcrumbs": crumbs, "version": cache.version}


@router.get("/summary")
def wall_summary(rt: RuntimeDep, principal: Watcher, grid: GridParam = None) -> dict[str, Any]:
    """The side panel of a grid's subtree (a commander: its own grid by default): counters {open, yellow, red,
    escalated} of all open incidents, and the list (at most 500) sorted red, yellow, green, no light, newest first."""
    grid = _scoped(rt, principal, grid)
    now = rt.now()
    items = []
    for i in _open_incidents(rt, grid):
        items.append({
            "id": i.id, "type": i.type, "light": _light(i, now), "state": i.state.value, "grid": i.route.l3,
            "lon": i.route.lon, "lat": i.route.lat, "device_id": i.device_id, "assignee": i.assignee,
            "created_at": i.created_at.isoformat(), "created_ts": i.created_at.timestamp(),
            "escalation_level": i.escalation_level, "escalated": i.escalated_at is not None,
            "supervised": i.supervised, "difficulty": i.difficulty,
        })
    counts = wallmodel.counters(items)
    items.sort(key=wallmodel.list_key)
    for item in items:
        del item["created_ts"]
    return {"grid": grid, "counters": counts, "count": len(items[:LIST_LIMIT]), "truncated": len(items) > LIST_LIMIT,
            "items": items[:LIST_LIMIT], "at": now.isoformat()}


@router.get("/buildings")
def wall_buildings(rt: RuntimeDep, principal: Watcher,
                   grid: Annotated[str, Query(pattern=GRID_CODE, description="a level-2 or level-3 grid")]) -> dict[str, Any]:
    """Building footprints of a level-2 or level-3 grid (422 for a level-1 grid)."""
    code = _scoped(rt, principal, grid)
    assert code is not None
    cache = cache_of(rt)
    g = cache.grids[code]
    if g.level < 2:
        raise InvalidQueryProblem(f"grid {code!r} is level {g.level}: buildings are shown for level-2 and level-3 grids")
    if cache.buildings is None:
        by_grid: dict[str, list[Building]] = {}
        for b in rt.store.buildings(version=cache.version or None):
            by_grid.setdefault(b.grid_code, []).append(b)
        cache.buildings = by_grid
    units = [code, *(c.code for c in cache.children.get(code, []))]
    blds = [b for u in units for b in cache.buildings.get(u, [])]
    shapes = wallmodel.rounded([b.geometry for b in blds])
    features = [{"type": "Feature", "id": b.code, "geometry": s, "properties": {"code": b.code, "name": b.name, "grid_code": b.grid_code}}
                for b, s in zip(blds, shapes, strict=True)]
    return {"type": "FeatureCollection", "grid": code, "features": features}


@router.get("/heatmap")
def wall_heatmap(
    rt: RuntimeDep,
    principal: Watcher,
    days: Annotated[int, Query(ge=1, le=366, description="incidents created in the last N days")] = 30,
    type: Annotated[str | None, Query(max_length=120, description="only this incident type")] = None,  # noqa: A002
    grid: GridParam = None,
) -> dict[str, Any]:
    """Points [lat, lon, weight] of the incidents (any state) created in the last `days` in the grid's subtree
    (类案分析), optionally of one `type`, and the types present with their counts (for the filter)."""
    grid = _scoped(rt, principal, grid)
    now = rt.now()
    since = now - timedelta(days=days)
    found = [i for i in rt.store.incidents(IncidentQuery(grid=grid, since=since, limit=SCAN_LIMIT)) if i.created_at >= since]
    types: dict[str, int] = {}
    for i in found:
        types[i.type] = types.get(i.type, 0) + 1
    chosen = [i for i in found if type is None or i.type == type]
    points = wallmodel.heat_points((i.route.lon, i.route.lat) for i in chosen)
    return {"grid": grid, "days": days, "type": type, "since": since.isoformat(), "count": len(chosen),
            "max": max((p[2] for p in points), default=0.0), "points": points,
            "types": [{"type": t, "count": n} for t, n in sorted(types.items(), key=lambda kv: (-kv[1], kv[0]))]}
