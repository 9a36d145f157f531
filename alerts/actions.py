"""Operator and patroller actions on one incident: load, apply the workflow, audit, notify — one transaction."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from alerts import workflow
from alerts.errors import AlertsError
from alerts.intake import grid_topic, patroller_topic
from alerts.model import HistoryEntry, Incident, Notification
from alerts.views import incident_dict


class IncidentNotFoundError(AlertsError):
    """No incident has this id."""


class ActionUnitOfWork(Protocol):
    """The slice of store.ports.UnitOfWork the actions use."""

    def get_incident(self, incident_id: str, *, for_update: bool = False) -> Incident | None: ...
    def save_incidents(self, incidents: list[Incident]) -> None: ...
    def add_history(self, entries: list[HistoryEntry]) -> None: ...
    def add_notifications(self, notifications: list[Notification]) -> list[int]: ...


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """The incident after the action, its audit row, and the notifications queued."""

    incident: Incident
    entry: HistoryEntry
    notifications: list[tuple[int, Notification]]


def perform(
    unit_of_work: Callable[[], AbstractContextManager[ActionUnitOfWork]],
    incident_id: str,
    action: str,
    *,
    actor: str,
    now: datetime,
    note: str | None = None,
) -> ActionOutcome:
    """Apply `action` to incident `incident_id` atomically; raise IncidentNotFoundError / IllegalTransitionError."""
    with unit_of_work() as uow:
        incident = uow.get_incident(incident_id, for_update=True)
        if incident is None:
            raise IncidentNotFoundError(f"incident {incident_id!r} not found")
        entry = workflow.apply(incident, action, actor=actor, at=now, note=note)
        uow.save_incidents([incident])
        uow.add_history([entry])
        body = incident_dict(incident, now, event=action)
        notes = []
        if incident.route.l3 is not None:
            notes.append(Notification(grid_topic(incident.route.l3), body))
        if incident.assignee is not None:
            notes.append(Notification(patroller_topic(incident.assignee), body))
        ids = uow.add_notifications(notes)
    return ActionOutcome(incident, entry, list(zip(ids, notes, strict=True)))
