"""From a batch of normalized alarms to incidents, inside one unit of work.

Exactly-once: alarms already stored (same device id + message id, e.g. an MQTT redelivery) are
skipped before any incident is touched, and the store's unique key backs that up. Cooldown dedup:
a repeat of (device, type) whose time is within `cooldown` of the open incident's last alarm joins
that incident (alarm_count + 1) instead of opening a new one. Per-device order is the batch order.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from alerts import sla, workflow
from alerts.model import HistoryEntry, Incident, IncidentState, Notification
from alerts.routing import HasLonLat, Router, device_point
from alerts.views import incident_dict
from geo.model import Device
from ingest.model import Alarm, DeadLetter, PatrollerPosition

logger = logging.getLogger(__name__)

AUTO_ACTOR = "system:auto-dispatch"


class IntakeUnitOfWork(Protocol):
    """The slice of store.ports.UnitOfWork the intake uses."""

    def lock_keys(self, keys: Sequence[tuple[str, str]]) -> None: ...
    def prefetch_open_incidents(self, keys: Sequence[tuple[str, str]], since: datetime) -> None: ...
    def known_alarm_keys(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]: ...
    def add_alarms(self, alarms: Sequence[tuple[Alarm, str]]) -> int: ...
    def open_incidents_for(self, keys: Sequence[tuple[str, str]], since: datetime) -> dict[tuple[str, str], Incident]: ...
    def save_incidents(self, incidents: Sequence[Incident]) -> None: ...
    def add_history(self, entries: Sequence[HistoryEntry]) -> None: ...
    def add_dead_letters(self, letters: Sequence[DeadLetter]) -> None: ...
    def add_notifications(self, notifications: Sequence[Notification]) -> list[int]: ...
    def set_positions(self, positions: Sequence[PatrollerPosition]) -> None: ...


def new_incident_id(at: datetime) -> str:
    """A unique, roughly time-ordered incident id, e.g. INC-20261122-3f9a1c2b7d4e."""
    return f"INC-{at:%Y%m%d}-{uuid.uuid4().hex[:12]}"


def patroller_topic(patroller_id: str) -> str:
    """Outbound topic of a patroller's phone."""
    return f"gridwatch/patrollers/{patroller_id}/alerts"


def grid_topic(grid_code: str) -> str:
    """Outbound topic of incident events inside a grid."""
    return f"gridwatch/grids/{grid_code}/incidents"


@dataclass(slots=True)
class IntakeResult:
    """What one batch did."""

    alarms_stored: int = 0
    duplicates: int = 0
    incidents_created: list[str] = field(default_factory=list)
    incidents_joined: list[str] = field(default_factory=list)
    dead_letters: int = 0
    positions: int = 0
    notifications: list[tuple[int, Notification]] = field(default_factory=list)


class IncidentIntake:
    """Turns alarms into incidents (create, join, auto-dispatch) and queues their notifications."""

    def __init__(
        self,
        router: Router,
        devices: Mapping[str, Device],
        *,
        cooldown: timedelta = timedelta(minutes=10),
        auto_dispatch: bool = True,
        limits: Mapping[str, timedelta] = sla.DEFAULT_LIMITS,
        new_id: Callable[[datetime], str] = new_incident_id,
    ) -> None:
        self.router = router
        self.devices = devices
        self.cooldown = cooldown
        self.auto_dispatch = auto_dispatch
        self.limits = limits
        self.new_id = new_id
        self.positions: dict[str, HasLonLat] = {}

    def remember_positions(self, positions: Mapping[str, HasLonLat]) -> None:
        """Seed the last known positions (e.g. from the store at start-up)."""
        self.positions.update(positions)

    def accept(
        self,
        uow: IntakeUnitOfWork,
        *,
        alarms: Sequence[Alarm] = (),
        positions: Sequence[PatrollerPosition] = (),
        dead_letters: Sequence[DeadLetter] = (),
        now: datetime,
    ) -> IntakeResult:
        """Write one batch through `uow` (the caller commits) and return what happened."""
        result = IntakeResult(dead_letters=len(dead_letters), positions=len(positions))
        if dead_letters:
            uow.add_dead_letters(dead_letters)
        if positions:
            uow.set_positions(positions)
            for pos in positions:
                known = self.positions.get(pos.patroller_id)
                if known is None or getattr(known, "ts", pos.ts) <= pos.ts:
                    self.positions[pos.patroller_id] = pos
        if alarms:  # before any read: concurrent workers with alarms of the same device queue up here
            keys = sorted({(a.device_id, a.type) for a in alarms})
            uow.lock_keys(keys)
            # the open incidents of the batch can travel with the known-key check (one round trip less)
            uow.prefetch_open_incidents(keys, min(a.ts for a in alarms) - self.cooldown)
        fresh = self._fresh(uow, alarms, result)
        if not fresh:
            return result

        since = min(a.ts for a in fresh) - self.cooldown
        open_by_key = uow.open_incidents_for(sorted({(a.device_id, a.type) for a in fresh}), since)
        changed: dict[str, Incident] = {}
        created: set[str] = set()
        history: list[HistoryEntry] = []
        stored: list[tuple[Alarm, str]] = []
        for alarm in fresh:
            key = (alarm.device_id, alarm.type)
            incident = open_by_key.get(key)
            if incident is not None and self._joins(incident, alarm):
                self._join(incident, alarm, now)
                if incident.id not in created:
                    result.incidents_joined.append(incident.id)
            else:
                incident, rows = self._open(alarm, now)
                history.extend(rows)
                created.add(incident.id)
                open_by_key[key] = incident
                result.incidents_created.append(incident.id)
            changed[incident.id] = incident
            stored.append((alarm, incident.id))

        result.alarms_stored = uow.add_alarms(stored)
        uow.save_incidents(list(changed.values()))
        uow.add_history(history)
        notes = self._notifications(changed.values(), created, now)
        ids = uow.add_notifications(notes)
        result.notifications = list(zip(ids, notes, strict=True))
        result.incidents_joined = list(dict.fromkeys(result.incidents_joined))
        return result

    def _fresh(self, uow: IntakeUnitOfWork, alarms: Sequence[Alarm], result: IntakeResult) -> list[Alarm]:
        """Drop alarms already stored or repeated inside the batch (redeliveries)."""
        by_key: dict[tuple[str, str], Alarm] = {}
        for a in alarms:
            key = (a.device_id, a.msg_id)  # Alarm.key, without a property call per alarm
            if key in by_key:
                result.duplicates += 1
            else:
                by_key[key] = a
        if not by_key:
            return []
        known = uow.known_alarm_keys(list(by_key))
        if not known:
            return list(by_key.values())
        result.duplicates += len(known)
        return [a for key, a in by_key.items() if key not in known]

    def _joins(self, incident: Incident, alarm: Alarm) -> bool:
        last = incident.last_alarm_at or incident.created_at
        return incident.is_open and abs(alarm.ts - last) <= self.cooldown

    @staticmethod
    def _join(incident: Incident, alarm: Alarm, now: datetime) -> None:
        incident.alarm_count += 1
        incident.severity = max(incident.severity, alarm.severity)
        if incident.last_alarm_at is None or alarm.ts > incident.last_alarm_at:
            incident.last_alarm_at = alarm.ts
        incident.updated_at = now

    def _open(self, alarm: Alarm, now: datetime) -> tuple[Incident, list[HistoryEntry]]:
        if alarm.lon is not None and alarm.lat is not None:
            lon, lat, source = alarm.lon, alarm.lat, "payload"
        else:
            lon, lat = device_point(self.devices[alarm.device_id])
            source = "device"
        route = self.router.route(lon, lat, point_source=source, at=now, positions=self.positions)
        incident = Incident(
            id=self.new_id(now),
            type=alarm.type,
            state=IncidentState.REPORTED,
            severity=alarm.severity,
            source="device",
            route=route,
            created_at=now,
            updated_at=now,
            device_id=alarm.device_id,
            first_alarm_at=alarm.ts,
            last_alarm_at=alarm.ts,
        )
        rows = [HistoryEntry(incident.id, now, "report", None, IncidentState.REPORTED, f"device:{alarm.device_id}")]
        if self.auto_dispatch:
            rows.append(workflow.apply(incident, "dispatch", actor=AUTO_ACTOR, at=now))
            incident.assignee = route.patroller_id
            incident.deadline = sla.deadline_for(incident.type, now, self.limits)
        return incident, rows

    @staticmethod
    def _notifications(incidents: Iterable[Incident], created: set[str], now: datetime) -> list[Notification]:
        notes: list[Notification] = []
        for incident in incidents:
            event = "created" if incident.id in created else "updated"
            body = incident_dict(incident, now, event=event)
            if incident.route.l3 is not None:
                notes.append(Notification(grid_topic(incident.route.l3), body))
            if event == "created" and incident.assignee is not None:
                notes.append(Notification(patroller_topic(incident.assignee), body))
        return notes
