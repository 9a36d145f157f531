"""Helpers the sensor adapters share (status v1, reading v1, zigbee2mqtt, homeassistant, fence, location, osmand).

The level-state helpers (`level_alarm`, `level_end`, `SEVERITY`/`severity_of`, `ts_data`, `received`) serve
every level-triggered adapter; `finite`, `safe_vendor_ts` and `short` read and show JSON values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ingest.adapters.timestamps import VendorTs, vendor_ts
from ingest.model import Alarm, AlarmEnd

SEVERITY: Mapping[str, int] = {
    "fence.intrusion": 4, "fence.cut": 4, "fence.touch": 3, "fence.short": 3, "fence.tamper": 3,
    "fence.low_voltage": 2, "fence.power_loss": 3,
    "thermal.fire": 5, "thermal.overheat": 3, "thermal.intrusion": 3,
    "smoke.alarm": 4, "sensor.water_leak": 3, "sensor.contact_open": 2, "sensor.occupancy": 2,
    "device.offline": 2, "device.tamper": 3, "device.power_loss": 3, "device.low_battery": 1,
}
"""Default severity (1 = info … 5 = critical) of a documented type; `other.*` gets DEFAULT_SEVERITY."""
DEFAULT_SEVERITY = 2

_MAX_JSON_INT = 10**300  # float() of a larger JSON integer raises OverflowError


def finite(value: object) -> float | None:
    """A JSON number as a finite float; None for anything else (bool, string, NaN/inf, an integer beyond float)."""
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None  # type: ignore[arg-type,return-value]
    if kind is int:
        return float(value) if -_MAX_JSON_INT < value < _MAX_JSON_INT else None  # type: ignore[arg-type,operator]
    return None


def safe_vendor_ts(value: object, received_at: datetime) -> VendorTs:
    """vendor_ts, guarded against a JSON integer too large for a float (on which vendor_ts would raise)."""
    if isinstance(value, int) and not isinstance(value, bool) and not -_MAX_JSON_INT < value < _MAX_JSON_INT:
        return VendorTs(received_at.astimezone(UTC), "received",
                        f"epoch {str(value)[:16]}… is out of range; used the receive time")
    return vendor_ts(value, received_at)


def severity_of(alarm_type: str) -> int:
    """The default severity of an alarm type."""
    return SEVERITY.get(alarm_type, DEFAULT_SEVERITY)


def ts_data(vt: VendorTs, source: object) -> dict[str, Any]:
    """`ts_offset` and `ts_source` for an alarm's data (design: the source's offset is kept)."""
    return {"ts_offset": vt.offset, "ts_source": None if source is None else str(source)}


def level_alarm(
    device_id: str,
    alarm_type: str,
    vt: VendorTs,
    ts_source: object,
    received_at: datetime,
    raw: bytes,
    *,
    warnings: tuple[str, ...] = (),
    data: Mapping[str, Any] | None = None,
    zone: str | None = None,
    severity: int | None = None,
) -> Alarm:
    """A level-triggered Alarm (a sensor state): msg_id f"{type}@{ts.isoformat()}", level=True."""
    merged = dict(data or {})
    merged.update(ts_data(vt, ts_source))
    all_warnings = warnings + ((vt.warning,) if vt.warning else ())
    return Alarm(
        device_id=device_id, msg_id=f"{alarm_type}@{vt.utc.isoformat()}", ts=vt.utc, type=alarm_type,
        severity=severity if severity is not None else severity_of(alarm_type), received_at=received_at, raw=raw,
        zone=zone, data=merged, warnings=all_warnings, level=True,
    )


def level_end(device_id: str, alarm_type: str, ts: datetime, received_at: datetime, raw: bytes) -> AlarmEnd:
    """The falling edge of a level state: closes the device's latest open alarm of `alarm_type`."""
    return AlarmEnd(device_id=device_id, ts=ts, received_at=received_at, raw=raw, msg_id=None, type=alarm_type)


def received(received_at: datetime) -> VendorTs:
    """The receive time as a VendorTs, for formats that never carry a time (no warning: nothing was guessed)."""
    return VendorTs(received_at.astimezone(UTC), "received", None)


def short(value: Any) -> str:
    """A value as JSON for a dead letter's `(got …)`, cut at 40 characters."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "…"
