"""Property-based: every decoder, fed random and mutated payloads, returns normalized messages or a
dead letter — never an exception (hypothesis)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.adapters import hikvision, osmand
from ingest.decode import decode_messages
from ingest.model import (
    Alarm,
    AlarmEnd,
    DeadLetter,
    DeviceStatus,
    HaEntity,
    PatrollerPosition,
    Reading,
)

pytestmark = pytest.mark.unit

RECEIVED = datetime(2026, 11, 21, 0, 15, 3, tzinfo=UTC)
PAYLOADS = Path(__file__).resolve().parents[1] / "fixtures" / "payloads"
NORMALIZED = (Alarm, AlarmEnd, Reading, DeviceStatus, PatrollerPosition, HaEntity)

#: one topic per format, and a real payload of it (the seed the mutations start from)
SAMPLES: list[tuple[str, bytes]] = [
    ("gridwatch/devices/fence-0001/alarm", b'{"id": "m1", "ts": "2026-11-21T08:15:02+08:00", "type": "fence.intrusion", "zone": "Z4"}'),
    ("gridwatch/devices/th-1/reading", b'[{"ts": "2026-11-21T08:15:02+08:00", "metric": "temperature_max", "value": 81.5, "unit": "C"}]'),
    ("gridwatch/devices/th-1/status", b'{"ts": "2026-11-21T08:15:02+08:00", "online": true, "battery": 80}'),
    ("gridwatch/devices/host-7/fence", (PAYLOADS / "fence" / "intrusion.json").read_bytes()),
    ("gridwatch/devices/host-7/fence", (PAYLOADS / "contactid" / "perimeter_alarm.json").read_bytes()),
    ("gridwatch/patrollers/P1/location", b'{"ts": "2026-11-21T08:15:02+08:00", "lat": 27.6, "lon": 113.8, "acc": 5}'),
    ("owntracks/P1/phone", b'{"_type": "location", "tst": 1763683200, "lat": 27.6, "lon": 113.8, "acc": 5}'),
    ("owntracks/P1/phone/event", (PAYLOADS / "owntracks" / "transition_enter.json").read_bytes()),
    ("owntracks/P1/phone", (PAYLOADS / "owntracks" / "lwt.json").read_bytes()),
    ("frigate/events", (PAYLOADS / "frigate" / "event_new.json").read_bytes()),
    ("frigate/reviews", (PAYLOADS / "frigate" / "review_alert.json").read_bytes()),
    ("hikvision/gate/event", (PAYLOADS / "hikvision" / "linedetection.xml").read_bytes()),
    ("hikvision/roof/event", (PAYLOADS / "hikvision" / "tmpa.json").read_bytes()),
    ("dahua/nvr1/event", (PAYLOADS / "dahua" / "attach_stream.txt").read_bytes()),
    ("onvif/cam1/event", (PAYLOADS / "onvif" / "notify_two.xml").read_bytes()),
    ("zigbee2mqtt/hall_smoke", (PAYLOADS / "zigbee2mqtt" / "heiman_hs1sa_smoke.json").read_bytes()),
    ("zigbee2mqtt/hall_smoke/availability", b'{"state": "offline"}'),
    ("homeassistant/binary_sensor/hall/smoke/config", (PAYLOADS / "homeassistant" / "z2m_smoke_binary_sensor_config.json").read_bytes()),
    ("homeassistant/binary_sensor/garden/state", b"ON"),
]
HA = {"homeassistant/binary_sensor/garden/state": [HaEntity("homeassistant/binary_sensor/garden/state", "binary_sensor", "garden", "motion")]}


def check(out: object) -> None:
    if isinstance(out, DeadLetter):
        assert out.reason and out.detail and isinstance(out.payload, bytes)
        return
    assert isinstance(out, list), out
    for m in out:
        assert isinstance(m, NORMALIZED), m
        ts = getattr(m, "ts", None)
        assert ts is None or ts.utcoffset() is not None  # every timestamp is aware


def test_every_sample_decodes_to_something_normalized() -> None:
    for topic, payload in SAMPLES:
        out = decode_messages(topic, payload, RECEIVED, ha_entities=HA)
        assert not isinstance(out, DeadLetter), (topic, out)
        check(out)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


def _mutate_json(payload: bytes, data: st.DataObject) -> bytes:
    try:
        obj = json.loads(payload)
    except ValueError:
        return payload
    if isinstance(obj, dict) and obj:
        key = data.draw(st.sampled_from(sorted(obj)))
        action = data.draw(st.sampled_from(["drop", "replace", "nest"]))
        if action == "drop":
            obj.pop(key)
        elif action == "replace":
            obj[key] = data.draw(JSON_VALUES)
        elif isinstance(obj[key], dict) and obj[key]:
            inner = data.draw(st.sampled_from(sorted(obj[key])))
            obj[key][inner] = data.draw(JSON_VALUES)
    elif isinstance(obj, list) and obj:
        obj[data.draw(st.integers(0, len(obj) - 1))] = data.draw(JSON_VALUES)
    return json.dumps(obj, allow_nan=True).encode()


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_payloads_never_raise(data: st.DataObject) -> None:
    topic, payload = data.draw(st.sampled_from(SAMPLES))
    how = data.draw(st.sampled_from(["json", "bytes", "truncate", "splice"]))
    if how == "json":
        payload = _mutate_json(payload, data)
    elif how == "bytes" and payload:
        i = data.draw(st.integers(0, len(payload) - 1))
        payload = payload[:i] + data.draw(st.binary(min_size=1, max_size=4)) + payload[i + 1:]
    elif how == "truncate":
        payload = payload[: data.draw(st.integers(0, len(payload)))]
    else:
        payload = payload + data.draw(st.binary(max_size=16))
    check(decode_messages(topic, payload, RECEIVED, ha_entities=HA))


@settings(max_examples=300, deadline=None)
@given(topic=st.sampled_from([t for t, _ in SAMPLES]), payload=st.binary(max_size=300))
def test_random_bytes_never_raise(topic: str, payload: bytes) -> None:
    check(decode_messages(topic, payload, RECEIVED, ha_entities=HA))


@settings(max_examples=200, deadline=None)
@given(payload=JSON_VALUES, topic=st.sampled_from([t for t, _ in SAMPLES]))
def test_random_json_never_raises(payload: object, topic: str) -> None:
    check(decode_messages(topic, json.dumps(payload, allow_nan=True).encode(), RECEIVED, ha_entities=HA))


@settings(max_examples=200, deadline=None)
@given(content_type=st.sampled_from(["application/xml", "application/json", "multipart/form-data; boundary=xyz",
                                     "multipart/form-data", "text/plain", ""]),
       body=st.binary(max_size=400))
def test_isapi_http_bodies_never_raise(content_type: str, body: bytes) -> None:
    out = hikvision.decode_http(content_type, body, RECEIVED)
    check(out.result)


@settings(max_examples=300, deadline=None)
@given(params=st.dictionaries(st.sampled_from(["id", "deviceid", "lat", "lon", "location", "timestamp", "accuracy",
                                                "speed", "bearing", "altitude", "batt", "x"]), st.text(max_size=24), max_size=8))
def test_osmand_queries_never_raise(params: dict[str, str]) -> None:
    check(osmand.decode_query(params, RECEIVED, topic="http/osmand", raw=b""))
