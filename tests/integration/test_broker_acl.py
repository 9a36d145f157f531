"""ingest.acl against a real Mosquitto: generated password + ACL files, MQTT 5 clients, refusals checked.

The broker runs from a config file written here (`allow_anonymous false`, the generated
`password_file` and `acl_file`) on a free port, as a child process of the test.
"""

from __future__ import annotations

import base64
import getpass
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from shapely.geometry import Point

from geo.model import Device
from ingest.acl import (
    BrokerFiles,
    check_mosquitto_hash,
    device_password,
    mosquitto_hash,
    write_broker_files,
)
from ingest.broker import free_port, mosquitto_binary, wait_accepting

pytestmark = pytest.mark.integration

SECRET = "test-broker-secret"
SERVICE_PASSWORD = "service-pw-123"
NOT_AUTHORIZED = 135
BAD_USER_OR_PASSWORD = 134
TIMEOUT = 10.0

DEVICES = [
    Device("dev-a", "smoke", "A", Point(113.85, 27.62), "430102001001001"),
    Device("dev-b", "smoke", "B", Point(113.86, 27.62), "430102001001002"),
]


@dataclass
class Broker:
    """A mosquitto child process on 127.0.0.1:port."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Path


def start_mosquitto(workdir: Path, files: BrokerFiles) -> Broker:
    """Start mosquitto with only the generated security files (and a log); wait until it listens."""
    binary = mosquitto_binary()
    assert binary is not None
    port = free_port()
    log = workdir / "mosquitto.log"
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        f"user {getpass.getuser()}\n"  # as root, keep the user that owns the 0600 files
        "persistence false\n"
        f"log_dest file {log}\n"
        "log_type all\n"
        + files.mosquitto_conf()
    )
    stderr = open(workdir / "stderr.log", "ab")  # noqa: SIM115 (the child keeps its copy)
    proc = subprocess.Popen([binary, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    stderr.close()
    if not wait_accepting("127.0.0.1", port, TIMEOUT, alive=lambda: proc.poll() is None):
        proc.kill()
        proc.wait()
        raise AssertionError(f"mosquitto did not start: {(workdir / 'stderr.log').read_text()} {log.read_text() if log.exists() else ''}")
    return Broker(port, proc, log)


@dataclass
class Client:
    """A paho MQTT 5 client that records CONNACK, PUBACK reason codes and messages."""

    port: int
    user: str | None
    password: str | None
    connack: ReasonCode | None = None
    connected: threading.Event = field(default_factory=threading.Event)
    acks: dict[int, ReasonCode] = field(default_factory=dict)
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    subscribed: threading.Event = field(default_factory=threading.Event)
    granted: list[ReasonCode] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.mqtt = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"acl-{uuid.uuid4().hex[:10]}",
                                protocol=mqtt.MQTTv5)
        if self.user is not None:
            self.mqtt.username_pw_set(self.user, self.password)
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_publish = self._on_publish
        self.mqtt.on_message = self._on_message
        self.mqtt.on_subscribe = self._on_subscribe

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: Properties | None) -> None:
        self.connack = rc
        self.connected.set()

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, rc: ReasonCode, _p: Properties | None) -> None:
        with self.lock:
            self.acks[mid] = rc

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload))

    def _on_subscribe(self, _c: mqtt.Client, _u: object, _mid: int, rcs: list[ReasonCode], _p: Properties | None) -> None:
        self.granted = list(rcs)
        self.subscribed.set()

    def connect(self) -> ReasonCode:
        """Connect (MQTT 5, clean start) and return the CONNACK reason code."""
        self.mqtt.connect("127.0.0.1", self.port, clean_start=True)
        self.mqtt.loop_start()
        assert self.connected.wait(TIMEOUT), f"no CONNACK for {self.user!r}"
        assert self.connack is not None
        return self.connack

    def subscribe(self, *filters: str) -> list[ReasonCode]:
        self.subscribed.clear()
        self.mqtt.subscribe([(f, 1) for f in filters])
        assert self.subscribed.wait(TIMEOUT), "no SUBACK"
        return self.granted

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        """Publish QoS 1 and return the PUBACK reason code."""
        info = self.mqtt.publish(topic, payload, qos=1)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            with self.lock:
                if info.mid in self.acks:
                    return self.acks[info.mid]
            time.sleep(0.01)
        raise AssertionError(f"no PUBACK for {topic}")

    def wait_message(self, payload: bytes) -> list[tuple[str, bytes]]:
        """Wait until `payload` arrived; return everything received so far."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            with self.lock:
                if any(p == payload for _, p in self.messages):
                    return list(self.messages)
            time.sleep(0.01)
        raise AssertionError(f"{payload!r} did not arrive; got {self.messages}")

    def close(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[Broker, BrokerFiles]]:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (scripts/test-deps.sh installs it)")
    devices = [
        *DEVICES,
        Device("cam-1", "camera", "gate", Point(113.85, 27.62), "430102001001001", format="frigate", identity="frigate:gate"),
        Device("fz-3", "fence", "zone 3", Point(113.85, 27.62), "430102001001001", format="fence", identity="fence:host-07/3"),
    ]
    files = write_broker_files(tmp_path / "broker", devices, secret=SECRET, service_password=SERVICE_PASSWORD,
                               patrollers=["p-7"])
    b = start_mosquitto(tmp_path, files)
    try:
        yield b, files
    finally:
        b.proc.terminate()
        try:
            b.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            b.proc.kill()
            b.proc.wait()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        c.close()


def client(made: list[Client], port: int, user: str | None, password: str | None) -> Client:
    c = Client(port, user, password)
    made.append(c)
    return c


def test_files_are_private(broker: tuple[Broker, BrokerFiles]) -> None:
    _, files = broker
    for path in (files.password_file, files.acl_file, files.credentials_csv):
        assert path.stat().st_mode & 0o777 == 0o600, path
    creds = dict(line.split(",") for line in files.credentials_csv.read_text().splitlines()[1:])
    assert creds == {u: device_password(SECRET, u) for u in ("frigate", "dev-a", "dev-b", "host-07", "p-7")}


def test_device_writes_only_its_own_topics(broker: tuple[Broker, BrokerFiles], clients: list[Client]) -> None:
    b, _ = broker
    service = client(clients, b.port, "gridwatch", SERVICE_PASSWORD)
    assert not service.connect().is_failure
    assert all(not rc.is_failure for rc in service.subscribe("gridwatch/#"))

    dev_a = client(clients, b.port, "dev-a", device_password(SECRET, "dev-a"))
    assert not dev_a.connect().is_failure

    # into B's topic: refused with PUBACK "Not authorized", and never delivered
    refused = dev_a.publish("gridwatch/devices/dev-b/alarm", b"forged")
    assert refused.value == NOT_AUTHORIZED, refused
    # into its own topic: accepted and delivered (after the refused one, so that one is not in flight)
    accepted = dev_a.publish("gridwatch/devices/dev-a/alarm", b"mine")
    assert accepted.value == 0, accepted
    got = service.wait_message(b"mine")
    assert ("gridwatch/devices/dev-a/alarm", b"mine") in got
    assert all(p != b"forged" for _, p in got)

    # nor may a device write the service's outbound topics, or read anything: mosquitto 2.0 grants
    # the SUBSCRIBE but checks `read` on delivery, so nothing reaches it
    assert dev_a.publish("gridwatch/grids/430102001001001/incidents", b"x").value == NOT_AUTHORIZED
    dev_a.subscribe("gridwatch/#")
    assert service.publish("gridwatch/grids/430102001001001/incidents", b"for-service").value == 0
    service.wait_message(b"for-service")
    assert dev_a.publish("gridwatch/devices/dev-a/status", b"own-status").value == 0
    service.wait_message(b"own-status")
    time.sleep(0.2)
    assert dev_a.messages == []


def test_wrong_password_and_anonymous_are_refused(broker: tuple[Broker, BrokerFiles], clients: list[Client]) -> None:
    b, _ = broker
    wrong = client(clients, b.port, "dev-a", device_password(SECRET, "dev-b"))
    rc = wrong.connect()
    assert rc.is_failure and rc.value in (BAD_USER_OR_PASSWORD, NOT_AUTHORIZED), rc
    unknown = client(clients, b.port, "nobody", "whatever")
    assert unknown.connect().is_failure
    anonymous = client(clients, b.port, None, None)
    rc = anonymous.connect()
    assert rc.is_failure and rc.value in (BAD_USER_OR_PASSWORD, NOT_AUTHORIZED), rc
    # another deployment's secret gives other passwords
    other = client(clients, b.port, "dev-b", device_password("another-secret", "dev-b"))
    assert other.connect().is_failure


def test_bridge_patroller_and_shared_subscription(broker: tuple[Broker, BrokerFiles], clients: list[Client]) -> None:
    b, _ = broker
    service = client(clients, b.port, "gridwatch", SERVICE_PASSWORD)
    assert not service.connect().is_failure
    assert all(not rc.is_failure for rc in service.subscribe("frigate/#", "owntracks/#"))
    worker = client(clients, b.port, "gridwatch", SERVICE_PASSWORD)
    assert not worker.connect().is_failure
    assert all(not rc.is_failure for rc in worker.subscribe("$share/gridwatch/gridwatch/patrollers/+/location"))

    frigate = client(clients, b.port, "frigate", device_password(SECRET, "frigate"))
    assert not frigate.connect().is_failure
    assert frigate.publish("gridwatch/devices/dev-a/alarm", b"bridge-forged").value == NOT_AUTHORIZED
    assert frigate.publish("zigbee2mqtt/kitchen", b"wrong-prefix").value == NOT_AUTHORIZED
    assert frigate.publish("frigate/events", b"event").value == 0
    service.wait_message(b"event")

    # a fence alarm host publishes on gridwatch/devices/<host>/fence, and only there
    host = client(clients, b.port, "host-07", device_password(SECRET, "host-07"))
    assert not host.connect().is_failure
    assert host.publish("gridwatch/devices/dev-a/fence", b"host-forged").value == NOT_AUTHORIZED
    assert not host.publish("gridwatch/devices/host-07/fence", b"zone-3-intrusion").is_failure  # 16: no subscribers yet

    phone = client(clients, b.port, "p-7", device_password(SECRET, "p-7"))
    assert not phone.connect().is_failure
    assert all(not rc.is_failure for rc in phone.subscribe("gridwatch/patrollers/p-7/alerts"))
    phone.subscribe("gridwatch/patrollers/p-8/alerts")  # granted by mosquitto 2.0, filtered on delivery
    assert phone.publish("gridwatch/patrollers/p-8/location", b"other").value == NOT_AUTHORIZED
    assert phone.publish("gridwatch/patrollers/p-7/location", b"here").value == 0
    assert ("gridwatch/patrollers/p-7/location", b"here") in worker.wait_message(b"here")
    service.subscribe("gridwatch/devices/+/fence")
    assert host.publish("gridwatch/devices/host-07/fence", b"zone-3-again").value == 0
    assert all(p != b"host-forged" for _, p in service.wait_message(b"zone-3-again"))
    assert phone.publish("owntracks/p-7/phone", b"ot").value == 0
    service.wait_message(b"ot")
    # the service's dispatch reaches the phone; another patroller's alerts do not (published first,
    # so it would have arrived before the phone's own)
    assert service.publish("gridwatch/patrollers/p-8/alerts", b"not-yours").value == 0
    assert service.publish("gridwatch/patrollers/p-7/alerts", b"incident").value == 0
    assert phone.wait_message(b"incident") == [("gridwatch/patrollers/p-7/alerts", b"incident")]
    # the pattern-free ACL: the patroller cannot pose as a device named like itself
    assert phone.publish("gridwatch/devices/p-7/alarm", b"posing").value == NOT_AUTHORIZED


def test_hash_matches_mosquitto_passwd(tmp_path: Path) -> None:
    """Our $7$ hash equals mosquitto_passwd's for the same salt, and ours verifies its line."""
    tool = Path(mosquitto_binary() or "").parent.parent / "bin" / "mosquitto_passwd"
    found = next((p for p in (tool, Path("/usr/bin/mosquitto_passwd")) if p.exists()), None)
    if found is None:
        pytest.skip("mosquitto_passwd is not installed")
    pwfile = tmp_path / "pw"
    subprocess.run([str(found), "-c", "-b", str(pwfile), "alice", "s3cr3t-ü"], check=True, capture_output=True)
    user, encoded = pwfile.read_text().strip().split(":", 1)
    _, _, iterations, salt, _ = encoded.split("$")
    assert user == "alice"
    assert mosquitto_hash("s3cr3t-ü", salt=base64.b64decode(salt), iterations=int(iterations)) == encoded
    assert check_mosquitto_hash("s3cr3t-ü", encoded) and not check_mosquitto_hash("s3cr3t-u", encoded)


def test_the_service_may_publish_every_outbound_topic(broker: tuple[Broker, BrokerFiles], clients: list[Client]) -> None:
    b, _ = broker
    service = client(clients, b.port, "gridwatch", SERVICE_PASSWORD)
    assert not service.connect().is_failure
    for topic in ("gridwatch/patrollers/p-7/alerts", "gridwatch/grids/430102001001001/incidents",
                  "gridwatch/grids/430102001001001/patrollers", "gridwatch/centers/2/430102001/incidents"):
        assert service.publish(topic, b"{}").value in (0, 16), topic  # success / success, nobody subscribed (not 135)
