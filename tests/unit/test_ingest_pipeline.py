"""Registry resolution, the level filter, threshold rules and batch assembly (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from shapely.geometry import LineString, Point

from alerts.thresholds import (
    ThresholdConfigError,
    ThresholdRule,
    ThresholdWatch,
    load_rules,
    parse_rules,
)
from geo.model import Device
from ingest.model import (
    Alarm,
    AlarmEnd,
    DeadLetter,
    DeviceStatus,
    PatrollerPosition,
    Reading,
)
from ingest.pipeline import Inbound, LevelFilter, assemble
from ingest.registry import Registry

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 21, 0, 0, tzinfo=UTC)
DEVICES = [
    Device("cam-1", "camera", "gate camera", Point(113.85, 27.62), "A", identity="hikvision:44:19:b6:6d:24:85/1"),
    Device("nvr-2", "camera", "nvr", Point(113.86, 27.62), "A", identity="hikvision:44:19:b6:00:00:01"),
    Device("host-7", "fence", "fence host", LineString([(113.85, 27.62), (113.86, 27.62)]), "A", zones=("1", "2")),
    Device("th-1", "thermal", "thermal", Point(113.85, 27.63), "B", identity="frigate:roof"),
    Device("smk-1", "smoke", "smoke", Point(113.85, 27.63), "B", identity="zigbee2mqtt:hall/smoke"),
]
REG = Registry(DEVICES)


def alarm(device: str, msg: str, type_: str = "camera.motion", *, level: bool = False, ts: datetime = T0, zone: str | None = None) -> Alarm:
    return Alarm(device, msg, ts, type_, 3, ts, b"{}", zone=zone, level=level)


def test_registry_resolves_ids_identities_parents_and_hosts() -> None:
    assert REG.resolve("cam-1").device.id == "cam-1"  # type: ignore[union-attr]
    hit = REG.resolve("hikvision:44:19:b6:6d:24:85/1")
    assert hit is not None and (hit.device.id, hit.part) == ("cam-1", None)
    hit = REG.resolve("hikvision:44:19:b6:00:00:01/4")  # one registration for every NVR channel
    assert hit is not None and (hit.device.id, hit.part) == ("nvr-2", "4")
    hit = REG.resolve("fence:host-7/2")  # a fence host on its own gridwatch topic, zone 2
    assert hit is not None and (hit.device.id, hit.part) == ("host-7", "2")
    hit = REG.resolve("zigbee2mqtt:hall/smoke")  # a friendly name with a slash, registered whole
    assert hit is not None and (hit.device.id, hit.part) == ("smk-1", None)
    assert REG.resolve("frigate:garage") is None
    assert REG.resolve("hikvision:ff:ff:ff:ff:ff:ff/1") is None
    assert REG.resolve("") is None and REG.resolve("/") is None


def test_level_filter_passes_rising_edges_only_and_commits_late() -> None:
    f = LevelFilter()
    outs = [alarm("smk-1", "a", "smoke.alarm", level=True), alarm("smk-1", "b", "smoke.alarm", level=True)]
    kept, suppressed, commit = f.plan(outs)
    assert [a.msg_id for a in kept] == ["a"] and suppressed == 1  # type: ignore[union-attr]
    assert f.active == {}  # not committed: a retried batch sees the old state
    kept, _, commit = f.plan(outs)
    commit()
    kept, suppressed, commit = f.plan([alarm("smk-1", "c", "smoke.alarm", level=True)])
    assert kept == [] and suppressed == 1
    end = AlarmEnd("smk-1", T0, T0, b"", type="smoke.alarm")
    kept, _, commit = f.plan([end, alarm("smk-1", "d", "smoke.alarm", level=True)])
    commit()
    assert isinstance(kept[0], AlarmEnd) and kept[0].msg_id == "a"  # the end names the alarm it closes
    assert [m.msg_id for m in kept[1:]] == ["d"]
    assert f.active == {("smk-1", "smoke.alarm"): "d"}
    # edge alarms (not level) always pass
    kept, suppressed, _ = f.plan([alarm("cam-1", "x"), alarm("cam-1", "x")])
    assert len(kept) == 2 and suppressed == 0


RULE = ThresholdRule("hot", "temperature_max", 80.0, True, 10.0, "thermal.overheat", 4, ("thermal",))


def reading(v: float, s: float, device: str = "th-1") -> Reading:
    return Reading(device, T0 + timedelta(seconds=s), "temperature_max", v, "°C")


def test_threshold_raises_once_after_the_bound_held_for_s_and_ends_when_back() -> None:
    w = ThresholdWatch((RULE,))
    kinds = {"th-1": "thermal"}
    assert w.feed([reading(85, 0), reading(90, 5)], kinds, T0) == []  # 5 s: not yet
    out = w.feed([reading(86, 10), reading(88, 12)], kinds, T0)
    assert len(out) == 1 and isinstance(out[0], Alarm)
    a = out[0]
    assert (a.type, a.severity, a.msg_id) == ("thermal.overheat", 4, f"rule:hot@{T0.isoformat()}")
    assert a.data["peak"] == 90 and a.data["held_s"] == 10
    out = w.feed([reading(79, 20)], kinds, T0)
    assert len(out) == 1 and isinstance(out[0], AlarmEnd) and out[0].msg_id == a.msg_id
    # a dip resets the breach: 85 at 30 s, 70 at 35 s, 85 at 40..45 s: not 10 s in a row
    assert w.feed([reading(85, 30), reading(70, 35), reading(85, 40), reading(85, 45)], kinds, T0) == []


def test_threshold_plan_does_not_move_until_commit_and_ids_repeat() -> None:
    w = ThresholdWatch((RULE,))
    batch = [reading(85, 0), reading(85, 11)]
    first, _ = w.plan(batch, {"th-1": "thermal"}, T0)
    again, commit = w.plan(batch, {"th-1": "thermal"}, T0)  # the retried batch: same alarm, same id
    assert [a.msg_id for a in first] == [a.msg_id for a in again] and len(first) == 1  # type: ignore[union-attr]
    commit()
    assert w.feed([reading(86, 12)], {"th-1": "thermal"}, T0) == []  # already raised for this breach


def test_threshold_rules_apply_only_to_their_kinds_and_metrics() -> None:
    w = ThresholdWatch((RULE,))
    assert w.feed([reading(99, 0, "cam-1"), reading(99, 20, "cam-1")], {"cam-1": "camera"}, T0) == []
    assert w.feed([Reading("th-1", T0, "humidity", 99.0)], {"th-1": "thermal"}, T0) == []


def test_default_rules_load_and_bad_rules_name_the_field() -> None:
    names = {r.name for r in load_rules()}
    assert "thermal-overheat" in names
    hot = next(r for r in load_rules() if r.name == "thermal-overheat")
    assert (hot.metric, hot.bound, hot.above, hot.for_s) == ("temperature_max", 80.0, True, 10.0)
    with pytest.raises(ThresholdConfigError, match="exactly one of `above` or `below`"):
        parse_rules({"rules": {"x": {"metric": "m", "type": "a.b", "above": 1, "below": 2}}})
    with pytest.raises(ThresholdConfigError, match="severity"):
        parse_rules({"rules": {"x": {"metric": "m", "type": "a.b", "above": 1, "severity": 9}}})
    with pytest.raises(ThresholdConfigError, match="unknown keys"):
        parse_rules({"rules": {"x": {"metric": "m", "type": "a.b", "above": 1, "colour": "red"}}})


def inbound(decoded: object, topic: str = "t") -> Inbound:
    return Inbound(topic, b"payload", T0, decoded)  # type: ignore[arg-type]


def test_assemble_resolves_checks_and_dead_letters_unknown_devices() -> None:
    msgs = [
        inbound([alarm("hikvision:44:19:b6:00:00:01/3", "m1")], "hikvision/nvr/event"),
        inbound([alarm("frigate:garage", "m2")], "frigate/events"),
        inbound([Reading("frigate:roof", T0, "temperature_max", 85.0), DeviceStatus("fence:host-7", T0, True, "heartbeat", T0)]),
        inbound([DeviceStatus("patroller:P1", T0, False, "will", T0), PatrollerPosition("P1", T0, 113.85, 27.62)]),
        inbound(DeadLetter("x", b"", "schema", "bad", T0)),
        inbound([Alarm("cam-1", "far", T0, "camera.motion", 3, T0, b"", lon=100.0, lat=20.0)], "gridwatch/devices/cam-1/alarm"),
    ]
    batch = assemble(msgs, registry=REG, inside=lambda lon, lat: lon > 113, levels=LevelFilter(),
                     thresholds=ThresholdWatch((RULE,)), now=T0)
    assert [(a.device_id, a.zone) for a in batch.alarms] == [("nvr-2", "3")]
    assert [(d.reason, d.topic) for d in batch.dead_letters] == [
        ("unknown_device", "frigate/events"), ("schema", "x"), ("outside_district", "gridwatch/devices/cam-1/alarm")]
    assert "frigate:garage" in batch.dead_letters[0].detail and "gridwatch devices import" in batch.dead_letters[0].detail
    assert [r.device_id for r in batch.readings] == ["th-1"]
    assert [s.device_id for s in batch.statuses] == ["host-7"]
    assert [s.device_id for s in batch.patroller_statuses] == ["patroller:P1"]
    assert len(batch.positions) == 1
    assert batch.seen == {"nvr-2": T0, "th-1": T0, "host-7": T0}


def test_assemble_offline_status_does_not_count_as_seen() -> None:
    batch = assemble([inbound([DeviceStatus("cam-1", T0, False, "will", T0)])], registry=REG, inside=lambda *_: True,
                     levels=LevelFilter(), thresholds=None, now=T0)
    assert batch.seen == {} and [s.online for s in batch.statuses] == [False]
