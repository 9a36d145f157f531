"""The whole loop on real parts: MQTT publish → Mosquitto → ingest → PostGIS → routed incident → API → map,
and the patroller's notification back over MQTT."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from shapely.geometry import Point

from api.app import create_app
from api.cli import seed_store
from api.runtime import Runtime
from ingest.broker import MosquittoBroker
from store.ports import IncidentQuery, Store
from tests.integration.apphelpers import ingesting, token_headers

pytestmark = pytest.mark.e2e
CST = timezone(timedelta(hours=8))
TIMEOUT = 20.0


def wait_for(predicate: Callable[[], object], timeout: float = TIMEOUT, what: str = "condition") -> object:
    """Poll until `predicate()` is truthy (generous timeout; this is not a speed assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


class Listener:
    """A plain paho subscriber that records what arrives."""

    def __init__(self, url_port: int, topic: str) -> None:
        self.messages: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"listener-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", url_port)
        self.client.loop_start()
        assert self.ready.wait(10), "listener did not subscribe"

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, json.loads(msg.payload)))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def publish(broker: MosquittoBroker, topic: str, payload: bytes | str) -> None:
    """Publish one QoS 1 message and wait for the broker's PUBACK."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    info = client.publish(topic, payload, qos=1)
    info.wait_for_publish(10)
    client.loop_stop()
    client.disconnect()


def alarm_payload(msg_id: str, lon: float, lat: float, type_: str = "fence.intrusion") -> str:
    return json.dumps(
        {"id": msg_id, "ts": datetime.now(CST).isoformat(), "type": type_, "severity": 3, "lat": lat, "lon": lon, "zone": "Z1"}
    )


@pytest.fixture
def running(postgis_store: Store, mosquitto: MosquittoBroker) -> Iterator[Runtime]:
    """A runtime over a seeded PostGIS store, ingesting from the test Mosquitto."""
    seed_store(postgis_store)
    with ingesting(postgis_store, mosquitto.url, "gw-e2e", batch_wait_ms=2) as rt:
        yield rt


def fence_in_grid(rt: Runtime) -> tuple[str, float, float, str]:
    """A fence device and a point inside the grid it belongs to."""
    device = next(d for d in rt.devices.values() if d.kind == "fence")
    grid = rt.grid_by_code[device.grid_code]
    p = grid.geometry.representative_point()
    return device.id, p.x, p.y, grid.code


def test_alarm_becomes_a_routed_dispatched_incident_visible_in_api_map_and_phone(running: Runtime, mosquitto: MosquittoBroker) -> None:
    rt = running
    device, lon, lat, _ = fence_in_grid(rt)
    expected = next(g.code for g in rt.grid_by_code.values() if g.level == 3 and g.geometry.contains(Point(lon, lat)))
    grid_listener = Listener(mosquitto.port, f"gridwatch/grids/{expected}/incidents")
    phone_listener = Listener(mosquitto.port, "gridwatch/patrollers/+/alerts")
    try:
        publish(mosquitto, f"gridwatch/devices/{device}/alarm", alarm_payload("e2e-1", lon, lat))
        client = TestClient(create_app(rt.settings, rt), headers=token_headers(rt))
        items = wait_for(lambda: client.get("/api/v1/incidents").json()["items"], what="the incident in the API")
        (inc,) = items
        assert inc["grid"] == expected and inc["route"]["l3"] == expected
        assert inc["route"]["l2"] == expected[:12] and inc["route"]["l1"] == expected[:9]
        assert inc["state"] == "dispatched" and inc["device_id"] == device and inc["light"] == "green"
        detail = client.get(f"/api/v1/incidents/{inc['id']}").json()
        assert [a["msg_id"] for a in detail["alarms"]] == ["e2e-1"]
        assert [h["action"] for h in detail["history"]] == ["report", "register", "dispatch"]
        assert client.get(f"/map?grid={expected[:12]}").status_code == 200
        assert inc["id"] in client.get("/api/v1/wall/summary", params={"grid": expected[:12]}).text
        events = wait_for(lambda: list(grid_listener.messages), what="the grid topic event")
        assert events[0][1]["id"] == inc["id"] and events[0][1]["event"] == "created"
        if inc["assignee"]:
            phone = wait_for(lambda: list(phone_listener.messages), what="the patroller notification")
            assert phone[0][0] == f"gridwatch/patrollers/{inc['assignee']}/alerts"
            assert phone[0][1]["id"] == inc["id"]
        wait_for(lambda: rt.store.notification_counters().get("pending", 1) == 0, what="outbox drained")
    finally:
        grid_listener.close()
        phone_listener.close()


def test_bad_input_becomes_dead_letters_and_the_pipeline_keeps_going(running: Runtime, mosquitto: MosquittoBroker) -> None:
    rt = running
    device, lon, lat, _ = fence_in_grid(rt)
    publish(mosquitto, f"gridwatch/devices/{device}/alarm", b"{not json")
    publish(mosquitto, f"gridwatch/devices/{device}/alarm", json.dumps({"id": "x", "ts": "2026-11-21T08:15:02", "type": "fence.intrusion"}))
    publish(mosquitto, "gridwatch/devices/no-such-device/alarm", alarm_payload("u1", lon, lat))
    publish(mosquitto, f"gridwatch/devices/{device}/alarm", alarm_payload("far", 10.0, 10.0))
    publish(mosquitto, f"gridwatch/devices/{device}/alarm", b"x" * (64 * 1024 + 1))
    publish(mosquitto, f"gridwatch/devices/{device}/alarm", alarm_payload("good", lon, lat))
    wait_for(lambda: rt.store.count_alarms() == 1, what="the valid alarm after the bad ones")
    letters = wait_for(lambda: rt.store.dead_letters() if len(rt.store.dead_letters()) >= 5 else None, what="5 dead letters")
    reasons = sorted(row.dead_letter.reason for row in letters)
    assert reasons == sorted(["invalid_json", "ts_without_zone", "unknown_device", "outside_district", "payload_too_large"])
    assert all(row.dead_letter.detail for row in letters)


def test_redelivered_message_is_stored_once(running: Runtime, mosquitto: MosquittoBroker) -> None:
    rt = running
    device, lon, lat, _ = fence_in_grid(rt)
    body = alarm_payload("dup-1", lon, lat)
    for _ in range(3):
        publish(mosquitto, f"gridwatch/devices/{device}/alarm", body)
    publish(mosquitto, f"gridwatch/devices/{device}/alarm", alarm_payload("dup-2", lon, lat))
    wait_for(lambda: rt.stats["duplicates"] >= 2 and rt.store.count_alarms() == 2, what="both alarms and the duplicates")
    (inc,) = rt.store.incidents(IncidentQuery())
    assert inc.alarm_count == 2  # dup-1 once + dup-2 joined within the cooldown


def test_messages_published_while_ingest_is_down_are_processed_after_restart(running: Runtime, mosquitto: MosquittoBroker) -> None:
    rt = running
    device, lon, lat, _ = fence_in_grid(rt)
    publish(mosquitto, f"gridwatch/devices/{device}/alarm", alarm_payload("before", lon, lat))
    wait_for(lambda: rt.store.count_alarms() == 1, what="first alarm")
    rt.stop_ingest()
    for i in range(20):
        publish(mosquitto, f"gridwatch/devices/{device}/alarm", alarm_payload(f"while-down-{i}", lon, lat, "fence.cut"))
    rt.start_ingest()  # same client id: the persistent session kept the queued messages
    wait_for(lambda: rt.store.count_alarms() == 21, what="the 20 queued alarms")
    assert rt.store.count_alarms() == 21


def test_patroller_location_updates_last_known_position(running: Runtime, mosquitto: MosquittoBroker) -> None:
    rt = running
    patroller = rt.patrollers[0]
    ts = datetime.now(UTC).isoformat()
    publish(mosquitto, f"gridwatch/patrollers/{patroller.id}/location", json.dumps({"ts": ts, "lat": 27.62, "lon": 113.85, "acc": 5}))
    pos = wait_for(lambda: rt.store.positions().get(patroller.id), what="the position")
    assert (pos.lon, pos.lat) == (113.85, 27.62)
    assert rt.intake.positions[patroller.id].lon == 113.85


def test_the_live_stream_carries_incident_events(running: Runtime, mosquitto: MosquittoBroker) -> None:
    """GET /api/v1/stream over a real HTTP server: an alarm's incident arrives as `event: incident`."""
    import socket

    import httpx

    from api.access import chain
    from api.cli import _serve_http

    rt = running
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server, thread = _serve_http(create_app(rt.settings, rt), "127.0.0.1", port)
    device, lon, lat, grid = fence_in_grid(rt)
    received: list[str] = []
    connected = threading.Event()
    street = token_headers(rt, "commander", grid=chain(grid, rt.grid_by_code)[-1])  # the level-1 grid above it

    def listen() -> None:
        with httpx.stream("GET", f"http://127.0.0.1:{port}/api/v1/stream", params={"kinds": "incident"},
                          headers=street, timeout=30) as resp:  # a street commander: its own subtree by default
            assert resp.headers["content-type"].startswith("text/event-stream")
            for line in resp.iter_lines():
                connected.set()
                received.append(line)
                if line.startswith("data: "):
                    return

    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    try:
        assert connected.wait(10), "the stream did not open"
        publish(mosquitto, f"gridwatch/devices/{device}/alarm", alarm_payload("stream-1", lon, lat))
        reader.join(TIMEOUT)
        events = [line for line in received if line.startswith("event: ")]
        data = [json.loads(line[6:]) for line in received if line.startswith("data: ")]
        assert events == ["event: incident"] and data[0]["event"] == "created" and data[0]["grid"] == grid
    finally:
        server.should_exit = True
        thread.join(10)
