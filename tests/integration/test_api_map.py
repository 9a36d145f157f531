"""The map wall: the `/map` page shell and its data routes `/api/v1/wall/*`, on SQLite and PostGIS."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from shapely.geometry import Point, box, shape

from api.runtime import Runtime
from maps.style import LIGHT_COLORS, QUIET_FILL
from store.ports import Store
from tests.integration.apphelpers import (
    Clock,
    client_for,
    feed_incidents,
    make_runtime,
    problem,
    sample_district,
    seed,
    wall_grids,
    wall_markers,
)

pytestmark = pytest.mark.integration

RED, YELLOW, GREEN = LIGHT_COLORS["red"], LIGHT_COLORS["yellow"], LIGHT_COLORS["green"]
WALL_ROUTES = ("/api/v1/wall/grids", "/api/v1/wall/summary", "/api/v1/wall/heatmap", "/api/v1/wall/buildings?grid=430102001001")


@pytest.fixture
def incidents(rt: Runtime, clock: Clock) -> dict[str, dict[str, object]]:
    """The three sample incidents, 12 minutes later: intrusion yellow, cut green, fire red; by type."""
    ids = feed_incidents(rt)
    clock.advance(minutes=12)
    out = {}
    for type_, incident_id in ids.items():
        incident = rt.store.incident(incident_id)
        assert incident is not None
        out[type_] = {"id": incident_id, "l3": incident.route.l3, "lon": incident.route.lon, "lat": incident.route.lat}
    return out


def codes(level: int, parent: str | None = None) -> set[str]:
    """Codes of the sample district's grids of `level` (children of `parent`, by parent_code)."""
    return {g.code for g in sample_district().grids if g.level == level and (parent is None or g.parent_code == parent)}


def geometry(code: str):  # noqa: ANN201
    return next(g.geometry for g in sample_district().grids if g.code == code)


def summary(client: TestClient, **params: str) -> dict[str, object]:
    resp = client.get("/api/v1/wall/summary", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


# --- the page ----------------------------------------------------------------------------------------
def page_config(html: str) -> dict[str, object]:
    m = re.search(r'<script id="gw-config" type="application/json">(.*?)</script>', html, re.S)
    assert m is not None
    return json.loads(m[1])  # type: ignore[no-any-return]


def test_the_map_page_is_a_shell_with_local_scripts_and_no_data(client: TestClient, incidents: dict[str, dict[str, object]]) -> None:
    resp = client.get("/map")

    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    html = resp.text
    assert page_config(html)["grid"] is None and page_config(html)["role"] == "admin"
    assert "/static/wall.js" in html and "/static/vendor/leaflet/leaflet.js" in html
    assert not re.findall(r"""(?:src|href)=["'](?:https?:)?//""", html)
    for inc in incidents.values():
        assert str(inc["id"]) not in html  # incidents come from /api/v1/wall/summary
    assert not any(g.name in html for g in sample_district().grids)  # no user text rendered (branca re-reads it as a template)
    assert client.get("/static/wall.js").status_code == 200 and client.get("/static/wall.css").status_code == 200


def test_the_map_page_redirects_to_the_login_without_one(rt: Runtime) -> None:
    with client_for(rt, role=None) as anonymous:
        resp = anonymous.get("/map", params={"grid": "430102001"}, follow_redirects=False)

    assert resp.status_code == 303 and resp.headers["location"].startswith("/login?next=")


def test_the_map_page_is_for_admins_and_commanders(rt: Runtime) -> None:
    l1 = sorted(codes(1))[0]
    patroller = rt.patrollers[0].id
    with client_for(rt, role="patroller", patroller=patroller) as c:
        problem(c.get("/map"), 403)
    with client_for(rt, role="commander", grid=l1) as c:
        resp = c.get("/map")
        assert resp.status_code == 200 and page_config(resp.text)["grid"] == l1  # opens on its own grid
        problem(c.get("/map", params={"grid": sorted(codes(1))[1]}), 403)


@pytest.mark.parametrize("grid", ["430102999", "430102001999", "430102001001999"])
def test_an_unknown_grid_is_404_problem(client: TestClient, grid: str) -> None:
    for resp in (client.get("/map", params={"grid": grid}), client.get("/api/v1/wall/grids", params={"parent": grid}),
                 client.get("/api/v1/wall/summary", params={"grid": grid})):
        assert grid in problem(resp, 404)["detail"]


def test_a_malformed_grid_code_is_422_naming_the_parameter(client: TestClient) -> None:
    assert [e["field"] for e in problem(client.get("/map", params={"grid": "4301 OR 1=1"}), 422)["errors"]] == ["grid"]
    assert [e["field"] for e in problem(client.get("/api/v1/wall/grids", params={"parent": "4301 OR 1=1"}), 422)["errors"]] == ["parent"]
    assert [e["field"] for e in problem(client.get("/api/v1/wall/summary", params={"grid": "{{7*7}}"}), 422)["errors"]] == ["grid"]


# --- grids ---------------------------------------------------------------------------------------------
def test_the_top_level_shows_the_level_1_grids_quiet(client: TestClient) -> None:
    body = client.get("/api/v1/wall/grids").json()

    grids = {f["properties"]["code"]: f["properties"] for f in body["features"]}
    assert set(grids) == codes(1)
    assert {(g["fill"], g["open"], g["light"], g["has_children"], g["level"]) for g in grids.values()} == {(QUIET_FILL, 0, None, True, 1)}
    assert body["level"] == 1 and body["breadcrumbs"] == [] and body["parent"] is None
    x0, y0, x1, y1 = body["bbox"]
    assert all(box(x0, y0, x1, y1).buffer(1e-5).contains(geometry(c)) for c in grids)
    assert isinstance(body["zoom"], int) and 10 <= body["zoom"] <= 14


def test_grids_are_coloured_by_the_worst_open_incident_of_their_subtree(client: TestClient,
                                                                       incidents: dict[str, dict[str, object]]) -> None:
    expected = {"fence.intrusion": YELLOW, "fence.cut": GREEN, "thermal.fire": RED}
    top = wall_grids(client)
    for type_, inc in incidents.items():
        l3 = str(inc["l3"])
        l1, l2 = l3[:9], l3[:12]
        assert (top[l1]["fill"], top[l1]["open"]) == (expected[type_], 1), type_
        assert wall_grids(client, parent=l1)[l2]["fill"] == expected[type_]
        assert (wall_grids(client, parent=l2)[l3]["fill"], wall_grids(client, parent=l2)[l3]["open"]) == (expected[type_], 1)
    busy = {str(i["l3"])[:9] for i in incidents.values()}
    assert {g["fill"] for c, g in top.items() if c not in busy} == {QUIET_FILL}


def test_an_undispatched_incident_is_coloured_by_its_register_clock(store_backend: Store, clock: Clock) -> None:
    """Not dispatched yet: the register+dispatch stage clock runs (design §6), green at first, red when overdue."""
    seed(store_backend)
    rt = make_runtime(store_backend, clock, auto_dispatch=False)
    ids = feed_incidents(rt)
    incident = rt.store.incident(ids["thermal.fire"])
    assert incident is not None and incident.stage == "register" and incident.state.value == "reported"
    l3 = str(incident.route.l3)
    with client_for(rt) as c:
        assert wall_grids(c, parent=l3[:12])[l3]["fill"] == GREEN
        clock.now = incident.deadline + timedelta(minutes=1)  # type: ignore[operator]
        assert wall_grids(c, parent=l3[:12])[l3]["fill"] == RED
        assert (incident.route.lat, incident.route.lon, "red") in wall_markers(c)


def test_a_closed_incident_leaves_the_wall(client: TestClient, incidents: dict[str, dict[str, object]]) -> None:
    fire = incidents["thermal.fire"]
    for action in ("acknowledge", "resolve", "check", "close"):
        assert client.post(f"/api/v1/incidents/{fire['id']}/actions", json={"action": action}).status_code == 200

    assert len(wall_markers(client)) == 2
    l3 = str(fire["l3"])
    assert wall_grids(client, parent=l3[:12])[l3]["fill"] == QUIET_FILL
    assert summary(client)["counters"] == {"open": 2, "yellow": 1, "red": 0, "escalated": 0}


def test_drill_down_shows_the_children_of_the_parent_inside_it(client: TestClient, incidents: dict[str, dict[str, object]]) -> None:
    fire = incidents["thermal.fire"]
    l3 = str(fire["l3"])
    l1, l2 = l3[:9], l3[:12]

    body = client.get("/api/v1/wall/grids", params={"parent": l2}).json()

    shown = {f["properties"]["code"]: f for f in body["features"]}
    assert set(shown) == codes(3, l2) and body["level"] == 3
    assert {f["properties"]["has_children"] for f in shown.values()} == {False}
    parent = geometry(l2)
    for f in shown.values():
        assert parent.buffer(1e-4).contains(shape(f["geometry"]))  # simplified to a pixel, still inside
    assert [c["code"] for c in body["breadcrumbs"]] == [l1, l2] and body["parent"]["code"] == l2
    assert parent.contains(Point(fire["lon"], fire["lat"]))
    assert set(wall_grids(client, parent=l1)) == codes(2, l1)


def test_a_unit_grid_shows_itself(client: TestClient) -> None:
    l3 = sorted(codes(3))[42]

    grids = wall_grids(client, parent=l3)

    assert set(grids) == {l3}
    assert (grids[l3]["level"], grids[l3]["fill"], grids[l3]["open"], grids[l3]["has_children"]) == (3, QUIET_FILL, 0, False)


def test_geometry_is_simplified_per_zoom_and_cached_per_grid_version(client: TestClient, rt: Runtime) -> None:
    from api.routes.wall import cache_of

    def vertices(zoom: int) -> int:
        body = client.get("/api/v1/wall/grids", params={"zoom": zoom}).json()
        assert body["zoom"] == zoom
        return sum(len(ring) for f in body["features"] for ring in f["geometry"]["coordinates"])

    assert vertices(9) < vertices(18)
    cache = cache_of(rt)
    assert (None, 9) in cache.shapes and (None, 18) in cache.shapes
    rt.index.version += 1000  # another grid version: the cache starts over
    try:
        assert cache_of(rt) is not cache and not cache_of(rt).shapes
    finally:
        rt.index.version -= 1000


def test_a_refresh_gets_the_colours_without_the_geometry(client: TestClient, rt: Runtime,
                                                          incidents: dict[str, dict[str, object]]) -> None:
    from api.routes.wall import cache_of

    l2 = str(incidents["thermal.fire"]["l3"])[:12]
    full = client.get("/api/v1/wall/grids", params={"parent": l2, "zoom": 16}).json()
    cache_of(rt).shapes.clear()
    light = client.get("/api/v1/wall/grids", params={"parent": l2, "zoom": 16, "geometry": "false"}).json()
    assert not cache_of(rt).shapes, "a refresh without geometry must not simplify any"
    assert all(f["geometry"] is None for f in light["features"])
    assert [f["properties"] for f in light["features"]] == [f["properties"] for f in full["features"]]
    assert any(f["properties"]["light"] == "red" for f in light["features"])
    assert {k: v for k, v in light.items() if k != "features"} == {k: v for k, v in full.items() if k != "features"}


def test_children_follow_parent_codes_not_prefixes() -> None:
    """An imported grid with a foreign code is in its parent's subtree through parent_code."""
    from api.routes.wall import WallCache
    from geo.model import Grid

    grids = [Grid("D1", 1, "d", box(0, 0, 1, 1)), Grid("S-1", 2, "s", box(0, 0, 1, 1), "D1"),
             Grid("U-17", 3, "u", box(0, 0, 1, 1), "S-1"), Grid("U-18", 3, "u", box(0, 0, 1, 1), "S-2")]
    cache = WallCache(1, {g.code: g for g in grids})
    assert [g.code for g in cache.children["D1"]] == ["S-1"] and [g.code for g in cache.children["S-1"]] == ["U-17"]
    assert [g.code for g in cache.children[None]] == ["D1", "U-18"]  # an orphan shows at the top rather than nowhere


def test_grid_names_are_json_data_never_templates(client: TestClient, rt: Runtime) -> None:
    l1 = sorted(codes(1))[0]
    grid = rt.grid_by_code[l1]
    rt.grid_by_code[l1] = type(grid)(grid.code, grid.level, "{{ 7777*3 }}<script>x</script>", grid.geometry, grid.parent_code)
    try:
        assert wall_grids(client)[l1]["name"] == "{{ 7777*3 }}<script>x</script>"
        page = client.get("/map").text
        assert "23331" not in page and "<script>x</script>" not in page
    finally:
        rt.grid_by_code[l1] = grid


# --- the side panel --------------------------------------------------------------------------------------
def test_summary_counts_and_sorts_by_light(client: TestClient, incidents: dict[str, dict[str, object]]) -> None:
    body = summary(client)

    assert body["counters"] == {"open": 3, "yellow": 1, "red": 1, "escalated": 0}
    assert [i["id"] for i in body["items"]] == [incidents[t]["id"] for t in ("thermal.fire", "fence.intrusion", "fence.cut")]
    first = body["items"][0]
    assert {"id", "type", "light", "state", "grid", "lon", "lat", "created_at", "escalation_level", "device_id"} <= set(first)

    fire = incidents["thermal.fire"]
    assert client.post(f"/api/v1/incidents/{fire['id']}/actions", json={"action": "escalate"}).status_code == 200
    assert summary(client)["counters"]["escalated"] == 1
    l1 = str(fire["l3"])[:9]
    assert [i["id"] for i in summary(client, grid=l1)["items"]] == [fire["id"]]


def test_summary_marks_the_device_of_an_open_incident(client: TestClient, rt: Runtime) -> None:
    """The wall colours a device alarming when an open incident is its; online / offline come from /devices."""
    from tests.integration.apphelpers import alarm_message, message

    fences = sorted(d.id for d in rt.devices.values() if d.kind == "fence")
    rt.handle_messages([message(f"gridwatch/devices/{fences[0]}/status", b'{"online": true}', rt.now())])
    rt.handle_messages([message(f"gridwatch/devices/{fences[1]}/status", b'{"online": false}', rt.now())])
    rt.handle_messages([alarm_message(fences[2], "m-1", at=rt.now())])

    states = {f["properties"]["id"]: f["properties"]["state"] for f in client.get("/api/v1/devices").json()["features"]}
    assert (states[fences[0]], states[fences[1]]) == ("online", "offline")
    alarming = {i["device_id"] for i in summary(client)["items"]}
    assert alarming == {fences[1], fences[2]}  # the offline fence has an open device.offline incident


# --- buildings and heatmap ------------------------------------------------------------------------------
def test_buildings_of_a_community_and_of_a_unit_grid(client: TestClient) -> None:
    l2 = sorted(codes(2))[0]
    units = codes(3, l2)
    district = sample_district()

    body = client.get("/api/v1/wall/buildings", params={"grid": l2}).json()

    assert {f["properties"]["code"] for f in body["features"]} == {b.code for b in district.buildings if b.grid_code in units}
    l3 = next(u for u in sorted(units) if any(b.grid_code == u for b in district.buildings))
    one = client.get("/api/v1/wall/buildings", params={"grid": l3}).json()
    assert {f["properties"]["code"] for f in one["features"]} == {b.code for b in district.buildings if b.grid_code == l3}
    assert "grid" in problem(client.get("/api/v1/wall/buildings", params={"grid": sorted(codes(1))[0]}), 422)["detail"]


def test_heatmap_of_the_last_days_by_type(client: TestClient, rt: Runtime, clock: Clock, incidents: dict[str, dict[str, object]]) -> None:
    body = client.get("/api/v1/wall/heatmap").json()

    assert body["days"] == 30 and body["count"] == 3 and len(body["points"]) == 3
    assert {t["type"]: t["count"] for t in body["types"]} == {"fence.intrusion": 1, "fence.cut": 1, "thermal.fire": 1}
    fire = incidents["thermal.fire"]
    only = client.get("/api/v1/wall/heatmap", params={"type": "thermal.fire"}).json()
    assert [(lat, lon) for lat, lon, _ in only["points"]] == [(round(fire["lat"], 4), round(fire["lon"], 4))]  # type: ignore[call-overload]
    assert len(only["types"]) == 3  # the filter's choices stay
    assert [e["field"] for e in problem(client.get("/api/v1/wall/heatmap", params={"days": 0}), 422)["errors"]] == ["days"]
    clock.advance(days=31)
    with client_for(rt) as later:  # a fresh login (the first one expired meanwhile)
        assert later.get("/api/v1/wall/heatmap").json()["count"] == 0
        assert later.get("/api/v1/wall/heatmap", params={"days": 60}).json()["count"] == 3


# --- scope ---------------------------------------------------------------------------------------------
def test_a_street_commander_sees_its_subtree_only(rt: Runtime, incidents: dict[str, dict[str, object]]) -> None:
    fire = incidents["thermal.fire"]
    mine = str(fire["l3"])[:9]
    other = next(c for c in sorted(codes(1)) if c != mine)
    with client_for(rt, role="commander", grid=mine) as c:
        body = c.get("/api/v1/wall/grids").json()
        assert {f["properties"]["code"] for f in body["features"]} == codes(2, mine)  # its wall opens on its street
        assert [b["code"] for b in body["breadcrumbs"]] == [mine]
        l2 = str(fire["l3"])[:12]
        assert [b["code"] for b in c.get("/api/v1/wall/grids", params={"parent": l2}).json()["breadcrumbs"]] == [mine, l2]
        assert summary(c)["counters"] == {"open": 1, "yellow": 0, "red": 1, "escalated": 0}
        assert [i["id"] for i in summary(c)["items"]] == [fire["id"]]
        assert c.get("/api/v1/wall/heatmap").json()["count"] == 1
        for path, params in (("grids", {"parent": other}), ("summary", {"grid": other}), ("heatmap", {"grid": other}),
                             ("buildings", {"grid": sorted(codes(2, other))[0]})):
            problem(c.get(f"/api/v1/wall/{path}", params=params), 403)


def test_a_community_commander_cannot_climb_to_its_street(rt: Runtime) -> None:
    l2 = sorted(codes(2))[0]
    with client_for(rt, role="commander", grid=l2) as c:
        assert set(wall_grids(c)) == codes(3, l2)
        problem(c.get("/api/v1/wall/grids", params={"parent": l2[:9]}), 403)


def test_the_wall_routes_need_a_login_and_a_watcher_role(rt: Runtime) -> None:
    with client_for(rt, role=None) as anonymous:
        for path in WALL_ROUTES:
            problem(anonymous.get(path), 401)
    with client_for(rt, role="patroller", patroller=rt.patrollers[0].id) as c:
        for path in WALL_ROUTES:
            problem(c.get(path), 403)


def test_walls_share_one_scan_of_the_open_incidents_until_one_changes(client: TestClient, rt: Runtime,
                                                                       incidents: dict[str, dict[str, object]]) -> None:
    """Many walls refreshing after the same event cost one scan of the open incidents (api.routes.wall), and the
    next write is seen at once: the snapshot follows the store's mark."""
    scans: list[object] = []
    real = rt.store.incidents

    def counting(query: object) -> object:
        scans.append(query)
        return real(query)  # type: ignore[arg-type]

    rt.store.incidents = counting  # type: ignore[method-assign]
    try:
        fire = incidents["thermal.fire"]
        l3 = str(fire["l3"])
        first = summary(client)
        for params in ({}, {"grid": l3[:12]}, {"grid": l3[:9]}):  # the district wall, a community's, a street's
            assert client.get("/api/v1/wall/grids", params={"parent": params["grid"]} if params else {}).status_code == 200
            assert summary(client, **params)["counters"]["open"] >= 1
        assert len(scans) == 1, f"{len(scans)} scans of the open incidents for walls of one moment"
        assert summary(client, grid=l3[:12])["counters"] == {"open": 1, "yellow": 0, "red": 1, "escalated": 0}

        for action in ("acknowledge", "resolve", "check", "close"):
            assert client.post(f"/api/v1/incidents/{fire['id']}/actions", json={"action": action}).status_code == 200
        after = summary(client)
        assert after["counters"]["open"] == first["counters"]["open"] - 1  # the write is seen at once
        assert fire["id"] not in {i["id"] for i in after["items"]}
        assert summary(client, grid=l3[:12])["counters"]["open"] == 0
        assert len(scans) == 2
    finally:
        del rt.store.incidents
