"""The MQTT worker: the only module that imports paho.

Delivery contract (design §7): QoS 1 subscriptions on a persistent session (fixed client id;
MQTT 5 `clean_start=False` + SessionExpiryInterval, or 3.1.1 `clean_session=False`) and manual
acknowledgement. paho's network thread only converts each PUBLISH into our frozen `Message` and
queues it; one worker thread drains the queue in batches, calls the handler, and acks the batch
only after the handler returned (= after commit). So:

- a batch whose handler raised is not acked; it is retried with backoff (up to 30 s apart) until
  it succeeds. The handler must be idempotent (the store dedups on device id + message id) and
  must raise only for transient failures (database down): bad input has to become a dead letter,
  because a batch that always raises holds the pipeline (by design nothing is skipped or lost);
- messages that were queued or in a failed batch when the worker stops or the connection drops
  are not acked, and the broker redelivers them to the same client id (duplicates, never losses);
- one worker thread = the broker's per-topic order is kept.

Receiving at 10,000 messages/s in pure Python is most of the worker's CPU, so `_IngestClient` (a
paho Client) decodes plain QoS 1 PUBLISH and PUBACK packets itself instead of building paho's
message, reason-code and MQTT 5 property objects, reads the socket through a 64 KiB buffer, and
sends the PUBACKs of a batch as one write. Anything else takes paho's own path.

`publish()` is for outbound notifications; it blocks while `publish_window` messages are still
unacknowledged (paho tracks QoS>0 messages by a 16-bit message id: far more than 65,535 in flight
and it refuses or overwrites, so the window is both back-pressure and a guard).
"""

from __future__ import annotations

import logging
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest.errors import MqttConnectionError, MqttPublishError
from ingest.url import BrokerAddress, parse_broker_url

logger = logging.getLogger(__name__)

MqttProtocol = Literal["5", "3.1.1"]
RETRY_BACKOFF_S = (0.2, 30.0)
"""First and longest wait between retries of a failed batch (doubles each time)."""
SESSION_EXPIRY_S = 7 * 24 * 3600
"""How long the broker keeps our session (subscriptions + queued messages) while we are away."""
MAX_PUBLISH_WINDOW = 65000


class _PahoNoise(logging.Filter):
    """paho 2.2 logs ERROR "Client is not connected" from its loop right after every disconnect
    (wanted or not); `_on_disconnect` already reports those, so demote it to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).startswith("Client is not connected"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return _paho_logger.isEnabledFor(logging.DEBUG)
        return True


_paho_logger = logger.getChild("paho")
_paho_logger.addFilter(_PahoNoise())


_PUBACK = 0x40
_LEAN_PATH = paho.mqtt.__version__.startswith(("2.1.", "2.2."))
"""The lean receive path and batched acks below use paho internals, checked against 2.1 and 2.2; any other
version (including a future 2.3) takes paho's own path until tests/integration/test_mqtt_lean_path.py passes on it."""


class _BufferedSocket:
    """A plain TCP socket with a receive buffer, for paho.

    paho reads each packet with three or more recv() calls (type byte, length bytes, body), each a
    system call that also hands the GIL over; this serves them from one recv() of up to 64 KiB.
    `pending()` tells paho's loop that buffered bytes are waiting (as for a TLS socket), so it
    reads them without waiting in select().
    """

    __slots__ = ("_sock", "_buf", "_pos")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            buf = self._sock.recv(65536)  # BlockingIOError when nothing is there, b"" at EOF
            if not buf:
                return buf
            self._buf, pos = buf, 0
        end = min(pos + bufsize, len(buf))
        self._pos = end
        return buf[pos:end]

    def pending(self) -> int:
        return len(self._buf) - self._pos

    def send(self, data: bytes | bytearray | memoryview) -> int:
        return self._sock.send(data)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _IngestClient(mqtt.Client):
    """paho's Client with a lean path for the PUBLISH packets an ingest worker receives, and batched acks.

    For every PUBLISH, paho builds an MQTTMessage, for MQTT 5 also a Properties object (a dozen
    dicts per packet, even when the packet has no properties), and matches the topic against
    per-filter callbacks: about half of the worker's CPU at 10,000 messages/s. `_handle_publish`
    decodes the common packet itself (QoS 1 under manual ack, no MQTT 5 properties) and hands
    (topic, payload, mid, qos, retain, dup) straight to `lean_sink`; any other packet (QoS 0 or 2,
    properties such as a topic alias, a malformed one) goes through paho's own path and
    `on_message`, so nothing changes for it.

    `ack_many` queues the PUBACKs of a whole batch as one write (what `ack()` sends, one
    packet per message, concatenated) instead of one queued packet, one wake-up of the network
    thread and one send() per message.
    """

    lean_sink: Callable[[str, bytes, int, int, bool, bool], None] | None = None

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        if _LEAN_PATH and type(sock) is socket.socket:  # plain TCP (not TLS, not websockets)
            return _BufferedSocket(sock)
        return sock

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """paho's loop_read, repeated while whole packets wait in the receive buffer (up to 1,000)."""
        rc = super().loop_read(max_packets)
        for _ in range(1000):
            sock = self._sock
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or not isinstance(sock, _BufferedSocket) or not sock.pending():
                break
            rc = super().loop_read(max_packets)
        return rc

    def _handle_publish(self) -> MQTTErrorCode:
        sink = self.lean_sink
        header = self._in_packet["command"]
        if sink is None or (header & 0x06) != 0x02 or not self._manual_ack:
            return super()._handle_publish()
        data = self._in_packet["packet"]
        n = len(data)
        if n < 2:
            return super()._handle_publish()  # malformed: paho reports it
        end = 2 + ((data[0] << 8) | data[1])
        pos = end + 2
        if end == 2 or pos > n:
            return super()._handle_publish()  # empty topic (an MQTT 5 alias) or malformed
        if self._protocol == mqtt.MQTTv5:
            if pos >= n or data[pos] != 0:
                return super()._handle_publish()  # a property block: paho decodes it
            pos += 1
        raw_topic = bytes(data[2:end])
        try:
            topic = raw_topic.decode("utf-8")
        except UnicodeDecodeError:  # kept (and dead-lettered downstream) rather than dropped
            topic = raw_topic.decode("utf-8", "backslashreplace")
        mid = (data[end] << 8) | data[end + 1]
        sink(topic, bytes(data[pos:]), mid, 1, bool(header & 0x01), bool(header & 0x08))
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_pubackcomp(self, cmd: Literal["PUBACK", "PUBCOMP"]) -> MQTTErrorCode:
        # a plain PUBACK of one of our publishes (the message id, then for MQTT 5 an optional
        # success reason code 0 and an empty property block): no ReasonCode and Properties objects
        # decoded for it (paho builds both for every PUBACK)
        data = self._in_packet["packet"]
        if cmd != "PUBACK" or not _LEAN_PATH or not (len(data) == 2 or (len(data) <= 4 and not any(data[2:]))):
            return super()._handle_pubackcomp(cmd)
        mid = (data[0] << 8) | data[1]
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, _PUBACK_SUCCESS, _PUBACK_PROPERTIES)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack_many(self, mids: Sequence[int]) -> None:
        """PUBACK each QoS 1 message id (manual ack), all in one queued write."""
        if not mids:
            return
        if not _LEAN_PATH:
            for mid in mids:
                self.ack(mid, 1)
            return
        packet = b"".join(_PUBACK_HEAD[mid] for mid in mids)
        self._packet_queue(_PUBACK, packet, 0, 0)


_PUBACK_SUCCESS = ReasonCode(PacketTypes.PUBACK)  # shared: callbacks only read it
_PUBACK_PROPERTIES = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]
_PUBACK_HEAD = [bytes((_PUBACK, 2, mid >> 8, mid & 0xFF)) for mid in range(65536)]
"""The 4-byte PUBACK packet (no reason code: success) of every message id."""


@dataclass(frozen=True, slots=True)
class Message:
    """One received MQTT message, converted from paho's at the edge."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    received_at: datetime
    retain: bool = False
    dup: bool = False


BatchHandler = Callable[[list[Message]], None]


class MqttWorker:
    """A paho client that hands received messages to `handler` in batches and acks them after it returns."""

    def __init__(
        self,
        url: str,
        *,
        client_id: str,
        topics: Sequence[str] = (),
        handler: BatchHandler | None = None,
        protocol: MqttProtocol = "5",
        persistent: bool = True,
        session_expiry_s: int = SESSION_EXPIRY_S,
        receive_maximum: int = 10000,
        batch_size: int = 500,
        max_wait: float = 0.005,
        publish_window: int = 1000,
        max_inflight: int = 0,  # paho's in-flight cap; 0: none (the publish window bounds)
        keepalive: int = 30,
        reconnect_delay: tuple[int, int] = (1, 30),
        retry_backoff: tuple[float, float] = RETRY_BACKOFF_S,
        connect_timeout: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        """Configure the client; nothing connects before `start()`."""
        if topics and handler is None:
            raise ValueError("topics given without a handler: messages would never be acked")
        if persistent and not client_id:
            raise ValueError("a persistent session needs a fixed client_id")
        if protocol not in ("5", "3.1.1"):
            raise ValueError(f"protocol {protocol!r}: expected '5' or '3.1.1'")
        if batch_size < 1 or not 1 <= publish_window <= MAX_PUBLISH_WINDOW or not 1 <= receive_maximum <= 65535:
            raise ValueError("expected batch_size >= 1, publish_window in 1..65000, receive_maximum in 1..65535")
        self.address: BrokerAddress = parse_broker_url(url)
        self.client_id = client_id
        self._topics = tuple(topics)
        self._handler = handler
        self._v5 = protocol == "5"
        self._persistent = persistent
        self._session_expiry_s = session_expiry_s
        self._receive_maximum = receive_maximum
        self._batch_size = batch_size
        self._max_wait = max_wait
        self._publish_window = publish_window
        self._max_inflight = max_inflight
        self._keepalive = keepalive
        self._retry_backoff = retry_backoff
        self._connect_timeout = connect_timeout

        self._queue: queue.SimpleQueue[tuple[int, Message]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._published = threading.Condition(self._lock)
        self._window = threading.BoundedSemaphore(publish_window)
        self._pending: set[int] = set()  # QoS>0 publishes awaiting PUBACK/PUBCOMP
        self._qos0: set[int] = set()  # QoS 0 publishes not yet written
        self._early: set[int] = set()  # on_publish seen before publish() recorded the mid
        self._generation = 0  # connection counter: acks only go to the connection that delivered
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._first_connack = threading.Event()
        self._connect_error: str | None = None
        self._ever_connected = False
        self._stop = threading.Event()
        self._started = False
        self._stopped = False
        self._worker: threading.Thread | None = None
        self._client = self._build_client(reconnect_delay, tls_context)

    def _build_client(self, reconnect_delay: tuple[int, int], tls_context: ssl.SSLContext | None) -> mqtt.Client:
        kwargs: dict[str, Any] = {"protocol": mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311}
        if not self._v5:
            kwargs["clean_session"] = not self._persistent
        client = _IngestClient(CallbackAPIVersion.VERSION2, client_id=self.client_id, manual_ack=True, **kwargs)
        if _LEAN_PATH:
            client.lean_sink = self._on_lean_message
        if self.address.username is not None:
            client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            client.tls_set_context(tls_context or ssl.create_default_context())
        client.enable_logger(_paho_logger)
        client.connect_timeout = self._connect_timeout
        client.reconnect_delay_set(*reconnect_delay)
        client.max_inflight_messages_set(self._max_inflight)
        client.max_queued_messages_set(0)  # the publish window bounds the queue instead
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect, start paho's network thread and the worker thread; raise MqttConnectionError on failure."""
        if self._started:
            raise RuntimeError("MqttWorker.start() called twice")
        where = self.address.netloc
        try:
            if self._v5:
                props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                props.SessionExpiryInterval = self._session_expiry_s if self._persistent else 0
                props.ReceiveMaximum = self._receive_maximum
                self._client.connect(
                    self.address.host, self.address.port, self._keepalive,
                    clean_start=not self._persistent, properties=props,
                )
            else:
                self._client.connect(self.address.host, self.address.port, self._keepalive)
        except (OSError, ValueError) as exc:  # refused, unreachable, DNS, TLS handshake
            raise MqttConnectionError(f"cannot connect to MQTT broker at {where}: {exc}") from exc
        self._started = True
        self._client.loop_start()
        if not self._first_connack.wait(self._connect_timeout):
            self._abort()
            hint = " (an MQTT 3.1.1-only broker such as amqtt? use protocol='3.1.1')" if self._v5 else ""
            raise MqttConnectionError(
                f"MQTT broker at {where} did not answer CONNECT within {self._connect_timeout} s{hint}"
            )
        if self._connect_error is not None:
            self._abort()
            raise MqttConnectionError(f"MQTT broker at {where} refused the connection: {self._connect_error}")
        if self._handler is not None:
            self._worker = threading.Thread(target=self._run, name=f"mqtt-worker-{self.client_id}", daemon=True)
            self._worker.start()

    def _abort(self) -> None:
        self._stopped = True
        self._client.disconnect()
        self._client.loop_stop()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in progress, wait for unacknowledged publishes, then disconnect cleanly."""
        if not self._started or self._stopped or self._stop.is_set():
            return
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout)
            if self._worker.is_alive():
                logger.warning("worker %s: batch handler still running after %.0f s; disconnecting anyway",
                               self.client_id, timeout)
        if not self.wait_published(timeout):
            logger.warning("worker %s: %d published messages still unacknowledged at stop",
                           self.client_id, self.outstanding)
        left = self._queue.qsize()
        if left:
            logger.info("worker %s: %d received messages left unacked; the broker redelivers them",
                        self.client_id, left)
        self._stopped = True
        self._client.disconnect()
        self._client.loop_stop()
        logger.info("worker %s: disconnected from %s", self.client_id, self.address.redacted)

    def __enter__(self) -> MqttWorker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def connect_count(self) -> int:
        """How many times the client has connected (1 + reconnects)."""
        with self._lock:
            return self._generation

    @property
    def is_connected(self) -> bool:
        """True while connected and subscribed."""
        return self._connected.is_set() and self._subscribed.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until connected and every subscription is acknowledged; False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            connected = self._connected.wait(max(0.0, deadline - time.monotonic()))
            if connected and self._subscribed.wait(max(0.0, deadline - time.monotonic())) and self.is_connected:
                return True
            if time.monotonic() >= deadline:
                return False

    # -- paho callbacks (network thread: never block, never raise) -------------------------

    def _on_connect(self, client: mqtt.Client, _userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        if reason.is_failure:
            self._connect_error = str(reason)
            logger.error("MQTT broker %s refused client %s: %s", self.address.redacted, self.client_id, reason)
            self._first_connack.set()
            return
        with self._lock:
            self._generation += 1
        if self._ever_connected and self._persistent and not flags.session_present:
            logger.warning("broker %s had no session for %s: messages sent while we were away may be missing",
                           self.address.redacted, self.client_id)
        self._ever_connected = True
        logger.info("connected to %s as %s (session present: %s)", self.address.redacted, self.client_id,
                    flags.session_present)
        server_max = getattr(props, "ReceiveMaximum", None) if props is not None else None
        # paho's own in-flight cap rescans every unacknowledged message on each PUBACK (O(window) per ack,
        # a feedback loop under load): by default none, the publish window bounds what is in flight,
        # unless the broker accepts fewer (its MQTT 5 Receive Maximum)
        cap = self._max_inflight
        if server_max is not None and server_max < (cap or self._publish_window):
            logger.info("broker receive maximum %d: paho keeps at most that many publishes in flight", server_max)
            cap = server_max
        # paho refuses max_inflight_messages_set() once connected; on_connect runs before paho resends
        # or sends anything on this connection, so the cap applies to all of it
        client._max_inflight_messages = cap  # noqa: SLF001
        self._connect_error = None
        self._connected.set()
        if self._topics:
            subs: list[tuple[str, Any]] = [
                (t, SubscribeOptions(qos=1) if self._v5 else 1) for t in self._topics
            ]
            rc, _mid = client.subscribe(subs)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                logger.error("subscribe to %s failed: %s", list(self._topics), mqtt.error_string(rc))
        else:
            self._subscribed.set()
        self._first_connack.set()

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        logger.warning("cannot reach MQTT broker %s; paho retries", self.address.redacted)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode,
                       _props: Any) -> None:
        self._connected.clear()
        self._subscribed.clear()
        with self._lock:
            self._qos0.clear()  # paho drops unwritten QoS 0 packets on reconnect
        if self._stopped:
            logger.debug("disconnected from %s (%s)", self.address.redacted, reason)
        else:
            logger.warning("lost connection to %s (%s); reconnecting", self.address.redacted, reason)

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, _mid: int, reasons: list[ReasonCode],
                      _props: Any) -> None:
        refused = [(t, str(r)) for t, r in zip(self._topics, reasons, strict=False) if r.is_failure]
        if refused:
            logger.error("broker %s refused subscriptions: %s", self.address.redacted, refused)
        self._subscribed.set()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            try:
                topic = msg.topic
            except UnicodeDecodeError:  # kept (and dead-lettered downstream) rather than dropped
                topic = bytes(msg._topic).decode("utf-8", "backslashreplace")
            message = Message(
                topic=topic,
                payload=bytes(msg.payload),
                mid=msg.mid,
                qos=msg.qos,
                received_at=datetime.now(UTC),
                retain=bool(msg.retain),
                dup=bool(msg.dup),
            )
            self._queue.put((self._generation, message))
        except Exception:
            logger.exception("could not queue message mid=%s; it stays unacked", msg.mid)

    def _on_lean_message(self, topic: str, payload: bytes, mid: int, qos: int, retain: bool, dup: bool) -> None:
        try:
            message = Message(topic, payload, mid, qos, datetime.now(UTC), retain, dup)
            self._queue.put((self._generation, message))
        except Exception:
            logger.exception("could not queue message mid=%s; it stays unacked", mid)

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, mid: int, reason: ReasonCode, _props: Any) -> None:
        with self._lock:
            if mid in self._pending:
                self._pending.discard(mid)
                self._window.release()
                if not self._pending:
                    self._published.notify_all()
            elif mid in self._qos0:
                self._qos0.discard(mid)
            else:
                self._early.add(mid)
        if reason.is_failure:
            logger.warning("broker %s refused published message mid=%d: %s", self.address.redacted, mid, reason)

    # -- the worker thread -----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=0.05)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            batch = [first]
            # the batch waits at most max_wait after its first message *arrived*: a message that
            # already queued that long (behind the previous batch) goes with what is queued now
            deadline = min(time.time() + self._max_wait, first[1].received_at.timestamp() + self._max_wait)
            while len(batch) < self._batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    remaining = deadline - time.time()
                    if remaining <= 0:
                        break
                    try:
                        batch.append(self._queue.get(timeout=remaining))
                    except queue.Empty:
                        break
            self._process(batch)
            if self._stop.is_set():
                return  # the rest stays unacked: a persistent session gets it again

    def _process(self, batch: list[tuple[int, Message]]) -> None:
        assert self._handler is not None
        messages = [m for _, m in batch]
        delay, longest = self._retry_backoff
        attempt = 0
        while True:
            attempt += 1
            try:
                self._handler(messages)
                break
            except Exception:
                logger.exception("batch handler failed on %d messages (attempt %d); not acked, retrying in %.1f s",
                                 len(messages), attempt, delay)
            if self._stop.wait(delay):
                logger.warning("stopping with an uncommitted batch of %d messages: not acked, "
                               "the broker redelivers them", len(messages))
                return
            delay = min(delay * 2, longest)
        self._ack(batch)

    def _ack(self, batch: list[tuple[int, Message]]) -> None:
        with self._lock:
            generation = self._generation
        stale = 0
        qos1: list[int] = []
        for gen, m in batch:
            if m.qos == 0:
                continue
            if gen != generation:
                stale += 1  # an earlier connection delivered it; the broker resends it, we must not ack a reused mid
                continue
            if m.qos == 1:
                qos1.append(m.mid)
            else:
                self._client.ack(m.mid, m.qos)
        self._client.ack_many(qos1)
        if stale:
            logger.info("%d committed messages came on an earlier connection: not acked, the broker redelivers them",
                        stale)

    # -- publishing ------------------------------------------------------------------------

    @property
    def outstanding(self) -> int:
        """Published QoS>0 messages not yet acknowledged by the broker."""
        with self._lock:
            return len(self._pending)

    def publish(
        self, topic: str, payload: bytes | str, qos: int = 1, *, retain: bool = False, timeout: float = 30.0
    ) -> mqtt.MQTTMessageInfo:
        """Publish; block while `publish_window` messages are unacknowledged, MqttPublishError after `timeout`.

        While disconnected the message is queued and sent after reconnect (info.rc is then
        MQTT_ERR_NO_CONN: use `wait_published()`, not `info.wait_for_publish()`, to know it arrived).
        """
        if not self._started or self._stopped:
            raise RuntimeError("MqttWorker.publish() needs a started worker")
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        if qos == 0:
            info = self._client.publish(topic, data, 0, retain)
            with self._lock:
                if info.mid in self._early:
                    self._early.discard(info.mid)
                elif info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                    self._qos0.add(info.mid)
            return info
        if not self._window.acquire(timeout=timeout):
            raise MqttPublishError(
                f"publish to {topic}: {self._publish_window} messages still unacknowledged by "
                f"{self.address.netloc} after {timeout} s"
            )
        try:
            info = self._client.publish(topic, data, qos, retain)
        except BaseException:
            self._window.release()
            raise
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self._window.release()
            raise MqttPublishError(f"publish to {topic}: not queued by paho: {mqtt.error_string(info.rc)}")
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
                self._window.release()
            else:
                self._pending.add(info.mid)
        return info

    def wait_published(self, timeout: float) -> bool:
        """Wait until every QoS>0 message published so far is acknowledged; False on timeout."""
        with self._published:
            return self._published.wait_for(lambda: not self._pending, timeout)
