"""Who may act on an incident (design §1, §6, §8): command centers, patrollers, handling units, the system.

Pure: no I/O. The actor text is self-declared in the HTTP body until auth lands (then the token's role
and grid scope produce the same `Actor`).

- A command center ``center:<level>:<grid_code>`` is bound to one grid of level 1–3 and everything below
  it. It acts on incidents of its subtree (its code is the route's grid of its level) when it is at or
  above the owning level (``actor.level <= incident.escalation_level``) and at or above the lowest level
  the difficulty colour (五色) allows to own the incident.
- A patroller ``patroller:<id>`` only does handler actions, only on incidents assigned to it.
- A handling unit ``unit:<name>`` likewise, on incidents dispatched to it.
- A system actor ``system:<name>`` (auto-dispatch, the SLA scheduler, …) may do anything.

A center may also do handler actions on an incident that has neither an assignee nor a unit: then the
center handles it itself (no patroller was on duty, or it was returned to the center).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from alerts.errors import AlertsError
from alerts.model import Incident
from alerts.workflow import DIFFICULTY_LEVEL

ActorKind = Literal["center", "patroller", "unit", "system"]
KINDS: tuple[str, ...] = ("center", "patroller", "unit", "system")

#: Actions of the one handling the incident on the spot (patroller or handling unit).
HANDLER_ACTIONS = frozenset({"acknowledge", "arrive", "return", "request_extension", "resolve"})
#: Actions only a command center (or the system) may take.
CENTER_ACTIONS = frozenset(
    {
        "verify", "register", "dispatch", "park", "resume", "approve_extension", "reject_extension", "check",
        "rework", "close", "call_back", "archive", "cancel", "escalate", "supervise", "remind", "set_track",
        "set_difficulty",
    }
)

#: Actions only the system takes (clear: a device-status incident whose cause went away).
SYSTEM_ACTIONS = frozenset({"clear"})

_ID = re.compile(r"^[0-9A-Za-z_.@-][0-9A-Za-z_.@:-]{0,99}$")
_GRID = re.compile(r"^[0-9A-Za-z_.-]{1,64}$")


class InvalidActorError(AlertsError, ValueError):
    """The actor text is not one of the accepted forms (map to 422, field `actor`)."""


class ForbiddenActionError(AlertsError):
    """The actor may not take this action on this incident (map to 403)."""

    def __init__(self, actor: Actor, action: str, incident_id: str, reason: str) -> None:
        self.actor = str(actor)
        self.action = action
        self.incident_id = incident_id
        self.reason = reason
        super().__init__(f"incident {incident_id}: {self.actor} may not {action!r}: {reason}")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: kind, id (patroller id, unit name, system name, or the center's grid code), level, grid."""

    kind: ActorKind
    id: str
    level: int | None = None
    grid: str | None = None

    def __str__(self) -> str:
        if self.kind == "center":
            return f"center:{self.level}:{self.grid}"
        return f"{self.kind}:{self.id}"

    @classmethod
    def center(cls, level: int, grid: str) -> Actor:
        """A command center of `level` bound to `grid`."""
        return cls("center", grid, level, grid)

    @classmethod
    def parse(cls, text: str | Actor, *, legacy: bool = False) -> Actor:
        """Parse "center:<level>:<grid>", "patroller:<id>", "unit:<name>" or "system:<name>".

        With `legacy=True` (old internal callers only) any other text, e.g. "auto" or "op", becomes
        a system actor of that name. The API parses strictly: anything else raises InvalidActorError.
        """
        if isinstance(text, Actor):
            return text
        if not isinstance(text, str):
            raise InvalidActorError(f"actor: expected a string, got {type(text).__name__}")
        kind, sep, rest = text.partition(":")
        if sep and kind in KINDS:
            if kind == "center":
                level_text, sep2, grid = rest.partition(":")
                if not sep2 or level_text not in ("1", "2", "3") or not _GRID.match(grid):
                    raise InvalidActorError(
                        f"actor {text!r}: a command center is 'center:<level 1-3>:<grid code>'"
                    )
                return cls.center(int(level_text), grid)
            if not _ID.match(rest):
                raise InvalidActorError(f"actor {text!r}: '{kind}:' needs an id of letters, digits and _.-@:")
            return cls(kind, rest)  # type: ignore[arg-type]
        if legacy and text.strip():
            return cls("system", text)
        raise InvalidActorError(
            f"actor {text!r}: expected 'center:<level>:<grid code>', 'patroller:<id>', 'unit:<name>' or 'system:<name>'"
        )


def lowest_owner_level(incident: Incident) -> int:
    """The lowest (largest number) command level allowed to own the incident by its difficulty colour."""
    return DIFFICULTY_LEVEL.get(incident.difficulty or "", 3)


def why_not(actor: Actor, action: str, incident: Incident) -> str | None:
    """None when `actor` may take `action` on `incident`, else the reason it may not."""
    if actor.kind == "system":
        return None
    if action in SYSTEM_ACTIONS:
        return f"only the system may {action!r}"
    if action not in HANDLER_ACTIONS and action not in CENTER_ACTIONS:
        return f"unknown action {action!r}"
    if actor.kind in ("patroller", "unit"):
        if action not in HANDLER_ACTIONS:
            return f"only a command center may {action!r}"
        mine = incident.assignee if actor.kind == "patroller" else incident.unit
        if mine != actor.id:
            whose = mine or "nobody"
            return f"the incident is assigned to {actor.kind} {whose}, not {actor.id}"
        return None
    # a command center
    if actor.level is None or actor.grid is None:
        return "a command center needs a level and a grid"
    route = incident.route
    own = {1: route.l1, 2: route.l2, 3: route.l3}.get(actor.level)
    if own != actor.grid:
        return f"the incident (grid {route.l3}) is outside the subtree of grid {actor.grid}"
    if actor.level > incident.escalation_level:
        return f"the incident is owned at level {incident.escalation_level}; a level-{actor.level} center cannot act on it"
    needed = lowest_owner_level(incident)
    if actor.level > needed:
        return f"difficulty {incident.difficulty} needs a level-{needed} center or above"
    if action in HANDLER_ACTIONS and (incident.assignee is not None or incident.unit is not None):
        handler = f"patroller {incident.assignee}" if incident.assignee else f"unit {incident.unit}"
        return f"{action!r} is for the handler ({handler})"
    return None


def may_act(actor: Actor, action: str, incident: Incident) -> bool:
    """Whether `actor` may take `action` on `incident` (see the module docstring)."""
    return why_not(actor, action, incident) is None


def check(actor: Actor, action: str, incident: Incident) -> None:
    """Raise ForbiddenActionError unless `actor` may take `action` on `incident`."""
    reason = why_not(actor, action, incident)
    if reason is not None:
        raise ForbiddenActionError(actor, action, incident.id, reason)
