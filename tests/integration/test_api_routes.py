"""The HTTP contract of design §4 over the sample district, on a real SQLite file and a real PostGIS database.

Tests that reach the store run once per backend (`store_backend`); tests whose answer is decided
before any store call (request validation, OpenAPI) run on SQLite only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import shapely
from fastapi.testclient import TestClient
from shapely.geometry import Point, shape

from alerts.model import IncidentState
from alerts.workflow import allowed_actions
from api.cli import seed_store
from api.runtime import Runtime
from geo.model import Grid
from store.ports import Store
from tests.integration.apphelpers import (
    LIMIT_MINUTES,
    T0,
    Clock,
    actor_headers,
    alarm_message,
    alarm_payload,
    client_for,
    feed_incidents,
    incident_devices,
    location_message,
    make_runtime,
    message,
    problem,
    sample_district,
    seed,
)

pytestmark = pytest.mark.integration

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def sqlite_client(sqlite_store: Store, clock: Clock) -> Iterator[TestClient]:
    """A client over the seeded district on SQLite only (for answers no store call decides)."""
    seed(sqlite_store)
    with client_for(make_runtime(sqlite_store, clock)) as c:
        yield c


@pytest.fixture
def incidents(rt: Runtime) -> dict[str, str]:
    """Three dispatched incidents (fence.intrusion, fence.cut, thermal.fire) in three level-1 grids, at T0."""
    return feed_incidents(rt)


def grids_by_code(level: int | None = None) -> dict[str, Grid]:
    return {g.code: g for g in sample_district().grids if level is None or g.level == level}


def containing(features: list[dict[str, Any]], point: Point) -> list[str]:
    """Codes of the GeoJSON features whose polygon contains `point` (shapely, not the index)."""
    return [f["properties"]["code"] for f in features if shape(f["geometry"]).contains(point)]


def free_point(grid: Grid) -> Point:
    """A point well inside `grid` and outside all of its buildings."""
    blds = [b.geometry for b in sample_district().buildings if b.grid_code == grid.code]
    room = grid.geometry.buffer(-1e-4).difference(shapely.union_all(blds).buffer(1e-4))
    assert not room.is_empty
    return room.representative_point()


def iso(value: str) -> datetime:
    return datetime.fromisoformat(value)


# --- /locate ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("nth", [0, 69, 137], ids=["first-l3", "middle-l3", "last-l3"])
def test_locate_point_returns_chain_of_the_polygons_that_contain_it(client: TestClient, rt: Runtime, nth: int) -> None:
    grid = sorted(grids_by_code(3).values(), key=lambda g: g.code)[nth]
    point = free_point(grid)

    resp = client.get("/api/v1/locate", params={"lon": point.x, "lat": point.y})

    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [g["level"] for g in body["grids"]] == [1, 2, 3]
    l1, l2, l3 = (g["code"] for g in body["grids"])
    for level, code in ((1, l1), (2, l2), (3, l3)):
        features = client.get("/api/v1/grids", params={"level": level}).json()["features"]
        assert containing(features, point) == [code], f"level {level}"
    assert l3 == grid.code and l2 == l3[:12] and l1 == l3[:9]
    assert [g["name"] for g in body["grids"]] == [grids_by_code()[c].name for c in (l1, l2, l3)]
    assert body["building"] is None
    assert body["grid_version"] == rt.index.version == rt.store.current_version().id
    assert body["point"] == {"lon": point.x, "lat": point.y}
    assigned = sorted((p for p in sample_district().patrollers if l3 in p.grid_codes), key=lambda p: p.id)
    local = T0.astimezone(SHANGHAI)
    assert sorted((p["id"], p["on_duty"]) for p in body["patrollers"]) == [(p.id, p.on_duty(local)) for p in assigned]
    on_duty = [p.id for p in assigned if p.on_duty(local)]
    expected = (on_duty[0], "on-duty-no-position") if on_duty else (None, "grid-command-center")
    assert (body["responsible"]["patroller_id"], body["responsible"]["rule"]) == expected


def test_locate_point_inside_a_building_returns_the_building(client: TestClient) -> None:
    building = sorted(sample_district().buildings, key=lambda b: b.code)[500]
    point = building.geometry.representative_point()

    body = client.get("/api/v1/locate", params={"lon": point.x, "lat": point.y}).json()

    assert body["building"] == building.code
    assert body["grids"][2]["code"] == building.grid_code == building.code[:15]
    assert grids_by_code()[building.grid_code].geometry.contains(point)


def test_locate_uses_last_known_positions_for_the_responsible_patroller(client: TestClient, rt: Runtime) -> None:
    local = T0.astimezone(SHANGHAI)
    patroller = next(p for p in sorted(sample_district().patrollers, key=lambda p: p.id) if p.on_duty(local))
    grid = grids_by_code()[patroller.grid_codes[0]]
    point = free_point(grid)
    rt.handle_messages([location_message(patroller.id, point.x, point.y, acc=5.0)])

    body = client.get("/api/v1/locate", params={"lon": point.x, "lat": point.y}).json()

    assert body["responsible"] == {"patroller_id": patroller.id, "rule": "nearest-on-duty"}


@pytest.mark.parametrize("lon, lat", [(100.0, 0.0), (113.5, 27.62), (-180.0, -90.0)])
def test_locate_outside_the_district_is_404_problem(client: TestClient, lon: float, lat: float) -> None:
    body = problem(client.get("/api/v1/locate", params={"lon": lon, "lat": lat}), 404)

    assert body["type"].endswith("/outside-district")
    assert f"lon={lon}" in body["detail"] and f"lat={lat}" in body["detail"]


@pytest.mark.parametrize(
    "params, field",
    [({"lon": 500, "lat": 27.6}, "lon"), ({"lon": 113.85, "lat": -91}, "lat"), ({"lat": 27.6}, "lon"), ({"lon": "east", "lat": 27.6}, "lon")],
)
def test_locate_bad_coordinates_are_422_naming_the_field(sqlite_client: TestClient, params: dict[str, Any], field: str) -> None:
    body = problem(sqlite_client.get("/api/v1/locate", params=params), 422)

    assert [e["field"] for e in body["errors"]] == [field]
    assert body["detail"].startswith(f"{field}: ")


# --- /grids -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("level, count", [(1, 5), (2, 29), (3, 138)])
def test_grids_of_one_level(client: TestClient, level: int, count: int) -> None:
    resp = client.get("/api/v1/grids", params={"level": level})

    body = resp.json()
    assert resp.status_code == 200 and body["type"] == "FeatureCollection"
    assert len(body["features"]) == count
    assert {f["properties"]["level"] for f in body["features"]} == {level}
    assert [f["id"] for f in body["features"]] == sorted(grids_by_code(level))


def test_grids_without_level_are_the_whole_hierarchy_nesting_exactly(client: TestClient) -> None:
    features = client.get("/api/v1/grids").json()["features"]

    assert len(features) == 5 + 29 + 138
    geoms = {f["id"]: shape(f["geometry"]) for f in features}
    for f in features:
        parent = f["properties"]["parent_code"]
        assert parent == (None if f["properties"]["level"] == 1 else f["id"][: len(f["id"]) - 3])
    total_l1 = sum(g.area for c, g in geoms.items() if len(c) == 9)
    total_l3 = sum(g.area for c, g in geoms.items() if len(c) == 15)
    assert total_l3 == pytest.approx(total_l1, rel=1e-9)


def test_grid_by_code_is_its_feature(client: TestClient) -> None:
    code = sorted(grids_by_code(2))[7]

    feature = client.get(f"/api/v1/grids/{code}").json()

    expected = grids_by_code()[code]
    assert feature["type"] == "Feature" and feature["id"] == code
    assert feature["properties"] == {"code": code, "level": 2, "name": expected.name, "parent_code": code[:9]}
    assert shape(feature["geometry"]).equals_exact(expected.geometry, tolerance=1e-9)


@pytest.mark.parametrize("code", ["430102999999999", "nope"])
def test_unknown_grid_is_404_problem(client: TestClient, code: str) -> None:
    body = problem(client.get(f"/api/v1/grids/{code}"), 404)

    assert code in body["detail"]
    assert body["instance"] == f"/api/v1/grids/{code}"


def test_grids_level_out_of_range_is_422_naming_level(sqlite_client: TestClient) -> None:
    body = problem(sqlite_client.get("/api/v1/grids", params={"level": 4}), 422)

    assert [e["field"] for e in body["errors"]] == ["level"]


# --- /incidents -------------------------------------------------------------------------------------
def listed(client: TestClient, **params: Any) -> list[str]:
    resp = client.get("/api/v1/incidents", params=params)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["count"] == len(body["items"])
    return sorted(i["id"] for i in body["items"])


def test_incidents_lists_what_the_alarms_opened(client: TestClient, incidents: dict[str, str]) -> None:
    items = {i["id"]: i for i in client.get("/api/v1/incidents").json()["items"]}

    assert sorted(items) == sorted(incidents.values())
    devices = incident_devices()
    for type_, incident_id in incidents.items():
        item = items[incident_id]
        assert (item["type"], item["device_id"], item["state"], item["light"]) == (type_, devices[type_].id, "dispatched", "green")
        assert item["grid"] == item["route"]["l3"] and item["route"]["l1"] == item["grid"][:9]
        assert item["route"]["point_source"] == "device"
        assert iso(item["deadline"]) == T0 + timedelta(minutes=LIMIT_MINUTES[type_])


def test_incidents_filtered_by_status(client: TestClient, incidents: dict[str, str]) -> None:
    acked = incidents["fence.cut"]
    assert client.post(f"/api/v1/incidents/{acked}/actions", json={"action": "acknowledge"}).status_code == 200
    others = sorted(i for i in incidents.values() if i != acked)

    assert listed(client, status="acknowledged") == [acked]
    assert listed(client, status="dispatched") == others
    assert listed(client, status=["dispatched", "acknowledged"]) == sorted(incidents.values())
    assert listed(client, status="closed") == []


def test_incidents_filtered_by_grid_prefix_at_every_level(client: TestClient, incidents: dict[str, str]) -> None:
    items = client.get("/api/v1/incidents").json()["items"]

    for item in items:
        l3 = item["grid"]
        for prefix in (l3[:9], l3[:12], l3):
            assert listed(client, grid=prefix) == [item["id"]], prefix
    quiet_l1 = sorted(set(grids_by_code(1)) - {i["grid"][:9] for i in items})[0]
    assert listed(client, grid=quiet_l1) == []


def test_incidents_filtered_by_bbox(client: TestClient, incidents: dict[str, str]) -> None:
    items = client.get("/api/v1/incidents").json()["items"]
    target = items[0]
    d = 0.0005

    around = f"{target['lon'] - d},{target['lat'] - d},{target['lon'] + d},{target['lat'] + d}"
    assert listed(client, bbox=around) == [target["id"]]
    assert listed(client, bbox="113.0,27.0,115.0,28.5") == sorted(incidents.values())
    assert listed(client, bbox="100.0,0.0,101.0,1.0") == []


def test_incidents_filtered_by_light_as_the_clocks_run(client: TestClient, clock: Clock, incidents: dict[str, str]) -> None:
    assert listed(client, light="green") == sorted(incidents.values())

    clock.advance(minutes=12)  # intrusion 12/15 = 80 % → yellow, cut 12/30 → green, fire 12/5 → red

    assert listed(client, light="yellow") == [incidents["fence.intrusion"]]
    assert listed(client, light="green") == [incidents["fence.cut"]]
    assert listed(client, light="red") == [incidents["thermal.fire"]]


def test_incidents_filtered_by_since_updated(client: TestClient, clock: Clock, incidents: dict[str, str]) -> None:
    clock.advance(minutes=3)
    client.post(f"/api/v1/incidents/{incidents['thermal.fire']}/actions", json={"action": "acknowledge"})

    since = (T0 + timedelta(minutes=1)).astimezone(SHANGHAI).isoformat()
    assert listed(client, since=since) == [incidents["thermal.fire"]]
    assert listed(client, since=T0.isoformat()) == sorted(incidents.values())


def test_incidents_newest_first_and_limited(client: TestClient, rt: Runtime, clock: Clock) -> None:
    devices = incident_devices()
    opened = []
    for n, (type_, device) in enumerate(devices.items()):
        clock.now = T0 + timedelta(minutes=n)
        opened += rt.handle_messages([alarm_message(device.id, f"m-{n}", at=clock.now, type_=type_)]).incidents_created

    items = client.get("/api/v1/incidents").json()["items"]

    assert [i["id"] for i in items] == opened[::-1]
    assert [i["id"] for i in client.get("/api/v1/incidents", params={"limit": 2}).json()["items"]] == opened[:0:-1]


def test_light_filter_applies_before_the_limit(client: TestClient, rt: Runtime, clock: Clock) -> None:
    devices = incident_devices()
    (fire,) = rt.handle_messages([alarm_message(devices["thermal.fire"].id, "m-fire", type_="thermal.fire")]).incidents_created
    clock.advance(minutes=1)
    rt.handle_messages(
        [alarm_message(devices[t].id, f"m-{t}", at=clock.now, type_=t) for t in ("fence.intrusion", "fence.cut")]
    )
    clock.advance(minutes=5)  # fire: 6 of 5 minutes → red; the two newer fence incidents: green

    assert listed(client, light="red") == [fire]
    assert listed(client, light="red", limit=1) == [fire]


@pytest.mark.parametrize("bbox", ["1,2,3", "a,b,c,d", "114.0,27.0,113.0,28.0", "113,28,114,27", "1,2,3,4,5", "nan,0,1,1"])
def test_invalid_bbox_is_422_naming_bbox(sqlite_client: TestClient, bbox: str) -> None:
    body = problem(sqlite_client.get("/api/v1/incidents", params={"bbox": bbox}), 422)

    assert [e["field"] for e in body["errors"]] == ["bbox"]
    assert repr(bbox) in body["detail"]


@pytest.mark.parametrize("params, field", [({"light": "blue"}, "light"), ({"grid": "4301; DROP"}, "grid"), ({"status": "open"}, "status.0")])
def test_invalid_incident_filters_are_422_naming_the_field(sqlite_client: TestClient, params: dict[str, str], field: str) -> None:
    body = problem(sqlite_client.get("/api/v1/incidents", params=params), 422)

    assert [e["field"] for e in body["errors"]] == [field]


def test_zoneless_since_is_422_naming_since(store_backend: Store, clock: Clock) -> None:
    seed(store_backend)
    with client_for(make_runtime(store_backend, clock), raise_server_exceptions=False) as c:
        resp = c.get("/api/v1/incidents", params={"since": "2026-11-23T10:00:00"})

    body = problem(resp, 422)
    assert [e["field"] for e in body["errors"]] == ["since"]


# --- /incidents/{id} --------------------------------------------------------------------------------
def test_incident_detail_has_its_alarms_with_raw_payload_and_its_history(client: TestClient, rt: Runtime, clock: Clock) -> None:
    device = incident_devices()["fence.intrusion"]
    first = alarm_message(device.id, "m-1", zone="Z1", data={"voltage_kv": 7.9})
    rt.handle_messages([first])
    clock.advance(minutes=2)
    repeat = alarm_message(device.id, "m-2", at=clock.now, zone="Z2", severity=4)
    (incident_id,) = rt.handle_messages([repeat]).incidents_joined

    body = client.get(f"/api/v1/incidents/{incident_id}").json()

    assert body["id"] == incident_id and body["alarm_count"] == 2 and body["severity"] == 4
    assert [a["msg_id"] for a in body["alarms"]] == ["m-1", "m-2"]
    a1, a2 = body["alarms"]
    assert a1["raw"] == first.payload.decode() and a2["raw"] == repeat.payload.decode()
    assert json.loads(a1["raw"])["ts"] == "2026-11-23T10:00:00+08:00"
    assert (a1["device_id"], a1["type"], a1["zone"], a1["data"], a1["severity"]) == (device.id, "fence.intrusion", "Z1", {"voltage_kv": 7.9}, 3)
    assert iso(a1["ts"]) == T0 and iso(a2["ts"]) == T0 + timedelta(minutes=2)
    assert (a1["lon"], a1["lat"]) == (None, None)
    assert [(h["action"], h["from"], h["to"], h["actor"]) for h in body["history"]] == [
        ("report", None, "reported", f"device:{device.id}"),
        ("register", "reported", "registered", "system:auto-dispatch"),
        ("dispatch", "registered", "dispatched", "system:auto-dispatch"),
    ]
    assert {iso(h["at"]) for h in body["history"]} == {T0}


def test_incident_detail_keeps_a_payload_position(client: TestClient, rt: Runtime) -> None:
    device = incident_devices()["thermal.fire"]
    point = free_point(grids_by_code()[device.grid_code])
    msg = alarm_message(device.id, "m-pos", type_="thermal.fire", lon=point.x, lat=point.y)
    (incident_id,) = rt.handle_messages([msg]).incidents_created

    body = client.get(f"/api/v1/incidents/{incident_id}").json()

    assert (body["alarms"][0]["lon"], body["alarms"][0]["lat"]) == (point.x, point.y)
    assert (body["lon"], body["lat"], body["route"]["point_source"]) == (point.x, point.y, "payload")
    assert body["grid"] == device.grid_code


def test_unknown_incident_is_404_problem(client: TestClient) -> None:
    body = problem(client.get("/api/v1/incidents/INC-20261123-000000000000"), 404)

    assert "INC-20261123-000000000000" in body["detail"]


# --- POST /incidents/{id}/actions -------------------------------------------------------------------
def act(client: TestClient, incident_id: str, action: str, actor: str | None = None, **extra: Any) -> Any:
    """POST an action, logged in as the user acting as `actor` (default: the client's admin login)."""
    headers = actor_headers(client.app.state.runtime, actor) if actor is not None else None  # type: ignore[attr-defined]
    return client.post(f"/api/v1/incidents/{incident_id}/actions", json={"action": action, **extra}, headers=headers)


def test_acknowledge_resolve_close_writes_one_history_row_each(client: TestClient, clock: Clock, incidents: dict[str, str]) -> None:
    incident_id = incidents["fence.intrusion"]
    steps = [("acknowledge", "dispatched", "acknowledged", 3), ("resolve", "acknowledged", "resolved", 10),
             ("check", "resolved", "checking", 11), ("close", "checking", "closed", 12)]

    for action, before, after, minute in steps:
        clock.now = T0 + timedelta(minutes=minute)
        resp = act(client, incident_id, action, actor="system:op-7", note=f"{action} done")
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["state"] == after and iso(body["updated_at"]) == clock.now
        assert body["history_entry"] == {
            "at": clock.now.isoformat(), "action": action, "from": before, "to": after, "actor": "system:admin-op-7",
            "note": f"{action} done",
        }

    detail = client.get(f"/api/v1/incidents/{incident_id}").json()
    assert detail["state"] == "closed" and detail["light"] is None and detail["note"] == "close done"
    assert [(h["action"], h["from"], h["to"]) for h in detail["history"]] == [
        ("report", None, "reported"),
        ("register", "reported", "registered"),
        ("dispatch", "registered", "dispatched"),
        ("acknowledge", "dispatched", "acknowledged"),
        ("resolve", "acknowledged", "resolved"),
        ("check", "resolved", "checking"),
        ("close", "checking", "closed"),
    ]
    assert [iso(h["at"]) for h in detail["history"][3:]] == [T0 + timedelta(minutes=m) for m in (3, 10, 11, 12)]
    assert listed(client, status="closed") == [incident_id]


def test_actions_queue_notifications_in_the_outbox(client: TestClient, rt: Runtime, incidents: dict[str, str]) -> None:
    before = client.get("/api/v1/notifications/counters").json()
    assignee = rt.store.incident(incidents["fence.cut"]).assignee

    act(client, incidents["fence.cut"], "acknowledge")

    after = client.get("/api/v1/notifications/counters").json()
    assert after["pending"] - before["pending"] == (2 if assignee else 1)


def test_close_on_a_dispatched_incident_is_409_naming_state_and_action(client: TestClient, incidents: dict[str, str]) -> None:
    incident_id = incidents["thermal.fire"]

    body = problem(act(client, incident_id, "close"), 409)

    assert body["type"].endswith("/illegal-transition")
    assert (body["state"], body["action"]) == ("dispatched", "close")
    assert body["allowed"] == allowed_actions(IncidentState.DISPATCHED)
    assert {"return", "acknowledge", "escalate", "supervise", "remind"} <= set(body["allowed"]) and "close" not in body["allowed"]
    assert "'close'" in body["detail"] and "'dispatched'" in body["detail"] and incident_id in body["detail"]
    detail = client.get(f"/api/v1/incidents/{incident_id}").json()
    assert detail["state"] == "dispatched" and len(detail["history"]) == 3


def test_acting_on_a_closed_incident_is_409(client: TestClient, incidents: dict[str, str]) -> None:
    incident_id = incidents["fence.cut"]
    for action in ("acknowledge", "resolve", "check", "close"):
        assert act(client, incident_id, action).status_code == 200

    body = problem(act(client, incident_id, "acknowledge"), 409)

    assert (body["state"], body["action"], body["allowed"]) == ("closed", "acknowledge", ["call_back", "archive"])


@pytest.mark.parametrize("payload", [{"action": "explode"}, {}])
def test_unknown_action_is_422_naming_action(client: TestClient, incidents: dict[str, str], payload: dict[str, str]) -> None:
    incident_id = incidents["fence.intrusion"]

    body = problem(client.post(f"/api/v1/incidents/{incident_id}/actions", json=payload), 422)

    assert [e["field"] for e in body["errors"]] == ["action"]
    assert client.get(f"/api/v1/incidents/{incident_id}").json()["state"] == "dispatched"


def test_action_on_unknown_incident_is_404_problem(client: TestClient) -> None:
    body = problem(act(client, "INC-20261123-ffffffffffff", "acknowledge"), 404)

    assert "INC-20261123-ffffffffffff" in body["detail"]


# --- registry: devices, patrollers, dead letters --------------------------------------------------
def test_devices_are_the_registry_as_geojson(client: TestClient) -> None:
    body = client.get("/api/v1/devices").json()

    assert body["type"] == "FeatureCollection" and len(body["features"]) == 390
    expected = {d.id: d for d in sample_district().devices}
    assert sorted(f["id"] for f in body["features"]) == sorted(expected)
    for f in body["features"]:
        d = expected[f["id"]]
        assert f["properties"] == {"id": d.id, "kind": d.kind, "name": d.name, "grid_code": d.grid_code, "zones": list(d.zones),
                                   "format": "gridwatch", "identity": None, "interval_s": None, "state": "unknown",
                                   "state_since": None, "last_seen": None, "detail": {}}
        assert shape(f["geometry"]).equals_exact(d.geometry, tolerance=1e-9)


def test_patrollers_with_duty_and_last_known_position(client: TestClient, rt: Runtime) -> None:
    body = client.get("/api/v1/patrollers").json()
    assert body["count"] == len(body["items"]) == 163
    assert all(p["position"] is None for p in body["items"])
    local = T0.astimezone(SHANGHAI)
    expected = {p.id: p for p in sample_district().patrollers}
    assert {p["id"]: (p["on_duty"], tuple(p["grid_codes"])) for p in body["items"]} == {
        p.id: (p.on_duty(local), p.grid_codes) for p in expected.values()
    }

    rt.handle_messages([location_message("P0007", 113.85, 27.62, at=T0 - timedelta(seconds=30), acc=8.5)])

    items = {p["id"]: p for p in client.get("/api/v1/patrollers").json()["items"]}
    pos = items["P0007"]["position"]
    assert (pos["lon"], pos["lat"], pos["acc"]) == (113.85, 27.62, 8.5)
    assert iso(pos["ts"]) == T0 - timedelta(seconds=30)
    assert [pid for pid, p in items.items() if p["position"] is not None] == ["P0007"]


@pytest.mark.parametrize(
    "topic, payload, reason",
    [
        ("gridwatch/devices/fence-001/alarm", b'{"id": "m-1", "ts": ', "invalid_json"),
        ("gridwatch/devices/no-such-device/alarm", alarm_payload("m-2"), "unknown_device"),
        ("gridwatch/patrollers/P0001/location", b'{"ts": "2026-11-23T10:00:00", "lat": 27.6, "lon": 113.8}', "ts_without_zone"),
    ],
    ids=["invalid_json", "unknown_device", "ts_without_zone"],
)
def test_rejected_messages_are_listed_as_dead_letters(client: TestClient, rt: Runtime, topic: str, payload: bytes, reason: str) -> None:
    result = rt.handle_messages([message(topic, payload)])

    assert result.dead_letters == 1 and result.incidents_created == []
    (item,) = client.get("/api/v1/dead-letters").json()["items"]
    assert (item["topic"], item["reason"], item["payload"]) == (topic, reason, payload.decode())
    assert item["detail"] and iso(item["received_at"]) == T0
    assert rt.store.count_alarms() == 0


# --- ops and docs -----------------------------------------------------------------------------------
def test_healthz_reports_grid_version_and_ingest_counters(client: TestClient, rt: Runtime, incidents: dict[str, str]) -> None:
    rt.handle_messages([message("gridwatch/devices/fence-001/alarm", b"not json")])

    body = client.get("/healthz").json()

    assert body["status"] == "ok"
    assert body["grid_version"] == rt.store.current_version().id
    assert body["ingest"] == {
        "running": False, "batches": 2, "messages": 4, "alarms_stored": 3, "duplicates": 0, "dead_letters": 1, "incidents_created": 3,
        "readings": 0, "statuses": 0, "alarm_ends": 0, "level_repeats": 0,
    }


def test_seed_store_is_idempotent_and_served_as_the_current_version(sqlite_store: Store, clock: Clock) -> None:
    version = seed_store(sqlite_store)
    assert seed_store(sqlite_store) == version
    with client_for(make_runtime(sqlite_store, clock)) as c:
        assert c.get("/healthz").json()["grid_version"] == version
        assert len(c.get("/api/v1/grids", params={"version": version, "level": 1}).json()["features"]) == 5


def test_docs_and_openapi_describe_the_contract(sqlite_client: TestClient) -> None:
    docs = sqlite_client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text.lower()

    spec = sqlite_client.get("/openapi.json").json()
    assert spec["info"]["title"] == "gridwatch"
    assert {
        "/api/v1/locate", "/api/v1/grids", "/api/v1/grids/{code}", "/api/v1/incidents", "/api/v1/incidents/{incident_id}",
        "/api/v1/incidents/{incident_id}/actions", "/api/v1/devices", "/api/v1/patrollers", "/api/v1/dead-letters",
        "/healthz", "/map",
    } <= set(spec["paths"])
    actions = spec["paths"]["/api/v1/incidents/{incident_id}/actions"]
    assert "post" in actions


def test_unexpected_failure_is_500_problem(sqlite_store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(sqlite_store)
    rt = make_runtime(sqlite_store, clock)

    def store_down(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database is down")

    monkeypatch.setattr(rt.store, "incidents", store_down)
    with client_for(rt, raise_server_exceptions=False) as c:
        resp = c.get("/api/v1/incidents")

    body = problem(resp, 500)
    assert "database is down" not in body["detail"]  # internal detail stays in the log


def test_unknown_route_is_404_problem(sqlite_client: TestClient) -> None:
    problem(sqlite_client.get("/api/v1/nothing-here"), 404)


def test_root_redirects_to_the_home_page_of_the_login(sqlite_client: TestClient) -> None:
    resp = sqlite_client.get("/", follow_redirects=False)  # an admin
    assert resp.status_code == 303 and resp.headers["location"] == "/map"

    sqlite_client.headers.pop("Authorization")
    resp = sqlite_client.get("/", follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/login"


def test_unknown_grid_version_is_404(sqlite_client: TestClient) -> None:
    problem(sqlite_client.get("/api/v1/grids", params={"version": 999}), 404)


def test_roster_edits_change_on_duty_lookup_and_routing(client: TestClient, rt: Runtime, clock: Clock) -> None:
    """A dated 'off' exception takes a patroller off duty that day only; a backup grid lists them there (routing: unit tests)."""
    pid = rt.patrollers[0].id
    grid = rt.patrollers[0].grid_codes[0]
    today = clock.now.astimezone(rt.router.tz).date()
    before = client.get("/api/v1/patrollers", params={"grid": grid}).json()
    assert pid in [p["id"] for p in before["items"]]
    other = next(g for g in rt.grid_by_code.values() if g.level == 3 and g.code not in rt.patrollers[0].grid_codes)
    body = {"shifts": [{"weekdays": [0, 1, 2, 3, 4, 5, 6], "start": "00:00", "end": "00:00"}],
            "exceptions": [{"day": today.isoformat(), "on": False}], "backup_grid_codes": [other.code]}
    resp = client.put(f"/api/v1/patrollers/{pid}/roster", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["on_duty"] is False and resp.json()["backup_grid_codes"] == [other.code]
    tomorrow = (clock.now + timedelta(days=1)).isoformat()
    on_tomorrow = client.get("/api/v1/patrollers", params={"grid": grid, "at": tomorrow, "on_duty": True}).json()["items"]
    assert pid in [p["id"] for p in on_tomorrow]
    assert pid in [p["id"] for p in client.get("/api/v1/patrollers", params={"grid": other.code}).json()["items"]]
    assert rt.store.patrollers()[0].exceptions[0].day == today
    problem(client.put("/api/v1/patrollers/nobody/roster", json=body), 404)
    problem(client.put(f"/api/v1/patrollers/{pid}/roster", json={**body, "backup_grid_codes": ["nope"]}), 422)
    problem(client.put(f"/api/v1/patrollers/{pid}/roster", json={**body, "shifts": [{"weekdays": [9], "start": "08:00", "end": "20:00"}]}), 422)
