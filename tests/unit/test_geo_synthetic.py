"""The benchmark tessellation: exact tiling, vertex counts, nesting and codes."""

import numpy as np
import pytest
import shapely

from geo.model import Grid, level_of, parent_code
from geo.synthetic import build_tessellation

pytestmark = pytest.mark.unit


def level(grids: list[Grid], n: int) -> list[Grid]:
    return [g for g in grids if g.level == n]


@pytest.mark.parametrize("n", [1, 7, 500, 1234])
def test_tessellation_tiles_exactly(n: int) -> None:
    grids = build_tessellation(n, seed=1)
    l3 = np.array([g.geometry for g in level(grids, 3)])
    assert len(l3) == n
    assert set(shapely.get_type_id(np.array([g.geometry for g in grids]))) == {
        shapely.GeometryType.POLYGON
    }
    assert shapely.is_valid(l3).all()
    assert shapely.coverage_is_valid(l3)
    union = shapely.coverage_union_all(l3)
    assert union.geom_type == "Polygon" and not list(union.interiors)  # no gaps


def test_polygons_have_the_requested_vertices() -> None:
    for vertices in (16, 64):
        grids = build_tessellation(50, vertices=vertices, seed=2)
        counts = shapely.get_num_coordinates(np.array([g.geometry for g in level(grids, 3)])) - 1
        assert (counts == vertices).all()


def test_parents_are_the_union_of_their_children() -> None:
    grids = build_tessellation(1500, seed=3)
    codes = {g.code for g in grids}
    for g in grids:
        assert level_of(g.code) == g.level
        assert g.parent_code == parent_code(g.code)
        assert g.parent_code is None or g.parent_code in codes
    for parent in grids:
        if parent.level < 3:
            children = [g.geometry for g in grids if g.parent_code == parent.code]
            assert 1 <= len(children) <= 999
            diff = shapely.union_all(children).symmetric_difference(parent.geometry).area
            assert diff <= 1e-9 * parent.geometry.area


def test_tessellation_is_deterministic() -> None:
    a, b = build_tessellation(300, seed=4), build_tessellation(300, seed=4)
    assert a == b
    assert build_tessellation(300, seed=5) != a


def test_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="n_l3"):
        build_tessellation(0)
    with pytest.raises(ValueError, match="vertices"):
        build_tessellation(10, vertices=3)
