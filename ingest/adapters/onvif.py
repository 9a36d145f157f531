"""ONVIF event notifications from an MQTT bridge (`onvif/<device>/event`) → normalized messages.

The bridge republishes what the camera's event service delivers: a WS-BaseNotification `Notify` (or a
PullMessages response, or a SOAP envelope around either) with one or more `NotificationMessage`s, or a
single `NotificationMessage`::

    <wsnt:NotificationMessage xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2"
        xmlns:tt="http://www.onvif.org/ver10/schema" xmlns:tns1="http://www.onvif.org/ver10/topics">
      <wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet">
        tns1:RuleEngine/FieldDetector/ObjectsInside</wsnt:Topic>
      <wsnt:Message>
        <tt:Message UtcTime="2026-11-21T00:15:02.120Z" PropertyOperation="Changed">
          <tt:Source>
            <tt:SimpleItem Name="VideoSourceConfigurationToken" Value="VideoSourceConfig_1"/>
            <tt:SimpleItem Name="Rule" Value="Perimeter"/>
          </tt:Source>
          <tt:Data><tt:SimpleItem Name="IsInside" Value="true"/></tt:Data>
        </tt:Message>
      </wsnt:Message>
    </wsnt:NotificationMessage>

- Topics (namespace prefixes ignored): RuleEngine/FieldDetector/ObjectsInside (IsInside) → region
  entrance; RuleEngine/LineDetector/Crossed (ObjectId) → line crossing, never an end;
  VideoSource/MotionAlarm (State), RuleEngine/CellMotionDetector/Motion (IsMotion),
  RuleEngine/MotionRegionDetector/Motion (State) → motion; VideoSource/GlobalSceneChange/*,
  VideoSource/ImageTooBlurry|ImageTooDark|ImageTooBright/*, RuleEngine/TamperDetector/Tamper
  (State/IsTamper) → tamper. A state item `true` → Alarm, `false` → `AlarmEnd(type=...)`.
  Unknown topics → `other.onvif_<last topic segment>` with a warning (a false boolean → its AlarmEnd).
- `PropertyOperation="Initialized"` (the state sync after subscribing) and `"Deleted"` → nothing.
- Message@UtcTime → ts. Source token from the Source SimpleItem VideoSourceConfigurationToken, Source or
  VideoSourceToken (in that order); identity `onvif:<device from topic>/<token>` (`onvif:<device>` when
  the message names no source). msg_id `<Rule item or topic>:<token>:<UtcTime>`.
XML is parsed only with defusedxml (no DTDs, no entities).
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ingest.adapters import xmlsafe
from ingest.adapters.common import (
    CAMERA_SEVERITY,
    INVALID_XML,
    OTHER_SEVERITY,
    SCHEMA,
    UNSUPPORTED_MESSAGE,
    check_size,
    dead_letter,
    event_topic_device,
    receive_time_msg_id,
    require_aware,
    show,
    utf8_text,
)
from ingest.adapters.timestamps import vendor_ts
from ingest.adapters.xmlsafe import local_name
from ingest.model import Alarm, AlarmEnd, DeadLetter, Normalized

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TopicRule:
    """How one ONVIF topic maps: the alarm type and the Data items that carry its state (none: an event)."""

    type: str
    state_items: tuple[str, ...] = ()


TOPICS: dict[str, TopicRule] = {
    "ruleengine/fielddetector/objectsinside": TopicRule("camera.region_entrance", ("IsInside",)),
    "ruleengine/linedetector/crossed": TopicRule("camera.line_crossing"),
    "videosource/motionalarm": TopicRule("camera.motion", ("State",)),
    "ruleengine/cellmotiondetector/motion": TopicRule("camera.motion", ("IsMotion",)),
    "ruleengine/motionregiondetector/motion": TopicRule("camera.motion", ("State",)),
    "ruleengine/tamperdetector/tamper": TopicRule("camera.tamper", ("IsTamper", "State")),
}
"""Topic path (lower-case, without namespace prefixes) → rule."""
TAMPER_PREFIXES: tuple[str, ...] = (
    "videosource/globalscenechange/",
    "videosource/imagetooblurry/",
    "videosource/imagetoodark/",
    "videosource/imagetoobright/",
)
TAMPER_RULE = TopicRule("camera.tamper", ("State", "IsTamper"))
SOURCE_ITEMS: tuple[str, ...] = ("VideoSourceConfigurationToken", "Source", "VideoSourceToken")
SEVERITY: dict[str, int] = {
    t: CAMERA_SEVERITY[t] for t in ("camera.motion", "camera.line_crossing", "camera.region_entrance", "camera.tamper")
}
IGNORED_OPERATIONS = frozenset({"initialized", "deleted"})

_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})
_CLEAN = re.compile(r"[^a-z0-9]+")
_MAX_FIELD = 128
_MAX_ITEMS = 32
_MAX_MESSAGES = 64


class _Invalid(Exception):
    """A NotificationMessage is not what ONVIF sends (becomes a `schema` dead letter naming the field)."""


def decode(topic: str, payload: bytes, received_at: datetime) -> list[Normalized] | DeadLetter:
    """Decode one bridged ONVIF Notify / NotificationMessage; never raises on any payload bytes."""
    require_aware(received_at)
    device = event_topic_device(topic, logger, "onvif")
    if device is None:
        return []
    too_large = check_size(topic, payload, received_at)
    if too_large is not None:
        return too_large
    head = payload[3:67] if payload.startswith(b"\xef\xbb\xbf") else payload[:64]
    if head.lstrip()[:1] != b"<" and payload.lstrip()[:1] != b"<":
        not_text = utf8_text(topic, payload, received_at, bom=False)
        if isinstance(not_text, DeadLetter):
            return not_text
        return dead_letter(topic, payload, received_at, UNSUPPORTED_MESSAGE, "expected an XML ONVIF Notify or NotificationMessage")
    root = xmlsafe.parse(payload)
    if isinstance(root, str):
        return dead_letter(topic, payload, received_at, INVALID_XML, root)
    messages = [e for e in root.iter() if local_name(e.tag) == "NotificationMessage"]
    if not messages:
        return dead_letter(
            topic, payload, received_at, UNSUPPORTED_MESSAGE,
            f"root element <{local_name(root.tag)[:40]}> holds no NotificationMessage; expected an ONVIF Notify",
        )
    outputs: list[Normalized] = []
    errors: list[str] = []
    for number, message in enumerate(messages[:_MAX_MESSAGES], start=1):
        try:
            out = _message_output(message, device, payload, received_at)
        except _Invalid as exc:
            errors.append(f"NotificationMessage {number}: {exc}")
            continue
        if out is not None:
            outputs.append(out)
    if len(messages) > _MAX_MESSAGES:
        errors.append(f"{len(messages) - _MAX_MESSAGES} NotificationMessage(s) beyond the first {_MAX_MESSAGES} skipped")
    if errors:
        if not outputs:
            return dead_letter(topic, payload, received_at, SCHEMA, "; ".join(errors))
        logger.warning("onvif %s: %s", device, "; ".join(errors))
    return outputs


def _message_output(message: ET.Element, device: str, payload: bytes, received_at: datetime) -> Alarm | AlarmEnd | None:
    topic_element = _child(message, "Topic")
    topic_text = " ".join((topic_element.text or "").split()) if topic_element is not None else ""
    if not topic_text or len(topic_text) > 256:
        raise _Invalid(f"Topic: expected a topic such as tns1:VideoSource/MotionAlarm (got {show(topic_text)})")
    inner = _inner_message(message)
    if inner is None:
        raise _Invalid("Message: expected a wsnt:Message holding a tt:Message (with UtcTime, Source and Data)")
    operation = inner.get("PropertyOperation") or ""
    path = "/".join(segment.rsplit(":", 1)[-1] for segment in topic_text.split("/"))
    if operation.lower() in IGNORED_OPERATIONS:
        logger.debug("onvif %s: %s %s is a state sync; ignored", device, operation, path)
        return None
    source_items = _items(inner, "Source")
    data_items = _items(inner, "Data")
    token = next((source_items[name] for name in SOURCE_ITEMS if source_items.get(name)), "")
    device_id = f"onvif:{device}/{token}" if token else f"onvif:{device}"
    warnings: list[str] = []
    rule = _rule(path)
    if rule is None:
        last = _CLEAN.sub("_", path.rsplit("/", 1)[-1].lower()).strip("_") or "unknown"
        booleans = tuple(k for k, v in data_items.items() if v.lower() in ("true", "false"))
        rule = TopicRule(f"other.onvif_{last}", booleans[:1])
        warnings.append(f"unknown ONVIF topic {topic_text!r}: accepted as {rule.type!r}")
        logger.info("onvif %s: unknown topic %r accepted as %s", device, topic_text, rule.type)
    state: bool | None = None
    if rule.state_items:
        name = next((n for n in rule.state_items if n in data_items), None)
        if name is None:
            raise _Invalid(f"Data: expected a SimpleItem {' or '.join(rule.state_items)} for {path}")
        value = data_items[name].lower()
        if value not in _TRUE | _FALSE:
            raise _Invalid(f"Data.{name}: expected true or false (got {show(data_items[name])})")
        state = value in _TRUE
    utc_value = inner.get("UtcTime")
    vt = vendor_ts(utc_value, received_at)
    if state is False:
        return AlarmEnd(device_id=device_id, ts=vt.utc, received_at=received_at, raw=payload, type=rule.type)
    if vt.warning:
        warnings.append(vt.warning)
    rule_name = source_items.get("Rule")
    msg_id = f"{rule_name or topic_text}:{token}:{utc_value or ''}"
    msg_id = receive_time_msg_id(msg_id, vt, received_at, warnings, "UtcTime")
    data: dict[str, Any] = {
        "topic": topic_text,
        "property_operation": operation,
        "source": source_items,
        "data": data_items,
        "ts_offset": vt.offset,
        "ts_source": (utc_value or "")[:64],
    }
    if rule_name:
        data["rule"] = rule_name
    return Alarm(
        device_id=device_id,
        msg_id=msg_id,
        ts=vt.utc,
        type=rule.type,
        severity=SEVERITY.get(rule.type, OTHER_SEVERITY),
        received_at=received_at,
        raw=payload,
        data=data,
        warnings=tuple(warnings),
    )


def _rule(path: str) -> TopicRule | None:
    key = path.lower()
    rule = TOPICS.get(key)
    if rule is None and key.startswith(TAMPER_PREFIXES):
        return TAMPER_RULE
    return rule


def _inner_message(message: ET.Element) -> ET.Element | None:
    """The tt:Message inside wsnt:Message (or a wsnt:Message that carries UtcTime itself)."""
    wrapper = _child(message, "Message")
    if wrapper is None:
        return None
    inner = _child(wrapper, "Message")
    if inner is not None:
        return inner
    return wrapper if wrapper.get("UtcTime") is not None else None


def _items(message: ET.Element, section: str) -> dict[str, str]:
    """The SimpleItem Name → Value pairs of tt:Source or tt:Data."""
    element = _child(message, section)
    if element is None:
        return {}
    items: dict[str, str] = {}
    for item in element:
        if local_name(item.tag) != "SimpleItem":
            continue
        name = item.get("Name")
        value = item.get("Value")
        if name and value is not None and len(items) < _MAX_ITEMS:
            items[name[:_MAX_FIELD]] = value.strip()[:_MAX_FIELD]
    return items


def _child(element: ET.Element, name: str) -> ET.Element | None:
    for child in element:
        if local_name(child.tag) == name:
            return child
    return None
