"""The patroller's phone view (`/patroller`, maps/static/patroller.js) in a real headless Chromium at 390×844 with
geolocation granted: an alarm in the patroller's grid is assigned to it and shows up live, it acknowledges, arrives
and resolves with a note and a photo, a one-tap report at its position opens an incident, and after a server
restart the view reconnects and lists what was assigned meanwhile. Zero console errors,
page errors and failed requests (checked by the `open_page` fixture, which also saves a screenshot).

Hooks of the page: `window.gridwatchPatroller = {ready, me, assigned: [ids], nearby: [ids], position, lastEventAt}`.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import (
    LIVE_TIMEOUT_S,
    SERVER_TIMEOUT_S,
    LiveServer,
    login,
    png_bytes,
    wait_for,
)

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
READY_TIMEOUT_MS = 15_000
"""Generous bound for the view to become ready (not a speed assertion)."""


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    k = math.pi / 180
    x = (lon2 - lon1) * k * math.cos((lat1 + lat2) / 2 * k)
    return math.hypot(x, (lat2 - lat1) * k) * 6_371_000


@pytest.fixture(scope="module")
def patroller(live_server: LiveServer) -> dict[str, Any]:
    """The demo patroller, on duty around the clock and alone in its grid (the test runs on the real clock)."""
    me = live_server.api("patroller").get("/api/v1/me").json()
    pid = me["patroller"]
    live_server.put_on_duty(pid)
    p = next(p for p in live_server.rt.patrollers if p.id == pid)
    grid = p.grid_codes[0]
    lon, lat = live_server.grid_point(grid)
    return {"id": pid, "grid": grid, "lon": lon, "lat": lat}


def open_phone(open_page: Any, live_server: LiveServer, patroller: dict[str, Any]) -> Any:
    page = open_page(**PHONE, geolocation={"longitude": patroller["lon"], "latitude": patroller["lat"], "accuracy": 5},
                     permissions=["geolocation"])
    login(page, live_server.base_url, "patroller", live_server.password)
    assert urlparse(page.url).path == "/patroller"
    page.wait_for_function("() => window.gridwatchPatroller && window.gridwatchPatroller.ready === true", timeout=READY_TIMEOUT_MS)
    me = page.evaluate("() => window.gridwatchPatroller.me")
    assert patroller["id"] in json.dumps(me), f"the view is logged in as {me!r}, not patroller {patroller['id']}"
    return page


def wait_state(live_server: LiveServer, incident_id: str, predicate: Any, what: str) -> dict[str, Any]:
    return wait_for(lambda: (lambda inc: inc if predicate(inc) else None)(live_server.incident(incident_id)),
                    SERVER_TIMEOUT_S, what)


def test_patroller_gets_an_alarm_live_and_handles_it(live_server: LiveServer, open_page: Any, patroller: dict[str, Any]) -> None:
    page = open_phone(open_page, live_server, patroller)
    rec = open_page.recorder(page)
    page.wait_for_function("() => !!window.gridwatchPatroller.position", timeout=READY_TIMEOUT_MS)
    loads = rec.loads
    page.evaluate("() => { window.__gwDocument = 'phone'; }")
    # the phone's GPS reaches the server (routing and arrival detection use it)
    page.wait_for_function("() => window.gridwatchPatroller.positionsSent >= 1", timeout=READY_TIMEOUT_MS)
    known = wait_for(lambda: live_server.rt.store.positions().get(patroller["id"]), SERVER_TIMEOUT_S, "the position on the server")
    assert distance_m(known.lon, known.lat, patroller["lon"], patroller["lat"]) < 1

    # an alarm inside the patroller's grid, from a registered device (its own grid's when it has one)
    try:
        device = live_server.fresh_device(kind=None, within=patroller["grid"])
    except LookupError:
        device = live_server.fresh_device(kind="fence")
    t_pub = time.monotonic()
    msg_id = live_server.publish_alarm(device.id, lon=patroller["lon"], lat=patroller["lat"])
    incident_id = live_server.wait_incident(device.id, msg_id, timeout=LIVE_TIMEOUT_S)
    stored = live_server.incident(incident_id)
    assert stored["assignee"] == patroller["id"], f"routing gave the alarm to {stored['assignee']!r}: {stored['route']}"
    remaining_ms = max(500, int((t_pub + LIVE_TIMEOUT_S - time.monotonic()) * 1000))
    page.wait_for_function("(id) => (window.gridwatchPatroller.assigned || []).includes(id)", arg=incident_id, timeout=remaining_ms)
    item = page.locator(f'#pv-assigned [data-incident-id="{incident_id}"]')
    expect(item).to_be_visible(timeout=LIVE_TIMEOUT_S * 1000)
    expect(page.locator("#pv-banner")).to_be_visible(timeout=LIVE_TIMEOUT_S * 1000)
    assert rec.loads == loads and page.evaluate("() => window.__gwDocument") == "phone", "the view reloaded"

    # acknowledge → arrive → resolve with a note and a photo
    page.on("dialog", lambda d: d.accept())
    item.click()
    detail = page.locator("#pv-detail")
    expect(detail).to_be_visible()
    detail.locator('button[data-action="acknowledge"]').click()
    wait_state(live_server, incident_id, lambda i: i["state"] == "acknowledged", "the incident acknowledged")
    # the patroller writes the resolve note and picks the photo while the arrival is still on its way:
    # the arrival's answer must not wipe them (the request is held until both are in)
    held: list[Any] = []
    page.route("**/api/v1/incidents/*/actions", lambda route: held.append(route))
    detail.locator('button[data-action="arrive"]').click()
    deadline = time.monotonic() + SERVER_TIMEOUT_S
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert held, "the arrive action was never sent"
    note = "handled on site, browser test"
    page.fill("#pv-note", note)
    page.set_input_files("#pv-photo", files=[{"name": "fixed.png", "mimeType": "image/png", "buffer": png_bytes()}])
    held[0].continue_()
    page.unroute("**/api/v1/incidents/*/actions")
    wait_state(live_server, incident_id, lambda i: i["arrived_at"] is not None, "the arrival recorded")
    resolve_button = detail.locator('button[data-action="resolve"]')
    expect(resolve_button).to_be_enabled(timeout=SERVER_TIMEOUT_S * 1000)  # the arrival's answer is in
    assert page.input_value("#pv-note") == note, "the arrival's answer wiped the note typed meanwhile"
    resolve_button.click()
    done = wait_state(live_server, incident_id, lambda i: i["state"] == "resolved", "the incident resolved")
    resolve = [h for h in done["history"] if h["action"] == "resolve"]
    assert resolve and note in (resolve[-1]["note"] or ""), f"resolve history: {resolve}"
    assert resolve[-1]["actor"] == f"patroller:{patroller['id']}"
    photos = Path(live_server.data_dir) / "photos" / incident_id
    assert photos.is_dir() and any(photos.iterdir()), f"no photo stored under {photos}"
    expect(page.locator("#pv-status")).to_be_visible()
    assert rec.loads == loads, "the view reloaded while handling the incident"


def test_one_tap_report_at_the_current_position(live_server: LiveServer, open_page: Any, patroller: dict[str, Any]) -> None:
    page = open_phone(open_page, live_server, patroller)
    page.wait_for_function("() => !!window.gridwatchPatroller.position", timeout=READY_TIMEOUT_MS)
    admin = live_server.api("admin")
    before = {i["id"] for i in admin.get("/api/v1/incidents", params={"limit": 2000}).json()["items"]}

    page.locator("#pv-report").click()
    form = page.locator("#pv-report-form")
    expect(form).to_be_visible()
    kinds = page.locator("#pv-report-type option").evaluate_all("os => os.map(o => o.value).filter(v => v)")
    assert kinds, "the report form offers no incident types"
    page.select_option("#pv-report-type", kinds[0])
    page.fill("#pv-report-note", "one-tap report, browser test")
    page.set_input_files("#pv-report-photo", files=[{"name": "scene.png", "mimeType": "image/png", "buffer": png_bytes(rgb=(20, 90, 200))}])
    page.locator("#pv-report-submit").click()

    def new_report() -> dict[str, Any] | None:
        items = admin.get("/api/v1/incidents", params={"limit": 2000}).json()["items"]
        return next((i for i in items if i["id"] not in before and i["type"] == kinds[0]), None)

    created = wait_for(new_report, SERVER_TIMEOUT_S, f"a new {kinds[0]} incident from the report")
    assert created["grid"] == patroller["grid"], f"reported into grid {created['grid']}, the patroller stands in {patroller['grid']}"
    assert distance_m(created["lon"], created["lat"], patroller["lon"], patroller["lat"]) < 50, created["route"]
    expect(page.locator("#pv-status")).to_be_visible()


def test_the_phone_recovers_from_a_server_restart_and_gets_what_was_assigned_meanwhile(
        live_server: LiveServer, open_page: Any, patroller: dict[str, Any]) -> None:
    """The live feed drops (the server ends its streams) and a proxy answers 502 while it is away: the view shows
    it is disconnected, retries, and once the server answers again it is live and lists the alarm assigned to the
    patroller in the meantime, without a reload."""
    import re

    page = open_phone(open_page, live_server, patroller)
    rec = open_page.recorder(page)
    rec.allow(r"EventSource|502")  # the refused reconnections, expected here
    page.evaluate("() => { window.__gwDocument = 'phone'; }")
    loads = rec.loads
    page.wait_for_function("() => window.gridwatchPatroller.connected === true", timeout=READY_TIMEOUT_MS)
    refused = live_server.drop_streams(page)
    page.wait_for_function("() => window.gridwatchPatroller.connected === false", timeout=SERVER_TIMEOUT_S * 1000)
    expect(page.locator("#pv-conn")).to_have_class(re.compile(r"\boff\b"))

    # in the patroller's other grid: the other tests' alarms are in its first one, where this one could join
    # their incident (cooldown) instead of opening its own
    grid = next(p for p in live_server.rt.patrollers if p.id == patroller["id"]).grid_codes[-1]
    device = live_server.fresh_device(kind=None, within=grid)
    lon, lat = live_server.grid_point(grid)
    incident_id = live_server.wait_incident(device.id, live_server.publish_alarm(device.id, lon=lon, lat=lat))
    assert live_server.incident(incident_id)["assignee"] == patroller["id"]
    deadline = time.monotonic() + SERVER_TIMEOUT_S
    while not refused and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert refused, "the view never tried to reconnect"

    live_server.streams_back(page)
    page.wait_for_function("() => window.gridwatchPatroller.connected === true", timeout=LIVE_TIMEOUT_S * 1000)
    page.wait_for_function("(id) => (window.gridwatchPatroller.assigned || []).includes(id)", arg=incident_id,
                           timeout=LIVE_TIMEOUT_S * 1000)
    expect(page.locator(f'#pv-assigned [data-incident-id="{incident_id}"]')).to_be_visible(timeout=LIVE_TIMEOUT_S * 1000)
    assert rec.loads == loads and page.evaluate("() => window.__gwDocument") == "phone", "the view reloaded to recover"
