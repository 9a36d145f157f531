"""In-memory fakes for pure-logic tests of alerts/ (not used by any I/O test)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime

from alerts.model import OPEN_STATES, HistoryEntry, Incident, Notification
from ingest.model import Alarm, DeadLetter, PatrollerPosition


@dataclass
class Hit:
    l1: str | None
    l2: str | None
    l3: str | None
    building: str | None


class BoxIndex:
    """Point index over axis-aligned boxes: {l3_code: (minx, miny, maxx, maxy)}."""

    version = 1

    def __init__(self, boxes: dict[str, tuple[float, float, float, float]]) -> None:
        self.boxes = boxes

    def locate(self, lon: float, lat: float) -> Hit | None:
        for code, (x0, y0, x1, y1) in self.boxes.items():
            if x0 <= lon < x1 and y0 <= lat < y1:
                return Hit(code[:9], code[:12], code, None)
        return None


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

    def lock_keys(self, keys):
        self.locked = list(keys)

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
        every = {**self.store.incidents, **self.incidents}
        for inc in sorted(every.values(), key=lambda i: i.created_at):
            key = (inc.device_id, inc.type)
            if key in set(keys) and inc.state in OPEN_STATES and inc.last_alarm_at >= since:
                out[key] = replace(inc)
        return out

    def get_incident(self, incident_id, *, for_update=False):
        inc = self.incidents.get(incident_id) or self.store.incidents.get(incident_id)
        return replace(inc) if inc else None

    def save_incidents(self, incidents):
        for inc in incidents:
            self.incidents[inc.id] = replace(inc)

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

    @contextmanager
    def unit_of_work(self) -> Iterator[FakeUoW]:
        uow = FakeUoW(self)
        yield uow  # an exception propagates and nothing is copied: rollback
        self.alarms.update(uow.alarms)
        self.incidents.update(uow.incidents)
        self.history.extend(uow.history)
        self.dead.extend(uow.dead)
        self.notes.extend(uow.notes)
