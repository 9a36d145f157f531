"""The live stream's hub: topics to event kinds, grid filters, bounded queues, SSE framing."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from api.stream import QUEUE_SIZE, EventHub, event_of, sse

pytestmark = pytest.mark.unit
G = "430102001001002"


def test_topics_map_to_event_kinds() -> None:
    assert event_of(f"gridwatch/grids/{G}/incidents", {}) == ("incident", G)
    assert event_of(f"gridwatch/grids/{G}/patrollers", {}) == ("patroller", G)
    assert event_of("gridwatch/centers/2/430102001001/incidents", {}) == ("center", "430102001001")
    assert event_of("gridwatch/patrollers/P1/alerts", {}) is None  # phones' own topic: not broadcast
    assert event_of("gridwatch/grids/430102001001001/devices", {}) == ("device", "430102001001001")
    assert event_of("gridwatch/devices/cam-1/state", {}) is None  # a device may publish there: never a live event
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


def test_a_stream_ends_with_logout_once_its_login_is_no_longer_valid() -> None:
    checks: list[bool] = []

    async def run() -> list[bytes]:
        hub = EventHub()
        sub = hub.subscribe()

        async def still_allowed() -> bool:
            checks.append(True)
            return len(checks) < 2  # valid at the first check, gone at the second

        stream = sse(sub, hub, heartbeat=0.02, still_allowed=still_allowed)
        chunks = [chunk async for chunk in stream]
        assert sub not in hub._subs
        return chunks

    chunks = asyncio.run(run())
    assert chunks[0].startswith(b": gridwatch stream") and chunks[-1] == b"event: logout\ndata: {}\n\n"
    assert len(checks) == 2


def test_closing_the_hub_ends_open_and_new_streams_so_a_shutdown_is_not_held() -> None:
    async def run() -> tuple[list[bytes], list[bytes], int]:
        hub = EventHub()
        sub = hub.subscribe()
        stream = sse(sub, hub, heartbeat=60)  # no heartbeat would end it within the test
        hello = await stream.__anext__()
        hub.publish(f"gridwatch/grids/{G}/incidents", {"id": "INC-1", "grid": G})
        told = await asyncio.to_thread(hub.close)  # from another thread, like a signal handler's
        rest = [chunk async for chunk in stream]
        assert sub not in hub._subs
        late = [chunk async for chunk in sse(hub.subscribe(), hub, heartbeat=60)]  # opened while stopping
        return [hello, *rest], late, told

    chunks, late, told = asyncio.run(run())
    assert told == 1
    assert chunks[0].startswith(b": gridwatch stream")
    assert len(chunks) == 2 and json.loads(chunks[1].split(b"data: ")[1])["id"] == "INC-1"  # what was queued still goes out
    assert len(late) == 1 and late[0].startswith(b": gridwatch stream")


def test_scoped_subscribers_get_only_the_events_of_their_login() -> None:
    from api.access import Scope
    from api.auth import Principal

    async def run() -> tuple[int, int, int, int]:
        hub = EventHub()
        street = hub.subscribe(allow=Scope(Principal("s", "commander", G[:9])).event_filter())
        other_street = hub.subscribe(allow=Scope(Principal("o", "commander", "430102009")).event_filter())
        me = hub.subscribe(allow=Scope(Principal("p", "patroller", patroller_id="P1"), frozenset({"430102009001002"})).event_filter())
        colleague = hub.subscribe(allow=Scope(Principal("q", "patroller", patroller_id="P2"), frozenset({G})).event_filter())
        route = {"l1": G[:9], "l2": G[:12], "l3": G}
        hub.publish(f"gridwatch/grids/{G}/incidents", {"id": "INC-1", "event": "created", "route": route, "assignee": "P1"})
        hub.publish(f"gridwatch/grids/{G}/patrollers", {"event": "enter", "patroller_id": "P2", "grid": G, "route": route})
        await asyncio.sleep(0.01)
        return street.queue.qsize(), other_street.queue.qsize(), me.queue.qsize(), colleague.queue.qsize()

    street, other_street, me, colleague = asyncio.run(run())
    assert (street, other_street) == (2, 0)  # the street commander sees the L3 patroller event through its route
    assert me == 1  # assigned to me, outside my geofence: the incident only
    assert colleague == 2  # my geofence's incident, and my own patroller event


def test_the_previous_assignee_hears_that_an_incident_left_it() -> None:
    from api.access import Scope
    from api.auth import Principal

    async def run() -> int:
        hub = EventHub()
        before = hub.subscribe(allow=Scope(Principal("p", "patroller", patroller_id="P1")).event_filter())
        route = {"l1": G[:9], "l2": G[:12], "l3": G}
        hub.publish(f"gridwatch/grids/{G}/incidents", {"id": "INC-1", "event": "dispatch", "route": route, "assignee": "P2",
                                                       "previous_assignee": "P1"})
        hub.publish(f"gridwatch/grids/{G}/incidents", {"id": "INC-2", "event": "dispatch", "route": route, "assignee": "P2"})
        await asyncio.sleep(0.01)
        return before.queue.qsize()

    assert asyncio.run(run()) == 1


def test_stopping_the_server_from_a_signal_handler_never_waits_for_the_hubs_lock() -> None:
    """A signal handler runs on the event loop's thread, which may hold the hub's lock (a stream opening or
    ending) at that very moment: the server's handle_exit must not wait for it (it would wait for ever)."""
    import signal
    from types import SimpleNamespace

    from fastapi import FastAPI

    from api.cli import _http_server

    app = FastAPI()
    hub = EventHub()
    app.state.runtime = SimpleNamespace(hub=hub)
    server = _http_server(app, "127.0.0.1", 0, "warning")

    def too_long(*_: object) -> None:
        raise TimeoutError("handle_exit waited for the hub's lock held by its own thread")

    previous = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(10)  # a deadlock fails the test instead of hanging it
    try:
        with hub._lock:  # this thread is inside subscribe() when the signal arrives
            server.handle_exit(signal.SIGINT, None)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert server.should_exit
    deadline = time.monotonic() + 10
    while not hub.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert hub.closed, "the hub was never closed"
