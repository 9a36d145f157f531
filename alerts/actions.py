"""Operator and patroller actions on one incident: load, check the actor, apply the workflow, audit, notify — one transaction."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from alerts import roles, workflow
from alerts.errors import AlertsError, UnknownActionError
from alerts.intake import grid_topic, patroller_topic
from alerts.model import HistoryEntry, Incident, Notification
from alerts.roles import Actor
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


def center_topic(level: int, grid_code: str) -> str:
    """Outbound topic of the command center of `grid_code` at `level` (escalations, supervision)."""
    return f"gridwatch/centers/{level}/{grid_code}/incidents"


def perform(
    unit_of_work: Callable[[], AbstractContextManager[ActionUnitOfWork]],
    incident_id: str,
    action: str,
    *,
    actor: Actor | str,
    now: datetime,
    note: str | None = None,
    params: Mapping[str, Any] | None = None,
    sla: Any = None,
) -> ActionOutcome:
    """Apply `action` to incident `incident_id` atomically as `actor`.

    `actor` is an alerts.roles.Actor; a plain string is parsed leniently (old internal callers:
    "op" → system actor). Raises UnknownActionError, IncidentNotFoundError, ForbiddenActionError
    (roles), IllegalTransitionError / TransitionRefusedError (state), InvalidParamsError (params);
    nothing is written on error.
    """
    who = Actor.parse(actor, legacy=True)
    if action not in workflow.TRANSITIONS:
        raise UnknownActionError(f"action {action!r}: expected one of {', '.join(workflow.TRANSITIONS)}")
    with unit_of_work() as uow:
        incident = uow.get_incident(incident_id, for_update=True)
        if incident is None:
            raise IncidentNotFoundError(f"incident {incident_id!r} not found")
        roles.check(who, action, incident)
        assignee_before, level_before = incident.assignee, incident.escalation_level
        entry = workflow.apply(incident, action, actor=who, at=now, note=note, params=params, sla=sla)
        uow.save_incidents([incident])
        uow.add_history([entry])
        notes = notifications_for(incident, action, now, assignee_before=assignee_before, level_before=level_before)
        ids = uow.add_notifications(notes)
    return ActionOutcome(incident, entry, list(zip(ids, notes, strict=True)))


def notifications_for(
    incident: Incident, action: str, now: datetime, *, assignee_before: str | None, level_before: int
) -> list[Notification]:
    """The messages of one action: the grid topic, the assignee's phone (and the previous assignee's when
    it changed), and on escalate / supervise (or a difficulty that raised the owner) the owning center."""
    body = incident_dict(incident, now, event=action)
    if assignee_before is not None and assignee_before != incident.assignee:
        body["previous_assignee"] = assignee_before  # its phone (and its live view) learns the incident left it
    topics: list[str] = []
    if incident.route.l3 is not None:
        topics.append(grid_topic(incident.route.l3))
    for patroller in (incident.assignee, assignee_before):
        if patroller is not None:
            topics.append(patroller_topic(patroller))
    if action in ("escalate", "supervise") or incident.escalation_level != level_before:
        level = incident.escalation_level
        grid = {1: incident.route.l1, 2: incident.route.l2, 3: incident.route.l3}.get(level)
        if grid is not None:
            topics.append(center_topic(level, grid))
    return [Notification(topic, body) for topic in dict.fromkeys(topics)]
