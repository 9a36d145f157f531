"""The command-center map wall: grids coloured by their worst open incident, incident markers."""

from __future__ import annotations

from typing import Any

import folium

from maps.style import QUIET_FILL, inert, light_color, worst_light

LEVEL_WEIGHT = {1: 3.0, 2: 2.0, 3: 1.0}


DEVICE_COLORS = {"alarming": "#d32f2f", "offline": "#757575", "online": "#2e7d32", "unknown": "#1565c0"}
"""Device marker colours by state."""


def build_wall(
    grids: dict[str, Any],
    incidents: list[dict[str, Any]],
    *,
    title: str = "gridwatch map wall",
    center: tuple[float, float] | None = None,
    tiles: str | None = None,
    devices: list[dict[str, Any]] | None = None,
) -> folium.Map:
    """Build the wall from a grid FeatureCollection (properties code, level, name) and incident dicts.

    `devices` (optional) are device dicts {id, kind, name, state, lon, lat, last_seen, alarming}: a
    layer of markers coloured by state — alarming (an open incident) red, offline grey, online
    green, never heard from blue.
    """
    by_grid: dict[str, list[str | None]] = {}
    for inc in incidents:
        if inc.get("grid"):
            for level_len in (9, 12, 15):
                by_grid.setdefault(inc["grid"][:level_len], []).append(inc.get("light") or "none")
    features = []
    for f in grids.get("features", []):
        code = f["properties"]["code"]
        lights = by_grid.get(code, [])
        worst = worst_light([None if x == "none" else x for x in lights]) if lights else None
        fill = light_color(worst) if lights else QUIET_FILL
        # tooltips render HTML and branca re-reads scripts as templates: names come from uploaded layers
        props = {k: inert(v) if isinstance(v, str) else v for k, v in f["properties"].items()}
        props.update(open_incidents=len(lights), fill=fill)
        features.append({"type": "Feature", "geometry": f["geometry"], "properties": props})
    fmap = folium.Map(location=list(center) if center else [27.62, 113.85], zoom_start=13, tiles=tiles, control_scale=True)
    fmap.get_root().header.add_child(folium.Element(f"<title>{inert(title)}</title>"))
    if features:
        layer = folium.GeoJson(
            {"type": "FeatureCollection", "features": features},
            name="grids",
            style_function=lambda f: {
                "fillColor": f["properties"]["fill"],
                "color": "#37474f",
                "weight": LEVEL_WEIGHT.get(f["properties"].get("level", 3), 1.0),
                "fillOpacity": 0.35 if f["properties"]["open_incidents"] else 0.08,
            },
            tooltip=folium.GeoJsonTooltip(fields=["code", "name", "open_incidents"], aliases=["grid", "name", "open incidents"]),
        )
        layer.add_to(fmap)
        if center is None:
            fmap.fit_bounds(layer.get_bounds())
    markers = folium.FeatureGroup(name="incidents")
    for inc in incidents:
        e = {k: inert(v) for k, v in inc.items() if isinstance(v, str | int | float)}
        popup = (
            f"<b>{e['type']}</b><br>{e['id']}<br>state: {e['state']}<br>light: {e.get('light') or '-'}"
            f"<br>grid: {e.get('grid') or '-'}<br>assignee: {e.get('assignee') or 'command center'}"
            f"<br>alarms: {e.get('alarm_count', 1)}"
        )
        folium.CircleMarker(
            location=[inc["lat"], inc["lon"]],
            radius=7,
            color=light_color(inc.get("light")),
            fill=True,
            fill_opacity=0.9,
            popup=folium.Popup(popup, max_width=300),
            tooltip=f"{e['type']} ({e['state']})",
        ).add_to(markers)
    markers.add_to(fmap)
    if devices:
        layer = folium.FeatureGroup(name="devices")
        for d in devices:
            e = {k: inert(v) for k, v in d.items() if isinstance(v, str | int | float)}
            status = "alarming" if d.get("alarming") else d.get("state") or "unknown"
            folium.CircleMarker(
                location=[d["lat"], d["lon"]],
                radius=4,
                color=DEVICE_COLORS.get(status, DEVICE_COLORS["unknown"]),
                fill=True,
                fill_opacity=0.8,
                weight=1,
                popup=folium.Popup(
                    f"<b>{e['name']}</b><br>{e['id']} ({e['kind']})<br>state: {inert(status)}"
                    f"<br>last seen: {e.get('last_seen') or '-'}", max_width=300),
                tooltip=f"{e['id']}: {inert(status)}",
            ).add_to(layer)
        layer.add_to(fmap)
    folium.LayerControl().add_to(fmap)
    return fmap
