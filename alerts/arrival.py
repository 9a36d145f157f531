"""Patroller geofences (design §6b): "arrived" at an incident, and exit/enter events between grids.

Pure logic over a patroller's GPS fixes; the caller persists arrived_at and publishes events.

Arrival rule (dwell + hysteresis against GPS jitter). For each incident assigned to the patroller,
in state `dispatched` or `acknowledged`, not yet arrived, with d = distance from the fix to the
incident's point (incident.route lon/lat) and a = min(fix accuracy, radius_m) (0 when unknown):
- a dwell *starts* on a fix with d <= radius_m (the fix itself is inside the buffer);
- a dwell *continues* while d - a <= radius_m: a fix that is outside only by its own reported error
  does not count as leaving, so a patroller standing at the edge, whose fixes jitter across it,
  keeps their dwell; the error allowance is capped at radius_m so a vague fix cannot stretch the
  buffer far;
- a fix with d - a > radius_m (clearly outside) ends the dwell; re-entering starts a new one;
- the incident is *arrived* at the first fix, at least `dwell_s` after the fix that started the
  dwell, that continues it (so at least two fixes, dwell_s apart, none clearly outside between).
Fixes with accuracy worse than `max_accuracy_m` are ignored (they neither count nor break a dwell);
so are fixes not newer than the patroller's last accepted one (out of order or repeated). Each
incident is reported once per tracker (call `forget` when an incident is reopened and must be
tracked again). The arrival time to store is Arrival.entered_at (the fix that started the dwell).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from alerts.model import Incident, IncidentState
from alerts.routing import distance_m

#: States in which a patroller is on their way to the incident.
EN_ROUTE_STATES = frozenset({IncidentState.DISPATCHED, IncidentState.ACKNOWLEDGED})


@dataclass(frozen=True, slots=True)
class Arrival:
    """A patroller confirmed at an incident: inside since `entered_at`, confirmed at `confirmed_at`."""

    incident_id: str
    patroller_id: str
    entered_at: datetime
    confirmed_at: datetime
    distance_m: float  # of the confirming fix


@dataclass(slots=True)
class _Dwell:
    entered_at: datetime
    fixes: int = 1


@dataclass(slots=True)
class _PatrollerState:
    last_ts: datetime | None = None
    dwells: dict[str, _Dwell] = field(default_factory=dict)  # incident id -> current dwell


class ArrivalTracker:
    """Turns a stream of GPS fixes into "arrived" events (see the module docstring for the rule)."""

    def __init__(self, radius_m: float = 50.0, dwell_s: float = 20.0, max_accuracy_m: float = 100.0) -> None:
        if radius_m <= 0 or dwell_s < 0 or max_accuracy_m <= 0:
            raise ValueError("radius_m and max_accuracy_m must be > 0, dwell_s >= 0")
        self.radius_m = float(radius_m)
        self.dwell_s = float(dwell_s)
        self.max_accuracy_m = float(max_accuracy_m)
        self._patrollers: dict[str, _PatrollerState] = {}
        self._reported: set[str] = set()

    def observe(
        self,
        patroller_id: str,
        lon: float,
        lat: float,
        ts: datetime,
        acc: float | None,
        incidents: Sequence[Incident],
    ) -> list[str]:
        """Feed one fix; return the ids of incidents the patroller has now arrived at (input order)."""
        return [a.incident_id for a in self.observe_arrivals(patroller_id, lon, lat, ts, acc, incidents)]

    def observe_arrivals(
        self,
        patroller_id: str,
        lon: float,
        lat: float,
        ts: datetime,
        acc: float | None,
        incidents: Sequence[Incident],
    ) -> list[Arrival]:
        """Like observe(), with the entry and confirmation times of each arrival.

        `incidents` may hold any incidents: only those assigned to `patroller_id`, in state
        dispatched/acknowledged and with arrived_at None are tracked; dwells of incidents missing
        from `incidents` (or no longer eligible) are dropped.
        """
        if acc is not None and acc > self.max_accuracy_m:
            return []
        state = self._patrollers.setdefault(patroller_id, _PatrollerState())
        if state.last_ts is not None and ts <= state.last_ts:
            return []
        state.last_ts = ts
        slack = 0.0 if acc is None else min(max(acc, 0.0), self.radius_m)
        dwells: dict[str, _Dwell] = {}
        out: list[Arrival] = []
        for inc in incidents:
            if (
                inc.assignee != patroller_id
                or inc.state not in EN_ROUTE_STATES
                or inc.arrived_at is not None
                or inc.id in self._reported
                or inc.id in dwells
            ):
                continue
            d = distance_m(lon, lat, inc.route.lon, inc.route.lat)
            dwell = state.dwells.get(inc.id)
            if dwell is None:
                if d <= self.radius_m:
                    dwells[inc.id] = _Dwell(ts)
                continue
            if d - slack > self.radius_m:
                continue  # clearly outside: the dwell ends
            dwell.fixes += 1
            if dwell.fixes >= 2 and (ts - dwell.entered_at).total_seconds() >= self.dwell_s:
                self._reported.add(inc.id)
                out.append(Arrival(inc.id, patroller_id, dwell.entered_at, ts, d))
            else:
                dwells[inc.id] = dwell
        state.dwells = dwells
        return out

    def sync(self, incidents: Iterable[Incident]) -> None:
        """Re-arm incidents that are not arrived any more (re-dispatched, or an arrival that was not stored)."""
        for inc in incidents:
            if inc.arrived_at is None and inc.id in self._reported:
                self.forget(inc.id)
        if len(self._reported) > 100_000:  # closed incidents are never seen again: keep the set bounded
            self._reported.clear()

    def forget(self, incident_id: str) -> None:
        """Track an incident again (e.g. reopened for rework): clear its dwells and its report."""
        self._reported.discard(incident_id)
        for state in self._patrollers.values():
            state.dwells.pop(incident_id, None)

    def forget_patroller(self, patroller_id: str) -> None:
        """Drop a patroller's state (off duty, removed)."""
        self._patrollers.pop(patroller_id, None)


GridEvent = tuple[str, str]  # ("exit", grid_code) | ("enter", grid_code)


class GridPresence:
    """Which level-3 grid each patroller is in; a change yields exit (old) before enter (new).

    `None` means outside every grid: leaving the district yields only an exit, coming back only an
    enter. Out-of-order fixes (when `ts` is given and not newer than the last one) are ignored.
    """

    def __init__(self) -> None:
        self._where: dict[str, str | None] = {}
        self._last_ts: dict[str, datetime] = {}

    def current(self, patroller_id: str) -> str | None:
        """The grid the patroller was last located in (None: unknown or outside)."""
        return self._where.get(patroller_id)

    def update(self, patroller_id: str, grid_code: str | None, ts: datetime | None = None) -> list[GridEvent]:
        """Record the patroller's located grid; return the events, exit first."""
        if ts is not None:
            last = self._last_ts.get(patroller_id)
            if last is not None and ts <= last:
                return []
            self._last_ts[patroller_id] = ts
        old = self._where.get(patroller_id)
        if grid_code == old:
            return []
        self._where[patroller_id] = grid_code
        events: list[GridEvent] = []
        if old is not None:
            events.append(("exit", old))
        if grid_code is not None:
            events.append(("enter", grid_code))
        return events

    def replay(self, patroller_id: str, grid_codes: Iterable[str | None]) -> Iterator[GridEvent]:
        """Yield the events of successive located grids, in order."""
        for code in grid_codes:
            yield from self.update(patroller_id, code)
