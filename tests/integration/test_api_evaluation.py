"""GET /evaluation over a hand-computed fixture built through the API (reports) and the store (workflow steps)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import api.routes.evaluation as evaluation_routes
import api.routes.reports as reports_routes
from alerts import workflow
from alerts.evaluation import DEFAULT_CONFIG
from api.app import create_app
from api.photos import PhotoSettings
from api.runtime import Runtime
from tests.integration.apphelpers import (
    T0,
    Clock,
    location_message,
    problem,
    token_headers,
)

pytestmark = pytest.mark.integration
M_PER_DEG = 111_195.0


@pytest.fixture
def client(rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setattr(reports_routes, "photo_settings", lambda _s: PhotoSettings(tmp_path / "data"))
    app = create_app(rt.settings, rt)
    paths = {getattr(r, "path", "") for r in app.routes}
    for module, path in ((reports_routes, "/api/v1/reports"), (evaluation_routes, "/api/v1/evaluation")):
        if path not in paths:
            app.include_router(module.router, prefix="/api/v1")  # until api/app.py includes it
    with TestClient(app) as c:
        c.headers.update(token_headers(rt))  # an admin
        yield c


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


class World:
    """The district's first level-3 grid, a point in it and its day-shift patroller."""

    def __init__(self, rt: Runtime, client: TestClient, clock: Clock) -> None:
        self.rt, self.client, self.clock = rt, client, clock
        self.grid = rt.store.grids(level=3)[0]
        p = self.grid.geometry.representative_point()
        self.lon, self.lat = p.x, p.y
        local = clock.now.astimezone(rt.router.tz)
        self.pid = sorted(x.id for x in rt.patrollers if self.grid.code in x.grid_codes and x.on_duty(local))[0]

    def report(self, minute: float, **extra: Any) -> str:
        self.clock.now = at(minute)
        resp = self.client.post("/api/v1/reports", json={"patroller_id": self.pid, "lon": self.lon, "lat": self.lat,
                                                          "type": "other.report", **extra})
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    def citizen(self, minute: float) -> str:
        self.clock.now = at(minute)
        resp = self.client.post("/api/v1/open311/requests.json",
                                data={"service_code": "other.report", "lat": str(self.lat), "long": str(self.lon)})
        assert resp.status_code == 201, resp.text
        return str(resp.json()[0]["service_request_id"])

    def act(self, incident_id: str, action: str, minute: float, **params: Any) -> None:
        """One workflow step at T0 + minute, stored like POST /incidents/{id}/actions stores it."""
        self.clock.now = at(minute)
        with self.rt.store.unit_of_work() as uow:
            incident = uow.get_incident(incident_id, for_update=True)
            assert incident is not None
            kw = {"params": params} if params else {}
            entry = workflow.apply(incident, action, actor="test", at=self.clock.now, **kw)
            uow.save_incidents([incident])
            uow.add_history([entry])


def isolated_buildings(rt: Runtime, grid_code: str) -> tuple[list[Any], list[Any]]:
    """The grid's buildings, and those at least 100 m from any other footprint (a point inside visits only them)."""
    everything = rt.store.buildings()
    mine = [b for b in everything if b.grid_code == grid_code]
    lonely = [b for b in mine
              if min(o.geometry.distance(b.geometry.centroid) for o in everything if o.code != b.code) * M_PER_DEG * 0.88 > 100]
    return mine, lonely


def build_fixture(rt: Runtime, client: TestClient, clock: Clock) -> tuple[World, dict[str, str]]:
    """Seven incidents in [T0, T0 + 120 min) of one grid (SLA defaults: register 30 min, acknowledge 1 h, handle 1 h)."""
    w = World(rt, client, clock)
    ids: dict[str, str] = {}
    # R1: dispatched at once; extension to T0+90; closed at 30 ≤ 90 → on time
    ids["R1"] = r = w.report(0)
    w.act(r, "acknowledge", 5)
    w.act(r, "request_extension", 6)
    w.act(r, "approve_extension", 8, until=at(90).isoformat())
    w.act(r, "resolve", 20)
    w.act(r, "check", 25)
    w.act(r, "close", 30)
    # R2: self-handled
    ids["R2"] = w.report(1, self_handled=True)
    # R3: citizen report, still verifying: register deadline T0+32 passed, never dispatched (late)
    ids["R3"] = w.citizen(2)
    # R4: extension to T0+75, reworked, closed at 110 > 75 → late
    ids["R4"] = r = w.report(3)
    w.act(r, "acknowledge", 10)
    w.act(r, "request_extension", 12)
    w.act(r, "approve_extension", 14, until=at(75).isoformat())
    w.act(r, "resolve", 40)
    w.act(r, "check", 45)
    w.act(r, "rework", 50)
    w.act(r, "acknowledge", 55)
    w.act(r, "resolve", 100)
    w.act(r, "check", 105)
    w.act(r, "close", 110)
    # R5: acknowledged at 6 (handle deadline 66), arrived at 8, still open → overdue
    ids["R5"] = r = w.report(4)
    w.act(r, "acknowledge", 6)
    w.act(r, "arrive", 8)
    # R6, R7: dispatched, never acknowledged; acknowledge deadlines 110 and 100 → overdue
    ids["R6"] = w.report(50)
    ids["R7"] = w.report(40)
    # after the period: not counted
    w.report(130)
    # GPS: the patroller stands inside three isolated buildings, once 50 m north of another, once after the period
    _, lonely = isolated_buildings(rt, w.grid.code)
    assert len(lonely) >= 4
    fixes = [(b.geometry.centroid.x, b.geometry.centroid.y, 10 + i) for i, b in enumerate(lonely[:3])]
    top = lonely[3].geometry.bounds[3]
    fixes.append((lonely[3].geometry.centroid.x, top + 50 / M_PER_DEG, 20))
    fixes.append((lonely[3].geometry.centroid.x, lonely[3].geometry.centroid.y, 125))
    rt.handle_messages([location_message(w.pid, lon, lat, at=at(minute)) for lon, lat, minute in fixes])
    clock.now = at(200)
    return w, ids


def expected_score() -> float:
    w = DEFAULT_CONFIG.weights
    values = {"closed_rate": 3 / 7, "on_time_close_rate": 1 / 6, "on_time_dispatch_rate": 5 / 6, "rework_rate": 1 - 1 / 7,
              "extension_rate": 1 - 2 / 7, "overdue_open_rate": 1 - 4 / 7, "coverage": 3 / 9}
    return 100 * sum(w[k] * v for k, v in values.items()) / sum(w.values())


def test_grid_evaluation_matches_the_hand_computed_fixture(client: TestClient, rt: Runtime, clock: Clock) -> None:
    w, _ = build_fixture(rt, client, clock)
    mine, _ = isolated_buildings(rt, w.grid.code)
    assert len(mine) == 9
    params = {"level": 3, "grid": w.grid.code, "from": at(0).isoformat(), "to": at(120).isoformat()}
    resp = client.get("/api/v1/evaluation", params=params)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["by"], body["level"], body["count"], body["coverage"], body["truncated"]) == ("grid", 3, 1, True, False)
    (row,) = body["items"]
    assert (row["key"], row["level"], row["period_from"], row["period_to"]) == (w.grid.code, 3, at(0).isoformat(), at(120).isoformat())
    assert (row["incidents"], row["closed"], row["closed_rate"]) == (7, 3, pytest.approx(3 / 7))  # R1 R2 R4
    assert (row["due"], row["on_time_closed"], row["on_time_close_rate"]) == (6, 1, pytest.approx(1 / 6))  # all but R2; R1
    assert (row["dispatch_checked"], row["on_time_dispatched"], row["on_time_dispatch_rate"]) == (6, 5, pytest.approx(5 / 6))  # R3 late
    assert (row["reworked"], row["rework_rate"]) == (1, pytest.approx(1 / 7))  # R4
    assert (row["extended"], row["extension_rate"]) == (2, pytest.approx(2 / 7))  # R1 R4
    assert (row["overdue_open"], row["overdue_open_rate"]) == (4, pytest.approx(4 / 7))  # R3 R5 R6 R7
    assert row["self_handled"] == 1  # R2
    assert row["mean_minutes_to_acknowledge"] == pytest.approx((5 + 7 + 2) / 3)  # R1 R4 (first ack) R5
    assert row["mean_minutes_to_arrive"] == pytest.approx(4)  # R5
    assert row["mean_minutes_to_resolve"] == pytest.approx((20 + 97) / 2)  # R1, R4 (last resolve)
    assert (row["buildings"], row["buildings_visited"], row["coverage"]) == (9, 3, pytest.approx(1 / 3))
    assert row["score"] == pytest.approx(expected_score()) and row["grade"] == "E"

    csv_resp = client.get("/api/v1/evaluation", params={**params, "format": "csv"})
    assert csv_resp.status_code == 200 and csv_resp.headers["content-type"].startswith("text/csv")
    assert "attachment" in csv_resp.headers["content-disposition"]
    (line,) = list(csv.DictReader(io.StringIO(csv_resp.text)))
    assert line["key"] == w.grid.code and line["incidents"] == "7" and line["grade"] == "E"
    assert float(line["on_time_close_rate"]) == pytest.approx(1 / 6) and float(line["coverage"]) == pytest.approx(1 / 3)


def test_evaluation_by_level_patroller_and_center(client: TestClient, rt: Runtime, clock: Clock) -> None:
    w, _ = build_fixture(rt, client, clock)
    period = {"from": at(0).isoformat(), "to": at(120).isoformat()}
    l1 = w.rt.grid_by_code[w.grid.code]
    chain = []
    while l1.parent_code:
        chain.append(l1.parent_code)
        l1 = w.rt.grid_by_code[l1.parent_code]
    body = client.get("/api/v1/evaluation", params={**period, "level": 1}).json()
    rows = {r["key"]: r for r in body["items"]}
    assert len(chain) == 2 and len(rows) == 5 and rows[l1.code]["incidents"] == 7 and rows[l1.code]["closed"] == 3
    assert sum(r["incidents"] for r in rows.values()) == 7  # other level-1 grids: rows without incidents

    body = client.get("/api/v1/evaluation", params={**period, "grid": chain[0]}).json()  # level-2 grid: level-2 rows
    assert body["level"] == 2 and [r["key"] for r in body["items"]] == [chain[0]] and body["items"][0]["incidents"] == 7

    body = client.get("/api/v1/evaluation", params={**period, "patroller": w.pid}).json()
    (p,) = body["items"]
    assert (body["by"], p["key"], p["incidents"], p["closed"], p["self_handled"]) == ("patroller", w.pid, 6, 3, 1)  # R3 has no assignee
    assert p["buildings_visited"] == 3

    body = client.get("/api/v1/evaluation", params={**period, "by": "center", "level": 3, "grid": w.grid.code}).json()
    assert body["items"][0]["incidents"] == 7  # nothing was escalated: the community center owns them all


def test_evaluation_query_errors(client: TestClient, rt: Runtime) -> None:
    problem(client.get("/api/v1/evaluation", params={"from": at(10).isoformat(), "to": at(0).isoformat()}), 422)
    problem(client.get("/api/v1/evaluation", params={"from": "2026-11-23T10:00:00"}), 422)  # no zone
    problem(client.get("/api/v1/evaluation", params={"grid": "999"}), 404)
    problem(client.get("/api/v1/evaluation", params={"patroller": "nobody"}), 404)
    problem(client.get("/api/v1/evaluation", params={"format": "xml"}), 422)
    grid = rt.store.grids(level=3)[0].code
    problem(client.get("/api/v1/evaluation", params={"grid": grid, "level": 1}), 422)
    body = client.get("/api/v1/evaluation").json()  # defaults: the last 30 days, level 3, every grid
    assert body["level"] == 3 and body["count"] == len(rt.store.grids(level=3))
