"""Roles and grid scope on every route (design §8), on SQLite and PostGIS.

A street commander sees and acts on its street's subtree only; a patroller sees its own incidents and
those inside its geofence; planners work on grid versions; devices only push; nothing answers without
a login except the login itself, the health probe and the docs.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.access import chain
from api.runtime import Runtime
from tests.integration.apphelpers import alarm_message, problem, token_headers

pytestmark = pytest.mark.integration

OPEN_ROUTES = {"/api/v1/token", "/login", "/logout", "/healthz", "/"}
"""Routes that answer without a login (the login itself, the health probe, the home redirect)."""


def raise_in_two_streets(rt: Runtime) -> tuple[Any, Any]:
    """One incident in each of two different level-1 grids (streets): (mine, theirs)."""
    by_street: dict[str, Any] = {}
    for d in sorted(rt.devices.values(), key=lambda d: d.id):
        if d.geometry.geom_type != "Point" or d.kind != "thermal":
            continue
        street = chain(d.grid_code, rt.grid_by_code)[-1]
        by_street.setdefault(street, d)
        if len(by_street) == 2:
            break
    (street_a, dev_a), (street_b, dev_b) = sorted(by_street.items())
    result = rt.handle_messages([alarm_message(dev_a.id, "scope-a"), alarm_message(dev_b.id, "scope-b")])
    assert len(result.incidents_created) == 2, result
    incidents = [rt.store.incident(i) for i in result.incidents_created]
    mine = next(i for i in incidents if i is not None and i.route.l1 == street_a)
    theirs = next(i for i in incidents if i is not None and i.route.l1 == street_b)
    return mine, theirs


def test_every_route_but_the_login_needs_a_login(client: TestClient) -> None:
    client.headers.pop("Authorization")
    checked = 0
    for path_template, operations in client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        if path_template in OPEN_ROUTES:
            continue
        path = path_template.replace("{version_id}", "1").replace("{incident_id}", "INC-1").replace("{sha256}", "a" * 64)
        path = path.replace("{device_id}", "d-1").replace("{code}", "430102001").replace("{patroller_id}", "P1")
        path = path.replace("{letter_id}", "1").replace("{window_id}", "1")
        assert "{" not in path, f"fill in the path parameter of {path_template}"
        for method in operations:
            resp = client.request(method.upper(), path, follow_redirects=False)
            if path_template in ("/map", "/patroller", "/plan/{version_id}"):  # pages send people to the login form
                assert resp.status_code == 303 and resp.headers["location"].startswith("/login?next="), (method, path)
            else:
                assert resp.status_code == 401, (method, path, resp.status_code, resp.text)
            checked += 1
    assert checked >= 40


def test_a_street_commander_sees_and_acts_on_its_street_only(client: TestClient, rt: Runtime) -> None:
    mine, theirs = raise_in_two_streets(rt)
    street = token_headers(rt, "commander", grid=mine.route.l1)

    listed = client.get("/api/v1/incidents", headers=street).json()["items"]
    assert [i["id"] for i in listed] == [mine.id]
    assert client.get(f"/api/v1/incidents/{mine.id}", headers=street).status_code == 200
    problem(client.get(f"/api/v1/incidents/{theirs.id}", headers=street), 404)
    problem(client.post(f"/api/v1/incidents/{theirs.id}/actions", json={"action": "supervise"}, headers=street), 404)
    problem(client.get("/api/v1/incidents", params={"grid": theirs.route.l1}, headers=street), 403)
    assert client.get("/api/v1/incidents", params={"grid": mine.route.l2}, headers=street).json()["count"] == 1
    # it acts as the street's command center: the workflow records it so
    done = client.post(f"/api/v1/incidents/{mine.id}/actions", json={"action": "supervise"}, headers=street)
    assert done.status_code == 200, done.text
    assert done.json()["history_entry"]["actor"] == f"center:1:{mine.route.l1}"
    assert rt.store.incident(theirs.id).supervised is False  # type: ignore[union-attr]
    # naming another actor in the body is refused
    body = {"action": "remind", "actor": f"center:1:{theirs.route.l1}"}
    problem(client.post(f"/api/v1/incidents/{mine.id}/actions", json=body, headers=street), 403)


def test_a_commander_sees_devices_patrollers_grids_and_evaluations_of_its_subtree(client: TestClient, rt: Runtime) -> None:
    mine, theirs = raise_in_two_streets(rt)
    street = token_headers(rt, "commander", grid=mine.route.l1)

    def inside(code: str | None) -> bool:
        return code is not None and mine.route.l1 in chain(code, rt.grid_by_code)

    devices = client.get("/api/v1/devices", headers=street).json()["features"]
    assert devices and all(inside(f["properties"]["grid_code"]) for f in devices)
    assert len(devices) < len(rt.devices)
    problem(client.get(f"/api/v1/devices/{theirs.device_id}", headers=street), 404)
    assert client.get(f"/api/v1/devices/{mine.device_id}", headers=street).status_code == 200
    patrollers = client.get("/api/v1/patrollers", headers=street).json()["items"]
    assert patrollers and all(any(inside(c) for c in p["grid_codes"] + p["backup_grid_codes"]) for p in patrollers)
    grids = client.get("/api/v1/grids", headers=street).json()["features"]
    assert {f["properties"]["code"] for f in grids} == {c for c in rt.grid_by_code if inside(c)}
    problem(client.get(f"/api/v1/grids/{theirs.route.l1}", headers=street), 404)
    problem(client.get("/api/v1/evaluation", params={"grid": theirs.route.l1}, headers=street), 403)
    assert client.get("/api/v1/evaluation", headers=street).json()["grid"] == mine.route.l1
    outsider = next(p for p in rt.patrollers if p.grid_codes and all(not inside(c) for c in (*p.grid_codes, *p.backup_grid_codes)))
    problem(client.get("/api/v1/evaluation", params={"patroller": outsider.id}, headers=street), 404)  # as if unknown
    assert client.get("/api/v1/evaluation", params={"patroller": outsider.id}).status_code == 200  # the admin
    problem(client.get("/api/v1/locate", params=_point(theirs), headers=street), 403)
    # operators' pages are not a commander's
    problem(client.get("/api/v1/dead-letters", headers=street), 403)
    problem(client.post("/api/v1/devices/reload", headers=street), 403)
    problem(client.get("/api/v1/grid-versions", headers=street), 403)


def _point(incident: Any) -> dict[str, float]:
    return {"lon": incident.route.lon, "lat": incident.route.lat}


def test_a_patroller_sees_its_own_and_its_geofences_incidents_only(client: TestClient, rt: Runtime) -> None:
    mine, theirs = raise_in_two_streets(rt)
    assert mine.assignee is not None and theirs.assignee is not None
    me = next(p for p in rt.patrollers if p.id == mine.assignee)
    fence = {*me.grid_codes, *me.backup_grid_codes}
    assert theirs.route.l3 not in fence
    headers = token_headers(rt, "patroller", patroller=me.id)

    listed = {i["id"] for i in client.get("/api/v1/incidents", headers=headers).json()["items"]}
    assert mine.id in listed and theirs.id not in listed
    problem(client.get(f"/api/v1/incidents/{theirs.id}", headers=headers), 404)
    problem(client.post(f"/api/v1/incidents/{theirs.id}/actions", json={"action": "acknowledge"}, headers=headers), 404)
    problem(client.get(f"/api/v1/incidents/{theirs.id}/photos/{'a' * 64}", headers=headers), 404)
    assert client.post(f"/api/v1/incidents/{mine.id}/actions", json={"action": "acknowledge"}, headers=headers).status_code == 200

    # the other incident's patroller does not see this one
    other = token_headers(rt, "patroller", patroller=theirs.assignee)
    problem(client.get(f"/api/v1/incidents/{mine.id}", headers=other), 404)
    # a patroller sees itself only among the patrollers, and no command-center data
    assert [p["id"] for p in client.get("/api/v1/patrollers", headers=headers).json()["items"]] == [me.id]
    devices = client.get("/api/v1/devices", headers=headers).json()["features"]
    expected = {d.id for d in rt.devices.values() if d.grid_code in fence}
    assert expected and {f["id"] for f in devices} == expected
    problem(client.get("/api/v1/evaluation", headers=headers), 403)
    problem(client.get("/api/v1/wall/summary", headers=headers), 403)
    problem(client.put(f"/api/v1/patrollers/{me.id}/roster", json={}, headers=headers), 403)


def test_a_patroller_sees_a_colleagues_incident_inside_its_geofence(client: TestClient, rt: Runtime) -> None:
    mine, _ = raise_in_two_streets(rt)
    colleague = next(p for p in rt.patrollers if p.id != mine.assignee and mine.route.l3 in (*p.grid_codes, *p.backup_grid_codes))
    headers = token_headers(rt, "patroller", patroller=colleague.id)

    assert mine.id in {i["id"] for i in client.get("/api/v1/incidents", headers=headers).json()["items"]}
    detail = client.get(f"/api/v1/incidents/{mine.id}", headers=headers).json()
    assert detail["allowed_actions"] == []  # visible, but not theirs to handle
    problem(client.post(f"/api/v1/incidents/{mine.id}/actions", json={"action": "acknowledge"}, headers=headers), 403)


def test_planners_work_on_grid_versions_and_see_no_incidents(client: TestClient, rt: Runtime) -> None:
    mine, _ = raise_in_two_streets(rt)
    planner = token_headers(rt, "planner")

    assert client.get("/api/v1/grid-versions", headers=planner).status_code == 200
    assert len(client.get("/api/v1/grids", params={"level": 3}, headers=planner).json()["features"]) == 138
    problem(client.get("/api/v1/incidents", headers=planner), 403)
    problem(client.get(f"/api/v1/incidents/{mine.id}", headers=planner), 403)
    problem(client.get("/api/v1/stream", headers=planner), 403)
    problem(client.get("/api/v1/devices", headers=planner), 403)


def test_devices_only_push_and_patrollers_push_their_own_positions(client: TestClient, rt: Runtime) -> None:
    device = token_headers(rt, "device")
    client.headers.pop("Authorization")

    problem(client.get("/api/v1/incidents", headers=device), 403)
    problem(client.get("/ingest/osmand", params={"id": "P1", "lat": 27.6, "lon": 113.8}), 401)
    me = rt.patrollers[0].id
    patroller = token_headers(rt, "patroller", patroller=me)  # a patroller pushes its own positions only
    problem(client.get("/ingest/osmand", params={"id": "P1", "lat": 27.6, "lon": 113.8}, headers=patroller), 403)
    assert client.post("/ingest/osmand", data={"id": me, "lat": 27.6, "lon": 113.8}, headers=patroller).json()["positions"] == 1
    problem(client.post("/ingest/isapi", content=b"<x/>", headers=patroller), 403)
    assert client.get("/ingest/osmand", params={"id": "P1", "lat": 27.6, "lon": 113.8}, headers=device).status_code == 200
    # a phone app that can only be given a URL passes the token in the query; it is never stored
    token = device["Authorization"].split()[1]
    resp = client.get("/ingest/osmand", params={"id": "P0001", "lat": 999, "lon": 113.8, "access_token": token})  # out of range
    assert resp.status_code == 200 and resp.json()["dead_letters"] == 1
    (letter,) = rt.store.dead_letters(limit=1)
    assert token not in letter.dead_letter.payload.decode() and "access_token" not in letter.dead_letter.payload.decode()


def test_maintenance_windows_are_set_inside_the_commanders_subtree(client: TestClient, rt: Runtime) -> None:
    mine, theirs = raise_in_two_streets(rt)
    street = token_headers(rt, "commander", grid=mine.route.l1)
    window = {"starts_at": "2026-11-23T00:00:00Z", "ends_at": "2026-11-24T00:00:00Z", "reason": "works"}

    problem(client.post("/api/v1/maintenance-windows", json={**window, "grid_code": theirs.route.l2}, headers=street), 403)
    made = client.post("/api/v1/maintenance-windows", json={**window, "grid_code": mine.route.l2}, headers=street)
    assert made.status_code == 201 and made.json()["created_by"] == f"user:test-commander-{mine.route.l1}"
    other = client.post("/api/v1/maintenance-windows", json={**window, "grid_code": theirs.route.l2})  # the admin
    assert [w["id"] for w in client.get("/api/v1/maintenance-windows", headers=street).json()] == [made.json()["id"]]
    problem(client.post(f"/api/v1/maintenance-windows/{other.json()['id']}/end", headers=street), 404)


def test_a_commander_cannot_mute_a_building_of_another_street(client: TestClient, rt: Runtime) -> None:
    mine, theirs = raise_in_two_streets(rt)
    street = token_headers(rt, "commander", grid=mine.route.l1)
    buildings = rt.store.buildings()
    theirs_b = next(b for b in buildings if theirs.route.l1 in chain(b.grid_code, rt.grid_by_code))
    mine_b = next(b for b in buildings if mine.route.l1 in chain(b.grid_code, rt.grid_by_code))
    window = {"starts_at": "2026-11-23T00:00:00Z", "ends_at": "2026-11-24T00:00:00Z", "reason": "works"}

    problem(client.post("/api/v1/maintenance-windows", json={**window, "building": theirs_b.code}, headers=street), 403)
    body = {**window, "grid_code": mine.route.l1, "building": theirs_b.code}  # a grid of mine cannot carry it in
    problem(client.post("/api/v1/maintenance-windows", json=body, headers=street), 422)
    made = client.post("/api/v1/maintenance-windows", json={**window, "building": mine_b.code}, headers=street)
    assert made.status_code == 201, made.text
    assert [w["id"] for w in client.get("/api/v1/maintenance-windows", headers=street).json()] == [made.json()["id"]]
    other = token_headers(rt, "commander", grid=theirs.route.l1)
    assert client.get("/api/v1/maintenance-windows", headers=other).json() == []


def test_a_commander_cannot_rewrite_the_roster_of_another_streets_patroller(client: TestClient, rt: Runtime) -> None:
    mine, theirs = raise_in_two_streets(rt)
    outsider = next(p for p in rt.patrollers if p.grid_codes and all(mine.route.l1 not in chain(c, rt.grid_by_code) for c in p.grid_codes))
    backup = mine.route.l3
    assert client.put(f"/api/v1/patrollers/{outsider.id}/roster", json={"backup_grid_codes": [backup]}).status_code == 200  # admin
    street = token_headers(rt, "commander", grid=mine.route.l1)
    assert outsider.id in {p["id"] for p in client.get("/api/v1/patrollers", headers=street).json()["items"]}  # a backup here

    problem(client.put(f"/api/v1/patrollers/{outsider.id}/roster", json={"shifts": []}, headers=street), 403)
    assert next(p for p in rt.patrollers if p.id == outsider.id).backup_grid_codes == (backup,)


def test_nobody_takes_system_actions_over_the_api(client: TestClient, rt: Runtime) -> None:
    mine, _ = raise_in_two_streets(rt)
    body = problem(client.post(f"/api/v1/incidents/{mine.id}/actions", json={"action": "clear"}), 403)  # an admin
    assert "clear" in body["detail"]
    assert rt.store.incident(mine.id).state.value == "dispatched"  # type: ignore[union-attr]


def test_photos_are_added_by_the_assignee_and_not_to_closed_incidents(client: TestClient, rt: Runtime) -> None:
    mine, _ = raise_in_two_streets(rt)
    colleague = next(p for p in rt.patrollers if p.id != mine.assignee and mine.route.l3 in (*p.grid_codes, *p.backup_grid_codes))
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    files = [("photos", ("a.png", png, "image/png"))]
    headers = token_headers(rt, "patroller", patroller=colleague.id)
    problem(client.post(f"/api/v1/incidents/{mine.id}/photos", files=files, headers=headers), 403)
    for action in ("acknowledge", "resolve", "check", "close"):  # the admin takes it to closed
        assert client.post(f"/api/v1/incidents/{mine.id}/actions", json={"action": action}).status_code == 200, action
    problem(client.post(f"/api/v1/incidents/{mine.id}/photos", files=files), 409)


def test_another_authorization_scheme_leaves_the_login_cookie_in_charge(client: TestClient, rt: Runtime) -> None:
    from api.deps import COOKIE

    token = token_headers(rt, "admin")["Authorization"].split()[1]
    client.headers.pop("Authorization")
    client.cookies.set(COOKIE, token)
    assert client.get("/api/v1/me", headers={"Authorization": "Basic dXNlcjpwdw=="}).json()["role"] == "admin"
    problem(client.get("/api/v1/me", headers={"Authorization": "Bearer "}), 401)


def test_an_encoded_access_token_parameter_is_stripped_too(client: TestClient, rt: Runtime) -> None:
    token = token_headers(rt, "device")["Authorization"].split()[1]
    client.headers.pop("Authorization")
    resp = client.get(f"/ingest/osmand?id=P0001&lat=999&lon=113.8&access%5Ftoken={token}")
    assert resp.status_code == 200 and resp.json()["dead_letters"] == 1
    (letter,) = rt.store.dead_letters(limit=1)
    assert token not in letter.dead_letter.payload.decode()


def test_devices_filter_by_the_grid_chain(client: TestClient, rt: Runtime) -> None:
    mine, _ = raise_in_two_streets(rt)
    features = client.get("/api/v1/devices", params={"grid": mine.route.l2}).json()["features"]
    assert features and all(mine.route.l2 in chain(f["properties"]["grid_code"], rt.grid_by_code) for f in features)
    expected = sum(1 for d in rt.devices.values() if mine.route.l2 in chain(d.grid_code, rt.grid_by_code))
    assert len(features) == expected
