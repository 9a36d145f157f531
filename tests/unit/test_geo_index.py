"""GridIndex and CellCover: vectorized == one-point == brute-force shapely, on every kind of point."""

from collections.abc import Sequence

import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon, box

from geo.cellcover import CellCover
from geo.district import build_sample_district
from geo.errors import GridSetError
from geo.index import GridIndex, Location
from geo.model import Building, District, Grid
from geo.synthetic import build_tessellation

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def district() -> District:
    return build_sample_district()


@pytest.fixture(scope="module")
def index(district: District) -> GridIndex:
    return GridIndex(district.grids, district.buildings, version=3)


def brute_force(geoms: Sequence[object], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Lowest index of a geometry intersecting each point (-1 for none), straight from shapely."""
    hits = shapely.intersects(
        np.asarray(geoms, dtype=object)[:, None], shapely.points(x, y)[None, :]
    )
    first = hits.argmax(axis=0)
    return np.where(hits.any(axis=0), first, -1)


def random_points(
    bounds: tuple[float, float, float, float], n: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform points over the bounds grown by 10 % on each side (so some fall outside)."""
    minx, miny, maxx, maxy = bounds
    dx, dy = 0.1 * (maxx - minx), 0.1 * (maxy - miny)
    rng = np.random.default_rng(seed)
    return rng.uniform(minx - dx, maxx + dx, n), rng.uniform(miny - dy, maxy + dy, n)


def l3_geoms(index: GridIndex) -> list[object]:
    return [index.grid(c).geometry for c in index.l3_codes]


def assert_consistent(index: GridIndex, x: np.ndarray, y: np.ndarray) -> None:
    """Vectorized, one-point and brute-force answers agree for every point."""
    got = index.locate_many(x, y)
    expected = brute_force(l3_geoms(index), x, y)
    np.testing.assert_array_equal(got.l3, expected)
    for i in range(len(x)):
        loc = index.locate(float(x[i]), float(y[i]))
        assert loc == index.location_of(got, i)
        assert index.contains(float(x[i]), float(y[i])) == (expected[i] >= 0)
    np.testing.assert_array_equal(index.contains_many(x, y), expected >= 0)


def test_random_points_match_brute_force(index: GridIndex) -> None:
    x, y = random_points(index.bounds, 4000)
    got = index.locate_many(x, y)
    assert (got.l3 == -1).any() and (got.l3 >= 0).any()
    assert_consistent(index, x, y)


def test_chain_follows_codes(index: GridIndex) -> None:
    x, y = random_points(index.bounds, 2000, seed=1)
    got = index.locate_many(x, y)
    inside = got.l3 >= 0
    assert ((got.l2 >= 0) == inside).all() and ((got.l1 >= 0) == inside).all()
    for i in np.flatnonzero(inside):
        l3 = index.l3_codes[got.l3[i]]
        assert index.l2_codes[got.l2[i]] == l3[:12]
        assert index.l1_codes[got.l1[i]] == l3[:9]


def test_outside_points(index: GridIndex) -> None:
    minx, miny, maxx, maxy = index.bounds
    for lon, lat in [
        (minx - 1, miny),
        (0.0, 0.0),
        (maxx + 1e-6, maxy + 1e-6),
        (float("nan"), 27.6),
        (1e300, -1e300),
    ]:
        assert index.locate(lon, lat) is None
        assert not index.contains(lon, lat)
    got = index.locate_many(np.array([minx - 1, np.nan, np.inf]), np.array([miny, 27.6, 27.6]))
    for arr in (got.l1, got.l2, got.l3, got.building):
        assert (arr == -1).all()


def test_buildings_are_found(index: GridIndex, district: District) -> None:
    pts = np.array([b.geometry.representative_point().coords[0] for b in district.buildings])
    got = index.locate_many(pts[:, 0], pts[:, 1])
    codes = index.building_codes[got.building]
    assert (got.building >= 0).all()
    assert codes.tolist() == [b.code for b in district.buildings]
    assert (index.l3_codes[got.l3] == np.array([b.grid_code for b in district.buildings])).all()
    b = district.buildings[17]
    x, y = b.geometry.representative_point().coords[0]
    assert index.locate(x, y) == Location(b.grid_code[:9], b.grid_code[:12], b.grid_code, b.code)


def test_random_points_find_buildings_like_brute_force(
    index: GridIndex, district: District
) -> None:
    b = district.buildings[100].geometry.bounds  # sample densely around a few buildings
    x, y = random_points((b[0] - 0.002, b[1] - 0.002, b[2] + 0.002, b[3] + 0.002), 3000, seed=2)
    got = index.locate_many(x, y)
    geoms = [bb.geometry for bb in sorted(district.buildings, key=lambda bb: bb.code)]
    np.testing.assert_array_equal(got.building, brute_force(geoms, x, y))
    assert (got.building >= 0).sum() > 10


def test_points_on_and_near_shared_edges(index: GridIndex) -> None:
    """Vertices, edge midpoints and points a hair off an edge: exact, deterministic, same on every path."""
    geoms = l3_geoms(index)
    coords = shapely.get_coordinates(np.array(geoms[:40], dtype=object))
    mids = (coords[:-1] + coords[1:]) / 2
    rng = np.random.default_rng(3)
    off = mids + rng.choice([-1, 1], size=mids.shape) * 1e-9
    for pts in (coords, mids, off):
        assert_consistent(index, pts[:, 0], pts[:, 1])
    # points exactly on a shared vertex go to the lowest code among the grids touching it
    got = index.locate_many(coords[:, 0], coords[:, 1])
    assert (got.l3 >= 0).all()  # also on the district's outer boundary


def test_grid_without_buildings(district: District) -> None:
    index = GridIndex(district.level(3))
    assert index.building_codes.size == 0
    x, y = random_points(index.bounds, 500, seed=4)
    got = index.locate_many(x, y)
    assert (got.building == -1).all()
    loc = next(index.locate(a, b) for a, b in zip(x, y, strict=True) if index.contains(a, b))
    assert loc is not None and loc.building is None


def test_tessellation_of_2000_grids() -> None:
    grids = build_tessellation(2000, seed=5)
    index = GridIndex(grids)
    assert len(index.l3_codes) == 2000
    x, y = random_points(index.bounds, 3000, seed=6)
    assert_consistent(index, x, y)
    # lattice vertices on the shared wiggly edges
    coords = shapely.get_coordinates(np.array(l3_geoms(index)[:30], dtype=object))
    assert_consistent(index, coords[:, 0], coords[:, 1])


def test_tessellation_with_holes_uses_exact_tests() -> None:
    """Removing grids leaves gaps whose edges have no twin: points in the gaps find nothing."""
    l3 = [g for g in build_tessellation(400, seed=7) if g.level == 3]
    kept = [g for i, g in enumerate(l3) if i % 7 != 3]
    index = GridIndex(kept)
    x, y = random_points(index.bounds, 5000, seed=8)
    assert_consistent(index, x, y)
    assert (index.locate_many(x, y).l3 == -1).sum() > 300


def test_cell_cover_overlaps_and_holes() -> None:
    """Overlapping and holed polygons: the lowest index covering the point wins everywhere."""
    ring = Polygon(box(0, 0, 10, 10).exterior.coords, [box(3, 3, 6, 6).exterior.coords])
    geoms = np.array([box(5, 5, 12, 12), ring, box(4, 4, 5, 5), box(1, 1, 2, 9)], dtype=object)
    cover = CellCover(geoms, min_cells=400, max_cells=400)
    rng = np.random.default_rng(9)
    x, y = rng.uniform(-1, 13, 20000), rng.uniform(-1, 13, 20000)
    # snap a share of the points onto the integer lattice: they fall on edges and corners
    x[:3000], y[:3000] = np.round(x[:3000]), np.round(y[:3000])
    expected = brute_force(list(geoms), x, y)
    np.testing.assert_array_equal(cover.locate_many(x, y), expected)
    assert [cover.locate(a, b) for a, b in zip(x[:4000], y[:4000], strict=True)] == expected[
        :4000
    ].tolist()


def test_answers_do_not_depend_on_cell_size(index: GridIndex) -> None:
    geoms = np.array(l3_geoms(index), dtype=object)
    x, y = random_points(index.bounds, 3000, seed=10)
    coarse = CellCover(geoms, min_cells=1000, max_cells=1000).locate_many(x, y)
    np.testing.assert_array_equal(coarse, index.locate_many(x, y).l3)


def test_rejects_bad_grid_sets(district: District) -> None:
    with pytest.raises(GridSetError, match="no level-3 grid"):
        GridIndex(district.level(1))
    g = district.level(3)[0]
    with pytest.raises(GridSetError, match="duplicate"):
        GridIndex([g, g])
    with pytest.raises(GridSetError, match="Polygon"):
        GridIndex([Grid(g.code, 3, g.name, shapely.Point(1, 1), g.parent_code)])
    with pytest.raises(GridSetError, match="no parent_code"):
        GridIndex([Grid("U-17", 3, g.name, g.geometry)])
    with pytest.raises(GridSetError, match="building"):
        GridIndex(
            [g], [Building(g.code + "00001", g.code, "b", shapely.LineString([(0, 0), (1, 1)]))]
        )


def test_version_and_stats(index: GridIndex) -> None:
    assert index.version == 3
    stats = index.stats()["grids"]
    assert stats is not None and stats.polygons == 138
    assert stats.tests_per_boundary_cell < stats.candidates_per_boundary_cell
    assert len(index.l1_codes) == 5 and len(index.l2_codes) == 29


def test_foreign_codes_route_through_parent_codes(district: District) -> None:
    """Grids imported with other coding schemes are chained by parent_code, not by code prefixes."""
    g = district.level(3)[0]
    grids = [
        Grid("D1", 1, "district", g.geometry),
        Grid("S-1", 2, "street", g.geometry, "D1"),
        Grid("U-17", 3, "unit", g.geometry, "S-1"),
    ]
    p = g.geometry.representative_point()
    assert GridIndex(grids).locate(p.x, p.y) == Location("D1", "S-1", "U-17")
    # a level-3 grid whose parent is not in the set: the parent_code still names the level-2 grid
    assert GridIndex([Grid(g.code, 3, g.name, g.geometry, "430102999999")]).locate(p.x, p.y) == Location(
        "430102999", "430102999999", g.code
    )
