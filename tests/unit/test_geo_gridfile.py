"""Grid files: round trips (GeoJSON, GPKG, zipped Shapefile), CRS handling, property errors, parents."""

from __future__ import annotations

import dataclasses
import json
import warnings
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely.geometry import LineString, MultiPolygon, Polygon, box

from geo.district import build_sample_district
from geo.errors import GeoError, GridFileError
from geo.gcj02 import transform_geometry
from geo.gridfile import (
    GridFile,
    assemble_draft,
    assign_parents,
    read_grid_file,
    write_grid_file,
)
from geo.model import Grid

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def grids() -> list[Grid]:
    return list(build_sample_district().grids)


def frame(grids: list[Grid], crs: str | None = "EPSG:4326") -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "code": [g.code for g in grids],
            "level": [g.level for g in grids],
            "name": [g.name for g in grids],
            "parent_code": [g.parent_code for g in grids],
        },
        geometry=[g.geometry for g in grids],
        crs=crs,
    )


def feature_collection(path: Path, features: list[dict]) -> Path:
    """Write a GeoJSON FeatureCollection of (properties, geometry) dicts without a CRS member."""
    fc = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": f["properties"], "geometry": shapely.geometry.mapping(f["geometry"])}
            for f in features
        ],
    }
    path.write_text(json.dumps(fc), encoding="utf-8")
    return path


def assert_same(read: list[Grid], expected: list[Grid], tolerance: float = 0.0) -> None:
    by_code = {g.code: g for g in expected}
    assert sorted(g.code for g in read) == sorted(by_code)
    for g in read:
        e = by_code[g.code]
        assert (g.level, g.name, g.parent_code) == (e.level, e.name, e.parent_code)
        assert shapely.equals_exact(g.geometry, e.geometry, tolerance=tolerance), g.code


SQUARE = box(113.80, 27.60, 113.81, 27.61)


# ------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("suffix", [".geojson", ".json", ".gpkg"])
def test_write_read_round_trip(tmp_path: Path, grids: list[Grid], suffix: str) -> None:
    calls: list[tuple[int, int]] = []
    path = write_grid_file(grids, tmp_path / f"grids{suffix}", progress=lambda d, t: calls.append((d, t)))
    assert path.exists() and calls[-1] == (len(grids), len(grids))
    got = read_grid_file(path)
    assert isinstance(got, GridFile)
    assert got.source_crs == "EPSG:4326"
    assert got.feature_count == len(grids) and got.path == str(path)
    assert_same(got.grids, grids)


def test_gpkg_has_one_layer_per_level(tmp_path: Path, grids: list[Grid]) -> None:
    path = write_grid_file(grids, tmp_path / "grids.gpkg")
    got = read_grid_file(path)
    assert got.layers == ["grids_l1", "grids_l2", "grids_l3"]
    only = read_grid_file(path, layer="grids_l2")
    assert only.layers == ["grids_l2"]
    assert {g.level for g in only.grids} == {2} and len(only.grids) == 29
    with pytest.raises(GridFileError, match="no layer 'nope'.*grids_l1"):
        read_grid_file(path, layer="nope")


def test_write_overwrites_existing_file(tmp_path: Path, grids: list[Grid]) -> None:
    path = tmp_path / "grids.gpkg"
    write_grid_file(grids, path)
    write_grid_file([g for g in grids if g.level == 1], path)
    assert read_grid_file(path).feature_count == 5


def test_write_unknown_suffix(tmp_path: Path, grids: list[Grid]) -> None:
    with pytest.raises(GridFileError, match="expected a .gpkg, .geojson or .json"):
        write_grid_file(grids, tmp_path / "grids.kml")


def test_zipped_shapefile_round_trip(tmp_path: Path, grids: list[Grid]) -> None:
    shp_dir = tmp_path / "shp"
    shp_dir.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "parent_code" is truncated to "parent_cod" by the format
        frame(grids).to_file(shp_dir / "grids.shp", engine="pyogrio", encoding="utf-8")
    archive = tmp_path / "grids.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for part in shp_dir.iterdir():
            zf.write(part, f"export/{part.name}")  # inside a folder, as zip tools often do
    got = read_grid_file(archive)
    assert got.layers == ["grids"] and got.source_crs == "EPSG:4326"
    assert_same(got.grids, grids)


def test_chunked_reading_reports_progress(tmp_path: Path, grids: list[Grid]) -> None:
    path = write_grid_file(grids, tmp_path / "grids.gpkg")
    calls: list[tuple[int, int]] = []
    got = read_grid_file(path, chunk_size=50, progress=lambda d, t: calls.append((d, t)))
    totals = {t for _, t in calls}
    assert totals == {172} and calls[-1] == (172, 172) and len(calls) >= 4  # one layer per level, 50 at a time
    assert sorted(g.code for g in got.grids) == sorted(g.code for g in grids)


def test_geojson_is_read_in_one_pass(tmp_path: Path, grids: list[Grid]) -> None:
    """GeoJSON has no random access: chunks would re-parse the file each time, so it is one chunk."""
    path = write_grid_file(grids, tmp_path / "grids.geojson")
    calls: list[tuple[int, int]] = []
    got = read_grid_file(path, chunk_size=50, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(172, 172)]
    assert [g.code for g in got.grids] == [g.code for g in grids]


# --------------------------------------------------------------------------------------------- CRS


def test_projected_cgcs2000_file_read_back_to_wgs84(tmp_path: Path, grids: list[Grid]) -> None:
    path = tmp_path / "grids_4547.gpkg"
    frame(grids).to_crs("EPSG:4547").to_file(path, layer="grids", engine="pyogrio")
    got = read_grid_file(path)
    assert got.source_crs == "EPSG:4547"
    assert_same(got.grids, grids, tolerance=1e-6)


def test_crs_override_for_file_without_crs(tmp_path: Path, grids: list[Grid]) -> None:
    projected = frame(grids).to_crs("EPSG:4547").set_crs(None, allow_override=True)
    path = tmp_path / "no_crs.geojson"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "'crs' was not provided": that is the point
        projected.to_file(path, engine="pyogrio")
    with pytest.raises(GridFileError, match="--crs") as info:
        read_grid_file(path)
    assert str(path) in str(info.value)
    got = read_grid_file(path, crs="EPSG:4547")
    assert got.source_crs == "EPSG:4547"
    assert_same(got.grids, grids, tolerance=1e-6)


def test_cgcs2000_geographic(tmp_path: Path, grids: list[Grid]) -> None:
    path = tmp_path / "cgcs.gpkg"
    frame(grids, crs="EPSG:4490").to_file(path, engine="pyogrio")
    got = read_grid_file(path)
    assert got.source_crs == "EPSG:4490"
    assert_same(got.grids, grids, tolerance=1e-6)


@pytest.mark.parametrize("name", ["GCJ-02", "gcj02", "Gcj-02"])
def test_gcj02_file(tmp_path: Path, grids: list[Grid], name: str) -> None:
    gcj = [dataclasses.replace(g, geometry=transform_geometry(g.geometry, to="gcj02")) for g in grids]
    path = tmp_path / "gcj.geojson"
    frame(gcj).to_file(path, engine="pyogrio")  # declares EPSG:4326: the override wins
    got = read_grid_file(path, crs=name)
    assert got.source_crs == "GCJ-02"
    assert_same(got.grids, grids, tolerance=1e-7)


def test_unknown_crs(tmp_path: Path, grids: list[Grid]) -> None:
    path = write_grid_file(grids[:5], tmp_path / "g.geojson")
    with pytest.raises(GridFileError, match="CRS 'EPSG:999999' is not known"):
        read_grid_file(path, crs="EPSG:999999")


def test_lonlat_file_without_crs_is_wgs84(tmp_path: Path) -> None:
    path = feature_collection(tmp_path / "g.geojson", [{"properties": {"code": "1", "level": 1}, "geometry": SQUARE}])
    got = read_grid_file(path)
    assert got.source_crs == "EPSG:4326" and got.grids[0].geometry.equals(SQUARE)
    assert got.grids[0].name == "" and got.grids[0].parent_code is None


# -------------------------------------------------------------------------------------- properties


def test_case_insensitive_properties_and_integer_codes(tmp_path: Path) -> None:
    path = feature_collection(
        tmp_path / "g.geojson",
        [
            {"properties": {"CODE": 430102001, "Level": 1, "NAME": "解放街道", "Parent_Code": None}, "geometry": SQUARE},
            {"properties": {"CODE": 430102001001, "Level": 2, "NAME": None, "Parent_Code": 430102001}, "geometry": SQUARE},
        ],
    )
    got = read_grid_file(path).grids
    assert [(g.code, g.level, g.name, g.parent_code) for g in got] == [
        ("430102001", 1, "解放街道", None),
        ("430102001001", 2, "", "430102001"),
    ]


def test_float_codes_become_digit_strings(tmp_path: Path) -> None:
    path = feature_collection(
        tmp_path / "g.geojson",
        [
            {"properties": {"code": 430102001001.0, "level": 2.0, "parent_code": 430102001.0}, "geometry": SQUARE},
            {"properties": {"code": 430102001002.0, "level": 2.0, "parent_code": None}, "geometry": SQUARE},
        ],
    )
    got = read_grid_file(path).grids
    assert [(g.code, g.level, g.parent_code) for g in got] == [
        ("430102001001", 2, "430102001"),
        ("430102001002", 2, None),
    ]


def test_text_codes_with_trailing_zero_decimals(tmp_path: Path) -> None:
    path = feature_collection(
        tmp_path / "g.geojson",
        [{"properties": {"code": " 430102001002.0 ", "level": "2"}, "geometry": SQUARE}],
    )
    got = read_grid_file(path).grids
    assert (got[0].code, got[0].level) == ("430102001002", 2)


def test_foreign_codes_are_not_validated(tmp_path: Path) -> None:
    path = feature_collection(tmp_path / "g.geojson", [{"properties": {"code": "A-7", "level": 3}, "geometry": SQUARE}])
    assert read_grid_file(path).grids[0].code == "A-7"


def test_missing_code_names_the_feature(tmp_path: Path) -> None:
    path = feature_collection(
        tmp_path / "g.geojson",
        [
            {"properties": {"code": "430102001", "level": 1}, "geometry": SQUARE},
            {"properties": {"code": None, "level": 1}, "geometry": SQUARE},
        ],
    )
    with pytest.raises(GridFileError, match=r"feature 1: property 'code' is missing") as info:
        read_grid_file(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, GeoError)


def test_no_code_property_at_all(tmp_path: Path) -> None:
    path = feature_collection(tmp_path / "g.geojson", [{"properties": {"id": 1, "level": 1}, "geometry": SQUARE}])
    with pytest.raises(GridFileError, match="feature 0: property 'code' is missing"):
        read_grid_file(path)


def test_non_whole_numeric_code(tmp_path: Path) -> None:
    path = feature_collection(tmp_path / "g.geojson", [{"properties": {"code": 12.5, "level": 1}, "geometry": SQUARE}])
    with pytest.raises(GridFileError, match="feature 0: code is the non-whole number 12.5"):
        read_grid_file(path)


@pytest.mark.parametrize("level", [0, 4, "x", 2.5])
def test_bad_level(tmp_path: Path, level: object) -> None:
    path = feature_collection(tmp_path / "g.geojson", [{"properties": {"code": "1", "level": level}, "geometry": SQUARE}])
    with pytest.raises(GridFileError, match="feature 0: level .* expected 1, 2 or 3"):
        read_grid_file(path)


def test_missing_level_without_level_argument(tmp_path: Path) -> None:
    path = feature_collection(tmp_path / "g.geojson", [{"properties": {"code": "1"}, "geometry": SQUARE}])
    with pytest.raises(GridFileError, match="feature 0: property 'level' is missing.*level=N"):
        read_grid_file(path)


def test_level_only_import(tmp_path: Path, grids: list[Grid]) -> None:
    l3 = [g for g in grids if g.level == 3]
    path = tmp_path / "l3.geojson"
    gdf = frame(l3).drop(columns=["level", "parent_code"])
    gdf.to_file(path, engine="pyogrio")
    got = read_grid_file(path, level=3).grids
    assert len(got) == 138 and {g.level for g in got} == {3}
    assert all(g.parent_code is None for g in got)


def test_level_only_import_refuses_other_levels(tmp_path: Path, grids: list[Grid]) -> None:
    path = write_grid_file(grids, tmp_path / "all.geojson")
    with pytest.raises(GridFileError, match=r"feature 0: level 1 is not valid; expected 3"):
        read_grid_file(path, level=3)
    with pytest.raises(GridFileError, match="level=5"):
        read_grid_file(path, level=5)


# -------------------------------------------------------------------------------------- geometries


def test_geometry_kinds(tmp_path: Path) -> None:
    bowtie = Polygon([(113.80, 27.60), (113.81, 27.61), (113.81, 27.60), (113.80, 27.61)])
    two = MultiPolygon([SQUARE, box(113.82, 27.60, 113.83, 27.61)])
    path = feature_collection(
        tmp_path / "g.geojson",
        [
            {"properties": {"code": "1", "level": 1}, "geometry": bowtie},
            {"properties": {"code": "2", "level": 1}, "geometry": MultiPolygon([SQUARE])},
            {"properties": {"code": "3", "level": 1}, "geometry": two},
        ],
    )
    got = read_grid_file(path).grids
    assert got[0].geometry.geom_type == "Polygon" and not got[0].geometry.is_valid  # kept for validation
    assert got[1].geometry.geom_type == "Polygon" and got[1].geometry.equals(SQUARE)
    assert got[2].geometry.geom_type == "MultiPolygon" and len(got[2].geometry.geoms) == 2


def test_non_polygonal_geometry_refused(tmp_path: Path) -> None:
    path = feature_collection(
        tmp_path / "g.geojson",
        [
            {"properties": {"code": "1", "level": 1}, "geometry": SQUARE},
            {"properties": {"code": "2", "level": 1}, "geometry": LineString([(113.8, 27.6), (113.9, 27.7)])},
        ],
    )
    with pytest.raises(GridFileError, match="feature 1: geometry is a LineString; expected a Polygon"):
        read_grid_file(path)


def test_null_geometry_refused(tmp_path: Path) -> None:
    path = tmp_path / "g.geojson"
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [{"type": "Feature", "properties": {"code": "1", "level": 1}, "geometry": None}],
            }
        )
    )
    with pytest.raises(GridFileError, match="feature 0: geometry is no geometry"):
        read_grid_file(path)


def test_missing_file_and_garbage(tmp_path: Path) -> None:
    with pytest.raises(GridFileError, match="file not found"):
        read_grid_file(tmp_path / "nope.geojson")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(GridFileError, match="not a readable zip"):
        read_grid_file(bad)


# ----------------------------------------------------------------------------------------- parents


def test_assign_parents_by_containment(grids: list[Grid]) -> None:
    stripped = [dataclasses.replace(g, parent_code=None) for g in grids]
    got = assign_parents(stripped, [])
    assert [g.parent_code for g in got] == [g.parent_code for g in grids]


def test_assign_parents_from_candidates(grids: list[Grid]) -> None:
    l3 = [dataclasses.replace(g, parent_code=None) for g in grids if g.level == 3]
    got = assign_parents(l3, grids)
    assert [g.parent_code for g in got] == [g.parent_code for g in grids if g.level == 3]


def test_assign_parents_keeps_given_parent_and_handles_none_and_ties() -> None:
    left = Grid("100", 1, "left", box(0, 0, 1, 1))
    right = Grid("200", 1, "right", box(1, 0, 2, 1))
    given = Grid("100001", 2, "given", box(0.1, 0.1, 0.2, 0.2), parent_code="999")
    straddle = Grid("100002", 2, "straddle", box(0.2, 0.2, 1.1, 0.8))  # mostly in `left`
    outside = Grid("100003", 2, "outside", box(5, 5, 6, 6))
    got = {g.code: g.parent_code for g in assign_parents([left, right, given, straddle, outside])}
    assert got["100001"] == "999"
    assert got["100002"] == "100"
    assert got["100003"] is None
    # overlapping candidates both containing the inner point: the larger intersection wins
    a = Grid("300", 1, "a", box(0, 0, 1, 1))
    b = Grid("400", 1, "b", box(0.4, 0, 1.4, 1))
    tie = Grid("300001", 2, "tie", box(0.5, 0.2, 1.3, 0.8))
    assert assign_parents([tie], [a, b])[0].parent_code == "400"
    assert assign_parents([tie], [b, a])[0].parent_code == "400"


def test_assign_parents_many_children_fast() -> None:
    parents = [Grid(f"{i:03d}", 1, "", box(i, 0, i + 1, 1)) for i in range(100)]
    rng = np.random.default_rng(1)
    xs = rng.uniform(0, 99.9, 20_000)
    children = [Grid(f"c{i}", 2, "", box(x, 0.2, x + 0.05, 0.3)) for i, x in enumerate(xs)]
    got = assign_parents(children, parents)
    expected = [f"{int(x + 0.025):03d}" for x in xs]  # the parent holding most of the child
    assert [g.parent_code for g in got] == expected


# ------------------------------------------------------------------------------------------- draft


def renumbered(g: Grid, offset: int = 500) -> Grid:
    return dataclasses.replace(g, code=g.code[:9] + f"{int(g.code[9:12]) + offset:03d}", parent_code=None)


def test_assemble_draft_single_level(grids: list[Grid]) -> None:
    imported = [renumbered(g) for g in grids if g.level == 2]
    draft = assemble_draft(imported, grids, level=2)
    assert [g.level for g in draft] == sorted(g.level for g in draft)
    assert len(draft) == len(grids)
    old = {g.code: g for g in grids}
    new = {g.code: g for g in draft}
    assert {c for c, g in new.items() if g.level == 1} == {c for c, g in old.items() if g.level == 1}
    for g in draft:
        if g.level == 2:  # parents found among the base's level 1
            assert g.parent_code == g.code[:9]
        if g.level == 3:  # orphans re-parented among the new level 2
            assert g.parent_code == g.code[:9] + f"{int(g.code[9:12]) + 500:03d}"


def test_assemble_draft_keeps_children_of_unchanged_codes(grids: list[Grid]) -> None:
    imported = [dataclasses.replace(g, parent_code=None, name=g.name + "*") for g in grids if g.level == 2]
    draft = assemble_draft(imported, grids, level=2)
    assert [g.parent_code for g in draft if g.level == 3] == [g.parent_code for g in grids if g.level == 3]
    assert all(g.name.endswith("*") for g in draft if g.level == 2)


def test_assemble_draft_whole_file(grids: list[Grid]) -> None:
    imported = [dataclasses.replace(g, parent_code=None) for g in reversed(grids)]
    draft = assemble_draft(imported, [], level=None)
    assert {g.code: g.parent_code for g in draft} == {g.code: g.parent_code for g in grids}
    assert [g.level for g in draft] == sorted(g.level for g in draft)


def test_assemble_draft_refuses_other_levels(grids: list[Grid]) -> None:
    with pytest.raises(GridFileError, match="has level 1; expected 2"):
        assemble_draft(grids, grids, level=2)


def test_assemble_draft_level_3_and_level_1(grids: list[Grid]) -> None:
    l3 = [dataclasses.replace(g, parent_code=None) for g in grids if g.level == 3]
    draft = assemble_draft(l3, grids, level=3)
    assert {g.code: g.parent_code for g in draft} == {g.code: g.parent_code for g in grids}
    l1 = [dataclasses.replace(g, code="9" + g.code[1:]) for g in grids if g.level == 1]
    draft = assemble_draft(l1, grids, level=1)
    assert all(g.parent_code == "9" + g.code[1:9] for g in draft if g.level == 2)
    assert [g.parent_code for g in draft if g.level == 3] == [g.parent_code for g in grids if g.level == 3]
