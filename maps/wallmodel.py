"""Pure parts of the map wall's data: lights per grid, geometry simplified per zoom, the incident list order."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely.geometry import mapping

from maps.style import LIGHT_RANK, QUIET_FILL, light_color, worst_light

MAX_ZOOM = 22
TILE = 256


@dataclass(slots=True)
class GridLight:
    """The open incidents of one grid's subtree: how many, and their worst light (None: no clock runs)."""

    open: int = 0
    light: str | None = None

    @property
    def fill(self) -> str:
        """Fill colour: the worst light, the no-clock colour, or the quiet fill without open incidents."""
        return light_color(self.light) if self.open else QUIET_FILL


def lights_by_grid(items: Iterable[tuple[Iterable[str | None], str | None]]) -> dict[str, GridLight]:
    """Aggregate (route chain codes, light) of open incidents to every grid of each chain."""
    out: dict[str, GridLight] = {}
    for codes, light in items:
        for code in {c for c in codes if c}:
            g = out.setdefault(code, GridLight())
            g.open += 1
            g.light = worst_light([g.light, light])
    return out


def zoom_bucket(zoom: float) -> int:
    """The integer zoom a request is served (and cached) at, 0…MAX_ZOOM."""
    return max(0, min(MAX_ZOOM, int(math.floor(zoom))))


def tolerance(zoom: float, lat: float = 0.0) -> float:
    """About one screen pixel at `zoom` and latitude `lat`, in degrees (Web Mercator)."""
    return 360.0 / (TILE * 2 ** zoom_bucket(zoom)) * max(0.05, math.cos(math.radians(lat)))


def decimals_for(tol: float) -> int:
    """Decimals of coordinates that keep a tenth of `tol` (3…6): smaller payloads when zoomed out."""
    return max(3, min(6, math.ceil(-math.log10(tol)) + 1)) if tol > 0 else 6


def fit_zoom(bbox: Sequence[float], width: int = 1024, height: int = 768) -> int:
    """The largest zoom at which `bbox` (min_lon, min_lat, max_lon, max_lat) fits a viewport of width × height px."""
    x0, y0, x1, y1 = bbox

    def merc(lat: float) -> float:
        lat = max(-85.0, min(85.0, lat))
        return math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))

    dx = max((x1 - x0) / 360.0, 1e-12)
    dy = max((merc(y1) - merc(y0)) / (2 * math.pi), 1e-12)
    zoom = math.floor(min(math.log2(width / TILE / dx), math.log2(height / TILE / dy)))
    return max(0, min(MAX_ZOOM, zoom))


def simplified(geometries: Sequence[Any], zoom: float) -> list[dict[str, Any]]:
    """GeoJSON geometries simplified to about a pixel at `zoom` (topology kept), coordinates rounded."""
    if not geometries:
        return []
    geoms = np.asarray(geometries, dtype=object)
    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    tol = tolerance(zoom, (y0 + y1) / 2)
    out = shapely.simplify(geoms, tol, preserve_topology=True)
    places = decimals_for(tol)
    out = shapely.transform(out, lambda c: np.round(c, places))
    return [mapping(g) for g in out]


def rounded(geometries: Sequence[Any], places: int = 6) -> list[dict[str, Any]]:
    """GeoJSON geometries with coordinates rounded to `places` decimals (buildings: no simplification)."""
    if not geometries:
        return []
    out = shapely.transform(np.asarray(geometries, dtype=object), lambda c: np.round(c, places))
    return [mapping(g) for g in out]


def list_key(item: dict[str, Any]) -> tuple[int, float]:
    """Sort key of the wall's incident list: red, yellow, green, no light; newest first within each."""
    created = item.get("created_ts") or 0.0
    return (-LIGHT_RANK.get(item.get("light"), 0), -created)


def counters(items: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Counters of the side panel over open incident items: open, yellow, red, escalated."""
    out = {"open": 0, "yellow": 0, "red": 0, "escalated": 0}
    for i in items:
        out["open"] += 1
        if i.get("light") in ("yellow", "red"):
            out[i["light"]] += 1
        if i.get("escalated"):
            out["escalated"] += 1
    return out


def heat_points(points: Iterable[tuple[float, float]], places: int = 4) -> list[list[float]]:
    """[lat, lon, weight] of (lon, lat) points merged on a grid of `places` decimals (weight: how many)."""
    cells: dict[tuple[float, float], int] = {}
    for lon, lat in points:
        key = (round(lat, places), round(lon, places))
        cells[key] = cells.get(key, 0) + 1
    return [[lat, lon, float(n)] for (lat, lon), n in sorted(cells.items())]
