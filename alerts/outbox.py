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
    """Publishes committed notifications at once, and sweeps pending ones periodically.

    Two ways in: `publish_now` (the ingest thread, right after its commit: no hand-over to another
    thread on the latency path) and `submit` (rows for the relay thread to publish). Rows published by
    `publish_now` are marked delivered by the relay thread, coalesced into one write per
    `mark_interval` (a mark lost in a crash only makes the sweep publish that row again: at least once,
    never lost). A row whose publish fails, or that `publish_now` cannot hand to the broker without
    blocking, goes to the relay thread, which retries it and records the failure: it stays pending.
    """

    def __init__(self, store: OutboxStore, publish: Publish, *, retry_seconds: float = 5.0,
                 publish_nowait: Publish | None = None, mark_interval: float = 0.1) -> None:
        self.store = store
        self.publish = publish
        self.publish_nowait = publish_nowait or publish
        self.retry_seconds = retry_seconds
        self.mark_interval = mark_interval
        self._queue: queue.Queue[Sequence[tuple[int, Notification]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._published: list[int] = []  # published by publish_now, not yet marked delivered
        self._stopping = threading.Event()

    def submit(self, rows: Sequence[tuple[int, Notification]]) -> None:
        """Hand over rows that were just committed to the outbox."""
        if rows:
            self._queue.put(rows)

    def publish_now(self, rows: Sequence[tuple[int, Notification]]) -> int:
        """Publish rows that were just committed, on the caller's thread; return how many were published.

        The delivered-marks are written later by the relay thread (`flush_marks`). On the first row
        that cannot be published without blocking (broker down, publish window full), that row and
        the rest go to the relay thread, which retries them and records failures.
        """
        done: list[int] = []
        encoded: dict[int, bytes] = {}
        publish = self.publish_nowait
        for n, (row_id, note) in enumerate(rows):
            try:
                key = id(note.payload)
                data = encoded.get(key)
                if data is None:
                    data = encoded[key] = encode(note)
                publish(note.topic, data)
            except Exception as exc:  # noqa: BLE001 - the relay thread retries and records the failure
                logger.debug("outbox row %s to %s: direct publish failed (%s); handed to the relay", row_id,
                             note.topic, exc)
                self._queue.put(list(rows[n:]))
                break
            done.append(row_id)
        if done:
            with self._lock:
                wake = not self._published
                self._published.extend(done)
            if wake:
                self._queue.put([])  # the relay thread writes the marks (coalesced)
        return len(done)

    def flush_marks(self) -> int:
        """Mark the rows published by `publish_now` delivered, in one write; return how many."""
        with self._lock:
            ids, self._published = self._published, []
        if not ids:
            return 0
        try:
            self.store.mark_notifications(ids, delivered=True)
        except BaseException:
            with self._lock:  # try again next time (meanwhile they are pending: a sweep may resend them)
                self._published[:0] = ids
            raise
        return len(ids)

    def start(self) -> None:
        """Start the relay thread."""
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Deliver what was submitted, mark what was published, then stop."""
        if self._thread is not None:
            self._stopping.set()
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None
        self._safe(lambda _rows: self.flush_marks(), [])

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
        flush = lambda _rows: self.flush_marks()  # noqa: E731
        while True:
            try:
                rows = self._queue.get(timeout=self.retry_seconds)
            except queue.Empty:
                self._safe(flush, [])
                self._safe(lambda _rows: self.sweep(), [])
                continue
            batch: list[tuple[int, Notification]] = []
            stop = rows is None
            if rows:
                batch.extend(rows)
            while not stop:  # coalesce what is already queued into one pass
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                else:
                    batch.extend(more)
            if batch:
                self._safe(self.deliver, batch)
            elif not stop:  # a wake-up from publish_now: let its delivered-marks gather into one write
                self._stopping.wait(self.mark_interval)
            self._safe(flush, [])
            if stop:
                return

    @staticmethod
    def _safe(fn: Callable[[list[tuple[int, Notification]]], int], rows: list[tuple[int, Notification]]) -> None:
        try:
            fn(rows)
        except Exception:  # noqa: BLE001 - the store may be down; the sweep retries later
            logger.exception("outbox relay pass failed; pending rows stay pending")
