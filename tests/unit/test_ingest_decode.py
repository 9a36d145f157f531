"""decode_messages: one inbound message routed by topic to its adapter; then the registry checks (pipeline)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from shapely.geometry import LineString, Point, box

from geo.model import Device
from ingest.decode import decode_messages
from ingest.model import Alarm, DeadLetter, DeviceStatus, PatrollerPosition
from ingest.pipeline import Inbound, LevelFilter, assemble
from ingest.registry import Registry

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 21, 0, 15, 3, tzinfo=UTC)
DEVICES = [Device("fence-1", "fence", "f", LineString([(113.84, 27.62), (113.86, 27.62)]), "430000001001001")]
AREA = box(113.8, 27.5, 113.9, 27.7)


def decode(topic: str, payload: bytes) -> object:
    return decode_messages(topic, payload, NOW)


def checked(topic: str, payload: bytes) -> object:
    batch = assemble([Inbound(topic, payload, NOW, decode_messages(topic, payload, NOW))], registry=Registry(DEVICES),
                     inside=lambda lon, lat: AREA.contains(Point(lon, lat)), levels=LevelFilter(), thresholds=None, now=NOW)
    return (batch.alarms or batch.dead_letters or [None])[0]


def test_alarm_is_decoded_and_checked() -> None:
    ok = b'{"id":"m1","ts":"2026-11-21T08:15:02+08:00","type":"fence.cut","lat":27.62,"lon":113.85}'
    assert isinstance(checked("gridwatch/devices/fence-1/alarm", ok), Alarm)
    unknown = checked("gridwatch/devices/ghost/alarm", ok)
    assert isinstance(unknown, DeadLetter) and unknown.reason == "unknown_device"
    far = checked("gridwatch/devices/fence-1/alarm", ok.replace(b"113.85", b"100.0"))
    assert isinstance(far, DeadLetter) and far.reason == "outside_district"


def test_gridwatch_location_is_a_position_of_the_topic_patroller() -> None:
    (pos,) = decode("gridwatch/patrollers/p7/location", b'{"ts":"2026-11-21T08:15:02Z","lat":27.62,"lon":113.85}')  # type: ignore[misc]
    assert isinstance(pos, PatrollerPosition) and pos.patroller_id == "p7"


def test_owntracks_location_and_will() -> None:
    (pos,) = decode("owntracks/p7/phone", b'{"_type":"location","tst":1763683502,"lat":27.62,"lon":113.85}')  # type: ignore[misc]
    assert isinstance(pos, PatrollerPosition) and pos.patroller_id == "p7"
    (will,) = decode("owntracks/p7/phone", b'{"_type":"lwt","tst":1763683502}')  # type: ignore[misc]
    assert isinstance(will, DeviceStatus) and will.device_id == "patroller:p7" and not will.online
    assert decode("owntracks/p7/phone/cmd", b"{}") == []


def test_each_vendor_prefix_reaches_its_adapter() -> None:
    assert decode("zigbee2mqtt/bridge/state", b'{"state":"online"}') == []
    assert isinstance(decode("frigate/available", b"online"), list)
    for topic in ("hikvision/x/event", "dahua/x/event", "onvif/x/event"):
        assert isinstance(decode(topic, b"\xff\xfe"), DeadLetter), topic


def test_bad_input_becomes_a_dead_letter_never_an_exception() -> None:
    for topic, payload in [("gridwatch/devices/fence-1/alarm", b"{"), ("gridwatch/patrollers/p7/location", b"[]"),
                           ("owntracks/p7/phone", b"\xff"), ("somewhere/else", b"{}"),
                           ("gridwatch/devices/fence-1/alarm", b" " * 70000), ("gridwatch/devices/fence-1/reading", b"{}")]:
        assert isinstance(decode(topic, payload), DeadLetter), topic
