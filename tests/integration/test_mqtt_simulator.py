"""The simulator through a real Mosquitto: every message arrives and decodes as labelled."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest
from shapely.geometry import LineString, Point

from geo.model import Device, Patroller
from ingest import topics
from ingest.adapters import alarm_v1, location
from ingest.broker import MosquittoBroker
from ingest.client import Message, MqttWorker
from ingest.model import Alarm, DeadLetter, PatrollerPosition
from ingest.simulator import Simulator

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 21, 0, 0, tzinfo=UTC)

DEVICES = [
    Device(f"simtest-{uuid.uuid4().hex[:6]}", "fence", "fence", LineString([(113.84, 27.62), (113.86, 27.62)]),
           "430000001001001", zones=("Z1", "Z2")),
    Device(f"simtest-{uuid.uuid4().hex[:6]}", "thermal", "cam", Point(113.85, 27.63), "430000001001001"),
]
PATROLLERS = [Patroller(f"simtest-{uuid.uuid4().hex[:6]}", "Li", "138", ("430000001001001",), home=(113.85, 27.62))]


def test_simulator_publishes_n_messages_that_decode_as_labelled(mosquitto: MosquittoBroker) -> None:
    received: list[Message] = []
    done = threading.Event()
    n = 400

    def handler(batch: list[Message]) -> None:
        received.extend(batch)
        if len(received) >= n:
            done.set()

    filters = [topics.DEVICE_ALARMS, topics.PATROLLER_LOCATIONS]
    worker = MqttWorker(mosquitto.url, client_id=f"simtest-{uuid.uuid4().hex[:8]}", topics=filters, handler=handler,
                        persistent=False)
    worker.start()
    assert worker.wait_connected(20)
    sim = Simulator(DEVICES, PATROLLERS, mosquitto.url, rate=0, seed=11, clock=lambda: NOW)
    try:
        assert sim.run(count=n) == n
        assert done.wait(30)
    finally:
        worker.stop()
    ours = {d.id for d in DEVICES} | {p.id for p in PATROLLERS}
    mine = [m for m in received if (r := topics.parse(m.topic)) and (r.subject_id in ours or "sim-unknown" in m.topic)]
    expected = list(itertools.islice(sim.messages(), n))
    assert [(m.topic, m.payload) for m in mine] == [(e.topic, e.payload) for e in expected]  # all, in order
    kinds = Counter()
    for m in mine:
        route = topics.parse(m.topic)
        assert route is not None
        decode = alarm_v1.decode if route.kind == "alarm" else location.decode
        result = decode(route.subject_id, m.payload, m.received_at, topic=m.topic)
        kinds[type(result).__name__] += 1
        assert m.received_at.tzinfo is UTC
    assert kinds[PatrollerPosition.__name__] > 0 and kinds[Alarm.__name__] > 0
    assert kinds[DeadLetter.__name__] < n * 0.06


def test_simulator_runs_in_the_background_until_stopped(mosquitto: MosquittoBroker) -> None:
    sim = Simulator(DEVICES, PATROLLERS, mosquitto.url, rate=200, seed=3)
    sim.start()
    deadline = time.monotonic() + 20
    while sim.published < 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    sim.stop()
    stopped_at = sim.published
    assert stopped_at >= 50
    time.sleep(0.2)
    assert sim.published == stopped_at
