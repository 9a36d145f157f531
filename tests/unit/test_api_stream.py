"""The live stream's hub: topics to event kinds, grid filters, bounded queues, SSE framing."""

from __future__ import annotations

import asyncio
import json

import pytest

from api.stream import QUEUE_SIZE, EventHub, event_of, sse

pytestmark = pytest.mark.unit
G = "430102001001002"


def test_topics_map_to_event_kinds() -> None:
    assert event_of(f"gridwatch/grids/{G}/incidents", {}) == ("incident", G)
    assert event_of(f"gridwatch/grids/{G}/patrollers", {}) == ("patroller", G)
    assert event_of("gridwatch/centers/2/430102001001/incidents", {}) == ("center", "430102001001")
    assert event_of("gridwatch/patrollers/P1/alerts", {}) is None  # phones' own topic: not broadcast
    assert event_of("gridwatch/devices/cam-1/state", {}) == ("device", None)  # its grids are in the payload's route
    assert event_of("gridwatch/devices/cam-1/alarm", {}) is None


def test_hub_filters_by_grid_subtree_and_kind_and_frames_sse() -> None:
    async def run() -> list[bytes]:
        hub = EventHub()
        street = hub.subscribe(grid=G[:12], kinds=frozenset({"incident"}))
        other = hub.subscribe(grid="430102009")
        body = {"id": "INC-1", "event": "created", "route": {"l1": G[:9], "l2": G[:12], "l3": G}}
        assert hub.publish(f"gridwatch/grids/{G}/incidents", json.dumps(body).encode()) == 1
        assert hub.publish(f"gridwatch/grids/{G}/patrollers", {"event": "enter", "grid": G}) == 0  # kind filtered
        stream = sse(street, hub, heartbeat=0.05)
        chunks = [await stream.__anext__(), await stream.__anext__(), await stream.__anext__()]
        await stream.aclose()
        assert other.queue.empty()
        assert street not in hub._subs  # closing the stream unsubscribes
        return chunks

    hello, event, keepalive = asyncio.run(run())
    assert hello.startswith(b": gridwatch stream")
    assert event.startswith(b"event: incident\ndata: ") and json.loads(event.split(b"data: ")[1])["id"] == "INC-1"
    assert keepalive == b": keep-alive\n\n"


def test_a_slow_client_loses_the_oldest_events_and_is_told() -> None:
    async def run() -> list[bytes]:
        hub = EventHub()
        sub = hub.subscribe()
        for k in range(QUEUE_SIZE + 5):
            hub.publish(f"gridwatch/grids/{G}/incidents", {"id": f"INC-{k}", "grid": G})
        await asyncio.sleep(0.05)  # let the loop run the queued offers
        stream = sse(sub, hub)
        out = [await stream.__anext__() for _ in range(3)]
        await stream.aclose()
        return out

    _, lagged, first = asyncio.run(run())
    assert lagged == b'event: lagged\ndata: {"dropped": 5}\n\n'
    assert json.loads(first.split(b"data: ")[1])["id"] == "INC-5"
