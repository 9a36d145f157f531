"""In-memory fakes for pure-logic tests of alerts/ (not used by any I/O test)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime

from alerts.model import OPEN_STATES, HistoryEntry, Incident, Notification
from alerts.routing import distance_m
from ingest.model import Alarm, DeadLetter, PatrollerPosition


@dataclass
class Hit:
    l1: str | None
    l2: str | None
    l3: str | None
    building: str | None


class BoxIndex:
    """Point index over axis-aligned boxes: {l3_code: (minx, miny, maxx, maxy)}, optional building boxes."""

    version = 1

    def __init__(
        self,
        boxes: dict[str, tuple[float, float, float, float]],
        buildings: dict[str, tuple[float, float, float, float]] | None = None,
    ) -> None:
        self.boxes = boxes
        self.buildings = buildings or {}

    def locate(self, lon: float, lat: float) -> Hit | None:
        for code, (x0, y0, x1, y1) in self.boxes.items():
            if x0 <= lon < x1 and y0 <= lat < y1:
                building = next((b for b, (bx0, by0, bx1, by1) in self.buildings.items()
                                 if bx0 <= lon < bx1 and by0 <= lat < by1), None)
                return Hit(code[:9], code[:12], code, building)
        return None


def _copy(inc: Incident) -> Incident:
    """A detached copy, as a store read or write makes (details is a nested JSON document)."""
    return replace(inc, details=copy.deepcopy(inc.details))


class FakeUoW:
    """Keeps rows in dicts; `commit` copies them into the FakeStore."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.alarms: dict[tuple[str, str], tuple[Alarm, str]] = {}
        self.incidents: dict[str, Incident] = {}
        self.history: list[HistoryEntry] = []
        self.dead: list[DeadLetter] = []
        self.notes: list[Notification] = []
        self.positions: list[PatrollerPosition] = []
        self.locked: list[tuple[str, str]] = []

    def lock_keys(self, keys):
        self.locked = list(keys)
        self.store.lock_calls.append(list(keys))

    def _every(self) -> dict[str, Incident]:
        return {**self.store.incidents, **self.incidents}

    def prefetch_open_incidents(self, keys, since):
        pass

    def known_alarm_keys(self, keys):
        return {k for k in keys if k in self.store.alarms or k in self.alarms}

    def add_alarms(self, alarms):
        n = 0
        for alarm, iid in alarms:
            if alarm.key not in self.store.alarms and alarm.key not in self.alarms:
                self.alarms[alarm.key] = (alarm, iid)
                n += 1
        return n

    def open_incidents_for(self, keys, since: datetime):
        out = {}
        wanted = set(keys)
        for inc in sorted(self._every().values(), key=lambda i: i.created_at):
            key = (inc.device_id, inc.type)
            if key in wanted and inc.state in OPEN_STATES and inc.last_alarm_at >= since:
                out[key] = _copy(inc)
        return out

    def open_incidents_near(self, points, radius_m: float, since: datetime):
        self.store.queries.append("open_incidents_near")
        out = []
        for inc in sorted(self._every().values(), key=lambda i: i.created_at):
            if inc.state not in OPEN_STATES or inc.type == "storm" or (inc.last_alarm_at or inc.created_at) < since:
                continue
            if any(distance_m(lon, lat, inc.route.lon, inc.route.lat) <= radius_m for lon, lat in points):
                out.append(_copy(inc))
        return out

    def recent_incident_counts(self, grids, since: datetime):
        self.store.queries.append("recent_incident_counts")
        wanted = set(grids)
        out: dict[str, int] = {}
        for inc in self._every().values():
            g = inc.route.l3
            if g in wanted and inc.source == "device" and inc.type != "storm" and inc.created_at >= since:
                out[g] = out.get(g, 0) + 1
        return out

    def open_storm_incidents(self, grids):
        self.store.queries.append("open_storm_incidents")
        wanted = set(grids)
        out: dict[str, Incident] = {}
        for inc in sorted(self._every().values(), key=lambda i: i.created_at):  # newest wins
            if inc.type == "storm" and inc.state in OPEN_STATES and inc.route.l3 in wanted:
                out[inc.route.l3] = _copy(inc)
        return out

    def get_incident(self, incident_id, *, for_update=False):
        inc = self.incidents.get(incident_id) or self.store.incidents.get(incident_id)
        return _copy(inc) if inc else None

    def save_incidents(self, incidents):
        for inc in incidents:
            self.incidents[inc.id] = _copy(inc)

    def add_history(self, entries):
        self.history.extend(entries)

    def add_dead_letters(self, letters):
        self.dead.extend(letters)

    def add_notifications(self, notifications):
        start = len(self.store.notes) + len(self.notes)
        self.notes.extend(notifications)
        return list(range(start + 1, start + 1 + len(notifications)))

    def set_positions(self, positions):
        self.positions.extend(positions)


class FakeStore:
    """Committed state of the fake."""

    def __init__(self) -> None:
        self.alarms: dict[tuple[str, str], tuple[Alarm, str]] = {}
        self.incidents: dict[str, Incident] = {}
        self.history: list[HistoryEntry] = []
        self.dead: list[DeadLetter] = []
        self.notes: list[Notification] = []
        self.lock_calls: list[list[tuple[str, str]]] = []
        self.queries: list[str] = []

    @contextmanager
    def unit_of_work(self) -> Iterator[FakeUoW]:
        uow = FakeUoW(self)
        yield uow  # an exception propagates and nothing is copied: rollback
        self.alarms.update(uow.alarms)
        self.incidents.update(uow.incidents)
        self.history.extend(uow.history)
        self.dead.extend(uow.dead)
        self.notes.extend(uow.notes)


def offset(lon: float, lat: float, east_m: float = 0.0, north_m: float = 0.0) -> tuple[float, float]:
    """The point `east_m` / `north_m` metres from (lon, lat) (local flat approximation)."""
    import math

    return (lon + east_m / (111_320.0 * math.cos(math.radians(lat))), lat + north_m / 111_320.0)
