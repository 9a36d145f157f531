"""Storm control per level-3 grid (design §6b, §7: "alarm storms become few incidents, not thousands
of notifications").

When more than `storm_max_incidents` incidents would be opened in one grid within `storm_window_s`
(counted in the store, so across workers and restarts), every further alarm of that grid that would
open an incident folds into ONE open storm incident of the grid (type "storm"): created once, then
updated with a running summary in details["storm"] — alarm counts by type and by device, first/last
alarm time, the number of incidents it stands in for. The storm stays *active* while alarms keep
folding into it within `storm_window_s` (so the grid does not fall back to opening incidents just
because the openings left the counting window); an open but quiet storm incident is reused by the
next storm of the grid.

Notifications of a storm incident go out on creation, then at most once per recipient (topic) per
`storm_notify_interval_s`; the times are kept in details["notified"]. While a grid's storm is active,
the "updated" events of the grid's other incidents are not sent either (their alarm counts are
still stored; the storm's summary carries the picture). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from alerts.correlate import STORM_TYPE, CorrelationConfig
from alerts.model import Incident
from ingest.model import Alarm


def _iso(t: datetime) -> str:
    return t.isoformat()


def start_summary(grid: str, alarm: Alarm, now: datetime) -> dict[str, object]:
    """The summary of a storm whose first folded alarm is `alarm`."""
    return {
        "grid": grid,
        "alarms": 1,
        "by_type": {alarm.type: 1},
        "by_device": {alarm.device_id: 1},
        "keys": [f"{alarm.device_id} {alarm.type}"],
        "folded_incidents": 1,
        "first_alarm_at": _iso(alarm.ts),
        "last_alarm_at": _iso(alarm.ts),
        "started_at": _iso(now),
        "last_folded_at": _iso(now),
    }


def fold(incident: Incident, alarm: Alarm, now: datetime) -> None:
    """Fold one more alarm into a storm incident: counts, severity, times, the running summary."""
    s = incident.details.setdefault("storm", {})
    s["alarms"] = int(s.get("alarms", 0)) + 1
    by_type = s.setdefault("by_type", {})
    by_type[alarm.type] = int(by_type.get(alarm.type, 0)) + 1
    by_device = s.setdefault("by_device", {})
    by_device[alarm.device_id] = int(by_device.get(alarm.device_id, 0)) + 1
    keys = s.setdefault("keys", [])
    key = f"{alarm.device_id} {alarm.type}"
    if key not in keys:
        keys.append(key)
    s["folded_incidents"] = len(keys)
    ts = _iso(alarm.ts)
    if "first_alarm_at" not in s or alarm.ts < datetime.fromisoformat(s["first_alarm_at"]):
        s["first_alarm_at"] = ts
    if "last_alarm_at" not in s or alarm.ts > datetime.fromisoformat(s["last_alarm_at"]):
        s["last_alarm_at"] = ts
    s["last_folded_at"] = _iso(now)
    incident.alarm_count += 1
    incident.severity = max(incident.severity, alarm.severity)
    if incident.first_alarm_at is None or alarm.ts < incident.first_alarm_at:
        incident.first_alarm_at = alarm.ts
    if incident.last_alarm_at is None or alarm.ts > incident.last_alarm_at:
        incident.last_alarm_at = alarm.ts
    incident.updated_at = now


def last_folded_at(incident: Incident) -> datetime:
    """When an alarm last folded into a storm incident (processing time)."""
    s = incident.details.get("storm")
    if isinstance(s, dict) and s.get("last_folded_at"):
        return datetime.fromisoformat(s["last_folded_at"])
    return incident.updated_at


def due_topics(incident: Incident, topics: Iterable[str], now: datetime, interval_s: float) -> list[str]:
    """The topics a storm incident may notify now (none of them within the interval); marks them notified."""
    notified = incident.details.setdefault("notified", {})
    due = []
    for topic in topics:
        last = notified.get(topic)
        if last is None or (now - datetime.fromisoformat(last)).total_seconds() >= interval_s:
            due.append(topic)
            notified[topic] = _iso(now)
    return due


class StormGuard:
    """One batch's view of the grids' storm state: the store's counts plus what the batch does."""

    def __init__(self, config: CorrelationConfig, counts: Mapping[str, int], storms: Mapping[str, Incident], now: datetime) -> None:
        self.config = config
        self.now = now
        self.opened: dict[str, int] = dict(counts)
        self.storms: dict[str, Incident] = {g: i for g, i in storms.items() if i.is_open and i.type == STORM_TYPE}
        self.touched: set[str] = set()  # grids whose storm incident got an alarm in this batch

    def storm_of(self, grid: str) -> Incident | None:
        """The grid's open storm incident, if any."""
        return self.storms.get(grid)

    def active(self, grid: str | None) -> bool:
        """The grid's storm folded an alarm within the storm window (or in this batch)."""
        if grid is None:
            return False
        if grid in self.touched:
            return True
        storm = self.storms.get(grid)
        return storm is not None and last_folded_at(storm) >= self.now - self.config.storm_window

    def folds(self, grid: str | None) -> bool:
        """An alarm of `grid` that would open an incident folds into the grid's storm instead."""
        if grid is None or self.config.storm_max_incidents is None:
            return False
        return self.active(grid) or self.opened.get(grid, 0) >= self.config.storm_max_incidents

    def note_opened(self, grid: str | None) -> None:
        """Count an incident opened in `grid` by this batch."""
        if grid is not None:
            self.opened[grid] = self.opened.get(grid, 0) + 1

    def note_folded(self, grid: str, storm: Incident) -> None:
        """Record that `storm` (new or known) got an alarm of `grid` in this batch."""
        self.storms[grid] = storm
        self.touched.add(grid)
