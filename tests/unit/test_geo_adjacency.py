"""Grid adjacency: level-3 grids sharing an edge (not just a corner)."""

from itertools import combinations

import numpy as np
import pytest
import shapely
from shapely.geometry import MultiPolygon, Polygon, box

from geo.adjacency import grid_neighbours
from geo.model import Grid
from geo.synthetic import build_tessellation

pytestmark = pytest.mark.unit

X0, Y0, S = 113.85, 27.62, 0.001  # ~100 m cells near the sample district


def g3(n: int, geom) -> Grid:
    return Grid(f"430102001001{n:03d}", 3, f"g{n}", geom, "430102001001")


def cell(i: int, j: int, *, dx: float = 0.0, dy: float = 0.0, w: float = 1.0, h: float = 1.0) -> Polygon:
    x, y = round(X0 + i * S, 7), round(Y0 + j * S, 7)
    return box(x + dx, y + dy, round(x + w * S, 7) + dx, round(y + h * S, 7) + dy)


def test_square_lattice_edges_count_corners_do_not() -> None:
    grids = [g3(1 + 3 * j + i, cell(i, j)) for j in range(3) for i in range(3)]
    nb = grid_neighbours(grids)
    centre = grids[4].code
    assert nb[centre] == tuple(sorted(grids[k].code for k in (1, 3, 5, 7)))
    assert nb[grids[0].code] == (grids[1].code, grids[3].code)  # not the diagonal grids[4]
    for a, ns in nb.items():  # symmetric
        assert all(a in nb[b] for b in ns)


def test_t_junction_counts_as_shared_edge() -> None:
    # one wide grid above two small ones: its bottom edge is one segment, theirs are two
    top = g3(1, cell(0, 1, w=2))
    left, right = g3(2, cell(0, 0)), g3(3, cell(1, 0))
    nb = grid_neighbours([top, left, right])
    assert nb[top.code] == (left.code, right.code)
    assert nb[left.code] == (top.code, right.code)


def test_t_junction_on_a_slanted_edge() -> None:
    big = g3(1, Polygon([(0, 0), (0.004, 0.003), (0, 0.003)]))
    mid = (0.002, 0.0015)  # the midpoint of big's slanted edge
    a = g3(2, Polygon([(0, 0), (0.002, 0), mid]))
    b = g3(3, Polygon([mid, (0.002, 0), (0.004, 0), (0.004, 0.003)]))
    nb = grid_neighbours([big, a, b])
    assert nb[big.code] == (a.code, b.code)


def test_hairline_gap_or_sliver_within_tolerance_still_neighbours() -> None:
    a = g3(1, cell(0, 0))
    gap = g3(2, cell(1, 0, dx=5e-8))
    overlap = g3(3, cell(-1, 0, dx=5e-8))
    far = g3(4, cell(0, 1, dy=1e-5))  # a 1 m gap is a real gap
    nb = grid_neighbours([a, gap, overlap, far])
    assert nb[a.code] == (gap.code, overlap.code)
    assert nb[far.code] == ()


def test_float_noise_on_shared_corners_does_not_make_diagonal_neighbours() -> None:
    grids = []
    for j in range(3):
        for i in range(3):
            grids.append(g3(1 + 3 * j + i, box(i * 0.001, j * 0.001, i * 0.001 + 0.001, j * 0.001 + 0.001)))
    nb = grid_neighbours(grids)
    assert len(nb[grids[4].code]) == 4
    assert grids[4].code not in nb[grids[0].code]


def test_corner_contact_with_overlapping_bounding_boxes_is_not_an_edge() -> None:
    # b's vertex touches the middle of a's long edge; their bounding boxes overlap widely
    a = g3(1, Polygon([(0, 0), (0.002, 0), (0, 0.002)]))
    b = g3(2, Polygon([(0.001, 0.001), (0.003, 0.001), (0.003, 0.003)]))
    assert shapely.intersection(a.geometry, b.geometry).geom_type == "Point"
    assert grid_neighbours([a, b]) == {a.code: (), b.code: ()}


def test_shared_border_shorter_than_min_edge_is_a_corner() -> None:
    a = g3(1, cell(0, 0))
    b = g3(2, cell(1, 0, dy=S - 5e-6))  # shares 5e-6° (~0.5 m) of a's right edge
    assert grid_neighbours([a, b])[a.code] == ()
    assert grid_neighbours([a, b], min_edge=1e-6)[a.code] == (b.code,)


def test_other_levels_ignored_multipolygons_and_isolated_grids() -> None:
    parent = Grid("430102001001", 2, "p", cell(0, 0, w=5, h=5), "430102001")
    a = g3(1, cell(0, 0))
    b = g3(2, MultiPolygon([cell(1, 0), cell(3, 3)]))
    c = g3(3, cell(3, 2))  # touches b's second part
    lone = g3(4, cell(9, 9))
    nb = grid_neighbours([parent, a, b, c, lone])
    assert set(nb) == {a.code, b.code, c.code, lone.code}
    assert nb[b.code] == (a.code, c.code)
    assert nb[lone.code] == ()
    assert grid_neighbours([a]) == {a.code: ()}
    assert grid_neighbours([]) == {}


def test_matches_brute_force_on_a_synthetic_tessellation() -> None:
    l3 = [g for g in build_tessellation(150, vertices=16, seed=4) if g.level == 3]
    nb = grid_neighbours(l3)
    geoms = {g.code: g.geometry for g in l3}
    expected: dict[str, set[str]] = {c: set() for c in geoms}
    for a, b in combinations(sorted(geoms), 2):
        if shapely.intersection(geoms[a], geoms[b]).length > 1e-5:
            expected[a].add(b)
            expected[b].add(a)
    assert {c: set(v) for c, v in nb.items()} == expected
    assert np.mean([len(v) for v in nb.values()]) > 3
