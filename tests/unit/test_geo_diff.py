"""Grid version diff, successors, planner edits and the workload what-if (geo.diff, geo.edit, geo.whatif)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon, box

from geo.diff import (
    EqualAreaFrame,
    GridDiff,
    IncidentPoint,
    changed_geometries,
    diff_versions,
    reassign,
    successors,
)
from geo.district import build_sample_district
from geo.edit import merge_grids, sample_redraw, split_grid
from geo.index import GridIndex
from geo.model import District, Grid
from geo.whatif import BalanceStats, workload_whatif

pytestmark = pytest.mark.unit

Redraw = tuple[list[Grid], dict]


@pytest.fixture(scope="module")
def district() -> District:
    return build_sample_district()


@pytest.fixture(scope="module")
def redraw(district: District) -> Redraw:
    return sample_redraw(list(district.grids))


@pytest.fixture(scope="module")
def diff(district: District, redraw: Redraw) -> GridDiff:
    new, _ = redraw
    return diff_versions(
        district.grids,
        new,
        buildings=district.buildings,
        devices=district.devices,
        patrollers=district.patrollers,
    )


def l3_of(grids: list[Grid] | tuple[Grid, ...]) -> dict[str, Grid]:
    return {g.code: g for g in grids if g.level == 3}


# --------------------------------------------------------------------------- toy grids


def toy(code: str, geom: Polygon) -> Grid:
    return Grid(code, 3, code, geom, code[:12])


PARENT = "430102001001"


def row(*widths: float) -> list[Grid]:
    """Level-3 toy grids side by side (0.01° tall), codes 001, 002, …"""
    out, x = [], 113.8
    for i, w in enumerate(widths, start=1):
        out.append(toy(f"{PARENT}{i:03d}", box(x, 27.6, x + w, 27.61)))
        x += w
    return out


# --------------------------------------------------------------------------- diff against itself


def test_diff_against_itself_changes_nothing(district: District) -> None:
    d = diff_versions(
        district.grids,
        district.grids,
        buildings=district.buildings,
        devices=district.devices,
        patrollers=district.patrollers,
    )
    assert d.is_empty
    assert d.unchanged == len(district.grids)
    assert d.summary() == {
        "added": 0,
        "removed": 0,
        "reshaped": 0,
        "unchanged": 172,
        "buildings_moved": 0,
        "devices_moved": 0,
        "patrollers_moved": 0,
        "incidents_moved": 0,
    }
    assert d.successors == {c: (c,) for c in l3_of(district.grids)}
    assert changed_geometries(district.grids, district.grids) == ([], [])


def test_copied_geometries_are_unchanged(district: District) -> None:
    copies = [
        Grid(g.code, g.level, g.name, shapely.from_wkb(g.geometry.wkb), g.parent_code) for g in district.grids
    ]
    assert diff_versions(district.grids, copies).is_empty


# --------------------------------------------------------------------------- the sample redraw


def test_sample_redraw_is_deterministic_and_clean(district: District, redraw: Redraw) -> None:
    new, info = redraw
    again, info2 = sample_redraw(list(district.grids))
    assert info == info2
    assert [g.code for g in new] == [g.code for g in again]
    assert set(info) == {"merged", "into", "split", "new_code"}
    a, b = info["merged"]
    assert info["into"] == a < b and a[:12] == b[:12]
    l3 = l3_of(new)
    assert b not in l3 and info["new_code"] in l3 and info["split"] in l3
    geoms = np.array([g.geometry for g in l3.values()])
    assert set(shapely.get_type_id(geoms)) == {shapely.GeometryType.POLYGON}
    assert shapely.is_valid(geoms).all()
    assert shapely.coverage_is_valid(geoms)
    old_union = shapely.union_all([g.geometry for g in district.level(3)])
    assert shapely.union_all(geoms).symmetric_difference(old_union).area < 1e-12


def test_redraw_diff_lists_exactly_the_edits(diff: GridDiff, redraw: Redraw) -> None:
    _, info = redraw
    a, b = info["merged"]
    assert [(r.code, r.level) for r in diff.removed] == [(b, 3)]
    assert [(x.code, x.level) for x in diff.added] == [(info["new_code"], 3)]
    assert sorted(r.code for r in diff.reshaped) == sorted([a, info["split"]])
    assert diff.unchanged == 172 - 2 - 1
    merged = next(r for r in diff.reshaped if r.code == a)
    assert merged.delta_m2 == pytest.approx(diff.removed[0].area_m2, rel=1e-6)
    assert merged.changed_m2 == pytest.approx(merged.delta_m2, rel=1e-6)
    split = next(r for r in diff.reshaped if r.code == info["split"])
    assert split.old_area_m2 == pytest.approx(split.new_area_m2 + diff.added[0].area_m2, rel=1e-6)
    assert split.changed_m2 == pytest.approx(diff.added[0].area_m2, rel=1e-6)
    for r in diff.reshaped:
        assert r.delta_m2 == pytest.approx(r.new_area_m2 - r.old_area_m2)


def test_areas_are_equal_area_square_metres(district: District) -> None:
    g = district.level(3)[0]
    from geo.localframe import to_metres

    frame = EqualAreaFrame.around([g.geometry])
    assert frame.areas(np.array([g.geometry]))[0] == pytest.approx(to_metres(g.geometry).area, rel=2e-3)
    assert frame.approx_areas(np.array([g.geometry]))[0] == pytest.approx(
        frame.areas(np.array([g.geometry]))[0], rel=1e-3
    )


def test_successors_of_the_redraw(diff: GridDiff, district: District, redraw: Redraw) -> None:
    new, info = redraw
    a, b = info["merged"]
    succ = successors(district.grids, new)
    assert succ == diff.successors
    assert succ[a] == (a,) and succ[b] == (a,)
    assert succ[info["split"]] == tuple(sorted([info["split"], info["new_code"]]))
    others = {c: s for c, s in succ.items() if c not in (a, b, info["split"])}
    assert all(s == (c,) for c, s in others.items())
    assert list(succ) == sorted(l3_of(district.grids))


def test_buildings_move_like_brute_force(diff: GridDiff, district: District, redraw: Redraw) -> None:
    new, info = redraw
    l3 = l3_of(new)
    expected = set()
    for bld in district.buildings:
        overlaps = {c: g.geometry.intersection(bld.geometry).area for c, g in l3.items()}
        best = max(overlaps, key=lambda c: overlaps[c])
        to = best if overlaps[best] > 0 else None
        if to != bld.grid_code:
            expected.add((bld.code, bld.grid_code, to))
    got = {(m.id, m.from_code, m.to_code) for m in diff.moves.buildings}
    assert got == expected
    assert got  # the merge moves every building of the absorbed grid
    a, b = info["merged"]
    assert {m.to_code for m in diff.moves.buildings if m.from_code == b} == {a}
    assert {m.from_code for m in diff.moves.buildings} <= {b, info["split"]}


def test_devices_move_like_brute_force(diff: GridDiff, district: District, redraw: Redraw) -> None:
    new, _ = redraw
    l3 = sorted(l3_of(new).values(), key=lambda g: g.code)
    expected = set()
    for dev in district.devices:
        holders = [g.code for g in l3 if g.geometry.covers(dev.anchor())]
        to = holders[0] if holders else None
        if to != dev.grid_code:
            expected.add((dev.id, dev.grid_code, to))
    assert {(m.id, m.from_code, m.to_code) for m in diff.moves.devices} == expected
    assert expected


def test_patrollers_follow_successors(diff: GridDiff, district: District, redraw: Redraw) -> None:
    _, info = redraw
    a, b = info["merged"]
    c, d = info["split"], info["new_code"]
    moved = {m.id: m for m in diff.moves.patrollers}
    for p in district.patrollers:
        if b in p.grid_codes or c in p.grid_codes:
            m = moved[p.id]
            assert m.from_codes == p.grid_codes
            assert b not in m.to_codes and len(set(m.to_codes)) == len(m.to_codes)
            if b in p.grid_codes:
                assert a in m.to_codes
            if c in p.grid_codes:
                assert c in m.to_codes and d in m.to_codes
        else:
            assert p.id not in moved


def test_reassign_keeps_order_and_drops_duplicates() -> None:
    succ = {"1": ("1",), "2": ("1",), "3": ("3", "9"), "4": ()}
    assert reassign(("2", "1", "3"), succ) == ("1", "3", "9")
    assert reassign(("3", "4", "7"), succ) == ("3", "9", "7")


def test_incidents_move_accordingly(district: District, redraw: Redraw) -> None:
    new, info = redraw
    a, b = info["merged"]
    old_idx = GridIndex(district.grids)
    old3, new3 = l3_of(district.grids), l3_of(new)
    east = new3[info["new_code"]].geometry.representative_point()
    west = new3[info["split"]].geometry.representative_point()
    in_b = old3[b].geometry.representative_point()
    in_a = old3[a].geometry.representative_point()
    far = next(g for c, g in old3.items() if c not in (a, b, info["split"])).geometry.representative_point()
    points = {"east": east, "west": west, "in_b": in_b, "in_a": in_a, "far": far}
    incidents = [IncidentPoint(k, p.x, p.y, old_idx.locate(p.x, p.y).l3) for k, p in points.items()]
    incidents.append(IncidentPoint("outside", 100.0, 10.0, None))
    incidents.append(IncidentPoint("stale", far.x, far.y, a))  # wrongly attributed: moves too
    d = diff_versions(district.grids, new, open_incidents=incidents)
    got = {m.id: (m.from_code, m.to_code) for m in d.moves.incidents}
    far_code = old_idx.locate(far.x, far.y).l3
    assert got == {"east": (info["split"], info["new_code"]), "in_b": (b, a), "stale": (a, far_code)}


def test_to_dict_shape_and_json(diff: GridDiff) -> None:
    out = json.loads(json.dumps(diff.to_dict()))
    assert set(out) == {"added", "removed", "reshaped", "unchanged", "moves", "successors", "summary"}
    assert set(out["added"][0]) == {"code", "level", "area_m2"}
    assert set(out["removed"][0]) == {"code", "level", "area_m2"}
    assert set(out["reshaped"][0]) == {
        "code", "level", "old_area_m2", "new_area_m2", "delta_m2", "changed_m2"
    }
    assert set(out["moves"]) == {"buildings", "devices", "patrollers", "incidents"}
    assert set(out["moves"]["buildings"][0]) == {"code", "from", "to"}
    assert set(out["moves"]["devices"][0]) == {"id", "from", "to"}
    assert set(out["moves"]["patrollers"][0]) == {"id", "from", "to"}
    assert isinstance(out["moves"]["patrollers"][0]["to"], list)
    assert out["summary"]["buildings_moved"] == len(out["moves"]["buildings"])
    assert out["summary"]["reshaped"] == 2 and out["summary"]["unchanged"] == out["unchanged"]
    assert all(isinstance(v, list) for v in out["successors"].values())


def test_table_truncates(diff: GridDiff) -> None:
    text = diff.table(rows=3)
    assert text.startswith("grids: 1 added, 1 removed, 2 reshaped")
    assert f"… and {len(diff.moves.buildings) - 3} more" in text
    assert diff.added[0].code in text


def test_changed_geometries(district: District, redraw: Redraw) -> None:
    new, info = redraw
    old_changed, new_changed = changed_geometries(district.grids, new)
    a, b = info["merged"]
    assert sorted(g.code for g in old_changed) == sorted([a, b, info["split"]])
    assert sorted(g.code for g in new_changed) == sorted([a, info["split"], info["new_code"]])


# --------------------------------------------------------------------------- successors on toys


def test_successors_split_merge_and_gone() -> None:
    old = row(0.01, 0.01, 0.004, 0.01)  # 001 | 002 | 003 (small) | 004
    new = [
        toy(f"{PARENT}001", box(113.8, 27.6, 113.805, 27.61)),  # 001 split in two
        toy(f"{PARENT}005", box(113.805, 27.6, 113.81, 27.61)),
        toy(f"{PARENT}002", box(113.81, 27.6, 113.824, 27.61)),  # 002 absorbs 003
    ]  # 004 dropped: nothing there any more
    succ = successors(old, new)
    assert succ == {
        f"{PARENT}001": (f"{PARENT}001", f"{PARENT}005"),
        f"{PARENT}002": (f"{PARENT}002",),
        f"{PARENT}003": (f"{PARENT}002",),
        f"{PARENT}004": (),
    }


def test_successors_merge_into_larger_takes_largest_overlap() -> None:
    old = row(0.01, 0.01, 0.01)
    # 001 and 002 merge into 001 and 001 also takes some of 003: no old grid holds half of it,
    # so each maps to the new grid it overlaps most
    new = [
        toy(f"{PARENT}001", box(113.8, 27.6, 113.825, 27.61)),
        toy(f"{PARENT}003", box(113.825, 27.6, 113.83, 27.61)),
    ]
    succ = successors(old, new)
    assert succ[f"{PARENT}001"] == (f"{PARENT}001",)
    assert succ[f"{PARENT}002"] == (f"{PARENT}001",)
    assert succ[f"{PARENT}003"] == (f"{PARENT}003",)  # holds all of the new 003
    assert successors(old, new, level=2) == {}


def test_an_invalid_draft_is_still_diffed() -> None:
    grids = row(0.01, 0.01)
    twin = toy(f"{PARENT}001", box(113.7, 27.6, 113.71, 27.61))
    bowtie = toy(f"{PARENT}002", Polygon([(113.81, 27.6), (113.82, 27.61), (113.82, 27.6), (113.81, 27.61)]))
    d = diff_versions(grids, [grids[0], twin, bowtie])  # duplicate code: the first one is kept
    assert [r.code for r in d.reshaped] == [f"{PARENT}002"]
    assert d.reshaped[0].new_area_m2 == pytest.approx(d.reshaped[0].old_area_m2 / 2, rel=1e-3)
    assert d.successors[f"{PARENT}001"] == (f"{PARENT}001",)


def test_tolerance_decides_reshaped() -> None:
    old = row(0.01, 0.01)
    nudged = [old[0], toy(f"{PARENT}002", box(113.81, 27.6, 113.82 + 1e-7, 27.61))]  # ~11 m2 more
    assert [r.code for r in diff_versions(old, nudged).reshaped] == [f"{PARENT}002"]
    assert diff_versions(old, nudged, tolerance_m2=50.0).reshaped == ()
    r = diff_versions(old, nudged).reshaped[0]
    assert r.changed_m2 == pytest.approx(r.delta_m2, rel=1e-3) and 5 < r.delta_m2 < 20


# --------------------------------------------------------------------------- edits


def test_merge_errors(district: District) -> None:
    l3 = sorted(district.level(3), key=lambda g: g.code)
    cousins = next(g for g in l3 if g.parent_code != l3[0].parent_code)
    with pytest.raises(ValueError, match=f"{l3[0].code}.*{cousins.code}.*same parent"):
        merge_grids(district.grids, [l3[0].code, cousins.code])
    with pytest.raises(ValueError, match="at least two"):
        merge_grids(district.grids, [l3[0].code, l3[0].code])
    with pytest.raises(ValueError, match="not in the grid list"):
        merge_grids(district.grids, [l3[0].code, "430102001001999"])
    with pytest.raises(ValueError, match="expected a level-3 grid"):
        merge_grids(district.grids, [l3[0].code, l3[0].parent_code])
    apart = row(0.01, 0.01, 0.01)
    with pytest.raises(ValueError, match="not adjacent"):
        merge_grids(apart, [apart[0].code, apart[2].code])


def test_merge_keeps_lowest_code(district: District) -> None:
    grids = row(0.01, 0.01, 0.01)
    out = merge_grids(grids, [grids[2].code, grids[1].code], name="merged")
    assert [g.code for g in out] == [grids[0].code, grids[1].code]
    assert out[1].name == "merged" and out[0] is grids[0]
    assert out[1].geometry.symmetric_difference(box(113.81, 27.6, 113.83, 27.61)).area < 1e-15


def test_split_halves(district: District) -> None:
    for g in sorted(district.level(3), key=lambda g: g.code)[:40]:
        out = split_grid(district.grids, g.code)
        by = {x.code: x for x in out}
        first = by[g.code]
        second = next(x for x in out if x.code not in {y.code for y in district.grids})
        assert second.code.startswith(g.parent_code) and second.parent_code == g.parent_code
        for half in (first, second):
            assert isinstance(half.geometry, Polygon) and half.geometry.is_valid
        union = shapely.union_all([first.geometry, second.geometry])
        assert union.area == pytest.approx(g.geometry.area, rel=1e-9)
        assert union.symmetric_difference(g.geometry).area <= 1e-9 * g.geometry.area
        minx, miny, maxx, maxy = g.geometry.bounds
        wide = (maxx - minx) * np.cos(np.radians((miny + maxy) / 2)) >= maxy - miny
        if wide:
            assert first.geometry.centroid.x < second.geometry.centroid.x
        else:
            assert first.geometry.centroid.y > second.geometry.centroid.y
        assert len(out) == len(district.grids) + 1


def test_split_codes_and_errors() -> None:
    grids = row(0.02, 0.01)
    out = split_grid(grids, grids[0].code)
    assert [g.code for g in out] == [f"{PARENT}001", f"{PARENT}003", f"{PARENT}002"]
    assert out[0].geometry.equals(box(113.8, 27.6, 113.81, 27.61))  # the western half keeps the code
    out = split_grid(grids, grids[0].code, new_code=f"{PARENT}042", name="east")
    assert out[1].code == f"{PARENT}042" and out[1].name == "east"
    with pytest.raises(ValueError, match="already used"):
        split_grid(grids, grids[0].code, new_code=f"{PARENT}002")
    with pytest.raises(ValueError, match="starting with the parent code"):
        split_grid(grids, grids[0].code, new_code="430102001002001")
    with pytest.raises(ValueError, match="not in the grid list"):
        split_grid(grids, f"{PARENT}777")
    tall = [toy(f"{PARENT}001", box(113.8, 27.6, 113.801, 27.61))]
    out = split_grid(tall, tall[0].code)
    assert out[0].geometry.centroid.y > out[1].geometry.centroid.y  # the northern half keeps the code


def test_split_inserts_cut_points_into_neighbours() -> None:
    grids = row(0.02, 0.01)
    x1, x2 = grids[0].geometry.bounds[2], grids[1].geometry.bounds[2]
    north = Polygon([(113.8, 27.61), (x1, 27.61), (x2, 27.61), (x2, 27.62), (113.8, 27.62)])
    grids.append(toy(f"{PARENT}009", north))  # north of both, sharing their vertices
    grids.append(toy(f"{PARENT}008", box(113.8, 27.59, x2, 27.6)))  # south of both, one long edge
    out = split_grid(grids, grids[0].code)
    assert shapely.coverage_is_valid(np.array([g.geometry for g in out[:-1]]))
    by = {g.code: g for g in out}
    assert shapely.get_num_coordinates(by[f"{PARENT}009"].geometry) == 7  # the cut's north end inserted
    assert by[f"{PARENT}009"].geometry.symmetric_difference(north).area < 1e-15


# --------------------------------------------------------------------------- what-if


def test_balance_stats_by_hand() -> None:
    s = BalanceStats.of(np.array([2, 4, 6]), outside=1)
    std = float(np.std([2, 4, 6]))
    assert (s.grids, s.incidents, s.outside, s.max, s.mean) == (3, 12, 1, 6, 4.0)
    assert s.max_over_mean == pytest.approx(1.5)
    assert s.std == pytest.approx(std) and s.cv == pytest.approx(std / 4.0)
    empty = BalanceStats.of(np.zeros(3, dtype=int), outside=0)
    assert empty.mean == 0 and empty.cv is None and empty.max_over_mean is None


def test_whatif_toy_counts() -> None:
    old = row(0.01, 0.01, 0.01)
    new = merge_grids(old, [old[1].code, old[2].code])
    xs = np.array([113.801, 113.802, 113.811, 113.812, 113.813, 113.814, 113.821, 113.822, 113.823, 113.824,
                   113.825, 113.826, 100.0])  # 2, 4, 6 per grid, 1 outside
    ys = np.full(len(xs), 27.605)
    w = workload_whatif(xs, ys, GridIndex(old), GridIndex(new), days=30)
    assert w.before.to_dict() == {
        "grids": 3, "incidents": 12, "outside": 1, "max": 6, "mean": 4.0,
        "max_over_mean": 1.5,
        "cv": pytest.approx(np.std([2, 4, 6]) / 4.0),
        "std": pytest.approx(np.std([2, 4, 6])),
    }
    assert (w.after.grids, w.after.incidents, w.after.max, w.after.mean) == (2, 12, 10, 6.0)
    assert [(g.code, g.before, g.after) for g in w.per_grid] == [
        (f"{PARENT}001", 2, 2), (f"{PARENT}002", 4, 10), (f"{PARENT}003", 6, None),
    ]
    out = json.loads(json.dumps(w.to_dict()))
    assert out["days"] == 30 and out["incidents"] == 13
    assert set(out) == {"days", "incidents", "before", "after", "per_grid"}
    text = w.table()
    assert "before" in text and "after" in text and f"{PARENT}003" in text and f"{PARENT}001" not in text


def test_whatif_random_points(district: District, redraw: Redraw) -> None:
    new, info = redraw
    old_idx, new_idx = GridIndex(district.grids), GridIndex(new)
    rng = np.random.default_rng(3)
    minx, miny, maxx, maxy = old_idx.bounds
    lons = rng.uniform(minx, maxx, 20_000)
    lats = rng.uniform(miny, maxy, 20_000)
    w = workload_whatif(lons, lats, old_idx, new_idx, days=7)
    assert w.before.incidents + w.before.outside == w.after.incidents + w.after.outside == 20_000
    assert w.before.incidents == w.after.incidents  # the redraw keeps the outline
    assert sum(g.before or 0 for g in w.per_grid) == w.before.incidents
    assert sum(g.after or 0 for g in w.per_grid) == w.after.incidents
    assert (w.before.grids, w.after.grids) == (138, 138)
    counts = np.array([g.after for g in w.per_grid if g.after is not None])
    assert w.after.std == pytest.approx(counts.std())
    assert w.after.cv == pytest.approx(counts.std() / counts.mean())
    assert w.after.max_over_mean == pytest.approx(counts.max() / counts.mean())
    by = {g.code: g for g in w.per_grid}
    a, b = info["merged"]
    assert by[b].after is None and by[info["new_code"]].before is None
    assert by[a].after == by[a].before + by[b].before
    c = info["split"]
    assert by[c].after + by[info["new_code"]].after == by[c].before
    assert [g.code for g in w.per_grid] == sorted(by)
