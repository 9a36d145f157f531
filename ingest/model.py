"""Normalized messages produced at the ingest edge (frozen; the raw payload is kept)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Alarm:
    """One normalized device message that says something is wrong.

    (device_id, msg_id) is the dedup key. `ts` is timezone-aware. lon/lat are None when the
    payload carried no position (then the device's registered location is used).
    """

    device_id: str
    msg_id: str
    ts: datetime
    type: str
    severity: int
    received_at: datetime
    raw: bytes
    lon: float | None = None
    lat: float | None = None
    zone: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    level: bool = False
    """True for a level-triggered source (a sensor state such as Zigbee `smoke: true`, repeated on every
    state report): only the rising edge raises an alarm, until an AlarmEnd of the same type clears it."""

    @property
    def key(self) -> tuple[str, str]:
        """The dedup key (device id, message id)."""
        return (self.device_id, self.msg_id)


@dataclass(frozen=True, slots=True)
class PatrollerPosition:
    """A patroller's GPS fix from their phone."""

    patroller_id: str
    ts: datetime
    lon: float
    lat: float
    acc: float | None = None


@dataclass(frozen=True, slots=True)
class AlarmEnd:
    """A source says an alarm is over (Frigate `end`, Dahua `Stop`, ONVIF state false, Zigbee `smoke: false`).

    It closes the stored alarm `(device_id, msg_id)` (or, with no msg_id, the device's latest alarm of
    `type`); it never opens anything.
    """

    device_id: str
    ts: datetime
    received_at: datetime
    raw: bytes
    msg_id: str | None = None
    type: str | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    """One numeric sample of a device (temperature, fence voltage, battery %): time series."""

    device_id: str
    ts: datetime
    metric: str
    value: float
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """A device says it is alive (heartbeat), online or offline (status, MQTT will, availability)."""

    device_id: str
    ts: datetime
    online: bool
    source: str  # "heartbeat" | "status" | "will" | "availability"
    received_at: datetime
    raw: bytes = b""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HaEntity:
    """A Home Assistant MQTT discovery config: which state topic belongs to which entity."""

    state_topic: str
    component: str  # "binary_sensor" | "sensor" | ...
    unique_id: str  # the device identity key: `homeassistant:<unique_id>`
    device_class: str | None
    payload_on: str = "ON"
    payload_off: str = "OFF"
    unit: str | None = None
    value_template: str | None = None
    availability_topic: str | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that could not be accepted, stored with the reason; replayable."""

    topic: str
    payload: bytes
    reason: str
    detail: str
    received_at: datetime


Decoded = Alarm | PatrollerPosition | DeadLetter

Normalized = Alarm | AlarmEnd | Reading | DeviceStatus | PatrollerPosition | HaEntity
"""What an adapter's `decode` returns a list of (or one DeadLetter for the whole message)."""
