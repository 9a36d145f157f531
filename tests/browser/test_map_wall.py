"""The map wall (`/map`, maps/static/wall.js) in a real headless Chromium: log in through the form, grids
render, an alarm published over MQTT shows up live (no reload), a popup action changes the incident, drill-down,
and a street commander's wall stays inside its subtree. Every page ends with zero console errors, page errors
and failed requests (checked by the `open_page` fixture, which also saves a screenshot).

Also: the wall recovers from a server restart (its feed ends, a proxy answers 502 meanwhile) and catches up
on what it missed; the heatmap toggle and its type filter.

Hooks of the page: `window.gridwatch = {ready, level, shownGrids, incidents: {id: {...}}, lastEventAt,
drill(code) → Promise, timings: {firstRender}}`.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import (
    LIVE_TIMEOUT_S,
    SERVER_TIMEOUT_S,
    LiveServer,
    login,
    wait_for,
)

pytestmark = pytest.mark.browser

READY_TIMEOUT_MS = 15_000
"""Generous bound for the wall to become ready (speed is measured by bench/pages.py, not asserted here)."""

COUNT_JS = """(v) => Array.isArray(v) ? v.length : (v instanceof Set || v instanceof Map) ? v.size
    : (v && typeof v === 'object') ? Object.keys(v).length : Number(v)"""


def wait_ready(page: Any) -> None:
    page.wait_for_function("() => window.gridwatch && window.gridwatch.ready === true", timeout=READY_TIMEOUT_MS)


def shown_count(page: Any) -> int:
    return int(page.evaluate(f"() => ({COUNT_JS})(window.gridwatch.shownGrids)"))


def shown_codes(page: Any) -> set[str]:
    """The codes of the grids the wall draws (`window.gridwatch.shownCodes`)."""
    codes = page.evaluate("() => window.gridwatch.shownCodes")
    assert isinstance(codes, list) and all(isinstance(c, str) for c in codes), f"shownCodes is {codes!r}"
    return set(codes)


def mark_document(page: Any) -> str:
    """Tag the current document; `same_document` tells later whether the page was reloaded since."""
    token = f"doc-{time.monotonic_ns()}"
    page.evaluate("(t) => { window.__gwDocument = t; }", token)
    return token


def same_document(page: Any, token: str) -> bool:
    return page.evaluate("() => window.__gwDocument || null") == token


def wait_incident_in_wall(page: Any, device_id: str, published_at: float) -> str:
    """The id of the wall's incident of `device_id`, waiting at most LIVE_TIMEOUT_S from the publish."""
    remaining_ms = max(500, int((published_at + LIVE_TIMEOUT_S - time.monotonic()) * 1000))
    handle = page.wait_for_function(
        """(dev) => { const gw = window.gridwatch; if (!gw || !gw.incidents) return null;
            const hit = Object.entries(gw.incidents).find(([, i]) => i && i.device_id === dev);
            return hit ? hit[0] : null; }""",
        arg=device_id, timeout=remaining_ms)
    return str(handle.json_value())


# --- login (passes with the login page alone) --------------------------------------------------------


def test_login_form_sets_the_session_cookie(live_server: LiveServer, open_page: Any) -> None:
    page = open_page()
    rec = open_page.recorder(page)
    page.goto(live_server.url("/login"))
    page.fill("#username", "admin")
    page.fill("#password", "wrong password")
    rec.allow(r"status of 401")  # the refused login answers 401 with the form again
    with page.expect_navigation():
        page.click("#submit")
    expect(page.locator("#error")).to_be_visible()
    assert urlparse(page.url).path == "/login"
    # without a login the API refuses; after logging in through the form, the session cookie authenticates it
    resp = page.goto(live_server.url("/api/v1/me"))
    assert resp is not None and resp.status == 401, "the API answered without a login"
    landed = login(page, live_server.base_url, "street", live_server.password, next="/api/v1/me")
    assert urlparse(landed).path == "/api/v1/me"
    me = page.evaluate("() => JSON.parse(document.body.innerText)")
    assert me["username"] == "street" and me["role"] == "commander" and me["grid"]
    cookies = page.context.cookies()
    session = [c for c in cookies if c["httpOnly"]]
    assert session, f"no HttpOnly session cookie: {cookies}"
    assert page.evaluate("() => document.cookie") == "", "the session cookie must not be readable by scripts"


@pytest.mark.parametrize(("username", "home"), [("admin", "/map"), ("district", "/map")])
def test_login_lands_on_the_map_wall(live_server: LiveServer, page: Any, username: str, home: str) -> None:
    landed = login(page, live_server.base_url, username, live_server.password)
    assert urlparse(landed).path == home
    wait_ready(page)
    assert shown_count(page) > 0


# --- the wall ----------------------------------------------------------------------------------------


def test_admin_wall_shows_a_published_alarm_live_and_acts_on_it(live_server: LiveServer, open_page: Any) -> None:
    page = open_page()
    rec = open_page.recorder(page)
    login(page, live_server.base_url, "admin", live_server.password)
    assert urlparse(page.url).path == "/map"
    wait_ready(page)
    n_grids = shown_count(page)
    assert n_grids > 0, "no grids rendered"
    assert page.locator("#gw-panel").is_visible()
    expect(page.locator("#gw-count-open")).to_be_visible()
    loads, token = rec.loads, mark_document(page)

    # an alarm over MQTT from a registered device of the sample district
    device = live_server.fresh_device(kind="fence")
    lon, lat = live_server.grid_point(device.grid_code)
    t_pub, before_ms = time.monotonic(), page.evaluate("() => Date.now()")
    msg_id = live_server.publish_alarm(device.id, lon=lon, lat=lat)
    incident_id = wait_incident_in_wall(page, device.id, t_pub)
    print(f"alarm → wall: {time.monotonic() - t_pub:.2f} s (measured in bench/pages.py, not judged here)")
    assert incident_id == live_server.wait_incident(device.id, msg_id), "the wall shows another incident than the store"
    item = page.locator(f'#gw-incidents li[data-incident-id="{incident_id}"]')
    expect(item).to_be_visible(timeout=LIVE_TIMEOUT_S * 1000)
    expect(page.locator("#gw-alert")).to_be_visible(timeout=LIVE_TIMEOUT_S * 1000)
    assert rec.loads == loads and same_document(page, token), "the page reloaded to show the incident"
    assert page.evaluate("() => window.gridwatch.lastEventAt") >= before_ms, "no live event reached the page"

    # its popup, and an action the admin may take
    before = live_server.incident(incident_id)
    allowed = before["allowed_actions"]
    assert allowed, f"the admin may take no action on {before['state']} incident {incident_id}"
    page.on("dialog", lambda d: d.accept("browser test") if d.type == "prompt" else d.accept())
    item.click()
    buttons = page.locator("button[data-action]:visible")
    expect(buttons.first).to_be_visible(timeout=SERVER_TIMEOUT_S * 1000)
    offered = [b for b in buttons.evaluate_all("bs => bs.map(b => b.dataset.action)")]
    assert set(offered) <= set(allowed), f"the popup offers {offered}, the API allows {allowed}"
    action = "acknowledge"  # a state-changing action of a dispatched incident: the wall must show the new state
    assert action in offered, f"the popup of dispatched incident {incident_id} offers {offered}"
    page.locator(f'button[data-action="{action}"]:visible').first.click()
    after = wait_for(lambda: (lambda inc: inc if any(h["action"] == action for h in inc["history"]) else None)(
        live_server.incident(incident_id)), what=f"action {action} in the history of {incident_id}")
    assert (before["state"], after["state"]) == ("dispatched", "acknowledged")
    page.wait_for_function("([id, s]) => window.gridwatch.incidents[id] && window.gridwatch.incidents[id].state === s",
                           arg=[incident_id, after["state"]], timeout=SERVER_TIMEOUT_S * 1000)
    assert rec.loads == loads and same_document(page, token), "the page reloaded after the action"

    # drill down into the incident's level-1 grid
    l1 = after["route"]["l1"]
    page.evaluate("(code) => window.gridwatch.drill(code)", l1)
    wait_ready(page)
    assert parse_qs(urlparse(page.url).query).get("grid") == [l1]
    assert shown_codes(page) == live_server.children(l1), f"drilled into {l1}: expected its children"
    assert shown_count(page) == len(live_server.children(l1))
    assert page.evaluate("(id) => id in window.gridwatch.incidents", incident_id), "the incident left the drilled-down wall"
    expect(page.locator("#gw-crumbs")).to_contain_text(l1)


def test_street_commander_wall_shows_only_its_subtree(live_server: LiveServer, open_page: Any) -> None:
    page = open_page()
    rec = open_page.recorder(page)
    street = live_server.api("street").get("/api/v1/me").json()["grid"]
    mine = live_server.subtree(street)
    login(page, live_server.base_url, "street", live_server.password)
    assert urlparse(page.url).path == "/map"
    wait_ready(page)
    codes = shown_codes(page)  # the wall opens on the commander's own grid: its children
    assert codes == live_server.children(street) and codes <= mine, f"a street commander's wall shows {sorted(codes)}"
    loads, token = rec.loads, mark_document(page)

    outside = live_server.fresh_device(kind=None, outside=street)
    inside = live_server.fresh_device(kind=None, within=street)
    out_lon, out_lat = live_server.grid_point(outside.grid_code)
    out_msg = live_server.publish_alarm(outside.id, lon=out_lon, lat=out_lat)
    # stored (and its event sent) before the inside alarm is even published: the stream is ordered, so once the
    # inside incident is on the wall, the outside one would have been too
    other = live_server.wait_incident(outside.id, out_msg)
    t_pub = time.monotonic()
    in_lon, in_lat = live_server.grid_point(inside.grid_code)
    in_msg = live_server.publish_alarm(inside.id, lon=in_lon, lat=in_lat)
    incident_id = wait_incident_in_wall(page, inside.id, t_pub)
    assert incident_id == live_server.wait_incident(inside.id, in_msg)
    expect(page.locator(f'#gw-incidents li[data-incident-id="{incident_id}"]')).to_be_visible(timeout=LIVE_TIMEOUT_S * 1000)
    assert not page.evaluate("(id) => id in window.gridwatch.incidents", other), "an incident of another street reached the wall"
    assert page.locator(f'#gw-incidents li[data-incident-id="{other}"]').count() == 0
    assert rec.loads == loads and same_document(page, token), "the page reloaded"


def test_the_wall_recovers_from_a_server_restart_and_catches_up(live_server: LiveServer, open_page: Any) -> None:
    """The live feed drops (the server ends its streams, as when it stops) and a proxy answers 502 while it is
    away: the wall says it is reconnecting, keeps trying, and once the server answers again it streams again
    and shows what arrived meanwhile, without a reload."""
    page = open_page()
    rec = open_page.recorder(page)
    rec.allow(r"EventSource|502")  # the refused reconnections, expected here
    login(page, live_server.base_url, "admin", live_server.password)
    wait_ready(page)
    loads, token = rec.loads, mark_document(page)

    refused = live_server.drop_streams(page)
    expect(page.locator("#gw-status")).to_contain_text("reconnecting", timeout=SERVER_TIMEOUT_S * 1000)

    # an alarm while the wall's feed is down
    device = live_server.fresh_device(kind="fence")
    lon, lat = live_server.grid_point(device.grid_code)
    missed = live_server.wait_incident(device.id, live_server.publish_alarm(device.id, lon=lon, lat=lat))
    deadline = time.monotonic() + SERVER_TIMEOUT_S
    while len(refused) < 2 and time.monotonic() < deadline:  # the browser's own retry, then the wall's reopen
        page.wait_for_timeout(100)
    assert len(refused) >= 2, f"the wall stopped trying to reconnect: {refused}"

    live_server.streams_back(page)
    page.wait_for_function("(id) => id in window.gridwatch.incidents", arg=missed, timeout=LIVE_TIMEOUT_S * 1000)
    expect(page.locator(f'#gw-incidents li[data-incident-id="{missed}"]')).to_be_visible(timeout=LIVE_TIMEOUT_S * 1000)
    expect(page.locator("#gw-status")).not_to_contain_text("reconnecting", timeout=LIVE_TIMEOUT_S * 1000)

    # and it is live again: the next alarm arrives as an event
    before_ms = page.evaluate("() => Date.now()")
    wait_for(lambda: live_server.rt.hub._subs or None, SERVER_TIMEOUT_S, "the wall's new stream")
    other = live_server.fresh_device(kind="fence")
    o_lon, o_lat = live_server.grid_point(other.grid_code)
    t_pub = time.monotonic()
    msg = live_server.publish_alarm(other.id, lon=o_lon, lat=o_lat)
    assert wait_incident_in_wall(page, other.id, t_pub) == live_server.wait_incident(other.id, msg)
    assert page.evaluate("() => window.gridwatch.lastEventAt") >= before_ms, "no live event after the reconnection"
    assert rec.loads == loads and same_document(page, token), "the page reloaded to recover"


def test_the_heatmap_shows_the_last_30_days_by_type(live_server: LiveServer, open_page: Any) -> None:
    import re

    device = live_server.fresh_device(kind="fence")
    lon, lat = live_server.grid_point(device.grid_code)
    live_server.wait_incident(device.id, live_server.publish_alarm(device.id, lon=lon, lat=lat))
    page = open_page()
    login(page, live_server.base_url, "admin", live_server.password)
    wait_ready(page)
    api = live_server.api("admin")
    heat_layer = page.locator("canvas.leaflet-heatmap-layer")
    assert heat_layer.count() == 0

    page.check("#gw-heat-toggle")
    expect(page.locator("#gw-status")).to_contain_text("heatmap:", timeout=SERVER_TIMEOUT_S * 1000)
    every = api.get("/api/v1/wall/heatmap", params={"days": 30}).json()
    assert every["count"] >= 1 and every["types"], every
    expect(page.locator("#gw-status")).to_have_text(f"heatmap: {every['count']} incidents in 30 days")
    expect(heat_layer).to_have_count(1)
    offered = page.locator("#gw-heat-type option").evaluate_all("os => os.map(o => [o.value, o.textContent])")
    assert offered == [["", "all types"], *[[t["type"], f"{t['type']} ({t['count']})"] for t in every["types"]]]

    kind = every["types"][0]["type"]
    page.select_option("#gw-heat-type", kind)
    one = api.get("/api/v1/wall/heatmap", params={"days": 30, "type": kind}).json()
    assert one["count"] == every["types"][0]["count"]
    expect(page.locator("#gw-status")).to_have_text(f"heatmap: {one['count']} incidents in 30 days")
    expect(heat_layer).to_have_count(1)
    assert page.input_value("#gw-heat-type") == kind

    page.uncheck("#gw-heat-toggle")
    expect(heat_layer).to_have_count(0)
    assert re.fullmatch(r"heatmap: \d+ incidents in 30 days|", page.locator("#gw-status").text_content() or "")
