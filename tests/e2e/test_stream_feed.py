"""The live stream across processes (design §9): a `serve` process and an ingest worker share the
alarms through a `$share/` subscription on a real Mosquitto; the map wall connected to `serve` must get
every incident's events, including those of alarms the other worker handled, each exactly once, and
device state events as well."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from api.app import create_app
from api.cli import _serve_http, seed_store
from api.runtime import Runtime
from api.settings import Settings
from ingest.broker import MosquittoBroker
from store import open_store
from store.ports import IncidentQuery, Store
from tests.e2e.test_mqtt_loop import TIMEOUT, alarm_payload, publish, wait_for
from tests.integration.apphelpers import ingesting, message, token_headers

pytestmark = pytest.mark.e2e


class StreamReader:
    """Reads `GET /api/v1/stream` of a live server in a thread: (event, data) pairs as they arrive."""

    def __init__(self, url: str, headers: dict[str, str], params: dict[str, str]) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []
        self.opened = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(url, headers, params), daemon=True)
        self._thread.start()

    def _read(self, url: str, headers: dict[str, str], params: dict[str, str]) -> None:
        try:
            with httpx.stream("GET", url, headers=headers, params=params, timeout=httpx.Timeout(10, read=None)) as resp:
                kind = None
                for line in resp.iter_lines():
                    self.opened.set()
                    if self._stop.is_set():
                        return
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind is not None:
                        self.events.append((kind, json.loads(line[6:])))
                        kind = None
        except httpx.HTTPError:
            if not self._stop.is_set():
                raise

    def of(self, kind: str) -> list[dict[str, object]]:
        return [data for k, data in list(self.events) if k == kind]

    def close(self) -> None:
        self._stop.set()


@pytest.fixture
def seeded(postgis_store: Store) -> Store:
    seed_store(postgis_store)
    return postgis_store


def test_serve_streams_the_events_of_alarms_another_worker_handled_once_each(seeded: Store, mosquitto: MosquittoBroker) -> None:
    group = f"g{uuid.uuid4().hex[:6]}"
    worker_store = open_store(seeded.url)  # the other process has its own connections
    with ingesting(seeded, mosquitto.url, "gw-serve", mqtt_shared_group=group, batch_wait_ms=2) as serve_rt, \
            ingesting(worker_store, mosquitto.url, "gw-worker", mqtt_shared_group=group, batch_wait_ms=2) as worker_rt:
        time.sleep(1.0)  # both shared subscriptions in place before the first alarm
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server, thread = _serve_http(create_app(serve_rt.settings, serve_rt), "127.0.0.1", port)
        reader = StreamReader(f"http://127.0.0.1:{port}/api/v1/stream", token_headers(serve_rt),
                              {"kinds": "incident,device"})
        try:
            assert reader.opened.wait(TIMEOUT), "the stream did not open"
            fences = [d for d in serve_rt.devices.values() if d.kind == "fence"][:8]
            assert len(fences) == 8, "the sample district has too few fences for this test"
            for n, device in enumerate(fences):
                p = serve_rt.grid_by_code[device.grid_code].geometry.representative_point()
                publish(mosquitto, f"gridwatch/devices/{device.id}/alarm", alarm_payload(f"feed-{n}", p.x, p.y))
            wait_for(lambda: seeded.count_alarms() == 8, what="8 alarms stored")
            stored = {i.id for i in seeded.incidents(IncidentQuery(limit=100))}
            handled = (serve_rt.stats["alarms_stored"], worker_rt.stats["alarms_stored"])
            assert sum(handled) == 8 and min(handled) >= 1, f"the shared subscription did not split the alarms: {handled}"

            def created() -> list[object]:
                return [e["id"] for e in reader.of("incident") if e.get("event") == "created"]

            wait_for(lambda: set(created()) == stored, what=f"the created events of {sorted(stored)} on serve's stream")
            time.sleep(0.5)  # a duplicate would come right behind
            assert sorted(created()) == sorted(stored), "an incident's event reached the stream twice (or not at all)"

            # a device going offline, handled by either worker, reaches serve's stream as a device event
            camera = next(d for d in serve_rt.devices.values() if d.kind != "fence" and d.grid_code)
            status = {"ts": datetime.now(UTC).isoformat(), "online": False}
            publish(mosquitto, f"gridwatch/devices/{camera.id}/status", json.dumps(status))
            event = wait_for(lambda: next((e for e in reader.of("device") if e.get("device_id") == camera.id), None),
                             what=f"the device event of {camera.id}")
            assert event["state"] == "offline" and event["grid_code"] == camera.grid_code
            assert serve_rt.feed is not None and serve_rt.feed.received >= len(stored) + 1
        finally:
            reader.close()
            server.should_exit = True
            thread.join(10)
            worker_store.close()


def test_an_api_without_ingest_still_streams_its_own_device_events(seeded: Store, mosquitto: MosquittoBroker) -> None:
    """`serve --no-ingest`: no ingest worker, only the feed. A device state that reaches this process over
    HTTP (a camera's heartbeat) goes out on the feed's own connection and comes back to its streams."""
    settings = Settings(_env_file=None, database_url="postgresql://unused", mqtt_url=mosquitto.url,
                        mqtt_client_id=f"gw-api-{uuid.uuid4().hex[:6]}", secret_key="test-secret-long-enough-for-hs256-0123456789")
    rt = Runtime(settings, seeded)
    assert rt.start_events().is_subscribed and rt.worker is None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server, thread = _serve_http(create_app(settings, rt), "127.0.0.1", port)
    reader = StreamReader(f"http://127.0.0.1:{port}/api/v1/stream", token_headers(rt), {"kinds": "device"})
    try:
        assert reader.opened.wait(TIMEOUT), "the stream did not open"
        camera = next(d for d in rt.devices.values() if d.kind != "fence" and d.grid_code)
        status = {"ts": datetime.now(UTC).isoformat(), "online": False}
        rt.handle_messages([message(f"gridwatch/devices/{camera.id}/status", json.dumps(status).encode(), datetime.now(UTC))])
        event = wait_for(lambda: next((e for e in reader.of("device") if e.get("device_id") == camera.id), None),
                         what=f"the device event of {camera.id}")
        assert event["state"] == "offline" and rt.feed is not None and rt.feed.received >= 1
    finally:
        reader.close()
        server.should_exit = True
        thread.join(10)
        rt.stop_events()
