"""Real devices on real parts: vendor payloads over Mosquitto → ingest → PostGIS; a device that falls
silent goes offline within its interval + 10 % and is cleared when it sends again; dead letters of an
unknown camera replay into an incident once it is registered."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from shapely.geometry import Point

from api.app import create_app
from api.cli import seed_store
from api.runtime import Runtime
from geo.model import Device
from ingest.broker import MosquittoBroker
from store.ports import IncidentQuery, Store
from tests.e2e.test_mqtt_loop import publish, wait_for
from tests.integration.apphelpers import ingesting, token_headers

pytestmark = pytest.mark.e2e
INTERVAL_S = 8.0  # the check allows 10 %: 0.8 s for a sweep every 0.1 s


@pytest.fixture
def running(postgis_store: Store, mosquitto: MosquittoBroker) -> Iterator[Runtime]:
    seed_store(postgis_store)
    with ingesting(postgis_store, mosquitto.url, "gw-dev", batch_wait_ms=2, health_sweep_seconds=0.1) as rt:
        yield rt


def place(rt: Runtime, n: int) -> tuple[Point, str]:
    grid = sorted(rt.store.grids(level=3), key=lambda g: g.code)[n]
    return grid.geometry.representative_point(), grid.code


def incidents_of(rt: Runtime, device_id: str) -> list:  # type: ignore[type-arg]
    return [i for i in rt.store.incidents(IncidentQuery(limit=5000)) if i.device_id == device_id]


def test_a_silent_zigbee_sensor_goes_offline_within_its_interval_and_is_cleared_on_return(
        running: Runtime, mosquitto: MosquittoBroker) -> None:
    rt = running
    point, code = place(rt, 5)
    rt.store.upsert_devices([Device("smk-e2e", "smoke", "hall smoke", point, code, format="zigbee2mqtt",
                                    identity="zigbee2mqtt:hall_smoke_e2e", interval_s=INTERVAL_S)], at=rt.now())
    rt.refresh_devices()
    publish(mosquitto, "zigbee2mqtt/hall_smoke_e2e", b'{"smoke": false, "battery": 97, "linkquality": 120}')
    wait_for(lambda: rt.store.device_states()["smk-e2e"].state == "online", what="the sensor online")
    last_seen = rt.store.device_states()["smk-e2e"].last_seen
    assert last_seen is not None
    (offline,) = wait_for(lambda: [i for i in incidents_of(rt, "smk-e2e") if i.type == "device.offline"],
                          timeout=INTERVAL_S * 4, what="the device.offline incident")
    waited = offline.created_at - last_seen
    assert timedelta(seconds=INTERVAL_S) <= waited <= timedelta(seconds=INTERVAL_S * 1.1), waited
    assert offline.route.l3 == code  # routed to the device's grid
    assert rt.store.device_states()["smk-e2e"].state == "offline"
    publish(mosquitto, "zigbee2mqtt/hall_smoke_e2e", b'{"smoke": false, "battery": 96, "linkquality": 110}')
    wait_for(lambda: rt.store.incident(offline.id).state.value == "closed", what="the offline incident cleared")  # type: ignore[union-attr]
    assert rt.store.device_states()["smk-e2e"].state == "online"
    # a real smoke alarm from the same sensor still raises an incident
    publish(mosquitto, "zigbee2mqtt/hall_smoke_e2e", b'{"smoke": true, "battery": 96}')
    wait_for(lambda: [i for i in incidents_of(rt, "smk-e2e") if i.type == "smoke.alarm"], what="the smoke incident")


def test_an_unknown_camera_is_dead_lettered_and_replayed_over_http_once_registered(
        running: Runtime, mosquitto: MosquittoBroker) -> None:
    rt = running
    event = {"type": "new", "before": {}, "after": {
        "id": "1763700000.1-e2e", "camera": "back_gate", "label": "person", "score": 0.9, "top_score": 0.9,
        "false_positive": False, "start_time": time.time() - 2, "end_time": None, "entered_zones": [], "current_zones": []}}
    publish(mosquitto, "frigate/events", json.dumps(event).encode())
    letter = wait_for(lambda: rt.store.dead_letters(limit=5, reason="unknown_device"), what="the dead letter")[0]  # type: ignore[index]
    assert letter.dead_letter.topic == "frigate/events" and "frigate:back_gate" in letter.dead_letter.detail
    point, code = place(rt, 7)
    csv = f"id,kind,name,format,camera,lon,lat\ncam-back,camera,Back gate,frigate,back_gate,{point.x},{point.y}\n"
    with TestClient(create_app(rt.settings, rt), headers=token_headers(rt)) as client:
        r = client.post("/api/v1/devices/import", files={"file": ("devices.csv", csv.encode(), "text/csv")})
        assert r.status_code == 200, r.text
        replay = client.post("/api/v1/dead-letters/replay", json={"reason": "unknown_device"})
        assert replay.status_code == 200 and replay.json()["accepted"] == 1, replay.text
        (incident,) = incidents_of(rt, "cam-back")
        assert incident.type == "camera.object" and incident.route.l3 == code
        counts = client.get("/api/v1/dead-letters/counters").json()["by_reason"]["unknown_device"]
        assert counts["replayed"] == 1 and counts["pending"] == 0
    # the camera's next event arrives directly
    event["after"]["id"] = "1763700001.2-e2e"
    publish(mosquitto, "frigate/events", json.dumps(event).encode())
    wait_for(lambda: rt.store.count_alarms() >= 2, what="the second alarm")
