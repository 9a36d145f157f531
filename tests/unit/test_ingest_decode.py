"""decode_message: one inbound message routed by topic to its adapter and the context checks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from shapely.geometry import LineString, Point, box

from geo.model import Device
from ingest.decode import decode_message
from ingest.model import Alarm, DeadLetter, PatrollerPosition

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 21, 0, 15, 3, tzinfo=UTC)
DEVICES = {"fence-1": Device("fence-1", "fence", "f", LineString([(113.84, 27.62), (113.86, 27.62)]),
                             "430000001001001")}
AREA = box(113.8, 27.5, 113.9, 27.7)


def decode(topic: str, payload: bytes) -> object:
    return decode_message(topic, payload, NOW, devices=DEVICES, inside=lambda lon, lat: AREA.contains(Point(lon, lat)))


def test_alarm_is_decoded_and_checked() -> None:
    ok = b'{"id":"m1","ts":"2026-11-21T08:15:02+08:00","type":"fence.cut","lat":27.62,"lon":113.85}'
    assert isinstance(decode("gridwatch/devices/fence-1/alarm", ok), Alarm)
    unknown = decode("gridwatch/devices/ghost/alarm", ok)
    assert isinstance(unknown, DeadLetter) and unknown.reason == "unknown_device"


def test_gridwatch_location_is_a_position_of_the_topic_patroller() -> None:
    pos = decode("gridwatch/patrollers/p7/location", b'{"ts":"2026-11-21T08:15:02Z","lat":27.62,"lon":113.85}')
    assert isinstance(pos, PatrollerPosition) and pos.patroller_id == "p7"


def test_owntracks_location_and_ignored_types() -> None:
    pos = decode("owntracks/p7/phone", b'{"_type":"location","tst":1763683502,"lat":27.62,"lon":113.85}')
    assert isinstance(pos, PatrollerPosition) and pos.patroller_id == "p7"
    assert decode("owntracks/p7/phone", b'{"_type":"lwt","tst":1763683502}') is None


def test_bad_input_becomes_a_dead_letter_never_an_exception() -> None:
    for topic, payload in [("gridwatch/devices/fence-1/alarm", b"{"), ("gridwatch/patrollers/p7/location", b"[]"),
                           ("owntracks/p7/phone", b"\xff"), ("somewhere/else", b"{}"),
                           ("gridwatch/devices/fence-1/alarm", b" " * 70000)]:
        assert isinstance(decode(topic, payload), DeadLetter), topic
