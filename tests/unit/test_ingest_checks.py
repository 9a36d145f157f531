"""Context checks on decoded alarms: unknown device, outside the district, soft mismatches."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from shapely.geometry import LineString, Point, box

from geo.model import Device
from ingest.checks import check_alarm
from ingest.model import Alarm, DeadLetter

pytestmark = pytest.mark.unit

DISTRICT = box(113.80, 27.58, 113.90, 27.66)
DEVICES = {
    "fence-1": Device("fence-1", "fence", "north fence", LineString([(113.84, 27.62), (113.86, 27.62)]),
                      "430000001001001", zones=("Z1", "Z2")),
    "cam-1": Device("cam-1", "thermal", "tower cam", Point(113.85, 27.63), "430000001001001"),
}
T = datetime(2026, 11, 21, 0, 15, tzinfo=UTC)


def inside(lon: float, lat: float) -> bool:
    return DISTRICT.contains(Point(lon, lat))


def alarm(**changes: object) -> Alarm:
    base = Alarm(device_id="fence-1", msg_id="m1", ts=T, type="fence.intrusion", severity=3, received_at=T,
                 raw=b"{}", lon=113.85, lat=27.62, zone="Z1")
    return dataclasses.replace(base, **changes)


def test_registered_device_inside_the_district_passes_unchanged() -> None:
    a = alarm()
    assert check_alarm(a, DEVICES, inside) is a


def test_unknown_device_is_dead_lettered() -> None:
    result = check_alarm(alarm(device_id="ghost-9"), DEVICES, inside)
    assert isinstance(result, DeadLetter)
    assert result.reason == "unknown_device"
    assert "ghost-9" in result.detail
    assert result.topic == "gridwatch/devices/ghost-9/alarm"
    assert result.payload == b"{}" and result.received_at == T


def test_own_position_outside_the_district_is_dead_lettered() -> None:
    result = check_alarm(alarm(lon=114.5, lat=27.62), DEVICES, inside)
    assert isinstance(result, DeadLetter) and result.reason == "outside_district"


def test_alarm_without_position_is_not_checked_against_the_district() -> None:
    a = alarm(lon=None, lat=None)
    assert check_alarm(a, DEVICES, lambda _lon, _lat: False) is a


def test_kind_and_zone_mismatches_are_warnings_only() -> None:
    result = check_alarm(alarm(type="thermal.fire", zone="Z9", warnings=("earlier",)), DEVICES, inside)
    assert isinstance(result, Alarm)
    assert result.warnings[0] == "earlier"
    assert any("kind" in w for w in result.warnings) and any("Z9" in w for w in result.warnings)


def test_device_and_other_kinds_fit_any_device() -> None:
    for t in ("device.offline", "other.flood"):
        a = alarm(type=t)
        assert check_alarm(a, DEVICES, inside) is a
