"""The outbox relay: delivered rows are marked, failed ones stay pending with their error and are retried."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import pytest

from alerts.model import Notification
from alerts.outbox import OutboxRelay

pytestmark = pytest.mark.unit


class MemoryOutbox:
    def __init__(self, rows: dict[int, Notification]) -> None:
        self.rows = rows
        self.delivered: set[int] = set()
        self.errors: dict[int, list[str | None]] = {}

    def pending_notifications(self, *, limit: int = 500) -> list[tuple[int, Notification]]:
        return [(i, n) for i, n in sorted(self.rows.items()) if i not in self.delivered][:limit]

    def mark_notifications(self, ids: Sequence[int], *, delivered: bool, error: str | None = None) -> None:
        for i in ids:
            if delivered:
                self.delivered.add(i)
            else:
                self.errors.setdefault(i, []).append(error)


class Broker:
    def __init__(self) -> None:
        self.up = True
        self.sent: list[tuple[str, dict]] = []

    def publish(self, topic: str, payload: bytes) -> None:
        if not self.up:
            raise ConnectionError("broker unreachable")
        self.sent.append((topic, json.loads(payload)))


ROWS = {1: Notification("gridwatch/grids/430102001001001/incidents", {"id": "I1"}), 2: Notification("gridwatch/patrollers/P1/alerts", {"id": "I1"})}


def test_delivered_rows_are_marked() -> None:
    store, broker = MemoryOutbox(dict(ROWS)), Broker()
    relay = OutboxRelay(store, broker.publish)
    assert relay.deliver(list(ROWS.items())) == 2
    assert store.delivered == {1, 2} and [t for t, _ in broker.sent] == [ROWS[1].topic, ROWS[2].topic]


def test_failed_rows_stay_pending_with_the_error_and_the_sweep_retries_them() -> None:
    store, broker = MemoryOutbox(dict(ROWS)), Broker()
    relay = OutboxRelay(store, broker.publish)
    broker.up = False
    assert relay.deliver(list(ROWS.items())) == 0
    assert store.delivered == set() and store.errors == {1: ["broker unreachable"], 2: ["broker unreachable"]}
    broker.up = True
    assert relay.sweep() == 2 and store.delivered == {1, 2}
    assert relay.sweep() == 0


def test_the_thread_delivers_what_is_submitted_and_drains_on_stop() -> None:
    store, broker = MemoryOutbox(dict(ROWS)), Broker()
    relay = OutboxRelay(store, broker.publish, retry_seconds=0.05)
    relay.start()
    relay.submit([(1, ROWS[1])])
    deadline = time.monotonic() + 10
    while 1 not in store.delivered and time.monotonic() < deadline:
        time.sleep(0.01)
    relay.submit([(2, ROWS[2])])
    relay.stop()
    assert store.delivered == {1, 2}


def test_publish_now_publishes_on_the_callers_thread_and_the_relay_marks_them_delivered() -> None:
    store, broker = MemoryOutbox(dict(ROWS)), Broker()
    relay = OutboxRelay(store, broker.publish, retry_seconds=5.0, mark_interval=0.01)
    relay.start()
    try:
        assert relay.publish_now(list(ROWS.items())) == 2
        assert [t for t, _ in broker.sent] == [ROWS[1].topic, ROWS[2].topic]  # before publish_now returned
        deadline = time.monotonic() + 10
        while store.delivered != {1, 2} and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store.delivered == {1, 2}
    finally:
        relay.stop()


def test_publish_now_hands_what_it_cannot_publish_to_the_relay_which_keeps_it_pending() -> None:
    store, broker = MemoryOutbox(dict(ROWS)), Broker()
    attempts: list[str] = []

    def nowait(topic: str, payload: bytes) -> None:
        attempts.append(topic)
        if topic == ROWS[2].topic:
            raise TimeoutError("publish window full")
        broker.publish(topic, payload)

    relay = OutboxRelay(store, broker.publish, publish_nowait=nowait, mark_interval=0.01)
    assert relay.publish_now(list(ROWS.items())) == 1
    assert store.delivered == set()  # marks are written by the relay thread, not by publish_now
    broker.up = False  # the relay's retry fails too: the row stays pending with its error
    relay.start()
    relay.stop()
    assert store.delivered == {1} and store.errors == {2: ["broker unreachable"]}
    assert relay.sweep() == 0  # the broker is still down
    broker.up = True
    assert relay.sweep() == 1 and store.delivered == {1, 2}


def test_stop_writes_the_marks_of_rows_published_just_before() -> None:
    store, broker = MemoryOutbox(dict(ROWS)), Broker()
    relay = OutboxRelay(store, broker.publish, mark_interval=60.0)
    relay.start()
    assert relay.publish_now(list(ROWS.items())) == 2
    relay.stop()
    assert store.delivered == {1, 2}
