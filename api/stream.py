"""The live event stream behind `GET /api/v1/stream` (Server-Sent Events, design §4).

Every notification this process publishes to MQTT (incident events on grid topics, patroller
enter/exit, light changes, reminders, escalations) is also offered to the hub, which fans it out to
the connected streams. A slow client never blocks publishing: its queue is bounded and, when full,
the oldest events are dropped and the client is told how many with a `lagged` event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

QUEUE_SIZE = 1000


def event_of(topic: str, payload: dict[str, Any]) -> tuple[str, str | None] | None:
    """(event kind, grid code) of a published notification; None for topics the stream does not carry."""
    parts = topic.split("/")
    if len(parts) == 4 and parts[0] == "gridwatch" and parts[1] == "grids":
        kind = {"incidents": "incident", "patrollers": "patroller", "devices": "device"}.get(parts[3])
        return (kind, parts[2]) if kind else None
    if len(parts) == 5 and parts[0] == "gridwatch" and parts[1] == "centers":
        return "center", parts[3]
    return None


def chain_of(payload: dict[str, Any], grid: str | None) -> set[str]:
    """The grid codes an event belongs to (its route chain, or the topic's grid)."""
    route = payload.get("route") if isinstance(payload.get("route"), dict) else {}
    codes = {route.get("l1"), route.get("l2"), route.get("l3"), payload.get("grid"), grid}
    return {c for c in codes if isinstance(c, str)}


@dataclass(eq=False)
class Subscriber:
    """One connected stream: its filter and its bounded queue (on its event loop)."""

    loop: asyncio.AbstractEventLoop
    grid: str | None
    kinds: frozenset[str]
    allow: Callable[[str, dict[str, Any], set[str]], bool] | None = None
    """The access filter of the subscriber's login (api.access.Scope.event_filter): (kind, payload, codes) → send?"""
    queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    """Events to send; None ends the stream (the server is stopping)."""
    dropped: int = 0

    def wants(self, kind: str, codes: set[str], body: dict[str, Any] | None = None) -> bool:
        if self.kinds and kind not in self.kinds:
            return False
        if self.grid is not None and self.grid not in codes:
            return False
        return self.allow is None or self.allow(kind, body or {}, codes)

    def offer(self, item: tuple[str, dict[str, Any]] | None) -> None:
        """Runs on the subscriber's loop: enqueue, dropping the oldest event when full."""
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(item)


class EventHub:
    """Thread-safe fan-out of published notifications to the connected streams."""

    def __init__(self) -> None:
        self._subs: set[Subscriber] = set()
        self._lock = threading.Lock()
        self.published = 0
        self.closed = False

    def subscribe(self, grid: str | None = None, kinds: frozenset[str] = frozenset(),
                  allow: Callable[[str, dict[str, Any], set[str]], bool] | None = None) -> Subscriber:
        sub = Subscriber(asyncio.get_running_loop(), grid, kinds, allow)
        with self._lock:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subs.discard(sub)

    def close(self) -> int:
        """End every open stream, and any opened from now on (the server is stopping: an open stream would
        hold the shutdown for as long as a wall stays open). Each ends cleanly and its browser reconnects
        to whichever server answers next. A closed hub stays closed. Any thread but the loop's own while it
        may hold the lock (not from a signal handler: see api.cli); returns how many streams were told."""
        with self._lock:
            self.closed = True
            subs = list(self._subs)
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(sub.offer, None)
            except RuntimeError:  # its loop is closed: the client is gone
                self.unsubscribe(sub)
        if subs:
            logger.info("ended %d live stream(s): the server is stopping", len(subs))
        return len(subs)

    def gap(self, reason: str) -> int:
        """Tell every open stream that events may have been missed (`event: lagged`: its page reloads what it
        shows). Any thread; returns how many streams were told."""
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(sub.offer, ("lagged", {"dropped": 0, "reason": reason}))
            except RuntimeError:  # its loop is closed: the client is gone
                self.unsubscribe(sub)
        return len(subs)

    def publish(self, topic: str, payload: bytes | dict[str, Any]) -> int:
        """Offer one published notification to the matching streams (any thread); returns how many."""
        kind_grid = event_of(topic, {})
        if kind_grid is None or self.closed:  # closed: the streams' end markers must not be pushed out
            return 0
        with self._lock:
            subs = list(self._subs)
        if not subs:
            return 0
        body = payload if isinstance(payload, dict) else json.loads(payload)
        kind, grid = kind_grid
        codes = chain_of(body, grid)
        sent = 0
        for sub in subs:
            if sub.wants(kind, codes, body):
                try:
                    sub.loop.call_soon_threadsafe(sub.offer, (kind, body))
                    sent += 1
                except RuntimeError:  # its loop is closed: the client is gone
                    self.unsubscribe(sub)
        self.published += 1
        return sent


async def sse(sub: Subscriber, hub: EventHub, *, heartbeat: float = 15.0,
              still_allowed: Callable[[], Awaitable[bool]] | None = None) -> AsyncIterator[bytes]:
    """The text/event-stream body of one subscriber (heartbeat comments keep proxies from closing it).

    `still_allowed` is asked again at least every `heartbeat` seconds (the login may have expired, been
    deleted or changed role): when it says no, the stream ends with an `event: logout`. It also ends,
    without an event, when the hub closes (EventHub.close: the server is stopping).
    """
    loop = asyncio.get_running_loop()
    checked = loop.time()
    try:
        yield b": gridwatch stream\nretry: 3000\n\n"
        while True:
            if hub.closed and sub.queue.empty():  # what was queued still goes out
                return
            if still_allowed is not None and loop.time() - checked >= heartbeat:
                checked = loop.time()
                if not await still_allowed():
                    yield b"event: logout\ndata: {}\n\n"
                    return
            try:
                item = await asyncio.wait_for(sub.queue.get(), timeout=heartbeat)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if item is None:
                return
            kind, body = item
            if sub.dropped:
                yield f"event: lagged\ndata: {json.dumps({'dropped': sub.dropped})}\n\n".encode()
                sub.dropped = 0
            data = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
            yield f"event: {kind}\ndata: {data}\n\n".encode()
    finally:
        hub.unsubscribe(sub)
