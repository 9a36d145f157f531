"""Who is responsible here: a point → grid chain (L1, L2, L3), building, and the patroller to dispatch.

Rules, in order (the chosen rule is written into the route record's `rule`):
1. `nearest-on-duty`: the on-duty patroller assigned to the L3 grid nearest by last known position;
   `on-duty-no-position`: else an on-duty assigned patroller whose position is unknown (lowest id);
2. `backup-on-duty`: an on-duty backup of the grid (Patroller.backup_grid_codes), nearest by last
   known position; `backup-on-duty-no-position`: else an on-duty backup without a position (lowest id);
3. `neighbour-on-duty`: the nearest on-duty patroller assigned to a neighbouring L3 grid (the
   router's `neighbours` map, e.g. geo.adjacency.grid_neighbours) whose last known position is within
   `neighbour_radius_m` of the point (without a position they do not qualify);
4. `grid-command-center`: nobody found — the community command center of the grid owns it.
A point in no grid gets `outside-grids`. Ties in distance go to the lowest patroller id.

Every patroller the chain looked at can be kept as a `Candidate` (Router.decide / explain): the
RouteRecord keeps its stored fields, and RouteDecision.to_dict() is JSON for Incident.details.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
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


#: The rules of the chain, in the order they are tried.
RULES = (
    "nearest-on-duty",
    "on-duty-no-position",
    "backup-on-duty",
    "backup-on-duty-no-position",
    "neighbour-on-duty",
    "grid-command-center",
)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A patroller the chain looked at, and why they were or were not chosen.

    `step` is "assigned", "backup" or "neighbour" (the grid relation that made them a candidate);
    `outcome` is "chosen", "farther" (a nearer one won), "no-position" (passed over: someone had a
    position, or a neighbour without one), "off-duty" or "beyond-radius" (neighbour too far).
    """

    patroller_id: str
    step: str
    outcome: str
    distance_m: float | None = None
    grid_code: str | None = None  # the grid that made them a candidate

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "patroller_id": self.patroller_id,
            "step": self.step,
            "outcome": self.outcome,
            "distance_m": None if self.distance_m is None else round(self.distance_m, 1),
            "grid_code": self.grid_code,
        }


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """A route record plus the candidates the chain tried (for Incident.details, audits, the UI)."""

    record: RouteRecord
    candidates: tuple[Candidate, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: {"rule": ..., "patroller_id": ..., "candidates": [...]}."""
        return {
            "rule": self.record.rule,
            "patroller_id": self.record.patroller_id,
            "candidates": [c.to_dict() for c in self.candidates],
        }


class Router:
    """Routes points to the responsible grid chain and patroller."""

    def __init__(
        self,
        index: PointIndex,
        patrollers: Sequence[Patroller],
        timezone: str = "Asia/Shanghai",
        *,
        neighbours: Mapping[str, Sequence[str]] | None = None,
        neighbour_radius_m: float = 1500.0,
    ) -> None:
        if neighbour_radius_m < 0:
            raise ValueError(f"neighbour_radius_m {neighbour_radius_m}: expected >= 0")
        self.index = index
        self.tz = ZoneInfo(timezone)
        self.neighbours: Mapping[str, Sequence[str]] = neighbours if neighbours is not None else {}
        self.neighbour_radius_m = float(neighbour_radius_m)
        self._by_grid: dict[str, list[Patroller]] = {}
        self._backups: dict[str, list[Patroller]] = {}
        for p in sorted(patrollers, key=lambda p: p.id):
            for code in dict.fromkeys(p.grid_codes):
                self._by_grid.setdefault(code, []).append(p)
            for code in dict.fromkeys(p.backup_grid_codes):
                if code not in p.grid_codes:  # assigned wins: they were tried in step 1
                    self._backups.setdefault(code, []).append(p)

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
        return self._route(lon, lat, point_source, at, positions, None)

    def decide(
        self,
        lon: float,
        lat: float,
        *,
        point_source: str,
        at: datetime,
        positions: Mapping[str, HasLonLat],
    ) -> RouteDecision:
        """Like route(), and also return every candidate the chain looked at."""
        trace: list[Candidate] = []
        record = self._route(lon, lat, point_source, at, positions, trace)
        return RouteDecision(record, tuple(trace))

    def _route(
        self,
        lon: float,
        lat: float,
        point_source: str,
        at: datetime,
        positions: Mapping[str, HasLonLat],
        trace: list[Candidate] | None,
    ) -> RouteRecord:
        hit = self.index.locate(lon, lat)
        l1 = l2 = l3 = building = None
        if hit is not None:
            l1, l2, l3, building = hit.l1, hit.l2, hit.l3, hit.building
        patroller_id, rule = self._choose(l3, lon, lat, at, positions, trace)
        return RouteRecord(lon, lat, point_source, self.index.version, l1, l2, l3, building, patroller_id, rule, at)

    def choose_patroller(
        self, l3: str | None, lon: float, lat: float, at: datetime, positions: Mapping[str, HasLonLat]
    ) -> tuple[str | None, str]:
        """Pick the patroller for a point in grid `l3` and name the rule that chose them."""
        return self._choose(l3, lon, lat, at, positions, None)

    def explain(
        self, l3: str | None, lon: float, lat: float, at: datetime, positions: Mapping[str, HasLonLat]
    ) -> tuple[str | None, str, tuple[Candidate, ...]]:
        """choose_patroller() plus the candidates the chain looked at, in the order it looked."""
        trace: list[Candidate] = []
        chosen, rule = self._choose(l3, lon, lat, at, positions, trace)
        return chosen, rule, tuple(trace)

    def _choose(
        self,
        l3: str | None,
        lon: float,
        lat: float,
        at: datetime,
        positions: Mapping[str, HasLonLat],
        trace: list[Candidate] | None,
    ) -> tuple[str | None, str]:
        if l3 is None:
            return None, "outside-grids"
        local = at.astimezone(self.tz)
        # 1. assigned to the grid, 2. backups of the grid: nearest placed, else lowest-id unplaced
        for step, people, rules in (
            ("assigned", self._by_grid.get(l3, ()), ("nearest-on-duty", "on-duty-no-position")),
            ("backup", self._backups.get(l3, ()), ("backup-on-duty", "backup-on-duty-no-position")),
        ):
            chosen = self._pick(step, [(p, l3) for p in people], lon, lat, local, positions, trace, None)
            if chosen is not None:
                return chosen[0], rules[0] if chosen[1] else rules[1]
        # 3. assigned to a neighbouring grid, placed within the radius
        seen: set[str] = {p.id for p in self._by_grid.get(l3, ())} | {p.id for p in self._backups.get(l3, ())}
        nearby: list[tuple[Patroller, str]] = []
        for code in self.neighbours.get(l3, ()):
            for p in self._by_grid.get(code, ()):
                if p.id not in seen:
                    seen.add(p.id)
                    nearby.append((p, code))
        chosen = self._pick("neighbour", nearby, lon, lat, local, positions, trace, self.neighbour_radius_m)
        if chosen is not None:
            return chosen[0], "neighbour-on-duty"
        return None, "grid-command-center"

    @staticmethod
    def _pick(
        step: str,
        people: Sequence[tuple[Patroller, str]],
        lon: float,
        lat: float,
        local: datetime,
        positions: Mapping[str, HasLonLat],
        trace: list[Candidate] | None,
        radius_m: float | None,
    ) -> tuple[str, bool] | None:
        """The on-duty patroller nearest the point (placed=True), else the lowest-id unplaced one.

        With `radius_m`, only patrollers placed within the radius qualify (no unplaced fallback).
        `people` come sorted by id. Appends every one looked at to `trace` when given.
        """
        placed: list[tuple[float, str, str]] = []
        unplaced: list[tuple[str, str]] = []
        rejected: list[Candidate] = []
        for p, code in people:
            if not p.on_duty(local):
                if trace is not None:
                    rejected.append(Candidate(p.id, step, "off-duty", None, code))
                continue
            pos = positions.get(p.id)
            if pos is None:
                unplaced.append((p.id, code))
                continue
            d = distance_m(lon, lat, pos.lon, pos.lat)
            if radius_m is not None and d > radius_m:
                if trace is not None:
                    rejected.append(Candidate(p.id, step, "beyond-radius", d, code))
                continue
            placed.append((d, p.id, code))
        result: tuple[str, bool] | None = None
        if placed:
            placed.sort()
            result = (placed[0][1], True)
        elif unplaced and radius_m is None:
            result = (unplaced[0][0], False)
        if trace is not None:
            for d, pid, code in placed:
                trace.append(Candidate(pid, step, "chosen" if result and pid == result[0] else "farther", d, code))
            for pid, code in unplaced:
                trace.append(Candidate(pid, step, "chosen" if result and pid == result[0] else "no-position", None, code))
            trace.extend(rejected)
        return result
