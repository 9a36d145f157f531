"""GET /map: the map wall page over the seeded sample district, on SQLite and PostGIS."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from shapely.geometry import Point, box

from api.runtime import Runtime
from maps.style import LIGHT_COLORS, NO_LIGHT_COLOR, QUIET_FILL
from maps.wall import DEVICE_COLORS
from store.ports import Store
from tests.integration.apphelpers import (
    Clock,
    client_for,
    device_markers,
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


def codes(level: int, prefix: str = "") -> set[str]:
    return {g.code for g in sample_district().grids if g.level == level and g.code.startswith(prefix)}


def get_map(client: TestClient, **params: str) -> str:
    resp = client.get("/map", params=params)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/html")
    return resp.text


def test_map_wall_shows_level_1_and_level_3_grids_and_quiet_fills(client: TestClient, rt: Runtime) -> None:
    html = get_map(client)

    grids = wall_grids(html)
    assert set(grids) == codes(1) | codes(3)
    assert {g["fill"] for g in grids.values()} == {QUIET_FILL}
    assert {g["open_incidents"] for g in grids.values()} == {0}
    assert wall_markers(html) == []
    devices = device_markers(html)
    assert len(devices) == len(rt.devices) and {c for *_, c in devices} == {DEVICE_COLORS["unknown"]}  # none heard from yet
    assert "<title>gridwatch map wall</title>" in html


def test_map_wall_colours_grids_by_their_worst_open_incident(client: TestClient, incidents: dict[str, dict[str, object]]) -> None:
    html = get_map(client)

    grids = wall_grids(html)
    expected = {"fence.intrusion": YELLOW, "fence.cut": GREEN, "thermal.fire": RED}
    for type_, inc in incidents.items():
        l3 = str(inc["l3"])
        assert (grids[l3]["fill"], grids[l3]["open_incidents"]) == (expected[type_], 1), type_
        assert (grids[l3[:9]]["fill"], grids[l3[:9]]["open_incidents"]) == (expected[type_], 1), type_
    busy = {str(i["l3"]) for i in incidents.values()} | {str(i["l3"])[:9] for i in incidents.values()}
    assert {g["fill"] for c, g in grids.items() if c not in busy} == {QUIET_FILL}


def test_map_wall_has_one_marker_per_open_incident_at_its_point(client: TestClient, incidents: dict[str, dict[str, object]]) -> None:
    markers = wall_markers(get_map(client))

    expected = {"fence.intrusion": YELLOW, "fence.cut": GREEN, "thermal.fire": RED}
    assert sorted(markers) == sorted((inc["lat"], inc["lon"], expected[t]) for t, inc in incidents.items())


def test_closed_incident_leaves_the_map_wall(client: TestClient, incidents: dict[str, dict[str, object]]) -> None:
    fire = incidents["thermal.fire"]
    for action in ("acknowledge", "resolve", "check", "close"):
        assert client.post(f"/api/v1/incidents/{fire['id']}/actions", json={"action": action}).status_code == 200

    html = get_map(client)

    assert len(wall_markers(html)) == 2
    assert wall_grids(html)[str(fire["l3"])]["fill"] == QUIET_FILL


def test_map_wall_colours_an_undispatched_incident_by_its_register_clock(store_backend: Store, clock: Clock) -> None:
    """Not dispatched yet: the register+dispatch stage clock runs (design §6), green at first, red when overdue."""
    seed(store_backend)
    rt = make_runtime(store_backend, clock, auto_dispatch=False)
    ids = feed_incidents(rt)
    incident = rt.store.incident(ids["thermal.fire"])
    assert incident is not None and incident.stage == "register" and incident.state.value == "reported"
    with client_for(rt) as c:
        html = get_map(c)
        assert wall_grids(html)[incident.route.l3]["fill"] == LIGHT_COLORS["green"]
        clock.now = incident.deadline + timedelta(minutes=1)  # type: ignore[operator]
        html = get_map(c)
    assert wall_grids(html)[incident.route.l3]["fill"] == LIGHT_COLORS["red"]
    assert NO_LIGHT_COLOR not in {color for _, _, color in wall_markers(html)}


def test_drill_down_to_a_level_2_grid_shows_only_its_subtree(client: TestClient, incidents: dict[str, dict[str, object]]) -> None:
    fire = incidents["thermal.fire"]
    l2 = str(fire["l3"])[:12]

    html = get_map(client, grid=l2)

    grids = wall_grids(html)
    assert set(grids) == codes(3, l2)
    l2_polygon = next(g.geometry for g in sample_district().grids if g.code == l2)
    for g in sample_district().grids:
        if g.code in grids:
            assert l2_polygon.buffer(1e-9).contains(g.geometry)
    assert grids[str(fire["l3"])]["fill"] == RED
    assert wall_markers(html) == [(fire["lat"], fire["lon"], RED)]
    assert l2_polygon.contains(Point(fire["lon"], fire["lat"]))
    assert f"<title>gridwatch map wall · {l2}</title>" in html


def test_drill_down_to_a_quiet_level_1_grid(client: TestClient, incidents: dict[str, dict[str, object]]) -> None:
    quiet = sorted(codes(1) - {str(i["l3"])[:9] for i in incidents.values()})[0]

    html = get_map(client, grid=quiet)

    grids = wall_grids(html)
    assert set(grids) == codes(3, quiet)
    assert {g["fill"] for g in grids.values()} == {QUIET_FILL}
    assert wall_markers(html) == []


def test_drill_down_to_a_level_3_grid_shows_that_grid(client: TestClient) -> None:
    l3 = sorted(codes(3))[42]

    grids = wall_grids(get_map(client, grid=l3))

    assert set(grids) == {l3}
    assert (grids[l3]["level"], grids[l3]["fill"], grids[l3]["open_incidents"]) == (3, QUIET_FILL, 0)


@pytest.mark.parametrize("grid", ["430102999", "430102001999", "430102001001999"])
def test_drill_down_to_an_unknown_grid_is_404_problem(client: TestClient, grid: str) -> None:
    body = problem(client.get("/map", params={"grid": grid}), 404)

    assert grid in body["detail"]


def test_drill_down_to_a_malformed_grid_code_is_422_naming_grid(client: TestClient) -> None:
    body = problem(client.get("/map", params={"grid": "4301 OR 1=1"}), 422)

    assert [e["field"] for e in body["errors"]] == ["grid"]


def test_drill_down_and_incident_filter_follow_parent_codes_not_prefixes(client: TestClient, rt: Runtime) -> None:
    """An imported grid with a foreign code is in its parent's subtree through parent_code."""
    from api.routes.pages import subtree
    from geo.model import Grid

    grids = [Grid("D1", 1, "d", box(0, 0, 1, 1)), Grid("S-1", 2, "s", box(0, 0, 1, 1), "D1"),
             Grid("U-17", 3, "u", box(0, 0, 1, 1), "S-1"), Grid("U-18", 3, "u", box(0, 0, 1, 1), "S-2")]
    assert [g.code for g in subtree(grids, "D1")] == ["D1", "S-1", "U-17"]
    assert subtree(grids, "nope") == []


def test_device_markers_show_online_offline_and_alarming(client: TestClient, rt: Runtime) -> None:
    from tests.integration.apphelpers import alarm_message, message

    fences = sorted(d.id for d in rt.devices.values() if d.kind == "fence")
    rt.handle_messages([message(f"gridwatch/devices/{fences[0]}/status", b'{"online": true}', rt.now())])
    rt.handle_messages([message(f"gridwatch/devices/{fences[1]}/status", b'{"online": false}', rt.now())])
    rt.handle_messages([alarm_message(fences[2], "m-1", at=rt.now())])
    colours = [c for *_, c in device_markers(get_map(client))]
    # the offline fence is also alarming (its device.offline incident is open)
    assert colours.count(DEVICE_COLORS["online"]) == 1
    assert colours.count(DEVICE_COLORS["alarming"]) == 2
