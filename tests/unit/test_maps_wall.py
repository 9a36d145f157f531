"""The map wall: the page shell (maps.wall) and the pure data helpers (maps.wallmodel)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import shapely
from shapely.geometry import Polygon, box, shape

from maps import STATIC_DIR
from maps.style import LIGHT_COLORS, NO_LIGHT_COLOR, QUIET_FILL, worst_light
from maps.wall import build_wall, page_config, tiles_of
from maps.wallmodel import (
    GridLight,
    counters,
    decimals_for,
    fit_zoom,
    heat_points,
    lights_by_grid,
    list_key,
    rounded,
    simplified,
    tolerance,
    zoom_bucket,
)

pytestmark = pytest.mark.unit

L1, L2A, L2B = "430102001", "430102001001", "430102001002"
A, B, C = "430102001001001", "430102001001002", "430102001002001"


# --- the page -------------------------------------------------------------------------------------
def external_urls(html: str) -> list[str]:
    """URLs of scripts, styles and other links of a page that leave the server."""
    return [u for u in re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html) if re.match(r"(?i)(https?:)?//", u)]


def config_of(html: str) -> dict[str, object]:
    m = re.search(r'<script id="gw-config" type="application/json">(.*?)</script>', html, re.S)
    assert m is not None, "no config in the page"
    return json.loads(m[1])  # type: ignore[no-any-return]


def test_the_page_loads_nothing_from_the_internet() -> None:
    html = build_wall(tiles="none")

    assert external_urls(html) == []
    assert "cdn.jsdelivr" not in html and "code.jquery" not in html and "bootstrap" not in html
    for local in ("/static/vendor/leaflet/leaflet.js", "/static/vendor/leaflet/leaflet.css",
                  "/static/vendor/leaflet.heat/leaflet-heat.js", "/static/wall.js", "/static/wall.css"):
        assert local in html
    assert '<link rel="icon" href="data:,">' in html  # no favicon request
    assert config_of(html)["tiles"] is None


def test_only_the_configured_tiles_leave_the_server() -> None:
    html = build_wall(tiles="OpenStreetMap")

    assert external_urls(html) == []  # tiles are requested by Leaflet, not linked
    urls = set(re.findall(r"https?://[^\s\"']+", html))
    assert urls and all("tile.openstreetmap.org" in u or "openstreetmap.org/copyright" in u for u in urls), urls


def test_folium_keeps_its_defaults_for_other_maps() -> None:
    import folium

    build_wall()

    assert any("cdn" in url for _, url in folium.Map.default_js)


def test_the_page_script_and_hooks_exist() -> None:
    html = build_wall(grid=L1, role="commander", username="street")
    js = (STATIC_DIR / "wall.js").read_text()

    for hook in ("gw-panel", "gw-count-open", "gw-count-yellow", "gw-count-red", "gw-count-escalated", "gw-incidents",
                 "gw-alert", "gw-crumbs", "gw-heat-toggle", "gw-heat-type", "gw-status"):
        assert f'id="{hook}"' in html, hook
    assert 'action="/logout"' in html
    assert config_of(html)["grid"] == L1 and config_of(html)["role"] == "commander"
    for name in ("ready", "level", "shownGrids", "incidents", "lastEventAt", "drill", "timings", "firstRender", "data-action",
                 "data-incident-id", "EventSource", "/wall/grids", "/wall/summary", "/wall/buildings", "/wall/heatmap"):
        assert name in js, name
    assert ".innerHTML" not in js  # user text is set as text only
    assert (STATIC_DIR / "wall.css").is_file()


def test_user_text_in_the_config_cannot_close_the_script_nor_reach_the_template_engine() -> None:
    html = build_wall(username="</script><script>alert(1)</script>{{ 7777*3 }}{% if 1 %}evaluated{% endif %}")

    assert "<script>alert(1)" not in html
    assert "23331" not in html and "evaluated{%" not in html.replace("evaluated{% endif", "x")
    assert config_of(html)["username"] == "</script><script>alert(1)</script>{{ 7777*3 }}{% if 1 %}evaluated{% endif %}"


def test_no_grid_names_or_incident_text_are_rendered_into_the_page() -> None:
    config = page_config(grid=None, role="admin", username="u", tiles=None, map_name="m")

    assert set(config) == {"grid", "role", "username", "tiles", "map", "api", "colors", "heat_days", "patrollers_every_s"}
    assert config["colors"]["lights"] == LIGHT_COLORS  # type: ignore[index]


@pytest.mark.parametrize(("setting", "tiles"), [("none", None), ("", None), ("NONE", None), ("OpenStreetMap", "OpenStreetMap"),
                                                ("http://tiles.local/{z}/{x}/{y}.png", "http://tiles.local/{z}/{x}/{y}.png")])
def test_tiles_setting(setting: str, tiles: str | None) -> None:
    got, attr = tiles_of(setting)
    assert got == tiles
    assert (attr is not None) == ("{" in setting)


# --- lights per grid --------------------------------------------------------------------------------
def test_a_grid_takes_the_worst_light_of_its_subtree_and_counts_its_open_incidents() -> None:
    lights = lights_by_grid([
        ((L1, L2A, A), "red"), ((L1, L2B, C), "green"), ((L1, L2B, C), "yellow"), ((L1, L2A, B), None),
    ])

    assert (lights[L1].light, lights[L1].open) == ("red", 4)
    assert (lights[L2B].light, lights[L2B].open) == ("yellow", 2)
    assert (lights[A].fill, lights[C].fill) == (LIGHT_COLORS["red"], LIGHT_COLORS["yellow"])
    assert (lights[B].light, lights[B].open, lights[B].fill) == (None, 1, NO_LIGHT_COLOR)  # open, no clock yet
    assert GridLight().fill == QUIET_FILL


def test_an_incident_outside_every_grid_colours_no_grid_and_a_repeated_code_counts_once() -> None:
    assert lights_by_grid([((None, None, None), "red")]) == {}
    assert lights_by_grid([((A, A, None), "green")])[A].open == 1


def test_lights_follow_the_route_chain_not_code_prefixes() -> None:
    lights = lights_by_grid([(("D1", "S-1", "U-17"), "red")])

    assert set(lights) == {"D1", "S-1", "U-17"}


@pytest.mark.parametrize(
    "lights, worst",
    [([], None), ([None], None), (["green", None], "green"), (["green", "yellow"], "yellow"), (["yellow", "red", "green"], "red")],
)
def test_worst_light(lights: list[str | None], worst: str | None) -> None:
    assert worst_light(lights) == worst


# --- simplification per zoom --------------------------------------------------------------------------
def test_tolerance_is_about_a_pixel_and_halves_per_zoom() -> None:
    assert tolerance(0) == pytest.approx(360 / 256)
    assert tolerance(13) == pytest.approx(tolerance(12) / 2)
    assert tolerance(12, 60.0) == pytest.approx(tolerance(12) / 2)
    assert zoom_bucket(12.7) == 12 and zoom_bucket(-3) == 0 and zoom_bucket(99) == 22
    assert decimals_for(tolerance(18)) == 6 and decimals_for(tolerance(5)) == 3


def test_fit_zoom_fits_the_box_in_the_viewport() -> None:
    bbox = (113.78, 27.57, 113.92, 27.67)  # the sample district: ~14 km
    z = fit_zoom(bbox)
    assert 11 <= z <= 13
    assert fit_zoom((113.85, 27.62, 113.8502, 27.6202)) == 22 or fit_zoom((113.85, 27.62, 113.8502, 27.6202)) > z
    assert fit_zoom((-180, -80, 180, 80)) <= 2


def wiggly(n: int = 400) -> Polygon:
    import math

    pts = [(113.85 + 0.01 * math.cos(2 * math.pi * i / n) * (1 + 0.0005 * (i % 2)),
            27.62 + 0.01 * math.sin(2 * math.pi * i / n)) for i in range(n)]
    return Polygon(pts)


def test_simplified_geometry_drops_vertices_when_zoomed_out_and_keeps_them_zoomed_in() -> None:
    poly = wiggly()

    far, near = simplified([poly], 14)[0], simplified([poly], 22)[0]  # a 2 km wide ring: ~230 px across at zoom 14

    assert len(far["coordinates"][0]) < 60 < len(near["coordinates"][0])
    assert shape(far).is_valid and shape(far).symmetric_difference(poly).area < 0.01 * poly.area
    assert all(len(str(c).split(".")[-1]) <= 6 for xy in near["coordinates"][0] for c in xy)


def test_simplification_keeps_shared_edges_of_neighbours_apart_from_pixels() -> None:
    a, b = box(0, 0, 1, 1), box(1, 0, 2, 1)
    out = simplified([a, b], 8)

    assert [shape(g).bounds for g in out] == [a.bounds, b.bounds]
    assert simplified([], 12) == []


def test_rounded_keeps_shapes_with_six_decimals() -> None:
    (g,) = rounded([box(113.1234567891, 27.1, 113.2, 27.2)])
    xs = [c[0] for c in g["coordinates"][0]]
    assert 113.123457 in xs and 113.1234567891 not in xs
    assert shapely.get_num_coordinates(shape(g)) == 5


# --- the side panel -------------------------------------------------------------------------------------
def test_the_list_is_sorted_red_yellow_green_no_light_then_newest() -> None:
    t = datetime(2026, 11, 23, tzinfo=UTC).timestamp()
    items = [
        {"id": "g-old", "light": "green", "created_ts": t}, {"id": "none", "light": None, "created_ts": t + 50},
        {"id": "r", "light": "red", "created_ts": t - 99}, {"id": "g-new", "light": "green", "created_ts": t + 10},
        {"id": "y", "light": "yellow", "created_ts": t},
    ]

    assert [i["id"] for i in sorted(items, key=list_key)] == ["r", "y", "g-new", "g-old", "none"]


def test_counters_count_open_yellow_red_and_escalated() -> None:
    items = [{"light": "red", "escalated": True}, {"light": "yellow"}, {"light": "red"}, {"light": None}, {"light": "green"}]

    assert counters(items) == {"open": 5, "yellow": 1, "red": 2, "escalated": 1}
    assert counters([]) == {"open": 0, "yellow": 0, "red": 0, "escalated": 0}


def test_heat_points_merge_close_points_and_weigh_them() -> None:
    pts = heat_points([(113.85001, 27.62001), (113.85002, 27.62002), (113.9, 27.7)])

    assert pts == [[27.62, 113.85, 2.0], [27.7, 113.9, 1.0]]
    assert heat_points([]) == []


def test_created_at_ties_keep_lights_first() -> None:
    now = datetime(2026, 11, 23, tzinfo=UTC)
    a = {"light": "green", "created_ts": (now + timedelta(hours=1)).timestamp()}
    b = {"light": "yellow", "created_ts": now.timestamp()}
    assert sorted([a, b], key=list_key) == [b, a]
