"""A uniform lattice ("cell cover") over a set of polygons that answers point-in-polygon fast and exactly.

Every lattice cell is classified once at build time:

* no polygon boundary comes near the cell: the cell lies entirely inside the same polygons as its
  centre, so it stores that polygon's index directly (or -1 for "inside none") and a point there is
  answered by one array lookup;
* some polygon boundary passes through the cell (a *boundary cell*): the cell stores the short list
  of polygons whose boundary touches it, and a point there is tested exactly (GEOS intersects, so a
  point on an edge counts as inside) against them.

Where several polygons hold a point (a point on a shared edge, or overlapping input), the lowest
polygon index wins, both on the direct and on the exact path, so the answer never depends on the
cell size, on batching or on the order of the tests.

Boundary cells are found conservatively: each ring segment is cut into pieces no longer than a cell
and every cell touched by a piece's bounding box, grown by a small epsilon, is marked. Marking too
many cells only costs exact tests; marking too few cannot happen. The inside status of the other
cells is found per polygon and lattice row: between two cells touched by the polygon's boundary,
the run of untouched cells is all in or all out, so one exact test of one cell centre settles it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely import (
    lib as _lib,  # the ufuncs themselves: the one-point path skips the wrappers
)
from shapely.geometry.base import BaseGeometry

logger = logging.getLogger(__name__)

_NONE = -1  # table value: inside no polygon
_EPS = 1e-6  # cell-relative margin around segment pieces when marking boundary cells


@dataclass(frozen=True, slots=True)
class CoverStats:
    """Size figures of a cell cover (for logs and benchmarks)."""

    polygons: int
    cells: int
    cell_size: float
    boundary_cells: int
    candidates_per_boundary_cell: float
    tests_per_boundary_cell: float


class CellCover:
    """Point → lowest-index polygon covering it, via a lattice with exact tests on boundary cells."""

    def __init__(
        self,
        geoms: np.ndarray,
        *,
        cells_per_polygon: float = 64.0,
        min_cells: int = 1 << 20,
        max_cells: int = 1 << 24,
        cell_size: float | None = None,
    ) -> None:
        """Build the cover over an array of (Multi)Polygons; choose the cell size from the counts."""
        self.geoms = np.asarray(geoms, dtype=object)
        n = len(self.geoms)
        if n == 0:
            raise ValueError("geoms: expected at least one polygon")
        minx, miny, maxx, maxy = (float(v) for v in shapely.total_bounds(self.geoms))
        self.bounds = (minx, miny, maxx, maxy)
        if cell_size is None:
            target = min(max(cells_per_polygon * n, min_cells), max_cells)
            area = max(maxx - minx, 1e-12) * max(maxy - miny, 1e-12)
            cell_size = math.sqrt(area / target)
        self.cell_size = float(cell_size)
        self.inv = 1.0 / self.cell_size
        # one cell of padding on each side, so every boundary piece maps inside the lattice
        self.x0 = minx - self.cell_size
        self.y0 = miny - self.cell_size
        self.nx = int((maxx - self.x0) * self.inv) + 2
        self.ny = int((maxy - self.y0) * self.inv) + 2
        shapely.prepare(self.geoms)
        self._build()
        # GEOS builds a prepared polygon's point locator on its first query; build them all now so
        # that queries only read shared state (the index is shared by threads) and none pays for it
        b = shapely.bounds(self.geoms)
        shapely.intersects_xy(self.geoms, (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2)

    # ----------------------------------------------------------------- build
    def _segments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return all ring segments (interior on their left) as start, end and polygon index."""
        oriented = shapely.orient_polygons(self.geoms, exterior_cw=False)
        parts, part_of = shapely.get_parts(oriented, return_index=True)
        rings, ring_of = shapely.get_rings(parts, return_index=True)
        coords, coord_ring = shapely.get_coordinates(rings, return_index=True)
        same = coord_ring[1:] == coord_ring[:-1]
        p0 = coords[:-1][same]
        p1 = coords[1:][same]
        poly = part_of[ring_of[coord_ring[:-1][same]]]
        return p0, p1, poly

    def _touched(self, p0: np.ndarray, p1: np.ndarray, poly: np.ndarray) -> np.ndarray:
        """Return sorted unique keys polygon * ncells + cell of the cells the segments may touch."""
        if not len(p0):
            return np.empty(0, dtype=np.int64)
        d = p1 - p0
        pieces = np.maximum(1, np.ceil(np.abs(d).max(axis=1) * self.inv)).astype(np.int64)
        if pieces.max() > 1:  # cut long segments into pieces no longer than a cell
            seg = np.repeat(np.arange(len(p0)), pieces)
            j = np.arange(len(seg)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
            k = pieces[seg].astype(float)
            p0, p1 = p0[seg] + d[seg] * (j / k)[:, None], p0[seg] + d[seg] * ((j + 1) / k)[:, None]
            poly = poly[seg]
        eps = _EPS * self.cell_size
        lx = np.floor((np.minimum(p0[:, 0], p1[:, 0]) - eps - self.x0) * self.inv).astype(np.int64)
        hx = np.floor((np.maximum(p0[:, 0], p1[:, 0]) + eps - self.x0) * self.inv).astype(np.int64)
        ly = np.floor((np.minimum(p0[:, 1], p1[:, 1]) - eps - self.y0) * self.inv).astype(np.int64)
        hy = np.floor((np.maximum(p0[:, 1], p1[:, 1]) + eps - self.y0) * self.inv).astype(np.int64)
        ncells = self.nx * self.ny
        base = poly.astype(np.int64) * ncells
        wx = hx - lx + 1
        wy = hy - ly + 1
        count = wx * wy
        one = count == 1  # the common case: a piece inside one cell
        keys = [base[one] + ly[one] * self.nx + lx[one]]
        many = np.flatnonzero(~one)
        if len(many):
            c = count[many]
            rep = np.repeat(many, c)
            within = np.arange(len(rep)) - np.repeat(np.cumsum(c) - c, c)
            keys.append(
                base[rep] + (ly[rep] + within // wx[rep]) * self.nx + lx[rep] + within % wx[rep]
            )
        out = np.concatenate(keys)
        out.sort()
        return out[np.concatenate(([True], out[1:] != out[:-1]))]

    @staticmethod
    def _unmatched(p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
        """Mark segments without an opposite twin (same ends, other direction) in another ring.

        A twinned segment has polygons on both sides, so it is not on the outline of the union.
        Anything unusual (duplicates, T-junctions, hash collisions) counts as unmatched, which
        only switches an optimisation off.
        """
        fwd = (p0[:, 0] < p1[:, 0]) | ((p0[:, 0] == p1[:, 0]) & (p0[:, 1] < p1[:, 1]))
        lo = np.where(fwd[:, None], p0, p1)
        hi = np.where(fwd[:, None], p1, p0)
        bits = np.ascontiguousarray(np.column_stack([lo, hi])).view(np.uint64)
        mix = np.array(
            [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93],
            dtype=np.uint64,
        )
        h = bits[:, 0] * mix[0]
        for k in range(1, 4):
            h = (h ^ (h >> np.uint64(29))) + bits[:, k] * mix[k]
        order = np.argsort(h, kind="stable")
        hs = h[order]
        eq = np.concatenate(([False], hs[1:] == hs[:-1], [False]))
        # pairs: position i starts a group of exactly two
        i = np.flatnonzero(eq[1:-1] & ~eq[:-2] & ~eq[2:])
        a, b = order[i], order[i + 1]
        ok = (bits[a] == bits[b]).all(axis=1) & (fwd[a] != fwd[b])
        unmatched = np.ones(len(p0), dtype=bool)
        unmatched[a[ok]] = False
        unmatched[b[ok]] = False
        return unmatched

    def _build(self) -> None:
        """Classify every cell: direct owner, outside, or boundary with its candidate list."""
        n = len(self.geoms)
        ncells = self.nx * self.ny
        p0, p1, seg_poly = self._segments()
        keys = self._touched(p0, p1, seg_poly)
        t_poly = keys // ncells
        t_cell = keys % ncells
        t_iy = t_cell // self.nx
        t_ix = t_cell % self.nx

        # runs of untouched cells between two touched cells of one polygon in one row
        nxt = slice(1, None)
        cur = slice(None, -1)
        gap = (t_poly[nxt] == t_poly[cur]) & (t_iy[nxt] == t_iy[cur]) & (t_ix[nxt] - t_ix[cur] > 1)
        g = np.flatnonzero(gap)
        g_poly = t_poly[g]
        g_start = t_cell[g] + 1
        g_len = t_ix[g + 1] - t_ix[g] - 1
        cx = self.x0 + (t_ix[g] + 1.5) * self.cell_size
        cy = self.y0 + (t_iy[g] + 0.5) * self.cell_size
        inside = shapely.intersects_xy(self.geoms[g_poly], cx, cy)
        g_poly, g_start, g_len = g_poly[inside], g_start[inside], g_len[inside]
        f_cell = np.repeat(g_start, g_len) + (
            np.arange(int(g_len.sum())) - np.repeat(np.cumsum(g_len) - g_len, g_len)
        )
        f_poly = np.repeat(g_poly, g_len)

        big = np.int64(n)
        owner = np.full(ncells, big, dtype=np.int64)
        np.minimum.at(owner, f_cell, f_poly)

        # boundary cells: candidates below the cell's full owner (which covers the whole cell anyway)
        order = np.lexsort((t_poly, t_cell))
        b_cell = t_cell[order]
        b_poly = t_poly[order]
        default = owner[b_cell]
        keep = b_poly < default
        b_cell, b_poly = b_cell[keep], b_poly[keep]
        cells, start, count = np.unique(b_cell, return_index=True, return_counts=True)

        table = np.where(owner < big, owner, _NONE).astype(np.int32)
        table[cells] = -2 - np.arange(len(cells), dtype=np.int32)
        self.table = table
        self.cand_start = start.astype(np.int64)
        self.cand_count = count.astype(np.int64)
        self.cand_poly = b_poly.astype(np.int64)
        d = owner[cells]
        default = np.where(d < big, d, _NONE).astype(np.int64)

        # cells away from the outline of the union are covered by their candidates: when all but
        # the last candidate miss, the last one holds the point and needs no test
        um = self._unmatched(p0, p1)
        outer = np.unique(self._touched(p0[um], p1[um], np.zeros(int(um.sum()), dtype=np.int64)))
        implied = (default == _NONE) & ~np.isin(cells, outer)
        last = self.cand_poly[self.cand_start + self.cand_count - 1]
        self.cand_test = self.cand_count - implied
        self.cand_fallback = np.where(implied, last, default)
        # plain Python lists for the one-point path (cheaper to index than numpy scalars)
        self._start_l: list[int] = self.cand_start.tolist()
        self._test_l: list[int] = self.cand_test.tolist()
        self._poly_l: list[int] = self.cand_poly.tolist()
        self._fallback_l: list[int] = self.cand_fallback.tolist()
        self._geoms_l: list[BaseGeometry] = self.geoms.tolist()
        logger.debug("cell cover: %s", self.stats())

    # ----------------------------------------------------------------- query
    def stats(self) -> CoverStats:
        """Return size figures of this cover."""
        nb = len(self.cand_start)
        return CoverStats(
            polygons=len(self.geoms),
            cells=self.nx * self.ny,
            cell_size=self.cell_size,
            boundary_cells=nb,
            candidates_per_boundary_cell=float(self.cand_count.mean()) if nb else 0.0,
            tests_per_boundary_cell=float(self.cand_test.mean()) if nb else 0.0,
        )

    def locate(self, x: float, y: float) -> int:
        """Return the lowest index of a polygon covering (x, y), or -1."""
        fx = (x - self.x0) * self.inv
        fy = (y - self.y0) * self.inv
        if not (0.0 <= fx < self.nx and 0.0 <= fy < self.ny):
            return _NONE  # also NaN
        v = int(self.table.item(int(fy) * self.nx + int(fx)))
        if v > -2:
            return v
        b = -2 - v
        s = self._start_l[b]
        for p in self._poly_l[s : s + self._test_l[b]]:
            if _lib.intersects_xy(self._geoms_l[p], x, y):
                return p
        return self._fallback_l[b]

    def locate_many(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Return, per point, the lowest index of a polygon covering it, or -1 (int64 array)."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        fx = (x - self.x0) * self.inv
        fy = (y - self.y0) * self.inv
        ok = (fx >= 0.0) & (fx < self.nx) & (fy >= 0.0) & (fy < self.ny)  # False for NaN
        ix = np.where(ok, fx, 0.0).astype(np.int64)
        iy = np.where(ok, fy, 0.0).astype(np.int64)
        out: np.ndarray = self.table[iy * self.nx + ix].astype(np.int64)
        out[~ok] = _NONE
        bi = np.flatnonzero(out <= -2)
        if len(bi):
            out[bi] = self._exact(bi, -2 - out[bi], x, y)
        return out

    def _exact(self, pts: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Resolve points in boundary cells by exact tests against each cell's candidates."""
        out: np.ndarray = self.cand_fallback[b]
        sel = np.flatnonzero(self.cand_test[b] > 0)
        if not len(sel):
            return out
        pts, bs = pts[sel], b[sel]
        count = self.cand_test[bs]
        first = np.cumsum(count) - count
        rep = np.repeat(pts, count)
        within = np.arange(len(rep)) - np.repeat(first, count)
        cand = self.cand_poly[np.repeat(self.cand_start[bs], count) + within]
        hit = shapely.intersects_xy(self.geoms[cand], x[rep], y[rep])
        big = len(self.geoms)
        best = np.minimum.reduceat(np.where(hit, cand, big), first)
        out[sel] = np.where(best < big, best, out[sel])
        return out
