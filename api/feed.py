"""The live stream's feed from the broker: every service event of every gridwatch process.

An alarm is handled by whichever ingest worker the broker's shared subscription hands it to (design
§9), and that worker publishes the incident's events on MQTT. A `serve` process's map walls must see
them all, not just the ones it handled itself, so the process subscribes to the service's event
topics and offers what it hears to its EventHub. While the feed runs, the runtime offers nothing
locally (its own events come back through the broker like everyone else's: each arrives once).

The topics are ones only the service user may publish (ingest.acl.SERVICE_WRITE): with the broker's ACL
in force (`gridwatch devices export-acl`), a device cannot put an event on a wall; a broker without it
(the demo's embedded one) trusts every client. When the feed (re)connects, every open stream is told
(`event: lagged`) so that its page reloads what it may have missed. Delivery between processes is at
least once (an outbox sweep may send a notification again): the pages key what they show by id.
"""

from __future__ import annotations

import logging
import ssl
import threading
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from ingest.url import parse_broker_url

logger = logging.getLogger(__name__)

STREAM_TOPICS = (
    "gridwatch/grids/+/incidents",  # incident events of a grid (created, actions, lights, reminders)
    "gridwatch/grids/+/patrollers",  # patrollers entering / leaving a grid
    "gridwatch/grids/+/devices",  # device state changes (online / offline), by the device's grid
    "gridwatch/centers/+/+/incidents",  # escalation and supervision of a command center
)
"""What the live stream carries; the service user alone may publish these (ingest.acl.SERVICE_WRITE)."""


class EventFeed:
    """A paho client (clean session, QoS 1) that hands every message of STREAM_TOPICS to `sink` (the
    runtime's EventHub.publish) and calls `on_gap` after a reconnection (EventHub.gap)."""

    def __init__(self, url: str, sink: Callable[[str, bytes], object], on_gap: Callable[[str], int], *,
                 client_id: str, protocol: str = "5", tls_context: ssl.SSLContext | None = None) -> None:
        self.address = parse_broker_url(url)
        self._sink, self._on_gap = sink, on_gap
        # one per process: several API processes (or restarts) must not take over each other's connection
        self.client_id = f"{client_id}-events-{uuid.uuid4().hex[:8]}"
        self.received = 0
        self.connects = 0
        self.refused = False  # the broker refused every topic (the service user's ACL): the feed hears nothing
        self._stopping = False
        self._subscribed = threading.Event()
        self._v5 = protocol == "5"
        kwargs: dict[str, Any] = {"protocol": mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311}
        if not self._v5:
            kwargs["clean_session"] = True
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, **kwargs)
        if self.address.username is not None:
            client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            client.tls_set_context(tls_context or ssl.create_default_context())
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client

    def start(self, timeout: float = 10.0) -> bool:
        """Connect in the background (paho retries until the broker answers); True once subscribed within
        `timeout` (the feed keeps trying either way)."""
        self._client.connect_async(self.address.host, self.address.port, keepalive=30)
        self._client.loop_start()
        ok = self._subscribed.wait(timeout)
        if not ok:
            logger.warning("live stream feed: not subscribed to %s yet; retrying in the background", self.address.redacted)
        return ok

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: bytes) -> bool:
        """Publish a live event on this connection (QoS 1, never blocks; paho queues it while reconnecting):
        a process without an ingest worker (`serve --no-ingest`) still tells every wall. False if paho
        refused it."""
        info = self._client.publish(topic, payload, qos=1)
        return info.rc == mqtt.MQTT_ERR_SUCCESS or info.rc == mqtt.MQTT_ERR_NO_CONN

    @property
    def is_subscribed(self) -> bool:
        """True while connected and subscribed."""
        return self._subscribed.is_set()

    # paho callbacks (network thread: never raise)
    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any) -> None:
        if reason.is_failure:
            logger.error("live stream feed: broker %s refused %s: %s", self.address.redacted, self.client_id, reason)
            return
        self.connects += 1
        client.subscribe([(t, 1) for t in STREAM_TOPICS])
        # events published while we were not subscribed (a reconnection, or a slow first connection while
        # pages were already open) are gone: the pages reload theirs
        told = self._on_gap("the server's event feed (re)connected")
        if told:
            logger.info("live stream feed: connected to %s; %d stream(s) told to reload", self.address.redacted, told)

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, _mid: int, reasons: list[ReasonCode], _props: Any) -> None:
        refused = [(t, str(r)) for t, r in zip(STREAM_TOPICS, reasons, strict=False) if r.is_failure]
        if refused:
            logger.error("live stream feed: broker %s refused %s (the service user's ACL must allow reading them)",
                         self.address.redacted, refused)
        self.refused = len(refused) == len(STREAM_TOPICS)
        self._subscribed.set()

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any) -> None:
        self._subscribed.clear()
        if not self._stopping:
            logger.warning("live stream feed: lost %s (%s); reconnecting", self.address.redacted, reason)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.received += 1
        try:
            self._sink(msg.topic, bytes(msg.payload))
        except Exception:  # a malformed event must not stop the feed
            logger.warning("live stream feed: could not offer a message of %r", msg.topic, exc_info=True)
