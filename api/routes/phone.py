"""The patroller's phone view `GET /patroller` (design §1, §4): a static HTML shell; `/static/patroller.js`
does the rest through the patroller-scoped API (incidents, actions, photos, reports, SSE stream).

Only a patroller login opens it (403 for every other role, admins included: the API calls the page
makes are scoped to the login, so an admin would see a different list than the patroller does).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from alerts.model import OPEN_STATES, IncidentState
from api.access import ForbiddenError
from api.auth import Principal
from api.deps import RuntimeDep
from api.routes.login import page_principal
from maps import script_json, static_version

router = APIRouter(tags=["pages"])

_OSM = "© OpenStreetMap contributors"
_CARTO = "https://{s}.basemaps.cartocdn.com/%s/{z}/{x}/{y}{r}.png"
#: folium tile names a `map_tiles` setting may give instead of a URL template (lower case).
TILES = {
    "openstreetmap": ("https://tile.openstreetmap.org/{z}/{x}/{y}.png", _OSM),
    "osm": ("https://tile.openstreetmap.org/{z}/{x}/{y}.png", _OSM),
    "cartodb positron": (_CARTO % "light_all", f"{_OSM} © CARTO"),
    "cartodb dark_matter": (_CARTO % "dark_all", f"{_OSM} © CARTO"),
}


def tile_layer(value: Any) -> dict[str, str] | None:
    """The Leaflet base layer of the `map_tiles` setting (a folium name or a URL template): None (no tiles)
    when unset, "none"/"off" or not understood."""
    if not isinstance(value, str) or value.strip().lower() in ("", "none", "off"):
        return None
    named = TILES.get(value.strip().lower())
    if named is not None:
        return {"url": named[0], "attribution": named[1]}
    if "{z}" in value and "{x}" in value and "{y}" in value:
        return {"url": value.strip(), "attribution": "map tiles"}
    return None



_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover">
<meta name="theme-color" content="#1565c0">
<title>gridwatch · patroller</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/vendor/leaflet/leaflet.css">
<link rel="stylesheet" href="/static/patroller.css?v={css_v}">
</head><body>
<header id="pv-top">
  <span id="pv-conn" class="dot" title="live updates"></span>
  <span id="pv-name">patroller</span>
  <span id="pv-duty" class="chip">…</span>
  <form method="post" action="/logout" id="pv-logout"><button type="submit">Log out</button></form>
</header>
<div id="pv-banner" role="alert" hidden></div>
<div id="pv-map"></div>
<p id="pv-status" role="status" aria-live="polite"></p>
<main id="pv-lists">
  <h2>Assigned to me <span class="count" id="pv-assigned-count">0</span></h2>
  <ul id="pv-assigned" class="cards"></ul>
  <h2>Nearby <small>(my grids)</small> <span class="count" id="pv-nearby-count">0</span></h2>
  <ul id="pv-nearby" class="cards"></ul>
</main>
<button type="button" id="pv-report" class="big">Report here 一键上报</button>
<section id="pv-detail" class="sheet" hidden aria-label="incident">
  <button type="button" class="close" data-close="pv-detail" aria-label="close">×</button>
  <div id="pv-detail-body"></div>
  <label for="pv-note">Note</label>
  <textarea id="pv-note" rows="3" maxlength="2000"></textarea>
  <label for="pv-photo">Photo</label>
  <input type="file" id="pv-photo" accept="image/*" capture="environment" multiple>
  <div id="pv-actions" class="actions">
    <button type="button" data-action="acknowledge" hidden>Acknowledge 签收</button>
    <button type="button" data-action="arrive" hidden>Arrived 到场</button>
    <button type="button" data-action="resolve" hidden>Resolve 处理反馈</button>
  </div>
  <p id="pv-detail-status" class="sheet-status" role="status"></p>
</section>
<form id="pv-report-form" class="sheet" hidden aria-label="report">
  <button type="button" class="close" data-close="pv-report-form" aria-label="close">×</button>
  <h2>Report at my position</h2>
  <p id="pv-report-where"></p>
  <label for="pv-report-type">Type</label>
  <select id="pv-report-type" required></select>
  <label for="pv-report-note">Note</label>
  <textarea id="pv-report-note" rows="3" maxlength="2000"></textarea>
  <label for="pv-report-photo">Photo</label>
  <input type="file" id="pv-report-photo" accept="image/*" capture="environment">
  <button type="submit" id="pv-report-submit" class="big-inline">Send report</button>
  <p id="pv-report-status" class="sheet-status" role="status"></p>
</form>
<script type="application/json" id="pv-config">{config}</script>
<script src="/static/vendor/leaflet/leaflet.js"></script>
<script src="/static/patroller.js?v={js_v}"></script>
</body></html>"""


@router.get("/patroller", response_class=HTMLResponse)
def patroller_page(rt: RuntimeDep, principal: Annotated[Principal, Depends(page_principal)]) -> HTMLResponse:
    """The phone view of the logged-in patroller (403 for other roles, and for a login bound to no patroller)."""
    if principal.role != "patroller":
        raise ForbiddenError(f"role {principal.role!r}: the phone view is for patrollers")
    if not principal.patroller_id:
        raise ForbiddenError("this login is not bound to a patroller")
    config = {
        "username": principal.username,
        "patroller": principal.patroller_id,
        "tiles": tile_layer(getattr(rt.settings, "map_tiles", None)),
        "open_states": [s.value for s in IncidentState if s in OPEN_STATES],
    }
    body = (_PAGE.replace("{css_v}", static_version("patroller.css")).replace("{js_v}", static_version("patroller.js"))
            .replace("{config}", script_json(config)))
    return HTMLResponse(body, headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
