"""The sample district: counts, exact nesting, codes, buildings, roster and devices."""

import re
from collections import Counter
from datetime import datetime, timedelta

import numpy as np
import pytest
import shapely

from geo.district import COUNTY, build_sample_district, reading_order
from geo.localframe import CENTER, to_metres
from geo.model import District, Grid, level_of, parent_code

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def district() -> District:
    return build_sample_district()


def by_code(d: District) -> dict[str, Grid]:
    return {g.code: g for g in d.grids}


def test_counts(district: District) -> None:
    assert [len(district.level(n)) for n in (1, 2, 3)] == [5, 29, 138]
    assert len(district.buildings) == 1100
    assert len(district.patrollers) == 163
    assert 200 <= len(district.devices) <= 600


def test_every_grid_is_one_valid_polygon(district: District) -> None:
    geoms = np.array([g.geometry for g in district.grids])
    assert set(shapely.get_type_id(geoms)) == {shapely.GeometryType.POLYGON}
    assert shapely.is_valid(geoms).all()
    assert shapely.coverage_is_valid(np.array([g.geometry for g in district.level(3)]))


def test_district_is_about_12_by_10_km_around_the_centre(district: District) -> None:
    outline = shapely.union_all([g.geometry for g in district.level(1)])
    assert outline.contains(shapely.Point(CENTER))
    minx, miny, maxx, maxy = to_metres(outline).bounds
    assert 10_000 < maxx - minx < 14_000
    assert 8_000 < maxy - miny < 12_000


def test_codes_follow_the_rule(district: District) -> None:
    grids = by_code(district)
    for g in district.grids:
        assert level_of(g.code) == g.level
        assert g.code.startswith(COUNTY)
        assert g.parent_code == parent_code(g.code)
        if g.parent_code is not None:
            assert grids[g.parent_code].level == g.level - 1
    # children are numbered 001, 002, ... without gaps
    numbers: dict[str | None, list[int]] = {}
    for g in district.grids:
        numbers.setdefault(g.parent_code, []).append(int(g.code[-3:]))
    for nums in numbers.values():
        assert sorted(nums) == list(range(1, len(nums) + 1))


def test_childrens_union_equals_parent(district: District) -> None:
    for parent in district.grids:
        if parent.level == 3:
            continue
        children = [g.geometry for g in district.grids if g.parent_code == parent.code]
        union = shapely.union_all(children)
        assert union.symmetric_difference(parent.geometry).area <= 1e-9 * parent.geometry.area


@pytest.mark.parametrize("level", [1, 2, 3])
def test_siblings_do_not_overlap(district: District, level: int) -> None:
    geoms = np.array([g.geometry for g in district.level(level)])
    tree = shapely.STRtree(geoms)
    a, b = tree.query(geoms, predicate="intersects")
    pairs = a < b
    overlap = shapely.area(shapely.intersection(geoms[a[pairs]], geoms[b[pairs]]))
    assert overlap.max() <= 1e-12 * shapely.area(geoms).min()


def test_reading_order_is_north_to_south_then_west_to_east() -> None:
    pts = np.array([[2, 0], [0, 1], [1, 0], [2, 1], [0, 0], [1, 1]], dtype=float)
    assert pts[reading_order(pts)].tolist() == [[0, 1], [1, 1], [2, 1], [0, 0], [1, 0], [2, 0]]


def test_each_building_lies_in_exactly_its_grid(district: District) -> None:
    l3 = district.level(3)
    geoms = np.array([g.geometry for g in l3])
    tree = shapely.STRtree(geoms)
    for b in district.buildings:
        assert len(b.code) == 20 and b.code.startswith(b.grid_code)
        inside = tree.query(b.geometry, predicate="within")
        assert [l3[i].code for i in inside] == [b.grid_code]
        touching = tree.query(b.geometry, predicate="intersects")
        assert len(touching) == 1  # strictly inside: does not even touch a neighbour
    assert len({b.code for b in district.buildings}) == len(district.buildings)


def test_buildings_do_not_overlap(district: District) -> None:
    geoms = np.array([b.geometry for b in district.buildings])
    assert shapely.is_valid(geoms).all()
    a, b = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    assert (a == b).all()


def test_patrollers_cover_every_grid(district: District) -> None:
    l3 = {g.code: g for g in district.level(3)}
    covered: Counter[str] = Counter()
    for p in district.patrollers:
        assert re.fullmatch(r"P\d{4}", p.id)
        assert re.fullmatch(r"1\d{10}", p.phone)
        assert 1 <= len(p.grid_codes) <= 2
        assert all(c in l3 for c in p.grid_codes)
        assert p.home is not None
        assert any(l3[c].geometry.contains(shapely.Point(p.home)) for c in p.grid_codes)
        assert p.shifts
        covered.update(p.grid_codes)
    assert set(covered) == set(l3)
    assert (
        len({p.id for p in district.patrollers})
        == len({p.phone for p in district.patrollers})
        == 163
    )


def on_duty_share(d: District, when: datetime) -> float:
    on = {c for p in d.patrollers if p.on_duty(when) for c in p.grid_codes}
    return len(on) / len(d.level(3))


def test_weekdays_are_covered_day_and_night(district: District) -> None:
    monday = datetime(2026, 11, 23)
    for hours in range(0, 5 * 24 - 4):  # Monday 00:00 to Friday 20:00
        assert on_duty_share(district, monday + timedelta(hours=hours, minutes=30)) == 1.0
    week = [on_duty_share(district, monday + timedelta(hours=h, minutes=30)) for h in range(168)]
    assert np.mean(week) >= 0.7  # "usually someone on duty"; weekends rest on the 3-person crews


def test_devices_sit_in_their_grid(district: District) -> None:
    grids = by_code(district)
    outline = shapely.union_all([g.geometry for g in district.level(1)])
    kinds = Counter(dv.kind for dv in district.devices)
    assert set(kinds) == {"fence", "thermal", "smoke", "camera"}
    for dv in district.devices:
        assert re.fullmatch(rf"{dv.kind}-\d{{3}}", dv.id)
        assert grids[dv.grid_code].level == 3
        assert grids[dv.grid_code].geometry.covers(dv.anchor())
        assert outline.covers(dv.geometry)
    assert len({dv.id for dv in district.devices}) == len(district.devices)


def test_device_placement_by_kind(district: District) -> None:
    grids = by_code(district)
    footprints = np.array([b.geometry for b in district.buildings])
    tree = shapely.STRtree(footprints)
    for dv in district.devices:
        if dv.kind == "fence":
            assert dv.geometry.geom_type == "LineString"
            assert dv.zones and set(dv.zones) <= {"Z1", "Z2", "Z3", "Z4"}
            assert grids[dv.grid_code].geometry.contains(dv.geometry)
        elif dv.kind == "thermal":  # on a building corner
            near = tree.query(dv.geometry, predicate="intersects")
            assert any(
                dv.geometry.equals(shapely.Point(c))
                for i in near
                for c in footprints[i].exterior.coords
            )
        elif dv.kind == "smoke":  # inside a building
            assert len(tree.query(dv.geometry, predicate="within")) == 1


def test_district_is_deterministic(district: District) -> None:
    again = build_sample_district()
    assert again == district
    assert [shapely.to_wkb(g.geometry) for g in again.grids] == [
        shapely.to_wkb(g.geometry) for g in district.grids
    ]
    other = build_sample_district(seed=8)
    assert [len(other.level(n)) for n in (1, 2, 3)] == [5, 29, 138]
    assert not other.level(3)[0].geometry.equals(district.level(3)[0].geometry)
