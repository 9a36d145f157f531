"""Who is responsible here: a point → grid chain (L1, L2, L3), building, and the patroller to dispatch.

Rules, in order (the chosen rule is written into the route record):
1. `nearest-on-duty`: the on-duty patroller assigned to the L3 grid nearest by last known position;
2. `on-duty-no-position`: an on-duty assigned patroller whose position is unknown (lowest id);
3. `grid-command-center`: nobody on duty — the community command center of the grid owns it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from alerts.model import RouteRecord
from geo.model import Device, Patroller

EARTH_RADIUS_M = 6_371_008.8


class Located(Protocol):
    """What the router needs from a point-index hit."""

    @property
    def l1(self) -> str | None: ...
    @property
    def l2(self) -> str | None: ...
    @property
    def l3(self) -> str | None: ...
    @property
    def building(self) -> str | None: ...


class PointIndex(Protocol):
    """What the router needs from geo.index.GridIndex."""

    @property
    def version(self) -> int: ...

    def locate(self, lon: float, lat: float) -> Located | None:
        """Locate one point."""


class HasLonLat(Protocol):
    """A last known position."""

    @property
    def lon(self) -> float: ...
    @property
    def lat(self) -> float: ...


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


def device_point(device: Device) -> tuple[float, float]:
    """The point used for a device alarm without its own position: a point on its geometry."""
    geom = device.geometry
    p = geom if geom.geom_type == "Point" else geom.interpolate(0.5, normalized=True) if geom.geom_type == "LineString" else geom.representative_point()
    return (p.x, p.y)


class Router:
    """Routes points to the responsible grid chain and patroller."""

    def __init__(self, index: PointIndex, patrollers: Sequence[Patroller], timezone: str = "Asia/Shanghai") -> None:
        self.index = index
        self.tz = ZoneInfo(timezone)
        self._by_grid: dict[str, list[Patroller]] = {}
        for p in sorted(patrollers, key=lambda p: p.id):
            for code in p.grid_codes:
                self._by_grid.setdefault(code, []).append(p)

    def route(
        self,
        lon: float,
        lat: float,
        *,
        point_source: str,
        at: datetime,
        positions: Mapping[str, HasLonLat],
    ) -> RouteRecord:
        """Route one point at time `at` (aware), given patrollers' last known positions."""
        hit = self.index.locate(lon, lat)
        l1 = l2 = l3 = building = None
        if hit is not None:
            l1, l2, l3, building = hit.l1, hit.l2, hit.l3, hit.building
        patroller_id, rule = self.choose_patroller(l3, lon, lat, at, positions)
        return RouteRecord(lon, lat, point_source, self.index.version, l1, l2, l3, building, patroller_id, rule, at)

    def choose_patroller(
        self, l3: str | None, lon: float, lat: float, at: datetime, positions: Mapping[str, HasLonLat]
    ) -> tuple[str | None, str]:
        """Pick the patroller for a point in grid `l3` and name the rule that chose them."""
        if l3 is None:
            return None, "outside-grids"
        local = at.astimezone(self.tz)
        on_duty = [p for p in self._by_grid.get(l3, ()) if p.on_duty(local)]
        if not on_duty:
            return None, "grid-command-center"
        placed = [(distance_m(lon, lat, positions[p.id].lon, positions[p.id].lat), p.id) for p in on_duty if p.id in positions]
        if placed:
            return min(placed)[1], "nearest-on-duty"
        return on_duty[0].id, "on-duty-no-position"
