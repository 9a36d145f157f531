"""From a batch of normalized alarms to incidents, inside one unit of work.

Exactly-once: alarms already stored (same device id + message id, e.g. an MQTT redelivery) are
skipped before any incident is touched, and the store's unique key backs that up. Then, per alarm,
in batch order (per-device order is the batch order), the first rule that applies:

0. maintenance: the alarm's grid (any level) or building is in an active maintenance window → the
   alarm is stored with no incident and a "muted: <reason>" warning; nothing is opened or sent;
1. cooldown dedup: a repeat of (device, type) within `cooldown` of the open incident's last alarm
   joins that incident (alarm_count + 1);
2. correlation (alerts.correlate): an alarm of the same family (intrusion, fire, …) within
   `radius_m` / `window_s` of an open incident — stored or opened earlier in this batch — joins it
   and raises its confidence;
3. storm control (alerts.storm): the grid opened more than `storm_max_incidents` within
   `storm_window_s` (or its storm is active) → the alarm folds into the grid's one storm incident;
4. otherwise a new incident is opened (routed, auto-dispatched) and notified.

Workers: the unit of work locks every (device, type) key of the batch and one (l3 grid,
"correlate") key per level-3 grid it touches before any read, so two workers cannot open two
incidents for one event or one storm, and the storm counts come from the store.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

from alerts import sla, workflow
from alerts.correlate import (
    CORRELATE_LOCK,
    STORM_TYPE,
    CorrelationConfig,
    NearIndex,
    add_device,
    correlates_with,
)
from alerts.maintenance import MaintenanceCalendar, MaintenanceWindow
from alerts.model import HistoryEntry, Incident, IncidentState, Notification
from alerts.routing import HasLonLat, Located, Router, device_point
from alerts.storm import StormGuard, due_topics, fold, start_summary
from alerts.views import incident_dict
from geo.model import Device
from ingest.model import Alarm, DeadLetter, PatrollerPosition

logger = logging.getLogger(__name__)

AUTO_ACTOR = "system:auto-dispatch"
STORM_ACTOR = "system:storm"


class IntakeUnitOfWork(Protocol):
    """The slice of store.ports.UnitOfWork the intake uses."""

    def lock_keys(self, keys: Sequence[tuple[str, str]]) -> None:
        """Serialize workers on these keys until commit: (device_id, type) and (l3 grid code, "correlate")."""

    def prefetch_open_incidents(self, keys: Sequence[tuple[str, str]], since: datetime) -> None: ...
    def known_alarm_keys(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]: ...

    def add_alarms(self, alarms: Sequence[tuple[Alarm, str | None]]) -> int:
        """Store (alarm, incident_id) pairs; incident_id None: a muted alarm (no incident)."""

    def open_incidents_for(self, keys: Sequence[tuple[str, str]], since: datetime) -> dict[tuple[str, str], Incident]: ...

    def open_incidents_near(self, points: Sequence[tuple[float, float]], radius_m: float, since: datetime) -> list[Incident]:
        """Open incidents, storms excluded, whose route point (lon, lat) lies within `radius_m` metres
        of any of the (lon, lat) `points` and whose last alarm is at or after `since`; each once."""

    def recent_incident_counts(self, grids: Sequence[str], since: datetime) -> dict[str, int]:
        """Per level-3 grid code: incidents with source "device", type other than "storm", created at
        or after `since` (any state). Grids without any may be missing from the answer."""

    def open_storm_incidents(self, grids: Sequence[str]) -> dict[str, Incident]:
        """Per level-3 grid code: its newest open incident of type "storm" (grids without one are missing)."""

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
    muted: int = 0  # alarms stored without an incident (maintenance window)
    correlated: int = 0  # alarms that joined an incident of another device (cross-device correlation)
    folded: int = 0  # alarms folded into a storm incident
    readings: int = 0  # readings stored (duplicates skipped)
    statuses: int = 0  # device status / heartbeat events stored
    alarm_ends: int = 0  # stored alarms an AlarmEnd closed
    suppressed: int = 0  # level-triggered alarms whose state was already active
    came_back: list[str] = field(default_factory=list)  # devices that were offline and sent again


class Place(NamedTuple):
    """Where an alarm happened: the point used for routing and the grid chain / building there."""

    lon: float
    lat: float
    source: str  # "payload" | "device"
    hit: Located | None

    @property
    def l3(self) -> str | None:
        return self.hit.l3 if self.hit is not None else None


class IncidentIntake:
    """Turns alarms into incidents (create, join, correlate, fold, auto-dispatch) and queues their notifications."""

    def __init__(
        self,
        router: Router,
        devices: Mapping[str, Device],
        *,
        cooldown: timedelta | None = None,
        auto_dispatch: bool = True,
        limits: Mapping[str, timedelta] = sla.DEFAULT_LIMITS,
        new_id: Callable[[datetime], str] = new_incident_id,
        config: CorrelationConfig | None = None,
        maintenance: Iterable[MaintenanceWindow] = (),
        sla_config: sla.SlaConfig | None = None,
    ) -> None:
        config = config if config is not None else CorrelationConfig()
        self.sla_config = sla_config if sla_config is not None else sla.DEFAULT
        if cooldown is not None:  # the historical argument wins over the config's default
            config = replace(config, cooldown=cooldown)
        self.router = router
        self.devices = devices
        self.config = config
        self.auto_dispatch = auto_dispatch
        self.limits = limits
        self.new_id = new_id
        self.positions: dict[str, HasLonLat] = {}
        self.maintenance = MaintenanceCalendar(maintenance)
        self._device_places: dict[str, Place] = {}

    @property
    def cooldown(self) -> timedelta:
        """Repeats of (device, type) within this join the open incident."""
        return self.config.cooldown

    def forget_places(self) -> None:
        """Drop cached device places (the registry changed: a device may have moved)."""
        self._device_places = {}

    def remember_positions(self, positions: Mapping[str, HasLonLat]) -> None:
        """Seed the last known positions (e.g. from the store at start-up)."""
        self.positions.update(positions)

    def set_maintenance(self, windows: Iterable[MaintenanceWindow]) -> None:
        """Replace the maintenance windows (the runtime refreshes them from the store)."""
        self.maintenance = MaintenanceCalendar(windows)

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
        places: dict[tuple[str, str], Place | None] = {}
        if alarms:  # before any read: concurrent workers with alarms of the same device / grid queue up here
            located: dict[tuple[float, float], Place] = {}
            places = {a.key: self._place(a, located) for a in alarms}
            keys = sorted({(a.device_id, a.type) for a in alarms})
            lock = keys
            if self.config.correlates or self.config.storms:
                grids = {p.l3 for p in places.values() if p is not None and p.l3 is not None}
                lock = sorted({*keys, *((g, CORRELATE_LOCK) for g in grids)})
            uow.lock_keys(lock)
            # the open incidents of the batch can travel with the known-key check (one round trip less)
            uow.prefetch_open_incidents(keys, min(a.ts for a in alarms) - self.cooldown)
        fresh = self._fresh(uow, alarms, result)
        if not fresh:
            return result

        mutes = [self.maintenance.muting(self._hit(places[a.key]), a.ts) for a in fresh] if self.maintenance else [None] * len(fresh)
        live = [a for a, m in zip(fresh, mutes, strict=True) if m is None]
        by_id: dict[str, Incident] = {}  # one object per incident, whichever query found it

        def one(incident: Incident) -> Incident:
            return by_id.setdefault(incident.id, incident)

        open_by_key: dict[tuple[str, str], Incident] = {}
        near: NearIndex | None = None
        guard: StormGuard | None = None
        if live:
            since = min(a.ts for a in live) - self.cooldown
            found = uow.open_incidents_for(sorted({(a.device_id, a.type) for a in live}), since)
            open_by_key = {k: one(i) for k, i in found.items()}
            if self.config.correlates:
                near = self._near_index(uow, live, places, open_by_key, one)
            if self.config.storms:
                grids = sorted({p.l3 for a in live if (p := places[a.key]) is not None and p.l3 is not None})
                if grids:
                    counts = uow.recent_incident_counts(grids, now - self.config.storm_window)
                    storms = {g: one(i) for g, i in uow.open_storm_incidents(grids).items()}
                    guard = StormGuard(self.config, counts, storms, now)

        changed: dict[str, Incident] = {}
        created: set[str] = set()
        history: list[HistoryEntry] = []
        stored: list[tuple[Alarm, str | None]] = []
        for alarm, window in zip(fresh, mutes, strict=True):
            if window is not None:
                stored.append((replace(alarm, warnings=(*alarm.warnings, f"muted: {window.reason}")), None))
                result.muted += 1
                continue
            key = (alarm.device_id, alarm.type)
            place = places.get(alarm.key)
            grid = place.l3 if place is not None else None
            incident = open_by_key.get(key)
            if incident is not None and self._joins(incident, alarm):
                self._join(incident, alarm, now)
            elif (incident := self._correlated(alarm, place, near)) is not None:
                self._join(incident, alarm, now)
                add_device(incident, alarm.device_id, alarm.type, self._device_confidence)
                open_by_key[key] = incident
                result.correlated += 1
            elif guard is not None and place is not None and grid is not None and guard.folds(grid):
                incident = guard.storm_of(grid)
                if incident is None:
                    incident, rows = self._open_storm(alarm, place, grid, now)
                    history.extend(rows)
                    created.add(incident.id)
                    result.incidents_created.append(incident.id)
                else:
                    fold(incident, alarm, now)
                guard.note_folded(grid, incident)
                result.folded += 1
            else:
                incident, rows = self._open(alarm, now, place)
                history.extend(rows)
                created.add(incident.id)
                open_by_key[key] = incident
                result.incidents_created.append(incident.id)
                if guard is not None:
                    guard.note_opened(grid)
                if near is not None:
                    near.add(incident)
            if incident.id not in created:
                result.incidents_joined.append(incident.id)
            changed[incident.id] = incident
            stored.append((alarm, incident.id))

        result.alarms_stored = uow.add_alarms(stored)
        notes = self._notifications(changed.values(), created, now, guard)  # marks storms' notified times: before the save
        uow.save_incidents(list(changed.values()))
        uow.add_history(history)
        ids = uow.add_notifications(notes)
        result.notifications = list(zip(ids, notes, strict=True))
        result.incidents_joined = list(dict.fromkeys(result.incidents_joined))
        return result

    # --- where ---------------------------------------------------------------------------------
    def _place(self, alarm: Alarm, located: dict[tuple[float, float], Place]) -> Place | None:
        """The alarm's point and its grid chain; None for an unknown device without a position."""
        if alarm.lon is not None and alarm.lat is not None:
            point = (alarm.lon, alarm.lat)
            place = located.get(point)
            if place is None:
                place = located[point] = Place(alarm.lon, alarm.lat, "payload", self.router.index.locate(alarm.lon, alarm.lat))
            return place
        place = self._device_places.get(alarm.device_id)
        if place is None:
            device = self.devices.get(alarm.device_id)
            if device is None:
                return None
            lon, lat = device_point(device)
            place = self._device_places[alarm.device_id] = Place(lon, lat, "device", self.router.index.locate(lon, lat))
        return place

    @staticmethod
    def _hit(place: Place | None) -> Located | None:
        return place.hit if place is not None else None

    def _device_confidence(self, device_id: str) -> float:
        device = self.devices.get(device_id)
        return self.config.confidence_of(device.kind if device is not None else None)

    # --- the rules -----------------------------------------------------------------------------
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

    def _near_index(
        self,
        uow: IntakeUnitOfWork,
        live: Sequence[Alarm],
        places: Mapping[tuple[str, str], Place | None],
        open_by_key: Mapping[tuple[str, str], Incident],
        one: Callable[[Incident], Incident],
    ) -> NearIndex:
        """The open incidents that alarms of this batch may correlate with (the batch adds its own)."""
        near = NearIndex(self.config.radius_m)
        for incident in open_by_key.values():
            if incident.is_open:
                near.add(incident)
        asking = [
            (a, p) for a in live
            if (p := places.get(a.key)) is not None and self.config.family(a.type) is not None
            and not ((inc := open_by_key.get((a.device_id, a.type))) is not None and self._joins(inc, a))
        ]  # fmt: skip
        if asking:
            points = sorted({(p.lon, p.lat) for _, p in asking})
            since = min(a.ts for a, _ in asking) - max(self.config.window, self.cooldown)
            for incident in uow.open_incidents_near(points, self.config.radius_m, since):
                if incident.is_open and incident.type != STORM_TYPE:
                    near.add(one(incident))
        return near

    def _correlated(self, alarm: Alarm, place: Place | None, near: NearIndex | None) -> Incident | None:
        """The nearest open incident this alarm correlates with, or None."""
        if near is None or place is None:
            return None
        family = self.config.family(alarm.type)
        if family is None:
            return None
        best: tuple[float, datetime, str] | None = None
        chosen: Incident | None = None
        for distance, incident in near.near(place.lon, place.lat):
            if correlates_with(self.config, incident, device_id=alarm.device_id, alarm_type=alarm.type, family=family, ts=alarm.ts):
                rank = (distance, incident.created_at, incident.id)
                if best is None or rank < best:
                    best, chosen = rank, incident
        return chosen

    @staticmethod
    def _join(incident: Incident, alarm: Alarm, now: datetime) -> None:
        incident.alarm_count += 1
        incident.severity = max(incident.severity, alarm.severity)
        if incident.last_alarm_at is None or alarm.ts > incident.last_alarm_at:
            incident.last_alarm_at = alarm.ts
        incident.updated_at = now

    def _new(self, alarm: Alarm, now: datetime, place: Place | None, *, type_: str, device_id: str | None,
             actor: str, details: dict[str, Any] | None = None) -> tuple[Incident, list[HistoryEntry]]:
        if place is not None:
            lon, lat, source = place.lon, place.lat, place.source
        elif alarm.lon is not None and alarm.lat is not None:
            lon, lat, source = alarm.lon, alarm.lat, "payload"
        else:
            lon, lat = device_point(self.devices[alarm.device_id])
            source = "device"
        route = self.router.route(lon, lat, point_source=source, at=now, positions=self.positions)
        incident = Incident(
            id=self.new_id(now),
            type=type_,
            state=IncidentState.REPORTED,
            severity=alarm.severity,
            source="device",
            route=route,
            created_at=now,
            updated_at=now,
            device_id=device_id,
            first_alarm_at=alarm.ts,
            last_alarm_at=alarm.ts,
            details=details or {},
        )
        rows = [HistoryEntry(incident.id, now, "report", None, IncidentState.REPORTED, actor)]
        if self.auto_dispatch:  # registered (auto for device alarms), then dispatched: the "acknowledge" clock starts
            incident.assignee = route.patroller_id
            rows.append(workflow.apply(incident, "register", actor=AUTO_ACTOR, at=now, sla=self.sla_config))
            rows.append(workflow.apply(incident, "dispatch", actor=AUTO_ACTOR, at=now, sla=self.sla_config))
        else:  # waits for an operator: the register+dispatch clock runs
            sla.start_stage(incident, "register", now, self.sla_config)
        return incident, rows

    def _open(self, alarm: Alarm, now: datetime, place: Place | None = None) -> tuple[Incident, list[HistoryEntry]]:
        incident, rows = self._new(alarm, now, place, type_=alarm.type, device_id=alarm.device_id, actor=f"device:{alarm.device_id}")
        incident.confidence = self._device_confidence(alarm.device_id)
        return incident, rows

    def _open_storm(self, alarm: Alarm, place: Place, grid: str, now: datetime) -> tuple[Incident, list[HistoryEntry]]:
        return self._new(alarm, now, place, type_=STORM_TYPE, device_id=None, actor=STORM_ACTOR,
                         details={"storm": start_summary(grid, alarm, now)})

    # --- notifications -------------------------------------------------------------------------
    def _notifications(
        self, incidents: Iterable[Incident], created: set[str], now: datetime, guard: StormGuard | None
    ) -> list[Notification]:
        notes: list[Notification] = []
        for incident in incidents:
            event = "created" if incident.id in created else "updated"
            grid = incident.route.l3
            topics: list[str] = []
            if grid is not None:
                topics.append(grid_topic(grid))
            if incident.assignee is not None and (event == "created" or incident.type == STORM_TYPE):
                topics.append(patroller_topic(incident.assignee))
            if incident.type == STORM_TYPE:  # on creation, then at most once per topic per interval
                due = due_topics(incident, topics, now, 0.0 if event == "created" else self.config.storm_notify_interval_s)
                topics = [t for t in topics if t in due]
            elif event == "updated" and guard is not None and guard.active(grid):
                topics = []  # the grid's storm summary stands in for its incidents' update chatter
            if not topics:
                continue
            body = self._body(incident, now, event)
            notes.extend(Notification(t, body) for t in topics)
        return notes

    @staticmethod
    def _body(incident: Incident, now: datetime, event: str) -> dict[str, Any]:
        body = incident_dict(incident, now, event=event)
        body["confidence"] = incident.confidence
        details = {k: v for k, v in incident.details.items() if k != "notified"}
        if details:
            body["details"] = details
        return body
