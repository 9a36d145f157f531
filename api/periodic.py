"""A background thread that runs one job every N seconds until stopped (SLA sweep, device health)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Periodic:
    """Runs `job` every `every` seconds in a daemon thread; a failing run is logged and retried next time."""

    def __init__(self, name: str, job: Callable[[], object], what: str) -> None:
        self.name, self.job, self.what = name, job, what
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, every: float) -> None:
        """Start the thread (no-op while it runs)."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(every):
                try:
                    self.job()
                except Exception:  # noqa: BLE001 - a store hiccup must not end the loop
                    logger.warning("%s failed; trying again in %.1f s", self.what, every, exc_info=True)

        self._thread = threading.Thread(target=loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for the run in progress."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None
