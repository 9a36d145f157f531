"""Golden tests of the sensor-side adapters: reading v1, status v1, fence JSON + Contact ID, OwnTracks
transition/lwt, OsmAnd, Zigbee2MQTT and Home Assistant discovery — payloads from the vendors' documents."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.adapters import (
    fence,
    homeassistant,
    location,
    osmand,
    reading_v1,
    status_v1,
    zigbee2mqtt,
)
from ingest.adapters.common import MAX_PAYLOAD_BYTES
from ingest.model import (
    Alarm,
    AlarmEnd,
    DeadLetter,
    DeviceStatus,
    HaEntity,
    Normalized,
    PatrollerPosition,
    Reading,
)

pytestmark = pytest.mark.unit

RECEIVED = datetime(2026, 11, 21, 0, 15, 3, tzinfo=UTC)
TS = datetime(2026, 11, 21, 0, 15, 2, tzinfo=UTC)  # = 2026-11-21T08:15:02+08:00 = epoch 1795220102
EPOCH = 1795220102
PAYLOADS = Path(__file__).resolve().parent.parent / "fixtures" / "payloads"


def fixture(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def dead(result: object, reason: str) -> DeadLetter:
    assert isinstance(result, DeadLetter), result
    assert result.reason == reason, (result.reason, result.detail)
    return result


def ok(result: Sequence[Normalized] | DeadLetter) -> list[Normalized]:
    assert isinstance(result, list), result
    return result


def only(result: Sequence[Normalized] | DeadLetter, kind: type) -> list[Any]:
    return [item for item in ok(result) if isinstance(item, kind)]


# == reading v1 ===============================================================================

R_TOPIC = "gridwatch/devices/fence-0001/reading"


def readings(payload: bytes) -> list[Reading] | DeadLetter:
    return reading_v1.decode("fence-0001", payload, RECEIVED, topic=R_TOPIC)


def test_one_reading() -> None:
    out = readings(b'{"ts": "2026-11-21T08:15:02+08:00", "metric": "voltage_kv", "value": 7.9, "unit": "kV"}')
    assert out == [Reading("fence-0001", TS, "voltage_kv", 7.9, "kV")]


def test_list_of_readings_with_epoch_seconds_ms_and_extra_fields() -> None:
    body = [
        {"ts": EPOCH, "metric": "temperature", "value": 21.5, "unit": "°C"},
        {"ts": EPOCH * 1000, "metric": "battery", "value": 87},
        {"ts": "2026-11-21T00:15:02Z", "metric": "fence.zone3.voltage_kv", "value": -0.0, "unit": None, "q": 1},
    ]
    out = readings(json.dumps(body).encode())
    assert out == [
        Reading("fence-0001", TS, "temperature", 21.5, "°C"),
        Reading("fence-0001", TS, "battery", 87.0, None),
        Reading("fence-0001", TS, "fence.zone3.voltage_kv", 0.0, None),
    ]
    assert all(isinstance(r.value, float) and r.ts.tzinfo is not None for r in only(out, Reading))


def test_empty_list_is_nothing() -> None:
    assert readings(b"[]") == []


def test_thousand_readings_pass_and_one_more_is_refused() -> None:
    item = {"ts": EPOCH, "metric": "t", "value": 1}
    assert len(ok(readings(json.dumps([item] * reading_v1.MAX_READINGS).encode()))) == 1000
    letter = dead(readings(json.dumps([item] * 1001).encode()), "schema")
    assert "at most 1000" in letter.detail


@pytest.mark.parametrize("ts", ["2026-11-21T08:15:02", "2026-11-21 08:15:02", "2026-11-21"])
def test_zoneless_ts_is_its_own_reason(ts: str) -> None:
    letter = dead(readings(json.dumps({"ts": ts, "metric": "t", "value": 1}).encode()), "ts_without_zone")
    assert letter.detail.startswith("ts: expected a zone offset")


@pytest.mark.parametrize("ts", ["yesterday", "1795220102", "0000-00-00T00:00:00", True, None, [1]])
def test_unreadable_ts_is_a_schema_error(ts: object) -> None:
    assert dead(readings(json.dumps({"ts": ts, "metric": "t", "value": 1}).encode()), "schema").detail.startswith("ts:")


def test_missing_fields_are_named() -> None:
    letter = dead(readings(b"{}"), "schema")
    assert letter.detail == ("ts: required field is missing; metric: required field is missing; "
                             "value: required field is missing")


def test_unset_device_clock_falls_back_to_the_receive_time() -> None:
    out = readings(b'{"ts": 0, "metric": "t", "value": 1}')
    assert only(out, Reading)[0].ts == RECEIVED


def test_bad_item_in_a_list_is_named_with_its_index() -> None:
    body = [{"ts": EPOCH, "metric": "t", "value": i} for i in range(3)]
    body.append({"ts": EPOCH, "metric": "t", "value": "hot"})
    letter = dead(readings(json.dumps(body).encode()), "schema")
    assert letter.detail == '[3].value: expected a finite number (got "hot")'


@pytest.mark.parametrize(
    ("item", "field"),
    [({"value": True}, "value"), ({"value": "1"}, "value"), ({"value": None}, "value"), ({"metric": "Temp"}, "metric"),
     ({"metric": ""}, "metric"), ({"metric": "x" * 65}, "metric"), ({"metric": "a-b"}, "metric"),
     ({"unit": 5}, "unit"), ({"unit": "u" * 33}, "unit")],
)
def test_bad_fields_are_refused(item: dict[str, object], field: str) -> None:
    body = {"ts": EPOCH, "metric": "t", "value": 1.0, **item}
    assert dead(readings(json.dumps(body).encode()), "schema").detail.startswith(f"{field}:")


def test_infinite_and_nan_values_are_refused() -> None:
    assert "finite" in dead(readings(b'{"ts": 1795220102, "metric": "t", "value": 1e999}'), "schema").detail
    dead(readings(b'{"ts": 1795220102, "metric": "t", "value": NaN}'), "invalid_json")


def test_many_bad_items_are_summarised() -> None:
    body = [{"ts": EPOCH, "metric": "t", "value": "x"}] * 8
    letter = dead(readings(json.dumps(body).encode()), "schema")
    assert letter.detail.count("value: expected") == 5 and letter.detail.endswith("and 3 more bad items")


def test_zoneless_and_other_errors_together_are_schema() -> None:
    body = [{"ts": "2026-11-21T08:15:02", "metric": "t", "value": 1}, {"ts": EPOCH, "metric": "T", "value": 1}]
    dead(readings(json.dumps(body).encode()), "schema")
    body = [{"ts": "2026-11-21T08:15:02", "metric": "t", "value": 1}] * 2
    dead(readings(json.dumps(body).encode()), "ts_without_zone")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [(b"\xff\xfe", "not_utf8"), (b"{", "invalid_json"), (b"42", "schema"), (b'"x"', "schema"), (b"[1]", "schema"),
     (b"[" + b" " * MAX_PAYLOAD_BYTES + b"]", "payload_too_large")],
)
def test_bad_payloads_are_dead_lettered(payload: bytes, reason: str) -> None:
    letter = dead(readings(payload), reason)
    assert letter.topic == R_TOPIC and letter.payload == payload and letter.received_at == RECEIVED


def test_naive_received_at_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        reading_v1.decode("d", b"[]", datetime(2026, 1, 1), topic=R_TOPIC)


# == status v1 ================================================================================

S_TOPIC = "gridwatch/devices/smoke-0007/status"


def status(payload: bytes) -> list[Normalized] | DeadLetter:
    return status_v1.decode("smoke-0007", payload, RECEIVED, topic=S_TOPIC)


def test_full_status_report() -> None:
    payload = (b'{"ts": "2026-11-21T08:15:02+08:00", "online": true, "battery": 87, "voltage": 12.6, "rssi": -71,'
               b' "firmware": "2.1.0", "tamper": true, "power": "mains", "battery_low": false}')
    out = ok(status(payload))
    assert out[0] == DeviceStatus("smoke-0007", TS, True, "status", RECEIVED, payload,
                                  {"battery": 87, "voltage": 12.6, "rssi": -71, "firmware": "2.1.0", "tamper": True,
                                   "power": "mains", "battery_low": False})
    assert only(out, Reading) == [Reading("smoke-0007", TS, "battery", 87.0, "%"),
                                  Reading("smoke-0007", TS, "voltage", 12.6, "V"),
                                  Reading("smoke-0007", TS, "rssi", -71.0, "dBm")]
    [alarm] = only(out, Alarm)
    assert (alarm.type, alarm.level, alarm.msg_id, alarm.severity) == (
        "device.tamper", True, "device.tamper@2026-11-21T00:15:02+00:00", 3)
    assert alarm.data == {"ts_offset": "+08:00", "ts_source": "2026-11-21T08:15:02+08:00"}
    assert alarm.raw == payload and alarm.received_at == RECEIVED and alarm.warnings == ()
    assert {(e.type, e.msg_id) for e in only(out, AlarmEnd)} == {("device.low_battery", None),
                                                                 ("device.power_loss", None)}


@pytest.mark.parametrize(
    ("payload", "online", "source"),
    [(b'{"online": false}', False, "will"), (b"offline", False, "will"), (b" OFFLINE\n", False, "will"),
     (b'"offline"', False, "will"), (b"online", True, "status"), (b'{"online": true}', True, "status"),
     (b'{"online": false, "ts": 1795220102}', False, "status")],
)
def test_wills_and_plain_text(payload: bytes, online: bool, source: str) -> None:
    [st_] = ok(status(payload))
    assert isinstance(st_, DeviceStatus)
    assert (st_.online, st_.source) == (online, source)
    assert st_.ts == (TS if b"ts" in payload else RECEIVED)


@pytest.mark.parametrize("payload", [b'{"heartbeat": true}', b'{"ts": 1795220102, "uptime_s": 3600}'])
def test_heartbeats(payload: bytes) -> None:
    [hb] = ok(status(payload))
    assert isinstance(hb, DeviceStatus) and (hb.online, hb.source) == (True, "heartbeat")


@pytest.mark.parametrize(
    ("fields", "alarm_type", "active"),
    [({"power": "lost"}, "device.power_loss", True), ({"power": "battery"}, "device.power_loss", True),
     ({"power_loss": True}, "device.power_loss", True), ({"power": "AC"}, "device.power_loss", False),
     ({"power_loss": False}, "device.power_loss", False), ({"battery_low": True}, "device.low_battery", True),
     ({"tamper": False}, "device.tamper", False), ({"power_loss": True, "power": "mains"}, "device.power_loss", True)],
)
def test_level_fields(fields: dict[str, object], alarm_type: str, active: bool) -> None:
    out = ok(status(json.dumps({"ts": EPOCH, "online": True, **fields}).encode()))
    levels = [i for i in out if isinstance(i, Alarm | AlarmEnd)]
    assert len(levels) == 1 and levels[0].type == alarm_type
    assert isinstance(levels[0], Alarm if active else AlarmEnd)


@pytest.mark.parametrize(
    ("payload", "reason", "field"),
    [(b'{"ts": "2026-11-21T08:15:02", "online": true}', "ts_without_zone", "ts"),
     (b'{"ts": "soon", "online": true}', "schema", "ts"), (b'{"ts": "1795220102"}', "schema", "ts"),
     (b'{"online": "yes"}', "schema", "online"), (b'{"online": 1}', "schema", "online"),
     (b'{"battery": "full"}', "schema", "battery"), (b'{"rssi": true}', "schema", "rssi"),
     (b'{"tamper": "no"}', "schema", "tamper"), (b'{"power": "weird"}', "schema", "power"),
     (b'{"heartbeat": "y"}', "schema", "heartbeat"), (b"[]", "schema", "payload"), (b"maybe", "invalid_json", ""),
     (b"\xc3\x28", "not_utf8", "")],
)
def test_bad_status_is_dead_lettered(payload: bytes, reason: str, field: str) -> None:
    assert dead(status(payload), reason).detail.startswith(field)


# == zigbee2mqtt ==============================================================================

def z2m(topic: str, payload: bytes, **kw: str) -> list[Normalized] | DeadLetter:
    return zigbee2mqtt.decode(topic, payload, RECEIVED, **kw)


def test_z2m_smoke_detector_state() -> None:
    payload = fixture("zigbee2mqtt/heiman_hs1sa_smoke.json")
    out = ok(z2m("zigbee2mqtt/kitchen_smoke", payload))
    ident = "zigbee2mqtt:kitchen_smoke"
    assert only(out, Reading) == [Reading(ident, TS, "battery", 100.0, "%"),
                                  Reading(ident, TS, "linkquality", 120.0, "lqi"),
                                  Reading(ident, TS, "voltage", 3.0, "V")]
    [alarm] = only(out, Alarm)
    assert alarm == Alarm(ident, "smoke.alarm@2026-11-21T00:15:02+00:00", TS, "smoke.alarm", 4, RECEIVED, payload,
                          data={"ts_offset": "+08:00", "ts_source": "2026-11-21T08:15:02+08:00"}, level=True)
    assert sorted(e.type for e in only(out, AlarmEnd)) == ["device.low_battery", "device.tamper"]


def test_z2m_contact_false_means_open() -> None:
    out = ok(z2m("zigbee2mqtt/back_door", fixture("zigbee2mqtt/aqara_mccgq11lm_door_open.json")))
    [alarm] = only(out, Alarm)
    assert alarm.type == "sensor.contact_open" and alarm.ts == TS and alarm.data["ts_offset"] == "epoch ms"
    closed = ok(z2m("zigbee2mqtt/back_door", b'{"contact": true}'))
    assert closed == [AlarmEnd("zigbee2mqtt:back_door", RECEIVED, RECEIVED, b'{"contact": true}', None,
                               "sensor.contact_open")]


def test_z2m_without_last_seen_uses_the_receive_time() -> None:
    out = ok(z2m("zigbee2mqtt/cellar", fixture("zigbee2mqtt/aqara_sjcgq11lm_leak.json")))
    [alarm] = only(out, Alarm)
    assert alarm.type == "sensor.water_leak" and alarm.ts == RECEIVED
    assert alarm.msg_id == f"sensor.water_leak@{RECEIVED.isoformat()}" and alarm.data["ts_offset"] == "received"
    assert alarm.warnings == ()


def test_z2m_climate_sensor_is_readings_only() -> None:
    out = ok(z2m("zigbee2mqtt/office/climate", fixture("zigbee2mqtt/aqara_wsdcgq11lm_climate.json")))
    assert {(r.metric, r.value, r.unit) for r in out} == {  # type: ignore[union-attr]
        ("battery", 97.0, "%"), ("humidity", 40.2, "%"), ("linkquality", 134.0, "lqi"),
        ("temperature", 21.5, "°C"), ("voltage", 2.985, "V")}
    assert {r.device_id for r in out} == {"zigbee2mqtt:office/climate"}  # type: ignore[union-attr]


@pytest.mark.parametrize(("field", "alarm_type"), [("occupancy", "sensor.occupancy"), ("tamper", "device.tamper"),
                                                   ("battery_low", "device.low_battery"), ("smoke", "smoke.alarm")])
def test_z2m_each_boolean(field: str, alarm_type: str) -> None:
    [alarm] = ok(z2m("zigbee2mqtt/x", json.dumps({field: True}).encode()))
    assert isinstance(alarm, Alarm) and alarm.type == alarm_type and alarm.level
    [end] = ok(z2m("zigbee2mqtt/x", json.dumps({field: False}).encode()))
    assert isinstance(end, AlarmEnd) and end.type == alarm_type and end.msg_id is None


def test_z2m_zoneless_last_seen_is_assumed_local_with_a_warning() -> None:
    [alarm] = ok(z2m("zigbee2mqtt/x", b'{"smoke": true, "last_seen": "2026-11-21T08:15:02"}'))
    assert isinstance(alarm, Alarm) and alarm.ts == TS
    assert alarm.data["ts_offset"] == "assumed +08:00" and len(alarm.warnings) == 1


def test_z2m_null_and_odd_values_are_skipped() -> None:
    assert z2m("zigbee2mqtt/x", b'{"smoke": null, "battery": null, "temperature": "21", "tamper": 1}') == []
    assert z2m("zigbee2mqtt/lamp", b'{"state": "ON", "brightness": 200}') == []


@pytest.mark.parametrize(
    ("topic", "payload", "ident", "online"),
    [("zigbee2mqtt/kitchen_smoke/availability", b'{"state":"online"}', "zigbee2mqtt:kitchen_smoke", True),
     ("zigbee2mqtt/kitchen_smoke/availability", b'{"state":"offline"}', "zigbee2mqtt:kitchen_smoke", False),
     ("zigbee2mqtt/floor1/hall/pir/availability", b"offline", "zigbee2mqtt:floor1/hall/pir", False),
     ("zigbee2mqtt/x/availability", b"online", "zigbee2mqtt:x", True)],
)
def test_z2m_availability(topic: str, payload: bytes, ident: str, online: bool) -> None:
    assert z2m(topic, payload) == [DeviceStatus(ident, RECEIVED, online, "availability", RECEIVED, payload)]


@pytest.mark.parametrize("topic", ["zigbee2mqtt/bridge/state", "zigbee2mqtt/bridge/devices", "zigbee2mqtt/bridge",
                                   "zigbee2mqtt/lamp/set", "zigbee2mqtt/lamp/get", "zigbee2mqtt/lamp/set/state",
                                   "zigbee2mqtt/a/b/get/brightness"])
def test_z2m_bridge_and_commands_are_nothing(topic: str) -> None:
    assert z2m(topic, b'{"state": "online", "smoke": true}') == []


def test_z2m_custom_base_and_empty_payload() -> None:
    [alarm] = ok(z2m("z2m-site2/hall_smoke", b'{"smoke": true}', base="z2m-site2"))
    assert isinstance(alarm, Alarm) and alarm.device_id == "zigbee2mqtt:hall_smoke"
    assert z2m("zigbee2mqtt/removed_device", b"") == []


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [("zigbee2mqtt/x/availability", b'{"state":"maybe"}', "schema"), ("zigbee2mqtt/x/availability", b"1", "schema"),
     ("zigbee2mqtt/x", b"[1,2]", "schema"), ("zigbee2mqtt/x", b"ON", "invalid_json"),
     ("zigbee2mqtt/x", b'{"smoke":\xff}', "not_utf8"), ("frigate/events", b"{}", "unhandled_topic"),
     ("zigbee2mqtt/", b"{}", "unhandled_topic"), ("zigbee2mqtt/x", b"{" + b" " * MAX_PAYLOAD_BYTES + b"}",
                                                  "payload_too_large")],
)
def test_z2m_dead_letters(topic: str, payload: bytes, reason: str) -> None:
    dead(z2m(topic, payload), reason)


# == Home Assistant discovery ================================================================

def config(topic: str, payload: bytes) -> list[HaEntity]:
    out = ok(homeassistant.decode(topic, payload, RECEIVED))
    assert all(isinstance(e, HaEntity) for e in out)
    return out  # type: ignore[return-value]


SMOKE_CONFIG_TOPIC = "homeassistant/binary_sensor/0x00158d0001a2b3c4/smoke/config"


def test_ha_zigbee2mqtt_binary_sensor_config() -> None:
    assert config(SMOKE_CONFIG_TOPIC, fixture("homeassistant/z2m_smoke_binary_sensor_config.json")) == [HaEntity(
        state_topic="zigbee2mqtt/kitchen_smoke", component="binary_sensor",
        unique_id="0x00158d0001a2b3c4_smoke_zigbee2mqtt", device_class="smoke", payload_on="True",
        payload_off="False", unit=None, value_template="{{ value_json.smoke }}",
        availability_topic="zigbee2mqtt/bridge/state")]


def test_ha_abbreviations_and_tilde() -> None:
    [entity] = config("homeassistant/binary_sensor/8A3F1C_door/config",
                      fixture("homeassistant/tasmota_door_abbreviated_config.json"))
    assert entity == HaEntity(state_topic="tele/tasmota_8A3F1C/DOOR", component="binary_sensor",
                              unique_id="8A3F1C_door", device_class="door", payload_on="OPEN", payload_off="CLOSED",
                              availability_topic="tele/tasmota_8A3F1C/LWT")


def test_ha_tilde_at_the_end_and_in_availability_list() -> None:
    payload = b'{"~": "home/garage", "stat_t": "state/~", "avty": [{"t": "~/avail"}], "uniq_id": "g1"}'
    [entity] = config("homeassistant/sensor/g1/config", payload)
    assert (entity.state_topic, entity.availability_topic) == ("state/home/garage", "home/garage/avail")
    assert (entity.payload_on, entity.payload_off) == ("ON", "OFF")


def test_ha_device_discovery_gives_one_entity_per_component() -> None:
    entities = config("homeassistant/device/0AFFD2/config", fixture("homeassistant/device_discovery_config.json"))
    assert [(e.unique_id, e.component, e.state_topic, e.device_class, e.unit) for e in entities] == [
        ("temp01ae_t", "sensor", "sensorBedroom/state", "temperature", "°C"),
        ("temp01ae_h", "sensor", "sensorBedroom/state", "humidity", "%")]


def test_ha_config_removal_and_nothing_to_watch() -> None:
    assert config(SMOKE_CONFIG_TOPIC, b"") == []
    assert config("homeassistant/button/restart/config", b'{"command_topic": "x/restart", "uniq_id": "r"}') == []


def test_ha_config_without_unique_id_uses_the_topic_ids() -> None:
    [entity] = config("homeassistant/binary_sensor/garden/motion/config", b'{"state_topic": "garden/motion"}')
    assert entity.unique_id == "garden/motion"
    [entity] = config("homeassistant/binary_sensor/motion/config", b'{"state_topic": "garden/motion"}')
    assert entity.unique_id == "motion"


@pytest.mark.parametrize(
    ("topic", "payload", "reason", "field"),
    [(SMOKE_CONFIG_TOPIC, b'{"state_topic": 5}', "schema", "state_topic"),
     (SMOKE_CONFIG_TOPIC, b'{"state_topic": "a/+"}', "schema", "state_topic"),
     (SMOKE_CONFIG_TOPIC, b'{"state_topic": "a", "unique_id": ""}', "schema", "unique_id"),
     (SMOKE_CONFIG_TOPIC, b'{"state_topic": "a", "dev_cla": ["smoke"]}', "schema", "device_class"),
     (SMOKE_CONFIG_TOPIC, b'{"state_topic": "a", "pl_on": {"x": 1}}', "schema", "payload_on"),
     ("homeassistant/device/d1/config", b'{"cmps": 3}', "schema", "components"),
     ("homeassistant/device/d1/config", b'{"cmps": {"a": {"stat_t": "x"}}}', "schema", "components.a.platform"),
     (SMOKE_CONFIG_TOPIC, b"{", "invalid_json", ""), (SMOKE_CONFIG_TOPIC, b"[]", "schema", "payload"),
     ("homeassistant/binary_sensor/a/b/c/config", b"{}", "unknown_entity", "topic")],
)
def test_ha_bad_configs(topic: str, payload: bytes, reason: str, field: str) -> None:
    assert dead(homeassistant.decode(topic, payload, RECEIVED), reason).detail.startswith(field)


def entity(component: str = "binary_sensor", device_class: str | None = "smoke", **kw: str) -> HaEntity:
    return HaEntity(state_topic=kw.pop("state_topic", "home/e1"), component=component, unique_id=kw.pop("uid", "e1"),
                    device_class=device_class, **kw)


def state(topic: str, payload: bytes, *entities: HaEntity) -> list[Normalized] | DeadLetter:
    mapping: dict[str, HaEntity | list[HaEntity]] = {}
    for e in entities:
        existing = mapping.get(e.state_topic)
        mapping[e.state_topic] = [*existing, e] if isinstance(existing, list) else [e]
    return homeassistant.decode_state(topic, payload, RECEIVED, mapping)


@pytest.mark.parametrize(
    ("device_class", "alarm_type"),
    [("smoke", "smoke.alarm"), ("door", "sensor.contact_open"), ("window", "sensor.contact_open"),
     ("opening", "sensor.contact_open"), ("motion", "sensor.occupancy"), ("occupancy", "sensor.occupancy"),
     ("presence", "sensor.occupancy"), ("moisture", "sensor.water_leak"), ("tamper", "device.tamper"),
     ("battery", "device.low_battery"), ("problem", "other.homeassistant_problem")],
)
def test_ha_binary_sensor_classes(device_class: str, alarm_type: str) -> None:
    e = entity(device_class=device_class)
    [alarm] = ok(state("home/e1", b"ON", e))
    assert isinstance(alarm, Alarm)
    assert (alarm.device_id, alarm.type, alarm.level, alarm.ts, alarm.warnings) == (
        "homeassistant:e1", alarm_type, True, RECEIVED, ())
    assert alarm.msg_id == f"{alarm_type}@{RECEIVED.isoformat()}"
    assert state("home/e1", b"OFF", e) == [AlarmEnd("homeassistant:e1", RECEIVED, RECEIVED, b"OFF", None, alarm_type)]


def test_ha_unknown_binary_sensor_class_is_other_with_a_warning() -> None:
    [alarm] = ok(state("home/e1", b"ON", entity(device_class="gas")))
    assert isinstance(alarm, Alarm) and alarm.type == "other.homeassistant_gas" and len(alarm.warnings) == 1
    [alarm] = ok(state("home/e1", b"ON", entity(device_class=None)))
    assert isinstance(alarm, Alarm) and alarm.type == "other.homeassistant_binary_sensor"


def test_ha_connectivity_is_a_status_and_unmatched_state_is_nothing() -> None:
    [st_] = ok(state("home/e1", b"OFF", entity(device_class="connectivity")))
    assert isinstance(st_, DeviceStatus) and not st_.online and st_.source == "status"
    assert state("home/e1", b"unknown", entity()) == []
    assert state("home/e1", b"on", entity()) == []  # payloads compare exactly, as in Home Assistant


def test_ha_zigbee2mqtt_shared_state_topic_with_templates() -> None:
    smoke = config(SMOKE_CONFIG_TOPIC, fixture("homeassistant/z2m_smoke_binary_sensor_config.json"))[0]
    battery = config("homeassistant/sensor/0x00158d0001a2b3c4/battery/config",
                     fixture("homeassistant/z2m_battery_sensor_config.json"))[0]
    payload = fixture("zigbee2mqtt/heiman_hs1sa_smoke.json")
    out = ok(state("zigbee2mqtt/kitchen_smoke", payload, smoke, battery))
    [alarm] = only(out, Alarm)
    assert alarm.device_id == "homeassistant:0x00158d0001a2b3c4_smoke_zigbee2mqtt" and alarm.type == "smoke.alarm"
    assert only(out, Reading) == [Reading("homeassistant:0x00158d0001a2b3c4_battery_zigbee2mqtt", RECEIVED,
                                          "battery", 100.0, "%")]
    cleared = ok(state("zigbee2mqtt/kitchen_smoke", payload.replace(b'"smoke":true', b'"smoke":false'), smoke))
    assert [type(x) for x in cleared] == [AlarmEnd]


def test_ha_single_entity_mapping_is_accepted() -> None:
    e = entity()
    out = homeassistant.decode_state("home/e1", b"ON", RECEIVED, {"home/e1": e})
    assert [type(x) for x in ok(out)] == [Alarm]


@pytest.mark.parametrize(
    ("e", "payload", "metric", "value"),
    [(entity("sensor", "temperature", unit="°C"), b"21.5", "temperature", 21.5),
     (entity("sensor", None, value_template="{{ value_json.lux }}"), b'{"lux": 310}', "lux", 310.0),
     (entity("sensor", None, value_template="{{value_json['co2']}}"), b'{"co2": "612"}', "co2", 612.0),
     (entity("sensor", None, uid="Kitchen Temp-1"), b" -3 ", "kitchen_temp_1", -3.0)],
)
def test_ha_sensor_readings(e: HaEntity, payload: bytes, metric: str, value: float) -> None:
    [reading] = ok(state("home/e1", payload, e))
    assert reading == Reading(f"homeassistant:{e.unique_id}", RECEIVED, metric, value, e.unit)


@pytest.mark.parametrize("payload", [b"unavailable", b"unknown", b"", b"nan", b"inf", b"1_000", b"True"])
def test_ha_non_numeric_sensor_state_is_nothing(payload: bytes) -> None:
    assert state("home/e1", payload, entity("sensor", "temperature")) == []


def test_ha_unsupported_template_uses_the_raw_state_with_a_warning() -> None:
    e = entity(value_template="{{ 'ON' if value_json.smoke else 'OFF' }}")
    [alarm] = ok(state("home/e1", b"ON", e))
    assert isinstance(alarm, Alarm) and any("not supported" in w for w in alarm.warnings)


def test_ha_template_key_missing_is_nothing_but_bad_json_is_dead() -> None:
    e = entity(value_template="{{ value_json.smoke }}", payload_on="True", payload_off="False")
    assert state("home/e1", b'{"battery": 90}', e) == []
    dead(state("home/e1", b"ON", e), "invalid_json")
    dead(state("home/e1", b"[true]", e), "schema")


@pytest.mark.parametrize(("payload", "online"), [(b"online", True), (b"Offline", False), (b'{"state":"online"}', True)])
def test_ha_availability(payload: bytes, online: bool) -> None:
    a = entity(uid="a", availability_topic="bridge/state")
    b = entity(uid="b", state_topic="home/e2", availability_topic="bridge/state")
    out = ok(state("bridge/state", payload, a, b))
    assert out == [DeviceStatus(f"homeassistant:{x}", RECEIVED, online, "availability", RECEIVED, payload)
                   for x in ("a", "b")]


def test_ha_unknown_topic_and_bad_availability() -> None:
    letter = dead(state("home/other", b"ON", entity()), "unknown_entity")
    assert "home/other" in letter.detail
    dead(state("bridge/state", b"maybe", entity(availability_topic="bridge/state")), "invalid_json")
    dead(state("bridge/state", b'{"state": 1}', entity(availability_topic="bridge/state")), "schema")
    dead(state("home/e1", b"\xff", entity()), "not_utf8")


# == fence JSON ===============================================================================

F_TOPIC = "gridwatch/devices/host-07/fence"


def fence_msg(payload: bytes, topic: str = F_TOPIC) -> list[Normalized] | DeadLetter:
    return fence.decode(topic, payload, RECEIVED)


def test_fence_intrusion_with_voltage() -> None:
    payload = fixture("fence/intrusion.json")
    alarm, reading = ok(fence_msg(payload))
    assert alarm == Alarm(
        "fence:host-07/3", "evt-20261121-0042", TS, "fence.intrusion", 4, RECEIVED, payload, zone="3",
        data={"event": "intrusion", "host": "host-07", "voltage_kv": 7.9, "ts_offset": "+08:00",
              "ts_source": "2026-11-21T08:15:02+08:00"})
    assert reading == Reading("fence:host-07/3", TS, "voltage_kv", 7.9, "kV")


@pytest.mark.parametrize("event", ["intrusion", "touch", "cut", "short", "tamper", "low_voltage"])
def test_fence_events_map_to_fence_types(event: str) -> None:
    [alarm] = ok(fence_msg(json.dumps({"id": "e1", "ts": EPOCH, "zone": 12, "event": event}).encode()))
    assert isinstance(alarm, Alarm)
    assert (alarm.type, alarm.device_id, alarm.zone, alarm.level) == (f"fence.{event}", "fence:host-07/12", "12", False)


def test_fence_power_loss_belongs_to_the_host() -> None:
    [alarm] = ok(fence_msg(fixture("fence/power_loss.json")))
    assert isinstance(alarm, Alarm)
    assert (alarm.type, alarm.device_id, alarm.ts, alarm.data["ts_offset"]) == (
        "device.power_loss", "fence:host-07", TS, "epoch s")


def test_fence_host_level_event_without_zone() -> None:
    [alarm] = ok(fence_msg(b'{"id": "e9", "ts": 1795220102000, "event": "tamper", "zone": ""}'))
    assert isinstance(alarm, Alarm) and alarm.device_id == "fence:host-07" and alarm.zone is None


def test_fence_restore_names_its_type_or_the_latest_alarm() -> None:
    payload = fixture("fence/restore.json")
    end, reading = ok(fence_msg(payload))
    assert end == AlarmEnd("fence:host-07/3", datetime(2026, 11, 21, 0, 16, 40, tzinfo=UTC), RECEIVED, payload, None,
                           "fence.intrusion")
    assert isinstance(reading, Reading) and reading.value == 8.1
    [end] = ok(fence_msg(b'{"ts": 1795220102, "zone": "3", "event": "restore"}'))
    assert isinstance(end, AlarmEnd) and end.type is None and end.msg_id is None
    [end] = ok(fence_msg(b'{"zone": "3", "event": "restore", "restores": "power_loss"}'))
    assert isinstance(end, AlarmEnd) and (end.device_id, end.type) == ("fence:host-07", "device.power_loss")
    [end] = ok(fence_msg(b'{"zone": "3", "event": "restore", "restores": "fence.cut"}'))
    assert isinstance(end, AlarmEnd) and end.type == "fence.cut"


@pytest.mark.parametrize(
    ("payload", "ident", "data"),
    [(fixture("fence/arm.json"), "fence:host-07/2", {"armed": True}),
     (b'{"event": "disarm", "ts": 1795220102}', "fence:host-07", {"armed": False}),
     (b'{"event": "heartbeat", "ts": 1795220102, "armed": true}', "fence:host-07", {"armed": True}),
     (b'{"event": "HEARTBEAT", "ts": 1795220102}', "fence:host-07", {})],
)
def test_fence_status_events(payload: bytes, ident: str, data: dict[str, bool]) -> None:
    assert fence_msg(payload) == [DeviceStatus(ident, TS, True, "heartbeat", RECEIVED, payload, data)]


def test_fence_unknown_event_and_zoneless_ts_are_kept_with_warnings() -> None:
    [alarm] = ok(fence_msg(b'{"id": "e5", "ts": "2026-11-21 08:15:02", "zone": "3", "event": "Animal Contact"}'))
    assert isinstance(alarm, Alarm)
    assert alarm.type == "other.fence_animal_contact" and alarm.ts == TS
    assert alarm.data["ts_offset"] == "assumed +08:00" and len(alarm.warnings) == 2


def test_fence_severity_override_and_missing_ts() -> None:
    [alarm] = ok(fence_msg(b'{"id": 42, "zone": "1", "event": "short", "severity": 5}'))
    assert isinstance(alarm, Alarm)
    assert (alarm.msg_id, alarm.severity, alarm.ts, alarm.data["ts_offset"]) == ("42", 5, RECEIVED, "received")
    assert any("no timestamp" in w for w in alarm.warnings)


@pytest.mark.parametrize(
    ("payload", "field"),
    [(b'{"zone": "3", "event": "intrusion"}', "id"), (b'{"id": "", "event": "cut"}', "id"),
     (b'{"id": null, "event": "cut"}', "id"),
     (b'{"id": "e", "zone": "3"}', "event"), (b'{"id": "e", "event": 5}', "event"),
     (b'{"id": "e", "event": "cut", "zone": true}', "zone"), (b'{"id": "e", "event": "cut", "zone": "a/b"}', "zone"),
     (b'{"id": "e", "event": "cut", "voltage_kv": "8"}', "voltage_kv"),
     (b'{"id": "e", "event": "cut", "severity": 9}', "severity"),
     (b'{"event": "restore", "restores": 3}', "restores"), (b'{"event": "heartbeat", "armed": "y"}', "armed")],
)
def test_fence_bad_json_names_the_field(payload: bytes, field: str) -> None:
    assert dead(fence_msg(payload), "schema").detail.startswith(field)


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [("gridwatch/devices/host-07/alarm", b"{}", "unhandled_topic"),
     ("gridwatch/devices/+/fence", b"{}", "unhandled_topic"),
     (F_TOPIC, b"\xff", "not_utf8"), (F_TOPIC, b"{", "invalid_json"), (F_TOPIC, b"[1]", "schema"),
     (F_TOPIC, b'{"id":"e","event":"cut","ts":NaN}', "invalid_json"),
     (F_TOPIC, b"{" + b" " * MAX_PAYLOAD_BYTES + b"}", "payload_too_large")],
)
def test_fence_dead_letters(topic: str, payload: bytes, reason: str) -> None:
    dead(fence_msg(payload, topic), reason)


# == Contact ID ================================================================================

def test_cid_checksum_rule() -> None:
    # 1234 18 1 130 01 003: 1+2+3+4 + 1+8 + 1 + 1+3+10 + 10+1 + 10+10+3 = 68 → S = 7 (75 = 5 x 15)
    assert fence.checksum_ok("1234181130010037")
    assert not fence.checksum_ok("1234181130010031")
    # 1234 18 1 602 00 000: 10 + 9 + 1 + 6+10+2 + 10+10 + 10+10+10 = 88 → S = 2 (90)
    assert fence.checksum_ok("1234181602000002")
    # a checksum of 0 is sent as F (15): 1234 18 1 130 01 000: 10 + 9 + 1 + 14 + 11 + 30 = 75 → S = F (90)
    assert fence.checksum_ok("123418113001000F")
    assert not fence.checksum_ok("1234181130010000")


def test_cid_full_message_in_json() -> None:
    payload = fixture("contactid/perimeter_alarm.json")
    [alarm] = ok(fence_msg(payload))
    assert isinstance(alarm, Alarm)
    assert (alarm.device_id, alarm.msg_id, alarm.type, alarm.ts, alarm.zone, alarm.level) == (
        "fence:host-07/3", "rcv-7781", "fence.intrusion", TS, "3", False)
    assert alarm.data == {"cid": "1234 18 1131 01 003", "account": "1234", "qualifier": "1", "code": "131",
                          "partition": "01", "zone": "3", "ts_offset": "+08:00",
                          "ts_source": "2026-11-21T08:15:02+08:00"}


def test_cid_bare_16_digit_message_with_checksum() -> None:
    [alarm] = ok(fence_msg(fixture("contactid/burglary_with_checksum.txt")))
    assert isinstance(alarm, Alarm) and alarm.type == "fence.intrusion" and alarm.device_id == "fence:host-07/3"
    assert alarm.msg_id == f"cid:1234:1130:01:003:{RECEIVED.isoformat()}"


@pytest.mark.parametrize("payload", [b"1234181130010031", b'{"cid": "1234 18 1130 01 003 1"}'])
def test_cid_bad_checksum(payload: bytes) -> None:
    assert "checksum" in dead(fence_msg(payload), "bad_checksum").detail


def test_cid_restore_with_account_field() -> None:
    payload = fixture("contactid/burglary_restore.json")
    assert fence_msg(payload) == [AlarmEnd("fence:host-07/3", TS, RECEIVED, payload, None, "fence.intrusion")]


@pytest.mark.parametrize(
    ("cid", "alarm_type", "ident"),
    [("E133 01 004", "fence.intrusion", "fence:host-07/4"), ("E137 00 000", "fence.tamper", "fence:host-07"),
     ("E144 01 002", "fence.tamper", "fence:host-07/2"), ("E145 01 010", "fence.tamper", "fence:host-07/10"),
     ("E383 01 002", "fence.tamper", "fence:host-07/2"), ("E110 01 005", "smoke.alarm", "fence:host-07/5"),
     ("E111 01 005", "smoke.alarm", "fence:host-07/5"), ("E301 00 000", "device.power_loss", "fence:host-07"),
     ("E302 00 000", "device.low_battery", "fence:host-07"), ("E309 00 007", "device.low_battery", "fence:host-07"),
     ("E380 01 003", "fence.short", "fence:host-07/3"), ("E373 01 003", "fence.short", "fence:host-07/3"),
     ("E372 01 003", "fence.short", "fence:host-07/3"), ("E371 01 003", "fence.cut", "fence:host-07/3"),
     ("E378 01 003", "fence.cut", "fence:host-07/3"), ("1130 01 003", "fence.intrusion", "fence:host-07/3"),
     ("1234E13001003", "fence.intrusion", "fence:host-07/3")],
)
def test_cid_event_codes(cid: str, alarm_type: str, ident: str) -> None:
    [alarm] = ok(fence_msg(json.dumps({"cid": cid, "ts": EPOCH}).encode()))
    assert isinstance(alarm, Alarm) and (alarm.type, alarm.device_id) == (alarm_type, ident)
    assert alarm.warnings == ()


def test_cid_status_report_is_a_level_alarm() -> None:
    [alarm] = ok(fence_msg(b'{"cid": "P130 01 003", "account": "1234", "ts": 1795220102}'))
    assert isinstance(alarm, Alarm) and alarm.level and alarm.msg_id == f"cid:1234:6130:01:003:{TS.isoformat()}"


@pytest.mark.parametrize(("cid", "armed"), [("E401 01 005", False), ("R401 01 005", True), ("3407 02 001", True),
                                             ("1403 01 000", False)])
def test_cid_open_close_is_an_arming_heartbeat(cid: str, armed: bool) -> None:
    [hb] = ok(fence_msg(json.dumps({"cid": cid, "ts": EPOCH}).encode()))
    assert isinstance(hb, DeviceStatus) and (hb.device_id, hb.source, hb.online) == ("fence:host-07", "heartbeat", True)
    assert hb.data["armed"] is armed


def test_cid_periodic_test_is_a_heartbeat() -> None:
    [hb] = ok(fence_msg(b'"1234 18 1602 00 000"'))
    assert isinstance(hb, DeviceStatus) and hb.source == "heartbeat" and hb.ts == RECEIVED
    [hb] = ok(fence_msg(b"1234181602000002"))
    assert isinstance(hb, DeviceStatus)


def test_cid_unknown_code_is_other_with_a_warning() -> None:
    [alarm] = ok(fence_msg(b'{"cid": "E120 01 001", "ts": 1795220102}'))
    assert isinstance(alarm, Alarm) and alarm.type == "other.contactid_120"
    assert any("120" in w for w in alarm.warnings)
    [end] = ok(fence_msg(b'{"cid": "R120 01 001"}'))
    assert isinstance(end, AlarmEnd) and end.type == "other.contactid_120"


def test_cid_account_mismatch_is_a_warning() -> None:
    [alarm] = ok(fence_msg(b'{"account": "9999", "cid": "1234 18 1130 01 003", "ts": 1795220102}'))
    assert isinstance(alarm, Alarm) and any("9999" in w for w in alarm.warnings)


@pytest.mark.parametrize("cid", ["1234 17 1130 01 003", "X130 01 003", "E13 01 003", "", 1234181130010037,
                                 "1234 18 2130 01 003"])
def test_cid_malformed(cid: object) -> None:
    assert dead(fence_msg(json.dumps({"cid": cid}).encode()), "schema").detail.startswith("cid:")


# == OwnTracks transition / lwt =================================================================

OT_TOPIC = "owntracks/p-007/phone"


def test_owntracks_transition_is_a_position() -> None:
    out = location.decode_owntracks_all("p-007", fixture("owntracks/transition_enter.json"), RECEIVED,
                                        topic=OT_TOPIC + "/event")
    assert out == [PatrollerPosition("p-007", TS, lon=113.8544, lat=27.6231, acc=12.0)]


def test_owntracks_lwt_is_an_offline_will_at_the_receive_time() -> None:
    payload = fixture("owntracks/lwt.json")
    out = location.decode_owntracks_all("p-007", payload, RECEIVED, topic=OT_TOPIC)
    assert out == [DeviceStatus("patroller:p-007", RECEIVED, False, "will", RECEIVED, payload,
                                {"ts_source": "1795200000", "connected_at": "2026-11-20T18:40:00+00:00"})]


def test_owntracks_all_keeps_location_and_ignores_other_types() -> None:
    loc = b'{"_type":"location","tst":1795220102,"lat":27.6,"lon":113.8,"acc":5}'
    assert location.decode_owntracks_all("u", loc, RECEIVED, topic=OT_TOPIC) == [
        PatrollerPosition("u", TS, lon=113.8, lat=27.6, acc=5.0)]
    assert location.decode_owntracks_all("u", b'{"_type":"waypoint","desc":"x"}', RECEIVED, topic=OT_TOPIC) == []
    # the older single-result API is unchanged: only `location` is a position
    assert location.decode_owntracks("u", fixture("owntracks/transition_enter.json"), RECEIVED, topic=OT_TOPIC) is None
    assert location.decode_owntracks("u", fixture("owntracks/lwt.json"), RECEIVED, topic=OT_TOPIC) is None


@pytest.mark.parametrize(
    ("payload", "field"),
    [(b'{"_type":"transition","event":"enter","tst":1795220102,"lon":113.8}', "lat"),
     (b'{"_type":"transition","event":"leave","tst":"x","lat":27.6,"lon":113.8}', "tst"),
     (b'{"_type":"encrypted","data":"c2VjcmV0"}', "_type")],
)
def test_owntracks_bad_transition(payload: bytes, field: str) -> None:
    letter = dead(location.decode_owntracks_all("u", payload, RECEIVED, topic=OT_TOPIC), "schema")
    assert letter.detail.startswith(field)


# == OsmAnd =====================================================================================

def osm(params: dict[str, str]) -> list[Normalized] | DeadLetter:
    return osmand.decode_query(params, RECEIVED, raw=b"raw-query")


def test_osmand_traccar_client_query() -> None:
    raw = fixture("osmand/traccar_client_query.txt")
    out = osmand.decode_query(dict(parse_qsl(raw.decode())), RECEIVED, raw=raw)
    assert out == [PatrollerPosition("p-007", TS, lon=113.8544, lat=27.6231, acc=8.0)]


@pytest.mark.parametrize(
    ("params", "expected"),
    [({"deviceid": "p-8", "location": "27.6,113.8", "timestamp": "1795220102000"},
      PatrollerPosition("p-8", TS, lon=113.8, lat=27.6)),
     ({"id": "p-8", "lat": "27.6", "lon": "113.8", "timestamp": "2026-11-21T08:15:02+08:00", "accuracy": "-1"},
      PatrollerPosition("p-8", TS, lon=113.8, lat=27.6)),
     ({"id": "p-8", "lat": "27.6", "lon": "113.8", "timestamp": "2026-11-21 08:15:02"},
      PatrollerPosition("p-8", TS, lon=113.8, lat=27.6)),
     ({"id": "p-8", "lat": "27.6", "lon": "113.8"}, PatrollerPosition("p-8", RECEIVED, lon=113.8, lat=27.6))],
)
def test_osmand_variants(params: dict[str, str], expected: PatrollerPosition) -> None:
    assert osm(params) == [expected]


def test_osmand_invalid_fix_is_nothing() -> None:
    assert osm({"id": "p", "lat": "27.6", "lon": "113.8", "valid": "false"}) == []


@pytest.mark.parametrize(
    ("params", "field"),
    [({"lat": "27.6", "lon": "113.8"}, "id"), ({"id": " ", "lat": "27.6", "lon": "113.8"}, "id"),
     ({"id": "a/b", "lat": "27.6", "lon": "113.8"}, "id"), ({"id": "p", "lon": "113.8"}, "lat"),
     ({"id": "p", "lat": "27.6"}, "lon"), ({"id": "p", "lat": "97.6", "lon": "113.8"}, "lat"),
     ({"id": "p", "lat": "27.6", "lon": "-181"}, "lon"), ({"id": "p", "lat": "nan", "lon": "113.8"}, "lat"),
     ({"id": "p", "lat": "1_0", "lon": "113.8"}, "lat"), ({"id": "p", "location": "27.6"}, "location"),
     ({"id": "p", "location": "27.6,abc"}, "location")],
)
def test_osmand_bad_requests_name_the_parameter(params: dict[str, str], field: str) -> None:
    letter = dead(osm(params), "schema")
    assert letter.detail.startswith(field) and letter.topic == "http/osmand" and letter.payload == b"raw-query"


# == never raises ===============================================================================

_ENTITIES: dict[str, HaEntity | Sequence[HaEntity]] = {
    "home/e1": [entity(), entity("sensor", "temperature", uid="t", value_template="{{ value_json.t }}")],
    "zigbee2mqtt/kitchen_smoke": entity(value_template="{{ value_json.smoke }}", uid="s",
                                        state_topic="zigbee2mqtt/kitchen_smoke", availability_topic="bridge/state"),
}
DECODERS: dict[str, Callable[[bytes], object]] = {
    "reading": lambda p: reading_v1.decode("d", p, RECEIVED, topic=R_TOPIC),
    "status": lambda p: status_v1.decode("d", p, RECEIVED, topic=S_TOPIC),
    "fence": lambda p: fence.decode(F_TOPIC, p, RECEIVED),
    "z2m": lambda p: zigbee2mqtt.decode("zigbee2mqtt/x", p, RECEIVED),
    "z2m_avail": lambda p: zigbee2mqtt.decode("zigbee2mqtt/x/availability", p, RECEIVED),
    "ha_config": lambda p: homeassistant.decode(SMOKE_CONFIG_TOPIC, p, RECEIVED),
    "ha_device": lambda p: homeassistant.decode("homeassistant/device/d/config", p, RECEIVED),
    "ha_state": lambda p: homeassistant.decode_state("home/e1", p, RECEIVED, _ENTITIES),
    "ha_avail": lambda p: homeassistant.decode_state("bridge/state", p, RECEIVED, _ENTITIES),
    "owntracks": lambda p: location.decode_owntracks_all("u", p, RECEIVED, topic=OT_TOPIC),
    "osmand": lambda p: osmand.decode_query(dict(parse_qsl(p.decode("latin-1"))), RECEIVED, raw=p),
}
_SEEDS = [fixture(str(p.relative_to(PAYLOADS))) for p in sorted(PAYLOADS.rglob("*")) if p.is_file()]

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(-(10**400), 10**400) | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["ts", "id", "event", "zone", "cid", "metric", "value", "unit", "online", "power", "smoke",
                         "contact", "battery", "last_seen", "state", "_type", "tst", "lat", "lon", "stat_t", "~",
                         "cmps", "p", "avty", "voltage_kv", "restores", "account", "state_topic", "t"])
        | st.text(max_size=8),
        children, max_size=6),
    max_leaves=12,
)


def _check(result: object) -> None:
    if isinstance(result, DeadLetter):
        assert result.reason and result.detail
        return
    assert isinstance(result, list)
    for item in result:
        assert isinstance(item, Alarm | AlarmEnd | Reading | DeviceStatus | PatrollerPosition | HaEntity)
        ts = getattr(item, "ts", None)
        assert ts is None or ts.utcoffset() is not None
        if isinstance(item, Alarm):
            assert 1 <= item.severity <= 5 and item.msg_id


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(DECODERS)), data=st.binary(max_size=300))
def test_random_bytes_never_raise(name: str, data: bytes) -> None:
    _check(DECODERS[name](data))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(DECODERS)), value=_json)
def test_random_json_never_raises(name: str, value: object) -> None:
    _check(DECODERS[name](json.dumps(value).encode()))


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(DECODERS)), seed=st.sampled_from(_SEEDS), cut=st.integers(0, 400),
       junk=st.binary(max_size=4))
def test_mutated_fixtures_never_raise(name: str, seed: bytes, cut: int, junk: bytes) -> None:
    _check(DECODERS[name](seed[:cut] + junk + seed[cut:]))


_HUGE = "1" + "0" * 400  # a JSON integer float() cannot hold (OverflowError if not guarded)


@pytest.mark.parametrize("name", sorted(DECODERS))
@pytest.mark.parametrize("field", ["ts", "value", "battery", "voltage_kv", "zone", "last_seen", "tst", "id", "lat",
                                   "severity", "smoke", "state"])
def test_huge_json_integers_never_raise(name: str, field: str) -> None:
    base = {"ts": EPOCH, "metric": "t", "value": 1, "id": "e", "event": "cut", "_type": "lwt", "tst": EPOCH,
            "online": True, "smoke": True, "lat": 1, "lon": 1, "state": "online"}
    body = json.dumps(base).replace(f'"{field}": ', f'"{field}": {_HUGE}, "_{field}": ', 1)
    if f'"{field}"' not in body:
        body = body[:-1] + f', "{field}": {_HUGE}}}'
    _check(DECODERS[name](body.encode()))


def test_received_at_must_be_aware_everywhere() -> None:
    naive = RECEIVED.replace(tzinfo=None)
    calls: list[Callable[[], object]] = [
        lambda: status_v1.decode("d", b"{}", naive, topic=S_TOPIC),
        lambda: fence.decode(F_TOPIC, b"{}", naive),
        lambda: zigbee2mqtt.decode("zigbee2mqtt/x", b"{}", naive),
        lambda: homeassistant.decode_state("home/e1", b"ON", naive, _ENTITIES),
        lambda: osmand.decode_query({}, naive, raw=b""),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="timezone-aware"):
            call()
