"""Fixtures of the browser tests: a live gridwatch server and a real headless Chromium.

- `live_server` (session): uvicorn serving `create_app(settings, runtime)` in a background thread on a
  free 127.0.0.1 port, over a Runtime on a fresh SQLite store seeded with the sample district (138 L3
  grids) plus the demo users (password `PASSWORD`), ingesting from a Mosquitto of its own (`browser_mosquitto`).
  Demo-mode settings; map tiles off (`map_tiles="none"`, when the setting exists) so that no page asks the
  internet for anything. Helpers: `api(user)` (an httpx client with that user's bearer token),
  `publish_alarm`, `fresh_device` (a device no earlier test used: no cooldown join), `wait_incident`,
  `put_on_duty`.
- `browser` (session): Debian's Chromium (`shutil.which("chromium")`) launched once through Playwright
  (Playwright's own browsers are never downloaded); `--no-sandbox` when running as root.
- `open_page` (per test): `open_page(**context_options)` opens a page in a new browser context (e.g.
  `viewport=`, `geolocation=`, `permissions=`). Every page records console errors, uncaught page
  errors, failed requests and any request leaving 127.0.0.1 (blocked); at teardown each page is
  screenshotted to `test-artifacts/browser/<test name>[-n].png` and the test errors out listing every
  problem. `open_page.recorder(page)` gives the page's `Recorder` (e.g. `allow(r"regex")` for an expected
  console error, `loads` = full document loads so far).
- `page` (per test): `open_page()` at 1280×800.
- `login(page, base_url, username, password, next=None)`: logs in through the `/login` form.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import httpx
import pytest

from geo.model import Device, Grid

PASSWORD = "browser-test-password"
"""Password of the demo users (admin, district, street, patroller, planner) of the live server."""
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
BROWSER_DIR = Path(__file__).resolve().parent
LIVE_TIMEOUT_S = 30.0
"""Generous polling timeout for a published alarm to show on a page without reload. Tests do not judge speed:
how fast it arrives (the issue's 5 s; the wall's publish → marker p95 ≤ 1 s) is measured by bench/pages.py."""
SERVER_TIMEOUT_S = 15.0
"""Generous polling timeout for server-side outcomes (stored incidents, state changes)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/browser carries the `browser` marker (`-m "not browser"` skips them)."""
    for item in items:
        if BROWSER_DIR in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.browser)


# --- helpers ---------------------------------------------------------------------------------------


def wait_for(predicate: Callable[[], Any], timeout: float = SERVER_TIMEOUT_S, what: str = "condition", every: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy and return it (a generous timeout: not a speed assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def chromium_executable() -> str | None:
    """Debian's Chromium, if installed."""
    found = shutil.which("chromium")
    if found:
        return found
    for candidate in ("/usr/bin/chromium", "/usr/lib/chromium/chromium"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def launch_args() -> list[str]:
    """Chromium refuses to run as root with its sandbox on."""
    return ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []


def login(page: Any, base_url: str, username: str, password: str, next: str | None = None) -> str:  # noqa: A002
    """Log in through the `/login` form (real typing and clicking); return the URL landed on.

    Raises AssertionError with the form's error text when the login is refused."""
    page.goto(f"{base_url}/login" + (f"?next={quote(next, safe='')}" if next else ""))
    page.fill("#username", username)
    page.fill("#password", password)
    with page.expect_navigation(wait_until="load"):
        page.click("#submit")
    if urlparse(page.url).path == "/login":
        err = page.locator("#error")
        raise AssertionError(f"login of {username!r} refused: {err.inner_text() if err.count() else page.content()[:300]}")
    return page.url


def alarm_type(device: Device) -> str:
    """An alarm type of the device's kind (fence.intrusion, thermal.fire, smoke.alarm, camera.alarm)."""
    return {"fence": "fence.intrusion", "thermal": "thermal.fire"}.get(device.kind, f"{device.kind}.alarm")


def png_bytes(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A small valid PNG (no Pillow needed)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def free_socket() -> socket.socket:
    """A listening-ready socket bound to a free 127.0.0.1 port (handed to uvicorn: no port race)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class ServerThread:
    """uvicorn running an ASGI app in a background thread (`Server.run`), stopped cleanly by `stop()`."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1") -> None:
        import uvicorn

        self.sock = free_socket()
        self.port = self.sock.getsockname()[1]
        self.base_url = f"http://{host}:{self.port}"
        config = uvicorn.Config(app, host=host, port=self.port, log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=3)
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the main thread
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, name="live-server", daemon=True)

    def start(self, timeout: float = 30.0) -> ServerThread:
        self.thread.start()

        def healthy() -> bool:
            if not self.thread.is_alive():
                raise RuntimeError("the live server thread died while starting")
            try:
                return httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout, "the live server's /healthz", every=0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()


# --- the live server -------------------------------------------------------------------------------


@dataclass
class LiveServer:
    """A running gridwatch (API + pages + MQTT ingest) for the browser tests."""

    base_url: str
    rt: Any
    broker: Any
    data_dir: Path
    password: str = PASSWORD
    _used_devices: set[str] = field(default_factory=set)
    _clients: dict[str, httpx.Client] = field(default_factory=dict)
    _publisher: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    # API
    def api(self, username: str = "admin") -> httpx.Client:
        """An httpx client logged in as `username` (a bearer token from POST /api/v1/token; cached)."""
        if username not in self._clients:
            resp = httpx.post(self.url("/api/v1/token"), data={"username": username, "password": self.password}, timeout=30)
            assert resp.status_code == 200, f"token of {username!r}: {resp.status_code} {resp.text}"
            token = resp.json()["access_token"]
            self._clients[username] = httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        return self._clients[username]

    def incident(self, incident_id: str, username: str = "admin") -> dict[str, Any]:
        resp = self.api(username).get(f"/api/v1/incidents/{incident_id}")
        assert resp.status_code == 200, resp.text
        return resp.json()

    # grids and devices
    @property
    def grids(self) -> dict[str, Grid]:
        return self.rt.grid_by_code

    def children(self, parent: str) -> set[str]:
        """Codes of the grids right below `parent`."""
        return {g.code for g in self.grids.values() if g.parent_code == parent}

    def subtree(self, root: str) -> set[str]:
        """Codes of `root` and every grid below it."""
        children: dict[str | None, list[str]] = {}
        for g in self.grids.values():
            children.setdefault(g.parent_code, []).append(g.code)
        out, frontier = {root}, [root]
        while frontier:
            frontier = [k for c in frontier for k in children.get(c, ())]
            out.update(frontier)
        return out

    def grid_point(self, code: str) -> tuple[float, float]:
        """A point inside grid `code` (lon, lat)."""
        p = self.grids[code].geometry.representative_point()
        return p.x, p.y

    def fresh_device(self, *, kind: str | None = "fence", within: str | None = None, outside: str | None = None) -> Device:
        """A device no earlier test used (so its alarm opens a new incident instead of joining one by cooldown),
        whose grid lies in the subtree of `within` / not in that of `outside`, in a level-3 grid no other test used."""
        inside = self.subtree(within) if within else None
        exclude = self.subtree(outside) if outside else set()
        with self._lock:
            used_grids = {self.rt.devices[d].grid_code for d in self._used_devices if d in self.rt.devices}
            candidates = sorted(self.rt.devices.values(), key=lambda d: d.id)
            for strict in (True, False):
                for d in candidates:
                    if d.id in self._used_devices or (kind and d.kind != kind) or d.grid_code not in self.grids:
                        continue
                    if (inside is not None and d.grid_code not in inside) or d.grid_code in exclude:
                        continue
                    if strict and d.grid_code in used_grids:
                        continue
                    self._used_devices.add(d.id)
                    return d
        raise LookupError(f"no unused {kind or ''} device within {within!r} outside {outside!r}")

    # MQTT
    def publish(self, topic: str, payload: bytes, timeout: float = 10.0) -> None:
        """Publish one QoS 1 message on the test broker and wait for its PUBACK."""
        import paho.mqtt.client as mqtt

        with self._lock:
            if self._publisher is None:
                client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"browser-pub-{uuid.uuid4().hex[:8]}")
                client.connect(self.broker.host, self.broker.port)
                client.loop_start()
                self._publisher = client
            info = self._publisher.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout)
        assert info.is_published(), f"no PUBACK for {topic} within {timeout:g} s"

    def publish_alarm(self, device_id: str, *, type_: str | None = None, lon: float | None = None,
                      lat: float | None = None, severity: int = 3) -> str:
        """Publish an alarm v1 of `device_id` (design §4) stamped now, of a type matching the device's kind
        unless `type_` is given; return its message id."""
        msg_id = f"browser-{uuid.uuid4().hex[:12]}"
        type_ = type_ or alarm_type(self.rt.devices[device_id])
        body: dict[str, Any] = {"id": msg_id, "ts": datetime.now(UTC).isoformat(), "type": type_, "severity": severity}
        if lon is not None:
            body["lon"], body["lat"] = lon, lat
        self.publish(f"gridwatch/devices/{device_id}/alarm", json.dumps(body).encode())
        return msg_id

    def incident_of_alarm(self, device_id: str, msg_id: str) -> str | None:
        """The id of the incident that alarm `msg_id` of `device_id` opened or joined (None: not stored yet)."""
        from store.ports import IncidentQuery

        for inc in self.rt.store.incidents(IncidentQuery(limit=5000)):
            if inc.device_id == device_id and any(a.msg_id == msg_id for a in self.rt.store.alarms_of(inc.id)):
                return inc.id
        return None

    def wait_incident(self, device_id: str, msg_id: str, timeout: float = SERVER_TIMEOUT_S) -> str:
        return wait_for(lambda: self.incident_of_alarm(device_id, msg_id), timeout, f"the incident of alarm {msg_id} of {device_id}")

    # a server restart, as a page sees it
    STREAM_URL = re.compile(r"/api/v1/stream(\?|$)")

    def drop_streams(self, page: Any) -> list[str]:
        """End the live streams (as a stopping server does: EventHub.close) and answer the page's reconnections
        with 502 (a proxy while the server is away) until `streams_back(page)`; returns the refused URLs as they
        come. The runtime gets a fresh hub, as a restarted server would have."""
        from api.stream import EventHub

        wait_for(lambda: self.rt.hub._subs or None, SERVER_TIMEOUT_S, "the page's live stream")
        refused: list[str] = []

        def bad_gateway(route: Any) -> None:
            refused.append(route.request.url)
            route.fulfill(status=502, content_type="text/plain", body="gridwatch is restarting")

        page.route(self.STREAM_URL, bad_gateway)
        old_hub, self.rt.hub = self.rt.hub, EventHub()
        assert old_hub.close() >= 1, "the page had no open stream"
        return refused

    def streams_back(self, page: Any) -> None:
        """The server answers again (see drop_streams)."""
        page.unroute(self.STREAM_URL)

    def put_on_duty(self, patroller_id: str) -> None:
        """Make `patroller_id` the one patroller on duty in its grids, around the clock (PUT …/roster as admin):
        the test runs on the real clock, so the seeded rosters may have nobody on duty right now."""
        api = self.api("admin")
        me = next(p for p in self.rt.patrollers if p.id == patroller_id)
        always = {"shifts": [{"weekdays": list(range(7)), "start": "00:00", "end": "00:00"}],
                  "backup_grid_codes": list(me.backup_grid_codes)}
        resp = api.put(f"/api/v1/patrollers/{patroller_id}/roster", json=always)
        assert resp.status_code == 200 and resp.json()["on_duty"], resp.text
        for other in self.rt.patrollers:
            if other.id != patroller_id and set(other.grid_codes) & set(me.grid_codes):
                off = {"shifts": [], "backup_grid_codes": list(other.backup_grid_codes)}
                resp = api.put(f"/api/v1/patrollers/{other.id}/roster", json=off)
                assert resp.status_code == 200, resp.text

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        if self._publisher is not None:
            self._publisher.loop_stop()
            self._publisher.disconnect()


def live_settings(database_url: str, mqtt_url: str, data_dir: Path, **extra: Any) -> Any:
    """Demo-mode settings of a live server; map tiles off when the setting exists (no internet requests)."""
    from api.settings import Settings

    kw: dict[str, Any] = {"_env_file": None, "database_url": database_url, "mqtt_url": mqtt_url, "demo": True,
                          "mqtt_client_id": f"gw-browser-{uuid.uuid4().hex[:8]}", "secret_key": "browser-tests-" + "s" * 32,
                          "batch_wait_ms": 2, "data_dir": str(data_dir), **extra}
    if "map_tiles" in Settings.model_fields:
        kw["map_tiles"] = "none"
    return Settings(**kw)


@pytest.fixture(scope="package")
def browser_mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Mosquitto of the browser tests' own: the live server's ingest worker lives through all of them and
    must not take (or answer) the alarms that other tests publish on the shared `mosquitto`."""
    from tests.fixtures.mosquitto import running_broker

    with running_broker(tmp_path_factory, "browser-mosquitto") as broker:
        yield broker


@pytest.fixture(scope="package")
def live_server(tmp_path_factory: pytest.TempPathFactory, browser_mosquitto: Any) -> Iterator[LiveServer]:
    from api.app import create_app
    from api.cli import seed_store
    from api.cli_users import ensure_demo_users
    from api.runtime import Runtime
    from store import open_store

    base = tmp_path_factory.mktemp("live-server")
    url = f"sqlite:///{base / 'gridwatch.db'}"
    store = open_store(url)
    store.migrate()
    seed_store(store)
    ensure_demo_users(store, PASSWORD)
    settings = live_settings(url, browser_mosquitto.url, base / "data")
    rt = Runtime(settings, store)
    rt.start_ingest()
    try:
        assert rt.worker.wait_connected(10), "the ingest worker did not connect to Mosquitto"
        assert rt.start_events().is_subscribed, "the live stream's feed did not subscribe"  # as `serve` runs
        server = ServerThread(create_app(settings, rt)).start()
        live = LiveServer(server.base_url, rt, browser_mosquitto, base / "data")
        try:
            yield live
        finally:
            live.close()
            server.stop()
    finally:
        rt.close()


# --- the browser -----------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def chromium_path() -> str:
    path = chromium_executable()
    if path is None:
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            pytest.fail("chromium is not installed although we run as root: run `bash scripts/test-deps.sh` (`make test` does)")
        pytest.skip("Debian chromium is not installed and we are not root to install it (sudo apt-get install chromium)")
    return path


@pytest.fixture(scope="package")
def browser(chromium_path: str) -> Iterator[Any]:
    """Debian's Chromium, headless, launched once per session through Playwright."""
    # package scope: Playwright's sync API keeps an event loop running in this thread while it lives, which would
    # break `asyncio.run` in the tests that come after the browser tests
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path, headless=True, args=launch_args())
        try:
            yield b
        finally:
            b.close()


@dataclass
class Recorder:
    """What went wrong on one page: console errors, page errors, failed and external requests."""

    base_url: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    loads: int = 0
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        """Expect console errors matching `pattern` (e.g. the 401 of a refused login) from now on."""
        self.allowed.append(re.compile(pattern))

    def attach(self, page: Any) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.page_errors.append(f"{getattr(exc, 'name', 'Error')}: {getattr(exc, 'message', exc)}"
                                                                 f"\n{getattr(exc, 'stack', '') or ''}".rstrip()))
        page.on("requestfailed", self._failed)
        page.on("load", lambda _p: setattr(self, "loads", self.loads + 1))

    def _console(self, msg: Any) -> None:
        if msg.type == "error":
            loc = msg.location or {}
            where = f" ({loc.get('url', '')}:{loc.get('lineNumber', '')})" if loc.get("url") else ""
            self.console_errors.append(f"{msg.text}{where}")

    def _failed(self, request: Any) -> None:
        failure = request.failure or ""
        line = f"{request.method} {request.url}: {failure}"
        # aborted by the page itself (navigating away, closing an EventSource, AbortController): not a failure
        if "ERR_ABORTED" in failure:
            self.aborted.append(line)
        elif "ERR_BLOCKED_BY_CLIENT" in failure and request.url in self.external_requests:
            pass  # reported as an external request
        else:
            self.failed_requests.append(line)

    def problems(self) -> list[str]:
        out = [f"console error: {t}" for t in self.console_errors if not any(p.search(t) for p in self.allowed)]
        out += [f"page error: {t}" for t in self.page_errors]
        out += [f"failed request: {t}" for t in self.failed_requests]
        out += [f"request to the internet (blocked; pages must work offline): {t}" for t in self.external_requests]
        return out


class PageOpener:
    """`open_page(**context_options)` → a recorded page in its own browser context."""

    def __init__(self, browser: Any, base_url: str, name: str) -> None:
        self.browser = browser
        self.base_url = base_url
        self.name = name
        self.opened: list[tuple[Any, Any, Recorder]] = []

    def __call__(self, **context_options: Any) -> Any:
        context_options.setdefault("viewport", {"width": 1280, "height": 800})
        ctx = self.browser.new_context(**context_options)
        ctx.set_default_timeout(15_000)
        rec = Recorder(self.base_url)
        host = re.escape(self.base_url)

        def block(route: Any) -> None:
            rec.external_requests.append(route.request.url)
            route.abort("blockedbyclient")

        # anything not served by the live server (tiles, CDNs, fonts) is blocked and reported
        ctx.route(re.compile(rf"^(?!{host}/|data:|blob:|about:)"), block)
        page = ctx.new_page()
        rec.attach(page)
        self.opened.append((ctx, page, rec))
        return page

    def recorder(self, page: Any) -> Recorder:
        return next(r for _, p, r in self.opened if p is page)

    def finish(self) -> list[str]:
        """Screenshot every page, close the contexts; return the problems seen (with the page's label)."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        problems: list[str] = []
        for n, (ctx, page, rec) in enumerate(self.opened):
            label = self.name + (f"-{n + 1}" if len(self.opened) > 1 else "")
            try:
                if not page.is_closed():
                    page.screenshot(path=str(ARTIFACTS / f"{label}.png"), full_page=False, timeout=10_000)
            except Exception as exc:  # noqa: BLE001 - a failed screenshot must not hide the test's own outcome
                problems.append(f"[{label}] screenshot failed: {exc}")
            problems += [f"[{label}] {p}" for p in rec.problems()]
            try:
                ctx.close()
            except Exception:  # noqa: BLE001
                pass
        return problems


def artifact_name(request: pytest.FixtureRequest) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name).strip("_")[:150]


@pytest.fixture
def open_page(browser: Any, live_server: LiveServer, request: pytest.FixtureRequest) -> Iterator[PageOpener]:
    opener = PageOpener(browser, live_server.base_url, artifact_name(request))
    yield opener
    problems = opener.finish()
    assert not problems, f"{len(problems)} browser problem(s):\n" + "\n".join(problems)


@pytest.fixture
def page(open_page: PageOpener) -> Any:
    return open_page()
