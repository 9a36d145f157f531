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
class DeadLetter:
    """A message that could not be accepted, stored with the reason; replayable."""

    topic: str
    payload: bytes
    reason: str
    detail: str
    received_at: datetime


Decoded = Alarm | PatrollerPosition | DeadLetter
