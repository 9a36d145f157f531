"""GCJ-02 ⇄ WGS84: known forward values, round trips under 1 cm, outside China, geometries."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from pyproj import Geod
from shapely.geometry import MultiPolygon, Point, Polygon

from geo.gcj02 import gcj02_to_wgs84, in_china, transform_geometry, wgs84_to_gcj02

pytestmark = pytest.mark.unit

GEOD = Geod(ellps="WGS84")

# WGS84 points across China (Beijing, Shanghai, Changsha, Urumqi, Harbin, Sanya, Lhasa, Shenzhen)
CITIES = np.array(
    [
        (116.397128, 39.916527),
        (121.473701, 31.230416),
        (112.938814, 28.228209),
        (87.616848, 43.825592),
        (126.534967, 45.803775),
        (109.511909, 18.252847),
        (91.140856, 29.645554),
        (114.057868, 22.543099),
    ]
)


def metres(lon1, lat1, lon2, lat2) -> np.ndarray:
    """Geodesic distance in metres between point arrays."""
    return np.asarray(GEOD.inv(lon1, lat1, lon2, lat2)[2])


def test_forward_known_value_tiananmen() -> None:
    # the commonly quoted pair for Tiananmen: WGS84 (116.397128, 39.916527) → GCJ-02 (116.40337, 39.91793)
    lon, lat = wgs84_to_gcj02(116.397128, 39.916527)
    assert isinstance(lon, float) and isinstance(lat, float)
    assert lon == pytest.approx(116.4033725, abs=1e-6)
    assert lat == pytest.approx(39.9179307, abs=1e-6)


def test_forward_offset_is_hundreds_of_metres() -> None:
    lon, lat = wgs84_to_gcj02(CITIES[:, 0], CITIES[:, 1])
    shift = metres(CITIES[:, 0], CITIES[:, 1], lon, lat)
    assert ((shift > 50) & (shift < 1000)).all()


@pytest.mark.parametrize("lon, lat", [tuple(p) for p in CITIES])
def test_round_trip_scalar_under_1cm(lon: float, lat: float) -> None:
    g_lon, g_lat = wgs84_to_gcj02(lon, lat)
    w_lon, w_lat = gcj02_to_wgs84(g_lon, g_lat)
    assert isinstance(w_lon, float)
    assert metres(lon, lat, w_lon, w_lat) < 0.01


def test_round_trip_array_under_1cm() -> None:
    rng = np.random.default_rng(3)
    lon = rng.uniform(75.0, 134.0, 20_000)
    lat = rng.uniform(18.0, 53.0, 20_000)
    g_lon, g_lat = wgs84_to_gcj02(lon, lat)
    assert isinstance(g_lon, np.ndarray) and g_lon.shape == lon.shape
    w_lon, w_lat = gcj02_to_wgs84(g_lon, g_lat)
    assert metres(lon, lat, w_lon, w_lat).max() < 0.01


def test_inverse_forward_residual_within_tolerance() -> None:
    g_lon, g_lat = CITIES[:, 0], CITIES[:, 1]  # treat them as GCJ-02 input
    w_lon, w_lat = gcj02_to_wgs84(g_lon, g_lat, tolerance_m=0.0001)
    f_lon, f_lat = wgs84_to_gcj02(w_lon, w_lat)
    assert metres(g_lon, g_lat, f_lon, f_lat).max() < 0.001


def test_outside_china_unchanged() -> None:
    lon = np.array([2.3522, -74.006, 139.6917, 151.2093])  # Paris, New York, Tokyo, Sydney
    lat = np.array([48.8566, 40.7128, 35.6895, -33.8688])
    assert not in_china(lon, lat).any()
    for convert in (wgs84_to_gcj02, gcj02_to_wgs84):
        out_lon, out_lat = convert(lon, lat)
        np.testing.assert_array_equal(out_lon, lon)
        np.testing.assert_array_equal(out_lat, lat)
    assert wgs84_to_gcj02(2.3522, 48.8566) == (2.3522, 48.8566)


def test_mixed_inside_outside_array() -> None:
    lon = np.array([116.397128, 2.3522])
    lat = np.array([39.916527, 48.8566])
    g_lon, g_lat = wgs84_to_gcj02(lon, lat)
    assert g_lon[0] != lon[0] and g_lon[1] == lon[1] and g_lat[1] == lat[1]


def test_nan_passes_through() -> None:
    lon, lat = gcj02_to_wgs84(np.array([np.nan, 116.4]), np.array([39.9, 39.9]))
    assert np.isnan(lon[0]) and np.isfinite(lon[1])


def test_no_convergence_raises() -> None:
    with pytest.raises(ValueError, match="did not converge"):
        gcj02_to_wgs84(116.4, 39.9, tolerance_m=1e-9, max_iter=1)


def test_transform_geometry_polygon_round_trip() -> None:
    poly = Polygon([(113.84, 27.61), (113.86, 27.61), (113.86, 27.63), (113.84, 27.63)])
    gcj = transform_geometry(poly, to="gcj02")
    assert gcj.geom_type == "Polygon"
    expected = wgs84_to_gcj02(113.84, 27.61)
    assert gcj.exterior.coords[0] == pytest.approx(expected)
    back = transform_geometry(gcj, to="wgs84")
    assert shapely.equals_exact(back, poly, tolerance=1e-9)


def test_transform_geometry_multipolygon_point_and_z() -> None:
    multi = MultiPolygon(
        [
            Polygon([(113.0, 27.0), (113.1, 27.0), (113.1, 27.1)]),
            Polygon([(114.0, 28.0), (114.1, 28.0), (114.1, 28.1)]),
        ]
    )
    out = transform_geometry(multi, to="gcj02")
    assert out.geom_type == "MultiPolygon" and len(out.geoms) == 2
    pz = transform_geometry(Point(113.0, 27.0, 42.0), to="gcj02")
    assert pz.has_z and pz.z == 42.0


def test_transform_geometry_array_and_bad_target() -> None:
    geoms = np.array([Point(113.0, 27.0), Point(2.35, 48.85)], dtype=object)
    out = transform_geometry(geoms, to="gcj02")
    assert out[0].x != 113.0 and out[1].x == 2.35
    with pytest.raises(ValueError, match="expected 'wgs84' or 'gcj02'"):
        transform_geometry(Point(113.0, 27.0), to="bd09")  # type: ignore[arg-type]
