"""The simulator's message stream: deterministic, decodable, with the promised mix of traffic."""

from __future__ import annotations

import itertools
import json
import shlex
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest
from shapely.geometry import LineString, Point

from geo.model import Device, Patroller
from ingest import topics
from ingest.adapters import alarm_v1, location
from ingest.checks import check_alarm
from ingest.model import Alarm, DeadLetter, PatrollerPosition
from ingest.simulator import Simulator, raise_alarm_command

pytestmark = pytest.mark.unit

FENCE = Device("fence-1", "fence", "north fence", LineString([(113.84, 27.62), (113.86, 27.62)]), "430000001001001",
               zones=("Z1", "Z2", "Z3", "Z4"))
DEVICES = [
    FENCE,
    Device("cam-1", "thermal", "tower cam", Point(113.85, 27.63), "430000001001001"),
    Device("ids-1", "camera", "gate cam", Point(113.851, 27.631), "430000001001002"),
    Device("smk-1", "smoke", "block 3 smoke", Point(113.852, 27.629), "430000001001002"),
]
PATROLLERS = [Patroller("p1", "Li", "138", ("430000001001001",), home=(113.85, 27.62)),
              Patroller("p2", "Wang", "139", ("430000001001002",))]
NOW = datetime(2026, 11, 21, 8, 0, tzinfo=timezone(timedelta(hours=8)))


def sim(seed: int = 7) -> Simulator:
    return Simulator(DEVICES, PATROLLERS, "mqtt://localhost", seed=seed, clock=lambda: NOW)


def decode(topic: str, payload: bytes) -> Alarm | PatrollerPosition | DeadLetter | None:
    route = topics.parse(topic)
    assert route is not None, topic
    received = NOW.astimezone(UTC)
    if route.kind == "alarm":
        result = alarm_v1.decode(route.subject_id, payload, received, topic=topic)
        if isinstance(result, Alarm):
            return check_alarm(result, {d.id: d for d in DEVICES}, lambda _lon, lat: abs(lat) <= 90)
        return result
    return location.decode(route.subject_id, payload, received, topic=topic)


def test_stream_is_deterministic_for_a_seed() -> None:
    a = list(itertools.islice(sim(7).messages(), 300))
    b = list(itertools.islice(sim(7).messages(), 300))
    c = list(itertools.islice(sim(8).messages(), 300))
    assert a == b
    assert a != c


def test_mix_of_traffic_and_everything_decodes_as_labelled() -> None:
    msgs = list(itertools.islice(sim().messages(), 4000))
    kinds = Counter(m.kind.split(":")[0] for m in msgs)
    assert 0.3 < kinds["location"] / len(msgs) < 0.5
    assert 0.01 < kinds["malformed"] / len(msgs) < 0.04
    assert kinds["repeat"] > 0
    reasons = Counter()
    for m in msgs:
        result = decode(m.topic, m.payload)
        if m.kind.startswith("malformed:"):
            assert isinstance(result, DeadLetter), m
            reasons[result.reason] += 1
        elif m.kind == "location":
            assert isinstance(result, PatrollerPosition)
            assert abs(result.lon - 113.85) < 0.05 and abs(result.lat - 27.62) < 0.05
        else:
            assert isinstance(result, Alarm), (m, result)
            assert result.warnings == ()
    assert set(reasons) == {"invalid_json", "ts_without_zone", "unknown_device", "schema"}


def test_fence_alarms_lie_on_the_fence_with_the_matching_zone() -> None:
    alarms = [json.loads(m.payload) for m in itertools.islice(sim().messages(), 2000)
              if m.topic == topics.device_alarm("fence-1") and m.kind in ("alarm", "repeat")]
    assert alarms
    for body in alarms:
        assert FENCE.geometry.distance(Point(body["lon"], body["lat"])) < 1e-6
        frac = FENCE.geometry.project(Point(body["lon"], body["lat"]), normalized=True)
        assert body["zone"] == FENCE.zones[min(int(frac * 4), 3)]


def test_repeats_reuse_device_and_type_with_a_new_id() -> None:
    msgs = list(itertools.islice(sim().messages(), 2000))
    ids = [json.loads(m.payload)["id"] for m in msgs if m.kind in ("alarm", "repeat")]
    assert len(ids) == len(set(ids))
    for prev, cur in itertools.pairwise([m for m in msgs if m.kind in ("alarm", "repeat")]):
        if cur.kind == "repeat":
            assert cur.topic == prev.topic
            assert json.loads(cur.payload)["type"] == json.loads(prev.payload)["type"]


def test_raise_alarm_command_is_a_paste_ready_mosquitto_pub() -> None:
    cmd = raise_alarm_command("mqtt://ops:pw@broker.local:1884", FENCE, 113.855, 27.62, ts=NOW, msg_id="manual-1")
    argv = shlex.split(cmd)
    assert argv[:7] == ["mosquitto_pub", "-h", "broker.local", "-p", "1884", "-q", "1"]
    assert argv[argv.index("-t") + 1] == "gridwatch/devices/fence-1/alarm"
    assert argv[argv.index("-u") + 1] == "ops"
    assert "pw" not in argv and argv[argv.index("-P") + 1] == "$MQTT_PASSWORD"
    payload = argv[argv.index("-m") + 1].encode()
    result = alarm_v1.decode("fence-1", payload, NOW, topic=argv[argv.index("-t") + 1])
    assert isinstance(result, Alarm)
    assert (result.msg_id, result.type, result.zone, result.lon) == ("manual-1", "fence.intrusion", "Z4", 113.855)


def test_telemetry_share_adds_readings_and_heartbeats_that_decode() -> None:
    from datetime import UTC, datetime

    from geo.district import build_sample_district
    from ingest.decode import decode_messages
    from ingest.model import DeadLetter, DeviceStatus, Reading
    from ingest.simulator import Simulator

    district = build_sample_district(seed=7)
    sim = Simulator(district.devices, district.patrollers, "mqtt://127.0.0.1:1", seed=3, telemetry_share=0.5)
    msgs = list(itertools.islice(sim.messages(), 400))
    kinds = {m.kind for m in msgs}
    assert {"reading", "status", "alarm"} <= kinds
    now = datetime.now(UTC)
    for m in msgs:
        if m.kind in ("reading", "status"):
            out = decode_messages(m.topic, m.payload, now)
            assert not isinstance(out, DeadLetter), out
            assert all(isinstance(x, Reading | DeviceStatus) for x in out)
    plain = Simulator(district.devices, district.patrollers, "mqtt://127.0.0.1:1", seed=3)
    assert not {m.kind for m in itertools.islice(plain.messages(), 400)} & {"reading", "status"}  # off by default
