"""`gridwatch demo` as a new user runs it: seeded district served, simulated incidents appear, the printed
mosquitto_pub command raises an incident in the grid containing its point, bad input is dead-lettered,
and Ctrl-C shuts it down cleanly."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from shapely.geometry import Point, shape

from api.cli import DEMO_PASSWORD

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(fn, timeout: float, what: str):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = fn()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def client_for_demo(base: str, username: str) -> httpx.Client:
    """An HTTP client logged in as one of the demo's users (POST /api/v1/token with the printed password)."""
    token = httpx.post(f"{base}/api/v1/token", data={"username": username, "password": DEMO_PASSWORD}, timeout=30)
    assert token.status_code == 200, token.text
    return httpx.Client(headers={"Authorization": f"Bearer {token.json()['access_token']}"}, timeout=30)


def gridwatch(env: dict[str, str], cwd: Path, *args: str) -> str:
    """Run one `gridwatch` CLI command to completion; return its output."""
    done = subprocess.run([sys.executable, "-m", "api.cli", *args], cwd=cwd, env={**env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def planner_redraws_while_the_demo_runs(client: httpx.Client, base: str, env: dict[str, str], tmp_path: Path) -> None:
    """Two grids merged and one split: the running demo routes a point of the new grid there within seconds."""
    old_version = client.get(f"{base}/healthz").json()["grid_version"]
    out = gridwatch(env, tmp_path, "grids", "sample-redraw", str(tmp_path / "redraw.geojson"))
    new_code = out.split("(new grid ")[1].split(")")[0]
    out = gridwatch(env, tmp_path, "grids", "import", str(tmp_path / "redraw.geojson"), "--label", "redraw-1")
    assert "0 error(s), 0 warning(s): OK to publish" in out
    version = int(out.split("draft grid version ")[1].split()[0])
    out = gridwatch(env, tmp_path, "grids", "diff", str(version))
    assert "1 added, 1 removed, 2 reshaped" in out and "workload what-if" in out
    grid = client.get(f"{base}/api/v1/grids", params={"version": version, "level": 3}).json()["features"]
    point = shape(next(f for f in grid if f["properties"]["code"] == new_code)["geometry"]).representative_point()
    query = {"lon": point.x, "lat": point.y}
    assert client.get(f"{base}/api/v1/locate", params=query).json()["grids"][2]["code"] != new_code
    gridwatch(env, tmp_path, "grids", "publish", str(version), "--policy", "move")
    published = time.monotonic()
    poll(lambda: client.get(f"{base}/api/v1/locate", params=query).json()["grids"][2]["code"] == new_code, 30, "the new grid")
    swap_seconds = time.monotonic() - published
    print(f"hot swap seen by the running demo after {swap_seconds:.2f} s")  # measured in bench/, not asserted here
    assert client.get(f"{base}/healthz").json()["grid_version"] == version
    before = client.get(f"{base}/api/v1/grid-versions/{version}").json()["valid_from"]
    at = datetime.fromisoformat(before) - timedelta(seconds=1)
    then = client.get(f"{base}/api/v1/locate", params={**query, "at": at.isoformat()}).json()
    assert then["grid_version"] == old_version and then["grids"][2]["code"] != new_code
    page = client.get(f"{base}/plan/{version}")
    assert page.status_code == 200 and new_code in page.text


@pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="mosquitto-clients not installed")
def test_demo_runs_the_whole_loop(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "GRIDWATCH_DATABASE_URL": f"sqlite:///{tmp_path}/demo.db",
        "GRIDWATCH_API_PORT": str(port),
        "PYTHONUNBUFFERED": "1",
    }
    out = open(tmp_path / "demo.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "demo", "--duration", "240", "--rate", "8"],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, stdout=out, stderr=subprocess.STDOUT, text=True,
    )
    try:
        log = poll(lambda: (t := (tmp_path / "demo.log").read_text()) and "Ctrl-C to stop" in t and t, 90, "the demo banner")
        assert f"http://127.0.0.1:{port}/map" in log
        command = next(line.strip() for line in log.splitlines() if line.strip().startswith("mosquitto_pub "))
        base = f"http://127.0.0.1:{port}"
        # every route needs a login: the demo printed its users and password
        assert "admin" in log and DEMO_PASSWORD in log
        assert client_for_demo(base, "street").get(f"{base}/api/v1/me").json()["role"] == "commander"
        client = client_for_demo(base, "admin")
        assert httpx.get(f"{base}/api/v1/incidents").status_code == 401

        grids = client.get(f"{base}/api/v1/grids?level=3").json()["features"]
        assert len(grids) == 138
        items = poll(lambda: client.get(f"{base}/api/v1/incidents").json()["items"], 20, "simulated incidents")
        assert items[0]["state"] == "dispatched"
        assert client.get(f"{base}/map").status_code == 200
        assert items[0]["id"] in client.get(f"{base}/api/v1/wall/summary").text

        args = shlex.split(command)
        body = json.loads(args[args.index("-m") + 1])
        subprocess.run(args, check=True, timeout=30)
        point = Point(body["lon"], body["lat"])
        expected = next(f["properties"]["code"] for f in grids if shape(f["geometry"]).contains(point))

        def manual() -> dict | None:
            for inc in client.get(f"{base}/api/v1/incidents?limit=5000").json()["items"]:
                detail = client.get(f"{base}/api/v1/incidents/{inc['id']}").json()
                if inc["device_id"] == args[args.index("-t") + 1].split("/")[2] and any(a["msg_id"] == body["id"] for a in detail["alarms"]):
                    return inc
            return None

        inc = poll(manual, 20, "the hand-raised incident")
        assert inc["grid"] == expected

        host, bport = args[args.index("-h") + 1], args[args.index("-p") + 1]
        subprocess.run(["mosquitto_pub", "-h", host, "-p", bport, "-q", "1", "-t", "gridwatch/devices/fence-001/alarm", "-m", "{broken"], check=True, timeout=30)
        letters = poll(
            lambda: [d for d in client.get(f"{base}/api/v1/dead-letters").json()["items"] if d["payload"] == "{broken"], 20, "the dead letter"
        )
        assert letters[0]["reason"] == "invalid_json"
        before = client.get(f"{base}/healthz").json()["ingest"]["messages"]
        poll(lambda: client.get(f"{base}/healthz").json()["ingest"]["messages"] > before, 20, "the pipeline to keep going")

        # a planner redraws the district while the demo runs: import → publish from the CLI
        planner_redraws_while_the_demo_runs(client, base, env, tmp_path)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        out.close()
    tail = (tmp_path / "demo.log").read_text()
    assert code == 0, tail[-3000:]
    assert "stopped:" in tail
