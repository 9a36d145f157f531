"""Issue 6 benchmarks: the pages in headless Chromium (Debian `chromium` driven by Playwright for Python).

- `bench_first_render`: `/map` over the sample district (138 L3 grids): navigation start → `window.gridwatch.ready`,
  median of N cold loads (a new browser context per load: empty cache, a fresh session cookie). Baseline in the
  same run, loads interleaved with the wall's: a blank page served by the same server that loads the same
  vendored Leaflet (CSS + JS), makes a map and draws nothing, then sets the same `ready` flag.
- `bench_big`: the same over a store holding `geo.synthetic.build_tessellation(n)` (100,000 L3 grids by default;
  built once and cached as a SQLite file under var/bench/, keyed by its parameters): the district view's first
  render, and drill-downs (`await window.gridwatch.drill(code)`, L1 → its L2 grids and L2 → its L3 grids).
  Drill baseline: the page fetching the same two JSON documents a drill loads (`/api/v1/wall/grids?parent=` and
  `/api/v1/wall/summary?grid=`) for another grid of the same level (each code is asked once: cold server cache).
- `bench_marker`: alarms published over MQTT (QoS 1, one at a time, a new incident each: cooldown, correlation
  and storm folding off) → the incident's key present in `window.gridwatch.incidents` of an admin's wall.
  Method: a script in the page (added before the wall's own) checks `window.gridwatch.incidents` every
  ~4 ms (a `setTimeout` loop) and stamps each new id with `Date.now()` (the same system clock as the publisher's `time.time()`)
  (epoch ms); the publisher takes `time.time()` just before `publish()`. Same machine, same clock; resolution
  ≈ 4 ms. Baseline in the same run: publish → the stored incident's `created_at` (the ingest batch's clock,
  taken just before its commit).

Timing of ready: the same in-page loop stamps `performance.now()` (ms since navigation start) when
`window.gridwatch.ready` is first seen true; the wall's own `gridwatch.timings.firstRender` is reported next to it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

logger = logging.getLogger("bench.pages")

ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = ROOT / "var" / "bench"
PASSWORD = "bench-pages-password"

# Targets of issue 6
T_FIRST_RENDER_S = 2.0
T_DISTRICT_S = 3.0
T_DRILL_S = 1.0
T_MARKER_P95_S = 1.0

WATCH_SCRIPT = """
(() => {
  window.__bench = { readyAt: null, seen: {} };
  const tick = () => {
    const gw = window.gridwatch;
    if (gw) {
      if (gw.ready === true && window.__bench.readyAt === null) window.__bench.readyAt = performance.now();
      const inc = gw.incidents;
      if (inc) for (const id in inc) if (!(id in window.__bench.seen)) window.__bench.seen[id] = Date.now();
    }
    setTimeout(tick, 1);
  };
  tick();
})();
"""

BLANK_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>bench: blank Leaflet</title>
<link rel="stylesheet" href="/static/vendor/leaflet/leaflet.css">
<style>html,body,#map{height:100%;margin:0}</style></head>
<body><div id="map"></div>
<script src="/static/vendor/leaflet/leaflet.js"></script>
<script>
  const map = L.map('map', {zoomControl: true}).setView([27.62, 113.85], 13);
  window.gridwatch = {ready: false, incidents: {}, timings: {}};
  requestAnimationFrame(() => { window.gridwatch.timings.firstRender = performance.now(); window.gridwatch.ready = true; });
</script></body></html>"""


# --- helpers ---------------------------------------------------------------------------------------


def chromium_path() -> str:
    found = shutil.which("chromium") or next((p for p in ("/usr/bin/chromium",) if os.access(p, os.X_OK)), None)
    if found is None:
        raise RuntimeError("Debian chromium is not installed (scripts/test-deps.sh installs it; `make bench` runs it)")
    return found


def launch_args() -> list[str]:
    return ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []


def chromium_version() -> str:
    import subprocess

    try:
        return subprocess.run([chromium_path(), "--version"], capture_output=True, text=True, timeout=20).stdout.strip() or "?"
    except (OSError, RuntimeError, subprocess.TimeoutExpired):
        return "?"


def pct(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) by linear interpolation; None for no values."""
    if not values:
        return None
    xs = sorted(values)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary_ms(values: list[float]) -> dict[str, Any]:
    """Median / p95 / min / max in ms (rounded), and the runs."""
    if not values:
        return {"n": 0, "median_ms": None, "p95_ms": None, "min_ms": None, "max_ms": None, "runs_ms": []}
    return {"n": len(values), "median_ms": round(statistics.median(values), 1), "p95_ms": round(pct(values, 0.95) or 0, 1),
            "min_ms": round(min(values), 1), "max_ms": round(max(values), 1), "runs_ms": [round(v, 1) for v in values]}


class ServerThread:
    """uvicorn serving an app in a background thread on a free 127.0.0.1 port."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        port = self.sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                                                    timeout_graceful_shutdown=3))
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, name="bench-http", daemon=True)

    def start(self) -> ServerThread:
        import httpx

        self.thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not self.thread.is_alive():
                raise RuntimeError("the HTTP server thread died while starting")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the HTTP server did not answer /healthz within 60 s")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()


@contextmanager
def serve(store_url: str, data_dir: Path, mqtt_url: str | None = None, **settings_kw: Any) -> Iterator[tuple[str, Any]]:
    """A gridwatch over `store_url` (already migrated and loaded) with the blank baseline page at /bench/blank;
    ingest from `mqtt_url` when given. Yields (base URL, runtime)."""
    from fastapi.responses import HTMLResponse

    from api.app import create_app
    from api.cli_users import ensure_demo_users
    from api.runtime import Runtime
    from api.settings import Settings
    from store import open_store

    store = open_store(store_url)
    store.migrate()
    ensure_demo_users(store, PASSWORD)
    settings = Settings(_env_file=None, database_url=store_url, demo=True, map_tiles="none", data_dir=str(data_dir),
                        secret_key="bench-pages-" + "k" * 32, mqtt_url=mqtt_url, batch_wait_ms=2,
                        mqtt_client_id=f"gw-bench-pages-{uuid.uuid4().hex[:8]}", **settings_kw)
    rt = Runtime(settings, store)
    server = None
    try:
        if mqtt_url:
            rt.start_ingest()
            if not rt.worker.wait_connected(15):
                raise RuntimeError("the ingest worker did not connect")
            if not rt.start_events().is_subscribed:  # the wall's events come back through the broker, as in `serve`
                raise RuntimeError("the live stream's feed did not subscribe")
        app = create_app(settings, rt)
        app.add_api_route("/bench/blank", lambda: HTMLResponse(BLANK_PAGE), include_in_schema=False)
        server = ServerThread(app).start()
        yield server.base_url, rt
    finally:
        if server is not None:
            server.stop()
        rt.close()


def session_cookie(base_url: str, username: str = "admin") -> dict[str, Any]:
    """The login cookie of `username` (a token from POST /api/v1/token, as the login form would set it)."""
    import httpx

    from api.deps import COOKIE

    resp = httpx.post(f"{base_url}/api/v1/token", data={"username": username, "password": PASSWORD}, timeout=60)
    resp.raise_for_status()
    return {"name": COOKIE, "value": resp.json()["access_token"], "url": base_url, "httpOnly": True, "sameSite": "Strict"}


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=launch_args())
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def wall_page(browser: Any, cookie: dict[str, Any], viewport: tuple[int, int] = (1600, 900)) -> Iterator[Any]:
    """A page in a new (cold) context with the session cookie and the watch script."""
    ctx = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    try:
        ctx.add_cookies([cookie])
        ctx.add_init_script(WATCH_SCRIPT)
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.bench_errors = errors  # type: ignore[attr-defined]
        yield page
    finally:
        ctx.close()


def load_once(browser: Any, cookie: dict[str, Any], url: str, timeout_s: float = 120.0) -> dict[str, Any]:
    """One cold load of `url`: ms from navigation start to `gridwatch.ready`, and the page's own firstRender."""
    with wall_page(browser, cookie) as page:
        page.goto(url, wait_until="commit", timeout=timeout_s * 1000)
        page.wait_for_function("() => window.__bench && window.__bench.readyAt !== null", timeout=timeout_s * 1000, polling=20)
        out = page.evaluate("() => ({ready: window.__bench.readyAt, first: (window.gridwatch.timings || {}).firstRender ?? null,"
                            " shown: window.gridwatch.shownGrids ?? null})")
        out["errors"] = list(page.bench_errors)  # type: ignore[attr-defined]
        return out


def compare_loads(browser: Any, base: str, cookie: dict[str, Any], path: str, runs: int, warmup: int = 1) -> dict[str, Any]:
    """Interleaved cold loads of the blank Leaflet page and of `path`; warm-up loads of both are not counted."""
    blank, wall, first, errors, shown = [], [], [], [], None
    for i in range(warmup + runs):
        b = load_once(browser, cookie, f"{base}/bench/blank")
        w = load_once(browser, cookie, f"{base}{path}")
        errors += w["errors"]
        shown = w["shown"]
        if i >= warmup:
            blank.append(b["ready"])
            wall.append(w["ready"])
            if w["first"] is not None:
                first.append(w["first"])
        logger.info("pages: %s load %d/%d: %.0f ms (blank Leaflet %.0f ms)", path, i + 1, warmup + runs, w["ready"], b["ready"])
    out = {"path": path, "wall": summary_ms(wall), "blank": summary_ms(blank), "wall_first_render": summary_ms(first),
           "shown_grids": shown, "console_errors": errors[:10]}
    med_w, med_b = out["wall"]["median_ms"], out["blank"]["median_ms"]
    out["ratio"] = round(med_w / med_b, 2) if med_w and med_b else None
    return out


# --- (a) first render over the sample district -------------------------------------------------------


def bench_first_render(base_dir: Path, runs: int = 7) -> dict[str, Any]:
    from api.cli import seed_store
    from store import open_store

    url = f"sqlite:///{base_dir / 'pages-sample.db'}"
    store = open_store(url)
    store.migrate()
    seed_store(store)
    store.close()
    with serve(url, base_dir / "pages-data") as (base, rt), chromium() as browser:
        cookie = session_cookie(base)
        out = compare_loads(browser, base, cookie, "/map", runs)
        out["l3_grids"] = sum(1 for g in rt.grid_by_code.values() if g.level == 3)
    return out


# --- (b) 100,000 L3 grids ----------------------------------------------------------------------------


BIG_INCIDENTS = 2_000
"""Open incidents spread over the big district, so that its lights and counters are computed at scale."""
BIG_STORE_FORMAT = 2
"""Bump when what big_store builds changes: the cache key holds it, so an old cached store is not reused."""


def _open_incidents(grids: list[Any], version: int, n: int, seed: int) -> list[Any]:
    """`n` open incidents at the representative points of random level-3 grids, created over the last hour."""
    import random
    from datetime import UTC, datetime, timedelta

    from alerts.model import Incident, IncidentState, RouteRecord

    rng = random.Random(seed)
    by_code = {g.code: g for g in grids}
    l3 = [g for g in grids if g.level == 3]
    now = datetime.now(UTC)
    out = []
    for k in range(n):
        g = rng.choice(l3)
        l2 = by_code[g.parent_code]
        p = g.geometry.representative_point()
        at = now - timedelta(minutes=rng.uniform(0, 60))
        route = RouteRecord(p.x, p.y, "payload", version, l2.parent_code, l2.code, g.code, None, None, "bench", at)
        out.append(Incident(f"INC-BENCH-{k:06d}", rng.choice(("fence.intrusion", "thermal.fire", "smoke.alarm")),
                            IncidentState.REPORTED, 3, "device", route, at, at, stage="register", stage_started_at=at))
    return out


def big_store(n_l3: int, seed: int = 11, vertices: int = 64, cache_dir: Path = CACHE_DIR) -> tuple[str, dict[str, Any]]:
    """The SQLite store of an n_l3 tessellation with BIG_INCIDENTS open incidents, built once and cached under
    var/bench/ (by n, vertices, seed and BIG_STORE_FORMAT)."""
    from geo.model import District
    from geo.synthetic import build_tessellation
    from store import open_store

    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"pages-tessellation-n{n_l3}-v{vertices}-s{seed}-i{BIG_INCIDENTS}-f{BIG_STORE_FORMAT}.db"
    info: dict[str, Any] = {"path": str(path), "cached": path.exists()}
    if path.exists():
        return f"sqlite:///{path}", info
    tmp = path.with_suffix(".building.db")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    t0 = time.perf_counter()
    logger.info("pages: building a %d-grid tessellation (cached afterwards as %s)", n_l3, path.name)
    grids = build_tessellation(n_l3, vertices=vertices, seed=seed)
    info["build_s"] = round(time.perf_counter() - t0, 1)
    logger.info("pages: built %d grids in %.0f s; loading them into SQLite", len(grids), info["build_s"])
    stop = threading.Event()

    def progress() -> None:
        while not stop.wait(15):
            logger.info("pages: … still loading %d grids into SQLite (%.0f s)", len(grids), time.perf_counter() - t0)

    ticker = threading.Thread(target=progress, daemon=True)
    ticker.start()
    try:
        store = open_store(f"sqlite:///{tmp}")
        store.migrate()
        version = store.load_district(District(f"tessellation-{n_l3}", tuple(grids), (), (), ()), f"bench-pages-{n_l3}-{vertices}-{seed}")
        with store.unit_of_work() as uow:
            uow.save_incidents(_open_incidents(list(grids), version.id, BIG_INCIDENTS, seed))
        store.close()
    finally:
        stop.set()
    for suffix in ("-wal", "-shm"):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    tmp.rename(path)
    info["load_s"] = round(time.perf_counter() - t0 - info["build_s"], 1)
    logger.info("pages: store ready in %.0f s", time.perf_counter() - t0)
    return f"sqlite:///{path}", info


def _timed_drill_js() -> str:
    return "async (code) => { const t0 = performance.now(); await window.gridwatch.drill(code); return performance.now() - t0; }"


def _timed_fetch_js() -> str:
    return """async (code) => { const t0 = performance.now();
        const get = (p) => fetch('/api/v1/wall' + p, {credentials: 'same-origin', headers: {Accept: 'application/json'}})
            .then(r => { if (!r.ok) throw new Error(p + ': HTTP ' + r.status); return r.json(); });
        await Promise.all([get('/grids?parent=' + encodeURIComponent(code)), get('/summary?grid=' + encodeURIComponent(code))]);
        return performance.now() - t0; }"""


def bench_big(base_dir: Path, n_l3: int = 100_000, runs: int = 5, drills: int = 10) -> dict[str, Any]:
    from store.ports import IncidentQuery

    url, info = big_store(n_l3)
    out: dict[str, Any] = {"n_l3": n_l3, "store": info}
    with serve(url, base_dir / "pages-big-data") as (base, rt), chromium() as browser:
        grids = rt.grid_by_code
        l1 = sorted(c for c, g in grids.items() if g.level == 1)
        l2_of = {c: sorted(k for k, g in grids.items() if g.level == 2 and g.parent_code == c) for c in l1}
        out["grids"] = {"l1": len(l1), "l2": sum(len(v) for v in l2_of.values()), "l3": sum(1 for g in grids.values() if g.level == 3)}
        if out["grids"]["l3"] != n_l3:
            raise RuntimeError(f"{url}: expected {n_l3:,} level-3 grids, the store holds {out['grids']['l3']:,}")
        out["open_incidents"] = len(rt.store.incidents(IncidentQuery(limit=BIG_INCIDENTS * 2)))
        cookie = session_cookie(base)
        # the very first load after a start builds the server's per-version wall cache: reported on its own
        out["cold_start"] = load_once(browser, cookie, f"{base}/map")["ready"]
        out["district"] = compare_loads(browser, base, cookie, "/map", runs)
        # drills: even L1 codes (and an L2 inside each) are drilled into, odd ones fetched as the baseline
        drill_l1, drill_l2, fetch_l1, fetch_l2, errors = [], [], [], [], []
        pairs = [(l1[i], l1[i + 1]) for i in range(0, len(l1) - 1, 2)][: drills + 1]
        with wall_page(browser, cookie) as page:
            page.goto(f"{base}/map", wait_until="commit", timeout=120_000)
            page.wait_for_function("() => window.__bench && window.__bench.readyAt !== null", timeout=120_000, polling=20)
            for k, (a, b) in enumerate(pairs):
                ms = [page.evaluate(_timed_drill_js(), a), page.evaluate(_timed_fetch_js(), b)]
                a2, b2 = l2_of[a][len(l2_of[a]) // 2], l2_of[b][len(l2_of[b]) // 2]
                ms += [page.evaluate(_timed_drill_js(), a2), page.evaluate(_timed_fetch_js(), b2)]
                if k == 0:
                    continue  # warm-up
                drill_l1.append(ms[0])
                fetch_l1.append(ms[1])
                drill_l2.append(ms[2])
                fetch_l2.append(ms[3])
                logger.info("pages: drill %s %.0f ms (fetch %.0f), %s %.0f ms (fetch %.0f)", a, ms[0], ms[1], a2, ms[2], ms[3])
            errors = list(page.bench_errors)  # type: ignore[attr-defined]
        drill_all = drill_l1 + drill_l2
        out["drill"] = {"l1": summary_ms(drill_l1), "l2": summary_ms(drill_l2), "all": summary_ms(drill_all),
                        "fetch_l1": summary_ms(fetch_l1), "fetch_l2": summary_ms(fetch_l2),
                        "fetch_all": summary_ms(fetch_l1 + fetch_l2), "console_errors": errors[:10]}
        d, f = out["drill"]["all"]["median_ms"], out["drill"]["fetch_all"]["median_ms"]
        out["drill"]["ratio"] = round(d / f, 2) if d and f else None
        out["walls"] = bench_walls(base, rt, [None, *l1, *(c for a in l1 for c in l2_of[a])][:WALLS], runs)
    return out


WALLS = 35
"""Walls of one command center refreshing after an event (the sample district has 1 + 5 + 29 of them)."""


def bench_walls(base: str, rt: Any, walls: list[str | None], runs: int) -> dict[str, Any]:
    """After one incident write, every wall refreshes as wall.js does (`/wall/summary` + `/wall/grids?geometry=false`
    of its grid): with the shared snapshot of open incidents (api.routes.wall) against the same requests scanning
    the store each (the baseline: how the routes worked before), interleaved; one warm-up pair not counted."""
    import dataclasses

    import httpx

    from alerts.model import OPEN_STATES
    from api.routes import wall
    from store.ports import IncidentQuery

    shared = wall._open_incidents

    def per_request(rt_: Any, grid: str | None) -> list[Any]:
        return rt_.store.incidents(IncidentQuery(states=tuple(OPEN_STATES), grid=grid, limit=wall.SCAN_LIMIT))

    def touch() -> None:  # one incident written, as by an event
        inc = rt.store.incidents(IncidentQuery(states=tuple(OPEN_STATES), limit=1))[0]
        with rt.store.unit_of_work() as uow:
            uow.save_incidents([dataclasses.replace(inc, updated_at=rt.now())])

    timings: dict[str, list[float]] = {"shared": [], "per_request": []}
    cookie = session_cookie(base)
    with httpx.Client(base_url=base, cookies={cookie["name"]: cookie["value"]}, timeout=120) as client:
        def refresh() -> float:
            touch()
            t0 = time.perf_counter()
            for g in walls:  # what maps/static/wall.js asks for on a refresh
                for path, params in (("/api/v1/wall/summary", {"grid": g}), ("/api/v1/wall/grids", {"parent": g, "geometry": "false"})):
                    r = client.get(path, params={k: v for k, v in params.items() if v})
                    r.raise_for_status()
            return (time.perf_counter() - t0) * 1000

        try:
            for k in range(runs + 1):
                for name, fn in (("shared", shared), ("per_request", per_request)):
                    wall._open_incidents = fn
                    ms = refresh()
                    if k:
                        timings[name].append(ms)
                    logger.info("pages: %d walls refresh (%s) %.0f ms", len(walls), name, ms)
        finally:
            wall._open_incidents = shared
    s, b = summary_ms(timings["shared"]), summary_ms(timings["per_request"])
    return {"walls": len(walls), "shared": s, "per_request": b,
            "ratio": round(b["median_ms"] / s["median_ms"], 1) if s["median_ms"] and b["median_ms"] else None}


# --- (c) alarm publish → incident on the wall -----------------------------------------------------


def bench_marker(base_dir: Path, mqtt_url: str, alarms: int = 50, warmup: int = 3, pause_s: float = 0.2) -> dict[str, Any]:
    import paho.mqtt.client as mqtt

    from api.cli import seed_store
    from store import open_store
    from store.ports import IncidentQuery

    url = f"sqlite:///{base_dir / 'pages-marker.db'}"
    store = open_store(url)
    store.migrate()
    seed_store(store)
    store.close()
    host, _, port = mqtt_url.removeprefix("mqtt://").rpartition("@")[2].partition(":")
    sent: list[tuple[str, str, float]] = []  # (device, msg id, publish epoch s)
    with serve(url, base_dir / "pages-marker-data", mqtt_url, cooldown_seconds=0, correlation_radius_m=0,
               storm_max_incidents=0) as (base, rt), chromium() as browser:
        devices = sorted(rt.devices.values(), key=lambda d: d.id)
        cookie = session_cookie(base)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pages-pub-{uuid.uuid4().hex[:8]}")
        client.connect(host, int(port or 1883))
        client.loop_start()
        try:
            with wall_page(browser, cookie) as page:
                page.goto(f"{base}/map", wait_until="commit", timeout=120_000)
                page.wait_for_function("() => window.__bench && window.__bench.readyAt !== null", timeout=120_000, polling=20)
                time.sleep(1.0)  # the live stream connects after the first render
                for k in range(warmup + alarms):
                    d = devices[k % len(devices)]
                    kind_type = {"fence": "fence.intrusion", "thermal": "thermal.fire"}.get(d.kind, f"{d.kind}.alarm")
                    msg_id = f"bench-pages-{k}-{uuid.uuid4().hex[:6]}"
                    seen_before = page.evaluate("() => Object.keys(window.__bench.seen).length")
                    t_pub = time.time()
                    payload = json.dumps({"id": msg_id, "ts": _iso(t_pub), "type": kind_type, "severity": 3}).encode()
                    client.publish(f"gridwatch/devices/{d.id}/alarm", payload, qos=1).wait_for_publish(10)
                    page.wait_for_function("(n) => Object.keys(window.__bench.seen).length > n", arg=seen_before,
                                           timeout=30_000, polling=20)
                    if k >= warmup:
                        sent.append((d.id, msg_id, t_pub))
                    time.sleep(pause_s)
                seen = page.evaluate("() => window.__bench.seen")
                errors = list(page.bench_errors)  # type: ignore[attr-defined]
        finally:
            client.loop_stop()
            client.disconnect()
        by_msg: dict[str, Any] = {}
        for inc in rt.store.incidents(IncidentQuery(limit=10_000)):
            for a in rt.store.alarms_of(inc.id):
                by_msg[a.msg_id] = inc
    wall_ms, stored_ms, missing = [], [], 0
    for _dev, msg_id, t_pub in sent:
        inc = by_msg.get(msg_id)
        if inc is None or inc.id not in seen:
            missing += 1
            continue
        wall_ms.append(seen[inc.id] - t_pub * 1000)
        stored_ms.append(inc.created_at.timestamp() * 1000 - t_pub * 1000)
    out = {"alarms": len(sent), "missing": missing, "wall": summary_ms(wall_ms), "stored": summary_ms(stored_ms),
           "pause_s": pause_s, "console_errors": errors[:10]}
    w, s = out["wall"]["p95_ms"], out["stored"]["p95_ms"]
    out["ratio_p95"] = round(w / s, 2) if w and s else None
    return out


def _iso(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).isoformat()


# --- all of it ---------------------------------------------------------------------------------------


def run(base_dir: Path, mqtt_url: str | None, *, n_l3: int = 100_000, runs: int = 7, alarms: int = 50) -> dict[str, Any]:
    """(a), (b) and (c) (without a broker: (a) and (b) only); each part's failure is recorded, not raised."""
    out: dict[str, Any] = {"chromium": chromium_version()}
    parts: list[tuple[str, Any]] = [("first_render", lambda: bench_first_render(base_dir, runs)),
                                    ("big", lambda: bench_big(base_dir, n_l3, runs=max(3, runs // 2 + 1)))]
    if mqtt_url:
        parts.append(("marker", lambda: bench_marker(base_dir, mqtt_url, alarms)))
    for name, fn in parts:
        logger.info("pages: %s", name)
        try:
            out[name] = fn()
        except Exception as exc:  # noqa: BLE001 - one broken page must not lose the other figures
            logger.exception("pages: %s failed", name)
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def target_rows(p: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(benchmark, figure, baseline, target, met) rows for bench/run.py's summary table."""

    def met(ok: bool | None) -> str:
        return "–" if ok is None else ("**met**" if ok else "**not met**")

    def ms(v: Any) -> str:
        return "–" if v is None else f"{v:,.0f} ms"

    def within(v_ms: float | None, target_s: float) -> bool | None:
        return None if v_ms is None else v_ms <= target_s * 1000  # no data: neither met nor not met

    rows: list[tuple[str, str, str, str, str]] = []
    a = p.get("first_render") or {}
    if "error" in a:
        rows.append(("pages: /map first render, sample district", f"failed: {a['error']}", "–", f"≤ {T_FIRST_RENDER_S:g} s", met(False)))
    elif a:
        w, b = a["wall"], a["blank"]
        rows.append((f"pages: /map first render, sample district ({a.get('l3_grids', '?')} L3 grids), headless Chromium",
                     f"median {ms(w['median_ms'])}, p95 {ms(w['p95_ms'])} ({a['ratio']}× the blank page)",
                     f"blank page with the vendored Leaflet: median {ms(b['median_ms'])}",
                     f"p95 ≤ {T_FIRST_RENDER_S:g} s", met(within(w["p95_ms"], T_FIRST_RENDER_S))))
    big = p.get("big") or {}
    if "error" in big:
        rows.append(("pages: big district (L3 grids of --pages-grids)", f"failed: {big['error']}", "–",
                     f"≤ {T_DISTRICT_S:g} s / ≤ {T_DRILL_S:g} s", met(False)))
    elif big:
        d, dr = big["district"], big["drill"]
        rows.append((f"pages: district view, {big['n_l3']:,} L3 grids, {big.get('open_incidents', 0):,} open incidents: first render",
                     f"median {ms(d['wall']['median_ms'])}, p95 {ms(d['wall']['p95_ms'])} ({d['ratio']}× the blank page);"
                     f" first load after a start {ms(big.get('cold_start'))}",
                     f"blank page with the vendored Leaflet: median {ms(d['blank']['median_ms'])}",
                     f"p95 ≤ {T_DISTRICT_S:g} s", met(within(d["wall"]["p95_ms"], T_DISTRICT_S))))
        rows.append((f"pages: drill-down, {big['n_l3']:,} L3 grids (L1 → L2s and L2 → L3s)",
                     f"median {ms(dr['all']['median_ms'])}, p95 {ms(dr['all']['p95_ms'])} ({dr['ratio']}× the fetch)",
                     f"fetching the same two JSON documents for another grid: median {ms(dr['fetch_all']['median_ms'])}",
                     f"p95 ≤ {T_DRILL_S:g} s", met(within(dr["all"]["p95_ms"], T_DRILL_S))))
    w = big.get("walls") if big and "error" not in big else None
    if w:
        rows.append((f"pages: {w['walls']} walls refresh after one incident write (summary + grid colours each), {big['n_l3']:,} L3 grids,"
                     f" {big.get('open_incidents', 0):,} open incidents",
                     f"median {ms(w['shared']['median_ms'])} ({w['ratio']}× faster)",
                     f"each request scanning the store (before the shared snapshot): median {ms(w['per_request']['median_ms'])}",
                     "none set (reported)", "–"))
    c = p.get("marker") or {}
    if "error" in c:
        rows.append(("pages: alarm publish → incident on the wall", f"failed: {c['error']}", "–",
                     f"p95 ≤ {T_MARKER_P95_S:g} s", met(False)))
    elif c:
        rows.append((f"pages: alarm publish (MQTT) → incident on the wall, {c['alarms']} alarms",
                     f"p50 {ms(c['wall']['median_ms'])}, p95 {ms(c['wall']['p95_ms'])} ({c['ratio_p95']}× at p95; {c['missing']} missing)",
                     f"publish → stored incident: p50 {ms(c['stored']['median_ms'])}, p95 {ms(c['stored']['p95_ms'])}",
                     f"p95 ≤ {T_MARKER_P95_S:g} s",
                     met(False if c["missing"] else within(c["wall"]["p95_ms"], T_MARKER_P95_S))))
    return rows


def render_section(p: dict[str, Any]) -> list[str]:
    """The Markdown details section of bench/RESULTS.md."""
    lines = ["### (f) pages in headless Chromium", "", f"Browser: {p.get('chromium', '?')}, driven by Playwright for Python;"
             " a new browser context (empty cache) per load, logged in by the session cookie; map tiles off (`map_tiles=none`).", ""]

    def row(label: str, s: dict[str, Any]) -> str:
        return (f"| {label} | {s['n']} | {s['median_ms']} | {s['p95_ms']} | {s['min_ms']} | {s['max_ms']} |")

    lines += ["| measurement | n | median ms | p95 ms | min ms | max ms |", "|---|---|---|---|---|---|"]
    a = p.get("first_render") or {}
    if a and "error" not in a:
        lines += [row(f"sample district: /map navigation start → gridwatch.ready ({a.get('shown_grids')} grids drawn)", a["wall"]),
                  row("sample district: the wall's own timings.firstRender", a["wall_first_render"]),
                  row("sample district: blank Leaflet page (baseline)", a["blank"])]
    big = p.get("big") or {}
    if big and "error" not in big:
        d, dr = big["district"], big["drill"]
        lines += [row(f"{big['n_l3']:,} L3: /map district view → gridwatch.ready", d["wall"]),
                  row(f"{big['n_l3']:,} L3: the wall's own timings.firstRender", d["wall_first_render"]),
                  row(f"{big['n_l3']:,} L3: blank Leaflet page (baseline)", d["blank"]),
                  row("drill L1 → its L2 grids (`await gridwatch.drill(code)`)", dr["l1"]),
                  row("drill L2 → its L3 grids", dr["l2"]),
                  row("baseline: fetch /wall/grids + /wall/summary of another L1", dr["fetch_l1"]),
                  row("baseline: fetch /wall/grids + /wall/summary of another L2", dr["fetch_l2"])]
        if big.get("walls"):
            w = big["walls"]
            lines += [row(f"{w['walls']} walls refresh after one incident write (shared snapshot)", w["shared"]),
                      row(f"{w['walls']} walls refresh, each request scanning the store (baseline)", w["per_request"])]
    c = p.get("marker") or {}
    if c and "error" not in c:
        lines += [row("alarm publish → id in gridwatch.incidents", c["wall"]),
                  row("alarm publish → stored incident created_at (baseline)", c["stored"])]
    lines.append("")
    for name, part in (("first render", a), ("100k grids", big), ("alarm → wall", c)):
        if part and "error" in part:
            lines.append(f"- {name}: **failed**: {part['error']}")
        elif part and part.get("console_errors"):
            lines.append(f"- {name}: console errors on the page: {part['console_errors']}")
    if big and "error" not in big:
        st = big["store"]
        g = big["grids"]
        lines.append(f"- big store: {g['l1']:,} L1 / {g['l2']:,} L2 / {g['l3']:,} L3 grids (`build_tessellation`), SQLite file {st['path']}"
                     + (" (cached from an earlier run)" if st.get("cached")
                        else f" (built in {st.get('build_s')} s, loaded in {st.get('load_s')} s)")
                     + f", {big.get('open_incidents', 0):,} open incidents (lights and counters computed per request);"
                     f" the first load after the server started (it builds the per-version wall cache) took {big.get('cold_start', 0):,.0f} ms")
    lines += ["",
              "Ready time: a script added before the page's own (`add_init_script`) checks `window.gridwatch.ready` every ~4 ms"
              " (`setTimeout` loop) and stamps `performance.now()` (ms since navigation start) when it first sees it true; the"
              " blank page sets the same flag one animation frame after creating its map. The wall sets `ready` once the level's"
              " grids, side panel, buildings and devices are drawn and one animation frame has passed; `drill(code)` resolves at"
              " the same point for the new level. Loads of the wall and of the blank page"
              " are interleaved, one warm-up pair not counted. Every target is judged on p95.",
              "",
              "Alarm → wall: alarms are published one at a time (QoS 1, the next after the previous one showed up and a"
              f" {c.get('pause_s', 0.2)} s pause; cooldown, correlation and storm folding off, so each opens an incident); the same"
              " in-page loop stamps each new key of `window.gridwatch.incidents` with `Date.now()` (the publisher's clock)"
              " (epoch ms), the publisher takes `time.time()` just before `publish()` (same machine and clock, ~4 ms resolution)."
              " Baseline: publish → the incident's `created_at` in the store (the ingest batch's clock, just before its commit).",
              ""]
    return lines


if __name__ == "__main__":  # python -m bench.pages [--grids N] [--runs N] [--alarms N]: the pages alone, JSON to stdout
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(prog="python -m bench.pages")
    ap.add_argument("--grids", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--alarms", type=int, default=50)
    ap.add_argument("--only", choices=("first_render", "big", "marker"), default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    from ingest.broker import MosquittoBroker

    with tempfile.TemporaryDirectory(prefix="gridwatch-pages-") as d:
        base = Path(d)
        (base / "mosquitto").mkdir()
        broker = MosquittoBroker(data_dir=base / "mosquitto")
        broker.start()
        try:
            if args.only == "first_render":
                result: dict[str, Any] = {"first_render": bench_first_render(base, args.runs)}
            elif args.only == "big":
                result = {"big": bench_big(base, args.grids, runs=args.runs)}
            elif args.only == "marker":
                result = {"marker": bench_marker(base, broker.url, args.alarms)}
            else:
                result = run(base, broker.url, n_l3=args.grids, runs=args.runs, alarms=args.alarms)
        finally:
            broker.stop()
    print(json.dumps(result, indent=2, default=str))
    print("\n".join(f"| {' | '.join(r)} |" for r in target_rows(result)))
