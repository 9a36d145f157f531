"""One inbound message → a list of normalized messages or one DeadLetter, by topic (pure).

An empty list means "deliberately nothing" (a heartbeat-less bridge topic, an inactive state);
everything that cannot be accepted comes back as a DeadLetter with its reason, so the pipeline never
crashes on bad input. Device references are resolved afterwards, by ingest.pipeline.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

from ingest import topics
from ingest.adapters import (
    alarm_v1,
    dahua,
    fence,
    frigate,
    hikvision,
    homeassistant,
    location,
    onvif,
    osmand,
    reading_v1,
    status_v1,
    zigbee2mqtt,
)
from ingest.adapters.common import MAX_PAYLOAD_BYTES, PAYLOAD_TOO_LARGE, dead_letter
from ingest.model import DeadLetter, HaEntity, Normalized

logger = logging.getLogger(__name__)

UNHANDLED_TOPIC = "unhandled_topic"


VENDOR_FILTERS: tuple[str, ...] = (
    "gridwatch/devices/+/+",
    "gridwatch/patrollers/+/location",
    "owntracks/#",
    "frigate/#",
    "hikvision/#",
    "dahua/#",
    "onvif/#",
    "zigbee2mqtt/#",
    "homeassistant/#",
)
"""Everything an ingest worker subscribes to: gridwatch topics and each vendor adapter's prefix."""

HTTP_ISAPI = "http/isapi"
HTTP_OSMAND = "http/osmand"


def _ignored(topic: str) -> list[Normalized]:
    logger.debug("ignoring %s", topic)
    return []


def decode_messages(
    topic: str,
    payload: bytes,
    received_at: datetime,
    *,
    ha_entities: Mapping[str, Sequence[HaEntity]] | None = None,
    max_bytes: int = MAX_PAYLOAD_BYTES,
) -> list[Normalized] | DeadLetter:
    """Pick the adapter by topic (design §4 and the vendor topics) and decode; never raises on bad input.

    Device references in the result are not resolved yet (ingest.pipeline does that with the registry).
    """
    if len(payload) > max_bytes:
        return dead_letter(topic, payload, received_at, PAYLOAD_TOO_LARGE, f"payload is {len(payload)} bytes; expected at most {max_bytes}")
    levels = topic.split("/")
    root = levels[0]
    if root == topics.ROOT:
        route = topics.parse(topic)
        if route is not None:
            if route.kind == "alarm":
                out = alarm_v1.decode(route.subject_id, payload, received_at, topic=topic)
                return out if isinstance(out, DeadLetter) else [out]
            if route.kind == "reading":
                return reading_v1.decode(route.subject_id, payload, received_at, topic=topic)
            if route.kind == "status":
                return status_v1.decode(route.subject_id, payload, received_at, topic=topic)
            if route.kind == "location":
                pos = location.decode(route.subject_id, payload, received_at, topic=topic)
                return pos if isinstance(pos, DeadLetter) else [pos]
        if len(levels) == 4 and levels[1] == "devices" and levels[3] == "fence" and levels[2]:
            return fence.decode_host(levels[2], payload, received_at, topic=topic)
    elif root == topics.OWNTRACKS_ROOT and len(levels) in (3, 4) and levels[1] and levels[2]:
        if len(levels) == 4 and levels[3] != "event":
            return _ignored(topic)  # owntracks/user/device/{cmd,info,waypoints,...}
        return location.decode_owntracks_all(levels[1], payload, received_at, topic=topic)
    elif root == "frigate":
        return frigate.decode(topic, payload, received_at)
    elif root == "hikvision":
        return hikvision.decode(topic, payload, received_at)
    elif root == "dahua":
        return dahua.decode(topic, payload, received_at)
    elif root == "onvif":
        return onvif.decode(topic, payload, received_at)
    elif root == "zigbee2mqtt":
        return zigbee2mqtt.decode(topic, payload, received_at)
    elif root == "homeassistant":
        return homeassistant.decode(topic, payload, received_at, entities=ha_entities or {})
    elif topic == HTTP_ISAPI:  # a replayed ISAPI push: the stored payload is the event part
        return hikvision.decode(topic, payload, received_at)
    elif topic == HTTP_OSMAND:  # a replayed OsmAnd request: the stored payload is its parameters
        return osmand.decode_raw(payload, received_at, topic=topic)
    if ha_entities and topic in ha_entities:  # a Home Assistant state topic outside the discovery prefix
        return homeassistant.decode_state(topic, payload, received_at, ha_entities)
    return dead_letter(topic, payload, received_at, UNHANDLED_TOPIC, f"topic {topic!r} is not handled by this ingest version")
