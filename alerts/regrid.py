"""Re-attributing open incidents when a new grid version is published (policy `move`).

An incident keeps the route (and grid version id) it was routed with unless the planner publishes
with policy `move`: then every open incident whose point now lies in another level-3 grid is routed
again with the new version's router, hands over to that grid's responsible patroller (or its
command center), and gets a `regrid` audit row naming the old and new grid, owner and version.
Incidents whose grid does not change keep everything, including their version id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, Protocol

from alerts.intake import grid_topic, patroller_topic
from alerts.model import HistoryEntry, Incident, Notification
from alerts.routing import HasLonLat, Router
from alerts.views import incident_dict

REGRID_ACTION = "regrid"
Policy = Literal["keep", "move"]
POLICIES: tuple[Policy, ...] = ("keep", "move")


class RegridUnitOfWork(Protocol):
    """The slice of store.ports.UnitOfWork a re-attribution writes through."""

    def get_incident(self, incident_id: str, *, for_update: bool = False) -> Incident | None: ...
    def save_incidents(self, incidents: Sequence[Incident]) -> None: ...
    def add_history(self, entries: Sequence[HistoryEntry]) -> None: ...
    def add_notifications(self, notifications: Sequence[Notification]) -> list[int]: ...


@dataclass(frozen=True, slots=True)
class RegridOutcome:
    """One moved incident: its new state, the audit row and the messages to send."""

    incident: Incident
    entry: HistoryEntry
    notifications: list[Notification]
    from_grid: str | None
    to_grid: str | None


def regrid(
    incident: Incident, router: Router, *, now: datetime, actor: str, positions: Mapping[str, HasLonLat]
) -> RegridOutcome | None:
    """Move an open incident to the grid holding its point in the router's version (None: nothing moves)."""
    if not incident.is_open:
        return None
    old = incident.route
    new = router.route(old.lon, old.lat, point_source=old.point_source, at=now, positions=positions)
    if new.l3 == old.l3:
        return None
    new = replace(new, rule=f"regrid/{new.rule}")
    previous_owner = incident.assignee
    incident.route = new
    if previous_owner is not None or incident.dispatched_at is not None:
        incident.assignee = new.patroller_id
    incident.updated_at = now
    note = (
        f"grid {old.l3} → {new.l3} (grid version {old.grid_version} → {new.grid_version});"
        f" owner {previous_owner or 'command center'} → {incident.assignee or 'command center'}"
    )
    entry = HistoryEntry(incident.id, now, REGRID_ACTION, incident.state, incident.state, actor, note)
    body = incident_dict(incident, now, event=REGRID_ACTION)
    topics = [grid_topic(c) for c in (old.l3, new.l3) if c is not None]
    topics += [patroller_topic(p) for p in dict.fromkeys((previous_owner, incident.assignee)) if p is not None]
    return RegridOutcome(incident, entry, [Notification(t, body) for t in topics], old.l3, new.l3)


def regrid_in(
    uow: RegridUnitOfWork, incident_id: str, router: Router, *, now: datetime, actor: str,
    positions: Mapping[str, HasLonLat], unless_version: int | None = None,
) -> RegridOutcome | None:
    """Lock an incident, re-route it with `router` and write the move (row, audit, notifications).

    `unless_version`: leave it alone when it was already routed with that grid version.
    """
    incident = uow.get_incident(incident_id, for_update=True)
    if incident is None or (unless_version is not None and incident.route.grid_version == unless_version):
        return None
    outcome = regrid(incident, router, now=now, actor=actor, positions=positions)
    if outcome is not None:
        uow.save_incidents([outcome.incident])
        uow.add_history([outcome.entry])
        uow.add_notifications(outcome.notifications)
    return outcome
