"""Alarm v1 (design §4): `gridwatch/devices/{device_id}/alarm` JSON → Alarm, or a DeadLetter.

```json
{"id": "msg-000123", "ts": "2026-11-21T08:15:02+08:00", "type": "fence.intrusion",
 "severity": 3, "lat": 27.6231, "lon": 113.8544, "zone": "Z4", "data": {"voltage_kv": 7.9}}
```
The device id comes from the topic, never from the payload. Unknown fields are ignored (the raw
payload is kept), so devices may send newer fields without being refused.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from ingest.adapters.common import (
    Latitude,
    Longitude,
    ZonedTimestamp,
    load_json_object,
    require_aware,
    schema_dead_letter,
)
from ingest.model import Alarm, DeadLetter

logger = logging.getLogger(__name__)

DEFAULT_SEVERITY = 2
"""Used when a payload has no `severity` (1 = info … 5 = critical)."""
FUTURE_SKEW_WARNING_S = 300
"""A `ts` further than this ahead of the receive time gets a warning (device clock off)."""

ALARM_TYPES: frozenset[str] = frozenset(
    {
        "fence.intrusion", "fence.touch", "fence.cut", "fence.short", "fence.tamper", "fence.low_voltage",
        "thermal.fire", "thermal.overheat", "thermal.intrusion",
        "camera.line_crossing", "camera.region_entrance",
        "smoke.alarm",
        "device.offline",
    }
)
"""The documented `<kind>.<event>` list; anything else is accepted as `other.<type>` with a warning."""
OTHER_KIND = "other"

_TYPE_CHARS = re.compile(r"[^a-z0-9_.\-]+")

ShortStr = Annotated[str, StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=128)]


class AlarmV1(BaseModel):
    """The alarm v1 payload; strict where a silent coercion would hide a device bug."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: ShortStr
    ts: ZonedTimestamp
    type: Annotated[str, StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=64)]
    severity: Annotated[int, Field(strict=True, ge=1, le=5)] = DEFAULT_SEVERITY
    lat: Latitude | None = None
    lon: Longitude | None = None
    zone: Annotated[str, StringConstraints(strict=True, max_length=64)] | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _lat_lon_together(self) -> AlarmV1:
        if (self.lat is None) != (self.lon is None):
            given = "lat" if self.lat is not None else "lon"
            raise PydanticCustomError(
                "lat_lon_pair", "lat/lon: expected both or neither, got only {given}", {"given": given}
            )
        return self


def normalize_type(raw: str) -> tuple[str, str | None]:
    """Return (type, warning): documented types pass; others become `other.<type>` with a warning."""
    if raw in ALARM_TYPES:
        return raw, None
    if raw.startswith(f"{OTHER_KIND}.") and len(raw) > len(OTHER_KIND) + 1:
        return raw, f"type {raw!r} is not in the documented list; kept as an other.* type"
    cleaned = _TYPE_CHARS.sub("_", raw.lower()).strip("._") or "unknown"
    mapped = f"{OTHER_KIND}.{cleaned}"
    return mapped, f"unknown type {raw!r}: accepted as {mapped!r}"


def decode(device_id: str, payload: bytes, received_at: datetime, *, topic: str) -> Alarm | DeadLetter:
    """Decode one alarm v1 payload of device `device_id` into an Alarm, or a DeadLetter with the reason."""
    require_aware(received_at)
    obj = load_json_object(payload, topic, received_at)
    if isinstance(obj, DeadLetter):
        return obj
    try:
        msg = AlarmV1.model_validate(obj)
    except ValidationError as err:
        return schema_dead_letter(err, topic, payload, received_at)
    alarm_type, warning = normalize_type(msg.type)
    warnings = [warning] if warning else []
    if warning:
        logger.info("device %s: %s", device_id, warning)
    ahead = (msg.ts - received_at).total_seconds()
    if ahead > FUTURE_SKEW_WARNING_S:
        warnings.append(f"ts is {ahead:.0f} s ahead of the receive time (device clock?)")
    return Alarm(
        device_id=device_id,
        msg_id=msg.id,
        ts=msg.ts,
        type=alarm_type,
        severity=msg.severity,
        received_at=received_at,
        raw=payload,
        lon=msg.lon,
        lat=msg.lat,
        zone=msg.zone or None,
        data=dict(msg.data),
        warnings=tuple(warnings),
    )
