"""The SLA scheduler's pure core (design §6): lights, reminders 催办 and escalation 督办.

`sweep` runs every few seconds over the open incidents and says, per incident that needs it, what
to save, which audit rows to append and what to publish:

- light changed since `incident.light` → `incident.light` updated and an event "light" on the
  grid topic (and, for yellow/red, the assignee's phone: "notify handler and its center").
  A clock that stopped (light None) is recorded silently: its transition already announced it.
- red (overdue), once per red period (a red period ends when the deadline moves: resume,
  extension, a new stage) → reminder 催办: `reminded_at`, a "remind" row by "system:sla",
  an event "remind" to the assignee and the grid.
- red for another full stage limit after the deadline (on the type's calendar) → escalate one
  command level up (3 community → 2 street → 1 district, never past 1), supervised 督办,
  `escalated_at`, rows "escalate" + "supervise", an event "escalate" to the grid and to the new
  owning center `gridwatch/centers/{level}/{grid code of that level}/incidents`. A further full
  limit after an escalation escalates again. At level 1 the incident is supervised once instead.

A paused (parked) clock neither reminds nor escalates. Pure: no I/O, `now` is an argument.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from alerts import sla
from alerts.intake import grid_topic, patroller_topic
from alerts.model import HistoryEntry, Incident, Light, Notification
from alerts.views import incident_dict

__all__ = ["ACTOR", "SweepEffect", "center_topic", "sweep"]

ACTOR = "system:sla"
TOP_LEVEL = 1


@dataclass(slots=True)
class SweepEffect:
    """What one sweep did to one incident: save it (`changed`), append `history`, queue `notifications`."""

    incident: Incident
    history: list[HistoryEntry] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    changed: bool = False


def center_topic(level: int, grid_code: str) -> str:
    """Outbound topic of the command center of `level` (1 district, 2 street, 3 community) for a grid code."""
    return f"gridwatch/centers/{level}/{grid_code}/incidents"


def _level_code(incident: Incident, level: int) -> str | None:
    route = incident.route
    return {1: route.l1, 2: route.l2, 3: route.l3}.get(level)


def _payload(incident: Incident, now: datetime, event: str, **extra: Any) -> dict[str, Any]:
    body = incident_dict(incident, now, event=event)
    body["light"] = incident.light  # as computed with the sweep's config
    body.setdefault("escalation_level", incident.escalation_level)
    body.setdefault("supervised", incident.supervised)
    for k, v in extra.items():
        body.setdefault(k, v)
    return body


def _grid(incident: Incident, body: dict[str, Any]) -> list[Notification]:
    return [Notification(grid_topic(incident.route.l3), body)] if incident.route.l3 is not None else []


def _assignee(incident: Incident, body: dict[str, Any]) -> list[Notification]:
    return [Notification(patroller_topic(incident.assignee), body)] if incident.assignee is not None else []


def sweep(incidents: Iterable[Incident], now: datetime, config: sla.SlaConfig | None = None) -> list[SweepEffect]:
    """One scheduler pass over open incidents at `now`; incidents mutated in place, one effect each changed."""
    config = sla.active(config)
    effects: list[SweepEffect] = []
    for incident in incidents:
        effect = _sweep_one(incident, now, config)
        if effect is not None:
            effects.append(effect)
    return effects


def _sweep_one(incident: Incident, now: datetime, config: sla.SlaConfig) -> SweepEffect | None:
    if not incident.is_open:
        return None
    current = sla.light(incident, now, config)
    value = current.value if current is not None else None
    effect: SweepEffect | None = None

    if value != incident.light:
        incident.light = value
        effect = SweepEffect(incident, changed=True)
        if current is not None:
            body = _payload(incident, now, "light")
            effect.notifications.extend(_grid(incident, body))
            if current is not Light.GREEN:
                effect.notifications.extend(_assignee(incident, body))

    if current is not Light.RED or incident.paused_at is not None:
        return effect
    clock = sla.clock(incident, config)
    if clock is None:  # pragma: no cover - a light implies a clock
        return effect
    calendar, deadline, limit = clock
    effect = effect or SweepEffect(incident)

    # 催办: once per red period (the period of the current deadline)
    if incident.reminded_at is None or incident.reminded_at < deadline:
        incident.reminded_at = now
        incident.updated_at = now
        effect.changed = True
        effect.history.append(
            HistoryEntry(incident.id, now, "remind", incident.state, incident.state, ACTOR,
                         f"overdue since {deadline.isoformat()}")
        )
        body = _payload(incident, now, "remind")
        effect.notifications.extend(_assignee(incident, body))
        effect.notifications.extend(_grid(incident, body))

    # 督办 / escalation: a full limit after the deadline, then a full limit after the last escalation
    escalated_this_period = incident.escalated_at is not None and incident.escalated_at >= deadline
    base = incident.escalated_at if escalated_this_period else deadline
    assert base is not None
    if limit > timedelta(0) and calendar.elapsed(base, now) >= limit:
        if incident.escalation_level > TOP_LEVEL:
            _escalate(incident, now, effect)
        elif not incident.supervised:
            _supervise_at_top(incident, now, effect)
    return effect if effect.changed else None


def _escalate(incident: Incident, now: datetime, effect: SweepEffect) -> None:
    old = incident.escalation_level
    new = max(TOP_LEVEL, old - 1)
    incident.escalation_level = new
    incident.supervised = True
    incident.escalated_at = now
    incident.updated_at = now
    effect.changed = True
    effect.history.append(
        HistoryEntry(incident.id, now, "escalate", incident.state, incident.state, ACTOR,
                     f"overdue: escalated from level {old} to level {new}")
    )
    effect.history.append(
        HistoryEntry(incident.id, now, "supervise", incident.state, incident.state, ACTOR,
                     f"supervised by the level {new} center")
    )
    body = _payload(incident, now, "escalate", previous_level=old)
    effect.notifications.extend(_grid(incident, body))
    code = _level_code(incident, new)
    if code is not None:
        effect.notifications.append(Notification(center_topic(new, code), body))


def _supervise_at_top(incident: Incident, now: datetime, effect: SweepEffect) -> None:
    """Already owned by the district (level 1): no level above, so 督办 only, once."""
    incident.supervised = True
    incident.escalated_at = now
    incident.updated_at = now
    effect.changed = True
    effect.history.append(
        HistoryEntry(incident.id, now, "supervise", incident.state, incident.state, ACTOR,
                     f"overdue at the top level: supervised by the level {TOP_LEVEL} center")
    )
    body = _payload(incident, now, "escalate", previous_level=TOP_LEVEL)
    effect.notifications.extend(_grid(incident, body))
    code = _level_code(incident, TOP_LEVEL)
    if code is not None:
        effect.notifications.append(Notification(center_topic(TOP_LEVEL, code), body))
