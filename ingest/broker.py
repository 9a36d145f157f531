"""Brokers gridwatch can start itself: amqtt in a thread (`make demo`), or a `mosquitto` child process.

`EmbeddedBroker` (amqtt 0.12.1, MQTT 3.1.1 only) is enough for a demo, with known gaps measured
against our reliability contract (design §7); use Mosquitto (or EMQX…) in production:

- a QoS 1 message that was delivered but not yet PUBACKed when the subscriber disconnects is
  dropped, not redelivered on reconnect; the same happens if the PUBACK takes more than 5 s
  (amqtt's fixed timeout). So "ack after commit" protects nothing across a worker crash or a slow
  commit: at-most-once for in-flight messages. Messages published while the worker is away are
  queued for its session and delivered on reconnect.
- amqtt's stock AnonymousAuthPlugin marks every session anonymous, and amqtt discards anonymous
  sessions on disconnect (no queued messages, no subscriptions). `OpenAuthPlugin` below accepts
  every client without marking it anonymous, so persistent sessions work.
- no shared subscriptions (`$share/...` filters never match), no MQTT 5.
- malformed input (garbage bytes, HTTP, truncated packets) is logged and the connection closed;
  the broker keeps running.

`MosquittoBroker` runs the real thing when a `mosquitto` binary is installed: it is the fallback
for demos that need the full contract, and what the integration tests use.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

from ingest.errors import EmbeddedBrokerError

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1883
SESSION_EXPIRY_S = 7 * 24 * 3600


class OpenAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """amqtt auth plugin: accept every client and keep its session (not marked anonymous)."""

    async def authenticate(self, *, session: Session) -> bool:  # noqa: ARG002
        """Accept the client."""
        return True


def free_port(host: str = DEFAULT_HOST) -> int:
    """Return a TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """Tell whether a listener could bind `host:port` now (with SO_REUSEADDR, as brokers do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_accepting(host: str, port: int, timeout: float, alive: Any = None) -> bool:
    """Poll until a TCP connect to host:port succeeds; False on timeout or when `alive()` turns False."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            return False
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


class EmbeddedBroker:
    """amqtt's Broker on its own asyncio loop in a background thread; anonymous clients allowed."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                 session_expiry_s: int | None = SESSION_EXPIRY_S) -> None:
        """Prefer `port`; `start()` falls back to a free port when it is taken."""
        self.host = host
        self.port = port
        self._session_expiry_s = session_expiry_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Broker | None = None

    @property
    def url(self) -> str:
        """`mqtt://host:port` of the listener."""
        return f"mqtt://{self.host}:{self.port}"

    def _config(self, port: int) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{port}"}},
            "session_expiry_interval": self._session_expiry_s,
            "plugins": {f"{__name__}.OpenAuthPlugin": {}},
        }

    def start(self, timeout: float = 10.0) -> str:
        """Start listening (on `port` if free, else a free port) and return the broker URL."""
        if self._thread is not None:
            raise EmbeddedBrokerError("embedded broker already started")
        if not port_is_free(self.host, self.port):
            taken, self.port = self.port, free_port(self.host)
            logger.info("port %d is taken; embedded broker uses %d", taken, self.port)
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="amqtt-broker", daemon=True)
        self._thread.start()

        async def _start() -> Broker:
            broker = Broker(self._config(self.port))
            await broker.start()
            return broker

        try:
            self._broker = asyncio.run_coroutine_threadsafe(_start(), loop).result(timeout)
        except Exception as exc:
            self._close_loop(timeout)
            where = f"{self.host}:{self.port}"
            raise EmbeddedBrokerError(f"embedded MQTT broker could not listen on {where}: {exc}") from exc
        logger.info("embedded MQTT broker (amqtt) listening on %s", self.url)
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the broker down, cancel its leftover tasks and stop the loop thread."""
        if self._loop is None:
            return
        broker, self._broker = self._broker, None

        async def _shutdown() -> None:
            if broker is not None:
                await broker.shutdown()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(_shutdown(), self._loop).result(timeout)
        except Exception:
            logger.exception("embedded MQTT broker did not shut down cleanly")
        finally:
            self._close_loop(timeout)
        logger.info("embedded MQTT broker on %s stopped", self.url)

    def _close_loop(self, timeout: float) -> None:
        loop, thread = self._loop, self._thread
        self._loop, self._thread = None, None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def mosquitto_binary() -> str | None:
    """Path of an installed `mosquitto` broker binary, or None."""
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


class MosquittoBroker:
    """A `mosquitto` child process with a generated config: anonymous, persistent, generous queues."""

    def __init__(self, host: str = DEFAULT_HOST, port: int | None = None, *, data_dir: Path | None = None,
                 binary: str | None = None, extra_config: str = "") -> None:
        """`port=None` picks a free port; `data_dir` (default: a temp dir) holds config, log and persistence."""
        found = binary or mosquitto_binary()
        if found is None:
            raise EmbeddedBrokerError("no mosquitto binary found (install the mosquitto package)")
        self.binary = found
        self.host = host
        self.port = port if port is not None else free_port(host)
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="gridwatch-mosquitto-"))
        self._extra_config = extra_config
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """`mqtt://host:port` of the listener."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        """The broker's log file."""
        return self.data_dir / "mosquitto.log"

    def _write_config(self) -> Path:
        conf = self.data_dir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            f"user {getpass.getuser()}\n"  # as root, do not drop to the `mosquitto` user (it cannot write data_dir)
            "persistence true\n"
            f"persistence_location {self.data_dir}/\n"
            "autosave_interval 1\n"
            "max_inflight_messages 0\n"
            "max_queued_messages 1000000\n"
            "max_queued_bytes 0\n"
            f"log_dest file {self.log_path}\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            "connection_messages true\n"
            f"{self._extra_config}\n"
        )
        return conf

    def start(self, timeout: float = 10.0) -> str:
        """Start mosquitto, wait until it accepts connections and return its URL."""
        if self._proc is not None and self._proc.poll() is None:
            raise EmbeddedBrokerError(f"mosquitto already running on {self.host}:{self.port}")
        conf = self._write_config()
        with open(self.data_dir / "stderr.log", "ab") as stderr:  # the child keeps its own copy of the fd
            self._proc = subprocess.Popen(
                [self.binary, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
            )
        proc = self._proc
        if not wait_accepting(self.host, self.port, timeout, alive=lambda: proc.poll() is None):
            tail = self._log_tail()
            self.stop()
            raise EmbeddedBrokerError(f"mosquitto did not start listening on {self.host}:{self.port}: {tail}")
        logger.info("mosquitto (pid %d) listening on %s", proc.pid, self.url)
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (mosquitto saves its persistence file), then SIGKILL after `timeout`."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("mosquitto pid %d ignored SIGTERM; killing it", proc.pid)
            proc.kill()
            proc.wait(timeout)

    def restart(self, timeout: float = 10.0) -> str:
        """Stop and start again on the same port with the same persistence (a broker restart)."""
        self.stop(timeout)
        return self.start(timeout)

    def cleanup(self) -> None:
        """Stop, and remove the data dir if this object created it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _log_tail(self) -> str:
        texts = []
        for name in ("stderr.log", "mosquitto.log"):
            with contextlib.suppress(OSError):
                texts.append((self.data_dir / name).read_text(errors="replace")[-500:].strip())
        return " | ".join(t for t in texts if t) or "no log output"

    def __enter__(self) -> MosquittoBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
