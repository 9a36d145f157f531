"""Which level-3 grids are neighbours: they share an edge, not just a corner.

Two grids are neighbours when the length of border they share is more than `min_edge`. A corner
contact shares no length, so it never counts. Fast for 100k grids of 64 vertices (a few seconds):

1. Exact pass (numpy): every ring segment is snapped to a lattice of `tolerance` and keyed by its
   two endpoints; a segment key held by two grids is a piece of shared border. In a validated grid
   version (shared edges drawn from the same coordinates) this finds every neighbour.
2. Fuzzy pass (STRtree): the segments left unmatched — the district's outline, plus any T-junction
   (a vertex of one grid in the middle of its neighbour's segment), hairline gap or sliver overlap
   below `tolerance` — are indexed in an STRtree; pairs of nearly collinear segments of two grids
   within `tolerance` add the length over which they run together.

Units are the grids' coordinates (WGS84 degrees: 1e-7° ≈ 1 cm, 1e-5° ≈ 1 m).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import shapely

from geo.model import Grid

logger = logging.getLogger(__name__)

TOLERANCE = 1e-7  # the coordinate lattice of stored grids (geo.localframe.PRECISION)
MIN_EDGE = 1e-5  # about a metre: a shared border shorter than this is a corner, not an edge
_MULTIPLIERS = tuple(np.uint64(m) for m in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0xD6E8FEB86659FD93))


def _segments(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ring segments: start points (n, 2), end points (n, 2) and the owning geometry's index."""
    parts, part_owner = shapely.get_parts(geoms, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    coords, ring_of = shapely.get_coordinates(rings, return_index=True)
    same = ring_of[:-1] == ring_of[1:]
    start, end = coords[:-1][same], coords[1:][same]
    owner = part_owner[ring_part[ring_of[:-1][same]]]
    return start, end, owner


def _vertex_hash(q: np.ndarray) -> np.ndarray:
    """A 64-bit hash of snapped integer vertices (n, 2)."""
    u = q.view(np.uint64)
    with np.errstate(over="ignore"):
        return ((u[:, 0] * _MULTIPLIERS[0]) ^ u[:, 1]) * _MULTIPLIERS[1]


def _shared_exact(
    start: np.ndarray, end: np.ndarray, owner: np.ndarray, tolerance: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Segments held by two grids (same snapped endpoints): (grid a, grid b, length), and the unmatched mask.

    One sort on a 64-bit hash of the segment; equal neighbours in that order are checked on the
    snapped coordinates, so a hash collision can only leave a segment unmatched (the fuzzy pass
    then measures it), never pair two different segments.
    """
    step = tolerance if tolerance > 0 else 1e-12
    qs = np.rint(start / step).astype(np.int64)
    qe = np.rint(end / step).astype(np.int64)
    hs, he = _vertex_hash(qs), _vertex_hash(qe)
    real = (qs != qe).any(axis=1)  # drop segments that snap to a point
    with np.errstate(over="ignore"):
        h = (np.minimum(hs, he) * _MULTIPLIERS[2]) ^ np.maximum(hs, he)
    order = np.argsort(h)
    hit = np.flatnonzero(h[order[1:]] == h[order[:-1]])
    i, j = order[hit], order[hit + 1]
    same = ((qs[i] == qs[j]) & (qe[i] == qe[j])).all(axis=1) | ((qs[i] == qe[j]) & (qe[i] == qs[j])).all(axis=1)
    ok = same & real[i] & (owner[i] != owner[j])
    i, j = i[ok], j[ok]
    matched = np.zeros(len(start), dtype=bool)
    matched[i] = True
    matched[j] = True
    length = np.hypot(*(end[i] - start[i]).T)
    return owner[i], owner[j], length, real & ~matched


def _shared_fuzzy(
    start: np.ndarray, end: np.ndarray, owner: np.ndarray, tolerance: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearly collinear segments of two grids within `tolerance`: (grid a, grid b, overlap length)."""
    if len(start) < 2:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    lines = shapely.linestrings(np.stack([start, end], axis=1))
    tree = shapely.STRtree(lines)
    i, j = tree.query(lines, predicate="dwithin", distance=2 * tolerance)  # 2×: float slack
    keep = (i < j) & (owner[i] != owner[j])
    i, j = i[keep], j[keep]
    p0, p1, q0, q1 = start[i], end[i], start[j], end[j]
    d = p1 - p0
    seg = np.hypot(d[:, 0], d[:, 1])
    u = d / seg[:, None]
    a0 = ((q0 - p0) * u).sum(axis=1)
    a1 = ((q1 - p0) * u).sum(axis=1)
    lo = np.clip(np.minimum(a0, a1), 0.0, seg)
    hi = np.clip(np.maximum(a0, a1), 0.0, seg)
    # the overlap's two ends on segment i must lie within tolerance of segment j
    slack = 2 * tolerance + 1e-12
    x_lo = p0 + u * lo[:, None]
    x_hi = p0 + u * hi[:, None]
    near = (_point_segment_distance(x_lo, q0, q1) <= slack) & (_point_segment_distance(x_hi, q0, q1) <= slack)
    overlap = np.where(near, hi - lo, 0.0)
    keep = overlap > 0
    return owner[i][keep], owner[j][keep], overlap[keep]


def _point_segment_distance(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from points x to segments a-b (row-wise)."""
    ab = b - a
    len2 = (ab * ab).sum(axis=1)
    t = np.where(len2 > 0, ((x - a) * ab).sum(axis=1) / np.where(len2 > 0, len2, 1.0), 0.0)
    t = np.clip(t, 0.0, 1.0)
    closest = a + ab * t[:, None]
    return np.hypot(*(x - closest).T)


def grid_neighbours(
    grids: Sequence[Grid], *, tolerance: float = TOLERANCE, min_edge: float = MIN_EDGE
) -> dict[str, tuple[str, ...]]:
    """Map every level-3 grid's code to the codes of the level-3 grids sharing an edge with it.

    Other levels in `grids` are ignored. Every level-3 code is a key (an isolated grid maps to ());
    the neighbour codes are sorted, and the relation is symmetric.
    """
    l3 = sorted((g for g in grids if g.level == 3), key=lambda g: g.code)
    codes = [g.code for g in l3]
    if len(l3) < 2:
        return {c: () for c in codes}
    geoms = np.array([g.geometry for g in l3], dtype=object)
    start, end, owner = _segments(geoms)
    ea, eb, elen, unmatched = _shared_exact(start, end, owner, tolerance)
    fa, fb, flen = _shared_fuzzy(start[unmatched], end[unmatched], owner[unmatched], tolerance)
    a = np.concatenate([ea, fa])
    b = np.concatenate([eb, fb])
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    pair = lo.astype(np.int64) * len(l3) + hi
    uniq, inverse = np.unique(pair, return_inverse=True)
    shared = np.bincount(inverse, weights=np.concatenate([elen, flen]), minlength=len(uniq))
    edges = uniq[shared > min_edge]
    out: dict[str, list[str]] = {c: [] for c in codes}
    for i, j in zip((edges // len(l3)).tolist(), (edges % len(l3)).tolist(), strict=True):
        out[codes[i]].append(codes[j])
        out[codes[j]].append(codes[i])
    logger.debug(
        "grid adjacency: %d level-3 grids, %d segments (%d unmatched), %d edges",
        len(codes),
        len(start),
        int(unmatched.sum()),
        len(edges),
    )
    return {c: tuple(sorted(n)) for c, n in out.items()}
