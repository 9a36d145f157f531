"""The validation report of a draft grid version: every check, tolerances, no cascades, report shapes."""

from __future__ import annotations

import dataclasses
import json

import pytest
import shapely
from shapely.geometry import LineString, Point, Polygon
from shapely.geometry.base import BaseGeometry

from geo.district import build_sample_district
from geo.localframe import metres_to_degrees_point, snap, to_degrees
from geo.model import Building, Device, Grid
from geo.synthetic import build_tessellation
from geo.validate import CHECKS, Finding, ValidationReport, validate_grids

pytestmark = pytest.mark.unit

L1 = "430102001"
WEST, EAST = L1 + "001", L1 + "002"
# level-3 quadrants (x0, y0, x1, y1 in metres from geo.localframe.CENTER), numbered west→east, north→south
QUADRANTS = {
    WEST + "001": (0, 200, 200, 400),
    WEST + "002": (200, 200, 400, 400),
    WEST + "003": (0, 0, 200, 200),
    WEST + "004": (200, 0, 400, 200),
    EAST + "001": (400, 200, 600, 400),
    EAST + "002": (600, 200, 800, 400),
    EAST + "003": (400, 0, 600, 200),
    EAST + "004": (600, 0, 800, 200),
}


def rect(x0: float, y0: float, x1: float, y1: float) -> BaseGeometry:
    """An axis-aligned rectangle drawn in metres, in WGS84 on the 1e-7° lattice."""
    return snap(to_degrees(Polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])))


def poly(*pts: tuple[float, float]) -> BaseGeometry:
    """A polygon drawn in metres (not checked for validity), in WGS84 on the lattice."""
    return Polygon([metres_to_degrees_point(x, y) for x, y in pts])


def hierarchy(l3: dict[str, BaseGeometry] | None = None) -> list[Grid]:
    """1 L1 square, 2 L2 halves, 4 L3 quadrants each; parents are the exact unions of the clean children.

    `l3` replaces some level-3 geometries after the parents were built (to plant faults).
    """
    clean = {code: rect(*q) for code, q in QUADRANTS.items()}
    l2 = {
        p: shapely.coverage_union_all([g for c, g in clean.items() if c.startswith(p)]) for p in (WEST, EAST)
    }
    grids = [Grid(L1, 1, "street", shapely.coverage_union_all(list(l2.values())))]
    grids += [Grid(code, 2, f"community {code}", geom, L1) for code, geom in l2.items()]
    geoms = {**clean, **(l3 or {})}
    grids += [Grid(code, 3, f"grid {code}", geoms[code], code[:12]) for code in QUADRANTS]
    return grids


def building(grid_code: str, n: int, x: float, y: float, size: float = 20.0) -> Building:
    """A square footprint of `size` metres with its south-west corner at (x, y)."""
    return Building(f"{grid_code}{n:05d}", grid_code, f"building {n}", rect(x, y, x + size, y + size))


def centre_buildings() -> list[Building]:
    """One 20 m building in the middle of each quadrant."""
    return [
        building(code, 1, (q[0] + q[2]) / 2 - 10, (q[1] + q[3]) / 2 - 10) for code, q in QUADRANTS.items()
    ]


def summary(report: ValidationReport) -> set[tuple[str, str, tuple[str, ...]]]:
    """(severity, check, codes) of every finding."""
    return {(f.severity, f.check, f.codes) for f in report.findings}


def only(report: ValidationReport, check: str) -> list[Finding]:
    """The findings of one check."""
    return [f for f in report.findings if f.check == check]


def replace(grids: list[Grid], target: str, **changes: object) -> list[Grid]:
    """Replace fields of the grid whose code is `target`."""
    return [
        dataclasses.replace(g, **changes) if g.code == target else g  # type: ignore[arg-type]
        for g in grids
    ]


# --------------------------------------------------------------------------------------------- clean data


def test_sample_district_validates_with_no_findings() -> None:
    district = build_sample_district()
    stages: list[str] = []
    report = validate_grids(
        district.grids,
        buildings=district.buildings,
        devices=district.devices,
        progress=lambda stage, done, total: stages.append(stage),
    )
    assert report.findings == (), report.table()
    assert report.ok and report.errors == 0 and report.warnings == 0
    assert report.grid_counts == {1: 5, 2: 29, 3: 138}
    assert {"project", "validity", "overlap", "coverage", "sliver"} <= set(stages)


def test_hand_made_hierarchy_is_clean() -> None:
    report = validate_grids(hierarchy(), buildings=centre_buildings())
    assert report.findings == (), report.table()


def test_synthetic_tessellation_validates_clean() -> None:
    grids = build_tessellation(2000, seed=5)
    report = validate_grids(grids)
    assert report.findings == (), report.table()
    assert report.grid_counts[3] == 2000


# --------------------------------------------------------------------------------------------- acceptance


def test_planted_faults_give_exactly_those_six_findings() -> None:
    bowtie = poly((0, 0), (200, 200), (200, 0), (0, 200), (0, 0))
    grids = hierarchy(
        {
            WEST + "001": rect(0, 200, 210, 400),  # overlaps WEST 002 by 10 m × 200 m
            WEST + "003": bowtie,  # invalid
            EAST + "002": rect(600, 200, 830, 400),  # sticks out 30 m × 200 m on the district's edge
            EAST + "004": rect(610, 0, 800, 200),  # leaves a 10 m × 200 m gap in EAST
        }
    )
    grids = replace(grids, EAST + "001", code=EAST + "003")  # duplicate code
    buildings = [b for b in centre_buildings()]
    cut = building(WEST + "004", 2, 390, 150)  # 20 m square across the WEST/EAST boundary at x = 400
    buildings.append(cut)
    devices = [
        Device("smoke-1", "smoke", "s", Point(metres_to_degrees_point(300, 350)), WEST + "002"),
        Device(
            "fence-1",
            "fence",
            "f",
            LineString([metres_to_degrees_point(450, 50), metres_to_degrees_point(550, 50)]),
            EAST + "003",
        ),
        Device("smoke-2", "smoke", "on the bow-tie", Point(metres_to_degrees_point(150, 100)), WEST + "003"),
    ]
    report = validate_grids(grids, buildings=buildings, devices=devices)

    assert summary(report) == {
        ("error", "overlap", (WEST + "001", WEST + "002")),
        ("error", "gap", (EAST,)),
        ("error", "invalid_geometry", (WEST + "003",)),
        ("error", "outside_parent", (EAST + "002", EAST)),
        ("error", "duplicate_code", (EAST + "003",)),
        ("warning", "building_cut", (cut.code, WEST + "004", EAST + "003")),
    }, report.table()
    assert len(report.findings) == 6
    assert not report.ok and report.errors == 5 and report.warnings == 1

    by_check = {f.check: f for f in report.findings}
    assert by_check["overlap"].measure == pytest.approx(2000, rel=0.01)
    assert by_check["gap"].measure == pytest.approx(2000, rel=0.01)
    assert by_check["outside_parent"].measure == pytest.approx(6000, rel=0.01)
    assert by_check["building_cut"].measure == pytest.approx(200, rel=0.02)
    assert by_check["duplicate_code"].measure == 2
    assert f"coverage of {WEST} not checked until this is fixed" in by_check["invalid_geometry"].message
    assert "make_valid would make a MultiPolygon" in by_check["invalid_geometry"].message
    # locations are WGS84 pieces where the fault is
    overlap_piece = by_check["overlap"].location
    assert overlap_piece.geom_type == "Polygon"
    assert overlap_piece.representative_point().within(rect(199, 199, 211, 401))
    assert by_check["gap"].location.representative_point().within(rect(599, -1, 611, 201))
    assert by_check["outside_parent"].location.representative_point().within(rect(799, 199, 831, 401))
    for f in report.findings:
        assert all(c in f.message for c in f.codes if c != cut.code) or f.check == "duplicate_code"


# --------------------------------------------------------------------------------------------- each check


def test_invalid_geometry_reports_what_make_valid_makes_and_skips_the_cascade() -> None:
    bowtie = poly((0, 0), (200, 200), (200, 0), (0, 200), (0, 0))
    report = validate_grids(hierarchy({WEST + "003": bowtie}), buildings=centre_buildings())
    (f,) = report.findings
    assert (f.check, f.severity, f.codes) == ("invalid_geometry", "error", (WEST + "003",))
    assert "Self-intersection" in f.message and "MultiPolygon of 2 parts" in f.message
    assert f.measure == pytest.approx(20_000, rel=0.01)  # two triangles of half the quadrant
    assert f.location.geom_type == "Point"


def test_invalid_parent_skips_its_childrens_containment() -> None:
    grids = hierarchy()
    west = next(g for g in grids if g.code == WEST).geometry
    x0, y0, x1, y1 = west.bounds
    broken = Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)])
    report = validate_grids(replace(grids, WEST, geometry=broken))
    (f,) = report.findings
    assert f.check == "invalid_geometry" and "containment of its children" in f.message
    assert f"coverage of {L1}" in f.message


def test_non_polygon_and_empty_geometry_are_invalid() -> None:
    grids = replace(hierarchy(), WEST + "001", geometry=Point(113.85, 27.62))
    grids = replace(grids, WEST + "002", geometry=Polygon())
    found = summary(validate_grids(grids))
    assert found == {
        ("error", "invalid_geometry", (WEST + "001",)),
        ("error", "invalid_geometry", (WEST + "002",)),
    }


def test_attribute_checks() -> None:
    grids = hierarchy()
    grids = replace(grids, WEST + "001", code="")
    grids = replace(grids, WEST + "002", level=4)
    grids = replace(grids, EAST + "001", code="43010200100200A")  # not digits
    grids = replace(grids, EAST + "002", parent_code=None)  # missing parent (code implies EAST)
    grids = replace(grids, EAST + "003", parent_code="430102001999")  # unknown parent (code implies EAST)
    report = validate_grids(grids)
    found = summary(report)
    assert ("error", "missing_code", ("<no code #3>",)) in found
    assert ("error", "bad_level", (WEST + "002",)) in found
    assert ("warning", "malformed_code", ("43010200100200A",)) in found
    assert ("error", "missing_parent", (EAST + "002",)) in found
    assert ("error", "unknown_parent", (EAST + "003", "430102001999")) in found
    assert ("warning", "malformed_code", (EAST + "003",)) in found  # does not start with its parent's code
    # the bad-level grid is left out of WEST's coverage, so WEST's gap check is skipped (no cascade);
    # the grids with a missing or unknown parent are checked against the parent their code implies
    assert not only(report, "gap") and not only(report, "outside_parent")
    assert "the parent its code implies" in only(report, "missing_parent")[0].message


def test_malformed_code_length_and_prefix() -> None:
    grids = [
        Grid("43010200", 1, "short", rect(0, 0, 100, 100)),
        Grid("430102002", 1, "ok", rect(100, 0, 200, 100)),
    ]
    (f,) = validate_grids(grids).findings
    assert (f.check, f.severity, f.codes) == ("malformed_code", "warning", ("43010200",))
    assert "8 characters" in f.message


def test_duplicate_code_counts_the_grids() -> None:
    grids = [Grid("430102001", 1, "a", rect(0, 0, 100, 100)) for _ in range(3)]
    grids[2] = dataclasses.replace(grids[2], geometry=rect(100, 0, 200, 100))
    report = validate_grids(grids)
    dup = only(report, "duplicate_code")
    assert len(dup) == 1 and dup[0].measure == 3 and "3 grids" in dup[0].message


def test_level1_overlap_and_tolerance() -> None:
    a = Grid("430102001", 1, "a", rect(0, 0, 200, 200))
    b = Grid("430102002", 1, "b", rect(190, 0, 400, 200))  # 10 m × 200 m = 2,000 m2
    (f,) = validate_grids([a, b]).findings
    assert (f.check, f.codes) == ("overlap", ("430102001", "430102002"))
    assert f.measure == pytest.approx(2000, rel=0.01)
    assert validate_grids([a, b], tolerance_m2=2100).findings == ()
    c = Grid("430102002", 1, "c", rect(200, 0, 400, 200))  # shares an edge only
    assert validate_grids([a, c]).findings == ()


def test_contained_sibling_is_an_overlap() -> None:
    inner = rect(20, 220, 80, 280)
    grids = hierarchy() + [Grid(WEST + "005", 3, "inside 001", inner, WEST)]
    (f,) = validate_grids(grids).findings
    assert (f.check, f.codes) == ("overlap", (WEST + "001", WEST + "005"))
    assert f.measure == pytest.approx(3600, rel=0.01)


def test_cousin_overlap_is_reported_as_outside_parent_only() -> None:
    # WEST 002 pushed 10 m east into EAST 001: outside its parent, and not a sibling overlap
    report = validate_grids(hierarchy({WEST + "002": rect(200, 200, 410, 400)}))
    assert summary(report) == {("error", "outside_parent", (WEST + "002", WEST))}
    assert report.findings[0].measure == pytest.approx(2000, rel=0.01)


def test_outside_parent_tolerance() -> None:
    grids = hierarchy({EAST + "002": rect(600, 200, 830, 400)})
    assert summary(validate_grids(grids)) == {("error", "outside_parent", (EAST + "002", EAST))}
    assert validate_grids(grids, tolerance_m2=7000).findings == ()


def test_gap_one_finding_per_piece_and_tolerance() -> None:
    grids = hierarchy({EAST + "004": rect(610, 10, 800, 200), WEST + "001": rect(0, 200, 190, 400)})
    report = validate_grids(grids)
    gaps = only(report, "gap")
    assert report.findings == tuple(gaps)
    assert sorted(f.codes for f in gaps) == [(WEST,), (EAST,)]
    east = next(f for f in gaps if f.codes == (EAST,))
    assert east.measure == pytest.approx(10 * 200 + 10 * 190, rel=0.01)  # one L-shaped piece
    assert validate_grids(grids, tolerance_m2=5000).findings == ()


def test_gap_pieces_are_separate_findings() -> None:
    # two separate holes inside WEST 004 → two gap findings for WEST
    quadrant = rect(200, 0, 400, 200)
    holed = quadrant.difference(rect(220, 20, 240, 40)).difference(rect(300, 100, 330, 130))
    report = validate_grids(hierarchy({WEST + "004": holed}))
    gaps = only(report, "gap")
    assert len(gaps) == 2 and {f.codes for f in gaps} == {(WEST,)}
    assert sorted(round(f.measure or 0, -1) for f in gaps) == [400, 900]


def test_parent_with_no_children_is_one_gap() -> None:
    grids = [g for g in hierarchy() if not g.code.startswith(EAST) or g.code == EAST]
    (f,) = validate_grids(grids).findings
    assert (f.check, f.codes) == ("gap", (EAST,)) and "no children" in f.message
    # a draft of level-1 grids only: no gap reported for the absent levels
    assert validate_grids([g for g in hierarchy() if g.level == 1]).findings == ()


def test_sliver_by_compactness_and_by_area() -> None:
    thin = Grid("430102001", 1, "thin", rect(0, 0, 1000, 5))
    tiny = Grid("430102002", 1, "tiny", rect(0, 100, 5, 105))
    fine = Grid("430102003", 1, "fine", rect(0, 200, 100, 300))
    report = validate_grids([thin, tiny, fine])
    slivers = {f.codes[0]: f for f in only(report, "sliver")}
    assert report.findings == tuple(only(report, "sliver"))
    assert set(slivers) == {"430102001", "430102002"}
    assert slivers["430102001"].unit == "ratio" and slivers["430102001"].measure < 0.05
    assert slivers["430102001"].severity == "warning"
    assert slivers["430102002"].unit == "m2" and slivers["430102002"].measure == pytest.approx(25, rel=0.02)
    assert validate_grids([thin, tiny], sliver_ratio=0.01, sliver_area_m2=10).findings == ()


def test_building_outside_and_cut() -> None:
    far = building(WEST + "001", 9, 2000, 2000)
    half_out = building(EAST + "002", 9, 790, 300)  # half of it east of the district
    cut = building(WEST + "001", 8, 190, 300)
    nicked = Building("b-nick", WEST + "001", "nick", rect(150, 300, 200.05, 320))  # ~1 m2 across: tolerated
    report = validate_grids(hierarchy(), buildings=centre_buildings() + [far, half_out, cut, nicked])
    assert summary(report) == {
        ("warning", "building_outside", (far.code,)),
        ("warning", "building_outside", (half_out.code,)),
        ("warning", "building_cut", (cut.code, WEST + "001", WEST + "002")),
    }, report.table()
    outside = {f.codes[0]: f for f in only(report, "building_outside")}
    assert outside[far.code].measure == pytest.approx(400, rel=0.02)
    assert outside[half_out.code].measure == pytest.approx(200, rel=0.02)
    assert only(report, "building_cut")[0].measure == pytest.approx(200, rel=0.02)


def test_device_outside() -> None:
    inside = Device("d-in", "smoke", "in", Point(metres_to_degrees_point(100, 100)), WEST + "003")
    line = LineString([metres_to_degrees_point(-50, 100), metres_to_degrees_point(50, 100)])
    crossing = Device("d-line", "fence", "across", line, WEST + "003")
    away = Device("d-out", "camera", "out", Point(metres_to_degrees_point(3000, 100)), WEST + "003")
    report = validate_grids(hierarchy(), devices=[inside, crossing, away])
    (f,) = report.findings
    assert (f.severity, f.check, f.codes) == ("error", "device_outside", ("d-out",))
    assert "d-out" in f.message and f.location.equals(away.geometry)


# --------------------------------------------------------------------------------------------- report shapes


def planted_report() -> ValidationReport:
    return validate_grids(
        hierarchy({WEST + "001": rect(0, 200, 210, 400), EAST + "004": rect(610, 0, 800, 200)}),
        buildings=[building(WEST + "004", 2, 390, 150)],
    )


def test_to_dict_and_geojson_are_json_serializable() -> None:
    report = planted_report()
    d = json.loads(json.dumps(report.to_dict()))
    assert set(d) == {"ok", "errors", "warnings", "grid_counts", "counts", "findings"}
    assert d["ok"] is False and d["errors"] == 2 and d["warnings"] == 1
    assert d["counts"] == {"overlap": 1, "gap": 1, "building_cut": 1}
    assert d["grid_counts"] == {"1": 1, "2": 2, "3": 8}
    first = d["findings"][0]
    assert set(first) == {"severity", "check", "codes", "measure", "unit", "message", "location"}
    assert first["location"]["type"] in ("Polygon", "MultiPolygon")
    fc = json.loads(json.dumps(report.to_geojson()))
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 3
    feature = fc["features"][0]
    assert feature["type"] == "Feature" and "location" not in feature["properties"]
    assert shapely.geometry.shape(feature["geometry"]).is_valid


def test_table_names_codes_and_status() -> None:
    table = planted_report().table()
    for code in (WEST + "001", WEST + "002", EAST, WEST + "004"):
        assert code in table
    assert "overlap" in table and "NOT PUBLISHABLE" in table
    assert "OK: 0 error(s)" in validate_grids(hierarchy()).table()


def test_findings_sorted_errors_first_and_checks_known() -> None:
    report = planted_report()
    severities = [f.severity for f in report.findings]
    assert severities == sorted(severities, key=lambda s: s != "error")
    assert all(CHECKS[f.check] == f.severity for f in report.findings)


def test_progress_reports_stages() -> None:
    calls: list[tuple[str, int, int]] = []
    validate_grids(hierarchy(), buildings=centre_buildings(), progress=lambda *a: calls.append(a))
    assert all(0 <= done <= total for _, done, total in calls)
    assert [c[0] for c in calls][0] == "project"
