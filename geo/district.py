"""The reproducible sample district (design §5): 5 / 29 / 138 nested grids around lon 113.85, lat 27.62.

Grids are drawn in a local metric frame (x east, y north, metres from the centre): an irregular
outline is split into level-1 grids, each of those into level-2 grids and each of those into level-3
grids, by Lloyd-relaxed Voronoi cells clipped to the parent. The level-3 linework is then converted
to WGS84 and noded with snap-rounding on a 1e-7° grid (about 1 cm), so neighbours share identical
vertices; each level-3 grid is the face of that noded linework, and each parent is the exact
coverage union of its children. Buildings, devices and patrollers are placed afterwards.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import shapely
from shapely.geometry import MultiPoint, Polygon
from shapely.geometry.base import BaseGeometry

from geo.localframe import PRECISION, to_degrees
from geo.model import District, Grid, child_code
from geo.placement import place_buildings, place_devices
from geo.roster import build_patrollers

logger = logging.getLogger(__name__)

COUNTY = "430102"
COUNTS = (5, 29, 138)

STREETS = ("解放街道", "人民街道", "建设街道", "湘江街道", "东风街道")
COMMUNITIES = (
    "枫林",
    "桂花",
    "长青",
    "新华",
    "光明",
    "朝阳",
    "金盆",
    "锦绣",
    "芙蓉",
    "丽园",
    "和平",
    "友谊",
    "向阳",
    "春晖",
    "紫薇",
    "翠竹",
    "文昌",
    "书院",
    "龙泉",
    "莲塘",
    "白鹭",
    "凤凰",
    "安居",
    "康宁",
    "青山",
    "白石",
    "秀水",
    "玉泉",
    "银杏",
)


def _outline(rng: np.random.Generator, half_w: float = 6000.0, half_h: float = 5000.0) -> Polygon:
    """Draw an irregular, star-shaped outline about 12 km × 10 km (metres)."""
    theta = np.linspace(0.0, 2 * math.pi, 97)[:-1]
    n = 3.0  # superellipse: fuller than an ellipse, rounder than a rectangle
    r = (np.abs(np.cos(theta) / half_w) ** n + np.abs(np.sin(theta) / half_h) ** n) ** (-1 / n)
    wobble = np.zeros_like(theta)
    for k in range(2, 7):
        wobble += rng.uniform(-0.045, 0.045) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    r = r * (1.0 + wobble)
    return Polygon(np.column_stack([r * np.cos(theta), r * np.sin(theta)]))


def _random_points(poly: Polygon, k: int, rng: np.random.Generator) -> np.ndarray:
    """Draw k uniform random points inside a polygon (rejection sampling in its bounds)."""
    minx, miny, maxx, maxy = poly.bounds
    out: list[np.ndarray] = []
    shapely.prepare(poly)
    while sum(len(o) for o in out) < k:
        xy = rng.uniform((minx, miny), (maxx, maxy), size=(4 * k, 2))
        out.append(xy[shapely.contains_xy(poly, xy[:, 0], xy[:, 1])])
    return np.concatenate(out)[:k]


def _pieces_ok(pieces: Sequence[BaseGeometry], parent: Polygon) -> bool:
    """Tell whether a split is usable: single compact polygons of similar size covering the parent."""
    if not all(p.geom_type == "Polygon" and p.is_valid for p in pieces):
        return False
    areas = np.array([p.area for p in pieces])
    mean = parent.area / len(pieces)
    compact = np.array([4 * math.pi * p.area / p.length**2 for p in pieces])
    if areas.min() < 0.4 * mean or compact.min() < 0.35:
        return False
    # no sliver: every piece holds a disc of a decent size
    width = 0.12 * math.sqrt(mean)
    return all(not p.buffer(-width).is_empty for p in pieces)


def split_polygon(
    poly: Polygon, k: int, rng: np.random.Generator, tries: int = 200
) -> list[Polygon]:
    """Split a polygon into k compact single polygons (Lloyd-relaxed Voronoi cells clipped to it)."""
    if k == 1:
        return [poly]
    for _ in range(tries):
        seeds = _random_points(poly, k, rng)
        pieces: list[BaseGeometry] = []
        for _ in range(25):
            cells = shapely.voronoi_polygons(MultiPoint(seeds), extend_to=poly, ordered=True)
            pieces = [poly.intersection(c) for c in cells.geoms]
            if any(p.is_empty for p in pieces):
                break
            seeds = np.array(
                [
                    (p.centroid if p.centroid.within(poly) else p.point_on_surface()).coords[0]
                    for p in pieces
                ]
            )
        if len(pieces) == k and not any(p.is_empty for p in pieces) and _pieces_ok(pieces, poly):
            return [p for p in pieces if isinstance(p, Polygon)]
    raise RuntimeError(f"could not split a polygon into {k} usable pieces after {tries} tries")


def allocate(weights: Sequence[float], total: int, minimum: int) -> list[int]:
    """Share `total` over `weights` (largest remainder), giving each at least `minimum`."""
    w = np.asarray(weights, dtype=float)
    spare = total - minimum * len(w)
    if spare < 0:
        raise ValueError(f"total {total}: less than {minimum} for each of {len(w)}")
    raw = w / w.sum() * spare
    base = np.floor(raw).astype(int)
    rest = spare - int(base.sum())
    base[np.argsort(-(raw - base), kind="stable")[:rest]] += 1
    return [minimum + int(b) for b in base]


def reading_order(points: np.ndarray) -> np.ndarray:
    """Order points north→south by rows, west→east inside a row (how grids are numbered)."""
    n = len(points)
    if n <= 1:
        return np.arange(n)
    w = max(float(np.ptp(points[:, 0])), 1e-9)
    h = max(float(np.ptp(points[:, 1])), 1e-9)
    rows = max(1, min(n, round(math.sqrt(n * h / w))))
    rank = np.empty(n, dtype=int)
    rank[np.argsort(-points[:, 1], kind="stable")] = np.arange(n)
    row = rank * rows // n
    return np.lexsort((points[:, 0], row))


def _node(l3_metres: Sequence[Polygon]) -> list[Polygon]:
    """Convert level-3 polygons to WGS84 and node them into faces sharing identical vertices."""
    deg = [to_degrees(p) for p in l3_metres]
    lines = shapely.union_all([p.boundary for p in deg], grid_size=PRECISION)
    faces = list(shapely.polygonize(list(shapely.get_parts(lines))).geoms)
    if len(faces) != len(deg):
        raise RuntimeError(f"noding made {len(faces)} faces from {len(deg)} level-3 grids")
    tree = shapely.STRtree(faces)
    out: list[Polygon] = []
    for p in deg:
        hits = tree.query(p.representative_point(), predicate="within")
        if len(hits) != 1:
            raise RuntimeError("noding: a level-3 grid does not map to exactly one face")
        face = faces[int(hits[0])]
        if abs(face.area - p.area) > 1e-3 * p.area:
            raise RuntimeError("noding moved a level-3 grid's area")
        out.append(shapely.normalize(face))
    return out


def build_grids(seed: int = 7) -> list[Grid]:
    """Build the 5/29/138 nested grids of the sample district (WGS84, codes per design §6)."""
    rng = np.random.default_rng(seed)
    n1, n2, n3 = COUNTS
    l1_m = split_polygon(_outline(rng), n1, rng)
    l2_counts = allocate([p.area for p in l1_m], n2, 3)
    l2_m = [split_polygon(p, l2_counts[i], rng) for i, p in enumerate(l1_m)]
    counts = iter(allocate([p.area for ps in l2_m for p in ps], n3, 3))
    l3_m = [[split_polygon(p, next(counts), rng) for p in ps] for ps in l2_m]
    faces = iter(_node([p for a in l3_m for b in a for p in b]))
    l3_f = [[[next(faces) for _ in b] for b in a] for a in l3_m]

    grids: list[Grid] = []
    community = iter(COMMUNITIES)
    l1_cent = np.array([p.centroid.coords[0] for p in l1_m])
    for n1_i, i in enumerate(reading_order(l1_cent), start=1):
        code1 = child_code(None, n1_i, county=COUNTY)
        l2_geoms = [shapely.coverage_union_all(np.array(fs, dtype=object)) for fs in l3_f[i]]
        l1_geom = shapely.coverage_union_all(np.array(l2_geoms, dtype=object))
        grids.append(Grid(code1, 1, STREETS[n1_i - 1], _single(l1_geom, code1), None))
        c2 = np.array([g.centroid.coords[0] for g in l2_geoms])
        for n2_i, j in enumerate(reading_order(c2), start=1):
            code2 = child_code(code1, n2_i)
            name2 = f"{next(community)}社区"
            grids.append(Grid(code2, 2, name2, _single(l2_geoms[j], code2), code1))
            c3 = np.array([f.centroid.coords[0] for f in l3_f[i][j]])
            for n3_i, k in enumerate(reading_order(c3), start=1):
                code3 = child_code(code2, n3_i)
                grids.append(Grid(code3, 3, f"{name2}第{n3_i}网格", l3_f[i][j][k], code2))
    grids.sort(key=lambda g: (g.level, g.code))
    return grids


def _single(geom: BaseGeometry, code: str) -> Polygon:
    """Return geom as a Polygon (the union of a grid's children must be one piece)."""
    geom = shapely.normalize(geom)
    if not isinstance(geom, Polygon):
        raise RuntimeError(f"grid {code}: union of its children is a {geom.geom_type}")
    return geom


def build_sample_district(seed: int = 7) -> District:
    """Build the reproducible sample district: grids, buildings, patrollers and devices."""
    rng = np.random.default_rng([seed, 1])
    grids = build_grids(seed)
    l3 = [g for g in grids if g.level == 3]
    buildings = place_buildings(l3, rng)
    devices = place_devices(l3, buildings, rng)
    patrollers = build_patrollers(l3, buildings, rng)
    logger.info(
        "sample district: %d grids, %d buildings, %d patrollers, %d devices",
        len(grids),
        len(buildings),
        len(patrollers),
        len(devices),
    )
    return District(
        name="示范区",
        grids=tuple(grids),
        buildings=tuple(buildings),
        patrollers=tuple(patrollers),
        devices=tuple(devices),
    )
