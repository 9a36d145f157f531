"""Checks that need context (the device registry, the district outline); pure functions."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping

from geo.model import Device
from ingest import topics
from ingest.adapters.common import dead_letter
from ingest.model import Alarm, DeadLetter

logger = logging.getLogger(__name__)

UNKNOWN_DEVICE = "unknown_device"
OUTSIDE_DISTRICT = "outside_district"

_KIND_FREE = ("device", "other")  # alarm kinds any device may send


def check_alarm(
    alarm: Alarm, devices: Mapping[str, Device], inside: Callable[[float, float], bool], *,
    topic: str | None = None, payload: bytes | None = None,
) -> Alarm | DeadLetter:
    """Dead-letter alarms of unregistered devices or with their own lat/lon outside the district.

    `inside(lon, lat)` tells whether a WGS84 point lies in the district. Softer mismatches (type kind
    vs device kind, a zone the device does not have) only add warnings to the returned Alarm. A dead
    letter keeps the message's `topic` and whole `payload` (default: the device's alarm topic and the
    alarm's raw bytes), so that a replay decodes the message it came from.
    """
    topic = topic or topics.device_alarm(alarm.device_id)
    raw = alarm.raw if payload is None else payload
    device = devices.get(alarm.device_id)
    if device is None:
        return dead_letter(
            topic, raw, alarm.received_at, UNKNOWN_DEVICE,
            f"device {alarm.device_id!r} is not registered",
        )
    if alarm.lon is not None and alarm.lat is not None and not inside(alarm.lon, alarm.lat):
        return dead_letter(
            topic, raw, alarm.received_at, OUTSIDE_DISTRICT,
            f"lat/lon ({alarm.lat}, {alarm.lon}) of device {alarm.device_id!r} is outside the district",
        )
    warnings = list(alarm.warnings)
    kind = alarm.type.split(".", 1)[0]
    if kind not in _KIND_FREE and kind != device.kind:
        warnings.append(f"type {alarm.type!r} does not match the kind {device.kind!r} of device {device.id!r}")
    if alarm.zone is not None and device.zones and alarm.zone not in device.zones:
        warnings.append(f"zone {alarm.zone!r} is not one of device {device.id!r}'s zones {list(device.zones)}")
    if len(warnings) == len(alarm.warnings):
        return alarm
    return dataclasses.replace(alarm, warnings=tuple(warnings))
