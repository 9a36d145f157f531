"""Buildings and devices of the sample district, placed inside its level-3 grids.

Shapes are drawn in the local metric frame (geo.localframe) and stored in WGS84 on the 1e-7°
lattice. Every building keeps a margin of BUILDING_MARGIN metres from its grid's edge, so rounding
can never push it across; fences keep FENCE_INSET metres inside their grid.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import LineString, MultiPolygon, Point, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.ops import substring

from geo.localframe import snap, to_degrees, to_metres
from geo.model import Building, Device, Grid

logger = logging.getLogger(__name__)

BUILDINGS = 1100
BUILDING_MARGIN = 15.0  # metres between a footprint and its grid's edge
BUILDING_GAP = 8.0  # metres between two footprints
FENCE_INSET = 3.0  # metres between a boundary fence and its grid's edge
FENCE_AROUND = 6.0  # metres between a building and the fence around it
DEVICE_COUNTS = {"fence_edge": 36, "fence_building": 24, "thermal": 90, "smoke": 200, "camera": 40}


def _allocate(weights: np.ndarray, total: int, minimum: int) -> list[int]:
    """Share `total` over `weights` by largest remainder, at least `minimum` each."""
    spare = total - minimum * len(weights)
    raw = weights / weights.sum() * spare
    base = np.floor(raw).astype(int)
    base[np.argsort(-(raw - base), kind="stable")[: spare - int(base.sum())]] += 1
    return [minimum + int(b) for b in base]


def _footprint(x: float, y: float, w: float, d: float, angle: float) -> Polygon:
    """A w × d metre rectangle centred on (x, y), rotated by `angle` degrees."""
    rect = Polygon([(-w / 2, -d / 2), (w / 2, -d / 2), (w / 2, d / 2), (-w / 2, d / 2)])
    return affinity.translate(affinity.rotate(rect, angle, origin=(0, 0)), x, y)


def place_buildings(
    l3: Sequence[Grid], rng: np.random.Generator, total: int = BUILDINGS
) -> list[Building]:
    """Place `total` rectangular footprints, each strictly inside one level-3 grid, no two touching."""
    metric = [to_metres(g.geometry) for g in l3]
    # denser communities: a density factor per level-2 grid, times the grid's area
    l2_codes = sorted({g.code[:12] for g in l3})
    density = dict(zip(l2_codes, rng.lognormal(0.0, 0.5, len(l2_codes)), strict=True))
    weights = np.array([m.area * density[g.code[:12]] for g, m in zip(l3, metric, strict=True)])
    counts = _allocate(weights, total, 2)
    out: list[Building] = []
    for g, m, n in zip(l3, metric, counts, strict=True):
        inner = m.buffer(-BUILDING_MARGIN)
        shapely.prepare(inner)
        street = rng.uniform(0, 90)  # one street orientation per grid, small jitter per building
        minx, miny, maxx, maxy = inner.bounds
        placed: list[Polygon] = []
        tries = 0
        while len(placed) < n and tries < 400 * n:
            tries += 1
            fp = _footprint(
                rng.uniform(minx, maxx),
                rng.uniform(miny, maxy),
                rng.uniform(14, 60),
                rng.uniform(10, 22),
                street + rng.normal(0, 4),
            )
            if inner.contains(fp) and all(fp.distance(p) > BUILDING_GAP for p in placed):
                placed.append(fp)
        if len(placed) < n:
            logger.warning("grid %s: placed %d of %d buildings", g.code, len(placed), n)
        # number the buildings of a grid north→south, west→east
        placed.sort(key=lambda p: (-round(p.centroid.y, 3), p.centroid.x))
        for k, fp in enumerate(placed, start=1):
            geom = shapely.normalize(snap(to_degrees(fp)))
            out.append(Building(f"{g.code}{k:05d}", g.code, f"{g.name}{k}栋", geom))
    return out


def _boundary_fence(grid_m: BaseGeometry, rng: np.random.Generator) -> LineString:
    """A stretch of fence FENCE_INSET metres inside a grid's boundary (300–900 m long)."""
    inner = grid_m.buffer(-FENCE_INSET, join_style="mitre")
    if isinstance(inner, MultiPolygon):
        inner = max(inner.geoms, key=lambda p: p.area)
    if not isinstance(inner, Polygon):
        raise ValueError(f"grid too thin for a fence {FENCE_INSET} m inside its edge")
    ring = LineString(inner.exterior.coords)
    length = min(rng.uniform(300, 900), 0.8 * ring.length)
    start = rng.uniform(0, ring.length - length)
    line = substring(ring, start, start + length)
    if not isinstance(line, LineString):
        raise ValueError("fence stretch collapsed to a point")
    return line


def _zones(length_m: float) -> tuple[str, ...]:
    """Name the zones of a fence: one per started 250 m, at most four (Z1..Z4)."""
    return tuple(f"Z{i}" for i in range(1, min(4, 1 + int(length_m // 250)) + 1))


def place_devices(
    l3: Sequence[Grid], buildings: Sequence[Building], rng: np.random.Generator
) -> list[Device]:
    """Place fences (grid edges, around buildings), thermal cameras, smoke sensors and cameras."""
    by_code = {g.code: g for g in l3}
    devices: list[Device] = []
    fences: list[tuple[LineString, str]] = []  # metric line and grid code, for the cameras

    for n, gi in enumerate(
        sorted(rng.choice(len(l3), DEVICE_COUNTS["fence_edge"], replace=False)), start=1
    ):
        g = l3[int(gi)]
        line_m = _boundary_fence(to_metres(g.geometry), rng)
        fences.append((line_m, g.code))
        devices.append(
            Device(
                f"fence-{n:03d}",
                "fence",
                f"{g.name}周界围栏",
                snap(to_degrees(line_m)),
                g.code,
                _zones(line_m.length),
            )
        )

    # the biggest footprints get a fence around them and a thermal camera on a corner
    area = np.array([to_metres(b.geometry).area for b in buildings])
    big = np.argsort(-area, kind="stable")
    fenced = sorted(big[: DEVICE_COUNTS["fence_building"]].tolist())
    start = DEVICE_COUNTS["fence_edge"] + 1
    for n, bi in enumerate(fenced, start=start):
        b = buildings[bi]
        grid_m = to_metres(by_code[b.grid_code].geometry)
        ring_m = to_metres(b.geometry).buffer(FENCE_AROUND, join_style="mitre").exterior
        line_m = LineString(ring_m.coords)
        if not grid_m.buffer(-1.0).contains(line_m):
            continue  # keeps every fence inside its grid; cannot happen with the margins above
        fences.append((line_m, b.grid_code))
        devices.append(
            Device(
                f"fence-{n:03d}",
                "fence",
                f"{b.name}围栏",
                snap(to_degrees(line_m)),
                b.grid_code,
                _zones(line_m.length),
            )
        )

    thermal = sorted(big[: DEVICE_COUNTS["thermal"]].tolist())
    for n, bi in enumerate(thermal, start=1):
        b = buildings[bi]
        corners = list(b.geometry.exterior.coords)[:-1]
        corner = corners[int(rng.integers(len(corners)))]
        devices.append(
            Device(f"thermal-{n:03d}", "thermal", f"{b.name}热成像", Point(corner), b.grid_code)
        )

    smoke = sorted(rng.choice(len(buildings), DEVICE_COUNTS["smoke"], replace=False).tolist())
    for n, bi in enumerate(smoke, start=1):
        b = buildings[bi]
        fp = to_metres(b.geometry)
        c = fp.centroid
        # somewhere in the inner half of the footprint
        p = affinity.scale(fp, 0.5, 0.5, origin=c)
        minx, miny, maxx, maxy = p.bounds
        while True:
            q = Point(rng.uniform(minx, maxx), rng.uniform(miny, maxy))
            if p.contains(q):
                break
        devices.append(
            Device(f"smoke-{n:03d}", "smoke", f"{b.name}烟感", snap(to_degrees(q)), b.grid_code)
        )

    # intrusion cameras watch a fence: one at a point along a fence line
    picks = sorted(
        rng.choice(len(fences), min(DEVICE_COUNTS["camera"], len(fences)), replace=False).tolist()
    )
    for n, fi in enumerate(picks, start=1):
        line_m, code = fences[fi]
        q = line_m.interpolate(rng.uniform(0.1, 0.9), normalized=True)
        devices.append(
            Device(
                f"camera-{n:03d}",
                "camera",
                f"{by_code[code].name}入侵摄像机",
                snap(to_degrees(q)),
                code,
            )
        )
    return devices
