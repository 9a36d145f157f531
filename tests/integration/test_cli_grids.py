"""`gridwatch grids …` as a planner runs it, on a real SQLite store: planted faults, GCJ-02 and CGCS2000 files."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pytest
import shapely
from shapely.geometry import LineString, Point
from typer.testing import CliRunner

from api.cli import app
from geo.gcj02 import transform_geometry
from geo.gridfile import write_grid_file
from geo.localframe import metres_to_degrees_point
from geo.model import Device, District
from store import open_store
from tests.integration.apphelpers import sample_district
from tests.unit.test_geo_validate import (
    EAST,
    WEST,
    building,
    centre_buildings,
    hierarchy,
    poly,
    rect,
    replace,
)

pytestmark = pytest.mark.integration
PLANTED = Path(__file__).resolve().parents[1] / "fixtures" / "grids" / "planted_faults.geojson"
CUT = building(WEST + "004", 2, 390, 150)  # a 20 m building across the WEST/EAST boundary at x = 400


def planted_fault_grids() -> list:
    """The hand-made hierarchy with one overlap, one gap, one bow-tie, one child outside its parent, one duplicate code."""
    grids = hierarchy({
        WEST + "001": rect(0, 200, 210, 400),  # overlaps WEST 002 by 10 m × 200 m
        WEST + "003": poly((0, 0), (200, 200), (200, 0), (0, 200), (0, 0)),  # bow-tie: invalid
        EAST + "002": rect(600, 200, 830, 400),  # sticks out 30 m × 200 m on the district's edge
        EAST + "004": rect(610, 0, 800, 200),  # leaves a 10 m × 200 m gap in EAST
    })
    return replace(grids, EAST + "001", code=EAST + "003")  # duplicate code


def test_fixture_file_is_the_documented_planted_faults(tmp_path: Path) -> None:
    """tests/fixtures/grids/planted_faults.geojson is what planted_fault_grids() writes (regenerate: see below)."""
    fresh = write_grid_file(planted_fault_grids(), tmp_path / "planted.geojson")
    a, b = gpd.read_file(fresh), gpd.read_file(PLANTED)
    assert list(a["code"]) == list(b["code"])
    assert all(shapely.equals_exact(x, y, 1e-9) for x, y in zip(a.geometry, b.geometry, strict=True))


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A store whose current version is the clean hierarchy, with its buildings (and the cut one) and devices."""
    url = f"sqlite:///{tmp_path}/planner.db"
    devices = (
        Device("smoke-1", "smoke", "s", Point(metres_to_degrees_point(300, 350)), WEST + "002"),
        Device("fence-1", "fence", "f", LineString([metres_to_degrees_point(450, 50), metres_to_degrees_point(550, 50)]), EAST + "003"),
        Device("smoke-2", "smoke", "on the bow-tie", Point(metres_to_degrees_point(150, 100)), WEST + "003"),
    )
    store = open_store(url)
    store.migrate()
    store.load_district(District("test", tuple(hierarchy()), (*centre_buildings(), CUT), (), devices), "clean")
    store.close()
    monkeypatch.setenv("GRIDWATCH_DATABASE_URL", url)
    return url


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output + repr(result.exception)
    return result.output


def test_planted_faults_file_yields_exactly_those_findings(db: str, tmp_path: Path) -> None:
    out = run("grids", "import", str(PLANTED), "--label", "planted", "--actor", "planner-li")
    assert "5 error(s), 1 warning(s): errors block publishing" in out
    version = int(out.split("draft grid version ")[1].split()[0])
    report = json.loads(run("grids", "validate", str(version), "--json", "--geojson", str(tmp_path / "f.geojson"), code=1))
    found = {(f["severity"], f["check"], tuple(f["codes"])) for f in report["findings"]}
    assert found == {
        ("error", "overlap", (WEST + "001", WEST + "002")),
        ("error", "gap", (EAST,)),
        ("error", "invalid_geometry", (WEST + "003",)),
        ("error", "outside_parent", (EAST + "002", EAST)),
        ("error", "duplicate_code", (EAST + "003",)),
        ("warning", "building_cut", (CUT.code, WEST + "004", EAST + "003")),
    }
    measures = {f["check"]: f["measure"] for f in report["findings"]}
    assert measures["overlap"] == pytest.approx(2000, rel=0.01) and measures["gap"] == pytest.approx(2000, rel=0.01)
    features = json.loads((tmp_path / "f.geojson").read_text())["features"]
    assert len(features) == 6 and all(f["geometry"]["type"] for f in features)
    refused = run("grids", "publish", str(version), code=1)
    assert "5 validation error(s)" in refused
    assert "planted" not in run("grids", "list").split("*")[1].split("\n")[0]  # the current one is still "clean"


def test_gcj02_file_round_trips_to_wgs84(db: str, tmp_path: Path) -> None:
    """A planner's file drawn on a Chinese web map (GCJ-02) imports onto the WGS84 truth within 0.01 m."""
    truth = hierarchy()
    shifted = [type(g)(g.code, g.level, g.name, transform_geometry(g.geometry, to="gcj02"), g.parent_code) for g in truth]
    path = write_grid_file(shifted, tmp_path / "gcj.geojson")
    out = run("grids", "import", str(path), "--crs", "GCJ-02", "--label", "gcj")
    assert "(GCJ-02)" in out and "0 error(s), 1 warning(s)" in out  # the warning: CUT, across two grids already
    version = int(out.split("draft grid version ")[1].split()[0])
    store = open_store(db)
    imported = {g.code: g.geometry for g in store.grids(version=version)}
    store.close()
    for g in truth:
        # 1e-7° is about 1 cm: every vertex within that of the truth
        assert shapely.equals_exact(imported[g.code], g.geometry, tolerance=1e-7), g.code
    assert "grids: 0 added, 0 removed, 0 reshaped" in run("grids", "diff", str(version))


def test_cgcs2000_gauss_kruger_level3_only_import_and_export(db: str, tmp_path: Path) -> None:
    """An L3-only layer in EPSG:4547 (CGCS2000 / 3° Gauss-Krüger CM 114E): parents come from the current version."""
    truth = [g for g in hierarchy() if g.level == 3]
    frame = gpd.GeoDataFrame({"code": [g.code for g in truth], "name": [g.name for g in truth]},
                             geometry=[g.geometry for g in truth], crs="EPSG:4326").to_crs("EPSG:4547")
    frame.to_file(tmp_path / "l3.gpkg", layer="units", driver="GPKG")
    out = run("grids", "import", str(tmp_path / "l3.gpkg"), "--level", "3", "--label", "gk")
    assert "(EPSG:4547)" in out and "0 error(s)" in out
    version = int(out.split("draft grid version ")[1].split()[0])
    run("grids", "publish", str(version), "--actor", "planner-li")
    run("grids", "export", str(tmp_path / "out.gpkg"))
    layers = sorted(gpd.list_layers(tmp_path / "out.gpkg")["name"])
    assert layers == ["grids_l1", "grids_l2", "grids_l3"]
    l3 = gpd.read_file(tmp_path / "out.gpkg", layer="grids_l3")
    assert sorted(l3["parent_code"]) == sorted(g.parent_code for g in truth)


def test_clean_redraw_of_the_sample_district_publishes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path}/sample.db"
    monkeypatch.setenv("GRIDWATCH_DATABASE_URL", url)
    store = open_store(url)
    store.migrate()
    store.load_district(sample_district(), "sample")
    store.close()
    out = run("grids", "sample-redraw", str(tmp_path / "redraw.gpkg"))
    new_code = out.split("(new grid ")[1].split(")")[0]
    out = run("grids", "import", str(tmp_path / "redraw.gpkg"))
    assert "0 error(s), 0 warning(s): OK to publish" in out
    version = int(out.split("draft grid version ")[1].split()[0])
    diff = run("grids", "diff", str(version), "--days", "7")
    assert "1 added, 1 removed, 2 reshaped" in diff and new_code in diff and "workload what-if" in diff
    out = run("grids", "publish", str(version), "--policy", "move")
    assert f"grid version {version} is current" in out
    assert "only a draft can be published" in run("grids", "publish", str(version), code=2)


if __name__ == "__main__":  # regenerate the fixture file: python -m tests.integration.test_cli_grids
    write_grid_file(planted_fault_grids(), PLANTED)
