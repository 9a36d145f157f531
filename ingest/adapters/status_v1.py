"""Status v1 (design §4): `gridwatch/devices/{device_id}/status` → DeviceStatus (+ Readings, level alarms).

The same topic carries the device's status reports, its heartbeats and its MQTT will message:
```json
{"ts": "2026-11-21T08:15:02+08:00", "online": true, "battery": 87, "voltage": 12.6, "rssi": -71,
 "firmware": "2.1.0", "tamper": false, "power": "mains", "battery_low": false}
{"online": false}            ← a will (set at connect time, published by the broker on a lost connection)
{"heartbeat": true, "ts": 1763683502}
online | offline             ← plain text, as many devices set their will
```
- `ts`: ISO-8601 *with a zone* or epoch seconds/ms as a JSON number; strict like alarm v1 (a zoneless ISO
  time → dead letter `ts_without_zone`, anything else unreadable → `schema`). No `ts` → the receive time.
- `online` (bool) → DeviceStatus(online=…). Its `source` is `"will"` for `online: false` without a `ts`
  (what a will looks like: it was written at connect time, so it carries no meaningful time), otherwise
  `"status"`. Plain text `offline` is a will too; plain `online` is a `"status"` (a birth message).
- A payload without `online` (e.g. `{"heartbeat": true}`) → DeviceStatus(online=True, source="heartbeat").
- Every other field is kept in DeviceStatus.data (not `ts`/`online`/`heartbeat`).
- Known numeric fields also become Readings: `battery` (%), `voltage` (V), `rssi` (dBm); each must be a
  finite number (or null = not reported).
- Level-triggered states (repeated on every report; only a change raises or clears an alarm):
  `tamper: true` → Alarm device.tamper, `power: "lost"|"battery"` or `power_loss: true` → device.power_loss,
  `battery_low: true` → device.low_battery; their false values (`power: "mains"|"ac"|"ok"`) → AlarmEnd(type).
  A level alarm's msg_id is f"{type}@{ts.isoformat()}".

This module also holds the level-state helpers (`level_alarm`, `level_end`, `SEVERITY`) that the other
level-triggered adapters (zigbee2mqtt, homeassistant, fence) share.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ingest.adapters.common import (
    SCHEMA,
    TS_WITHOUT_ZONE,
    dead_letter,
    load_json_object,
)
from ingest.adapters.timestamps import VendorTs, vendor_ts
from ingest.model import Alarm, AlarmEnd, DeadLetter, DeviceStatus, Normalized, Reading

logger = logging.getLogger(__name__)

SEVERITY: Mapping[str, int] = {
    "fence.intrusion": 4, "fence.cut": 4, "fence.touch": 3, "fence.short": 3, "fence.tamper": 3,
    "fence.low_voltage": 2, "fence.power_loss": 3,
    "thermal.fire": 5, "thermal.overheat": 3, "thermal.intrusion": 3,
    "smoke.alarm": 4, "sensor.water_leak": 3, "sensor.contact_open": 2, "sensor.occupancy": 2,
    "device.offline": 2, "device.tamper": 3, "device.power_loss": 3, "device.low_battery": 1,
}
"""Default severity (1 = info … 5 = critical) of a documented type; `other.*` gets DEFAULT_SEVERITY."""
DEFAULT_SEVERITY = 2

READING_FIELDS: Mapping[str, str] = {"battery": "%", "voltage": "V", "rssi": "dBm"}
"""Status fields that are also emitted as Reading(metric=field, unit=…)."""
POWER_LOST = frozenset({"lost", "battery"})
POWER_OK = frozenset({"mains", "ac", "ok", "normal"})
_RESERVED = frozenset({"ts", "online", "heartbeat"})
_TS_EXAMPLE = "2026-11-21T08:15:02+08:00"


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


def _strict_ts(value: Any, received_at: datetime) -> VendorTs | tuple[str, str]:
    """Zoned ISO or an epoch number → VendorTs; else (reason, detail)."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value) if len(value) <= 64 else None
        except ValueError:
            parsed = None
        if parsed is None:
            return SCHEMA, f"ts: expected an ISO-8601 time with a zone (e.g. {_TS_EXAMPLE}) or epoch seconds/ms " \
                           f"as a number (got {short(value)})"
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            return TS_WITHOUT_ZONE, f"ts: expected a zone offset (Z or ±hh:mm), e.g. {_TS_EXAMPLE} (got {short(value)})"
    elif isinstance(value, bool) or not isinstance(value, int | float):
        return SCHEMA, f"ts: expected an ISO-8601 time with a zone or epoch seconds/ms as a number (got {short(value)})"
    return safe_vendor_ts(value, received_at)


def decode(device_id: str, payload: bytes, received_at: datetime, *, topic: str) -> list[Normalized] | DeadLetter:
    """Decode one status v1 payload (or will) of device `device_id`, or a DeadLetter with the reason."""
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware (UTC)")
    if len(payload) <= 16:
        word = payload.strip().strip(b'"').lower()  # also the JSON string "offline"
        if word in (b"online", b"offline"):
            up = word == b"online"
            return [DeviceStatus(device_id=device_id, ts=received_at.astimezone(UTC), online=up,
                                 source="status" if up else "will", received_at=received_at, raw=payload)]
    obj = load_json_object(payload, topic, received_at)
    if isinstance(obj, DeadLetter):
        return obj
    problems: list[str] = []
    zoneless = False
    if "ts" in obj and obj["ts"] is not None:
        parsed = _strict_ts(obj["ts"], received_at)
        if isinstance(parsed, tuple):
            zoneless = parsed[0] == TS_WITHOUT_ZONE
            problems.append(parsed[1])
            vt = received(received_at)
        else:
            vt = parsed
        has_ts = True
    else:
        vt, has_ts = received(received_at), False
    online = obj.get("online")
    if online is not None and not isinstance(online, bool):
        problems.append(f"online: expected true or false (got {short(online)})")
    heartbeat = obj.get("heartbeat")
    if heartbeat is not None and not isinstance(heartbeat, bool):
        problems.append(f"heartbeat: expected true or false (got {short(heartbeat)})")
    readings: list[Normalized] = []
    for metric, unit in READING_FIELDS.items():
        raw_value = obj.get(metric)
        if raw_value is None:
            continue
        value = finite(raw_value)
        if value is None:
            problems.append(f"{metric}: expected a finite number or null (got {short(raw_value)})")
            continue
        readings.append(Reading(device_id=device_id, ts=vt.utc, metric=metric, value=value, unit=unit))
    levels: list[tuple[str, bool]] = []
    for name, alarm_type in (("tamper", "device.tamper"), ("power_loss", "device.power_loss"),
                             ("battery_low", "device.low_battery")):
        value = obj.get(name)
        if value is None:
            continue
        if not isinstance(value, bool):
            problems.append(f"{name}: expected true or false (got {short(value)})")
            continue
        levels.append((alarm_type, value))
    power = obj.get("power")
    if power is not None:
        power_word = power.strip().lower() if isinstance(power, str) else None
        if power_word in POWER_LOST:
            levels.append(("device.power_loss", True))
        elif power_word in POWER_OK:
            levels.append(("device.power_loss", False))
        else:
            expected = ", ".join(f'"{w}"' for w in sorted(POWER_LOST | POWER_OK))
            problems.append(f"power: expected one of {expected} (got {short(power)})")
    if problems:
        reason = TS_WITHOUT_ZONE if zoneless and len(problems) == 1 else SCHEMA
        return dead_letter(topic, payload, received_at, reason, "; ".join(problems))
    data = {k: v for k, v in obj.items() if k not in _RESERVED}
    if isinstance(online, bool):
        source = "will" if not online and not has_ts else "status"
        status = DeviceStatus(device_id=device_id, ts=vt.utc, online=online, source=source,
                              received_at=received_at, raw=payload, data=data)
    else:
        status = DeviceStatus(device_id=device_id, ts=vt.utc, online=True, source="heartbeat",
                              received_at=received_at, raw=payload, data=data)
    if vt.warning:
        logger.info("device %s: status ts %s", device_id, vt.warning)
    out: list[Normalized] = [status, *readings]
    # power_loss: true and power: "mains" in one report: the alarm wins (a lost supply is never hidden).
    state: dict[str, bool] = {}
    for alarm_type, active in levels:
        state[alarm_type] = state.get(alarm_type, False) or active
    ts_source = obj.get("ts") if has_ts else None
    for alarm_type, active in state.items():
        if active:
            out.append(level_alarm(device_id, alarm_type, vt, ts_source, received_at, payload))
        else:
            out.append(level_end(device_id, alarm_type, vt.utc, received_at, payload))
    return out
