"""The ingest worker's lean paho paths against a real Mosquitto: PUBLISH packets decoded without
paho's MQTTMessage/Properties, PUBACKs of a batch sent as one write, a buffered socket, and the
fallback to paho's own path for packets the lean path does not take (MQTT 5 properties)."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.broker import MosquittoBroker
from ingest.client import Message, MqttProtocol, MqttWorker, _BufferedSocket

pytestmark = pytest.mark.integration

TIMEOUT = 20.0


def wait_for(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_lean_path_delivers_and_acks(mosquitto: MosquittoBroker, unique_topic: str, protocol: MqttProtocol) -> None:
    client_id = f"lean-{uuid.uuid4().hex[:8]}"
    got: list[Message] = []
    lock = threading.Lock()

    def handler(messages: list[Message]) -> None:
        with lock:
            got.extend(messages)

    lean_calls = 0
    worker = MqttWorker(mosquitto.url, client_id=client_id, topics=[f"{unique_topic}/#"], handler=handler,
                        protocol=protocol, batch_size=50)
    sink = worker._client.lean_sink
    assert sink is not None, "the lean receive path is not installed"

    def counting_sink(*args: object) -> None:
        nonlocal lean_calls
        lean_calls += 1
        sink(*args)  # type: ignore[misc]

    worker._client.lean_sink = counting_sink
    pub = MqttWorker(mosquitto.url, client_id=f"pub-{uuid.uuid4().hex[:8]}", persistent=False, protocol=protocol)
    with worker, pub:
        assert worker.wait_connected(TIMEOUT)
        assert isinstance(worker._client._sock, _BufferedSocket)
        for i in range(300):
            pub.publish(f"{unique_topic}/d-{i % 3}/alarm", f"payload-{i}".encode(), qos=1)
        assert pub.wait_published(TIMEOUT)
        assert wait_for(lambda: len(got) >= 300)
    assert lean_calls == 300
    assert sorted(m.payload for m in got) == sorted(f"payload-{i}".encode() for i in range(300))
    assert all(m.qos == 1 and m.topic.startswith(unique_topic) and m.received_at.tzinfo for m in got)
    # every message was acked (one write per batch): the persistent session has nothing to redeliver
    again: list[Message] = []
    worker2 = MqttWorker(mosquitto.url, client_id=client_id, topics=[f"{unique_topic}/#"], handler=again.extend,
                         protocol=protocol)
    with worker2:
        assert worker2.wait_connected(TIMEOUT)
        time.sleep(1.0)
    assert again == []


def test_messages_with_mqtt5_properties_take_pahos_path(mosquitto: MosquittoBroker, unique_topic: str) -> None:
    got: list[Message] = []
    worker = MqttWorker(mosquitto.url, client_id=f"lean-{uuid.uuid4().hex[:8]}", topics=[f"{unique_topic}/#"],
                        handler=got.extend, protocol="5")
    sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"props-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    with worker:
        assert worker.wait_connected(TIMEOUT)
        sender.connect(mosquitto.host, mosquitto.port)
        sender.loop_start()
        try:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.UserProperty = ("source", "test")
            sender.publish(f"{unique_topic}/with-props", b"p", qos=1, properties=props).wait_for_publish(TIMEOUT)
            sender.publish(f"{unique_topic}/plain", b"q", qos=1).wait_for_publish(TIMEOUT)
            assert wait_for(lambda: len(got) == 2)
        finally:
            sender.disconnect()
            sender.loop_stop()
    assert sorted((m.topic.rsplit("/", 1)[1], m.payload) for m in got) == [("plain", b"q"), ("with-props", b"p")]


def test_buffered_socket_serves_partial_reads_and_reports_pending() -> None:
    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        sock = _BufferedSocket(a)
        with pytest.raises(BlockingIOError):
            sock.recv(1)
        b.sendall(b"\x30\x05hello\x40")
        assert sock.recv(1) == b"\x30"
        assert sock.pending() == 7
        assert sock.recv(1) == b"\x05"
        assert sock.recv(100) == b"hello\x40"  # never more than what is buffered
        assert sock.pending() == 0
        assert sock.fileno() == a.fileno()
        b.close()
        assert sock.recv(1) == b""  # EOF
    finally:
        a.close()
