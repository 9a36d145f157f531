"""docker/ stays correct without Docker: the compose file's shape, and the Mosquitto config + ACL run for real."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml

pytestmark = pytest.mark.integration
DOCKER = Path(__file__).resolve().parents[2] / "docker"


def test_compose_has_the_production_shape() -> None:
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"db", "mqtt", "api", "ingest-1", "ingest-2"} <= set(services)
    assert "timescaledb" in services["db"]["image"]
    for name in ("api", "ingest-1", "ingest-2"):
        env = services[name]["environment"]
        assert env["GRIDWATCH_DATABASE_URL"].startswith("postgresql://")
        assert env["GRIDWATCH_MQTT_SHARED_GROUP"] == "ingest"
        assert services[name]["depends_on"]["db"]["condition"] == "service_healthy"
    ids = {services[n]["environment"]["GRIDWATCH_MQTT_CLIENT_ID"] for n in ("api", "ingest-1", "ingest-2")}
    assert len(ids) == 3, "each worker needs its own persistent session"
    assert services["ingest-1"]["command"] == ["ingest"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def secured_broker(tmp_path: Path):
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto not installed")
    port = _free_port()
    conf = (DOCKER / "mosquitto" / "mosquitto.conf").read_text()
    conf = conf.replace("listener 1883", f"listener {port} 127.0.0.1").replace("/mosquitto/config/", f"{tmp_path}/").replace(
        "/mosquitto/data/", f"{tmp_path}/data/"
    )
    (tmp_path / "data").mkdir()
    (tmp_path / "mosquitto.conf").write_text(conf + f"\nuser {getpass.getuser()}\n")
    # the files `gridwatch devices export-acl` writes, for a registry of two fences
    from shapely.geometry import Point

    from geo.model import Device
    from ingest.acl import device_password, write_broker_files

    fences = [Device(f"fence-00{i}", "fence", f"fence {i}", Point(113.85, 27.62), "A") for i in (1, 2)]
    write_broker_files(tmp_path / "generated", fences, secret="test-secret", service_password="pw2")
    PASSWORDS["fence-001"] = device_password("test-secret", "fence-001")
    proc = subprocess.Popen(["mosquitto", "-c", str(tmp_path / "mosquitto.conf")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "mosquitto exited"
        time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


PASSWORDS: dict[str, str] = {}


def _client(port: int, user: str | None, password: str | None) -> tuple[mqtt.Client, list]:
    result: list = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    if user:
        c.username_pw_set(user, password)
    c.on_connect = lambda _c, _u, _f, rc, _p: result.append(rc)
    c.connect("127.0.0.1", port)
    c.loop_start()
    deadline = time.monotonic() + 10
    while not result and time.monotonic() < deadline:
        time.sleep(0.02)
    return c, result


def test_anonymous_clients_are_refused(secured_broker: int) -> None:
    c, result = _client(secured_broker, None, None)
    c.loop_stop()
    assert result and result[0].is_failure


def test_a_device_may_publish_only_under_its_own_topic(secured_broker: int) -> None:
    got: list[str] = []
    subscribed = threading.Event()
    sub, rc = _client(secured_broker, "gridwatch", "pw2")
    assert rc and not rc[0].is_failure
    sub.on_message = lambda _c, _u, m: got.append(m.topic)
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.subscribe("gridwatch/devices/+/alarm", qos=1)
    assert subscribed.wait(10)
    dev, rc = _client(secured_broker, "fence-001", PASSWORDS["fence-001"])
    assert rc and not rc[0].is_failure
    dev.publish("gridwatch/devices/fence-002/alarm", b"{}", qos=1).wait_for_publish(10)  # someone else's topic
    dev.publish("gridwatch/devices/fence-001/alarm", b"{}", qos=1).wait_for_publish(10)
    deadline = time.monotonic() + 10
    while "gridwatch/devices/fence-001/alarm" not in got and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    for c in (sub, dev):
        c.loop_stop()
        c.disconnect()
    assert got == ["gridwatch/devices/fence-001/alarm"]
