"""From decoded messages to what one ingest batch writes: resolve devices, filter levels, apply rules.

`assemble` is pure: the runtime decodes each MQTT/HTTP message with its adapter, hands the results
here, commits the returned `Batch` in one unit of work, and only then calls `Batch.commit()` so
that in-memory state (level-triggered alarms that are active, threshold breaches) moves forward
only for what was stored. If the store fails, the batch is retried with the state unchanged.

Steps, per message in batch order:
1. every device reference (id or vendor identity) is resolved through the Registry; a message
   naming an unregistered device becomes one dead letter (`unknown_device`) with its original topic
   and payload, so `gridwatch deadletters replay` can take it in once the device is registered;
2. alarms get the registry's checks (district outline; soft warnings for kind/zone mismatch);
3. level-triggered alarms (sensor states repeated on every report) pass only on their rising edge;
4. readings are fed to the threshold rules, which add alarms (and alarm ends);
5. every message seen refreshes its device's last-seen time (health).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from alerts.thresholds import ThresholdWatch
from ingest.adapters.common import dead_letter
from ingest.checks import OUTSIDE_DISTRICT, UNKNOWN_DEVICE, check_alarm
from ingest.model import (
    Alarm,
    AlarmEnd,
    DeadLetter,
    DeviceStatus,
    HaEntity,
    Normalized,
    PatrollerPosition,
    Reading,
)
from ingest.registry import Registry, how_to_register

__all__ = ["OUTSIDE_DISTRICT", "UNKNOWN_DEVICE", "Batch", "Inbound", "LevelFilter", "assemble"]

PATROLLER_PREFIX = "patroller:"


@dataclass(frozen=True, slots=True)
class Inbound:
    """One received message and what its adapter made of it."""

    topic: str
    payload: bytes
    received_at: datetime
    decoded: list[Normalized] | DeadLetter


@dataclass(slots=True)
class Batch:
    """What one batch writes, in one transaction."""

    alarms: list[Alarm] = field(default_factory=list)
    ends: list[AlarmEnd] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)
    statuses: list[DeviceStatus] = field(default_factory=list)
    patroller_statuses: list[DeviceStatus] = field(default_factory=list)
    positions: list[PatrollerPosition] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    entities: list[HaEntity] = field(default_factory=list)
    seen: dict[str, datetime] = field(default_factory=dict)  # device → latest receive time of a sign of life
    offline: list[DeviceStatus] = field(default_factory=list)  # devices whose last word in the batch is "offline"
    level_state: dict[str, dict[str, str]] = field(default_factory=dict)  # device → active level alarms (type → msg id)
    suppressed: int = 0  # level alarms already active (repeats of a sensor state)
    _commit: list[Callable[[], None]] = field(default_factory=list)

    def commit(self) -> None:
        """Move the in-memory state forward: call after the batch's transaction committed."""
        for step in self._commit:
            step()
        self._commit.clear()


class LevelFilter:
    """Rising-edge filter of level-triggered alarms: (device, type) stays active until its AlarmEnd."""

    def __init__(self) -> None:
        self.active: dict[tuple[str, str], str] = {}  # (device, type) -> msg id of the alarm that raised it

    def plan(self, outs: Sequence[Alarm | AlarmEnd]) -> tuple[list[Alarm | AlarmEnd], int, Callable[[], None]]:
        """Return (kept messages, suppressed count, commit) without changing state until `commit()`."""
        kept, suppressed, commit, _ = self.plan_with_state(outs)
        return kept, suppressed, commit

    def plan_with_state(self, outs: Sequence[Alarm | AlarmEnd]) -> tuple[
            list[Alarm | AlarmEnd], int, Callable[[], None], dict[str, dict[str, str]]]:
        """`plan`, plus the active level alarms (type → msg id) after the batch of every device it touched
        (stored with the device, so that a restarted worker does not raise a still-active state again)."""
        view = dict(self.active)
        kept: list[Alarm | AlarmEnd] = []
        suppressed = 0
        touched: set[str] = set()
        for m in outs:
            if isinstance(m, Alarm):
                if m.level:
                    key = (m.device_id, m.type)
                    if key in view:
                        suppressed += 1
                        continue
                    view[key] = m.msg_id
                    touched.add(m.device_id)
                kept.append(m)
                continue
            if m.type is not None:
                raised = view.pop((m.device_id, m.type), None)
                if raised is not None:
                    touched.add(m.device_id)
                    if m.msg_id is None:
                        m = dataclasses.replace(m, msg_id=raised)
            else:
                for key in [k for k in view if k[0] == m.device_id]:
                    del view[key]
                    touched.add(m.device_id)
            kept.append(m)
        state: dict[str, dict[str, str]] = {d: {} for d in touched}
        for (d, t), msg in view.items():
            if d in touched:
                state[d][t] = msg

        def commit() -> None:
            self.active = view

        return kept, suppressed, commit, state

    def load(self, states: Mapping[str, Mapping[str, str]]) -> None:
        """Seed from what the store says is active (device → type → msg id), e.g. at start."""
        self.active = {(d, t): str(msg) for d, types in states.items() for t, msg in types.items()}


def _resolve(ref: str, registry: Registry, zone: str | None = None) -> tuple[str, str | None] | None:
    hit = registry.resolve(ref)
    if hit is None:
        return None
    return hit.device.id, zone if zone is not None else hit.part


def assemble(
    inbound: Iterable[Inbound],
    *,
    registry: Registry,
    inside: Callable[[float, float], bool],
    levels: LevelFilter,
    thresholds: ThresholdWatch | None,
    now: datetime,
) -> Batch:
    """Resolve, check and filter a batch of decoded messages (pure apart from the planned state)."""
    batch = Batch()
    edge: list[Alarm | AlarmEnd] = []
    last_word: dict[str, DeviceStatus | None] = {}  # device → its last offline status, or None when it was alive
    for msg in inbound:
        out = msg.decoded
        if isinstance(out, DeadLetter):
            batch.dead_letters.append(out)
            continue
        resolved = _resolve_all(msg, out, registry, inside)
        if isinstance(resolved, DeadLetter):
            batch.dead_letters.append(resolved)
            continue
        for m in resolved:
            if isinstance(m, Alarm | AlarmEnd):
                edge.append(m)
            elif isinstance(m, Reading):
                batch.readings.append(m)
            elif isinstance(m, DeviceStatus):
                (batch.patroller_statuses if m.device_id.startswith(PATROLLER_PREFIX) else batch.statuses).append(m)
            elif isinstance(m, PatrollerPosition):
                batch.positions.append(m)
            elif isinstance(m, HaEntity):
                batch.entities.append(m)
            device_id = getattr(m, "device_id", None)
            if device_id is not None and not device_id.startswith(PATROLLER_PREFIX):
                # liveness is our receive time, never the device's clock (it may be off by minutes)
                if isinstance(m, DeviceStatus) and not m.online:
                    last_word[device_id] = m
                else:
                    last_word[device_id] = None
                    prev = batch.seen.get(device_id)
                    if prev is None or msg.received_at > prev:
                        batch.seen[device_id] = msg.received_at
    for device_id, word in last_word.items():
        if word is not None:  # its last word in this batch is "offline" (a will after a last reading)
            batch.offline.append(word)
            batch.seen.pop(device_id, None)
    if thresholds is not None and batch.readings:
        kinds = {r.device_id: d.kind for r in batch.readings if (d := registry.get(r.device_id)) is not None}
        raised, commit_thresholds = thresholds.plan(batch.readings, kinds, now)
        edge.extend(raised)
        batch._commit.append(commit_thresholds)
    kept, batch.suppressed, commit_levels, batch.level_state = levels.plan_with_state(edge)
    batch._commit.append(commit_levels)
    for m in kept:
        (batch.alarms if isinstance(m, Alarm) else batch.ends).append(m)  # type: ignore[arg-type]
    return batch


def _resolve_all(msg: Inbound, out: list[Normalized], registry: Registry,
                 inside: Callable[[float, float], bool]) -> list[Normalized] | DeadLetter:
    done: list[Normalized] = []
    for m in out:
        if isinstance(m, PatrollerPosition | HaEntity) or (isinstance(m, DeviceStatus) and m.device_id.startswith(PATROLLER_PREFIX)):
            done.append(m)
            continue
        zone = m.zone if isinstance(m, Alarm) else None
        hit = _resolve(m.device_id, registry, zone)
        if hit is None and isinstance(m, DeviceStatus) and (children := registry.children(m.device_id)):
            # a device-level heartbeat (an NVR's keep-alive) speaks for every channel registered under it
            done.extend(dataclasses.replace(m, device_id=c.id) for c in children)
            continue
        if hit is None:
            return dead_letter(msg.topic, msg.payload, msg.received_at, UNKNOWN_DEVICE, how_to_register(m.device_id))
        device_id, part = hit
        if isinstance(m, Alarm):
            if device_id != m.device_id or part != m.zone:
                m = dataclasses.replace(m, device_id=device_id, zone=part)
            checked = check_alarm(m, registry.by_id, inside, topic=msg.topic, payload=msg.payload)
            if isinstance(checked, DeadLetter):
                return checked
            done.append(checked)
        elif device_id != m.device_id:
            done.append(dataclasses.replace(m, device_id=device_id))  # type: ignore[type-var]
        else:
            done.append(m)
    return done
