"""MQTT topic names of design §4: builders for each topic, subscription filters and a parser."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from ingest.errors import InvalidTopicError

ROOT = "gridwatch"
OWNTRACKS_ROOT = "owntracks"
SHARE_GROUP = "gridwatch"

DeviceChannel = Literal["alarm", "reading", "status"]
TopicKind = Literal["alarm", "reading", "status", "location", "owntracks"]
DEVICE_CHANNELS: tuple[DeviceChannel, ...] = ("alarm", "reading", "status")

DEVICE_ALARMS = f"{ROOT}/devices/+/alarm"
DEVICE_READINGS = f"{ROOT}/devices/+/reading"
DEVICE_STATUS = f"{ROOT}/devices/+/status"
PATROLLER_LOCATIONS = f"{ROOT}/patrollers/+/location"
OWNTRACKS_LOCATIONS = f"{OWNTRACKS_ROOT}/+/+"
INGEST_FILTERS: tuple[str, ...] = (
    DEVICE_ALARMS,
    DEVICE_READINGS,
    DEVICE_STATUS,
    PATROLLER_LOCATIONS,
    OWNTRACKS_LOCATIONS,
)
"""Everything the ingest worker subscribes to (QoS 1)."""

_FORBIDDEN = ("/", "+", "#", "\x00")


@dataclass(frozen=True, slots=True)
class TopicRoute:
    """What an inbound topic names: `kind` and the id in it (device, patroller or OwnTracks user)."""

    kind: TopicKind
    subject_id: str
    owntracks_device: str | None = None


def _level(value: str, what: str) -> str:
    if not value or any(ch in value for ch in _FORBIDDEN) or value.startswith("$"):
        raise InvalidTopicError(
            f"{what} {value!r}: expected a non-empty id without '/', '+', '#', NUL or a leading '$'"
        )
    return value


def device_topic(device_id: str, channel: DeviceChannel) -> str:
    """`gridwatch/devices/{device_id}/{alarm|reading|status}`."""
    if channel not in DEVICE_CHANNELS:
        raise InvalidTopicError(f"device channel {channel!r}: expected one of {', '.join(DEVICE_CHANNELS)}")
    return f"{ROOT}/devices/{_level(device_id, 'device id')}/{channel}"


def device_alarm(device_id: str) -> str:
    """`gridwatch/devices/{device_id}/alarm`."""
    return device_topic(device_id, "alarm")


def device_reading(device_id: str) -> str:
    """`gridwatch/devices/{device_id}/reading`."""
    return device_topic(device_id, "reading")


def device_status(device_id: str) -> str:
    """`gridwatch/devices/{device_id}/status` (also the device's will topic)."""
    return device_topic(device_id, "status")


def patroller_location(patroller_id: str) -> str:
    """`gridwatch/patrollers/{patroller_id}/location` (phone → ingest)."""
    return f"{ROOT}/patrollers/{_level(patroller_id, 'patroller id')}/location"


def owntracks(user: str, device: str) -> str:
    """`owntracks/{user}/{device}` (the OwnTracks app's default publish topic)."""
    return f"{OWNTRACKS_ROOT}/{_level(user, 'OwnTracks user')}/{_level(device, 'OwnTracks device')}"


def patroller_alerts(patroller_id: str) -> str:
    """`gridwatch/patrollers/{patroller_id}/alerts` (outbound: incidents for that patroller's phone)."""
    return f"{ROOT}/patrollers/{_level(patroller_id, 'patroller id')}/alerts"


def grid_incidents(grid_code: str) -> str:
    """`gridwatch/grids/{grid_code}/incidents` (outbound: incident events inside that grid)."""
    return f"{ROOT}/grids/{_level(grid_code, 'grid code')}/incidents"


def shared(topic_filter: str, group: str = SHARE_GROUP) -> str:
    """Wrap a filter as a shared subscription `$share/{group}/{filter}` (N workers split the load)."""
    if topic_filter.startswith("$share/"):
        return topic_filter
    return f"$share/{_level(group, 'share group')}/{topic_filter}"


def parse(topic: str) -> TopicRoute | None:
    """Tell what an inbound topic is about; None for topics ingest does not handle."""
    levels = topic.split("/")
    if len(levels) == 4 and levels[0] == ROOT and levels[2] and not levels[2].startswith("$"):
        if levels[1] == "devices" and levels[3] in DEVICE_CHANNELS:
            return TopicRoute(kind=cast(TopicKind, levels[3]), subject_id=levels[2])
        if levels[1] == "patrollers" and levels[3] == "location":
            return TopicRoute(kind="location", subject_id=levels[2])
    if len(levels) == 3 and levels[0] == OWNTRACKS_ROOT and levels[1] and levels[2]:
        return TopicRoute(kind="owntracks", subject_id=levels[1], owntracks_device=levels[2])
    return None
