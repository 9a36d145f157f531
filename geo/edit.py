"""Planner edits of level-3 grids: merge siblings, split one in two, and a sample redraw.

Pure logic on lists of `Grid` (WGS84 lon/lat); every function returns a new list and leaves its
input alone. `sample_redraw` produces the deterministic draft version used by demos and tests of
the grid diff (geo.diff).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import shapely
from shapely.geometry import LineString, MultiPoint, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.ops import split

from geo.model import CODE_LENGTH, Grid, child_code, parent_code

#: Distance (degrees, about 0.1 mm) within which a cut point counts as lying on a neighbour's edge.
_ON_EDGE = 1e-9


def _by_code(grids: Sequence[Grid]) -> dict[str, Grid]:
    """Index grids by code."""
    return {g.code: g for g in grids}


def _level3(grids: dict[str, Grid], code: str) -> Grid:
    """Return the level-3 grid `code`, or raise ValueError naming it."""
    if code not in grids:
        raise ValueError(f"grid {code}: not in the grid list")
    g = grids[code]
    if g.level != 3:
        raise ValueError(f"grid {code}: level {g.level}; expected a level-3 grid")
    return g


# --------------------------------------------------------------------------- merge


def merge_grids(grids: Sequence[Grid], codes: Sequence[str], *, name: str | None = None) -> list[Grid]:
    """Merge sibling level-3 grids into one that keeps the lowest code (and its name unless `name`).

    Raises ValueError when a code is unknown or not level 3, when fewer than two distinct codes are
    given, when the grids do not share one parent, or when their union is not one polygon
    ("not adjacent").
    """
    wanted = sorted(set(codes))
    if len(wanted) < 2:
        raise ValueError(f"codes {list(codes)}: expected at least two distinct grid codes to merge")
    index = _by_code(grids)
    members = [_level3(index, c) for c in wanted]
    parents = {c: parent_code(c) for c in wanted}
    if len(set(parents.values())) != 1:
        listing = ", ".join(f"{c} (parent {p})" for c, p in parents.items())
        raise ValueError(f"grids {listing}: expected siblings with the same parent")
    merged = shapely.union_all(np.array([g.geometry for g in members], dtype=object))
    if not isinstance(merged, Polygon) or not merged.is_valid:
        raise ValueError(
            f"grids {', '.join(wanted)}: not adjacent "
            f"(their union is a {merged.geom_type}, expected one Polygon)"
        )
    keep = members[0]
    new = Grid(keep.code, 3, name or keep.name, shapely.normalize(merged), keep.parent_code)
    gone = set(wanted[1:])
    return [new if g.code == keep.code else g for g in grids if g.code not in gone]


# --------------------------------------------------------------------------- split


def next_free_code(grids: Sequence[Grid], parent: str) -> str:
    """Return the next free child code under `parent`: one above the highest used, else the lowest gap."""
    level = next(lv for lv, n in CODE_LENGTH.items() if n == len(parent)) + 1
    used = {int(g.code[-3:]) for g in grids if g.level == level and g.code.startswith(parent)}
    top = max(used, default=0)
    if top < 999:
        return child_code(parent, top + 1)
    free = [n for n in range(1, 1000) if n not in used]
    if not free:
        raise ValueError(f"parent {parent}: all 999 child codes are in use")
    return child_code(parent, free[0])


def _cut_line(poly: BaseGeometry) -> tuple[LineString, bool]:
    """Return the cut through the centroid, perpendicular to the longer bbox axis, and whether it is vertical.

    The bbox sides are compared in metres (a degree of longitude is cos(lat) of a degree of latitude).
    """
    minx, miny, maxx, maxy = poly.bounds
    c = poly.centroid
    width = (maxx - minx) * math.cos(math.radians(c.y))
    height = maxy - miny
    pad = max(maxx - minx, maxy - miny)
    if width >= height:  # wide: cut north-south
        return LineString([(c.x, miny - pad), (c.x, maxy + pad)]), True
    return LineString([(minx - pad, c.y), (maxx + pad, c.y)]), False


def _halves(grid: Grid) -> tuple[Polygon, Polygon]:
    """Split a grid's polygon along its cut: (western or northern half, the other half)."""
    line, vertical = _cut_line(grid.geometry)
    pieces = [p for p in split(grid.geometry, line).geoms if isinstance(p, Polygon)]
    if len(pieces) != 2 or not all(p.is_valid for p in pieces):
        raise ValueError(
            f"grid {grid.code}: the cut through its centroid gives {len(pieces)} pieces; expected 2"
        )
    a, b = pieces
    if vertical:
        first = a if a.centroid.x <= b.centroid.x else b  # western
    else:
        first = a if a.centroid.y >= b.centroid.y else b  # northern
    second = b if first is a else a
    return first, second


def _with_cut_points(grids: list[Grid], skip: set[str], points: MultiPoint) -> list[Grid]:
    """Insert the cut's end points into every other grid whose edge they lie on.

    The neighbours then share the new vertices, so the grid set stays an exact coverage.
    """
    geoms = np.array([g.geometry for g in grids], dtype=object)
    hits = np.flatnonzero(shapely.dwithin(shapely.boundary(geoms), points, _ON_EDGE))
    out = list(grids)
    for i in hits.tolist():
        g = grids[i]
        if g.code in skip:
            continue
        out[i] = Grid(g.code, g.level, g.name, shapely.snap(g.geometry, points, _ON_EDGE), g.parent_code)
    return out


def split_grid(
    grids: Sequence[Grid], code: str, *, new_code: str | None = None, name: str | None = None
) -> list[Grid]:
    """Split a level-3 grid in two along a line through its centroid, perpendicular to its longer bbox axis.

    The western (north-south cut) or northern (east-west cut) half keeps `code`; the other half gets
    `new_code`, else the next free unit number under the same parent, and `name` (default: the
    grid's name + " (split)"). The cut's end points are inserted into the neighbours' edges.
    """
    index = _by_code(grids)
    grid = _level3(index, code)
    parent = parent_code(code)
    assert parent is not None
    if new_code is None:
        new_code = next_free_code(grids, parent)
    elif len(new_code) != CODE_LENGTH[3] or not new_code.isdigit() or not new_code.startswith(parent):
        raise ValueError(f"new_code {new_code!r}: expected 15 digits starting with the parent code {parent}")
    elif new_code in index:
        raise ValueError(f"new_code {new_code}: already used by a grid")
    first, second = _halves(grid)
    kept = Grid(code, 3, grid.name, shapely.normalize(first), grid.parent_code)
    added = Grid(new_code, 3, name or f"{grid.name} (split)", shapely.normalize(second), grid.parent_code)
    out: list[Grid] = []
    for g in grids:
        out.append(kept if g.code == code else g)
        if g.code == code:
            out.append(added)
    ends = _cut_ends(first, second, grid.geometry)
    return _with_cut_points(out, {code, new_code}, ends) if not ends.is_empty else out


def _cut_ends(first: BaseGeometry, second: BaseGeometry, original: BaseGeometry) -> MultiPoint:
    """Return the vertices both halves share that the original lacks: the cut's ends on its boundary."""

    def coords(g: BaseGeometry) -> set[tuple[float, float]]:
        return {(x, y) for x, y in shapely.get_coordinates(g).tolist()}

    return MultiPoint(sorted((coords(first) & coords(second)) - coords(original)))


# --------------------------------------------------------------------------- the sample redraw


def _first_adjacent_siblings(l3: list[Grid]) -> tuple[Grid, Grid]:
    """Return the first pair (in code order) of sibling level-3 grids sharing an edge."""
    for i, a in enumerate(l3):
        for b in l3[i + 1 :]:
            if parent_code(b.code) != parent_code(a.code):
                break
            if a.geometry.relate(b.geometry)[4] == "1":  # boundaries meet along a line
                return a, b
    raise ValueError("grids: no two sibling level-3 grids share an edge")


def sample_redraw(grids: Sequence[Grid]) -> tuple[list[Grid], dict[str, object]]:
    """Redraw the sample district deterministically: merge one sibling pair, split the largest other grid.

    The merge takes the first pair (in code order) of adjacent siblings; the split takes the
    largest level-3 grid (by area in a local equal-area frame) outside that pair. Returns the new
    grid list and {"merged": [a, b], "into": a, "split": c, "new_code": d}.
    """
    from geo.diff import EqualAreaFrame  # local: geo.diff does not depend on edits

    l3 = sorted((g for g in grids if g.level == 3), key=lambda g: g.code)
    if len(l3) < 3:
        raise ValueError(f"grids: {len(l3)} level-3 grids; expected at least 3 to merge two and split one")
    a, b = _first_adjacent_siblings(l3)
    others = [g for g in l3 if g.code not in (a.code, b.code)]
    frame = EqualAreaFrame.around([g.geometry for g in l3])
    areas = frame.areas(np.array([g.geometry for g in others], dtype=object))
    target = others[int(np.argmax(areas))]
    parent = parent_code(target.code)
    assert parent is not None
    new_code = next_free_code(grids, parent)
    redrawn = split_grid(grids, target.code, new_code=new_code)
    redrawn = merge_grids(redrawn, [a.code, b.code])
    return redrawn, {"merged": [a.code, b.code], "into": a.code, "split": target.code, "new_code": new_code}
