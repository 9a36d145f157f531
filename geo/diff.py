"""What a draft grid version changes against the current one (design §1 "planners", §4 `…/diff`).

Pure logic, no I/O. Geometries are WGS84 lon/lat; overlays run in lon/lat (where neighbours share their
edges exactly) and their results are measured in square metres in a Lambert azimuthal equal-area
frame centred on the data (pyproj), applied to whole geometry arrays at once with `shapely.transform`
(edges densified to about 100 m first, so an extra collinear vertex never shows as a sliver). Overlays
run only where needed: grids whose code and geometry are unchanged are recognised with a cheap
exact comparison and skip every overlay.

- `successors(old, new)`: which new level-3 grids take over each old one (split, merge, same).
- `diff_versions(old, new, …)`: added / removed / reshaped grids and the buildings, devices,
  patroller assignments and open incidents whose grid changes, as a `GridDiff`.
- `changed_geometries(old, new)`: the grids to draw on a planner's diff map.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyproj
import shapely
from shapely.geometry.base import BaseGeometry

from geo.model import Building, Device, Grid, Patroller

logger = logging.getLogger(__name__)

#: Overlaps smaller than this (m²) are noise of shared edges, not a real overlap.
MIN_OVERLAP_M2 = 1e-3
#: Share of a new grid's area an old grid must cover for the new grid to be its successor.
TAKEOVER_SHARE = 0.5
#: Longest edge (degrees, about 100 m) measured as straight in the equal-area frame.
SEGMENT_DEG = 1e-3
#: Rows per list in `GridDiff.table()`.
TABLE_ROWS = 20


# --------------------------------------------------------------------------- equal-area frame

_A = 6_378_137.0  # WGS84
_E2 = 6.69437999014e-3


def _m2_per_deg2(lat_rad: np.ndarray) -> np.ndarray:
    """Square metres per square degree of lon/lat on the WGS84 ellipsoid at a latitude."""
    w = 1.0 - _E2 * np.sin(lat_rad) ** 2
    meridional = _A * (1.0 - _E2) / w**1.5
    normal = _A / np.sqrt(w)
    return meridional * normal * np.cos(lat_rad) * (np.pi / 180.0) ** 2


def _m_per_deg(lat_rad: np.ndarray) -> np.ndarray:
    """Metres per degree along the longer (meridian) direction at a latitude: a length upper bound."""
    w = 1.0 - _E2 * np.sin(lat_rad) ** 2
    return np.maximum(_A * (1.0 - _E2) / w**1.5, _A / np.sqrt(w)) * np.pi / 180.0



class EqualAreaFrame:
    """A Lambert azimuthal equal-area projection centred on a lon/lat bounding box."""

    def __init__(self, bounds: tuple[float, float, float, float]) -> None:
        """Centre the frame on `bounds` = (min lon, min lat, max lon, max lat)."""
        minx, miny, maxx, maxy = bounds
        if not all(np.isfinite(bounds)):
            raise ValueError(f"bounds {bounds}: expected finite lon/lat bounds (empty input?)")
        self.lon_0 = (minx + maxx) / 2.0
        self.lat_0 = (miny + maxy) / 2.0
        crs = pyproj.CRS.from_dict(
            {"proj": "laea", "lat_0": self.lat_0, "lon_0": self.lon_0, "datum": "WGS84", "units": "m"}
        )
        self._fwd = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)

    @classmethod
    def around(cls, *geometry_arrays: Iterable[BaseGeometry]) -> EqualAreaFrame:
        """Build the frame centred on the total bounds of all the given geometries."""
        parts = [np.asarray(list(a), dtype=object) for a in geometry_arrays]
        parts = [p for p in parts if len(p)]
        if not parts:
            raise ValueError("geometries: expected at least one geometry to centre the frame on")
        return cls(tuple(shapely.total_bounds(np.concatenate(parts)).tolist()))  # type: ignore[arg-type]

    def _xy(self, coords: np.ndarray) -> np.ndarray:
        """Project an (N, 2) lon/lat coordinate array to metres."""
        x, y = self._fwd.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    def project(self, geoms: np.ndarray) -> np.ndarray:
        """Project an array of lon/lat geometries to the frame (one vectorized call)."""
        geoms = np.asarray(geoms, dtype=object)
        if geoms.size == 0:
            return geoms
        return np.asarray(shapely.transform(geoms, self._xy), dtype=object)

    @staticmethod
    def approx_areas(geoms: np.ndarray) -> np.ndarray:
        """Return areas (m²) from lon/lat areas scaled at each geometry's mid latitude (no projection).

        Good to a fraction of a per mille for grid-sized shapes: used to rank and threshold, while
        reported areas come from `areas`.
        """
        geoms = np.asarray(geoms, dtype=object)
        if geoms.size == 0:
            return np.zeros(0)
        b = shapely.bounds(geoms)
        lat = np.radians(np.nan_to_num((b[:, 1] + b[:, 3]) / 2.0))
        return np.asarray(shapely.area(geoms), dtype=float) * _m2_per_deg2(lat)

    def areas(self, geoms: np.ndarray) -> np.ndarray:
        """Return the areas (m²) of an array of lon/lat geometries.

        Edges are first cut to SEGMENT_DEG in lon/lat, so a straight lon/lat edge stays (almost)
        straight after projection: an extra collinear vertex then changes no area (it would show as
        a sliver of a few m² on a 1 km edge), and the areas of parts add up to the whole's.
        """
        geoms = np.asarray(geoms, dtype=object)
        if geoms.size == 0:
            return np.zeros(0)
        return np.asarray(shapely.area(self.project(shapely.segmentize(geoms, SEGMENT_DEG))), dtype=float)


# --------------------------------------------------------------------------- result types


@dataclass(frozen=True, slots=True)
class IncidentPoint:
    """An open incident to re-attribute: its position and its current level-3 grid."""

    id: str
    lon: float
    lat: float
    l3: str | None


@dataclass(frozen=True, slots=True)
class GridArea:
    """An added or removed grid."""

    code: str
    level: int
    area_m2: float

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form."""
        return {"code": self.code, "level": self.level, "area_m2": round(self.area_m2, 2)}


@dataclass(frozen=True, slots=True)
class Reshape:
    """A grid whose code is kept but whose outline changed by more than the tolerance."""

    code: str
    level: int
    old_area_m2: float
    new_area_m2: float
    delta_m2: float  # new − old
    changed_m2: float  # area of the symmetric difference

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form."""
        return {
            "code": self.code,
            "level": self.level,
            "old_area_m2": round(self.old_area_m2, 2),
            "new_area_m2": round(self.new_area_m2, 2),
            "delta_m2": round(self.delta_m2, 2),
            "changed_m2": round(self.changed_m2, 2),
        }


@dataclass(frozen=True, slots=True)
class Move:
    """A building, device or incident whose level-3 grid changes (None: no grid)."""

    id: str
    from_code: str | None
    to_code: str | None


@dataclass(frozen=True, slots=True)
class AssignmentMove:
    """A patroller whose assigned level-3 grids change."""

    id: str
    from_codes: tuple[str, ...]
    to_codes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Moves:
    """Everything that changes grid, by kind."""

    buildings: tuple[Move, ...] = ()
    devices: tuple[Move, ...] = ()
    patrollers: tuple[AssignmentMove, ...] = ()
    incidents: tuple[Move, ...] = ()

    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        """Return the JSON-ready form (buildings are keyed by "code", the others by "id")."""
        return {
            "buildings": [{"code": m.id, "from": m.from_code, "to": m.to_code} for m in self.buildings],
            "devices": [{"id": m.id, "from": m.from_code, "to": m.to_code} for m in self.devices],
            "patrollers": [
                {"id": m.id, "from": list(m.from_codes), "to": list(m.to_codes)} for m in self.patrollers
            ],
            "incidents": [{"id": m.id, "from": m.from_code, "to": m.to_code} for m in self.incidents],
        }


@dataclass(frozen=True)
class GridDiff:
    """What a draft grid version changes against the current one."""

    added: tuple[GridArea, ...]
    removed: tuple[GridArea, ...]
    reshaped: tuple[Reshape, ...]
    unchanged: int
    moves: Moves = field(default_factory=Moves)
    successors: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        """Tell whether the draft changes nothing (no grid and nothing located changes)."""
        m = self.moves
        return not (
            self.added or self.removed or self.reshaped or m.buildings or m.devices or m.patrollers
            or m.incidents
        )

    def summary(self) -> dict[str, int]:
        """Return the counts of every list."""
        m = self.moves
        return {
            "added": len(self.added),
            "removed": len(self.removed),
            "reshaped": len(self.reshaped),
            "unchanged": self.unchanged,
            "buildings_moved": len(m.buildings),
            "devices_moved": len(m.devices),
            "patrollers_moved": len(m.patrollers),
            "incidents_moved": len(m.incidents),
        }

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form (the shape of `GET /grid-versions/{id}/diff`)."""
        return {
            "added": [a.to_dict() for a in self.added],
            "removed": [r.to_dict() for r in self.removed],
            "reshaped": [r.to_dict() for r in self.reshaped],
            "unchanged": self.unchanged,
            "moves": self.moves.to_dict(),
            "successors": {k: list(v) for k, v in self.successors.items()},
            "summary": self.summary(),
        }

    def table(self, rows: int = TABLE_ROWS) -> str:
        """Return a plain-text report for the CLI: the summary, then each list (at most `rows` each)."""
        s = self.summary()
        lines = [
            f"grids: {s['added']} added, {s['removed']} removed, {s['reshaped']} reshaped, "
            f"{s['unchanged']} unchanged",
            f"moves: {s['buildings_moved']} buildings, {s['devices_moved']} devices, "
            f"{s['patrollers_moved']} patrollers, {s['incidents_moved']} open incidents",
        ]
        m = self.moves
        sections: list[tuple[str, list[str]]] = [
            ("added", [f"  + {a.code}  L{a.level}  {a.area_m2:,.0f} m2" for a in self.added]),
            ("removed", [f"  - {r.code}  L{r.level}  {r.area_m2:,.0f} m2" for r in self.removed]),
            (
                "reshaped",
                [
                    f"  ~ {r.code}  L{r.level}  {r.old_area_m2:,.0f} -> {r.new_area_m2:,.0f} m2 "
                    f"(delta {r.delta_m2:+,.0f}, changed {r.changed_m2:,.0f})"
                    for r in self.reshaped
                ],
            ),
            ("buildings", [_move_line(x) for x in m.buildings]),
            ("devices", [_move_line(x) for x in m.devices]),
            (
                "patrollers",
                [f"  {p.id}: {', '.join(p.from_codes)} -> {', '.join(p.to_codes) or '-'}"
                 for p in m.patrollers],
            ),
            ("open incidents", [_move_line(x) for x in m.incidents]),
        ]
        for title, items in sections:
            if items:
                lines.append(f"{title}:")
                lines.extend(_truncated(items, rows))
        return "\n".join(lines)


def _move_line(m: Move) -> str:
    """Format one move for the table."""
    return f"  {m.id}: {m.from_code or '-'} -> {m.to_code or '-'}"


def _truncated(items: list[str], rows: int) -> list[str]:
    """Keep the first `rows` lines and say how many were left off."""
    if len(items) <= rows:
        return items
    return [*items[:rows], f"  … and {len(items) - rows} more"]


# --------------------------------------------------------------------------- grid sets


@dataclass(frozen=True)
class _GridSet:
    """Grids sorted by code, as arrays."""

    grids: list[Grid]
    codes: np.ndarray
    geoms: np.ndarray
    levels: np.ndarray

    @classmethod
    def of(cls, grids: Sequence[Grid], what: str, level: int | None = None) -> _GridSet:
        """Sort `grids` (optionally of one level) by code, ready for overlays.

        A draft may be invalid (the validation report lists its faults) and is still diffed: of
        duplicate codes the first grid is kept, and invalid geometries are repaired with
        `shapely.make_valid` for the overlays (a warning is logged for both).
        """
        chosen = sorted((g for g in grids if level is None or g.level == level), key=lambda g: g.code)
        unique = [g for i, g in enumerate(chosen) if i == 0 or g.code != chosen[i - 1].code]
        if len(unique) != len(chosen):
            dups = sorted({g.code for i, g in enumerate(chosen) if i and g.code == chosen[i - 1].code})
            logger.warning("%s grids: duplicate codes %s: the first grid of each is diffed", what, dups[:10])
        geoms = np.empty(len(unique), dtype=object)
        geoms[:] = [g.geometry for g in unique]
        invalid = np.flatnonzero(~shapely.is_valid(geoms) & ~shapely.is_missing(geoms))
        if len(invalid):
            logger.warning(
                "%s grids: invalid geometry in %s: repaired for the diff",
                what,
                [unique[i].code for i in invalid[:10].tolist()],
            )
            geoms[invalid] = shapely.make_valid(geoms[invalid])
        codes = np.array([g.code for g in unique], dtype=str)
        return cls(unique, codes, geoms, np.array([g.level for g in unique], dtype=int))

    def level(self, level: int) -> _GridSet:
        """Return the grids of one level (still sorted by code)."""
        idx = np.flatnonzero(self.levels == level)
        grids = [self.grids[i] for i in idx.tolist()]
        return _GridSet(grids, self.codes[idx], self.geoms[idx], self.levels[idx])

    def __len__(self) -> int:
        """Return the number of grids."""
        return len(self.grids)


def _common(old: _GridSet, new: _GridSet) -> tuple[np.ndarray, np.ndarray]:
    """Return the indices (into old, into new) of the codes present on both sides."""
    _, io, jn = np.intersect1d(old.codes, new.codes, assume_unique=True, return_indices=True)
    return io, jn


def _changed_m2(
    old_g: np.ndarray, new_g: np.ndarray, frame: EqualAreaFrame, tolerance_m2: float
) -> np.ndarray:
    """Return, per pair, the symmetric-difference area (m²), exact wherever it may exceed the tolerance.

    Pairs skip the overlay when their coordinates are equal, or all within a distance d small
    enough that the symmetric difference (inside the d-buffer of the boundary: ≤ 2·d·perimeter +
    n·π·d²) stays under half the tolerance; those report 0.
    """
    out = np.zeros(len(old_g))
    if len(old_g) == 0:
        return out
    todo = np.flatnonzero(~shapely.equals_exact(old_g, new_g, tolerance=0.0))
    if len(todo) == 0 or tolerance_m2 <= 0:
        return _measure_sym(old_g, new_g, todo, frame, tolerance_m2, out)
    b = shapely.bounds(old_g[todo])
    m_per_deg = _m_per_deg(np.radians((b[:, 1] + b[:, 3]) / 2.0))
    perimeter_m = shapely.length(old_g[todo]) * m_per_deg
    vertices = shapely.get_num_coordinates(old_g[todo])
    # 2·d·P + n·π·d² ≤ tol/2  ⇐  d = tol / (4·P + 2·n·π·sqrt(tol)) (for d ≤ sqrt(tol))
    d_m = tolerance_m2 / (4.0 * perimeter_m + 2.0 * vertices * np.pi * np.sqrt(tolerance_m2))
    near = shapely.equals_exact(old_g[todo], new_g[todo], tolerance=d_m / m_per_deg)
    return _measure_sym(old_g, new_g, todo[~near], frame, tolerance_m2, out)


def _measure_sym(
    old_g: np.ndarray,
    new_g: np.ndarray,
    idx: np.ndarray,
    frame: EqualAreaFrame,
    tolerance_m2: float,
    out: np.ndarray,
) -> np.ndarray:
    """Fill out[idx] with symmetric-difference areas: approximate, exact where near or over the tolerance."""
    if len(idx) == 0:
        return out
    sym = shapely.symmetric_difference(old_g[idx], new_g[idx])
    approx = frame.approx_areas(sym)
    out[idx] = approx
    exact = approx > 0.5 * tolerance_m2
    out[idx[exact]] = frame.areas(sym[exact])
    return out


# --------------------------------------------------------------------------- successors


def _successor_map(
    old: _GridSet, new: _GridSet, frame: EqualAreaFrame, same: np.ndarray
) -> dict[str, tuple[str, ...]]:
    """Map each old grid to its successors; `same[i]` marks old grids kept as they are."""
    result: dict[str, tuple[str, ...]] = {c: (c,) for c in old.codes[same].tolist()}
    todo = np.flatnonzero(~same)
    if len(todo) == 0:
        return result
    pairs = shapely.STRtree(new.geoms).query(old.geoms[todo], predicate="intersects") if len(new) else None
    if pairs is None or pairs.shape[1] == 0:
        result.update({c: () for c in old.codes[todo].tolist()})
        return _in_code_order(result, old)
    oi, ni = todo[pairs[0]], pairs[1]
    un, inv_n = np.unique(ni, return_inverse=True)
    new_area = frame.approx_areas(new.geoms[un])[inv_n]
    overlap = _relevant_overlaps(old.geoms, new.geoms, oi, ni, new_area, frame)
    real = overlap > MIN_OVERLAP_M2
    oi, ni, overlap, new_area = oi[real], ni[real], overlap[real], new_area[real]

    takes_over = overlap >= TAKEOVER_SHARE * new_area
    has_takeover = np.zeros(len(old), dtype=bool)
    has_takeover[oi[takes_over]] = True
    # the largest overlap per old grid (sorted by old index, overlap descending, then code)
    order = np.lexsort((ni, -overlap, oi))
    first = np.ones(len(order), dtype=bool)
    first[1:] = oi[order][1:] != oi[order][:-1]
    largest = np.zeros(len(oi), dtype=bool)
    largest[order[first]] = True
    chosen = takes_over | (largest & ~has_takeover[oi])

    result.update({c: () for c in old.codes[todo].tolist()})
    grouped: dict[int, list[int]] = {}
    for o, n in zip(oi[chosen].tolist(), ni[chosen].tolist(), strict=True):
        grouped.setdefault(o, []).append(n)
    new_codes = new.codes.tolist()
    for o, ns in grouped.items():
        result[str(old.codes[o])] = tuple(new_codes[n] for n in sorted(ns))
    return _in_code_order(result, old)


def _bbox_overlap_m2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Upper bound (m², with 1 % slack) of each pair's overlap area: the overlap of their bounding boxes."""
    ba, bb = shapely.bounds(a), shapely.bounds(b)
    w = np.clip(np.minimum(ba[:, 2], bb[:, 2]) - np.maximum(ba[:, 0], bb[:, 0]), 0.0, None)
    h = np.clip(np.minimum(ba[:, 3], bb[:, 3]) - np.maximum(ba[:, 1], bb[:, 1]), 0.0, None)
    lat = np.radians((np.maximum(ba[:, 1], bb[:, 1]) + np.minimum(ba[:, 3], bb[:, 3])) / 2.0)
    return 1.01 * w * h * _m2_per_deg2(lat)


def _relevant_overlaps(
    old_g: np.ndarray,
    new_g: np.ndarray,
    oi: np.ndarray,
    ni: np.ndarray,
    new_area: np.ndarray,
    frame: EqualAreaFrame,
) -> np.ndarray:
    """Return the overlap area (m²) of each candidate pair that can matter, 0 for the others.

    A pair matters when it may reach the takeover share or may be its old grid's largest overlap.
    Bounding-box overlaps bound the true ones from above, so only the few pairs whose bound can
    still win are overlaid (most neighbours of a redrawn grid are pruned).
    """
    bound = _bbox_overlap_m2(old_g[oi], new_g[ni])
    overlap = np.zeros(len(oi))
    done = np.zeros(len(oi), dtype=bool)

    def measure(mask: np.ndarray) -> None:
        idx = np.flatnonzero(mask & ~done)
        overlap[idx] = frame.approx_areas(shapely.intersection(old_g[oi[idx]], new_g[ni[idx]]))
        done[idx] = True

    # possible takeovers, and each old grid's pair with the largest bound
    top_bound = np.zeros(oi.max() + 1)
    np.maximum.at(top_bound, oi, bound)
    measure((bound >= TAKEOVER_SHARE * new_area) | (bound == top_bound[oi]))
    # any pair whose bound still beats its old grid's best measured overlap
    best = np.zeros(oi.max() + 1)
    np.maximum.at(best, oi, overlap)
    measure(bound > best[oi])
    return overlap


def _in_code_order(result: dict[str, tuple[str, ...]], old: _GridSet) -> dict[str, tuple[str, ...]]:
    """Return the successor map ordered by old code."""
    return {c: result[c] for c in old.codes.tolist()}


def successors(old: Sequence[Grid], new: Sequence[Grid], *, level: int = 3) -> dict[str, tuple[str, ...]]:
    """For each old grid of `level`, the new grids of that level that take it over.

    A new grid g takes over an old grid o when area(o ∩ g) ≥ 50 % of area(g): a split old grid
    maps to all its parts. If no new grid qualifies, o maps to the new grid it overlaps most (a
    merge: the absorbed grid maps to the merged one). No overlap at all → (). A grid kept with the
    same code and the same geometry maps to itself. Successors are listed in code order.
    """
    o, n = _GridSet.of(old, "old", level), _GridSet.of(new, "new", level)
    if len(o) == 0:
        return {}
    io, jn = _common(o, n)
    same = np.zeros(len(o), dtype=bool)
    same[io] = shapely.equals_exact(o.geoms[io], n.geoms[jn], tolerance=0.0)
    frame = EqualAreaFrame.around(o.geoms, n.geoms)
    return _successor_map(o, n, frame, same)


# --------------------------------------------------------------------------- locating things


def _locate_points(l3: _GridSet, xs: np.ndarray, ys: np.ndarray, tree: shapely.STRtree) -> np.ndarray:
    """Return, per point, the index of the level-3 grid holding it (-1: none).

    Like geo.index.GridIndex, a grid holds its boundary and a point on a shared edge goes to the
    grid with the lowest code (the grid set is sorted by code, so the lowest index).
    """
    out = np.full(len(xs), -1, dtype=np.int64)
    if len(xs) == 0 or len(l3) == 0:
        return out
    pts = shapely.points(np.asarray(xs, dtype=float), np.asarray(ys, dtype=float))
    pi, gi = tree.query(pts, predicate="intersects")
    best = np.full(len(xs), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(best, pi, gi)
    hit = best != np.iinfo(np.int64).max
    out[hit] = best[hit]
    return out


def _locate_footprints(l3: _GridSet, footprints: np.ndarray, tree: shapely.STRtree) -> np.ndarray:
    """Return, per footprint, the index of the level-3 grid it overlaps most (-1: none).

    Footprints inside one grid are settled by a `covered_by` test; only footprints that straddle
    grids are overlaid. Overlap areas are compared in lon/lat (a footprint is far too small for the
    projection's scale to vary across it).
    """
    out = np.full(len(footprints), -1, dtype=np.int64)
    if len(footprints) == 0 or len(l3) == 0:
        return out
    bi, gi = tree.query(footprints, predicate="intersects")
    if len(bi) == 0:
        return out
    inside = shapely.covered_by(footprints[bi], l3.geoms[gi])
    out[bi[inside]] = gi[inside]
    rest = np.isin(bi, np.unique(bi[inside]), invert=True)
    bi, gi = bi[rest], gi[rest]
    if len(bi):
        overlap = shapely.area(shapely.intersection(footprints[bi], l3.geoms[gi]))
        keep = overlap > 0.0
        bi, gi, overlap = bi[keep], gi[keep], overlap[keep]
        order = np.lexsort((gi, -overlap, bi))  # per footprint: largest overlap, then lowest code
        first = np.ones(len(order), dtype=bool)
        first[1:] = bi[order][1:] != bi[order][:-1]
        out[bi[order[first]]] = gi[order[first]]
    return out


def _code_or_none(codes: np.ndarray, idx: np.ndarray) -> list[str | None]:
    """Turn grid indices (-1: none) into codes or None."""
    cl = codes.tolist()
    return [cl[i] if i >= 0 else None for i in idx.tolist()]


def _moves(ids: Sequence[str], before: Sequence[str | None], after: Sequence[str | None]) -> tuple[Move, ...]:
    """Return the moves of the items whose grid differs before and after."""
    return tuple(Move(i, b, a) for i, b, a in zip(ids, before, after, strict=True) if b != a)


def _building_moves(buildings: Sequence[Building], l3: _GridSet, tree: shapely.STRtree) -> tuple[Move, ...]:
    """Buildings whose new holder (largest overlap) differs from `Building.grid_code`."""
    geoms = np.empty(len(buildings), dtype=object)
    geoms[:] = [b.geometry for b in buildings]
    to = _code_or_none(l3.codes, _locate_footprints(l3, geoms, tree))
    return _moves([b.code for b in buildings], [b.grid_code for b in buildings], to)


def _device_moves(devices: Sequence[Device], l3: _GridSet, tree: shapely.STRtree) -> tuple[Move, ...]:
    """Devices whose new holder of `Device.anchor()` differs from `Device.grid_code`."""
    xy = np.array([d.anchor().coords[0][:2] for d in devices], dtype=float).reshape(-1, 2)
    to = _code_or_none(l3.codes, _locate_points(l3, xy[:, 0], xy[:, 1], tree))
    return _moves([d.id for d in devices], [d.grid_code for d in devices], to)


def _incident_moves(
    incidents: Sequence[IncidentPoint], l3: _GridSet, tree: shapely.STRtree
) -> tuple[Move, ...]:
    """Open incidents whose new holder differs from `IncidentPoint.l3`."""
    xs = np.array([i.lon for i in incidents], dtype=float)
    ys = np.array([i.lat for i in incidents], dtype=float)
    to = _code_or_none(l3.codes, _locate_points(l3, xs, ys, tree))
    return _moves([i.id for i in incidents], [i.l3 for i in incidents], to)


def reassign(codes: Sequence[str], succ: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """Map assigned grid codes through a successor map: order kept, duplicates removed.

    Codes the map does not know (not an old grid) are kept as they are.
    """
    out: dict[str, None] = {}
    for c in codes:
        for n in succ.get(c, (c,)):
            out.setdefault(n, None)
    return tuple(out)


def _patroller_moves(
    patrollers: Sequence[Patroller], succ: dict[str, tuple[str, ...]]
) -> tuple[AssignmentMove, ...]:
    """Patrollers whose assigned level-3 grids change under the successor map."""
    out = []
    for p in patrollers:
        to = reassign(p.grid_codes, succ)
        if to != tuple(p.grid_codes):
            out.append(AssignmentMove(p.id, tuple(p.grid_codes), to))
    return tuple(out)


# --------------------------------------------------------------------------- the diff


def _grid_lists(
    o: _GridSet, n: _GridSet, frame: EqualAreaFrame, tolerance_m2: float
) -> tuple[tuple[GridArea, ...], tuple[GridArea, ...], tuple[Reshape, ...], set[str]]:
    """Return added, removed, reshaped grids and the set of unchanged codes."""
    io, jn = _common(o, n)
    gone = np.setdiff1d(np.arange(len(o)), io)
    new = np.setdiff1d(np.arange(len(n)), jn)
    removed = tuple(
        GridArea(str(o.codes[i]), int(o.levels[i]), float(a))
        for i, a in zip(gone.tolist(), frame.areas(o.geoms[gone]).tolist(), strict=True)
    )
    added = tuple(
        GridArea(str(n.codes[j]), int(n.levels[j]), float(a))
        for j, a in zip(new.tolist(), frame.areas(n.geoms[new]).tolist(), strict=True)
    )
    changed = _changed_m2(o.geoms[io], n.geoms[jn], frame, tolerance_m2)
    re = changed > tolerance_m2
    ri, rj = io[re], jn[re]
    old_a, new_a = frame.areas(o.geoms[ri]), frame.areas(n.geoms[rj])
    reshaped = tuple(
        Reshape(str(o.codes[i]), int(o.levels[i]), float(a), float(b), float(b - a), float(c))
        for i, a, b, c in zip(ri.tolist(), old_a.tolist(), new_a.tolist(), changed[re].tolist(), strict=True)
    )
    return added, removed, reshaped, set(o.codes[io[~re]].tolist())


def diff_versions(
    old: Sequence[Grid],
    new: Sequence[Grid],
    *,
    buildings: Sequence[Building] = (),
    devices: Sequence[Device] = (),
    patrollers: Sequence[Patroller] = (),
    open_incidents: Sequence[IncidentPoint] = (),
    tolerance_m2: float = 1.0,
) -> GridDiff:
    """Compare a draft grid version `new` with the current version `old`.

    Grids are matched by code at every level: a code only in `new` is added, only in `old` removed;
    a code in both is reshaped when its outlines' symmetric difference exceeds `tolerance_m2`, else
    unchanged. Buildings, devices and open incidents are re-located in the new level-3 grids and
    listed when their grid changes; patroller assignments follow `successors` (an old level-3 grid
    unchanged within the tolerance succeeds itself).
    """
    if tolerance_m2 < 0:
        raise ValueError(f"tolerance_m2 {tolerance_m2}: expected ≥ 0")
    o, n = _GridSet.of(old, "old"), _GridSet.of(new, "new")
    if len(o) == 0 and len(n) == 0:
        return GridDiff((), (), (), 0)
    frame = EqualAreaFrame.around(o.geoms, n.geoms)
    added, removed, reshaped, unchanged = _grid_lists(o, n, frame, tolerance_m2)

    o3, n3 = o.level(3), n.level(3)
    same = np.isin(o3.codes, np.array(sorted(unchanged), dtype=str)) if unchanged else np.zeros(len(o3), bool)
    succ = _successor_map(o3, n3, frame, same) if len(o3) else {}
    tree = shapely.STRtree(n3.geoms)
    moves = Moves(
        buildings=_building_moves(buildings, n3, tree) if buildings else (),
        devices=_device_moves(devices, n3, tree) if devices else (),
        patrollers=_patroller_moves(patrollers, succ) if patrollers else (),
        incidents=_incident_moves(open_incidents, n3, tree) if open_incidents else (),
    )
    return GridDiff(added, removed, reshaped, len(unchanged), moves, succ)


def changed_geometries(
    old: Sequence[Grid], new: Sequence[Grid], *, tolerance_m2: float = 1.0
) -> tuple[list[Grid], list[Grid]]:
    """Return the grids a diff map draws: (removed or reshaped old grids, added or reshaped new grids)."""
    o, n = _GridSet.of(old, "old"), _GridSet.of(new, "new")
    if len(o) == 0 or len(n) == 0:
        return list(o.grids), list(n.grids)
    frame = EqualAreaFrame.around(o.geoms, n.geoms)
    io, jn = _common(o, n)
    changed = _changed_m2(o.geoms[io], n.geoms[jn], frame, tolerance_m2) > tolerance_m2
    keep_o = np.ones(len(o), dtype=bool)
    keep_o[io[~changed]] = False
    keep_n = np.ones(len(n), dtype=bool)
    keep_n[jn[~changed]] = False
    return [o.grids[i] for i in np.flatnonzero(keep_o)], [n.grids[j] for j in np.flatnonzero(keep_n)]
