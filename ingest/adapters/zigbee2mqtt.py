"""Zigbee2MQTT device state and availability → level alarms, Readings and DeviceStatus.

Topics (the base topic is `zigbee2mqtt` unless the bridge is configured otherwise; pass `base=`):
- `zigbee2mqtt/<friendly_name>`: the device's state as one JSON object, published on every change and
  repeated in full, e.g. a smoke detector
  `{"smoke": true, "battery": 87, "battery_low": false, "tamper": false, "linkquality": 120,
  "voltage": 2900, "last_seen": "2026-11-21T08:15:02+08:00"}`.
- `zigbee2mqtt/<friendly_name>/availability`: `{"state": "online"|"offline"}`, or the legacy plain
  `online`/`offline` → DeviceStatus(source="availability", ts = receive time).
- `zigbee2mqtt/bridge/...`, `.../set`, `.../get` (and `.../set/<attribute>`, `.../get/<attribute>`) are
  the bridge's own traffic and commands to devices: nothing (`[]`).
A friendly name may contain `/`: the identity is everything between the base topic and an optional
trailing `/availability`, as `zigbee2mqtt:<friendly_name>`. An empty payload (a retained state being
cleared when a device is removed) is nothing too.

State fields used (all others are ignored; a field that is null or of another type is skipped):
| field | true → | false → |
|---|---|---|
| `smoke` | Alarm smoke.alarm | AlarmEnd smoke.alarm |
| `contact` (**false = open**) | AlarmEnd sensor.contact_open | Alarm sensor.contact_open |
| `occupancy` | Alarm sensor.occupancy | AlarmEnd |
| `water_leak` | Alarm sensor.water_leak | AlarmEnd |
| `tamper` | Alarm device.tamper | AlarmEnd |
| `battery_low` | Alarm device.low_battery | AlarmEnd |
Alarms are level-triggered (`level=True`, msg_id f"{type}@{ts.isoformat()}"); ts is `last_seen`
(ISO-8601 or epoch ms, as the bridge's `last_seen` option says) when present, else the receive time.
Readings: `battery` (%), `temperature` (°C), `humidity` (%), `linkquality` (lqi), `voltage`
(Zigbee2MQTT reports mV; emitted in V so it matches the other sources' `voltage`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime

from ingest.adapters.common import SCHEMA, UNHANDLED_TOPIC, dead_letter, load_json_object, require_aware
from ingest.adapters.shared import (
    finite,
    level_alarm,
    level_end,
    received,
    safe_vendor_ts,
    short,
)
from ingest.model import DeadLetter, DeviceStatus, Normalized, Reading

logger = logging.getLogger(__name__)

BASE_TOPIC = "zigbee2mqtt"
FORMAT = "zigbee2mqtt"

STATE_ALARMS: Mapping[str, str] = {
    "smoke": "smoke.alarm",
    "occupancy": "sensor.occupancy",
    "water_leak": "sensor.water_leak",
    "tamper": "device.tamper",
    "battery_low": "device.low_battery",
}
"""Boolean state fields whose `true` is an alarm (`contact` is handled apart: its `false` is)."""
CONTACT_TYPE = "sensor.contact_open"
READINGS: Mapping[str, tuple[str, str, float]] = {
    "battery": ("battery", "%", 1.0),
    "temperature": ("temperature", "°C", 1.0),
    "humidity": ("humidity", "%", 1.0),
    "linkquality": ("linkquality", "lqi", 1.0),
    "voltage": ("voltage", "V", 1000.0),  # mV → V
}
"""State field → (metric, unit, divisor)."""
_COMMANDS = frozenset({"set", "get"})


def device_id(friendly_name: str) -> str:
    """The vendor identity of a Zigbee2MQTT device."""
    return f"{FORMAT}:{friendly_name}"


def parse_topic(topic: str, base: str = BASE_TOPIC) -> tuple[str, str] | None:
    """(kind, friendly_name) with kind "state" | "availability" | "ignore"; None if not under `base`."""
    prefix = base + "/"
    if not topic.startswith(prefix):
        return None
    rest = topic[len(prefix):]
    levels = rest.split("/")
    if levels[0] == "bridge" or levels[-1] in _COMMANDS or (len(levels) >= 2 and levels[-2] in _COMMANDS):
        return "ignore", rest
    if len(levels) >= 2 and levels[-1] == "availability":
        return "availability", rest[: -len("/availability")]
    return "state", rest


def decode(
    topic: str, payload: bytes, received_at: datetime, *, base: str = BASE_TOPIC
) -> list[Normalized] | DeadLetter:
    """Decode one Zigbee2MQTT message by its topic; never raises on any payload."""
    require_aware(received_at)
    route = parse_topic(topic, base)
    if route is None or not route[1]:
        return dead_letter(topic, payload, received_at, UNHANDLED_TOPIC,
                           f"topic {topic!r}: expected {base}/<friendly_name>[/availability]")
    kind, name = route
    if kind == "ignore":
        logger.debug("zigbee2mqtt: ignoring %s", topic)
        return []
    if not payload.strip():
        logger.debug("zigbee2mqtt: empty payload on %s (retained state cleared)", topic)
        return []
    if kind == "availability":
        return _availability(topic, name, payload, received_at)
    return _state(topic, name, payload, received_at)


def _availability(topic: str, name: str, payload: bytes, received_at: datetime) -> list[Normalized] | DeadLetter:
    state: object
    word = payload.strip().lower()
    if word in (b"online", b"offline"):
        state = word.decode()
    else:
        obj = load_json_object(payload, topic, received_at)
        if isinstance(obj, DeadLetter):
            return obj
        state = obj.get("state")
    if state not in ("online", "offline"):
        return dead_letter(topic, payload, received_at, SCHEMA,
                           f'state: expected "online" or "offline" (got {short(state)})')
    return [DeviceStatus(device_id=device_id(name), ts=received_at.astimezone(UTC), online=state == "online",
                         source="availability", received_at=received_at, raw=payload)]


def _state(topic: str, name: str, payload: bytes, received_at: datetime) -> list[Normalized] | DeadLetter:
    obj = load_json_object(payload, topic, received_at)
    if isinstance(obj, DeadLetter):
        return obj
    ident = device_id(name)
    last_seen = obj.get("last_seen")
    vt = safe_vendor_ts(last_seen, received_at) if last_seen is not None else received(received_at)
    out: list[Normalized] = []
    for field, (metric, unit, divisor) in READINGS.items():
        raw_value = obj.get(field)
        if raw_value is None:
            continue
        value = finite(raw_value)
        if value is None:
            logger.debug("zigbee2mqtt %s: %s is not a number (%.40r); skipped", name, field, raw_value)
            continue
        out.append(Reading(device_id=ident, ts=vt.utc, metric=metric, value=value / divisor, unit=unit))
    states: list[tuple[str, bool]] = []
    for field, alarm_type in STATE_ALARMS.items():
        value = obj.get(field)
        if isinstance(value, bool):
            states.append((alarm_type, value))
        elif value is not None:
            logger.debug("zigbee2mqtt %s: %s is not a boolean (%r); skipped", name, field, value)
    contact = obj.get("contact")
    if isinstance(contact, bool):
        states.append((CONTACT_TYPE, not contact))
    for alarm_type, active in states:
        if active:
            out.append(level_alarm(ident, alarm_type, vt, last_seen, received_at, payload))
        else:
            out.append(level_end(ident, alarm_type, vt.utc, received_at, payload))
    if not out:
        logger.debug("zigbee2mqtt %s: no field gridwatch uses", name)
    return out
