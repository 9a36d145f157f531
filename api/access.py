"""Who may see what (design §8): the role and grid-scope rules every route applies. Pure: no I/O.

- `admin` sees and does everything.
- `commander` is bound to one grid and sees the incidents, devices, patrollers and events of that
  grid's subtree (by the stored route chain, not by code prefix); it acts on them as the command
  center of its grid's level (the workflow's own rules, `alerts.roles`, then decide each action).
- `patroller` sees the incidents assigned to it and those inside its geofence (the level-3 grids it
  patrols, main and backup), its own position and patroller events, the devices of its geofence.
- `planner` works on grid versions (and reads grids and evaluations); it sees no incidents.
- `device` only pushes over HTTP (`/ingest/*`).

Routes call these helpers with the request's `Principal` and raise `ForbiddenProblem` (403) on a
"no"; a resource outside the caller's scope is reported as not found (404) so that ids cannot be
probed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from api.auth import Principal
from geo.model import Grid, Patroller

PEOPLE = ("admin", "commander", "patroller", "planner")
"""Roles of people (everyone but `device`)."""
WATCHERS = ("admin", "commander")
"""Roles that watch the command-center data (incidents, devices, patrollers, dead letters of their scope)."""
FIELD = ("admin", "commander", "patroller")
"""Roles that see incidents (a patroller only its own and its geofence's)."""


class ForbiddenError(Exception):
    """The principal's role or scope does not allow this (map to 403); the message says what would."""


def require(principal: Principal, *roles: str) -> Principal:
    """The principal when its role is one of `roles`, else ForbiddenError."""
    if principal.role not in roles:
        raise ForbiddenError(f"role {principal.role!r} may not do this (allowed: {', '.join(roles)})")
    return principal


def chain(code: str, grids: Mapping[str, Grid]) -> list[str]:
    """The grid `code` and its ancestors, by parent_code (unknown codes: just the code itself)."""
    out: list[str] = []
    seen: set[str] = set()
    current: str | None = code
    while current is not None and current not in seen:
        out.append(current)
        seen.add(current)
        grid = grids.get(current)
        current = grid.parent_code if grid is not None else None
    return out


def in_scope(principal: Principal, code: str | None, grids: Mapping[str, Grid]) -> bool:
    """Whether grid `code` (any level) lies in the principal's subtree (admins: everywhere)."""
    if principal.role == "admin":
        return True
    if principal.role != "commander" or principal.grid is None or code is None:
        return False
    return principal.grid in chain(code, grids)


def grid_filter(principal: Principal, requested: str | None, grids: Mapping[str, Grid]) -> str | None:
    """The grid subtree a commander's query is limited to: its own grid, or `requested` when that lies
    inside it (ForbiddenError otherwise). Admins: `requested` as given."""
    if principal.role == "admin":
        return requested
    if principal.role != "commander" or principal.grid is None:
        raise ForbiddenError(f"role {principal.role!r} has no grid scope")
    if requested is None:
        return principal.grid
    if not in_scope(principal, requested, grids):
        raise ForbiddenError(f"grid {requested!r} is outside the subtree of grid {principal.grid}")
    return requested


def geofence(principal: Principal, patrollers: Iterable[Patroller]) -> frozenset[str]:
    """The level-3 grids a patroller principal patrols (main and backup); empty for other roles."""
    if principal.role != "patroller":
        return frozenset()
    for p in patrollers:
        if p.id == principal.patroller_id:
            return frozenset(p.grid_codes) | frozenset(p.backup_grid_codes)
    return frozenset()


@dataclass(frozen=True, slots=True)
class Scope:
    """What one principal may see, resolved once per request against the current grids and roster."""

    principal: Principal
    fence: frozenset[str] = frozenset()

    @classmethod
    def of(cls, principal: Principal, patrollers: Iterable[Patroller]) -> Scope:
        return cls(principal, geofence(principal, patrollers))

    def sees_route(self, l1: str | None, l2: str | None, l3: str | None, assignee: str | None = None) -> bool:
        """Whether an incident (or event) with this route chain and assignee is visible."""
        p = self.principal
        if p.role == "admin":
            return True
        if p.role == "commander":
            return p.grid is not None and p.grid in (l1, l2, l3)
        if p.role == "patroller":
            return (assignee is not None and assignee == p.patroller_id) or (l3 is not None and l3 in self.fence)
        return False

    def sees_incident(self, incident: Any) -> bool:
        """Whether an `alerts.model.Incident` is visible."""
        r = incident.route
        return self.sees_route(r.l1, r.l2, r.l3, incident.assignee)

    def sees_personal(self, incident: Any) -> bool:
        """Whether a reporter's contact details are shown: admins, the owning commanders, the assignee."""
        p = self.principal
        if p.role == "patroller":
            return incident.assignee is not None and incident.assignee == p.patroller_id
        return self.sees_incident(incident)

    def sees_grid_codes(self, codes: Iterable[str | None], grids: Mapping[str, Grid]) -> bool:
        """Whether something placed in any of these grids (e.g. a device's crossed grids) is visible."""
        p = self.principal
        if p.role == "admin":
            return True
        if p.role == "patroller":
            return any(c in self.fence for c in codes if c is not None)
        return any(in_scope(p, c, grids) for c in codes if c is not None)

    def sees_patroller(self, patroller: Patroller, grids: Mapping[str, Grid]) -> bool:
        """Admins: all; commanders: patrollers assigned (main or backup) inside their subtree; a patroller: itself."""
        p = self.principal
        if p.role == "patroller":
            return patroller.id == p.patroller_id
        return self.sees_grid_codes([*patroller.grid_codes, *patroller.backup_grid_codes], grids)

    def event_filter(self) -> Callable[[str, dict[str, Any], set[str]], bool]:
        """The live-stream filter of this principal: (kind, payload, grid codes of the event) → send it?"""
        p = self.principal

        def allow(kind: str, body: dict[str, Any], codes: set[str]) -> bool:
            if p.role == "admin":
                return True
            if p.role == "commander":
                return p.grid is not None and p.grid in codes
            if p.role == "patroller":
                if kind == "incident":
                    mine = p.patroller_id in (body.get("assignee"), body.get("previous_assignee"))
                    return mine or bool(codes & self.fence)
                if kind == "patroller":
                    return body.get("patroller_id") == p.patroller_id
                if kind == "device":
                    return bool(codes & self.fence)
                return False
            return False

        return allow
