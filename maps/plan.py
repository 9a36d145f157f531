"""The planner's diff map (`/plan/{version_id}`): a draft grid version drawn against the current one.

No business logic: the diff, the validation report and the workload what-if arrive as plain dicts
(computed in `geo/`); this module only draws them. One page = a folium map with four layers
("current boundaries", "draft boundaries", "changed grids", "findings") and, below it, plain HTML
panels (version header, validation, diff, what-if).

Built to stay fast with ~100,000 grids: the boundaries of one side and one level are ONE Leaflet
GeoJSON layer with a constant style; its geometries come from a single vectorized
`shapely.to_geojson` call and go into the page as one pre-built JSON text (no per-feature folium
objects, no per-feature style switch, no jinja pass over the data). Every user-provided string (grid
names and codes, finding messages, version labels, move rows …) goes through `html.escape`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

import folium
import numpy as np
import shapely
from branca.element import Element, MacroElement
from jinja2 import Template

from geo.model import Grid

# --- colours and styles (kept here on purpose: style.py belongs to the wall) ------------------------
OLD_COLOR = "#757575"  # current boundaries: dashed grey
NEW_COLOR = "#1565c0"  # draft boundaries: solid blue
ADDED_COLOR = "#2e7d32"  # green fill
RESHAPED_COLOR = "#ef6c00"  # orange fill
REMOVED_COLOR = "#c62828"  # red fill, dashed outline
SEVERITY_COLORS = {"error": "#c62828", "warning": "#ffb300"}  # red / amber
OTHER_SEVERITY_COLOR = "#546e7a"
LEVEL_WEIGHT = {1: 4.0, 2: 2.5, 3: 1.0}  # level 1 thick, level 2 medium, level 3 thin
DASH = "6 4"

LAYER_OLD = "current boundaries"
LAYER_NEW = "draft boundaries"
LAYER_CHANGED = "changed grids"
LAYER_FINDINGS = "findings"

MAX_ROWS = 200  # rows per HTML table
MAX_FINDINGS_DRAWN = 5000  # findings drawn on the map
DEFAULT_CENTER = (27.62, 113.85)  # the sample district (lat, lon), used when there is no grid at all
GEOMETRY_TYPES = {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
                  "GeometryCollection"}

MOVE_KINDS = (("buildings", "code", "building"), ("devices", "id", "device"),
              ("patrollers", "id", "patroller"), ("incidents", "id", "incident"))
STAT_KEYS = ("grids", "incidents", "outside", "max", "mean", "max_over_mean", "cv", "std")
SUMMARY_KEYS = ("added", "removed", "reshaped", "unchanged",
                "buildings_moved", "devices_moved", "patrollers_moved", "incidents_moved")

_TOOLTIP_JS = (
    "function(feature, layer) {"
    " var p = feature.properties;"
    " layer.bindTooltip('<b>' + p.code + '</b> ' + p.name + (p.note ? '<br>' + p.note : ''),"
    " {sticky: true});"
    " }"
)
_POPUP_JS = "function(feature, layer) { layer.bindPopup(feature.properties.popup, {maxWidth: 360}); }"

PAGE_CSS = """
<style>
  .gw-panels {font: 13px/1.4 system-ui, sans-serif; padding: 8px 16px 32px; color: #212121;}
  .gw-panels h1 {font-size: 18px; margin: 8px 0;} .gw-panels h2 {font-size: 15px; margin: 16px 0 6px;}
  .gw-panels h3 {font-size: 13px; margin: 10px 0 4px;}
  .gw-panels table {border-collapse: collapse; margin: 4px 0 8px;}
  .gw-panels th, .gw-panels td {border: 1px solid #cfd8dc; padding: 2px 6px; text-align: left;}
  .gw-panels td.num, .gw-panels th.num {text-align: right; font-variant-numeric: tabular-nums;}
  .gw-panels .gw-row {display: flex; flex-wrap: wrap; gap: 24px;} .gw-panels section {min-width: 320px;}
  .gw-panels .muted {color: #757575;} .gw-panels .more {color: #757575; font-style: italic;}
  .gw-badge {display: inline-block; padding: 0 6px; border-radius: 3px; color: #fff; font-size: 12px;}
  .gw-ok {background: #2e7d32;} .gw-bad {background: #c62828;} .gw-draft {background: #ef6c00;}
  .gw-published {background: #1565c0;}
</style>
"""


# --- raw page parts and the fast GeoJSON layer -------------------------------------------------------
# branca turns the *rendered* output of every element into a new jinja template (`Element(text)`), so
# user text containing "{{ ... }}" would be evaluated on the server, and a 100 MB data text would be
# lexed by jinja (seconds). Everything that carries user data or bulk data goes in as a _Raw element.
class _Raw(Element):
    """A piece of the page that is emitted verbatim: never compiled or rendered as a template."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self._name = "Raw"
        self.text = text

    def render(self, **kwargs: Any) -> str:
        """Return the text as is."""
        return self.text


class _Panels(MacroElement):
    """Plain HTML placed in the page body right after the map's div (a child renders after its map)."""

    def __init__(self, content: str) -> None:
        super().__init__()
        self._name = "Panels"
        self.content = content

    def render(self, **kwargs: Any) -> None:
        """Append the (already escaped) panels to the page body, verbatim."""
        self.get_root().html.add_child(_Raw(self.content), name=self.get_name())


class _PrebuiltGeoJson(folium.map.Layer):
    """A Leaflet GeoJSON layer whose data is an already serialized, escaped and script-safe JSON text.

    The data is `{"g": [geometry, …], "p": [properties, …]}`; the page zips it into features. One
    constant style for all features (points become circle markers in that style) and an optional
    `onEachFeature` JavaScript function. Not listed in the LayerControl: it lives in a FeatureGroup.
    """

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = L.geoJson(null, {
            style: {{ this.style | tojson }},
            pointToLayer: function(feature, latlng) {
                return L.circleMarker(latlng, Object.assign({radius: 7}, {{ this.style | tojson }}));
            },
            {%- if this.on_each_feature %}
            onEachFeature: {{ this.on_each_feature }},
            {%- endif %}
        });
        (function(d) {
            var features = new Array(d.g.length);
            for (var i = 0; i < d.g.length; i++) {
                features[i] = {type: "Feature", geometry: d.g[i], properties: d.p[i]};
            }
            {{ this.get_name() }}.addData({type: "FeatureCollection", features: features});
        })({{ this.get_name() }}_data);
        {% endmacro %}
        """
    )

    def __init__(
        self, data: str, bounds: list[list[float]] | None, style: dict[str, Any], on_each_feature: str | None
    ) -> None:
        super().__init__(control=False)
        self._name = "PrebuiltGeoJson"
        self.data = data
        self.bounds = bounds
        self.style = style
        self.on_each_feature = on_each_feature

    def render(self, **kwargs: Any) -> None:
        """Emit `var <name>_data = <json>;` verbatim, then the (small) templated layer script."""
        name = self.get_name()
        self.get_root().script.add_child(_Raw(f"var {name}_data = {self.data};\n"), name=f"{name}_data")
        super().render(**kwargs)

    def _get_self_bounds(self) -> list[list[float | None]]:
        """[[lat_min, lon_min], [lat_max, lon_max]] of the layer (computed once, vectorized)."""
        return self.bounds or [[None, None], [None, None]]  # type: ignore[list-item]


def _script_safe(text: str) -> str:
    """Make a JSON text safe inside a <script> element (the same escapes as jinja's `tojson`)."""
    return (
        text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e").replace("'", "\\u0027")
    )


def _layer_data(geometries: Sequence[str], properties: list[dict[str, Any]]) -> str:
    """Script-safe layer data from GeoJSON geometry texts and (already escaped) properties.

    Two C-level operations for any number of features: a join of the geometry texts and one
    `json.dumps` of all properties.
    """
    text = f'{{"g":[{",".join(geometries)}],"p":{json.dumps(properties, ensure_ascii=False)}}}'
    return _script_safe(text)


def _bounds_of(geoms: Sequence[Any]) -> list[list[float]] | None:
    """Leaflet bounds [[lat_min, lon_min], [lat_max, lon_max]] of shapely geometries (None if empty)."""
    if not len(geoms):
        return None
    x0, y0, x1, y1 = shapely.total_bounds(np.asarray(geoms, dtype=object))
    if any(math.isnan(v) for v in (x0, y0, x1, y1)):
        return None
    return [[float(y0), float(x0)], [float(y1), float(x1)]]


# --- map layers -----------------------------------------------------------------------------------------
def _grid_layer(
    grids: Sequence[Grid], style: dict[str, Any], notes: Mapping[str, str] | None = None
) -> _PrebuiltGeoJson | None:
    """ONE GeoJSON layer for many grids, all in `style`; tooltips show code, name and an optional note."""
    kept = [g for g in grids if g.geometry is not None and not g.geometry.is_empty]
    if not kept:
        return None
    geoms = np.asarray([g.geometry for g in kept], dtype=object)
    texts = shapely.to_geojson(geoms)  # one vectorized call for all features
    notes = notes or {}
    props = [{"code": escape(g.code), "name": escape(str(g.name)), "note": notes.get(g.code, "")} for g in kept]
    return _PrebuiltGeoJson(_layer_data(texts, props), _bounds_of(geoms), style, _TOOLTIP_JS)


def _boundary_group(name: str, grids: Sequence[Grid], color: str, dash: str | None) -> folium.FeatureGroup:
    """A FeatureGroup of boundaries: one GeoJSON layer per level, thick (1) to thin (3), no fill."""
    group = folium.FeatureGroup(name=name, overlay=True)
    by_level: dict[int, list[Grid]] = {}
    for g in grids:
        by_level.setdefault(g.level, []).append(g)
    for level in sorted(by_level, reverse=True):  # level 3 first, so the thick level-1 lines stay on top
        weight = LEVEL_WEIGHT.get(level, 1.0)
        style: dict[str, Any] = {"color": color, "weight": weight, "fill": False, "opacity": 0.9}
        if dash:
            style["dashArray"] = dash
        layer = _grid_layer(by_level[level], style)
        if layer is not None:
            layer.add_to(group)
    return group


def _changed_group(
    old_grids: Sequence[Grid], new_grids: Sequence[Grid], diff: Mapping[str, Any] | None
) -> folium.FeatureGroup:
    """The "changed grids" layer: added (green), reshaped (orange) from the draft; removed (red) from current."""
    group = folium.FeatureGroup(name=LAYER_CHANGED, overlay=True)
    if not diff:
        return group
    old_by_code = {g.code: g for g in old_grids}
    new_by_code = {g.code: g for g in new_grids}
    kinds = (
        ("removed", old_by_code, REMOVED_COLOR, DASH),
        ("reshaped", new_by_code, RESHAPED_COLOR, None),
        ("added", new_by_code, ADDED_COLOR, None),
    )
    for kind, source, color, dash in kinds:
        rows = [r for r in diff.get(kind) or [] if r.get("code") in source]
        style: dict[str, Any] = {"color": color, "weight": 2.0, "fill": True, "fillColor": color,
                                 "fillOpacity": 0.35}
        if dash:
            style["dashArray"] = dash
        notes = {r["code"]: escape(_change_note(kind, r)) for r in rows}
        layer = _grid_layer([source[r["code"]] for r in rows], style, notes)
        if layer is not None:
            layer.add_to(group)
    return group


def _change_note(kind: str, row: Mapping[str, Any]) -> str:
    """The tooltip line of a changed grid (plain text; escaped by the caller)."""
    if kind == "reshaped":
        old, new, delta = (_fmt_area(row.get(k)) for k in ("old_area_m2", "new_area_m2", "delta_m2"))
        return f"reshaped: {old} → {new} m² (Δ {delta})"
    return f"{kind}: {_fmt_area(row.get('area_m2'))} m²"


def _drawable(location: Any) -> bool:
    """Tell whether a finding's location is a geometry Leaflet can draw (a bad one must not break the page)."""
    if not isinstance(location, Mapping) or location.get("type") not in GEOMETRY_TYPES:
        return False
    try:
        geom = shapely.from_geojson(json.dumps(location))
    except Exception:  # malformed coordinates: list it in the table, do not draw it
        return False
    return geom is not None and not geom.is_empty


def _findings_group(validation: Mapping[str, Any] | None) -> tuple[folium.FeatureGroup, int]:
    """The "findings" layer (the first MAX_FINDINGS_DRAWN drawable ones); returns it and the number not drawn."""
    group = folium.FeatureGroup(name=LAYER_FINDINGS, overlay=True)
    findings = [f for f in (validation or {}).get("findings") or [] if f.get("location")]
    drawn: list[Mapping[str, Any]] = []
    for f in findings:
        if len(drawn) == MAX_FINDINGS_DRAWN:
            break
        if _drawable(f["location"]):
            drawn.append(f)
    by_severity: dict[str, list[Mapping[str, Any]]] = {}
    for f in drawn:
        by_severity.setdefault(str(f.get("severity") or ""), []).append(f)
    for severity, items in by_severity.items():
        color = SEVERITY_COLORS.get(severity, OTHER_SEVERITY_COLOR)
        style = {"color": color, "weight": 2.0, "fill": True, "fillColor": color, "fillOpacity": 0.5,
                 "opacity": 0.9}
        geoms = [json.dumps(f["location"]) for f in items]
        props = [{"popup": _finding_popup(f)} for f in items]
        _PrebuiltGeoJson(_layer_data(geoms, props), None, style, _POPUP_JS).add_to(group)
    return group, len(findings) - len(drawn)


def _finding_popup(f: Mapping[str, Any]) -> str:
    """Escaped HTML popup of one finding: check, severity, codes, measure and message."""
    return (
        f"<b>{escape(str(f.get('check', '')))}</b> ({escape(str(f.get('severity', '')))})"
        f"<br>codes: {escape(_codes(f.get('codes')))}"
        f"<br>measure: {escape(_fmt_measure(f))}"
        f"<br>{escape(str(f.get('message', '')))}"
    )


# --- formatting ------------------------------------------------------------------------------------------
def _fmt_num(v: Any) -> str:
    """Integers as integers, other numbers with 2 decimals, None as a dash."""
    if v is None:
        return "–"
    if isinstance(v, bool | int):
        return str(v)
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.2f}"
    return str(v)


def _fmt_area(v: Any) -> str:
    """An area in m², rounded, with thousands separators."""
    if isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(v):
        return f"{v:,.0f}"
    return "–" if v is None else str(v)


def _fmt_measure(f: Mapping[str, Any]) -> str:
    """A finding's measure with its unit."""
    measure = f.get("measure")
    if measure is None:
        return "–"
    return f"{_fmt_num(measure)} {f.get('unit') or ''}".strip()


def _codes(codes: Any, limit: int = 10) -> str:
    """A list of codes as text (the first `limit`, then "… +N")."""
    if codes is None:
        return ""
    if isinstance(codes, str):
        return codes
    codes = [str(c) for c in codes]
    more = f" … +{len(codes) - limit}" if len(codes) > limit else ""
    return ", ".join(codes[:limit]) + more


def _td(v: Any) -> str:
    """One escaped text cell (lists joined with commas)."""
    if isinstance(v, list | tuple):
        text = ", ".join(str(x) for x in v) or "–"
    else:
        text = "–" if v is None else str(v)
    return f"<td>{escape(text)}</td>"


def _td_num(text: str) -> str:
    """One right-aligned cell of an already formatted number."""
    return f'<td class="num">{escape(text)}</td>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], total: int | None = None) -> str:
    """An HTML table of rendered cells; a "… and N more" line when `total` exceeds the rows shown."""
    heads = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(f"<tr>{''.join(r)}</tr>" for r in rows)
    more = f'<p class="more">… and {total - len(rows)} more</p>' if total is not None and total > len(rows) else ""
    return f"<table><thead><tr>{heads}</tr></thead><tbody>{body}</tbody></table>{more}"


def _not_computed(title: str) -> str:
    return f'<section><h2>{escape(title)}</h2><p class="muted">not computed</p></section>'


# --- panels ----------------------------------------------------------------------------------------------
def _version_panel(version: Mapping[str, Any]) -> str:
    """The header: id, label, status, source, CRS, creation time."""
    status = str(version.get("status") or "")
    badge = {"draft": "gw-draft", "published": "gw-published"}.get(status, "gw-draft")
    facts = (("source", "source"), ("CRS", "crs"), ("created", "created_at"))
    items = " · ".join(f"{label}: {escape(str(version.get(key) or '–'))}" for label, key in facts)
    return (
        f'<header class="gw-version"><h1>Grid version #{escape(str(version.get("id", "")))} — '
        f'{escape(str(version.get("label") or ""))} '
        f'<span class="gw-badge {badge}">{escape(status)}</span></h1><p class="muted">{items}</p></header>'
    )


def _validation_panel(validation: Mapping[str, Any] | None, not_drawn: int) -> str:
    """ok / errors / warnings, counts by check and by level, the first MAX_ROWS findings."""
    if validation is None:
        return _not_computed("Validation")
    ok = bool(validation.get("ok"))
    badge = '<span class="gw-badge gw-ok">ok</span>' if ok else '<span class="gw-badge gw-bad">not ok</span>'
    findings = list(validation.get("findings") or [])
    parts = [
        f"<section><h2>Validation {badge}</h2>",
        f"<p>errors: <b>{escape(_fmt_num(validation.get('errors', 0)))}</b> · warnings: "
        f"<b>{escape(_fmt_num(validation.get('warnings', 0)))}</b> · findings: {len(findings)}</p>",
    ]
    if counts := validation.get("counts") or {}:
        rows = [[_td(k), _td_num(_fmt_num(v))] for k, v in counts.items()]
        parts.append("<h3>by check</h3>" + _table(["check", "findings"], rows))
    if grid_counts := validation.get("grid_counts") or {}:
        rows = [[_td(k), _td_num(_fmt_num(v))] for k, v in grid_counts.items()]
        parts.append("<h3>grids</h3>" + _table(["level", "grids"], rows))
    if findings:
        rows = [
            [_td(f.get("severity")), _td(f.get("check")), _td(_codes(f.get("codes"))), _td_num(_fmt_measure(f)),
             _td(f.get("message"))]
            for f in findings[:MAX_ROWS]
        ]
        headers = ["severity", "check", "codes", "measure", "message"]
        parts.append("<h3>findings</h3>" + _table(headers, rows, len(findings)))
    if not_drawn:
        parts.append(
            f'<p class="more">the map draws at most {MAX_FINDINGS_DRAWN} findings: {not_drawn} more not drawn</p>'
        )
    parts.append("</section>")
    return "".join(parts)


def _diff_panel(diff: Mapping[str, Any] | None) -> str:
    """Summary counts, added / removed / reshaped grids and what moves between grids."""
    if diff is None:
        return _not_computed("Changes against the current version")
    summary = diff.get("summary") or {}
    keys = [k for k in SUMMARY_KEYS if k in summary] + [k for k in summary if k not in SUMMARY_KEYS]
    parts = [
        "<section><h2>Changes against the current version</h2>",
        _table([k.replace("_", " ") for k in keys], [[_td_num(_fmt_num(summary[k])) for k in keys]]),
    ]
    for kind in ("added", "removed"):
        if rows_in := list(diff.get(kind) or []):
            rows = [[_td(r.get("code")), _td_num(_fmt_num(r.get("level"))), _td_num(_fmt_area(r.get("area_m2")))]
                    for r in rows_in[:MAX_ROWS]]
            parts.append(f"<h3>{kind} grids</h3>" + _table(["code", "level", "area m²"], rows, len(rows_in)))
    if reshaped := list(diff.get("reshaped") or []):
        areas = ("old_area_m2", "new_area_m2", "delta_m2")
        rows = [[_td(r.get("code"))] + [_td_num(_fmt_area(r.get(k))) for k in areas] for r in reshaped[:MAX_ROWS]]
        headers = ["code", "old area m²", "new area m²", "delta m²"]
        parts.append("<h3>reshaped grids</h3>" + _table(headers, rows, len(reshaped)))
    moves = diff.get("moves") or {}
    parts.append("<h3>what moves</h3>")
    for key, id_key, label in MOVE_KINDS:
        rows_in = list(moves.get(key) or [])
        if not rows_in:
            parts.append(f'<p class="muted">no {label} moves</p>')
            continue
        rows = [[_td(r.get(id_key)), _td(r.get("from")), _td(r.get("to"))] for r in rows_in[:MAX_ROWS]]
        parts.append(f"<h3>{key} moving ({len(rows_in)})</h3>" + _table([label, "from", "to"], rows, len(rows_in)))
    parts.append("</section>")
    return "".join(parts)


def _whatif_panel(whatif: Mapping[str, Any] | None) -> str:
    """Workload statistics before / after side by side, and the grids whose incident count changes."""
    if whatif is None:
        return _not_computed("Workload what-if")
    before, after = whatif.get("before") or {}, whatif.get("after") or {}
    keys = [k for k in STAT_KEYS if k in before or k in after]
    rows = [
        [_td(k.replace("_", " ")), _td_num(_fmt_num(before.get(k))), _td_num(_fmt_num(after.get(k)))] for k in keys
    ]
    changed = [r for r in whatif.get("per_grid") or [] if r.get("before") != r.get("after")]
    changed.sort(key=lambda r: -abs((r.get("after") or 0) - (r.get("before") or 0)))  # biggest change first
    parts = [
        "<section><h2>Workload what-if</h2>",
        f"<p>incidents of the last {escape(_fmt_num(whatif.get('days')))} days: "
        f"{escape(_fmt_num(whatif.get('incidents')))}, counted in the current and in the draft grids</p>",
        _table(["", "current", "draft"], rows),
    ]
    if changed:
        grid_rows = []
        for r in changed[:MAX_ROWS]:
            b, a = r.get("before"), r.get("after")
            delta = None if a is None or b is None else a - b
            grid_rows.append([_td(r.get("code"))] + [_td_num(_fmt_num(x)) for x in (b, a, delta)])
        parts.append(f"<h3>grids whose count changes ({len(changed)})</h3>"
                     + _table(["grid", "current", "draft", "change"], grid_rows, len(changed)))
    else:
        parts.append('<p class="muted">no grid changes its count</p>')
    parts.append("</section>")
    return "".join(parts)


# --- the page --------------------------------------------------------------------------------------------
def build_plan_map(
    *,
    version: dict[str, Any],
    old_grids: Sequence[Grid],
    new_grids: Sequence[Grid],
    diff: dict[str, Any] | None,
    validation: dict[str, Any] | None,
    whatif: dict[str, Any] | None,
    tiles: str | None = "OpenStreetMap",
) -> str:
    """Build the full HTML page of the planner's diff map for one grid version.

    `old_grids` are the current version's grids, `new_grids` the draft's (all levels, WGS84 lon/lat).
    `diff`, `validation` and `whatif` are the dicts computed by `geo/` (any of them may be None: its
    panel then says "not computed"). Returns the rendered page (map + panels) as one string.
    """
    fmap = folium.Map(location=list(DEFAULT_CENTER), zoom_start=13, tiles=tiles, control_scale=True, height="70vh")
    root = fmap.get_root()
    title = f"plan · version {version.get('id', '')} · {version.get('label') or ''}"
    root.header.add_child(_Raw(f"<title>{escape(title)}</title>"))
    root.header.add_child(_Raw(PAGE_CSS))

    _boundary_group(LAYER_OLD, old_grids, OLD_COLOR, DASH).add_to(fmap)
    _boundary_group(LAYER_NEW, new_grids, NEW_COLOR, None).add_to(fmap)
    _changed_group(old_grids, new_grids, diff).add_to(fmap)
    findings, not_drawn = _findings_group(validation)
    findings.add_to(fmap)
    folium.LayerControl(collapsed=False).add_to(fmap)

    bounds = _bounds_of([g.geometry for g in (*old_grids, *new_grids) if g.geometry is not None])
    if bounds is not None:
        fmap.fit_bounds(bounds)

    panels = (
        '<div class="gw-panels">'
        + _version_panel(version)
        + '<div class="gw-row">'
        + _validation_panel(validation, not_drawn)
        + _diff_panel(diff)
        + _whatif_panel(whatif)
        + "</div></div>"
    )
    _Panels(panels).add_to(fmap)
    return root.render()
