"""The `gridwatch` CLI against real PostGIS and Mosquitto: migrate, seed, serve, two ingest workers sharing a subscription."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from typer.testing import CliRunner

from api.cli import app
from ingest.broker import MosquittoBroker
from store import open_store

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
CST = timezone(timedelta(hours=8))


def _env(pg: str, broker: MosquittoBroker, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "GRIDWATCH_DATABASE_URL": pg,
        "GRIDWATCH_MQTT_URL": broker.url,
        "GRIDWATCH_SECRET_KEY": "test-secret-not-default-and-long-enough-0123456789",
        **extra,
    }


def _poll(fn, timeout: float, what: str):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = fn()
        except (httpx.HTTPError, OSError):
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def _publish_alarms(broker: MosquittoBroker, device: str, lon: float, lat: float, n: int, prefix: str) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    c.connect(broker.host, broker.port)
    c.loop_start()
    infos = []
    for i in range(n):
        body = {"id": f"{prefix}-{i}", "ts": datetime.now(CST).isoformat(), "type": "fence.intrusion", "severity": 2, "lat": lat, "lon": lon}
        infos.append(c.publish(f"gridwatch/devices/{device}/alarm", json.dumps(body), qos=1))
    for info in infos:
        info.wait_for_publish(10)
    c.loop_stop()
    c.disconnect()


def _stop(proc: subprocess.Popen) -> int:
    """SIGINT, then the exit code; a process still running after 30 s is killed and reported as -9 (the
    caller's assertion on the codes fails), so that the other processes are still stopped."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return -9


def test_migrate_and_seed_are_idempotent(pg_blank_url: str) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["db", "migrate", "--database-url", pg_blank_url])
    assert first.exit_code == 0 and "0001_init" in first.output
    again = runner.invoke(app, ["db", "migrate", "--database-url", pg_blank_url])
    assert again.exit_code == 0 and "up to date" in again.output
    for _ in range(2):
        seeded = runner.invoke(app, ["seed", "--database-url", pg_blank_url])
        assert seeded.exit_code == 0, seeded.output
    store = open_store(pg_blank_url)
    try:
        assert len(store.grids(level=3)) == 138 and len(store.grids()) == 172
        assert len(store.buildings()) == 1100 and len(store.patrollers()) == 163
    finally:
        store.close()


def test_serve_and_two_ingest_workers_share_the_load(pg_url: str, mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    assert CliRunner().invoke(app, ["seed", "--database-url", pg_url]).exit_code == 0
    store = open_store(pg_url)
    device = next(d for d in store.devices() if d.kind == "fence")
    grid = next(g for g in store.grids(level=3) if g.code == device.grid_code)
    p = grid.geometry.representative_point()
    group = f"g{uuid.uuid4().hex[:6]}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    logs = []
    try:
        for name, args, extra in [
            ("serve", ["serve"], {"GRIDWATCH_API_PORT": str(port), "GRIDWATCH_MQTT_CLIENT_ID": f"{group}-api"}),
            ("ingest", ["ingest"], {"GRIDWATCH_MQTT_CLIENT_ID": f"{group}-w2"}),
        ]:
            log = open(tmp_path / f"{name}.log", "w")
            logs.append(log)
            env = _env(pg_url, mosquitto, GRIDWATCH_MQTT_SHARED_GROUP=group, **extra)
            procs.append(subprocess.Popen([sys.executable, "-m", "api.cli", *args], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path))
        base = f"http://127.0.0.1:{port}"
        _poll(lambda: httpx.get(f"{base}/healthz").json()["ingest"]["running"], 60, "serve to start ingest")
        _poll(lambda: "running" in (tmp_path / "ingest.log").read_text(), 60, "the ingest worker")
        time.sleep(1.0)  # both shared subscriptions in place
        _publish_alarms(mosquitto, device.id, p.x, p.y, 200, group)
        _poll(lambda: store.count_alarms() == 200, 60, "200 alarms stored")
        from api.auth import hash_password
        from store.ports import UserRecord

        store.save_user(UserRecord("ops", hash_password("ops-password-1"), "admin"), at=datetime.now(UTC))
        token = httpx.post(f"{base}/api/v1/token", data={"username": "ops", "password": "ops-password-1"}).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        items = _poll(lambda: httpx.get(f"{base}/api/v1/incidents", headers=auth).json()["items"], 30, "the incident via serve")
        assert all(i["grid"] == grid.code for i in items)
        assert sum(i["alarm_count"] for i in items) == 200
        served = httpx.get(f"{base}/healthz").json()["ingest"]["alarms_stored"]
        assert 0 < served < 200, "the shared subscription should split the messages between the two workers"

        # a map wall stays connected to the live stream: stopping serve must end it, not wait for it
        stream_chunks: list[bytes] = []
        stream_ended = threading.Event()

        def watch() -> None:
            with httpx.stream("GET", f"{base}/api/v1/stream", headers=auth, timeout=httpx.Timeout(10, read=None)) as r:
                for chunk in r.iter_bytes():
                    stream_chunks.append(chunk)
            stream_ended.set()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        _poll(lambda: stream_chunks, 30, "the live stream to open")
    finally:
        codes = [_stop(proc) for proc in procs]
        for log in logs:
            log.close()
        store.close()
    assert codes == [0, 0], [(tmp_path / f"{n}.log").read_text()[-2000:] for n in ("serve", "ingest")]
    assert stream_ended.wait(30), "the live stream did not end when serve stopped"
    assert "ended 1 live stream(s)" in (tmp_path / "serve.log").read_text()
