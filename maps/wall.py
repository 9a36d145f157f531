"""The command-center map wall page: a folium shell over local Leaflet; `/static/wall.js` loads the data as JSON.

No user text is rendered into the page (grid names, incident types come through fetch and are set as text
by the script), and no script or style comes from a CDN: a command center's network may have no internet.
"""

from __future__ import annotations

from typing import Any

import folium

from maps import script_json, static_version
from maps.style import LIGHT_COLORS, NO_LIGHT_COLOR, QUIET_FILL

DEVICE_COLORS = {"alarming": "#d32f2f", "offline": "#757575", "online": "#2e7d32", "unknown": "#1565c0"}
"""Device marker colours by state."""
DIFFICULTY_COLORS = {"green": "#2e7d32", "blue": "#1565c0", "yellow": "#f9a825", "orange": "#ef6c00", "red": "#c62828"}
"""The five difficulty colours (五色) of design §6."""
LEAFLET_JS = [("leaflet", "/static/vendor/leaflet/leaflet.js"), ("leaflet_heat", "/static/vendor/leaflet.heat/leaflet-heat.js")]
LEAFLET_CSS = [("leaflet_css", "/static/vendor/leaflet/leaflet.css")]

PANEL = """
<div id="gw-panel">
  <div class="gw-head"><span class="gw-brand">gridwatch</span><span id="gw-user"></span>
    <form method="post" action="/logout" class="gw-logout"><button type="submit" id="gw-logout">Log out</button></form></div>
  <nav id="gw-crumbs" aria-label="grid path"></nav>
  <div id="gw-alert" role="alert" hidden></div>
  <div class="gw-counters">
    <div><b id="gw-count-open">0</b><span>open</span></div>
    <div class="gw-yellow"><b id="gw-count-yellow">0</b><span>yellow</span></div>
    <div class="gw-red"><b id="gw-count-red">0</b><span>red</span></div>
    <div><b id="gw-count-escalated">0</b><span>escalated</span></div>
  </div>
  <div class="gw-heat"><label><input type="checkbox" id="gw-heat-toggle"> heatmap, last 30 days</label>
    <select id="gw-heat-type" aria-label="incident type"><option value="">all types</option></select></div>
  <ul id="gw-incidents"></ul>
  <div id="gw-status" aria-live="polite"></div>
</div>
<div id="gw-legend"></div>
"""



def tiles_of(setting: str | None) -> tuple[str | None, str | None]:
    """(tiles, attribution) for folium from the `map_tiles` setting: 'none'/'' → no tiles; a URL template needs an attribution."""
    if setting is None or setting.strip().lower() in ("", "none", "off"):
        return None, None
    return setting, ("map tiles" if "{" in setting else None)


def page_config(*, grid: str | None, role: str, username: str, tiles: str | None, map_name: str) -> dict[str, Any]:
    """The JSON the page script starts from (no data: the script fetches it)."""
    return {
        "grid": grid, "role": role, "username": username, "tiles": tiles, "map": map_name, "api": "/api/v1",
        "colors": {"lights": LIGHT_COLORS, "no_light": NO_LIGHT_COLOR, "quiet": QUIET_FILL, "devices": DEVICE_COLORS,
                   "difficulty": DIFFICULTY_COLORS},
        "heat_days": 30, "patrollers_every_s": 30,
    }


def build_wall(
    *,
    grid: str | None = None,
    role: str = "admin",
    username: str = "",
    tiles: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    zoom: int = 13,
) -> str:
    """The map wall page as HTML: a folium map (canvas renderer, local Leaflet) plus the panel, legend and script."""
    tile_layer, attr = tiles_of(tiles)
    center = [27.62, 113.85] if bbox is None else [(bbox[1] + bbox[3]) / 2, (bbox[0] + bbox[2]) / 2]
    fmap = folium.Map(location=center, zoom_start=zoom, tiles=tile_layer, attr=attr, prefer_canvas=True, control_scale=True)
    fmap.default_js = list(LEAFLET_JS)  # instance attributes: folium's CDN list stays untouched for other maps
    fmap.default_css = list(LEAFLET_CSS)
    root = fmap.get_root()
    root.header.add_child(folium.Element('<title>gridwatch map wall</title><link rel="icon" href="data:,">'))
    root.header.add_child(folium.Element(f'<link rel="stylesheet" href="/static/wall.css?v={static_version("wall.css")}">'))
    root.header.add_child(folium.Element(f'<script defer src="/static/wall.js?v={static_version("wall.js")}"></script>'))
    root.html.add_child(folium.Element(PANEL))
    html = root.render()
    config = page_config(grid=grid, role=role, username=username, tiles=tile_layer, map_name=fmap.get_name())
    # inserted after rendering: branca re-reads rendered text as a template, user text must never reach it
    return html.replace("</head>", f'<script id="gw-config" type="application/json">{script_json(config)}</script>\n</head>', 1)
