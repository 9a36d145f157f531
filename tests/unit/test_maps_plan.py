"""maps.plan.build_plan_map on the sample district and a fake draft: render, then read layers and panels back."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import pytest
import shapely
from shapely import affinity

from geo.district import build_sample_district
from geo.model import Grid
from maps.plan import (
    ADDED_COLOR,
    LAYER_CHANGED,
    LAYER_FINDINGS,
    LAYER_NEW,
    LAYER_OLD,
    LEVEL_WEIGHT,
    MAX_FINDINGS_DRAWN,
    NEW_COLOR,
    OLD_COLOR,
    REMOVED_COLOR,
    RESHAPED_COLOR,
    SEVERITY_COLORS,
    build_plan_map,
)

pytestmark = pytest.mark.unit

EVIL = "<script>alert(1)</script>"
TEMPLATE = "{{ lipsum.__name__ }}"  # would render as "generate_lorem_ipsum" if evaluated as a jinja template
VERSION = {"id": 7, "label": f"2027 redraw {TEMPLATE}", "status": "draft", "source": "streets.gpkg",
           "crs": "EPSG:4490", "created_at": "2026-11-22T10:00:00+08:00"}


# --- the fake draft ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def old_grids() -> list[Grid]:
    return list(build_sample_district().grids)


@pytest.fixture(scope="module")
def draft(old_grids: list[Grid]) -> dict[str, Any]:
    """The current grids with one L3 grid reshaped (scaled 2 %), one removed and one new grid with an evil name."""
    l3 = [g for g in old_grids if g.level == 3]
    reshaped, removed = l3[0], l3[1]
    x0, y0, x1, y1 = shapely.total_bounds([g.geometry for g in old_grids])
    added = Grid("430102005006099", 3, EVIL, shapely.box(x1, y1, x1 + 0.01, y1 + 0.01), "430102005006")
    templated = replace(l3[2], name=TEMPLATE)
    new = []
    for g in old_grids:
        if g.code == removed.code:
            continue
        if g.code == reshaped.code:
            g = replace(g, geometry=affinity.scale(g.geometry, 1.02, 1.02))
        elif g.code == templated.code:
            g = templated
        new.append(g)
    new.append(added)
    return {"new": new, "added": added, "removed": removed, "reshaped": reshaped,
            "bounds": [[y0, x0], [y1 + 0.01, x1 + 0.01]]}


@pytest.fixture(scope="module")
def diff(draft: dict[str, Any]) -> dict[str, Any]:
    a, r, s = draft["added"], draft["removed"], draft["reshaped"]
    return {
        "added": [{"code": a.code, "level": 3, "area_m2": 1_234_567.0}],
        "removed": [{"code": r.code, "level": 3, "area_m2": 45_000.0}],
        "reshaped": [{"code": s.code, "level": 3, "old_area_m2": 100_000.0, "new_area_m2": 104_040.0,
                      "delta_m2": 4_040.0, "changed_m2": 4_040.0}],
        "unchanged": 169,
        "moves": {
            "buildings": [{"code": "43010200100100200001", "from": r.code, "to": s.code}],
            "devices": [{"id": "fence-001", "from": r.code, "to": a.code}],
            "patrollers": [{"id": "P0001", "from": [r.code, s.code], "to": [s.code]}],
            "incidents": [{"id": "INC-42", "from": r.code, "to": EVIL},
                          {"id": TEMPLATE, "from": r.code, "to": s.code}],
        },
        "successors": {r.code: [s.code]},
        "summary": {"added": 1, "removed": 1, "reshaped": 1, "unchanged": 169, "buildings_moved": 1,
                    "devices_moved": 1, "patrollers_moved": 1, "incidents_moved": 1},
    }


@pytest.fixture(scope="module")
def validation(draft: dict[str, Any]) -> dict[str, Any]:
    s = draft["reshaped"]
    overlap = s.geometry.centroid.buffer(0.001)  # a polygon inside the reshaped grid
    return {
        "ok": False, "errors": 1, "warnings": 1, "grid_counts": {"1": 5, "2": 29, "3": 138},
        "counts": {"overlap": 1, "sliver": 1},
        "findings": [
            {"severity": "error", "check": "overlap", "codes": [s.code, "430102001001004"], "measure": 1234.5,
             "unit": "m2", "message": f"grids overlap {EVIL}", "location": shapely.geometry.mapping(overlap)},
            {"severity": "warning", "check": "sliver", "codes": [s.code], "measure": 0.25, "unit": "m",
             "message": f"thin part {TEMPLATE}", "location": {"type": "Point", "coordinates": [113.85, 27.62]}},
        ],
    }


@pytest.fixture(scope="module")
def whatif() -> dict[str, Any]:
    stats_before = {"grids": 138, "incidents": 900, "outside": 3, "max": 21, "mean": 6.5217, "max_over_mean": 3.22,
                    "cv": 0.4567, "std": 2.9785}
    stats_after = {"grids": 138, "incidents": 900, "outside": 2, "max": 17, "mean": 6.5217,
                   "max_over_mean": 2.6067, "cv": 0.3912, "std": 2.5513}
    return {"days": 90, "incidents": 903, "before": stats_before, "after": stats_after,
            "per_grid": [{"code": "430102001001001", "before": 21, "after": 17},
                         {"code": "430102001001002", "before": 5, "after": 5},
                         {"code": "430102001001003", "before": 4, "after": None},
                         {"code": "430102005006099", "before": None, "after": 3}]}


@pytest.fixture(scope="module")
def page(old_grids: list[Grid], draft: dict[str, Any], diff: dict[str, Any], validation: dict[str, Any],
         whatif: dict[str, Any]) -> str:
    return build_plan_map(version=VERSION, old_grids=old_grids, new_grids=draft["new"], diff=diff,
                          validation=validation, whatif=whatif)


# --- reading the page back ---------------------------------------------------------------------------
def layers(html: str) -> dict[str, list[dict[str, Any]]]:
    """For each LayerControl name: its GeoJSON layers as {"style", "features": [(geometry, properties)]}."""
    (control,) = re.findall(r"overlays\s*:\s*(\{.*?\})", html, re.S)
    groups = dict(re.findall(r'"([^"]+)"\s*:\s*(feature_group_\w+)', control))
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in groups}
    for var, data in re.findall(r"var (prebuilt_geo_json_\w+)_data = (.*?);\n", html):
        style = re.search(rf"var {var} = L\.geoJson\(null, \{{\s*style: (\{{.*?\}}),", html, re.S)
        parent = re.search(rf"{var}\.addTo\((feature_group_\w+)\);", html)
        assert style and parent
        d = json.loads(data)
        name = next(n for n, g in groups.items() if g == parent[1])
        out[name].append({"style": json.loads(style[1]), "features": list(zip(d["g"], d["p"], strict=True))})
    return out


def codes(layer: dict[str, Any]) -> list[str]:
    return [p["code"] for _, p in layer["features"]]


def fit_bounds(html: str) -> list[list[float]] | None:
    m = re.search(r"\.fitBounds\(\s*(\[\[.*?\]\])", html, re.S)
    return json.loads(m[1]) if m else None


def panels(html: str) -> str:
    (body,) = re.findall(r'<div class="gw-panels">.*?</div></div>\s*</body>', html, re.S)
    return body


def table_rows(html: str, after: str = "") -> list[list[str]]:
    """Every table row of the panels (from the text `after` on) as a list of cell texts."""
    text = panels(html)
    text = text[text.index(after):]
    return [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row) for row in re.findall(r"<tr>(.*?)</tr>", text)]


# --- tests ----------------------------------------------------------------------------------------------
def test_the_four_layers_are_in_the_layer_control(page: str) -> None:
    found = layers(page)

    assert list(found) == [LAYER_OLD, LAYER_NEW, LAYER_CHANGED, LAYER_FINDINGS]


def test_current_and_draft_boundaries_one_layer_per_level(
    page: str, old_grids: list[Grid], draft: dict[str, Any]
) -> None:
    found = layers(page)

    sides = ((LAYER_OLD, old_grids, OLD_COLOR, True), (LAYER_NEW, draft["new"], NEW_COLOR, False))
    for name, grids, color, dashed in sides:
        by_weight = {layer["style"]["weight"]: layer for layer in found[name]}
        assert sorted(by_weight) == sorted(LEVEL_WEIGHT.values())
        for level, weight in LEVEL_WEIGHT.items():
            layer = by_weight[weight]
            assert sorted(codes(layer)) == sorted(g.code for g in grids if g.level == level)
            assert layer["style"]["color"] == color and layer["style"]["fill"] is False
            assert ("dashArray" in layer["style"]) is dashed
    assert LEVEL_WEIGHT[1] > LEVEL_WEIGHT[2] > LEVEL_WEIGHT[3]


def test_geometries_are_embedded_unsimplified(page: str, draft: dict[str, Any]) -> None:
    (draft_l3,) = [layer for layer in layers(page)[LAYER_NEW] if layer["style"]["weight"] == LEVEL_WEIGHT[3]]
    by_code = {p["code"]: shapely.geometry.shape(g) for g, p in draft_l3["features"]}

    for g in draft["new"]:
        if g.level == 3:
            assert shapely.equals_exact(by_code[g.code], g.geometry, tolerance=1e-9), g.code


def test_changed_grids_added_green_reshaped_orange_removed_red(page: str, draft: dict[str, Any]) -> None:
    by_color = {layer["style"]["fillColor"]: layer for layer in layers(page)[LAYER_CHANGED]}

    assert codes(by_color[ADDED_COLOR]) == [draft["added"].code]
    assert codes(by_color[RESHAPED_COLOR]) == [draft["reshaped"].code]
    assert codes(by_color[REMOVED_COLOR]) == [draft["removed"].code]
    assert "dashArray" in by_color[REMOVED_COLOR]["style"]
    # the removed grid is drawn with its current geometry, the reshaped one with its draft geometry
    (removed_geom, _), = by_color[REMOVED_COLOR]["features"]
    assert shapely.equals_exact(shapely.geometry.shape(removed_geom), draft["removed"].geometry, tolerance=1e-9)
    (reshaped_geom, props), = by_color[RESHAPED_COLOR]["features"]
    new = next(g for g in draft["new"] if g.code == draft["reshaped"].code)
    assert shapely.equals_exact(shapely.geometry.shape(reshaped_geom), new.geometry, tolerance=1e-9)
    assert "100,000" in props["note"] and "104,040" in props["note"]


def test_findings_polygons_and_points_by_severity_with_popups(page: str, validation: dict[str, Any]) -> None:
    by_color = {layer["style"]["color"]: layer for layer in layers(page)[LAYER_FINDINGS]}

    assert sorted(by_color) == sorted(SEVERITY_COLORS.values())
    (geom, props), = by_color[SEVERITY_COLORS["error"]]["features"]
    assert geom["type"] == "Polygon" and by_color[SEVERITY_COLORS["error"]]["style"]["fill"] is True
    assert "<b>overlap</b>" in props["popup"] and "1234.50 m2" in props["popup"]
    assert validation["findings"][0]["codes"][1] in props["popup"]
    assert "&lt;script&gt;" in props["popup"] and EVIL not in props["popup"]
    (geom, props), = by_color[SEVERITY_COLORS["warning"]]["features"]
    assert geom == {"type": "Point", "coordinates": [113.85, 27.62]}
    assert "L.circleMarker(latlng" in page  # points are drawn as circle markers


def test_the_map_fits_all_grids(page: str, draft: dict[str, Any]) -> None:
    expected = [[float(v) for v in corner] for corner in draft["bounds"]]

    assert fit_bounds(page) == [pytest.approx(corner) for corner in expected]


def test_tooltips_show_code_and_name(page: str, old_grids: list[Grid]) -> None:
    (old_l3,) = [layer for layer in layers(page)[LAYER_OLD] if layer["style"]["weight"] == LEVEL_WEIGHT[3]]
    first = next(g for g in old_grids if g.level == 3)

    assert (first.code, first.name) in {(p["code"], p["name"]) for _, p in old_l3["features"]}
    assert "layer.bindTooltip('<b>' + p.code + '</b> ' + p.name" in page


def test_version_header(page: str) -> None:
    text = panels(page)

    assert f"Grid version #7 — 2027 redraw {TEMPLATE}" in text and ">draft</span>" in text
    assert "streets.gpkg" in text and "EPSG:4490" in text and "2026-11-22T10:00:00+08:00" in text
    assert f"<title>plan · version 7 · 2027 redraw {TEMPLATE}</title>" in page


def test_validation_panel(page: str) -> None:
    text = panels(page)
    rows = table_rows(page)

    assert "not ok" in text and "errors: <b>1</b>" in text and "warnings: <b>1</b>" in text
    assert ["overlap", "1"] in rows and ["sliver", "1"] in rows
    assert ["warning", "sliver", "430102001001001", "0.25 m", f"thin part {TEMPLATE}"] in rows


def test_diff_panel_summary_reshaped_and_moves(page: str, draft: dict[str, Any]) -> None:
    rows = table_rows(page)
    r, s, a = draft["removed"].code, draft["reshaped"].code, draft["added"].code

    assert ["added", "removed", "reshaped", "unchanged", "buildings moved", "devices moved", "patrollers moved",
            "incidents moved"] in rows
    assert ["1", "1", "1", "169", "1", "1", "1", "1"] in rows
    assert [s, "100,000", "104,040", "4,040"] in rows
    assert [a, "3", "1,234,567"] in rows and [r, "3", "45,000"] in rows
    assert ["43010200100100200001", r, s] in rows
    assert ["fence-001", r, a] in rows
    assert ["P0001", f"{r}, {s}", s] in rows
    assert ["INC-42", r, "&lt;script&gt;alert(1)&lt;/script&gt;"] in rows


def test_whatif_panel_side_by_side_with_two_decimals(page: str) -> None:
    rows = table_rows(page)

    assert ["mean", "6.52", "6.52"] in rows
    assert ["max over mean", "3.22", "2.61"] in rows
    assert ["cv", "0.46", "0.39"] in rows
    assert ["max", "21", "17"] in rows and ["outside", "3", "2"] in rows
    assert "incidents of the last 90 days: 903" in panels(page)
    # only grids whose count changes, the biggest change first; a missing side is a dash
    changed = table_rows(page, after="grids whose count changes")[1:]
    assert changed == [["430102001001001", "21", "17", "-4"], ["430102001001003", "4", "–", "–"],
                       ["430102005006099", "–", "3", "–"]]


def test_user_strings_are_escaped_everywhere(page: str) -> None:
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the panels (HTML)
    assert "\\u0026lt;script\\u0026gt;" in page  # the layer data (escaped, then made script-safe)


def test_user_strings_are_never_evaluated_as_templates(page: str, draft: dict[str, Any]) -> None:
    assert "generate_lorem_ipsum" not in page
    (draft_l3,) = [layer for layer in layers(page)[LAYER_NEW] if layer["style"]["weight"] == LEVEL_WEIGHT[3]]
    assert TEMPLATE in {p["name"] for _, p in draft_l3["features"]}  # the grid name, kept verbatim
    assert [TEMPLATE, draft["removed"].code, draft["reshaped"].code] in table_rows(page)  # a move row
    assert f"thin part {TEMPLATE}" in panels(page)  # a finding message


def test_without_diff_validation_and_whatif(old_grids: list[Grid], draft: dict[str, Any]) -> None:
    html = build_plan_map(version=VERSION, old_grids=old_grids, new_grids=draft["new"], diff=None, validation=None,
                          whatif=None)

    found = layers(html)
    assert list(found) == [LAYER_OLD, LAYER_NEW, LAYER_CHANGED, LAYER_FINDINGS]
    assert found[LAYER_CHANGED] == [] and found[LAYER_FINDINGS] == []
    assert len(found[LAYER_NEW]) == 3
    assert panels(html).count("not computed") == 3


def test_no_grids_at_all() -> None:
    html = build_plan_map(version={"id": 1, "label": "empty", "status": "published", "source": None, "crs": None,
                                   "created_at": "2026-11-22"}, old_grids=[], new_grids=[], diff=None,
                          validation=None, whatif=None)

    assert fit_bounds(html) is None
    assert all(v == [] for v in layers(html).values())
    assert ">published</span>" in html


def test_long_tables_are_cut_at_200_rows_and_findings_drawn_are_capped(
    old_grids: list[Grid], draft: dict[str, Any], diff: dict[str, Any]
) -> None:
    many = {**diff, "moves": {**diff["moves"], "buildings": [
        {"code": f"4301020010010010{i:04d}", "from": "a", "to": "b"} for i in range(250)]}}
    point = {"type": "Point", "coordinates": [113.85, 27.62]}
    findings = [{"severity": "warning", "check": "sliver", "codes": [], "measure": None, "unit": None,
                 "message": f"m{i}", "location": point} for i in range(MAX_FINDINGS_DRAWN + 7)]
    validation = {"ok": True, "errors": 0, "warnings": len(findings), "counts": {"sliver": len(findings)},
                  "findings": findings}

    html = build_plan_map(version=VERSION, old_grids=old_grids, new_grids=draft["new"], diff=many,
                          validation=validation, whatif=None)

    rows = table_rows(html)
    assert sum(1 for row in rows if row[0].startswith("4301020010010010")) == 200
    assert "… and 50 more" in html
    assert sum(1 for row in rows if row[:2] == ["warning", "sliver"]) == 200
    assert f"… and {MAX_FINDINGS_DRAWN + 7 - 200} more" in html
    (drawn,) = layers(html)[LAYER_FINDINGS]
    assert len(drawn["features"]) == MAX_FINDINGS_DRAWN
    assert "7 more not drawn" in html
    assert '<span class="gw-badge gw-ok">ok</span>' in html


def test_inputs_are_not_modified(old_grids: list[Grid], draft: dict[str, Any], diff: dict[str, Any],
                                 validation: dict[str, Any], whatif: dict[str, Any]) -> None:
    before = json.dumps([diff, validation, whatif], sort_keys=True, default=str)

    build_plan_map(version=VERSION, old_grids=old_grids, new_grids=draft["new"], diff=diff, validation=validation,
                   whatif=whatif)

    assert json.dumps([diff, validation, whatif], sort_keys=True, default=str) == before


@pytest.mark.parametrize("location", [{"type": "Point", "coordinates": []}, {"type": "Blob"}, "POINT (1 2)",
                                      {"type": "Polygon", "coordinates": [[[1, 2], [3]]]}])
def test_a_malformed_finding_location_is_listed_but_not_drawn(location: Any) -> None:
    bad = {"severity": "error", "check": "gap", "codes": ["430102001001001"], "measure": 1.0, "unit": "m2",
           "message": "bad location", "location": location}
    validation = {"ok": False, "errors": 1, "warnings": 0, "counts": {"gap": 1}, "findings": [bad]}

    html = build_plan_map(version=VERSION, old_grids=[], new_grids=[], diff=None, validation=validation,
                          whatif=None)

    assert layers(html)[LAYER_FINDINGS] == []
    assert ["error", "gap", "430102001001001", "1.00 m2", "bad location"] in table_rows(html)
