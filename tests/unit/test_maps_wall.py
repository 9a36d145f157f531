"""maps.wall.build_wall on hand-made grids and incidents: render, then read the layers back (folium-style)."""

from __future__ import annotations

import json
import re
from typing import Any

import folium
import pytest

from maps.style import LIGHT_COLORS, NO_LIGHT_COLOR, QUIET_FILL, light_color, worst_light
from maps.wall import build_wall

pytestmark = pytest.mark.unit

RED, YELLOW, GREEN = LIGHT_COLORS["red"], LIGHT_COLORS["yellow"], LIGHT_COLORS["green"]
L1 = "430102001"
L2A, L2B = "430102001001", "430102001002"
A, B, C, D = "430102001001001", "430102001001002", "430102001002001", "430102001002002"


def box(code: str, level: int, x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    props = {"code": code, "level": level, "name": f"grid {code[-3:]}"}
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": props}


def grids(*features: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


# Four level-3 boxes in a 2 × 2 block over lon 113.80–113.90, lat 27.60–27.70, and their level-1 parent.
L3_BOXES = (
    box(A, 3, 113.80, 27.65, 113.85, 27.70),
    box(B, 3, 113.85, 27.65, 113.90, 27.70),
    box(C, 3, 113.80, 27.60, 113.85, 27.65),
    box(D, 3, 113.85, 27.60, 113.90, 27.65),
)
PARENT = box(L1, 1, 113.80, 27.60, 113.90, 27.70)


def incident(iid: str, grid: str | None, lon: float, lat: float, light: str | None, state: str = "dispatched") -> dict[str, Any]:
    return {"id": iid, "type": "fence.intrusion", "state": state, "light": light, "grid": grid, "lon": lon, "lat": lat, "assignee": None, "alarm_count": 1}


INCIDENTS = [
    incident("INC-red", A, 113.82, 27.68, "red"),
    incident("INC-green", C, 113.81, 27.61, "green"),
    incident("INC-yellow", C, 113.83, 27.62, "yellow"),
    incident("INC-reported", D, 113.88, 27.63, None, state="reported"),
]


# --- reading the rendered page -------------------------------------------------------------------
def render(m: folium.Map) -> str:
    return m.get_root().render()


def embedded_features(html: str) -> dict[str, dict[str, Any]]:
    """Properties of the grid features embedded in the page, by code."""
    (data,) = re.findall(r"geo_json_\w+_add\((\{.*\})\);", html)
    return {f["properties"]["code"]: f["properties"] for f in json.loads(data)["features"]}


def rendered_styles(html: str) -> dict[str, dict[str, Any]]:
    """The style Leaflet gives each grid: folium renders style_function as a switch over a property."""
    m = re.search(r"_styler\(feature\) \{\s*switch\(feature\.properties\.code\) \{(.*?)default:\s*return (\{.*?\});", html, re.S)
    assert m is not None, "no grid styler in the page"
    default = json.loads(m[2])
    styles = {code: default for code in embedded_features(html)}
    for cases, style in re.findall(r"((?:case \"\d+\":\s*)+)return (\{.*?\});", m[1], re.S):
        for code in re.findall(r"case \"(\d+)\":", cases):
            styles[code] = json.loads(style)
    return styles


def markers(html: str) -> list[tuple[float, float, dict[str, Any]]]:
    """(lat, lon, options) of every circle marker."""
    out = []
    for latlon, opts in re.findall(r"L\.circleMarker\(\s*\[([^\]]+)\],\s*(\{.*?\})\s*\)", html, re.S):
        lat, lon = (float(v) for v in latlon.split(","))
        out.append((lat, lon, json.loads(opts)))
    return out


def fit_bounds(html: str) -> list[list[float]] | None:
    m = re.search(r"\.fitBounds\(\s*(\[\[.*?\]\])", html, re.S)
    return json.loads(m[1]) if m else None


# --- tests ----------------------------------------------------------------------------------------
def test_grid_with_a_red_incident_gets_the_red_fill_and_a_quiet_grid_the_quiet_fill() -> None:
    html = render(build_wall(grids(*L3_BOXES), INCIDENTS))

    styles = rendered_styles(html)
    assert (styles[A]["fillColor"], styles[A]["fillOpacity"]) == (RED, 0.35)
    assert (styles[B]["fillColor"], styles[B]["fillOpacity"]) == (QUIET_FILL, 0.08)
    assert styles[C]["fillColor"] == YELLOW  # green + yellow → the worst
    assert styles[D]["fillColor"] == NO_LIGHT_COLOR  # open, but no clock running yet
    assert {s["weight"] for s in styles.values()} == {1.0}
    props = embedded_features(html)
    assert {c: (p["fill"], p["open_incidents"]) for c, p in props.items()} == {
        A: (RED, 1), B: (QUIET_FILL, 0), C: (YELLOW, 2), D: (NO_LIGHT_COLOR, 1),
    }


def test_a_parent_grid_takes_the_worst_light_of_its_subtree() -> None:
    html = render(build_wall(grids(PARENT, *L3_BOXES), INCIDENTS))

    styles = rendered_styles(html)
    assert (styles[L1]["fillColor"], styles[L1]["weight"]) == (RED, 3.0)
    assert embedded_features(html)[L1]["open_incidents"] == 4


def test_one_marker_per_incident_at_its_point_in_its_light_colour() -> None:
    html = render(build_wall(grids(*L3_BOXES), INCIDENTS))

    found = markers(html)
    assert len(found) == len(INCIDENTS)
    assert sorted((lat, lon, o["color"]) for lat, lon, o in found) == sorted(
        (i["lat"], i["lon"], light_color(i["light"])) for i in INCIDENTS
    )
    assert html.count("<b>fence.intrusion</b>") == len(INCIDENTS)
    assert "assignee: command center" in html


def test_bounds_fit_the_grids() -> None:
    m = build_wall(grids(*L3_BOXES), INCIDENTS)

    assert m.get_bounds() == [[27.60, 113.80], [27.70, 113.90]]
    assert fit_bounds(render(m)) == [[27.60, 113.80], [27.70, 113.90]]


def test_bounds_of_a_drilled_down_subtree() -> None:
    m = build_wall(grids(L3_BOXES[2], L3_BOXES[3]), [INCIDENTS[1]])

    assert fit_bounds(render(m)) == [[27.60, 113.80], [27.65, 113.90]]


def test_an_explicit_centre_is_kept_without_fitting_bounds() -> None:
    m = build_wall(grids(*L3_BOXES), INCIDENTS, center=(27.5, 113.7))

    html = render(m)
    assert fit_bounds(html) is None
    assert m.location == [27.5, 113.7]


def test_no_grids_still_draws_the_markers() -> None:
    html = render(build_wall(grids(), INCIDENTS[:2]))

    assert "_styler" not in html and not re.search(r"geo_json_\w+_add", html)
    assert len(markers(html)) == 2


def test_an_incident_outside_every_grid_is_a_marker_that_colours_no_grid() -> None:
    stray = incident("INC-stray", None, 113.95, 27.75, "red")

    html = render(build_wall(grids(*L3_BOXES), [stray]))

    assert {s["fillColor"] for s in rendered_styles(html).values()} == {QUIET_FILL}
    assert [(lat, lon) for lat, lon, _ in markers(html)] == [(27.75, 113.95)]


def test_title_and_tooltip_fields() -> None:
    html = render(build_wall(grids(*L3_BOXES), [], title="wall · 430102001"))

    assert "<title>wall · 430102001</title>" in html
    assert 'let fields = ["code", "name", "open_incidents"];' in html


def test_input_feature_collection_is_not_modified() -> None:
    fc = grids(*L3_BOXES)
    before = json.dumps(fc, sort_keys=True)

    build_wall(fc, INCIDENTS)

    assert json.dumps(fc, sort_keys=True) == before


@pytest.mark.parametrize(
    "lights, worst",
    [([], None), ([None], None), (["green", None], "green"), (["green", "yellow"], "yellow"), (["yellow", "red", "green"], "red")],
)
def test_worst_light(lights: list[str | None], worst: str | None) -> None:
    assert worst_light(lights) == worst


def test_grid_names_and_incident_fields_are_escaped() -> None:
    evil = box(A, 3, 113.80, 27.65, 113.85, 27.70)
    evil["properties"]["name"] = "<script>alert(1)</script>"
    bad = incident("INC-<img src=x onerror=alert(2)>", A, 113.82, 27.68, "red")
    html = render(build_wall(grids(evil), [bad]))

    assert "<script>alert(1)</script>" not in html
    assert "<img src=x onerror=alert(2)>" not in html
    assert "\\u0026lt;script\\u0026gt;" in html  # escaped, then JSON-encoded into the page


def test_template_syntax_in_user_text_is_never_evaluated() -> None:
    """branca re-compiles rendered scripts as jinja templates: user text must not reach it with braces."""
    grids = {"type": "FeatureCollection", "features": [{
        "type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
        "properties": {"code": "430102001", "level": 1, "name": "{{ 7777*3 }}"}}]}
    incidents = [{"id": "I{{ 8888*3 }}", "type": "fence.{{ 9999*3 }}", "state": "{% if 1 %}evaluated{% endif %}",
                  "lat": 0.5, "lon": 0.5, "grid": "430102001", "light": "green"}]
    html = build_wall(grids, incidents, title="{{ 6666*3 }}").get_root().render()
    for evaluated in ("23331", "26664", "29997", "19998", "evaluated<"):
        assert evaluated not in html
    assert "&#123;&#123; 9999*3 &#125;&#125;" in html
