"""The live stream's broker feed (api.feed): what it subscribes to, and what it does on a reconnection
or a bad message (paho's callbacks driven directly; the real broker path is tests/e2e/test_stream_feed.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from api.feed import STREAM_TOPICS, EventFeed
from api.stream import event_of
from ingest.acl import SERVICE_WRITE

pytestmark = pytest.mark.unit

OK = ReasonCode(PacketTypes.CONNACK, "Success")


class FakeClient:
    def __init__(self) -> None:
        self.subscriptions: list[list[tuple[str, int]]] = []

    def subscribe(self, topics: list[tuple[str, int]]) -> tuple[int, int]:
        self.subscriptions.append(topics)
        return 0, 1


def test_the_feed_carries_only_topics_the_service_alone_may_publish() -> None:
    assert set(STREAM_TOPICS) <= set(SERVICE_WRITE)
    for topic in STREAM_TOPICS:
        example = topic.replace("+", "430102001001001")
        assert event_of(example, {}) is not None, topic


def test_a_reconnection_tells_the_streams_to_reload_and_a_bad_message_does_not_stop_the_feed() -> None:
    sunk: list[tuple[str, bytes]] = []
    gaps: list[str] = []

    def sink(topic: str, payload: bytes) -> None:
        if payload == b"boom":
            raise ValueError("not JSON")
        sunk.append((topic, payload))

    feed = EventFeed("mqtt://svc:pw@broker:1883", sink, lambda why: gaps.append(why) or 3, client_id="gw-api")
    assert feed.client_id.startswith("gw-api-events-") and feed.client_id != EventFeed(
        "mqtt://broker", sink, len, client_id="gw-api").client_id  # each process its own connection
    client = FakeClient()
    feed._on_connect(client, None, None, OK, None)  # type: ignore[arg-type]
    # pages opened before the first connection may have missed events too: told on every connection
    assert client.subscriptions == [[(t, 1) for t in STREAM_TOPICS]] and len(gaps) == 1
    feed._on_connect(client, None, None, OK, None)  # type: ignore[arg-type]
    assert len(client.subscriptions) == 2 and len(gaps) == 2 and "connected" in gaps[1]
    refused = ReasonCode(PacketTypes.SUBACK, "Not authorized")
    granted = ReasonCode(PacketTypes.SUBACK, "Granted QoS 1")
    feed._on_subscribe(client, None, 1, [granted, refused, granted, granted], None)  # type: ignore[arg-type]
    assert feed.is_subscribed and not feed.refused  # some topics: it still hears those
    feed._on_subscribe(client, None, 1, [refused] * len(STREAM_TOPICS), None)  # type: ignore[arg-type]
    assert feed.refused  # nothing at all: the runtime keeps offering its own events (Runtime.start_events)

    def message(topic: str, payload: bytes) -> Any:
        return SimpleNamespace(topic=topic, payload=payload)

    feed._on_message(None, None, message("gridwatch/grids/G/incidents", b"boom"))  # type: ignore[arg-type]
    feed._on_message(None, None, message("gridwatch/grids/G/incidents", b'{"id": "INC-1"}'))  # type: ignore[arg-type]
    assert sunk == [("gridwatch/grids/G/incidents", b'{"id": "INC-1"}')] and feed.received == 2
