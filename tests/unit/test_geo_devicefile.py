"""Device registry import: CSV / GeoJSON / GeoPackage, vendor identities, validation, grid assignment."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import geopandas as gpd
import pytest
import shapely
from shapely.geometry import LineString, MultiPoint, Point, Polygon, box

from geo.devicefile import (
    DeviceFileError,
    DeviceImport,
    RowError,
    assign_grid,
    normalize_identity,
    normalize_mac,
    read_devices,
    reassign,
    zone_grids,
)
from geo.errors import OutsideDistrictError
from geo.index import GridIndex
from geo.model import Device, Grid

pytestmark = pytest.mark.unit

# a 2 × 2 district of 0.01° cells: NW A, NE B / SW C, SE D
X0, Y0, STEP = 113.85, 27.62, 0.01
A, B, C, D = (f"430102001001{n:03d}" for n in (1, 2, 3, 4))
CELLS = {A: (0, 1), B: (1, 1), C: (0, 0), D: (1, 0)}
HEADER = "id,kind,name,format,identity,interval_s,lon,lat,wkt,zones"


def cell(code: str) -> Polygon:
    i, j = CELLS[code]
    return box(X0 + i * STEP, Y0 + j * STEP, X0 + (i + 1) * STEP, Y0 + (j + 1) * STEP)


@pytest.fixture(scope="module")
def index() -> GridIndex:
    return GridIndex([Grid(code, 3, f"cell {code[-1]}", cell(code)) for code in CELLS])


def write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ CSV


def test_csv_points_and_lines(tmp_path: Path, index: GridIndex) -> None:
    path = write(
        tmp_path / "devices.csv",
        HEADER,
        "smoke-1,smoke,Stair smoke,,,300,113.855,27.625,,",
        "thermal-1,Thermal,,gridwatch,,,113.865,27.635,,",
        # a fence zone line starting in D (its alarm host) and running west into C
        'fence-1,fence,Fence 1,,,60,,,"LINESTRING (113.868 27.625, 113.851 27.625)",Z1;Z2',
        'yard,sensor,Yard,,,,,,"POLYGON ((113.854 27.632, 113.868 27.632, 113.868 27.638, 113.854 27.638, 113.854 27.632))",',
    )
    result = read_devices(path, index=index)
    assert result.ok, result.errors
    by_id = {d.id: d for d in result.devices}
    assert [d.id for d in result.devices] == ["smoke-1", "thermal-1", "fence-1", "yard"]
    smoke = by_id["smoke-1"]
    assert (smoke.kind, smoke.name, smoke.grid_code, smoke.format, smoke.identity, smoke.interval_s) == (
        "smoke", "Stair smoke", C, "gridwatch", None, 300.0
    )
    assert smoke.geometry.equals(Point(113.855, 27.625))
    assert by_id["thermal-1"].kind == "thermal" and by_id["thermal-1"].name == "thermal-1"
    assert by_id["thermal-1"].grid_code == B and by_id["thermal-1"].interval_s is None
    fence = by_id["fence-1"]
    # owner: the grid of its midpoint (where its alarms are routed and where geo.diff places it), then D
    assert fence.grid_code == C and fence.zones == ("Z1", "Z2")
    assert index.locate(fence.anchor().x, fence.anchor().y).l3 == C  # type: ignore[union-attr]
    assert zone_grids(fence, index) == (C, D)
    # polygon over A and B, more of it in B
    assert by_id["yard"].grid_code == B and zone_grids(by_id["yard"], index) == (B, A)


def test_csv_with_bom_semicolon_zones_and_blank_rows(tmp_path: Path, index: GridIndex) -> None:
    path = tmp_path / "excel.csv"
    path.write_text("\ufeffID,Kind,Lon,Lat,Zones\r\ns-1,smoke,113.855,27.625, Z1 ; Z2 \r\n,,,,\r\n", encoding="utf-8")
    result = read_devices(path, index=index)
    assert result.ok and [(d.id, d.zones) for d in result.devices] == [("s-1", ("Z1", "Z2"))]


def test_default_kind(tmp_path: Path, index: GridIndex) -> None:
    path = write(tmp_path / "d.csv", "id,lon,lat,kind", "s-1,113.855,27.625,", "t-1,113.855,27.626,thermal")
    result = read_devices(path, index=index, default_kind="smoke")
    assert [(d.id, d.kind) for d in result.devices] == [("s-1", "smoke"), ("t-1", "thermal")]
    no_kind = write(tmp_path / "e.csv", "id,lon,lat", "s-1,113.855,27.625")
    assert read_devices(no_kind, index=index, default_kind="sensor").devices[0].kind == "sensor"
    with pytest.raises(DeviceFileError, match="no 'kind' column"):
        read_devices(no_kind, index=index)
    with pytest.raises(ValueError, match="default_kind 'flame'"):
        read_devices(no_kind, index=index, default_kind="flame")


def test_line_crossing_grids_is_owned_where_it_is_routed(tmp_path: Path, index: GridIndex) -> None:
    """The owner is the grid of the line's midpoint (alerts.routing.device_point), whichever way it is drawn."""
    from alerts.routing import device_point

    east_west = LineString([(113.868, 27.625), (113.851, 27.625)])
    assert assign_grid(east_west, index) == (C, (C, D))
    assert assign_grid(LineString(list(east_west.coords)[::-1]), index) == (C, (C, D))
    # an L-shaped zone C → D → B: its midpoint is the corner, in D; then the segments nearest to it
    ell = LineString([(113.855, 27.625), (113.865, 27.625), (113.865, 27.635)])
    owner, grids = assign_grid(ell, index)
    assert owner == D and set(grids) == {B, C, D} and grids[0] == D
    # a closed ring around the centre starting in A: its midpoint lies in D
    ring = LineString([(113.855, 27.635), (113.865, 27.635), (113.865, 27.625), (113.855, 27.625), (113.855, 27.635)])
    owner, grids = assign_grid(ring, index)
    assert owner == D and set(grids) == {A, B, C, D}
    for line in (east_west, ell, ring):  # import, publish (geo.diff) and routing agree
        lon, lat = device_point(Device("x", "fence", "x", line, "?"))
        assert index.locate(lon, lat).l3 == assign_grid(line, index)[0]  # type: ignore[union-attr]


def test_line_along_a_shared_edge_and_touching_a_corner(index: GridIndex) -> None:
    # on the C|D edge: both grids hold it for its whole length → tie → lower code
    along = LineString([(113.86, 27.622), (113.86, 27.628)])
    assert assign_grid(along, index) == (C, (C, D))
    # a line in C whose end touches B's corner only at a point: B is not listed
    touching = LineString([(113.855, 27.625), (113.86, 27.63)])
    owner, grids = assign_grid(touching, index)
    assert owner == C and B not in grids and A not in grids


def test_point_on_a_shared_edge_follows_the_index(index: GridIndex) -> None:
    p = Point(113.86, 27.625)
    l3 = index.locate(p.x, p.y).l3  # type: ignore[union-attr]
    assert l3 == C and assign_grid(p, index) == (l3, (l3,))


def test_assign_grid_outside_and_wrong_type(index: GridIndex) -> None:
    with pytest.raises(OutsideDistrictError):
        assign_grid(Point(0, 0), index)
    with pytest.raises(OutsideDistrictError):
        assign_grid(LineString([(0, 0), (1, 1)]), index)
    with pytest.raises(OutsideDistrictError):
        assign_grid(box(0, 0, 1, 1), index)
    with pytest.raises(ValueError, match="MultiPoint"):
        assign_grid(MultiPoint([(113.855, 27.625)]), index)
    # a line partly outside: only the grids it runs through inside the district
    partly = LineString([(113.84, 27.625), (113.855, 27.625)])
    assert assign_grid(partly, index) == (C, (C,))


def test_reassign_under_new_grids(tmp_path: Path, index: GridIndex) -> None:
    path = write(
        tmp_path / "d.csv",
        HEADER,
        "s-1,smoke,,,,,113.855,27.625,,",
        "s-2,smoke,,,,,113.865,27.625,,",
        'f-1,fence,,,,,,,"LINESTRING (113.868 27.625, 113.851 27.625)",',
    )
    devices = read_devices(path, index=index).devices
    assert reassign(devices, index) == []
    # republished: C and D merged into one grid E (code 005); A and B unchanged
    merged = cell(C).union(cell(D))
    new = GridIndex([Grid(A, 3, "A", cell(A)), Grid(B, 3, "B", cell(B)), Grid("430102001001005", 3, "E", merged)])
    assert reassign(devices, new) == [("s-1", "430102001001005"), ("s-2", "430102001001005"), ("f-1", "430102001001005")]
    # a device outside every new grid is left out (logged), not given a grid
    only_a = GridIndex([Grid(A, 3, "A", cell(A))])
    assert reassign(devices, only_a) == []
    moved = dataclasses.replace(devices[0], grid_code=A)
    assert reassign([moved], index) == [("s-1", C)]


# ----------------------------------------------------------------------------------- GeoJSON/GPKG


@pytest.mark.parametrize(("crs", "suffix"), [("EPSG:4547", ".geojson"), ("EPSG:3857", ".geojson"), ("EPSG:3857", ".gpkg")])
def test_geo_files_are_reprojected(tmp_path: Path, index: GridIndex, crs: str, suffix: str) -> None:
    fence = LineString([(113.868, 27.625), (113.851, 27.625)])
    frame = gpd.GeoDataFrame(
        {
            "id": ["s-1", "f-1", "cam-1"],
            "kind": ["smoke", "fence", "camera"],
            "name": ["smoke", "fence", "gate"],
            "interval_s": [60.0, None, 30.0],
            "zones": [None, "Z1;Z2", None],
            "camera": [None, None, "front_gate"],
        },
        geometry=[Point(113.855, 27.625), fence, Point(113.865, 27.635)],
        crs="EPSG:4326",
    ).to_crs(crs)
    assert frame.geometry.iloc[0].x > 1000  # really projected
    path = tmp_path / f"devices{suffix}"
    frame.to_file(path, engine="pyogrio")
    result = read_devices(path, index=index)
    assert result.ok, result.errors
    by_id = {d.id: d for d in result.devices}
    assert by_id["s-1"].geometry.distance(Point(113.855, 27.625)) < 1e-7
    assert by_id["s-1"].grid_code == C and by_id["s-1"].interval_s == 60.0
    assert by_id["f-1"].grid_code == C and by_id["f-1"].zones == ("Z1", "Z2") and by_id["f-1"].interval_s is None
    assert zone_grids(by_id["f-1"], index) == (C, D)
    assert (by_id["cam-1"].format, by_id["cam-1"].identity, by_id["cam-1"].grid_code) == ("frigate", "frigate:front_gate", B)


def test_geojson_without_crs_and_feature_errors(tmp_path: Path, index: GridIndex) -> None:
    def feature(props: dict, geom: object) -> dict:
        return {"type": "Feature", "properties": props, "geometry": None if geom is None else shapely.geometry.mapping(geom)}

    fc = {
        "type": "FeatureCollection",
        "features": [
            feature({"id": "ok", "kind": "smoke", "zones": ["Z1", "Z2"]}, Point(113.855, 27.625)),
            feature({"id": "nogeom", "kind": "smoke"}, None),
            feature({"id": "multi", "kind": "smoke"}, MultiPoint([(113.855, 27.625), (113.856, 27.625)])),
            feature({"id": "projected", "kind": "smoke"}, Point(12674000.0, 3200000.0)),
        ],
    }
    path = tmp_path / "d.geojson"
    path.write_text(json.dumps(fc), encoding="utf-8")
    result = read_devices(path, index=index)
    assert [(d.id, d.zones) for d in result.devices] == [("ok", ("Z1", "Z2"))]
    assert [(e.row, e.device_id, e.field) for e in result.errors] == [
        (2, "nogeom", "geometry"), (3, "multi", "geometry"), (4, "projected", "geometry")
    ]
    assert "no geometry" in result.errors[0].message
    assert "MultiPoint; expected a POINT, LINESTRING or POLYGON" in result.errors[1].message
    assert "out of range" in result.errors[2].message and "CRS" in result.errors[2].message


def test_gpkg_layers(tmp_path: Path, index: GridIndex) -> None:
    path = tmp_path / "d.gpkg"
    frame = gpd.GeoDataFrame({"id": ["s-1"], "kind": ["smoke"]}, geometry=[Point(113.855, 27.625)], crs="EPSG:4326")
    frame.to_file(path, layer="cameras", engine="pyogrio")
    frame.assign(id=["s-2"]).to_file(path, layer="other", engine="pyogrio")
    with pytest.raises(DeviceFileError, match="2 geometry layers"):
        read_devices(path, index=index)
    assert [d.id for d in read_devices(path, index=index, layer="other").devices] == ["s-2"]
    with pytest.raises(DeviceFileError, match="no layer 'nope'"):
        read_devices(path, index=index, layer="nope")


# ------------------------------------------------------------------------------- vendor identity


def test_vendor_identity_columns(tmp_path: Path, index: GridIndex) -> None:
    path = write(
        tmp_path / "vendors.csv",
        "id,kind,format,identity,lon,lat,wkt,camera,mac,channel,device,token,host,zone,friendly_name,unique_id",
        "cam-1,camera,,,113.855,27.625,,front_door,,,,,,,,",
        "hik-1,thermal,,,113.855,27.626,,,4419B66D2485,,,,,,,",
        "hik-2,thermal,hikvision,,113.855,27.627,,,44-19-b6-6d-24-86,2,,,,,,",
        "dh-1,camera,dahua,,113.855,27.628,,,,,vto-1,,,,,",
        "dh-2,camera,dahua,,113.856,27.628,,,,3,vto-1,,,,,",
        "ov-1,camera,onvif,,113.857,27.628,,,,,cam-7,VideoSource_1,,,,",
        "ov-2,camera,onvif,,113.858,27.628,,,,Profile_2,cam-7,,,,,",
        'fz-1,fence,,,,,"LINESTRING (113.868 27.625, 113.851 27.625)",,,,,,host-07,3,,',
        "zb-1,smoke,,,113.855,27.635,,,,,,,,,kitchen/smoke,",
        "ha-1,sensor,,,113.856,27.635,,,,,,,,,,0x00158d0001a2b3c4_smoke",
        "id-1,camera,,frigate:back_yard,113.857,27.635,,,,,,,,,,",
        "id-2,thermal,,HIKVISION:4419.b66d.2487,113.858,27.635,,,,,,,,,,",
        "id-3,camera,frigate,frigate:side,113.859,27.635,,side,,,,,,,,",
    )
    result = read_devices(path, index=index)
    assert result.ok, result.errors
    got = {d.id: (d.format, d.identity) for d in result.devices}
    assert got == {
        "cam-1": ("frigate", "frigate:front_door"),
        "hik-1": ("hikvision", "hikvision:44:19:b6:6d:24:85/1"),
        "hik-2": ("hikvision", "hikvision:44:19:b6:6d:24:86/2"),
        "dh-1": ("dahua", "dahua:vto-1/0"),
        "dh-2": ("dahua", "dahua:vto-1/3"),
        "ov-1": ("onvif", "onvif:cam-7/VideoSource_1"),
        "ov-2": ("onvif", "onvif:cam-7/Profile_2"),
        "fz-1": ("fence", "fence:host-07/3"),
        "zb-1": ("zigbee2mqtt", "zigbee2mqtt:kitchen/smoke"),
        "ha-1": ("homeassistant", "homeassistant:0x00158d0001a2b3c4_smoke"),
        "id-1": ("frigate", "frigate:back_yard"),
        "id-2": ("hikvision", "hikvision:44:19:b6:6d:24:87"),
        "id-3": ("frigate", "frigate:side"),
    }


@pytest.mark.parametrize(
    ("raw", "mac"),
    [
        ("4419B66D2485", "44:19:b6:6d:24:85"),
        ("44-19-b6-6d-24-85", "44:19:b6:6d:24:85"),
        ("44:19:B6:6D:24:85", "44:19:b6:6d:24:85"),
        ("4419.b66d.2485", "44:19:b6:6d:24:85"),
        (" 44 19 b6 6d 24 85 ", "44:19:b6:6d:24:85"),
    ],
)
def test_normalize_mac(raw: str, mac: str) -> None:
    assert normalize_mac(raw) == mac


@pytest.mark.parametrize("raw", ["4419B66D248", "4419B66D24851", "4419B66D248G", ""])
def test_normalize_mac_refuses(raw: str) -> None:
    with pytest.raises(ValueError, match="12 hex digits"):
        normalize_mac(raw)


def test_normalize_identity() -> None:
    assert normalize_identity("hikvision:4419B66D2485/01") == "hikvision:44:19:b6:6d:24:85/1"
    assert normalize_identity("hikvision:192.168.1.64/02") == "hikvision:192.168.1.64/2"
    assert normalize_identity("hikvision:fe80:0:0::1/1") == "hikvision:fe80::1/1"
    # no default for a missing last part: the whole NVR / device / alarm host is registered
    assert normalize_identity("hikvision:44-19-B6-6D-24-85") == "hikvision:44:19:b6:6d:24:85"
    assert normalize_identity("dahua:vto-1") == "dahua:vto-1"
    assert normalize_identity("dahua:vto-1/002") == "dahua:vto-1/2"
    assert normalize_identity("onvif:cam-7") == "onvif:cam-7"
    assert normalize_identity("fence:host-07") == "fence:host-07"
    assert normalize_identity(" Fence:host-07/Z3 ") == "fence:host-07/Z3"
    assert normalize_identity("zigbee2mqtt:living/room/smoke") == "zigbee2mqtt:living/room/smoke"
    for bad, match in [("frigate", "expected <format>:<key>"), ("frigate:", "expected <format>:<key>"),
                       ("nikon:x", "names format 'nikon'"), ("hikvision:cam-1/1", "MAC address .* or an IP"),
                       ("dahua:vto-1/", "expected dahua:<device>"), ("dahua:vto-1/a b", "channel"),
                       ("fence:a+b/1", "fence alarm host"), ("frigate:a\tb", "control characters")]:
        with pytest.raises(ValueError, match=match):
            normalize_identity(bad)


# ------------------------------------------------------------------------------------ validation


def test_every_row_error_is_collected(tmp_path: Path, index: GridIndex) -> None:
    rows = [
        "good,smoke,,,,,113.855,27.625,,",                                     # 1
        ",smoke,,,,,113.855,27.625,,",                                         # 2 id missing
        "a/b,smoke,,,,,113.855,27.625,,",                                      # 3 '/'
        "a+b,smoke,,,,,113.855,27.625,,",                                      # 4 '+'
        "a#b,smoke,,,,,113.855,27.625,,",                                      # 5 '#'
        "$sys,smoke,,,,,113.855,27.625,,",                                     # 6 leading '$'
        "a b,smoke,,,,,113.855,27.625,,",                                      # 7 whitespace
        "good,smoke,,,,,113.856,27.625,,",                                     # 8 duplicate id
        "k1,flame,,,,,113.855,27.625,,",                                       # 9 kind
        "k2,,,,,,113.855,27.625,,",                                            # 10 kind missing
        "c1,smoke,,,,,190,27.625,,",                                           # 11 lon range
        "c2,smoke,,,,,113.855,north,,",                                        # 12 lat not a number
        "c3,smoke,,,,,114.5,27.625,,",                                         # 13 outside the district
        "c4,smoke,,,,,,,,",                                                    # 14 no location
        'w1,smoke,,,,,,,"POINT (113.855",',                                    # 15 bad WKT
        'w2,smoke,,,,,,,"MULTIPOINT ((113.855 27.625))",',                     # 16 type
        'w3,sensor,,,,,,,"POLYGON ((113.852 27.622, 113.858 27.628, 113.858 27.622, 113.852 27.628, 113.852 27.622))",',  # 17 bow-tie
        'w4,fence,,,,,,,"LINESTRING (113.855 27.625, 113.855 27.625)",',      # 18 too few points
        'w5,fence,,,,,,,"LINESTRING (114.4 27.625, 114.5 27.625)",',          # 19 line outside
        "i1,smoke,,,,0,113.855,27.625,,",                                      # 20 interval 0
        "i2,smoke,,,,-5,113.855,27.625,,",                                     # 21 interval negative
        "i3,smoke,,,,soon,113.855,27.625,,",                                   # 22 interval text
        "f1,camera,,nikon,,,113.855,27.625,,",                                 # 23 format unknown
        "f2,camera,,frigate,,,113.855,27.625,,",                               # 24 vendor format, no identity
        "f3,camera,,gridwatch,frigate:x,,113.855,27.625,,",                    # 25 identity vs format
        "f4,camera,,,frigate:gate,,113.855,27.625,,",                          # 26 ok
        "f5,camera,,,frigate:gate,,113.856,27.625,,",                          # 27 duplicate identity
        "z1,fence,,,,,113.855,27.625,,Z1;Z1",                                  # 28 duplicate zone
        "m1,flame,,,nope,-1,999,27.625,,",                                     # 29 several at once
    ]
    path = write(tmp_path / "bad.csv", HEADER, *rows)
    result = read_devices(path, index=index)
    assert sorted(d.id for d in result.devices) == ["f4", "good"]
    got = [(e.row, e.field) for e in result.errors]
    assert got == [
        (2, "id"), (3, "id"), (4, "id"), (5, "id"), (6, "id"), (7, "id"), (8, "id"),
        (9, "kind"), (10, "kind"), (11, "lon"), (12, "lat"), (13, "lon"), (14, "wkt"),
        (15, "wkt"), (16, "wkt"), (17, "wkt"), (18, "wkt"), (19, "wkt"),
        (20, "interval_s"), (21, "interval_s"), (22, "interval_s"),
        (23, "format"), (24, "identity"), (25, "identity"), (27, "identity"), (28, "zones"),
        (29, "kind"), (29, "identity"), (29, "interval_s"), (29, "lon"),
    ]
    msg = {(e.row, e.field): e.message for e in result.errors}
    for e in result.errors:
        assert str(e).startswith(f"row {e.row}" + (f" (id {e.device_id!r})" if e.device_id else "") + ": ")
        assert "expected" in e.message and f"row {e.row}" not in e.message, e.message
    assert result.errors[0].device_id is None and "id is missing" in msg[2, "id"]
    assert result.errors[1].device_id == "a/b"
    assert "'/', '+', '#'" in msg[3, "id"] and "whitespace" in msg[7, "id"]
    assert "already used by row 1" in msg[8, "id"]
    assert "'flame'" in msg[9, "kind"] and "fence, thermal, camera, smoke, sensor" in msg[9, "kind"]
    assert "outside the district" in msg[13, "lon"] and "lon and lat, or wkt" in msg[14, "wkt"]
    assert "cannot be read" in msg[15, "wkt"]
    assert "Self-intersection" in msg[17, "wkt"]
    assert "Too few points" in msg[18, "wkt"]
    assert "outside the district" in msg[19, "wkt"]
    assert "positive number of seconds" in msg[20, "interval_s"]
    assert "'nikon'" in msg[23, "format"] and "frigate" in msg[23, "format"]
    assert "needs the vendor identity" in msg[24, "identity"]
    assert "expected no identity" in msg[25, "identity"]
    assert "'frigate:gate' is already used by row 26" in msg[27, "identity"]
    assert "'Z1'" in msg[28, "zones"]
    assert str(result.errors[0]) == "row 2: id is missing; expected a non-empty device id"
    assert str(result.errors[1]).startswith("row 3 (id 'a/b'): device id 'a/b': expected")


def test_vendor_column_errors(tmp_path: Path, index: GridIndex) -> None:
    path = write(
        tmp_path / "v.csv",
        "id,kind,format,identity,lon,lat,camera,mac,channel,device,host,zone",
        "v1,camera,,,113.855,27.625,,12345,,,,",                  # bad MAC
        "v2,camera,,,113.855,27.625,,,,vto-1,,",                  # device: dahua or onvif?
        "v3,camera,,,113.855,27.625,gate,4419B66D2485,,,,",       # two formats
        "v4,fence,,,113.855,27.625,,,,,host-1,",                  # fence zone missing
        "v5,camera,frigate,,113.855,27.625,,4419B66D2485,,,,",    # column of another format
        "v6,camera,,frigate:a,113.855,27.625,b,,,,,",             # identity ≠ columns
        "v7,camera,,,113.855,27.625,,4419B66D2485,c!,,,",         # channel neither number nor name
        "v8,camera,onvif,,113.855,27.625,,,,cam,,",               # onvif token missing
    )
    result = read_devices(path, index=index)
    assert result.devices == []
    fields = {e.device_id: (e.field, e.message) for e in result.errors}
    assert len(result.errors) == 8
    assert fields["v1"][0] == "mac" and "12 hex digits" in fields["v1"][1]
    assert fields["v2"][0] == "format" and "dahua and onvif" in fields["v2"][1]
    assert fields["v3"][0] == "format" and "several formats" in fields["v3"][1]
    assert fields["v4"][0] == "host" and "fence zone" in fields["v4"][1]
    assert fields["v5"][0] == "mac" and "do not fit format 'frigate'" in fields["v5"][1]
    assert fields["v6"][0] == "identity" and "differs from 'frigate:b'" in fields["v6"][1]
    assert "channel 'c!'" in fields["v7"][1]
    assert "token" in fields["v8"][1]


def test_file_level_errors(tmp_path: Path, index: GridIndex) -> None:
    with pytest.raises(DeviceFileError, match="file not found"):
        read_devices(tmp_path / "missing.csv", index=index)
    with pytest.raises(DeviceFileError, match="unknown file type .xlsx"):
        read_devices(write(tmp_path / "d.xlsx", "x"), index=index)
    with pytest.raises(DeviceFileError, match="no 'id' column"):
        read_devices(write(tmp_path / "a.csv", "name,kind,lon,lat", "x,smoke,1,1"), index=index)
    with pytest.raises(DeviceFileError, match="no location columns"):
        read_devices(write(tmp_path / "b.csv", "id,kind,lon", "x,smoke,1"), index=index)
    extra = read_devices(write(tmp_path / "c.csv", "id,kind,lon,lat", "x,smoke,113.855,27.625,oops"), index=index)
    assert [(e.row, e.field) for e in extra.errors] == [(1, "row")]
    empty = read_devices(write(tmp_path / "e.csv", "id,kind,lon,lat"), index=index)
    assert empty == DeviceImport([], []) and empty.ok
    assert RowError(1, None, "id", "m") == RowError(1, None, "id", "m")
