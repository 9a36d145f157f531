"""Real devices end to end on both real stores: vendor payloads → registry → incidents, readings,
health (offline / back), threshold rules, level-triggered sensors, dead-letter replay, HTTP push."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from shapely.geometry import Point

from api.runtime import Runtime
from geo.model import Device
from tests.integration.apphelpers import Clock, message

pytestmark = pytest.mark.integration


def register(rt: Runtime, clock: Clock, *devices: Device) -> None:
    rt.store.upsert_devices(list(devices), at=clock.now)
    rt.refresh_devices()


def somewhere(rt: Runtime, n: int = 0) -> tuple[float, float, str]:
    grid = sorted(rt.store.grids(level=3), key=lambda g: g.code)[n]
    p = grid.geometry.representative_point()
    return p.x, p.y, grid.code


def camera(rt: Runtime, device_id: str, identity: str, *, kind: str = "camera", interval_s: float | None = None, n: int = 0) -> Device:
    lon, lat, code = somewhere(rt, n)
    fmt = identity.split(":", 1)[0]
    return Device(device_id, kind, f"{device_id} test", Point(lon, lat), code, format=fmt, identity=identity, interval_s=interval_s)  # type: ignore[arg-type]


def frigate_event(kind: str, event_id: str, camera_name: str, start: float, *, end: float | None = None) -> bytes:
    after = {"id": event_id, "camera": camera_name, "label": "person", "sub_label": None, "top_score": 0.91, "score": 0.88,
             "false_positive": False, "start_time": start, "end_time": end, "current_zones": ["yard"], "entered_zones": ["yard"],
             "has_snapshot": True, "has_clip": False, "stationary": False}
    return json.dumps({"type": kind, "before": after, "after": after}).encode()


def test_a_frigate_event_opens_an_incident_and_its_end_closes_the_alarm(rt: Runtime, clock: Clock) -> None:
    register(rt, clock, camera(rt, "cam-gate", "frigate:gate"))
    start = clock.now.timestamp() - 5
    new = rt.handle_messages([message("frigate/events", frigate_event("new", "1700.5-abc", "gate", start), clock.now)])
    assert new.alarms_stored == 1 and len(new.incidents_created) == 1
    incident = rt.store.incident(new.incidents_created[0])
    assert incident is not None and incident.device_id == "cam-gate" and incident.type == "camera.region_entrance"
    again = rt.handle_messages([message("frigate/events", frigate_event("update", "1700.5-abc", "gate", start), clock.now)])
    assert again.alarms_stored == 0 and again.duplicates == 1  # the same event: stored once
    end = rt.handle_messages([message("frigate/events", frigate_event("end", "1700.5-abc", "gate", start, end=start + 9), clock.now)])
    assert end.alarm_ends == 1 and end.alarms_stored == 0 and not end.incidents_created
    orphan = rt.handle_messages([message("frigate/events", frigate_event("end", "never-started", "gate", start, end=start + 1), clock.now)])
    assert orphan.alarms_stored == 0 and orphan.alarm_ends == 0 and not orphan.incidents_created  # an end never opens


def test_unknown_devices_are_dead_lettered_then_replayed_once_registered(rt: Runtime, clock: Clock) -> None:
    start = clock.now.timestamp()
    first = rt.handle_messages([message("frigate/events", frigate_event("new", "ev-1", "garage", start), clock.now)])
    assert first.dead_letters == 1 and first.alarms_stored == 0
    (letter,) = rt.store.dead_letters(limit=1, reason="unknown_device")
    assert "frigate:garage" in letter.dead_letter.detail
    assert rt.store.dead_letter_counts()["unknown_device"]["pending"] == 1
    refused = rt.replay_dead_letters([letter.id])
    assert refused[0]["status"] == "refused" and refused[0]["reason"] == "unknown_device"
    register(rt, clock, camera(rt, "cam-garage", "frigate:garage"))
    (done,) = rt.replay_dead_letters([letter.id])
    assert done["status"] == "accepted" and len(done["incidents_created"]) == 1
    assert rt.store.dead_letter(letter.id).replayed_at is not None  # type: ignore[union-attr]
    assert rt.replay_dead_letters([letter.id])[0]["status"] == "already_replayed"
    counts = rt.store.dead_letter_counts()["unknown_device"]
    assert counts == {"pending": 0, "replayed": 1}
    assert rt.store.count_alarms() == 1


def test_readings_are_stored_once_and_aggregated(rt: Runtime, clock: Clock, client: TestClient) -> None:
    register(rt, clock, camera(rt, "th-roof", "thermal:roof", kind="thermal"))
    t = clock.now - timedelta(minutes=3)
    batch = [{"ts": (t + timedelta(seconds=20 * i)).isoformat(), "metric": "temperature_max", "value": 40.0 + i, "unit": "°C"} for i in range(6)]
    payload = json.dumps(batch).encode()
    msg = message("gridwatch/devices/th-roof/reading", payload, clock.now)
    assert rt.handle_messages([msg]).readings == 6
    assert rt.handle_messages([msg]).readings == 0  # redelivered: stored once
    raw = client.get("/api/v1/devices/th-roof/readings", params={"from": (t - timedelta(minutes=1)).isoformat(), "to": clock.now.isoformat()})
    assert raw.status_code == 200, raw.text
    assert [i["max"] for i in raw.json()["items"]] == [40.0, 41.0, 42.0, 43.0, 44.0, 45.0]
    agg = client.get("/api/v1/devices/th-roof/readings", params={"from": (t - timedelta(minutes=1)).isoformat(), "to": clock.now.isoformat(), "bucket": "1h"})
    (row,) = agg.json()["items"]
    assert (row["count"], row["min"], row["max"], row["avg"]) == (6, 40.0, 45.0, 42.5)
    assert client.get("/api/v1/devices/nope/readings").status_code == 404


def test_a_threshold_rule_raises_an_alarm_after_the_bound_held(rt: Runtime, clock: Clock) -> None:
    register(rt, clock, camera(rt, "th-2", "thermal:two", kind="thermal"))
    t = clock.now

    def reading(s: int, v: float) -> object:
        body = {"ts": (t + timedelta(seconds=s)).isoformat(), "metric": "temperature_max", "value": v, "unit": "°C"}
        return message("gridwatch/devices/th-2/reading", json.dumps(body).encode(), t + timedelta(seconds=s))

    assert not rt.handle_messages([reading(0, 85), reading(5, 88)]).incidents_created  # 5 s: not yet
    hot = rt.handle_messages([reading(11, 90)])
    assert len(hot.incidents_created) == 1
    assert rt.store.incident(hot.incidents_created[0]).type == "thermal.overheat"  # type: ignore[union-attr]
    assert not rt.handle_messages([reading(15, 91)]).incidents_created  # the same breach


def test_an_offline_will_raises_device_offline_and_the_return_clears_it(rt: Runtime, clock: Clock) -> None:
    register(rt, clock, camera(rt, "cam-w", "gridwatch:cam-w"))
    will = rt.handle_messages([message("gridwatch/devices/cam-w/status", b'{"online": false}', clock.now)])
    assert len(will.incidents_created) == 1
    iid = will.incidents_created[0]
    assert rt.store.incident(iid).type == "device.offline"  # type: ignore[union-attr]
    assert rt.store.device_states()["cam-w"].state == "offline"
    clock.advance(minutes=5)
    back = rt.handle_messages([message("gridwatch/devices/cam-w/status", json.dumps({"ts": clock.now.isoformat(), "online": True}).encode(), clock.now)])
    assert back.came_back == ["cam-w"]
    incident = rt.store.incident(iid)
    assert incident is not None and incident.state.value == "closed"
    assert rt.store.history(iid)[-1].action == "clear" and "back online" in (rt.store.history(iid)[-1].note or "")
    assert rt.store.device_states()["cam-w"].state == "online"


def test_a_silent_device_goes_offline_after_its_interval(rt: Runtime, clock: Clock) -> None:
    register(rt, clock, camera(rt, "cam-s", "gridwatch:cam-s", interval_s=60))
    rt.handle_messages([message("gridwatch/devices/cam-s/status", json.dumps({"ts": clock.now.isoformat(), "online": True}).encode(), clock.now)])
    last = clock.now
    clock.advance(seconds=59)
    assert rt.health_sweep() == 0
    clock.advance(seconds=2)
    assert rt.health_sweep() == 1
    assert rt.health_sweep() == 0  # once
    (incident,) = [i for i in rt.store.incidents(__import__("store.ports", fromlist=["IncidentQuery"]).IncidentQuery()) if i.device_id == "cam-s"]
    assert incident.type == "device.offline"
    assert timedelta(seconds=60) <= incident.created_at - last <= timedelta(seconds=66)


def test_a_level_triggered_smoke_sensor_raises_once_per_rising_edge(rt: Runtime, clock: Clock) -> None:
    register(rt, clock, camera(rt, "smk-hall", "zigbee2mqtt:hall_smoke", kind="smoke"))
    topic = "zigbee2mqtt/hall_smoke"
    on1 = rt.handle_messages([message(topic, b'{"smoke": true, "battery": 90}', clock.now)])
    on2 = rt.handle_messages([message(topic, b'{"smoke": true, "battery": 89}', clock.now + timedelta(seconds=5))])
    assert on1.alarms_stored == 1 and on2.alarms_stored == 0
    assert on1.readings >= 1
    rt.handle_messages([message(topic, b'{"smoke": false, "battery": 89}', clock.now + timedelta(seconds=9))])
    on3 = rt.handle_messages([message(topic, b'{"smoke": true, "battery": 88}', clock.now + timedelta(seconds=20))])
    assert on3.alarms_stored == 1


HIK_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<EventNotificationAlert version="2.0" xmlns="http://www.hikvision.com/ver20/XMLSchema">
<ipAddress>192.168.1.64</ipAddress><portNo>80</portNo><protocol>HTTP</protocol>
<macAddress>44:19:b6:6d:24:85</macAddress><channelID>1</channelID>
<dateTime>2026-11-23T10:00:01+08:00</dateTime><activePostCount>1</activePostCount>
<eventType>linedetection</eventType><eventState>active</eventState>
<eventDescription>linedetection alarm</eventDescription><channelName>Gate</channelName>
</EventNotificationAlert>"""


def test_isapi_push_with_a_picture_and_osmand_positions_over_http(rt: Runtime, clock: Clock, client: TestClient) -> None:
    register(rt, clock, camera(rt, "hik-gate", "hikvision:44:19:b6:6d:24:85/1"))
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9"
    files = {"linedetection": ("linedetection.xml", HIK_XML, "application/xml"),
             "linedetectionImage": ("picture.jpg", io.BytesIO(jpeg), "image/jpeg")}
    r = client.post("/ingest/isapi", files=files)
    assert r.status_code == 200, r.text
    assert len(r.json()["incidents_created"]) == 1
    incident = rt.store.incident(r.json()["incidents_created"][0])
    assert incident is not None and incident.type == "camera.line_crossing" and incident.device_id == "hik-gate"
    (alarm,) = rt.store.alarms_of(incident.id)
    assert alarm.data["pictures"][0]["content_type"] == "image/jpeg"
    again = client.post("/ingest/isapi", content=HIK_XML, headers={"content-type": "application/xml"})
    assert again.json()["duplicates"] == 1  # the same post (same activePostCount): stored once
    lon, lat, _ = somewhere(rt)
    pos = client.get("/ingest/osmand", params={"id": "P0001", "lat": lat, "lon": lon, "timestamp": int(clock.now.timestamp()), "accuracy": 8})
    assert pos.status_code == 200 and pos.json()["positions"] == 1
    assert rt.store.positions()["P0001"].lat == pytest.approx(lat)
    bad = client.get("/ingest/osmand", params={"id": "P0001", "lat": 95, "lon": lon})
    assert bad.json()["dead_letters"] == 1


def test_device_api_shows_state_and_imports_a_csv(rt: Runtime, clock: Clock, client: TestClient) -> None:
    lon, lat, code = somewhere(rt, 3)
    csv = f"id,kind,name,format,identity,interval_s,lon,lat\nz-door,sensor,Door sensor,zigbee2mqtt,zigbee2mqtt:door_1,300,{lon},{lat}\n"
    r = client.post("/api/v1/devices/import", files={"file": ("devices.csv", csv.encode(), "text/csv")})
    assert r.status_code == 200, r.text
    assert r.json()["inserted"] == 1
    feature = client.get("/api/v1/devices/z-door").json()
    assert feature["properties"]["grid_code"] == code and feature["properties"]["state"] == "unknown"
    rt.handle_messages([message("zigbee2mqtt/door_1", b'{"contact": true, "battery": 80}', clock.now)])
    assert client.get("/api/v1/devices/z-door").json()["properties"]["state"] == "online"
    online = client.get("/api/v1/devices", params={"state": "online"}).json()["features"]
    assert [f["id"] for f in online] == ["z-door"]
    bad = client.post("/api/v1/devices/import", files={"file": ("devices.csv", b"id,kind,name,lon,lat\nx/y,rocket,X,200,0\n", "text/csv")})
    assert bad.status_code == 422 and "row 1" in bad.json()["detail"]
    counters = client.get("/api/v1/dead-letters/counters").json()
    assert counters["pending"] == 0


# --- regressions found in review ----------------------------------------------------------------------
def status(device_id: str, online: bool, at: object, received: object | None = None) -> object:
    body = {"ts": at.isoformat(), "online": online}  # type: ignore[attr-defined]
    return message(f"gridwatch/devices/{device_id}/status", json.dumps(body).encode(), received or at)  # type: ignore[arg-type]


def open_offline(rt: Runtime, device_id: str) -> list:  # type: ignore[type-arg]
    from store.ports import IncidentQuery

    return [i for i in rt.store.incidents(IncidentQuery()) if i.device_id == device_id and i.type == "device.offline"
            and i.state.value not in ("closed", "archived", "cancelled")]


def test_a_will_then_a_birth_in_one_batch_leaves_the_device_online(rt: Runtime, clock: Clock) -> None:
    register(rt, clock, camera(rt, "cam-a", "gridwatch:cam-a"))
    t = clock.now
    rt.handle_messages([status("cam-a", False, t), status("cam-a", True, t + timedelta(seconds=2))])
    assert rt.store.device_states()["cam-a"].state == "online" and open_offline(rt, "cam-a") == []
    rt.handle_messages([status("cam-a", True, t + timedelta(seconds=3)), status("cam-a", False, t + timedelta(seconds=4))])
    assert rt.store.device_states()["cam-a"].state == "offline" and len(open_offline(rt, "cam-a")) == 1


def test_liveness_is_the_receive_time_and_a_late_old_message_does_not_revive(rt: Runtime, clock: Clock) -> None:
    register(rt, clock, camera(rt, "cam-k", "gridwatch:cam-k", interval_s=60))
    for _ in range(6):  # heartbeats every 30 s from a camera whose clock is 5 minutes behind
        last = clock.now
        rt.handle_messages([status("cam-k", True, clock.now - timedelta(minutes=5), received=clock.now)])
        assert rt.health_sweep() == 0
        clock.advance(seconds=30)
    clock.advance(seconds=61)
    assert rt.health_sweep() == 1
    assert rt.store.device_states()["cam-k"].since == last  # offline as of its last sign of life
    # a message received before that (a replayed dead letter, a flushed buffer) does not bring it back
    rt.handle_messages([status("cam-k", True, last - timedelta(minutes=2), received=last - timedelta(seconds=10))])
    assert rt.store.device_states()["cam-k"].state == "offline" and len(open_offline(rt, "cam-k")) == 1
    clock.advance(seconds=5)
    rt.handle_messages([status("cam-k", True, clock.now)])
    assert rt.store.device_states()["cam-k"].state == "online" and open_offline(rt, "cam-k") == []


def test_a_sweep_racing_a_heartbeat_raises_nothing(rt: Runtime, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    register(rt, clock, camera(rt, "cam-r", "gridwatch:cam-r", interval_s=60))
    rt.handle_messages([status("cam-r", True, clock.now)])
    clock.advance(seconds=61)
    stale = rt.store.silent_devices(clock.now)
    assert [d for d, *_ in stale] == ["cam-r"]
    rt.handle_messages([status("cam-r", True, clock.now)])  # the heartbeat commits between the read and the sweep
    monkeypatch.setattr(rt.store, "silent_devices", lambda now: stale)
    assert rt.health_sweep() == 0
    assert rt.store.device_states()["cam-r"].state == "online" and open_offline(rt, "cam-r") == []


def test_a_will_with_a_clock_ahead_does_not_block_the_return(rt: Runtime, clock: Clock) -> None:
    register(rt, clock, camera(rt, "cam-ahead", "gridwatch:cam-ahead"))
    rt.handle_messages([status("cam-ahead", False, clock.now + timedelta(hours=2), received=clock.now)])
    assert len(open_offline(rt, "cam-ahead")) == 1
    clock.advance(minutes=10)
    assert rt.handle_messages([status("cam-ahead", True, clock.now)]).came_back == ["cam-ahead"]
    assert open_offline(rt, "cam-ahead") == []


def test_a_will_received_before_the_last_sign_of_life_changes_nothing(rt: Runtime, clock: Clock) -> None:
    register(rt, clock, camera(rt, "cam-late", "gridwatch:cam-late"))
    t0 = clock.now
    rt.handle_messages([status("cam-late", True, t0 + timedelta(minutes=5), received=t0 + timedelta(minutes=5))])
    # the will received at t0 is handled late (a redelivery, another worker, a replayed dead letter)
    late = rt.handle_messages([message("gridwatch/devices/cam-late/status", b'{"online": false}', t0)])
    assert not late.incidents_created and rt.store.device_states()["cam-late"].state == "online"


def test_a_heartbeat_received_before_the_sweep_but_committed_after_revives(rt: Runtime, clock: Clock) -> None:
    register(rt, clock, camera(rt, "cam-edge", "gridwatch:cam-edge", interval_s=60))
    t0 = clock.now
    rt.handle_messages([status("cam-edge", True, t0, received=t0)])
    clock.advance(seconds=61)
    assert rt.health_sweep() == 1
    # received at t0 + 59.9 s, still in the worker's batch when the sweep ran
    back = rt.handle_messages([status("cam-edge", True, t0 + timedelta(seconds=59.9), received=t0 + timedelta(seconds=59.9))])
    assert back.came_back == ["cam-edge"] and open_offline(rt, "cam-edge") == []


def test_a_redelivered_will_raises_one_offline_incident(rt: Runtime, clock: Clock) -> None:
    register(rt, clock, camera(rt, "cam-w2", "gridwatch:cam-w2"))
    will = message("gridwatch/devices/cam-w2/status", b'{"online": false}', clock.now)
    rt.handle_messages([will])
    redelivered = message("gridwatch/devices/cam-w2/status", b'{"online": false}', clock.now + timedelta(seconds=40))
    assert not rt.handle_messages([redelivered]).incidents_created
    assert len(open_offline(rt, "cam-w2")) == 1 and rt.store.count_alarms() == 1


def test_an_offline_incident_is_cleared_even_when_not_dispatched(store_backend: object, clock: Clock) -> None:
    from tests.integration.apphelpers import make_runtime, seed

    seed(store_backend)  # type: ignore[arg-type]
    rt = make_runtime(store_backend, clock, auto_dispatch=False)  # type: ignore[arg-type]
    register(rt, clock, camera(rt, "cam-nd", "gridwatch:cam-nd"))
    rt.handle_messages([message("gridwatch/devices/cam-nd/status", b'{"online": false}', clock.now)])
    (incident,) = open_offline(rt, "cam-nd")
    assert incident.state.value == "reported"
    clock.advance(minutes=1)
    rt.handle_messages([status("cam-nd", True, clock.now)])
    assert rt.store.incident(incident.id).state.value == "closed"  # type: ignore[union-attr]


def test_level_state_survives_a_restart(rt: Runtime, clock: Clock) -> None:
    from tests.integration.apphelpers import make_runtime

    register(rt, clock, camera(rt, "smk-r", "zigbee2mqtt:smk_restart", kind="smoke"))
    assert rt.handle_messages([message("zigbee2mqtt/smk_restart", b'{"smoke": true}', clock.now)]).alarms_stored == 1
    again = make_runtime(rt.store, clock)  # a restarted worker; the broker redelivers the unacked state report
    assert again.handle_messages([message("zigbee2mqtt/smk_restart", b'{"smoke": true}', clock.now + timedelta(seconds=3))]).alarms_stored == 0
    again.handle_messages([message("zigbee2mqtt/smk_restart", b'{"smoke": false}', clock.now + timedelta(seconds=9))])
    assert again.handle_messages([message("zigbee2mqtt/smk_restart", b'{"smoke": true}', clock.now + timedelta(seconds=20))]).alarms_stored == 1


def test_a_bridge_cannot_speak_for_a_device_of_another_format(rt: Runtime, clock: Clock) -> None:
    fence = sorted(d.id for d in rt.devices.values() if d.kind == "fence")[0]
    forged = rt.handle_messages([message(f"zigbee2mqtt/{fence}", b'{"smoke": true}', clock.now)])
    assert forged.alarms_stored == 0 and forged.dead_letters == 1
    assert rt.store.dead_letters(limit=1)[0].dead_letter.reason == "unknown_device"


def test_an_nvr_keep_alive_counts_for_its_registered_channels(rt: Runtime, clock: Clock) -> None:
    register(rt, clock, camera(rt, "nvr1-ch0", "dahua:nvr1/0"), camera(rt, "nvr1-ch1", "dahua:nvr1/1", n=1))
    r = rt.handle_messages([message("dahua/nvr1/event", b"--myboundary\r\nContent-Type: text/plain\r\n\r\nHeartbeat\r\n", clock.now)])
    assert r.dead_letters == 0
    states = rt.store.device_states()
    assert states["nvr1-ch0"].state == states["nvr1-ch1"].state == "online"


def test_a_dead_letter_is_replayed_once(rt: Runtime, clock: Clock) -> None:
    start = clock.now.timestamp()
    rt.handle_messages([message("frigate/events", frigate_event("new", "ev-twice", "porch", start), clock.now)])
    (letter,) = rt.store.dead_letters(limit=1, reason="unknown_device")
    register(rt, clock, camera(rt, "cam-porch", "frigate:porch"))
    with rt.store.unit_of_work() as uow:  # another replay got there first
        assert uow.mark_dead_letters([letter.id], at=clock.now, result="accepted elsewhere", replayed=True) == 1
    (r,) = rt.replay_dead_letters([letter.id])
    assert r["status"] == "already_replayed" and rt.store.count_alarms() == 0


def test_writers_lock_device_rows_first_so_they_never_deadlock(rt: Runtime, clock: Clock) -> None:
    """The runtime's order: lock every device row of the batch (sorted), then touch / mark offline."""
    import threading
    import time

    for n, d in enumerate(("dev-a", "dev-b", "dev-c")):
        register(rt, clock, camera(rt, d, f"gridwatch:{d}", n=n))
    errors: list[BaseException] = []
    first_locked = threading.Event()

    def worker1() -> None:  # a batch: heartbeats of a and c, the will of b
        try:
            with rt.store.unit_of_work() as uow:
                uow.lock_devices({"dev-a", "dev-b", "dev-c"})
                uow.touch_devices({"dev-a": clock.now, "dev-c": clock.now})
                first_locked.set()
                time.sleep(0.3)
                uow.mark_offline([("dev-b", clock.now, {"reason": "will"}, None)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def worker2() -> None:  # another worker: the wills of b and c
        try:
            first_locked.wait(5)
            with rt.store.unit_of_work() as uow:
                uow.lock_devices({"dev-c", "dev-b"})
                uow.mark_offline([("dev-b", clock.now, {"reason": "will"}, None), ("dev-c", clock.now, {"reason": "will"}, None)])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker1), threading.Thread(target=worker2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    states = rt.store.device_states()
    assert states["dev-b"].state == "offline" and states["dev-a"].state == "online"


def test_the_live_stream_carries_device_states_to_the_streets_wall(rt: Runtime, clock: Clock) -> None:
    import asyncio

    device = camera(rt, "cam-live", "gridwatch:cam-live")
    register(rt, clock, device)
    street = rt.grid_by_code[rt.grid_by_code[device.grid_code].parent_code].code  # type: ignore[index]

    async def watch() -> tuple[str, dict]:  # type: ignore[type-arg]
        mine = rt.hub.subscribe(grid=street, kinds=frozenset({"device"}))
        elsewhere = rt.hub.subscribe(grid="999999999")
        await asyncio.to_thread(rt.handle_messages, [message("gridwatch/devices/cam-live/status", b'{"online": false}', clock.now)])
        got = await asyncio.wait_for(mine.queue.get(), 10)
        assert elsewhere.queue.empty()
        return got

    kind, body = asyncio.run(watch())
    assert kind == "device" and body["device_id"] == "cam-live" and body["state"] == "offline"
    assert body["route"]["l3"] == device.grid_code and body["route"]["l2"] == street
