"""Camera adapters on vendor payloads: Frigate (MQTT), Hikvision ISAPI (XML/JSON/HTTP multipart), Dahua, ONVIF."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.adapters import dahua, frigate, hikvision, onvif
from ingest.adapters.common import MAX_PAYLOAD_BYTES
from ingest.model import Alarm, AlarmEnd, DeadLetter, DeviceStatus, Normalized, Reading

pytestmark = pytest.mark.unit

PAYLOADS = Path(__file__).resolve().parents[1] / "fixtures" / "payloads"
RECEIVED = datetime(2026, 11, 21, 0, 15, 3, tzinfo=UTC)
EVENT_TS = datetime(2026, 11, 21, 0, 15, 2, tzinfo=UTC)  # = 2026-11-21T08:15:02+08:00 = epoch 1795220102
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + bytes(range(256)) * 4 + b"\r\n--x\r\xff\xd9"

def fixture(fmt: str, name: str) -> bytes:
    return (PAYLOADS / fmt / name).read_bytes()


def ok(result: list[Normalized] | DeadLetter) -> list[Normalized]:
    assert not isinstance(result, DeadLetter), (result.reason, result.detail)
    return result


def one_alarm(result: list[Normalized] | DeadLetter) -> Alarm:
    items = ok(result)
    alarms = [i for i in items if isinstance(i, Alarm)]
    assert len(alarms) == 1, items
    return alarms[0]


def dead(result: object, reason: str) -> DeadLetter:
    assert isinstance(result, DeadLetter), result
    assert result.reason == reason, (result.reason, result.detail)
    return result


def edit_json(raw: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    body = json.loads(raw)
    change(body)
    return json.dumps(body).encode()


def billion_laughs(root: bytes) -> bytes:
    """The classic entity-expansion bomb, with `root` as the document element holding the bomb."""
    return fixture("hikvision", "billion_laughs.xml").split(b"]>", 1)[0] + b"]>\n" + root


# === Frigate ===============================================================================================
FRIGATE_NEW = fixture("frigate", "event_new.json")
FRIGATE_END = fixture("frigate", "event_end.json")
FRIGATE_REVIEW = fixture("frigate", "review_alert.json")
FRIGATE_ID = "1795220102.120345-k2x9qe"


def frigate_event(**after: Any) -> bytes:
    def change(body: dict[str, Any]) -> None:
        for key, value in after.items():
            if key == "type":
                body["type"] = value
            elif value is ...:
                body["after"].pop(key, None)
            else:
                body["after"][key] = value

    return edit_json(FRIGATE_NEW, change)


def test_frigate_new_person_entering_a_zone() -> None:
    alarm = one_alarm(frigate.decode("frigate/events", FRIGATE_NEW, RECEIVED))
    assert alarm.device_id == "frigate:north_gate"
    assert alarm.msg_id == FRIGATE_ID
    assert alarm.type == "camera.region_entrance"
    assert alarm.zone == "fence_line"  # the first entered zone
    assert alarm.severity == 3
    assert alarm.ts == EVENT_TS + timedelta(microseconds=120345)
    assert alarm.raw == FRIGATE_NEW and alarm.received_at == RECEIVED
    assert alarm.data["ts_offset"] == "epoch s" and alarm.data["ts_source"] == "1795220102.120345"
    assert alarm.data["label"] == "person" and alarm.data["has_snapshot"] is True
    assert alarm.warnings == ()


def test_frigate_update_repeats_the_same_alarm_so_a_lost_new_is_not_lost() -> None:
    first = one_alarm(frigate.decode("frigate/events", FRIGATE_NEW, RECEIVED))
    update = one_alarm(frigate.decode("frigate/events", frigate_event(type="update"), RECEIVED))
    assert update.key == first.key and update.type == first.type and update.ts == first.ts


def test_frigate_false_positive_raises_nothing() -> None:
    assert ok(frigate.decode("frigate/events", frigate_event(false_positive=True), RECEIVED)) == []
    assert ok(frigate.decode("frigate/events", frigate_event(type="update", false_positive=True), RECEIVED)) == []


def test_frigate_object_without_zone_and_fire() -> None:
    car = one_alarm(frigate.decode("frigate/events", frigate_event(label="car", entered_zones=[]), RECEIVED))
    assert (car.type, car.severity, car.zone) == ("camera.object", 2, None)
    fire = one_alarm(frigate.decode("frigate/events", frigate_event(label="fire"), RECEIVED))
    assert (fire.type, fire.severity) == ("thermal.fire", 5)
    smoke = one_alarm(frigate.decode("frigate/events", frigate_event(label="smoke", entered_zones=None), RECEIVED))
    assert smoke.type == "thermal.fire"


def test_frigate_end_without_new_gives_only_an_alarm_end() -> None:
    items = ok(frigate.decode("frigate/events", FRIGATE_END, RECEIVED))
    assert items == [
        AlarmEnd(
            device_id="frigate:north_gate", ts=EVENT_TS + timedelta(seconds=34.5), received_at=RECEIVED,
            raw=FRIGATE_END, msg_id=FRIGATE_ID,
        )
    ]


def test_frigate_sub_label_pair_and_epoch_ms() -> None:
    alarm = one_alarm(frigate.decode("frigate/events", frigate_event(sub_label=["Wang Wei", 0.79], start_time=1795220102120), RECEIVED))
    assert alarm.data["sub_label"] == "Wang Wei" and alarm.data["sub_label_score"] == 0.79
    assert alarm.ts == EVENT_TS + timedelta(milliseconds=120)
    assert alarm.data["ts_offset"] == "epoch ms"


def test_frigate_unset_start_time_uses_receive_time_with_warning() -> None:
    for value in (0, None, "0000-00-00T00:00:00"):
        alarm = one_alarm(frigate.decode("frigate/events", frigate_event(start_time=value), RECEIVED))
        assert alarm.ts == RECEIVED and alarm.data["ts_offset"] == "received"
        assert alarm.warnings and "receive time" in alarm.warnings[0]


def test_frigate_review_alert_detection_and_end() -> None:
    alarm = one_alarm(frigate.decode("frigate/reviews", FRIGATE_REVIEW, RECEIVED))
    assert alarm.msg_id == "review:1795220102.301775-4fkq8z"
    assert alarm.device_id == "frigate:north_gate"
    assert (alarm.type, alarm.zone, alarm.severity) == ("camera.region_entrance", "fence_line", 3)
    assert alarm.data["detections"] == [FRIGATE_ID]

    def detection(body: dict[str, Any]) -> None:
        body["after"]["severity"] = "detection"
        body["after"]["data"]["zones"] = []

    plain = one_alarm(frigate.decode("frigate/reviews", edit_json(FRIGATE_REVIEW, detection), RECEIVED))
    assert (plain.type, plain.severity) == ("camera.object", 2)

    def ended(body: dict[str, Any]) -> None:
        body["type"] = "end"
        body["after"]["end_time"] = 1795220140.0

    end = ok(frigate.decode("frigate/reviews", edit_json(FRIGATE_REVIEW, ended), RECEIVED))
    assert len(end) == 1 and isinstance(end[0], AlarmEnd)
    assert end[0].msg_id == "review:1795220102.301775-4fkq8z" and end[0].ts == EVENT_TS + timedelta(seconds=38)


def test_frigate_availability_and_custom_prefix() -> None:
    assert frigate.TOPIC_SUFFIXES == ("events", "reviews", "available")
    online = ok(frigate.decode("frigate/available", b"online", RECEIVED))
    assert online == [
        DeviceStatus(
            device_id="frigate:_nvr", ts=RECEIVED, online=True, source="availability", received_at=RECEIVED,
            raw=b"online", data={"topic_prefix": "frigate"},
        )
    ]
    offline = ok(frigate.decode("site7/nvr/available", b"offline", RECEIVED))
    assert isinstance(offline[0], DeviceStatus) and offline[0].online is False
    assert one_alarm(frigate.decode("site7/nvr/events", FRIGATE_NEW, RECEIVED)).msg_id == FRIGATE_ID
    dead(frigate.decode("frigate/available", b"maybe", RECEIVED), "schema")
    dead(frigate.decode("frigate/available", b"\xffonline", RECEIVED), "not_utf8")


def test_frigate_other_topics_are_ignored() -> None:
    for topic in ("frigate/north_gate/person", "frigate/stats", "frigate/north_gate/motion", "events"):
        assert ok(frigate.decode(topic, b"1", RECEIVED)) == []


@pytest.mark.parametrize(
    ("payload", "reason", "names"),
    [
        (b"[1, 2]", "schema", "JSON object"),
        (b'{"type": "new"}', "schema", "after"),
        (b'{"type": "bogus", "after": {}}', "schema", "type"),
        (frigate_event(id=...), "schema", "after.id"),
        (frigate_event(camera=""), "schema", "after.camera"),
        (frigate_event(label=7), "schema", "after.label"),
        (frigate_event(entered_zones="yard"), "schema", "after.entered_zones"),
        (frigate_event(false_positive="no"), "schema", "after.false_positive"),
        (b'{"type": "new", "after": ', "invalid_json", "not JSON"),
        (b'{"type": "new", "after": {"id": "\xff"}}', "not_utf8", "UTF-8"),
        (b'{"pad": "' + b"x" * MAX_PAYLOAD_BYTES + b'"}', "payload_too_large", "bytes"),
    ],
)
def test_frigate_bad_payloads_are_dead_letters(payload: bytes, reason: str, names: str) -> None:
    letter = dead(frigate.decode("frigate/events", payload, RECEIVED), reason)
    assert names in letter.detail and letter.topic == "frigate/events" and letter.payload == payload


def test_frigate_review_bad_severity() -> None:
    payload = edit_json(FRIGATE_REVIEW, lambda b: b["after"].update(severity="urgent"))
    assert "after.severity" in dead(frigate.decode("frigate/reviews", payload, RECEIVED), "schema").detail


# === Hikvision =============================================================================================
HIK_LINE = fixture("hikvision", "linedetection.xml")
HIK_VMD = fixture("hikvision", "vmd_ver10.xml")
HIK_HEARTBEAT = fixture("hikvision", "videoloss_heartbeat.xml")
HIK_TMPA = fixture("hikvision", "tmpa.json")
HIK_FIRE = fixture("hikvision", "firedetection.json")


def hik_xml(**fields: str | None) -> bytes:
    """linedetection.xml with some elements' text replaced (None removes the element)."""
    text = HIK_LINE.decode()
    for name, value in fields.items():
        start, end = text.index(f"<{name}>"), text.index(f"</{name}>") + len(name) + 3
        text = text[:start] + ("" if value is None else f"<{name}>{value}</{name}>") + text[end:]
    return text.encode()


def test_hikvision_xml_line_detection() -> None:
    alarm = one_alarm(hikvision.decode("hikvision/gate/event", HIK_LINE, RECEIVED))
    assert alarm.device_id == "hikvision:44:19:b6:6d:24:85/1"
    assert alarm.msg_id == "linedetection:1:2026-11-21T08:15:02+08:00:1"
    assert (alarm.type, alarm.severity, alarm.ts) == ("camera.line_crossing", 3, EVENT_TS)
    assert alarm.data["ts_offset"] == "+08:00" and alarm.data["ts_source"] == "2026-11-21T08:15:02+08:00"
    assert alarm.data["region_id"] == "1" and alarm.data["detection_target"] == "human"
    assert alarm.data["channel_name"] == "North gate"
    assert alarm.raw == HIK_LINE and alarm.warnings == ()


def test_hikvision_ver10_namespace_dyn_channel_and_dashed_mac() -> None:
    alarm = one_alarm(hikvision.decode("hikvision/nvr/event", HIK_VMD, RECEIVED))
    assert alarm.device_id == "hikvision:c0:56:e3:0a:11:5f/3"
    assert (alarm.type, alarm.severity) == ("camera.motion", 2)
    assert alarm.msg_id == "VMD:3:2026-11-21T08:15:02+08:00:4"


@pytest.mark.parametrize(
    ("event_type", "expected"),
    [
        ("fielddetection", "camera.region_entrance"),
        ("regionEntrance", "camera.region_entrance"),
        ("regionExiting", "camera.region_exit"),
        ("shelteralarm", "camera.tamper"),
        ("tamperdetection", "camera.tamper"),
        ("fireDetection", "thermal.fire"),
        ("TMA", "thermal.overheat"),
    ],
)
def test_hikvision_event_types(event_type: str, expected: str) -> None:
    assert one_alarm(hikvision.decode("hikvision/x", hik_xml(eventType=event_type), RECEIVED)).type == expected


def test_hikvision_heartbeat_and_inactive_raise_nothing() -> None:
    items = ok(hikvision.decode("hikvision/gate/event", HIK_HEARTBEAT, RECEIVED))
    assert len(items) == 1 and isinstance(items[0], DeviceStatus)
    status = items[0]
    assert (status.device_id, status.online, status.source, status.ts) == ("hikvision:44:19:b6:6d:24:85/1", True, "heartbeat", EVENT_TS)
    assert not any(isinstance(i, Alarm) for i in items)
    assert ok(hikvision.decode("hikvision/gate/event", hik_xml(eventState="inactive"), RECEIVED)) == []
    assert ok(hikvision.decode("hikvision/gate/event", HIK_VMD.replace(b">active<", b">inactive<"), RECEIVED)) == []


def test_hikvision_json_thermometry_pre_alarm_with_reading() -> None:
    items = ok(hikvision.decode("hikvision/thermal/event", HIK_TMPA, RECEIVED))
    alarm = one_alarm(items)
    assert alarm.device_id == "hikvision:24:0f:9b:30:aa:01/2"
    assert alarm.msg_id == "TMPA:2:2026-11-21T08:15:02+08:00:1"
    assert (alarm.type, alarm.severity) == ("thermal.overheat", 3)  # a pre-alarm: one below TMA
    assert alarm.data["temperature_c"] == 62.3 and alarm.data["rule_temperature_c"] == 55.0
    assert alarm.data["thermometry"]["alarmLevel"] == "preAlarm"
    readings = [i for i in items if isinstance(i, Reading)]
    assert readings == [Reading(alarm.device_id, EVENT_TS, "temperature_max", 62.3, "°C")]


def test_hikvision_fahrenheit_is_converted_and_fire_detection_reads_temperature() -> None:
    def fahrenheit(body: dict[str, Any]) -> None:
        body["eventType"] = "TMA"
        body["ThermometryAlarm"].update(thermometryUnit="fahrenheit", currTemperature=212, ruleTemperature=122)

    items = ok(hikvision.decode("h", edit_json(HIK_TMPA, fahrenheit), RECEIVED))
    assert one_alarm(items).severity == 4
    assert [i.value for i in items if isinstance(i, Reading)] == [100.0]
    fire_items = ok(hikvision.decode("h", HIK_FIRE, RECEIVED))
    fire = one_alarm(fire_items)
    assert (fire.type, fire.severity, fire.data["temperature_c"]) == ("thermal.fire", 5, 412.0)
    assert [i.metric for i in fire_items if isinstance(i, Reading)] == ["temperature_max"]


def test_hikvision_zoneless_date_is_read_as_plus_eight_with_warning() -> None:
    alarm = one_alarm(hikvision.decode("h", hik_xml(dateTime="2026-11-21T08:15:02"), RECEIVED))
    assert alarm.ts == EVENT_TS
    assert alarm.data["ts_offset"] == "assumed +08:00"
    assert any("no zone" in w and "+08:00" in w for w in alarm.warnings)


def test_hikvision_zeroed_date_uses_receive_time() -> None:
    alarm = one_alarm(hikvision.decode("h", hik_xml(dateTime="0000-00-00T00:00:00"), RECEIVED))
    assert alarm.ts == RECEIVED and alarm.data["ts_offset"] == "received"
    assert alarm.data["ts_source"] == "0000-00-00T00:00:00"
    assert any("zeroed" in w for w in alarm.warnings)
    # An unset clock repeats the same dateTime for every event: the receive time keeps them apart.
    assert alarm.msg_id == f"linedetection:1:0000-00-00T00:00:00:1@{RECEIVED.isoformat()}"


def test_hikvision_epoch_ms_date_in_json() -> None:
    payload = edit_json(HIK_TMPA, lambda b: b.update(dateTime=1795220102000))
    alarm = one_alarm(hikvision.decode("h", payload, RECEIVED))
    assert alarm.ts == EVENT_TS and alarm.data["ts_offset"] == "epoch ms"
    assert alarm.msg_id == "TMPA:2:1795220102000:1"


def test_hikvision_unknown_event_type_is_kept_as_other() -> None:
    alarm = one_alarm(hikvision.decode("h", hik_xml(eventType="audioexception"), RECEIVED))
    assert alarm.type == "other.hikvision_audioexception" and alarm.severity == 2
    assert any("unknown Hikvision eventType" in w for w in alarm.warnings)


def test_hikvision_identity_fallbacks() -> None:
    no_mac = one_alarm(hikvision.decode("h", hik_xml(macAddress=None, channelID=None), RECEIVED))
    assert no_mac.device_id == "hikvision:192.168.1.64/1"
    bad_mac = one_alarm(hikvision.decode("h", hik_xml(macAddress="00:00:00:00:00:00"), RECEIVED))
    assert bad_mac.device_id == "hikvision:192.168.1.64/1" and any("macAddress" in w for w in bad_mac.warnings)
    bare = one_alarm(hikvision.decode("h", hik_xml(macAddress="4419B66D2485", channelID="02"), RECEIVED))
    assert bare.device_id == "hikvision:44:19:b6:6d:24:85/2"
    wrapped = json.dumps({"EventNotificationAlert": json.loads(HIK_TMPA)}).encode()
    assert one_alarm(hikvision.decode("h", wrapped, RECEIVED)).device_id == "hikvision:24:0f:9b:30:aa:01/2"


@pytest.mark.parametrize(
    ("payload", "reason", "names"),
    [
        (billion_laughs(b"<EventNotificationAlert><eventType>&lol9;</eventType></EventNotificationAlert>"), "invalid_xml", "DTD"),
        (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>', "invalid_xml", "DTD"),
        (b"<EventNotificationAlert><eventType>VMD</eventType>", "invalid_xml", "well-formed"),
        (b"<ResponseStatus><statusCode>1</statusCode></ResponseStatus>", "unsupported_message", "EventNotificationAlert"),
        (b'{"statusCode": 1, "statusString": "OK"}', "unsupported_message", "eventType"),
        (b"VMD active", "unsupported_message", "XML or JSON"),
        (b"\xff\xfe<\x00", "not_utf8", "UTF-8"),
        (b'{"eventType": "VMD", "macAddress": "\xff"}', "not_utf8", "UTF-8"),
        (b"<EventNotificationAlert><macAddress>44:19:b6:6d:24:85</macAddress></EventNotificationAlert>", "schema", "eventType"),
        (b"<EventNotificationAlert><eventType>VMD</eventType></EventNotificationAlert>", "schema", "macAddress/ipAddress"),
        (b'{"eventType": "VMD", "ipAddress": "not-an-ip"}', "schema", "ipAddress"),
        (b'{"eventType": "VMD", "ipAddress": "10.0.0.1", "channelID": [1]}', "schema", "channelID"),
        ('{"eventType": "VMD", "ipAddress": "10.0.0.1", "channelID": "²"}'.encode(), "schema", "channelID"),
        (b"<EventNotificationAlert>" + b" " * MAX_PAYLOAD_BYTES + b"</EventNotificationAlert>", "payload_too_large", "bytes"),
    ],
)
def test_hikvision_bad_payloads_are_dead_letters(payload: bytes, reason: str, names: str) -> None:
    letter = dead(hikvision.decode("hikvision/x", payload, RECEIVED), reason)
    assert names in letter.detail, letter.detail


# --- Hikvision HTTP push -----------------------------------------------------------------------------------
def multipart(parts: list[tuple[dict[str, str], bytes]], boundary: str = "MIME_boundary") -> bytes:
    out = b""
    for headers, body in parts:
        out += f"--{boundary}\r\n".encode()
        out += b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
        out += b"\r\n" + body + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


MULTIPART_CT = "multipart/form-data; boundary=MIME_boundary"


def test_http_bare_xml_and_json() -> None:
    xml = hikvision.decode_http("application/xml; charset=\"UTF-8\"", HIK_LINE, RECEIVED)
    assert one_alarm(xml.result).type == "camera.line_crossing"
    assert xml.event_payload == HIK_LINE and xml.pictures == ()
    js = hikvision.decode_http("application/json", HIK_TMPA, RECEIVED)
    assert one_alarm(js.result).type == "thermal.overheat" and js.event_payload == HIK_TMPA


def test_http_multipart_xml_event_with_jpeg() -> None:
    body = multipart([
        ({"Content-Disposition": 'form-data; name="linedetection.xml"; filename="linedetection.xml"',
          "Content-Type": "application/xml", "Content-Length": str(len(HIK_LINE))}, HIK_LINE),
        ({"Content-Disposition": 'form-data; name="linedetectionImage"; filename="linedetectionImage.jpg"',
          "Content-Type": "image/jpeg", "Content-Length": str(len(JPEG)), "Content-ID": "image_1"}, JPEG),
    ])
    decoded = hikvision.decode_http(MULTIPART_CT, body, RECEIVED)
    alarm = one_alarm(decoded.result)
    assert alarm.raw == HIK_LINE and decoded.event_payload == HIK_LINE
    assert decoded.pictures == (hikvision.Picture("linedetectionImage.jpg", "image/jpeg", JPEG),)
    assert alarm.warnings == ()


def test_http_multipart_json_event_without_content_types() -> None:
    body = multipart([
        ({"Content-Disposition": 'form-data; name="linedetection"'}, HIK_TMPA),
        ({"Content-Disposition": 'form-data; name="thermalImage"'}, JPEG),
    ])
    decoded = hikvision.decode_http(MULTIPART_CT, body, RECEIVED)
    assert one_alarm(decoded.result).type == "thermal.overheat"
    assert [(p.name, p.content_type) for p in decoded.pictures] == [("thermalImage", "image/jpeg")]


def test_http_multipart_picture_caps() -> None:
    too_big = b"\xff\xd8\xff" + b"\x00" * hikvision.MAX_PICTURE_BYTES
    parts = [({"Content-Type": "application/xml"}, HIK_LINE), ({"Content-Type": "image/jpeg"}, too_big)]
    parts += [({"Content-Type": "image/jpeg", "Content-Disposition": f'form-data; filename="p{i}.jpg"'}, JPEG) for i in range(10)]
    decoded = hikvision.decode_http(MULTIPART_CT, multipart(parts), RECEIVED)
    assert [p.name for p in decoded.pictures] == [f"p{i}.jpg" for i in range(8)]
    warnings = one_alarm(decoded.result).warnings
    assert any("dropped" in w and str(len(too_big)) in w for w in warnings)
    assert any("2 picture(s) beyond the first 8" in w for w in warnings)


def test_http_multipart_errors() -> None:
    no_boundary = hikvision.decode_http("multipart/form-data", multipart([({}, HIK_LINE)]), RECEIVED)
    letter = dead(no_boundary.result, "invalid_multipart")
    assert letter.topic == "http/isapi" and "boundary" in letter.detail
    wrong = hikvision.decode_http(MULTIPART_CT, b"this is not multipart at all", RECEIVED)
    assert dead(wrong.result, "invalid_multipart").payload == b"this is not multipart at all"
    only_image = hikvision.decode_http(MULTIPART_CT, multipart([({"Content-Type": "image/jpeg"}, JPEG)]), RECEIVED)
    assert "image/jpeg" in dead(only_image.result, "unsupported_message").detail
    bomb = billion_laughs(b"<EventNotificationAlert><eventType>&lol9;</eventType></EventNotificationAlert>")
    bomb_body = multipart([({"Content-Type": "application/xml"}, bomb), ({"Content-Type": "image/jpeg"}, JPEG)])
    bombed = hikvision.decode_http(MULTIPART_CT, bomb_body, RECEIVED)
    letter = dead(bombed.result, "invalid_xml")
    assert letter.topic == "http/isapi" and letter.payload == bomb and bombed.pictures == ()
    cut = multipart([({"Content-Type": "application/xml"}, HIK_LINE), ({"Content-Type": "image/jpeg"}, JPEG)])
    cut = cut[: cut.rindex(b"--MIME_boundary--")]
    truncated = hikvision.decode_http(MULTIPART_CT, cut, RECEIVED)
    assert any("closing boundary" in w for w in one_alarm(truncated.result).warnings) and len(truncated.pictures) == 1
    # A device that says multipart but sends the bare event is still understood.
    bare = hikvision.decode_http(MULTIPART_CT, HIK_LINE, RECEIVED)
    assert one_alarm(bare.result).type == "camera.line_crossing"


def test_http_heartbeat_multipart_keeps_pictures_out_of_alarms() -> None:
    body = multipart([({"Content-Type": "application/xml"}, HIK_HEARTBEAT)])
    decoded = hikvision.decode_http(MULTIPART_CT, body, RECEIVED)
    items = ok(decoded.result)
    assert len(items) == 1 and isinstance(items[0], DeviceStatus) and items[0].source == "heartbeat"


# === Dahua =================================================================================================
DAHUA_STREAM = fixture("dahua", "attach_stream.txt")
DAHUA_HEAT = fixture("dahua", "heat_imaging_temper.json")


def dahua_text(block: str) -> bytes:
    return block.encode()


def test_dahua_attach_stream_blocks() -> None:
    items = ok(dahua.decode("dahua/nvr-east/event", DAHUA_STREAM, RECEIVED))
    assert [type(i).__name__ for i in items] == ["Alarm", "DeviceStatus", "AlarmEnd"]
    alarm, heartbeat, end = items
    assert isinstance(alarm, Alarm) and isinstance(heartbeat, DeviceStatus) and isinstance(end, AlarmEnd)
    assert alarm.device_id == "dahua:nvr-east/0"
    assert alarm.msg_id == "10421"  # EventID
    assert (alarm.type, alarm.severity, alarm.ts) == ("camera.line_crossing", 3, EVENT_TS)
    assert alarm.data["ts_offset"] == "assumed +08:00" and alarm.data["ts_source"] == "2026-11-21 08:15:02"
    assert alarm.data["rule_name"] == "NorthFence" and alarm.data["object_type"] == "Human"
    assert len(alarm.warnings) == 1 and "no zone" in alarm.warnings[0]  # LocaleTime and UTC agree
    assert (heartbeat.device_id, heartbeat.source, heartbeat.online) == ("dahua:nvr-east", "heartbeat", True)
    assert (end.device_id, end.type, end.msg_id) == ("dahua:nvr-east/1", "camera.motion", None)


def test_dahua_utc_holding_local_wall_time_is_named() -> None:
    payload = dahua_text('Code=CrossLineDetection;action=Start;index=2;data={"LocaleTime":"2026-11-21 08:15:02","UTC":1795248902}')
    alarm = one_alarm(dahua.decode("dahua/cam/event", payload, RECEIVED))
    assert alarm.ts == EVENT_TS  # LocaleTime wins
    assert alarm.msg_id == "CrossLineDetection:2:1795248902"
    assert any("+8 h" in w and "local wall time" in w for w in alarm.warnings)


def test_dahua_only_utc_epoch_and_epoch_ms() -> None:
    seconds = dahua_text('Code=VideoMotion;action=Start;index=0;data={"UTC":1795220102}')
    alarm = one_alarm(dahua.decode("dahua/cam/event", seconds, RECEIVED))
    assert alarm.ts == EVENT_TS and alarm.data["ts_offset"] == "epoch s" and alarm.warnings == ()
    millis = dahua_text('Code=VideoMotion;action=Start;index=0;data={"UTC":1795220102350}')
    ms = one_alarm(dahua.decode("dahua/cam/event", millis, RECEIVED))
    assert ms.data["ts_offset"] == "epoch ms" and ms.ts == EVENT_TS + timedelta(milliseconds=350)


def test_dahua_region_entrance_and_exit() -> None:
    enter = dahua_text('Code=CrossRegionDetection;action=Start;index=0;data={"Action":"Appear","UTC":1795220102}')
    leave = dahua_text('Code=CrossRegionDetection;action=Start;index=0;data={"Action":"Cross","Direction":"Leave","UTC":1795220102}')
    assert one_alarm(dahua.decode("dahua/cam/event", enter, RECEIVED)).type == "camera.region_entrance"
    assert one_alarm(dahua.decode("dahua/cam/event", leave, RECEIVED)).type == "camera.region_exit"
    plain_leave = dahua_text('Code=CrossRegionDetection;action=Start;index=0;data={"Action":"Leave"}')
    assert one_alarm(dahua.decode("dahua/cam/event", plain_leave, RECEIVED)).type == "camera.region_exit"


def test_dahua_motion_without_data_and_stop() -> None:
    alarm = one_alarm(dahua.decode("dahua/cam/event", b"Code=VideoMotion;action=Start;index=0", RECEIVED))
    assert (alarm.type, alarm.ts, alarm.data["ts_offset"]) == ("camera.motion", RECEIVED, "received")
    assert alarm.msg_id == f"VideoMotion:0:@{RECEIVED.isoformat()}"
    stop = b"Code=VideoMotion;action=Stop;index=0"
    end = ok(dahua.decode("dahua/cam/event", stop, RECEIVED))
    assert end == [AlarmEnd(device_id="dahua:cam/0", ts=RECEIVED, received_at=RECEIVED, raw=stop, type="camera.motion")]


def test_dahua_json_heat_imaging_with_reading_and_fire() -> None:
    items = ok(dahua.decode("dahua/thermal-2/event", DAHUA_HEAT, RECEIVED))
    alarm = one_alarm(items)
    assert (alarm.device_id, alarm.type, alarm.severity) == ("dahua:thermal-2/1", "thermal.overheat", 4)
    assert alarm.msg_id == "HeatImagingTemper:1:1795220102" and alarm.ts == EVENT_TS
    assert [i for i in items if isinstance(i, Reading)] == [Reading("dahua:thermal-2/1", EVENT_TS, "temperature_max", 87.4, "°C")]
    fire = edit_json(DAHUA_HEAT, lambda b: b.update(Code="FireWarning"))
    assert one_alarm(dahua.decode("dahua/thermal-2/event", fire, RECEIVED)).type == "thermal.fire"
    listed = json.dumps([json.loads(DAHUA_HEAT), {"Code": "VideoBlind", "action": "Pulse", "index": 0}]).encode()
    types = [a.type for a in ok(dahua.decode("dahua/t/event", listed, RECEIVED)) if isinstance(a, Alarm)]
    assert types == ["thermal.overheat", "camera.tamper"]


def test_dahua_code_table_unknown_and_housekeeping() -> None:
    local = one_alarm(dahua.decode("dahua/c/event", b"Code=AlarmLocal;action=Start;index=3", RECEIVED))
    assert (local.type, local.device_id) == ("other.dahua_alarmlocal", "dahua:c/3")
    assert not any("unknown" in w for w in local.warnings)
    loss = one_alarm(dahua.decode("dahua/c/event", b"Code=VideoLoss;action=Start;index=0", RECEIVED))
    assert loss.type == "camera.tamper"
    unknown = one_alarm(dahua.decode("dahua/c/event", b"Code=LeftDetection;action=Start;index=0", RECEIVED))
    assert unknown.type == "other.dahua_leftdetection" and any("unknown Dahua event code" in w for w in unknown.warnings)
    assert ok(dahua.decode("dahua/c/event", b'Code=NewFile;action=Pulse;index=0;data={"File":"/mnt/sd/a.jpg"}', RECEIVED)) == []


def test_dahua_one_bad_block_does_not_sink_the_others() -> None:
    payload = b"--myboundary\r\n\r\nCode=VideoMotion;action=Maybe;index=0\r\n--myboundary\r\n\r\nCode=VideoBlind;action=Start;index=0\r\n"
    assert [a.type for a in ok(dahua.decode("dahua/c/event", payload, RECEIVED)) if isinstance(a, Alarm)] == ["camera.tamper"]


@pytest.mark.parametrize(
    ("payload", "reason", "names"),
    [
        (b"Code=VideoMotion;action=Maybe;index=0", "schema", "action"),
        (b"Code=VideoMotion;action=Start;index=zero", "schema", "index"),
        ("Code=VideoMotion;action=Start;index=²".encode(), "schema", "index"),
        (b"Code=VideoMotion;action=Start;index=0;data={not json", "schema", "data"),
        (b"Code=VideoMotion;action=Start;index=0;data=[1]", "schema", "data"),
        (b'{"Code": ["VideoMotion"], "action": "Start"}', "schema", "Code"),
        (b'{"action": "Start", "index": 0}', "unsupported_message", "Code"),
        (b'{"Code": "VideoMotion", ', "invalid_json", "JSON"),
        (b"hello camera", "unsupported_message", "Code=<code>"),
        (b"Code=VideoMotion;action=Start;index=0;data={\"Name\":\"\xb1\xb1\"}", "not_utf8", "UTF-8"),
        (b"Code=" + b"x" * MAX_PAYLOAD_BYTES, "payload_too_large", "bytes"),
    ],
)
def test_dahua_bad_payloads_are_dead_letters(payload: bytes, reason: str, names: str) -> None:
    letter = dead(dahua.decode("dahua/cam/event", payload, RECEIVED), reason)
    assert names in letter.detail, letter.detail


def test_dahua_other_topics_are_ignored() -> None:
    assert ok(dahua.decode("dahua/cam/status", b"online", RECEIVED)) == []
    assert ok(dahua.decode("dahua/event", b"Code=VideoMotion;action=Start;index=0", RECEIVED)) == []


# === ONVIF =================================================================================================
ONVIF_NOTIFY = fixture("onvif", "notify_two.xml")
ONVIF_MOTION = fixture("onvif", "motion_alarm.xml")


def onvif_message(topic: str, data: str, *, source: str = '<tt:SimpleItem Name="VideoSourceConfigurationToken" Value="VSC_2"/>',
                  operation: str = "Changed", utc: str | None = "2026-11-21T00:15:02Z") -> bytes:
    utc_attr = f' UtcTime="{utc}"' if utc is not None else ""
    return (
        '<wsnt:NotificationMessage xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2" xmlns:tt="http://www.onvif.org/ver10/schema"'
        ' xmlns:tns1="http://www.onvif.org/ver10/topics">'
        f'<wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet">{topic}</wsnt:Topic>'
        f'<wsnt:Message><tt:Message{utc_attr} PropertyOperation="{operation}"><tt:Source>{source}</tt:Source>'
        f"<tt:Data>{data}</tt:Data></tt:Message></wsnt:Message></wsnt:NotificationMessage>"
    ).encode()


def item(name: str, value: str) -> str:
    return f'<tt:SimpleItem Name="{name}" Value="{value}"/>'


def test_onvif_notify_with_two_messages() -> None:
    items = ok(onvif.decode("onvif/cam-31/event", ONVIF_NOTIFY, RECEIVED))
    assert len(items) == 2 and all(isinstance(i, Alarm) for i in items)
    inside, crossed = items
    assert isinstance(inside, Alarm) and isinstance(crossed, Alarm)
    assert inside.device_id == crossed.device_id == "onvif:cam-31/VideoSourceConfig_1"
    assert (inside.type, inside.severity) == ("camera.region_entrance", 3)
    assert inside.msg_id == "Perimeter:VideoSourceConfig_1:2026-11-21T00:15:02.120Z"
    assert inside.ts == EVENT_TS + timedelta(milliseconds=120)
    assert inside.data["ts_offset"] == "Z" and inside.data["ts_source"] == "2026-11-21T00:15:02.120Z"
    assert crossed.type == "camera.line_crossing" and crossed.msg_id == "GateLine:VideoSourceConfig_1:2026-11-21T00:15:02.480Z"
    assert crossed.data["data"] == {"ObjectId": "17"}


def test_onvif_state_false_ends_and_line_crossing_never_ends() -> None:
    left = onvif_message("tns1:RuleEngine/FieldDetector/ObjectsInside", item("IsInside", "false"))
    out = ok(onvif.decode("onvif/c/event", left, RECEIVED))
    assert out == [AlarmEnd(device_id="onvif:c/VSC_2", ts=EVENT_TS, received_at=RECEIVED, raw=left, type="camera.region_entrance")]
    line = onvif_message("tns1:RuleEngine/LineDetector/Crossed", item("ObjectId", "0"))
    crossed = one_alarm(onvif.decode("onvif/c/event", line, RECEIVED))
    assert crossed.type == "camera.line_crossing"
    # Without a Rule item, the topic names the message.
    assert crossed.msg_id == "tns1:RuleEngine/LineDetector/Crossed:VSC_2:2026-11-21T00:15:02Z"


def test_onvif_motion_topics() -> None:
    alarm = one_alarm(onvif.decode("onvif/door/event", ONVIF_MOTION, RECEIVED))
    assert (alarm.device_id, alarm.type, alarm.ts) == ("onvif:door/VideoSource_1", "camera.motion", EVENT_TS)
    stop = ok(onvif.decode("onvif/door/event", ONVIF_MOTION.replace(b'Value="true"', b'Value="false"'), RECEIVED))
    assert len(stop) == 1 and isinstance(stop[0], AlarmEnd) and stop[0].type == "camera.motion"
    cell_motion = onvif_message("tns1:RuleEngine/CellMotionDetector/Motion", item("IsMotion", "true"))
    cell = one_alarm(onvif.decode("onvif/c/event", cell_motion, RECEIVED))
    assert cell.type == "camera.motion"


def test_onvif_tamper_topics() -> None:
    for topic in ("tns1:VideoSource/GlobalSceneChange/ImagingService", "tns1:RuleEngine/TamperDetector/Tamper"):
        name = "State" if "Global" in topic else "IsTamper"
        alarm = one_alarm(onvif.decode("onvif/c/event", onvif_message(topic, item(name, "true")), RECEIVED))
        assert (alarm.type, alarm.severity) == ("camera.tamper", 3)


def test_onvif_initialized_is_a_state_sync() -> None:
    payload = onvif_message("tns1:VideoSource/MotionAlarm", item("State", "true"), operation="Initialized")
    assert ok(onvif.decode("onvif/c/event", payload, RECEIVED)) == []


def test_onvif_unknown_topic_and_missing_source_and_time() -> None:
    payload = onvif_message("tns1:Device/Trigger/DigitalInput", item("LogicalState", "true"), source=item("InputToken", "DI_0"), utc=None)
    alarm = one_alarm(onvif.decode("onvif/box/event", payload, RECEIVED))
    assert alarm.type == "other.onvif_digitalinput" and alarm.device_id == "onvif:box"
    assert any("unknown ONVIF topic" in w for w in alarm.warnings)
    assert alarm.ts == RECEIVED and alarm.data["ts_offset"] == "received"
    released = onvif_message("tns1:Device/Trigger/DigitalInput", item("LogicalState", "false"), source="")
    end = ok(onvif.decode("onvif/box/event", released, RECEIVED))
    assert len(end) == 1 and isinstance(end[0], AlarmEnd) and end[0].type == "other.onvif_digitalinput"


def test_onvif_soap_pull_messages_response() -> None:
    inner = ONVIF_MOTION.split(b"?>", 1)[1]
    envelope = (
        b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>'
        b'<tev:PullMessagesResponse xmlns:tev="http://www.onvif.org/ver10/events/wsdl">'
        b"<tev:CurrentTime>2026-11-21T00:15:03Z</tev:CurrentTime><tev:TerminationTime>2026-11-21T00:25:03Z</tev:TerminationTime>"
        + inner + b"</tev:PullMessagesResponse></s:Body></s:Envelope>"
    )
    assert one_alarm(onvif.decode("onvif/door/event", envelope, RECEIVED)).type == "camera.motion"


def test_onvif_bad_message_among_good_ones_is_skipped() -> None:
    bad = onvif_message("tns1:VideoSource/MotionAlarm", item("State", "maybe"))
    good = onvif_message("tns1:VideoSource/MotionAlarm", item("State", "true"))
    notify = b'<wsnt:Notify xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2">' + bad + good + b"</wsnt:Notify>"
    assert [a.type for a in ok(onvif.decode("onvif/c/event", notify, RECEIVED)) if isinstance(a, Alarm)] == ["camera.motion"]


@pytest.mark.parametrize(
    ("payload", "reason", "names"),
    [
        (billion_laughs(b"<x>&lol9;</x>"), "invalid_xml", "DTD"),
        (b"<wsnt:Notify>", "invalid_xml", "well-formed"),
        (b'<Envelope xmlns="http://www.w3.org/2003/05/soap-envelope"><Body/></Envelope>', "unsupported_message", "NotificationMessage"),
        (b'{"State": true}', "unsupported_message", "XML"),
        (b"\xfe\xff\x00<", "not_utf8", "UTF-8"),
        (onvif_message("tns1:VideoSource/MotionAlarm", item("Other", "1")), "schema", "State"),
        (onvif_message("tns1:VideoSource/MotionAlarm", item("State", "maybe")), "schema", "Data.State"),
        (onvif_message("", item("State", "true")), "schema", "Topic"),
        (b"<a>" + b" " * MAX_PAYLOAD_BYTES + b"</a>", "payload_too_large", "bytes"),
    ],
)
def test_onvif_bad_payloads_are_dead_letters(payload: bytes, reason: str, names: str) -> None:
    letter = dead(onvif.decode("onvif/c/event", payload, RECEIVED), reason)
    assert names in letter.detail, letter.detail


def test_onvif_other_topics_are_ignored() -> None:
    assert ok(onvif.decode("onvif/c/status", b"online", RECEIVED)) == []


# === never raises ==========================================================================================
SEEDS: list[tuple[str, Callable[[str, bytes, datetime], list[Normalized] | DeadLetter], bytes]] = [
    ("frigate/events", frigate.decode, FRIGATE_NEW),
    ("frigate/events", frigate.decode, FRIGATE_END),
    ("frigate/reviews", frigate.decode, FRIGATE_REVIEW),
    ("hikvision/x/event", hikvision.decode, HIK_LINE),
    ("hikvision/x/event", hikvision.decode, HIK_TMPA),
    ("dahua/cam/event", dahua.decode, DAHUA_STREAM),
    ("dahua/cam/event", dahua.decode, DAHUA_HEAT),
    ("onvif/cam/event", onvif.decode, ONVIF_NOTIFY),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(range(len(SEEDS))), cut=st.integers(0, 4000), insert=st.binary(max_size=12), drop=st.integers(0, 8))
def test_mutated_payloads_never_raise(seed: int, cut: int, insert: bytes, drop: int) -> None:
    topic, decode, base = SEEDS[seed]
    cut %= len(base) + 1
    payload = base[:cut] + insert + base[cut + drop:]
    result = decode(topic, payload, RECEIVED)
    assert isinstance(result, DeadLetter) or (isinstance(result, list) and all(not isinstance(r, DeadLetter) for r in result))


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=256), topic=st.sampled_from(["frigate/events", "frigate/reviews", "frigate/available",
                                                                 "hikvision/x", "dahua/c/event", "onvif/c/event"]))
def test_random_bytes_never_raise(payload: bytes, topic: str) -> None:
    decode = {"frigate": frigate.decode, "hikvision": hikvision.decode, "dahua": dahua.decode, "onvif": onvif.decode}[topic.split("/")[0]]
    result = decode(topic, payload, RECEIVED)
    assert isinstance(result, DeadLetter | list)
    http = hikvision.decode_http(MULTIPART_CT, payload, RECEIVED)
    assert isinstance(http.result, DeadLetter | list)


@settings(max_examples=150, deadline=None)
@given(values=st.lists(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
                                 st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)),
                       min_size=6, max_size=6))
def test_json_field_types_never_raise(values: list[Any]) -> None:
    frigate_payload = frigate_event(id=values[0], camera=values[1], label=values[2], start_time=values[3],
                                    entered_zones=values[4], sub_label=values[5])
    assert isinstance(frigate.decode("frigate/events", frigate_payload, RECEIVED), DeadLetter | list)
    hik = edit_json(HIK_TMPA, lambda b: b.update(eventType=values[0] if values[0] is not None else "TMA", channelID=values[1],
                                                 dateTime=values[2], macAddress=values[3], activePostCount=values[4],
                                                 ThermometryAlarm={"currTemperature": values[5]}))
    assert isinstance(hikvision.decode("h", hik, RECEIVED), DeadLetter | list)
    dah = json.dumps({"Code": "HeatImagingTemper", "action": "Start", "index": values[0],
                      "data": {"UTC": values[1], "LocaleTime": values[2], "EventID": values[3], "TemperatureValue": values[4],
                               "Action": values[5]}}).encode()
    assert isinstance(dahua.decode("dahua/c/event", dah, RECEIVED), DeadLetter | list)
