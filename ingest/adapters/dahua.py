"""Dahua event-manager messages from an MQTT bridge (`dahua/<device>/event`) → normalized messages.

The bridge republishes what `eventManager.cgi?action=attach` streams, either as the CGI's text form
(one or several blocks, possibly still framed by `--myboundary` lines and part headers)::

    --myboundary
    Content-Type: text/plain
    Content-Length: 312

    Code=CrossLineDetection;action=Start;index=0;data={
       "Class" : "Normal", "Direction" : "RightToLeft", "EventID" : 10421, "Name" : "Rule1",
       "LocaleTime" : "2026-11-21 08:15:02", "UTC" : 1763712902, "Object" : {"ObjectType" : "Human", ...}
    }

or as JSON `{"Code": "...", "action": "Start", "index": 0, "data": {...}}` (or a list of those).

- Code → type: CrossLineDetection line crossing; CrossRegionDetection region entrance (data.Action
  Appear/Inside/Cross), region exit (data.Action or data.Direction `Leave`); VideoMotion motion;
  VideoBlind/VideoLoss tamper; AlarmLocal (an alarm input) `other.dahua_alarmlocal`; HeatImagingTemper
  overheat (+ a `temperature_max` Reading when data.TemperatureValue is the maximum); FireWarning fire;
  anything else `other.dahua_<code>` with a warning. Informational codes (`NewFile`, `VideoMotionInfo`,
  `IntelliFrame`, `TimeChange`, `NTPAdjustTime`) → `[]`; a `Heartbeat` block → a heartbeat DeviceStatus.
- action Start/Pulse → Alarm; Stop → `AlarmEnd(type=<mapped type>)`.
- Time: data.LocaleTime (device-local wall time; the zone is assumed) is preferred, else data.UTC (epoch
  seconds). Many firmwares put local wall time into `UTC`: when both exist and disagree by a zone-like
  offset, the alarm carries a warning.
- Identity `dahua:<device from topic>/<index>` (the channel index as the device counts it, from 0);
  heartbeats are device-level `dahua:<device>`. msg_id = data.EventID if present, else
  `Code:index:UTC-or-LocaleTime`.
"""

from __future__ import annotations

import json
import logging
import math
import re
from datetime import datetime
from typing import Any

from ingest.adapters.common import (
    CAMERA_SEVERITY,
    MAX_EPOCH_INT,
    OTHER_SEVERITY,
    SCHEMA,
    UNSUPPORTED_MESSAGE,
    camera_alarm,
    capped_vendor_ts,
    dead_letter,
    event_topic_device,
    json_value,
    payload_text,
    receive_time_msg_id,
    reject_constant,
    require_aware,
    show,
)
from ingest.adapters.timestamps import VendorTs
from ingest.model import AlarmEnd, DeadLetter, DeviceStatus, Normalized, Reading

logger = logging.getLogger(__name__)

CODES: dict[str, str] = {
    "CrossLineDetection": "camera.line_crossing",
    "CrossRegionDetection": "camera.region_entrance",
    "VideoMotion": "camera.motion",
    "VideoBlind": "camera.tamper",
    "VideoLoss": "camera.tamper",
    "AlarmLocal": "other.dahua_alarmlocal",
    "HeatImagingTemper": "thermal.overheat",
    "FireWarning": "thermal.fire",
}
"""Dahua event Code → gridwatch alarm type (CrossRegionDetection may become camera.region_exit)."""
IGNORED_CODES: frozenset[str] = frozenset({"NewFile", "VideoMotionInfo", "IntelliFrame", "TimeChange", "NTPAdjustTime"})
"""Codes that report housekeeping, not something wrong: decoded to nothing."""
SEVERITY: dict[str, int] = {**CAMERA_SEVERITY, "other.dahua_alarmlocal": 3}
START_ACTIONS = ("start", "pulse")
STOP_ACTION = "stop"
HEARTBEAT = "Heartbeat"

_CODES_LOWER = {code.lower(): code for code in (*CODES, *IGNORED_CODES)}
_CLEAN = re.compile(r"[^a-z0-9]+")
_HAS_DATA = re.compile(r";\s*data\s*=", re.IGNORECASE)
_MAX_FIELD = 128
_ZONE_STEP_S = 900  # zone offsets are whole quarter hours
_MAX_ZONE_S = 14 * 3600
_DISAGREE_S = 60


class _Invalid(Exception):
    """A block is not what the Dahua event manager sends (becomes a `schema` dead letter naming the field)."""


def decode(topic: str, payload: bytes, received_at: datetime) -> list[Normalized] | DeadLetter:
    """Decode one bridged Dahua event message (text or JSON form); never raises on any payload bytes."""
    require_aware(received_at)
    device = event_topic_device(topic, logger, "dahua")
    if device is None:
        return []
    text = payload_text(topic, payload, received_at)
    if isinstance(text, DeadLetter):
        return text
    stripped = text.lstrip()
    blocks: list[dict[str, Any] | str]
    if stripped[:1] in ("{", "["):
        loaded = json_value(stripped, topic, payload, received_at)
        if isinstance(loaded, DeadLetter):
            return loaded
        events = _json_events(loaded)
        if isinstance(events, str):
            return dead_letter(topic, payload, received_at, UNSUPPORTED_MESSAGE, events)
        blocks = list(events)
    else:
        blocks = _text_blocks(text)
    if not blocks:
        return dead_letter(
            topic, payload, received_at, UNSUPPORTED_MESSAGE,
            "expected `Code=<code>;action=<Start|Stop|Pulse>;index=<n>[;data={...}]` blocks "
            "or a JSON object with Code, action, index and data",
        )
    outputs: list[Normalized] = []
    errors: list[str] = []
    for block in blocks:
        try:
            outputs.extend(_block_outputs(block, device, payload, received_at))
        except _Invalid as exc:
            errors.append(str(exc))
    if errors:
        if not outputs:
            return dead_letter(topic, payload, received_at, SCHEMA, "; ".join(errors))
        logger.warning("dahua %s: skipped %d malformed block(s) of %s: %s", device, len(errors), topic, "; ".join(errors))
    return outputs


# --- framing -----------------------------------------------------------------------------------------------
def _text_blocks(text: str) -> list[dict[str, Any] | str]:
    """`Code=…` blocks of the CGI text form; boundary lines and part headers between them are skipped."""
    raw_blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("--"):  # a part boundary; a JSON line never starts with "--"
            current = None
        elif stripped.startswith("Code="):
            block = [stripped]
            raw_blocks.append(block)
            current = block if _HAS_DATA.search(stripped) else None  # only `data=` spans lines
        elif stripped == HEARTBEAT:
            current = None
            raw_blocks.append([HEARTBEAT])
        elif current is not None:
            current.append(line)
    out: list[dict[str, Any] | str] = []
    for block in raw_blocks:
        if block == [HEARTBEAT]:
            out.append(HEARTBEAT)
        else:
            out.append(_parse_fields("\n".join(block)))
    return out


def _parse_fields(block: str) -> dict[str, Any]:
    """`Code=X;action=Start;index=0;data={json}` → {"code", "action", "index", "data" (text)}; errors kept."""
    fields: dict[str, Any] = {}
    rest = block.strip()
    while rest:
        key, sep, tail = rest.partition("=")
        key = key.strip().lower()
        if not sep or not key or len(key) > 32:
            fields["_error"] = f"expected key=value pairs separated by ';' (got {show(rest)})"
            break
        if key == "data":
            fields["data"] = tail.strip()
            break
        value, _, rest = tail.partition(";")
        fields[key] = value.strip()
        rest = rest.strip()
    return fields


def _json_events(loaded: Any) -> list[dict[str, Any]] | str:
    """The JSON form's event objects (keys lower-cased), or why it is not one."""
    items = loaded if isinstance(loaded, list) else [loaded]
    events: list[dict[str, Any]] = []
    for item in items[:64]:
        lowered = {str(k).lower(): v for k, v in item.items()} if isinstance(item, dict) else None
        if lowered is None or "code" not in lowered:
            return "Code: required field is missing; expected a JSON object with Code, action, index and data"
        events.append(lowered)
    return events


_JSON = json.JSONDecoder(parse_constant=reject_constant)


# --- one event ---------------------------------------------------------------------------------------------
def _block_outputs(block: dict[str, Any] | str, device: str, payload: bytes, received_at: datetime) -> list[Normalized]:
    if isinstance(block, str):  # the attach stream's keep-alive
        return [
            DeviceStatus(
                device_id=f"dahua:{device}", ts=received_at, online=True, source="heartbeat",
                received_at=received_at, raw=payload,
            )
        ]
    if "_error" in block:
        raise _Invalid(str(block["_error"]))
    code_value = block.get("code")
    if not isinstance(code_value, str) or not code_value.strip() or len(code_value) > 64:
        raise _Invalid(f"Code: expected a non-empty event code of at most 64 characters (got {show(code_value)})")
    code = _CODES_LOWER.get(code_value.strip().lower(), code_value.strip())
    action_value = block.get("action")
    action = action_value.strip().lower() if isinstance(action_value, str) else ""
    if action not in (*START_ACTIONS, STOP_ACTION):
        raise _Invalid(f"{code}: action: expected Start, Stop or Pulse (got {show(action_value)})")
    index = _index(block.get("index"), code)
    data = _data(block.get("data"), code)
    if code in IGNORED_CODES:
        logger.debug("dahua %s: %s is housekeeping; ignored", device, code)
        return []
    device_id = f"dahua:{device}/{index}"
    warnings: list[str] = []
    alarm_type = CODES.get(code)
    if alarm_type is None:
        alarm_type = f"other.dahua_{_CLEAN.sub('_', code.lower()).strip('_') or 'unknown'}"
        warnings.append(f"unknown Dahua event code {code!r}: accepted as {alarm_type!r}")
        logger.info("dahua %s: unknown event code %r accepted as %s", device, code, alarm_type)
    elif code == "CrossRegionDetection" and "Leave" in (data.get("Action"), data.get("Direction")):
        alarm_type = "camera.region_exit"
    vt, ts_value, ts_warnings = _event_time(data, received_at)
    if action == STOP_ACTION:
        return [AlarmEnd(device_id=device_id, ts=vt.utc, received_at=received_at, raw=payload, type=alarm_type)]
    warnings.extend(ts_warnings)
    event_id = _scalar(data.get("EventID"))
    if event_id is not None:
        msg_id = event_id
    else:
        msg_id = f"{code}:{index}:{_ts_source(data.get('UTC')) or _ts_source(data.get('LocaleTime'))}"
        msg_id = receive_time_msg_id(msg_id, vt, received_at, warnings, "event time")
    alarm_data: dict[str, Any] = {
        "code": code,
        "action": action_value,
        "index": index,
        "ts_offset": vt.offset,
        "ts_source": _ts_source(ts_value),
    }
    for field, name in (
        ("Name", "rule_name"), ("Action", "region_action"), ("Direction", "direction"), ("Class", "class"),
    ):
        value = _scalar(data.get(field))
        if value is not None:
            alarm_data[name] = value
    if event_id is not None:
        alarm_data["event_id"] = event_id
    target = data.get("Object")
    if isinstance(target, dict) and (object_type := _scalar(target.get("ObjectType"))) is not None:
        alarm_data["object_type"] = object_type
    reading: Reading | None = None
    if alarm_type in ("thermal.overheat", "thermal.fire"):
        temperature = _celsius(data.get("TemperatureValue"), _scalar(data.get("TemperatureUnit")))
        if temperature is not None:
            alarm_data["temperature_c"] = temperature
            result = _scalar(data.get("Result"))
            if result is None or result.lower() in ("max", "maxtemp", "maxtemperature"):
                reading = Reading(device_id=device_id, ts=vt.utc, metric="temperature_max", value=temperature, unit="°C")
    return camera_alarm(
        device_id, msg_id, vt, alarm_type, SEVERITY.get(alarm_type, OTHER_SEVERITY), received_at, payload,
        alarm_data, warnings, reading,
    )


def _index(value: Any, code: str) -> str:
    if value is None or value == "":
        return "0"
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1_000_000:
        return str(value)
    text = value.strip() if isinstance(value, str) else ""
    if text.isascii() and text.isdigit() and len(text) <= 6:
        return str(int(text))
    raise _Invalid(f"{code}: index: expected a channel number (got {show(value)})")


def _data(value: Any, code: str) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:  # the first JSON value; anything after it (a stray part header) is not the event's
            value = _JSON.raw_decode(value.strip())[0]
        except ValueError as exc:
            raise _Invalid(f"{code}: data: expected a JSON object ({exc})") from None
        except RecursionError:
            raise _Invalid(f"{code}: data: nested too deeply") from None
    if not isinstance(value, dict):
        raise _Invalid(f"{code}: data: expected a JSON object (got {show(value)})")
    return value


def _event_time(data: dict[str, Any], received_at: datetime) -> tuple[VendorTs, Any, list[str]]:
    """(time, the value it came from, warnings): LocaleTime first, else UTC; a disagreement is named."""
    locale_value = data.get("LocaleTime")
    utc_value = data.get("UTC")
    local = capped_vendor_ts(locale_value, received_at) if locale_value not in (None, "") else None
    utc = capped_vendor_ts(utc_value, received_at) if utc_value not in (None, "") else None
    if local is not None and (local.offset != "received" or utc is None or utc.offset == "received"):
        chosen, value = local, locale_value
    elif utc is not None:
        chosen, value = utc, utc_value
    else:
        chosen, value = capped_vendor_ts(None, received_at), None
    warnings = [chosen.warning] if chosen.warning else []
    if local is not None and utc is not None and "received" not in (local.offset, utc.offset):
        diff = (utc.utc - local.utc).total_seconds()
        if abs(diff) >= _DISAGREE_S:
            steps = round(diff / _ZONE_STEP_S)
            if abs(diff - steps * _ZONE_STEP_S) <= 1.0 and abs(diff) <= _MAX_ZONE_S:
                warnings.append(
                    f"data.UTC {_ts_source(utc_value)} is {diff / 3600:+g} h from LocaleTime {_ts_source(locale_value)!r} "
                    f"read as {local.offset}: the UTC field carries local wall time (a known Dahua firmware quirk) "
                    "or the device's zone differs; used LocaleTime"
                )
            else:
                warnings.append(
                    f"data.UTC {_ts_source(utc_value)} and LocaleTime {_ts_source(locale_value)!r} disagree by "
                    f"{diff:+.0f} s; used LocaleTime"
                )
    return chosen, value, warnings


# --- value helpers -----------------------------------------------------------------------------------------
def _celsius(value: Any, unit: str | None) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value) if not isinstance(value, str) or len(value) <= 32 else math.nan
    except (ValueError, OverflowError):
        return None
    if not math.isfinite(number):
        return None
    scale = (unit or "centigrade").strip().lower()
    if scale.startswith("fahrenheit"):
        number = (number - 32.0) * 5.0 / 9.0
    elif scale.startswith("kelvin"):
        number -= 273.15
    if not -273.15 <= number <= 10_000.0:
        return None
    return round(number, 2)


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        return text[:_MAX_FIELD] if text else None
    if isinstance(value, int):
        return str(value) if abs(value) < MAX_EPOCH_INT else None
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    return None


def _ts_source(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return ""
    if isinstance(value, int) and abs(value) >= MAX_EPOCH_INT:
        return ""
    return (value if isinstance(value, str) else str(value) if isinstance(value, int | float) else "")[:64]
