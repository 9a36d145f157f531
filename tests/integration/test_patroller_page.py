"""The patroller phone view `/patroller`: who may open it, what the HTML shell loads (nothing from
outside the server), and — on both stores — the API flow the page drives as a patroller: its lists
(own and geofence incidents, nothing else), acknowledge → arrive → resolve with a note and an uploaded
photo, and the one-tap report."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from alerts.model import OPEN_STATES
from api.routes.phone import tile_layer
from api.runtime import Runtime
from store.ports import Store
from tests.integration.apphelpers import (
    Clock,
    client_for,
    make_runtime,
    problem,
    seed,
    token_headers,
)

pytestmark = pytest.mark.integration

ME = "P0001"  # on the weekday day shift at T0 (Monday 10:00 in Shanghai)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
HOOK_IDS = ("pv-assigned", "pv-nearby", "pv-banner", "pv-report", "pv-report-form", "pv-report-type", "pv-report-note",
            "pv-report-photo", "pv-report-submit", "pv-detail", "pv-note", "pv-photo", "pv-status")


@pytest.fixture
def prt(store_backend: Store, clock: Clock, tmp_path: Path) -> Runtime:
    """A runtime over the seeded district whose photos go to a temporary data_dir."""
    seed(store_backend)
    return make_runtime(store_backend, clock, data_dir=str(tmp_path / "data"))


@pytest.fixture
def sqlite_rt(sqlite_store: Store, clock: Clock) -> Runtime:
    """The seeded district on SQLite with map tiles off (an offline site)."""
    seed(sqlite_store)
    return make_runtime(sqlite_store, clock, map_tiles="none")


@pytest.fixture
def admin(prt: Runtime) -> Iterator[TestClient]:
    with client_for(prt) as c:
        yield c


# --- the page ------------------------------------------------------------------------------------
def test_the_page_needs_a_login(sqlite_rt: Runtime) -> None:
    with client_for(sqlite_rt, role=None) as c:
        resp = c.get("/patroller", follow_redirects=False)
    assert resp.status_code == 303
    assert resp.headers["location"] == "/login?next=%2Fpatroller"


def test_a_patroller_gets_the_shell_with_the_hooks_and_nothing_from_outside(sqlite_rt: Runtime) -> None:
    with client_for(sqlite_rt, role="patroller", patroller=ME) as c:
        resp = c.get("/patroller")
        js = c.get("/static/patroller.js")
        css = c.get("/static/patroller.css")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/html")
    assert resp.headers["cache-control"] == "no-store"
    page = resp.text
    assert 'name="viewport"' in page
    for hook in HOOK_IDS:
        assert f'id="{hook}"' in page, hook
    for action in ("acknowledge", "arrive", "resolve"):
        assert f'data-action="{action}"' in page
    assert 'accept="image/*" capture="environment"' in page
    assert '<form method="post" action="/logout"' in page
    refs = [r.split("?")[0] for r in re.findall(r'<(?:script|link)\b[^>]*\b(?:src|href)="([^"]*)"', page)]
    assert "/static/patroller.js" in refs and "/static/patroller.css" in refs
    assert "/static/vendor/leaflet/leaflet.js" in refs and "/static/vendor/leaflet/leaflet.css" in refs
    assert all(r.startswith("/") and not r.startswith("//") or r.startswith("data:") for r in refs), refs
    assert not re.search(r"https?://", page)
    config = json.loads(re.search(r'<script type="application/json" id="pv-config">(.*?)</script>', page, re.S).group(1))
    assert config["patroller"] == ME and config["tiles"] is None
    assert set(config["open_states"]) == {s.value for s in OPEN_STATES}
    assert js.status_code == 200 and "window.gridwatchPatroller" in js.text
    assert not re.search(r"https?://", js.text)  # no CDN, no tiles baked in
    assert css.status_code == 200 and not re.search(r"https?://", css.text)


def test_user_text_in_the_page_is_escaped(sqlite_rt: Runtime) -> None:
    name = "p</script><img src=x onerror=alert(1)>&"
    with client_for(sqlite_rt, role=None) as c:
        resp = c.get("/patroller", headers=token_headers(sqlite_rt, "patroller", patroller=ME, username=name))
    assert resp.status_code == 200
    assert "</script><img" not in resp.text and "<img" not in resp.text
    raw = re.search(r'<script type="application/json" id="pv-config">(.*?)</script>', resp.text, re.S).group(1)
    assert json.loads(raw)["username"] == name


@pytest.mark.parametrize(("role", "binding"), [("planner", {}), ("admin", {}), ("commander", {"grid": "430102001"})])
def test_other_roles_get_403(sqlite_rt: Runtime, role: str, binding: dict[str, str]) -> None:
    with client_for(sqlite_rt, role=role, **binding) as c:
        body = problem(c.get("/patroller", follow_redirects=False), 403)
    assert "patroller" in body["detail"]


def test_the_map_tiles_setting_is_the_base_layer(sqlite_rt: Runtime) -> None:
    sqlite_rt.settings.map_tiles = "/tiles/{z}/{x}/{y}.png"
    with client_for(sqlite_rt, role="patroller", patroller=ME) as c:
        page = c.get("/patroller").text
    config = json.loads(re.search(r'<script type="application/json" id="pv-config">(.*?)</script>', page, re.S).group(1))
    assert config["tiles"]["url"] == "/tiles/{z}/{x}/{y}.png"


def test_tile_setting() -> None:
    assert tile_layer(None) is None and tile_layer("none") is None and tile_layer("") is None and tile_layer(42) is None
    osm = {"url": "https://tile.openstreetmap.org/{z}/{x}/{y}.png", "attribution": "© OpenStreetMap contributors"}
    assert tile_layer("OpenStreetMap") == osm and tile_layer("osm") == osm
    assert tile_layer("/tiles/{z}/{x}/{y}.png") == {"url": "/tiles/{z}/{x}/{y}.png", "attribution": "map tiles"}
    assert tile_layer("not a template") is None


# --- the API flow the page drives ----------------------------------------------------------------
def spot(rt: Runtime, code: str) -> tuple[float, float]:
    p = rt.grid_by_code[code].geometry.representative_point()
    return p.x, p.y


def report(client: TestClient, rt: Runtime, patroller: str, grid: str, type_: str = "city.litter") -> dict[str, Any]:
    """An incident opened (as admin) by `patroller`'s report inside `grid`: dispatched to that patroller."""
    lon, lat = spot(rt, grid)
    resp = client.post("/api/v1/reports", json={"patroller_id": patroller, "lon": lon, "lat": lat, "type": type_})
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    assert body["assignee"] == patroller and body["grid"] == grid and body["state"] == "dispatched"
    return body


def open_ids(client: TestClient, headers: dict[str, str]) -> set[str]:
    resp = client.get("/api/v1/incidents", params={"status": sorted(s.value for s in OPEN_STATES)}, headers=headers)
    assert resp.status_code == 200, resp.text
    return {i["id"] for i in resp.json()["items"]}


def test_lists_actions_and_reports_as_the_patroller(admin: TestClient, prt: Runtime) -> None:
    rt = prt
    me = next(p for p in rt.patrollers if p.id == ME)
    fence = set(me.grid_codes) | set(me.backup_grid_codes)
    home = me.grid_codes[0]
    other = next(p for p in rt.patrollers if p.id != ME and not (set(p.grid_codes) & fence))
    outside = other.grid_codes[0]
    assert outside not in fence

    mine = report(admin, rt, ME, home)
    nearby = report(admin, rt, other.id, home)
    elsewhere = report(admin, rt, other.id, outside)
    as_me = token_headers(rt, "patroller", patroller=ME)

    ids = open_ids(admin, as_me)
    assert mine["id"] in ids and nearby["id"] in ids and elsewhere["id"] not in ids
    items = {i["id"]: i for i in admin.get("/api/v1/incidents", headers=as_me).json()["items"]}
    assert items[mine["id"]]["assignee"] == ME and items[nearby["id"]]["assignee"] == other.id
    problem(admin.get(f"/api/v1/incidents/{elsewhere['id']}", headers=as_me), 404)

    # the patroller's own login, last known position and visible grids (top bar, fallback position, map)
    assert admin.get("/api/v1/me", headers=as_me).json()["patroller"] == ME
    assert [p["id"] for p in admin.get("/api/v1/patrollers", headers=as_me).json()["items"]] == [ME]
    grids = {f["properties"]["code"] for f in admin.get("/api/v1/grids", params={"level": 3}, headers=as_me).json()["features"]}
    assert grids == fence
    assert admin.get("/api/v1/open311/services.json", headers=as_me).status_code == 200

    # the detail sheet: buttons from allowed_actions; none on someone else's incident
    detail = admin.get(f"/api/v1/incidents/{mine['id']}", headers=as_me).json()
    assert "acknowledge" in detail["allowed_actions"]
    theirs = admin.get(f"/api/v1/incidents/{nearby['id']}", headers=as_me).json()
    assert not {"acknowledge", "arrive", "resolve"} & set(theirs["allowed_actions"])
    problem(admin.post(f"/api/v1/incidents/{nearby['id']}/actions", json={"action": "acknowledge"}, headers=as_me), 403)

    url = f"/api/v1/incidents/{mine['id']}"
    for action, allowed_next in (("acknowledge", "arrive"), ("arrive", "resolve")):
        resp = admin.post(f"{url}/actions", json={"action": action, "note": f"{action} by phone"}, headers=as_me)
        assert resp.status_code == 200, resp.text
        assert allowed_next in admin.get(url, headers=as_me).json()["allowed_actions"]
    up = admin.post(f"{url}/photos", files=[("photos", ("after.png", PNG, "image/png"))], headers=as_me)
    assert up.status_code == 201, up.text
    sha = [p["sha256"] for p in up.json()["photos"]]
    resp = admin.post(f"{url}/actions", json={"action": "resolve", "note": "swept", "params": {"photos": sha}}, headers=as_me)
    assert resp.status_code == 200, resp.text
    done = admin.get(url, headers=as_me).json()
    assert done["state"] == "resolved" and done["note"] == "swept"
    assert done["arrived_at"] is not None and done["acknowledged_at"] is not None
    assert {"sha256": sha[0], "action": "resolve"} in done["details"]["photos"]
    assert [h["actor"] for h in done["history"][-3:]] == [f"patroller:{ME}"] * 3
    photo = admin.get(f"{url}/photos/{sha[0]}", headers=as_me)
    assert photo.status_code == 200 and photo.content == PNG

    # one-tap report at the current position: JSON, and multipart with a photo; never as someone else
    lon, lat = spot(rt, home)
    resp = admin.post("/api/v1/reports", json={"lon": lon, "lat": lat, "type": "city.road", "note": "pothole"}, headers=as_me)
    assert resp.status_code == 201, resp.text
    mine2 = resp.json()
    assert mine2["assignee"] == ME and mine2["reporter"] == {"kind": "patroller", "patroller_id": ME}
    assert mine2["id"] in open_ids(admin, as_me)
    resp = admin.post("/api/v1/reports", data={"lon": str(lon), "lat": str(lat), "type": "city.lighting"},
                      files=[("photos", ("lamp.png", PNG, "image/png"))], headers=as_me)
    assert resp.status_code == 201, resp.text
    assert resp.json()["assignee"] == ME and len(resp.json()["photos"]) == 1
    body = problem(admin.post("/api/v1/reports", json={"patroller_id": other.id, "lon": lon, "lat": lat, "type": "city.road"},
                              headers=as_me), 403)
    assert "patroller_id" in body["detail"]
