"""One inbound MQTT message → Alarm | PatrollerPosition | DeadLetter | None, by topic (pure).

None means "deliberately ignored" (e.g. an OwnTracks transition event); everything that cannot be
accepted comes back as a DeadLetter with its reason, so the pipeline never crashes on bad input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from geo.model import Device
from ingest import topics
from ingest.adapters import alarm_v1, location
from ingest.adapters.common import MAX_PAYLOAD_BYTES, PAYLOAD_TOO_LARGE, dead_letter
from ingest.checks import check_alarm
from ingest.model import Alarm, Decoded

logger = logging.getLogger(__name__)

UNHANDLED_TOPIC = "unhandled_topic"


def decode_message(
    topic: str,
    payload: bytes,
    received_at: datetime,
    *,
    devices: Mapping[str, Device],
    inside: Callable[[float, float], bool],
    max_bytes: int = MAX_PAYLOAD_BYTES,
) -> Decoded | None:
    """Decode one message by its topic and check it against the registry and the district."""
    if len(payload) > max_bytes:
        return dead_letter(topic, payload, received_at, PAYLOAD_TOO_LARGE, f"payload is {len(payload)} bytes; expected at most {max_bytes}")
    route = topics.parse(topic)
    if route is None or route.kind in ("reading", "status"):
        return dead_letter(topic, payload, received_at, UNHANDLED_TOPIC, f"topic {topic!r} is not handled by this ingest version")
    if route.kind == "alarm":
        out = alarm_v1.decode(route.subject_id, payload, received_at, topic=topic)
        return check_alarm(out, devices, inside) if isinstance(out, Alarm) else out
    if route.kind == "owntracks":
        return location.decode_owntracks(route.subject_id, payload, received_at, topic=topic)
    return location.decode(route.subject_id, payload, received_at, topic=topic)
