"""Alarm storms and correlation end to end, over a real Mosquitto and a real PostGIS (design §6b, §7):
2,000 fence alarms from 40 devices on one perimeter in 10 s become at most 5 incidents and at most 10
patroller notifications; a fence alarm and a thermal-camera alarm 20 m apart within 30 s are one incident."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from datetime import time as dtime

import paho.mqtt.client as mqtt
import pytest
from shapely.geometry import Point

from api.runtime import Runtime
from geo.district import build_sample_district
from geo.model import Device, District, Grid, Patroller, Shift
from ingest.broker import MosquittoBroker
from store.ports import IncidentQuery, Store
from tests.e2e.test_mqtt_loop import Listener, wait_for
from tests.integration.apphelpers import ingesting

pytestmark = pytest.mark.e2e
CST = timezone(timedelta(hours=8))
ALWAYS = Shift(frozenset(range(7)), dtime(0), dtime(0))


def perimeter_devices(grid: Grid, n: int) -> list[Device]:
    """`n` fence zones as points spaced along the outline of one level-3 grid (just inside it)."""
    ring = grid.geometry.buffer(-0.00005).exterior
    return [
        Device(f"storm-fence-{k:02d}", "fence", f"perimeter zone {k}", Point(ring.interpolate(k / n, normalized=True).coords[0]),
               grid.code, (f"Z{k}",))
        for k in range(n)
    ]


@pytest.fixture
def district() -> District:
    """The sample district, plus 40 fences around one grid, and a fence and a thermal camera 20 m apart."""
    base = build_sample_district()
    l3 = sorted(base.level(3), key=lambda g: g.code)
    storm_grid, pair_grid = l3[10], l3[40]
    c = pair_grid.geometry.representative_point()
    east = (c.x + 20 / (111_195.0 * 0.886), c.y)  # 20 m east at lat 27.6
    pair = [Device("pair-fence", "fence", "pair fence", Point(c.x, c.y), pair_grid.code, ("Z1",)),
            Device("pair-thermal", "thermal", "pair camera", Point(*east), pair_grid.code)]
    # one patroller always on duty in each of the two grids, so that each incident notifies a phone
    guards = [Patroller("P-STORM", "storm guard", "1", (storm_grid.code,), (ALWAYS,)),
              Patroller("P-PAIR", "pair guard", "2", (pair_grid.code,), (ALWAYS,))]
    others = tuple(dataclasses.replace(p, grid_codes=tuple(g for g in p.grid_codes if g not in (storm_grid.code, pair_grid.code)))
                   for p in base.patrollers)
    return dataclasses.replace(base, devices=(*base.devices, *perimeter_devices(storm_grid, 40), *pair),
                               patrollers=(*others, *guards))


@pytest.fixture
def running(postgis_store: Store, mosquitto: MosquittoBroker, district: District) -> Iterator[Runtime]:
    postgis_store.load_district(district, "storm-test")
    with ingesting(postgis_store, mosquitto.url, "gw-storm", batch_wait_ms=5) as rt:
        yield rt


def publisher(broker: MosquittoBroker) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"storm-pub-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(1000)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def payload(msg_id: str, type_: str, at: datetime) -> bytes:
    return json.dumps({"id": msg_id, "ts": at.astimezone(CST).isoformat(), "type": type_, "severity": 3}).encode()


def test_a_storm_of_2000_alarms_from_40_fences_becomes_few_incidents_and_few_notifications(
    running: Runtime, mosquitto: MosquittoBroker
) -> None:
    rt = running
    fences = sorted(d for d in rt.devices if d.startswith("storm-fence-"))
    assert len(fences) == 40
    phones = Listener(mosquitto.port, "gridwatch/patrollers/+/alerts")
    before = rt.store.count_alarms()
    client = publisher(mosquitto)
    try:
        start = time.monotonic()
        infos = []
        for k in range(2000):  # 2,000 alarms over ~10 s, round robin over the 40 fences
            device = fences[k % 40]
            infos.append(client.publish(f"gridwatch/devices/{device}/alarm",
                                        payload(f"storm-{k}", "fence.intrusion", datetime.now(UTC)), qos=1))
            time.sleep(max(0.0, start + k * 0.005 - time.monotonic()))
        for info in infos:
            info.wait_for_publish(30)
        wait_for(lambda: rt.store.count_alarms() - before >= 2000, timeout=120, what="all 2,000 alarms stored")
        wait_for(lambda: rt.store.notification_counters().get("pending", 1) == 0, timeout=60, what="the outbox drained")
        time.sleep(1.0)  # late deliveries would show up here
        grid = rt.devices[fences[0]].grid_code
        incidents = rt.store.incidents(IncidentQuery(grid=grid, limit=1000))
        storm_phone = [m for m in phones.messages if m[0] == "gridwatch/patrollers/P-STORM/alerts"]
        assert 1 <= len(incidents) <= 5, [(i.type, i.alarm_count) for i in incidents]
        assert sum(i.alarm_count for i in incidents) == 2000  # every alarm accounted for, none lost
        assert any(i.type == "storm" for i in incidents)
        assert len(storm_phone) <= 10, len(storm_phone)
    finally:
        client.loop_stop()
        client.disconnect()
        phones.close()


def test_fence_and_thermal_alarms_20_m_apart_within_30_s_are_one_incident(running: Runtime, mosquitto: MosquittoBroker) -> None:
    rt = running
    client = publisher(mosquitto)
    try:
        t0 = datetime.now(UTC)
        client.publish("gridwatch/devices/pair-fence/alarm", payload("pair-1", "fence.intrusion", t0), qos=1).wait_for_publish(10)
        time.sleep(0.5)
        client.publish("gridwatch/devices/pair-thermal/alarm", payload("pair-2", "thermal.intrusion", t0 + timedelta(seconds=25)),
                       qos=1).wait_for_publish(10)
        grid = rt.devices["pair-fence"].grid_code
        wait_for(lambda: sum(i.alarm_count for i in rt.store.incidents(IncidentQuery(grid=grid))) >= 2, what="both alarms")
        (incident,) = rt.store.incidents(IncidentQuery(grid=grid))
        assert incident.alarm_count == 2 and incident.confidence > 0.0
        assert sorted(a.device_id for a in rt.store.alarms_of(incident.id)) == ["pair-fence", "pair-thermal"]
    finally:
        client.loop_stop()
        client.disconnect()


def test_maintenance_window_mutes_but_records(running: Runtime, mosquitto: MosquittoBroker) -> None:
    from alerts.maintenance import MaintenanceWindow

    rt = running
    grid = rt.devices["pair-fence"].grid_code
    now = datetime.now(UTC)
    rt.store.add_maintenance_window(MaintenanceWindow(grid, None, now - timedelta(minutes=1), now + timedelta(hours=1), "fence repair"),
                                    actor="center:3:" + grid)
    rt.refresh_maintenance()
    before = rt.store.count_alarms()
    client = publisher(mosquitto)
    try:
        client.publish("gridwatch/devices/pair-fence/alarm", payload("muted-1", "fence.intrusion", now), qos=1).wait_for_publish(10)
        wait_for(lambda: rt.store.count_alarms() > before, what="the muted alarm stored")
        assert rt.store.incidents(IncidentQuery(grid=grid)) == []
    finally:
        client.loop_stop()
        client.disconnect()
