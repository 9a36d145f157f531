"""Hikvision ISAPI `EventNotificationAlert` (XML or JSON) → normalized messages; also the HTTP push.

A camera or NVR sends the same alert over its alarm-server HTTP push (`POST /ingest/isapi`, see
`decode_http`), the `alertStream`, or an MQTT bridge (`decode`)::

    <EventNotificationAlert version="2.0" xmlns="http://www.hikvision.com/ver20/XMLSchema">
      <ipAddress>192.168.1.64</ipAddress><portNo>80</portNo><protocol>HTTP</protocol>
      <macAddress>44:19:b6:6d:24:85</macAddress><channelID>1</channelID>
      <dateTime>2026-11-21T08:15:02+08:00</dateTime><activePostCount>1</activePostCount>
      <eventType>linedetection</eventType><eventState>active</eventState>
      <eventDescription>linedetection alarm</eventDescription><channelName>Gate</channelName>
    </EventNotificationAlert>

JSON firmwares send the same field names (`{"ipAddress", "macAddress", "channelID", "dateTime", …}`,
with detail objects such as `"ThermometryAlarm"` or `"FireDetection"`). XML vs JSON is told by the first
non-space byte; XML is parsed only with defusedxml (no DTDs, no entities), namespaces (ver10/ver20) are
ignored when matching tags.

- eventType → type: VMD motion, linedetection line crossing, fielddetection/regionEntrance region
  entrance, regionExiting region exit, fireDetection fire, TMA/TMPA/temperature/thermometry overheat
  (+ a `temperature_max` Reading in °C when the alert carries a temperature), shelteralarm/
  tamperdetection/videoloss tamper; anything else `other.hikvision_<name>` with a warning.
- `eventState` inactive → `[]`, except `videoloss` inactive, the devices' heartbeat →
  `[DeviceStatus(online=True, source="heartbeat")]`.
- Identity `hikvision:<mac, lower-case, colon separated>/<channelID or dynChannelID, default 1>`
  (no usable MAC → `<ipAddress>/<channel>`). msg_id `eventType:channel:dateTime:activePostCount`.
"""

from __future__ import annotations

import dataclasses
import email.parser
import email.policy
import email.utils
import ipaddress
import logging
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from typing import Any

from ingest.adapters import xmlsafe
from ingest.adapters.common import (
    CAMERA_SEVERITY,
    INVALID_XML,
    MAX_EPOCH_INT,
    MAX_PAYLOAD_BYTES,
    OTHER_SEVERITY,
    PAYLOAD_TOO_LARGE,
    SCHEMA,
    UNSUPPORTED_MESSAGE,
    camera_alarm,
    capped_vendor_ts,
    check_size,
    dead_letter,
    load_json_object,
    receive_time_msg_id,
    require_aware,
    show,
    utf8_text,
)
from ingest.adapters.xmlsafe import local_name
from ingest.model import Alarm, DeadLetter, DeviceStatus, Normalized, Reading

logger = logging.getLogger(__name__)

INVALID_MULTIPART = "invalid_multipart"

HTTP_TOPIC = "http/isapi"
"""The topic of dead letters (and replays) from the ISAPI HTTP push."""
MAX_PICTURES = 8
MAX_PICTURE_BYTES = 5 * 1024 * 1024
MAX_HTTP_BODY_BYTES = MAX_PICTURES * MAX_PICTURE_BYTES + 8 * 1024 * 1024
"""A multipart push above this is refused whole (8 full-size pictures plus slack for dropped parts)."""

EVENT_TYPES: dict[str, str] = {
    "vmd": "camera.motion",
    "linedetection": "camera.line_crossing",
    "fielddetection": "camera.region_entrance",
    "regionentrance": "camera.region_entrance",
    "regionexiting": "camera.region_exit",
    "firedetection": "thermal.fire",
    "tma": "thermal.overheat",
    "tmpa": "thermal.overheat",
    "temperature": "thermal.overheat",
    "temperaturealarm": "thermal.overheat",
    "thermometry": "thermal.overheat",
    "thermometryalarm": "thermal.overheat",
    "shelteralarm": "camera.tamper",
    "tamperdetection": "camera.tamper",
    "videoloss": "camera.tamper",
}
"""Hikvision eventType (lower-cased) → gridwatch alarm type."""
SEVERITY: dict[str, int] = dict(CAMERA_SEVERITY)
PRE_ALARM_SEVERITY = 3
"""TMPA, the temperature *pre*-alarm, is one step below TMA."""
HEARTBEAT_EVENT = "videoloss"

_MAX_XML_DEPTH = 12
_MAX_FIELD = 128
_BOM = b"\xef\xbb\xbf"
_MAC = re.compile(r"([0-9a-f]{2})[:-]?" * 5 + r"([0-9a-f]{2})", re.IGNORECASE)
_CLEAN = re.compile(r"[^a-z0-9]+")
_CHANNEL = re.compile(r"[A-Za-z0-9_.\-]+")
_CURRENT_KEYS = ("currTemperature", "fireMaxTemperature", "maxTemperature", "highestTemperature", "temperature")
_RULE_KEYS = ("ruleTemperature", "alarmTemperature", "thresholdTemperature")
_UNIT_KEYS = ("thermometryUnit", "temperatureUnit")
_JPEG = b"\xff\xd8\xff"
_PNG = b"\x89PNG\r\n\x1a\n"


class _Invalid(Exception):
    """A field is not what ISAPI sends (becomes a `schema` dead letter naming the field)."""


@dataclass(frozen=True)
class Picture:
    """An image that came with an HTTP push (the camera's capture of the event)."""

    name: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class HttpDecoded:
    """What one `POST /ingest/isapi` carried: the decode result, the event part's bytes, its pictures."""

    result: list[Normalized] | DeadLetter
    event_payload: bytes
    pictures: tuple[Picture, ...]


# --- MQTT / raw payload ------------------------------------------------------------------------------------
def decode(topic: str, payload: bytes, received_at: datetime) -> list[Normalized] | DeadLetter:
    """Decode one EventNotificationAlert (XML or JSON); never raises on any payload bytes."""
    require_aware(received_at)
    too_large = check_size(topic, payload, received_at)
    if too_large is not None:
        return too_large
    first = _first_byte(payload)
    alert: dict[str, Any] | DeadLetter
    if first == b"<":
        alert = _xml_alert(topic, payload, received_at)
    elif first == b"{":
        alert = _json_alert(topic, payload, received_at)
    else:
        not_text = utf8_text(topic, payload, received_at, bom=False)
        if isinstance(not_text, DeadLetter):
            return not_text
        return dead_letter(
            topic, payload, received_at, UNSUPPORTED_MESSAGE,
            f"payload starts with {show(payload[:16])}; expected an XML or JSON EventNotificationAlert",
        )
    if isinstance(alert, DeadLetter):
        return alert
    try:
        return _from_alert(alert, payload, received_at)
    except _Invalid as exc:
        return dead_letter(topic, payload, received_at, SCHEMA, str(exc))


def _first_byte(payload: bytes) -> bytes:
    head = payload[3:67] if payload.startswith(_BOM) else payload[:64]
    stripped = head.lstrip()
    if not stripped and len(payload) > 64:
        stripped = payload.lstrip()
    return stripped[:1]


def _xml_alert(topic: str, payload: bytes, received_at: datetime) -> dict[str, Any] | DeadLetter:
    root = xmlsafe.parse(payload)
    if isinstance(root, str):
        return dead_letter(topic, payload, received_at, INVALID_XML, root)
    name = local_name(root.tag)
    if name != "EventNotificationAlert":
        return dead_letter(
            topic, payload, received_at, UNSUPPORTED_MESSAGE,
            f"root element <{name[:40]}>: expected <EventNotificationAlert>",
        )
    obj = _element_obj(root, 0)
    return obj if isinstance(obj, dict) else {}


def _json_alert(topic: str, payload: bytes, received_at: datetime) -> dict[str, Any] | DeadLetter:
    obj = load_json_object(payload, topic, received_at)
    if isinstance(obj, DeadLetter):
        return obj
    inner = obj.get("EventNotificationAlert")
    if isinstance(inner, dict) and "eventType" not in obj:
        obj = inner
    if "eventType" not in obj:
        return dead_letter(
            topic, payload, received_at, UNSUPPORTED_MESSAGE,
            "eventType: required field is missing; expected a Hikvision EventNotificationAlert object",
        )
    return obj


def _from_alert(obj: dict[str, Any], payload: bytes, received_at: datetime) -> list[Normalized]:
    event_type = _text(obj.get("eventType"))
    if not event_type or len(event_type) > 64:
        raise _Invalid(f"eventType: expected a non-empty string of at most 64 characters (got {show(obj.get('eventType'))})")
    key = event_type.lower()
    state_text = _text(obj.get("eventState"))
    state = (state_text or "active").lower()
    channel = _channel(obj)
    device_id, id_warning = _device_id(obj, channel)
    date_value = obj.get("dateTime")
    vt = capped_vendor_ts(date_value, received_at)
    date_text = _ts_source(date_value)
    if state == "inactive":
        if key == HEARTBEAT_EVENT:
            return [
                DeviceStatus(
                    device_id=device_id,
                    ts=vt.utc,
                    online=True,
                    source="heartbeat",
                    received_at=received_at,
                    raw=payload,
                    data={"event_type": event_type, "ts_offset": vt.offset, "ts_source": date_text},
                )
            ]
        logger.debug("hikvision %s: %s inactive; nothing to raise", device_id, event_type)
        return []
    warnings: list[str] = []
    if vt.warning:
        warnings.append(vt.warning)
    if id_warning:
        warnings.append(id_warning)
    if state != "active":
        warnings.append(f"eventState {state_text!r} is neither active nor inactive; read as active")
    alarm_type = EVENT_TYPES.get(key)
    if alarm_type is None:
        alarm_type = f"other.hikvision_{_CLEAN.sub('_', key).strip('_') or 'unknown'}"
        warnings.append(f"unknown Hikvision eventType {event_type!r}: accepted as {alarm_type!r}")
        logger.info("hikvision %s: unknown eventType %r accepted as %s", device_id, event_type, alarm_type)
    severity = PRE_ALARM_SEVERITY if key == "tmpa" else SEVERITY.get(alarm_type, OTHER_SEVERITY)
    post_count = _text(obj.get("activePostCount")) or ""
    msg_id = f"{event_type}:{channel}:{date_text}:{post_count}"
    msg_id = receive_time_msg_id(msg_id, vt, received_at, warnings, "dateTime")
    data: dict[str, Any] = {
        "event_type": event_type,
        "event_state": state,
        "channel": channel,
        "active_post_count": post_count,
        "ts_offset": vt.offset,
        "ts_source": date_text,
    }
    for field, name in (
        ("eventDescription", "event_description"),
        ("channelName", "channel_name"),
        ("ipAddress", "ip_address"),
        ("macAddress", "mac_address"),
    ):
        text = _text(obj.get(field))
        if text:
            data[name] = text[:_MAX_FIELD]
    data.update(_region(obj))
    reading: Reading | None = None
    if alarm_type in ("thermal.overheat", "thermal.fire"):
        temperature, rule_temperature, details = _temperatures(obj)
        if details:
            data["thermometry"] = details
        if rule_temperature is not None:
            data["rule_temperature_c"] = rule_temperature
        if temperature is not None:
            data["temperature_c"] = temperature
            reading = Reading(device_id=device_id, ts=vt.utc, metric="temperature_max", value=temperature, unit="°C")
    return camera_alarm(device_id, msg_id, vt, alarm_type, severity, received_at, payload, data, warnings, reading)


def _channel(obj: dict[str, Any]) -> str:
    for key in ("channelID", "dynChannelID"):
        value = obj.get(key)
        if value is None or value == "" or value == {}:
            continue
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1_000_000:
            return str(value)
        if isinstance(value, str):
            text = value.strip()
            if text.isascii() and text.isdigit() and len(text) <= 6:
                return str(int(text))
            if len(text) <= 32 and _CHANNEL.fullmatch(text):
                return text
        raise _Invalid(f"{key}: expected a channel number (got {show(value)})")
    return "1"


def _device_id(obj: dict[str, Any], channel: str) -> tuple[str, str | None]:
    mac_text = _text(obj.get("macAddress"))
    warning: str | None = None
    if mac_text:
        match = _MAC.fullmatch(mac_text.strip())
        if match and any(g != "00" for g in match.groups()):
            return f"hikvision:{':'.join(match.groups()).lower()}/{channel}", None
        warning = f"macAddress {mac_text[:40]!r} is not a usable MAC address; identified by ipAddress"
    for key in ("ipAddress", "ipv6Address"):
        ip_text = _text(obj.get(key))
        if not ip_text:
            continue
        try:
            ip = ipaddress.ip_address(ip_text.strip())
        except ValueError:
            raise _Invalid(f"{key}: expected an IP address (got {show(ip_text)})") from None
        return f"hikvision:{ip.compressed}/{channel}", warning
    raise _Invalid("macAddress/ipAddress: expected the camera's MAC address (or at least its IP address) to identify it")


def _region(obj: dict[str, Any]) -> dict[str, Any]:
    """regionID / detectionTarget of the first DetectionRegionEntry (line and field detection)."""
    regions = obj.get("DetectionRegionList")
    if isinstance(regions, dict):
        regions = regions.get("DetectionRegionEntry")
    entry = _first_dict(regions)
    if entry is None:
        return {}
    out: dict[str, Any] = {}
    region_id = _text(entry.get("regionID"))
    if region_id:
        out["region_id"] = region_id[:_MAX_FIELD]
    target = _text(entry.get("detectionTarget")) or _text(entry.get("targetType"))
    if target:
        out["detection_target"] = target[:_MAX_FIELD]
    return out


def _temperatures(obj: dict[str, Any]) -> tuple[float | None, float | None, dict[str, Any]]:
    """(current °C, rule °C, the detail's scalar fields) from ThermometryAlarm/FireDetection or the top level."""
    sources: list[dict[str, Any]] = []
    for key, value in obj.items():
        lowered = key.lower()
        if any(word in lowered for word in ("thermometry", "temperature", "fire", "tma", "tmpa")):
            detail = _first_dict(value)
            if detail is not None:
                sources.append(detail)
    sources.append(obj)
    current: float | None = None
    rule: float | None = None
    details: dict[str, Any] = {}
    for source in sources:
        unit = next((u for u in (_text(source.get(k)) for k in _UNIT_KEYS) if u), None)
        if current is None:
            current = next((c for c in (_celsius(source.get(k), unit) for k in _CURRENT_KEYS) if c is not None), None)
        if rule is None:
            rule = next((c for c in (_celsius(source.get(k), unit) for k in _RULE_KEYS) if c is not None), None)
        if source is not obj and not details:
            details = {
                k: v for k, v in list(source.items())[:32]
                if isinstance(v, str | int | float) and not isinstance(v, bool) and len(str(v)) <= _MAX_FIELD
            }
    return current, rule, details


def _celsius(value: Any, unit: str | None) -> float | None:
    number = _float(value)
    if number is None:
        return None
    scale = (unit or "celsius").strip().lower()
    if scale.startswith("fahrenheit") or scale == "f":
        number = (number - 32.0) * 5.0 / 9.0
    elif scale.startswith("kelvin") or scale == "k":
        number -= 273.15
    if not -273.15 <= number <= 10_000.0:
        return None
    return round(number, 2)


# --- HTTP push (POST /ingest/isapi) ------------------------------------------------------------------------
def decode_http(content_type: str, body: bytes, received_at: datetime) -> HttpDecoded:
    """Decode an ISAPI alarm-server push: XML, JSON, or multipart with the event part and pictures."""
    require_aware(received_at)
    media = content_type.split(";", 1)[0].strip().lower()
    if not media.startswith("multipart/"):
        if len(body) > MAX_PAYLOAD_BYTES:
            return _http_dead(body, received_at, PAYLOAD_TOO_LARGE, f"body is {len(body)} bytes; expected at most {MAX_PAYLOAD_BYTES}")
        return HttpDecoded(decode(HTTP_TOPIC, body, received_at), body, ())
    if len(body) > MAX_HTTP_BODY_BYTES:
        return _http_dead(
            body, received_at, PAYLOAD_TOO_LARGE, f"multipart body is {len(body)} bytes; expected at most {MAX_HTTP_BODY_BYTES}"
        )
    try:
        parsed = _multipart_parts(content_type, body)
    except Exception as exc:  # the stdlib email parser on hostile input: never let it escape
        logger.warning("isapi: multipart parser failed: %r", exc)
        parsed = f"multipart body could not be parsed ({type(exc).__name__})"
    if isinstance(parsed, str):
        if _first_byte(body) in (b"<", b"{") and len(body) <= MAX_PAYLOAD_BYTES:
            logger.info("isapi: %s; the body is a bare event, decoded as such", parsed)
            return HttpDecoded(decode(HTTP_TOPIC, body, received_at), body, ())
        return _http_dead(body, received_at, INVALID_MULTIPART, parsed)
    parts, complete = parsed
    event, pictures, warnings = _split_parts(parts)
    if not complete:
        warnings.append("multipart body ended without its closing boundary; the last part may be cut short")
    if event is None:
        found = ", ".join(sorted({p.get_content_type() for p in parts})) or "none"
        return _http_dead(
            body, received_at, UNSUPPORTED_MESSAGE, f"multipart body has no XML or JSON event part (part types: {found})"
        )
    result = decode(HTTP_TOPIC, event, received_at)
    if isinstance(result, DeadLetter):
        return HttpDecoded(result, event, ())
    if warnings:
        if not any(isinstance(item, Alarm) for item in result):
            logger.info("isapi: %s", "; ".join(warnings))
        result = [
            dataclasses.replace(item, warnings=item.warnings + tuple(warnings)) if isinstance(item, Alarm) else item
            for item in result
        ]
    return HttpDecoded(result, event, tuple(pictures))


def _http_dead(body: bytes, received_at: datetime, reason: str, detail: str) -> HttpDecoded:
    stored = body
    if len(body) > MAX_PAYLOAD_BYTES:
        stored = body[:MAX_PAYLOAD_BYTES]
        detail += f" (stored: the first {MAX_PAYLOAD_BYTES} bytes)"
    return HttpDecoded(dead_letter(HTTP_TOPIC, stored, received_at, reason, detail), b"", ())


def _multipart_parts(content_type: str, body: bytes) -> tuple[list[Message], bool] | str:
    """(the body's parts, whether the closing boundary came), or what is wrong.

    Parsed with the stdlib email parser (policy HTTP) after prepending the request's Content-Type.
    """
    header = content_type.replace("\r", " ").replace("\n", " ").encode("latin-1", "replace")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + header + b"\r\nMIME-Version: 1.0\r\n\r\n" + body
    )
    defects = {type(d).__name__ for d in message.defects}
    if "NoBoundaryInMultipartDefect" in defects or not message.get_boundary():
        return "Content-Type: multipart without a boundary parameter"
    if "StartBoundaryNotFoundDefect" in defects or not message.is_multipart():
        return f"body has no --{message.get_boundary()} line"
    parts = message.get_payload()
    if not isinstance(parts, list) or not parts:
        return "multipart body has no parts"
    return [p for p in parts if isinstance(p, Message)], "CloseBoundaryNotFoundDefect" not in defects


def _split_parts(parts: list[Message]) -> tuple[bytes | None, list[Picture], list[str]]:
    event: bytes | None = None
    pictures: list[Picture] = []
    warnings: list[str] = []
    over_count = 0
    for index, part in enumerate(parts, start=1):
        if part.is_multipart():
            continue
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            continue
        media = part.get_content_type()
        if event is None and _is_event_part(media, data):
            event = data
            continue
        picture_type = _picture_type(media, data)
        if picture_type is None:
            logger.debug("isapi: ignoring part %d (%s, %d bytes)", index, media, len(data))
            continue
        name = _part_name(part, index)
        if not data:
            warnings.append(f"picture {name!r} is empty; dropped")
        elif len(data) > MAX_PICTURE_BYTES:
            warnings.append(f"picture {name!r} is {len(data)} bytes (at most {MAX_PICTURE_BYTES}); dropped")
        elif len(pictures) >= MAX_PICTURES:
            over_count += 1
        else:
            pictures.append(Picture(name=name, content_type=picture_type, data=data))
    if over_count:
        warnings.append(f"{over_count} picture(s) beyond the first {MAX_PICTURES} dropped")
    return event, pictures, warnings


def _is_event_part(media: str, data: bytes) -> bool:
    if "xml" in media or "json" in media:
        return True
    if media.startswith("image/"):
        return False
    return _first_byte(data) in (b"<", b"{")


def _picture_type(media: str, data: bytes) -> str | None:
    if media.startswith("image/"):
        return media
    if data.startswith(_JPEG):
        return "image/jpeg"
    if data.startswith(_PNG):
        return "image/png"
    return None


def _part_name(part: Message, index: int) -> str:
    name: Any = part.get_filename() or part.get_param("name", header="content-disposition")
    if isinstance(name, tuple):  # an RFC 2231 value
        name = email.utils.collapse_rfc2231_value(name)
    if not isinstance(name, str) or not name.strip():
        return f"picture{index}"
    return name.strip()[:_MAX_FIELD]


# --- XML and value helpers ---------------------------------------------------------------------------------
def _element_obj(element: ET.Element, depth: int) -> Any:
    """An element as JSON-like data: text for a leaf, a dict (repeated tags → lists) otherwise."""
    children = [c for c in element if isinstance(c.tag, str)]
    if not children:
        return (element.text or "").strip()
    if depth >= _MAX_XML_DEPTH:
        return {}
    out: dict[str, Any] = {}
    repeated: set[str] = set()
    for child in children:
        tag = local_name(child.tag)
        value = _element_obj(child, depth + 1)
        if tag not in out:
            out[tag] = value
        elif tag in repeated:
            out[tag].append(value)
        else:
            out[tag] = [out[tag], value]
            repeated.add(tag)
    return out


def _first_dict(value: Any) -> dict[str, Any] | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, dict) else None


def _text(value: Any) -> str | None:
    """A scalar as text (XML gives strings, JSON numbers too); None for missing, empty or structured values."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value.strip()
        return text or None
    if isinstance(value, int):
        return str(value) if abs(value) < MAX_EPOCH_INT else None
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    return None


def _float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if len(value) > 32:
            return None
        try:
            number = float(value)
        except ValueError:
            return None
    elif isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _ts_source(value: Any) -> str:
    if value is None:
        return ""
    return (value if isinstance(value, str) else str(value) if isinstance(value, int | float) else "")[:64]
