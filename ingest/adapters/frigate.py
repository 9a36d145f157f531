"""Frigate NVR over MQTT: `<prefix>/events`, `<prefix>/reviews`, `<prefix>/available` → normalized messages.

Frigate's `mqtt.topic_prefix` is configurable (default `frigate`), so any prefix is accepted and only the
last topic level picks the message kind (`TOPIC_SUFFIXES`). Other Frigate topics (per-camera object
counts, `stats`, `<camera>/motion`, …) arrive on the same `frigate/#` subscription and are not alarms:
they decode to `[]`.

`events` (tracked objects; `type` new | update | end, with `before`/`after` object states)::

    {"type": "new", "before": {...}, "after": {"id": "1607123955.475377-mxklsc", "camera": "front_door",
     "label": "person", "sub_label": null, "top_score": 0.958, "score": 0.789, "false_positive": false,
     "start_time": 1607123955.475377, "end_time": null, "current_zones": ["yard"],
     "entered_zones": ["yard"], "has_snapshot": true, "has_clip": true, ...}}

- `new`/`update` → one Alarm with msg_id = `after.id`. `update` repeats the Alarm (same msg_id, the store
  dedups), so a `new` lost on the way does not lose the event. A `false_positive` object → `[]`.
  `fire`/`smoke` → `thermal.fire` (severity 5); an object that entered a zone →
  `camera.region_entrance` (zone = the first entered zone); else `camera.object`. person 3, others 2.
- `end` → `[AlarmEnd(msg_id=after.id, ts=end_time)]` only: an end closes, it never opens.

`reviews` (review items; `after.severity` alert | detection, `after.data` with detections, objects,
sub_labels, zones, audio) work the same way with msg_id `review:<after.id>`; severity alert 3,
detection 2 (fire/smoke objects 5).

`available` (plain text `online` / `offline`, Frigate's availability topic) →
`DeviceStatus(device_id="frigate:_nvr", source="availability")`.

The device identity is `frigate:<camera>`.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import datetime
from typing import Any

from ingest.adapters.common import (
    SCHEMA,
    camera_alarm,
    capped_vendor_ts,
    check_size,
    dead_letter,
    load_json_object,
    require_aware,
    show,
    utf8_text,
)
from ingest.adapters.timestamps import VendorTs
from ingest.model import AlarmEnd, DeadLetter, DeviceStatus, Normalized

logger = logging.getLogger(__name__)

TOPIC_SUFFIXES: tuple[str, ...] = ("events", "reviews", "available")
"""The last topic level of the Frigate topics decoded here (`<topic_prefix>/<suffix>`)."""
NVR_DEVICE_ID = "frigate:_nvr"
"""The identity of the Frigate server itself (its availability topic names no camera)."""
REVIEW_PREFIX = "review:"

FIRE_LABELS: frozenset[str] = frozenset({"fire", "smoke"})
PERSON_SEVERITY = 3
OBJECT_SEVERITY = 2
FIRE_SEVERITY = 5
REVIEW_ALERT_SEVERITY = 3
REVIEW_DETECTION_SEVERITY = 2

_MAX_NAME = 128
_MAX_LIST = 32
_EVENT_TYPES = ("new", "update", "end")
_LABEL_SUFFIX = re.compile(r"-verified$")


class _Invalid(Exception):
    """A field is not what Frigate sends (becomes a `schema` dead letter naming the field)."""


def decode(topic: str, payload: bytes, received_at: datetime) -> list[Normalized] | DeadLetter:
    """Decode one Frigate MQTT message; never raises on any payload bytes."""
    require_aware(received_at)
    prefix, _, suffix = topic.rpartition("/")
    if suffix == "available" and prefix:
        return _decode_available(topic, prefix, payload, received_at)
    if suffix not in ("events", "reviews") or not prefix:
        logger.debug("frigate: %s is not an events/reviews/available topic; ignored", topic)
        return []
    obj = load_json_object(payload, topic, received_at)
    if isinstance(obj, DeadLetter):
        return obj
    try:
        if suffix == "events":
            return _decode_event(obj, topic, payload, received_at)
        return _decode_review(obj, topic, payload, received_at)
    except _Invalid as exc:
        return dead_letter(topic, payload, received_at, SCHEMA, str(exc))


# --- events ------------------------------------------------------------------------------------------------
def _decode_event(obj: dict[str, Any], topic: str, payload: bytes, received_at: datetime) -> list[Normalized]:
    kind, after, event_id, camera = _head(obj, "")
    device_id = f"frigate:{camera}"
    if kind == "end":
        return _end(after, device_id, event_id, received_at, payload)
    false_positive = after.get("false_positive")
    if false_positive is not None and not isinstance(false_positive, bool):
        raise _Invalid(f"after.false_positive: expected true or false (got {show(false_positive)})")
    if false_positive:
        logger.debug("frigate %s: event %s is a false positive; ignored", camera, event_id)
        return []
    label = _name(after, "label")
    entered = _str_list(after, "entered_zones")
    label_key = label.lower()
    alarm_type, severity, zone = _type_and_zone(
        label_key in FIRE_LABELS, PERSON_SEVERITY if label_key == "person" else OBJECT_SEVERITY, entered
    )
    start_value = after.get("start_time")
    vt = capped_vendor_ts(start_value, received_at)
    sub_label, sub_label_score = _sub_label(after.get("sub_label"))
    data: dict[str, Any] = {
        "frigate_type": kind,
        "camera": camera,
        "label": label,
        "sub_label": sub_label,
        "sub_label_score": sub_label_score,
        "top_score": _number(after.get("top_score")),
        "score": _number(after.get("score")),
        "current_zones": _str_list(after, "current_zones"),
        "entered_zones": entered,
        "has_snapshot": after.get("has_snapshot") is True,
        "has_clip": after.get("has_clip") is True,
        "ts_offset": vt.offset,
        "ts_source": _ts_source(start_value),
    }
    plate = after.get("recognized_license_plate")
    if isinstance(plate, str) and plate:
        data["license_plate"] = plate[:_MAX_NAME]
    return _alarm(device_id, event_id, vt, alarm_type, severity, received_at, payload, data, zone)


# --- reviews -----------------------------------------------------------------------------------------------
def _decode_review(obj: dict[str, Any], topic: str, payload: bytes, received_at: datetime) -> list[Normalized]:
    kind, after, msg_id, camera = _head(obj, REVIEW_PREFIX)
    device_id = f"frigate:{camera}"
    if kind == "end":
        return _end(after, device_id, msg_id, received_at, payload)
    review_severity = after.get("severity")
    if review_severity not in ("alert", "detection"):
        raise _Invalid(f"after.severity: expected \"alert\" or \"detection\" (got {show(review_severity)})")
    details = after.get("data", {})
    if details is None:
        details = {}
    if not isinstance(details, dict):
        raise _Invalid(f"after.data: expected an object (got {show(details)})")
    objects = _str_list(details, "objects", where="after.data")
    zones = _str_list(details, "zones", where="after.data")
    labels = {_LABEL_SUFFIX.sub("", o.lower()) for o in objects}
    alarm_type, severity, zone = _type_and_zone(
        bool(labels & FIRE_LABELS),
        REVIEW_ALERT_SEVERITY if review_severity == "alert" else REVIEW_DETECTION_SEVERITY,
        zones,
    )
    start_value = after.get("start_time")
    vt = capped_vendor_ts(start_value, received_at)
    data: dict[str, Any] = {
        "frigate_type": kind,
        "camera": camera,
        "review_severity": review_severity,
        "objects": objects,
        "sub_labels": _str_list(details, "sub_labels", where="after.data"),
        "zones": zones,
        "audio": _str_list(details, "audio", where="after.data"),
        "detections": _str_list(details, "detections", where="after.data"),
        "ts_offset": vt.offset,
        "ts_source": _ts_source(start_value),
    }
    return _alarm(device_id, msg_id, vt, alarm_type, severity, received_at, payload, data, zone)


def _head(obj: dict[str, Any], id_prefix: str) -> tuple[str, dict[str, Any], str, str]:
    """(type, after, msg_id = id_prefix + after.id, after.camera) of an event or review, checked in that order."""
    kind = _message_type(obj)
    after = _after(obj)
    msg_id = id_prefix + _name(after, "id")
    return kind, after, msg_id, _name(after, "camera")


def _end(after: dict[str, Any], device_id: str, msg_id: str, received_at: datetime, payload: bytes) -> list[Normalized]:
    """`end`: only an AlarmEnd of that msg_id at after.end_time (an end closes, it never opens)."""
    end = capped_vendor_ts(after.get("end_time"), received_at)
    return [AlarmEnd(device_id=device_id, ts=end.utc, received_at=received_at, raw=payload, msg_id=msg_id)]


def _type_and_zone(fire: bool, severity: int, zones: list[str]) -> tuple[str, int, str | None]:
    """(type, severity, zone): thermal.fire for fire/smoke, else a region entrance of the first zone or an object."""
    if fire:
        return "thermal.fire", FIRE_SEVERITY, None
    if zones:
        return "camera.region_entrance", severity, zones[0]
    return "camera.object", severity, None


def _alarm(
    device_id: str, msg_id: str, vt: VendorTs, alarm_type: str, severity: int, received_at: datetime,
    payload: bytes, data: dict[str, Any], zone: str | None,
) -> list[Normalized]:
    """The Alarm of an event or review (its only warning: the start time's, if any)."""
    warnings = [vt.warning] if vt.warning else []
    return camera_alarm(device_id, msg_id, vt, alarm_type, severity, received_at, payload, data, warnings, zone=zone)


# --- availability ------------------------------------------------------------------------------------------
def _decode_available(topic: str, prefix: str, payload: bytes, received_at: datetime) -> list[Normalized] | DeadLetter:
    too_large = check_size(topic, payload, received_at)
    if too_large is not None:
        return too_large
    decoded = utf8_text(topic, payload, received_at, bom=False)
    if isinstance(decoded, DeadLetter):
        return decoded
    text = decoded.strip().lower()
    if text not in ("online", "offline"):
        return dead_letter(topic, payload, received_at, SCHEMA, f"payload: expected \"online\" or \"offline\" (got {show(text)})")
    return [
        DeviceStatus(
            device_id=NVR_DEVICE_ID,
            ts=received_at,
            online=text == "online",
            source="availability",
            received_at=received_at,
            raw=payload,
            data={"topic_prefix": prefix},
        )
    ]


# --- field helpers -----------------------------------------------------------------------------------------
def _message_type(obj: dict[str, Any]) -> str:
    kind = obj.get("type")
    if kind not in _EVENT_TYPES:
        raise _Invalid(f"type: expected \"new\", \"update\" or \"end\" (got {show(kind)})")
    return str(kind)


def _after(obj: dict[str, Any]) -> dict[str, Any]:
    after = obj.get("after")
    if not isinstance(after, dict):
        raise _Invalid(f"after: expected an object with the event's state (got {show(after)})")
    return after


def _name(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_NAME:
        raise _Invalid(f"after.{key}: expected a non-empty string of at most {_MAX_NAME} characters (got {show(value)})")
    return value


def _str_list(obj: dict[str, Any], key: str, *, where: str = "after") -> list[str]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Invalid(f"{where}.{key}: expected a list of strings (got {show(value)})")
    return [v[:_MAX_NAME] for v in value[:_MAX_LIST] if isinstance(v, str) and v]


def _sub_label(value: Any) -> tuple[str | None, float | None]:
    """Frigate ≤ 0.13 sends a string, 0.14+ `[name, score]`, both may be null."""
    if isinstance(value, str) and value:
        return value[:_MAX_NAME], None
    if isinstance(value, list) and value and isinstance(value[0], str):
        return value[0][:_MAX_NAME], _number(value[1]) if len(value) > 1 else None
    return None, None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # a JSON integer beyond the float range
        return None
    return number if math.isfinite(number) else None


def _ts_source(value: Any) -> str:
    return "" if value is None else str(value)[:64]
