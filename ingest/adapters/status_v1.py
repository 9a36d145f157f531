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

The level-state helpers (`level_alarm`, `level_end`, `SEVERITY`) that the other level-triggered adapters
(zigbee2mqtt, homeassistant, fence) share live in ingest.adapters.shared (re-exported here).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ingest.adapters.common import (
    SCHEMA,
    TS_EXAMPLE,
    TS_WITHOUT_ZONE,
    dead_letter,
    load_json_object,
    require_aware,
)
from ingest.adapters.shared import (  # re-exported: status_v1 was their home
    DEFAULT_SEVERITY,
    SEVERITY,
    finite,
    level_alarm,
    level_end,
    received,
    safe_vendor_ts,
    severity_of,
    short,
    ts_data,
)
from ingest.adapters.timestamps import VendorTs
from ingest.model import DeadLetter, DeviceStatus, Normalized, Reading

logger = logging.getLogger(__name__)

READING_FIELDS: Mapping[str, str] = {"battery": "%", "voltage": "V", "rssi": "dBm"}
"""Status fields that are also emitted as Reading(metric=field, unit=…)."""
POWER_LOST = frozenset({"lost", "battery"})
POWER_OK = frozenset({"mains", "ac", "ok", "normal"})
_RESERVED = frozenset({"ts", "online", "heartbeat"})

__all__ = [
    "DEFAULT_SEVERITY", "POWER_LOST", "POWER_OK", "READING_FIELDS", "SEVERITY", "decode", "finite", "level_alarm",
    "level_end", "received", "safe_vendor_ts", "severity_of", "short", "ts_data",
]


def _strict_ts(value: Any, received_at: datetime) -> VendorTs | tuple[str, str]:
    """Zoned ISO or an epoch number → VendorTs; else (reason, detail)."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value) if len(value) <= 64 else None
        except ValueError:
            parsed = None
        if parsed is None:
            return SCHEMA, f"ts: expected an ISO-8601 time with a zone (e.g. {TS_EXAMPLE}) or epoch seconds/ms " \
                           f"as a number (got {short(value)})"
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            return TS_WITHOUT_ZONE, f"ts: expected a zone offset (Z or ±hh:mm), e.g. {TS_EXAMPLE} (got {short(value)})"
    elif isinstance(value, bool) or not isinstance(value, int | float):
        return SCHEMA, f"ts: expected an ISO-8601 time with a zone or epoch seconds/ms as a number (got {short(value)})"
    return safe_vendor_ts(value, received_at)


def decode(device_id: str, payload: bytes, received_at: datetime, *, topic: str) -> list[Normalized] | DeadLetter:
    """Decode one status v1 payload (or will) of device `device_id`, or a DeadLetter with the reason."""
    require_aware(received_at)
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
