"""Outbound notifications: relay outbox rows to the broker after commit, retry what failed.

Nothing is dropped silently: a row stays pending (attempts + 1, last error) until a publish succeeds,
and the counters are visible through the store (GET /api/v1/notifications/counters).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from alerts.model import Notification

logger = logging.getLogger(__name__)


class OutboxStore(Protocol):
    """The slice of store.ports.Store the relay uses."""

    def pending_notifications(self, *, limit: int = 500) -> list[tuple[int, Notification]]: ...
    def mark_notifications(self, ids: Sequence[int], *, delivered: bool, error: str | None = None) -> None: ...


Publish = Callable[[str, bytes], None]


def encode(note: Notification) -> bytes:
    """The MQTT payload of a notification."""
    return json.dumps(note.payload, ensure_ascii=False, separators=(",", ":")).encode()


class OutboxRelay:
    """A thread that publishes committed notifications at once, and sweeps pending ones periodically."""

    def __init__(self, store: OutboxStore, publish: Publish, *, retry_seconds: float = 5.0) -> None:
        self.store = store
        self.publish = publish
        self.retry_seconds = retry_seconds
        self._queue: queue.Queue[list[tuple[int, Notification]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def submit(self, rows: list[tuple[int, Notification]]) -> None:
        """Hand over rows that were just committed to the outbox."""
        if rows:
            self._queue.put(rows)

    def start(self) -> None:
        """Start the relay thread."""
        self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Deliver what was submitted, then stop."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def deliver(self, rows: Sequence[tuple[int, Notification]]) -> int:
        """Publish rows; mark the delivered ones and record failures. Return how many were delivered."""
        done: list[int] = []
        encoded: dict[int, bytes] = {}  # a payload shared by several rows (grid + patroller topic) is encoded once
        for row_id, note in rows:
            try:
                key = id(note.payload)
                data = encoded.get(key)
                if data is None:
                    data = encoded[key] = encode(note)
                self.publish(note.topic, data)
            except Exception as exc:  # noqa: BLE001 - any broker failure keeps the row pending
                logger.warning("outbox row %s to %s not delivered: %s", row_id, note.topic, exc)
                self.store.mark_notifications([row_id], delivered=False, error=str(exc)[:500])
            else:
                done.append(row_id)
        if done:
            self.store.mark_notifications(done, delivered=True)
        return len(done)

    def sweep(self) -> int:
        """Retry every pending row (after a crash or a broker outage)."""
        return self.deliver(self.store.pending_notifications())

    def _run(self) -> None:
        while True:
            try:
                rows = self._queue.get(timeout=self.retry_seconds)
            except queue.Empty:
                self._safe(lambda _rows: self.sweep(), [])
                continue
            if rows is None:
                return
            batch = list(rows)
            while True:  # coalesce what is already queued into one mark-delivered write
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._safe(self.deliver, batch)
                    return
                batch.extend(more)
            self._safe(self.deliver, batch)

    @staticmethod
    def _safe(fn: Callable[[list[tuple[int, Notification]]], int], rows: list[tuple[int, Notification]]) -> None:
        try:
            fn(rows)
        except Exception:  # noqa: BLE001 - the store may be down; the sweep retries later
            logger.exception("outbox relay pass failed; pending rows stay pending")
