"""Patrollers and outbox counters (devices: api/routes/devices.py; dead letters: api/routes/deadletters.py)."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime, BaseModel, Field, field_validator

from api.access import FIELD, ForbiddenError, in_scope
from api.deps import RuntimeDep, ScopeDep, allow
from api.errors import InvalidQueryProblem, NotFoundProblem
from geo.model import Patroller, RosterException, Shift
from store import codec

router = APIRouter(tags=["registry"], dependencies=[Depends(allow(*FIELD))])


def patroller_dict(p: Patroller, local: datetime, pos: Any) -> dict[str, Any]:
    """A patroller with roster, duty status at `local` and last known position."""
    return {
        "id": p.id,
        "name": p.name,
        "phone": p.phone,
        "grid_codes": list(p.grid_codes),
        "backup_grid_codes": list(p.backup_grid_codes),
        "shifts": codec.shifts_to_json(p.shifts),
        "exceptions": [e.to_dict() for e in p.exceptions],
        "on_duty": p.on_duty(local),
        "position": None if pos is None else {"lon": pos.lon, "lat": pos.lat, "acc": pos.acc, "ts": pos.ts.isoformat()},
    }


@router.get("/patrollers")
def list_patrollers(
    rt: RuntimeDep,
    scope: ScopeDep,
    at: Annotated[AwareDatetime | None, Query(description="duty status at this time (default: now)")] = None,
    grid: Annotated[str | None, Query(description="assigned (or backup) to this level-3 grid")] = None,
    on_duty: Annotated[bool | None, Query(description="only patrollers on (or off) duty at `at`")] = None,
) -> dict[str, Any]:
    """Patrollers with assignments, rosters, duty status (now or `at`) and last known position: a commander's
    are those assigned inside its subtree, a patroller sees itself."""
    local = (at or rt.now()).astimezone(rt.router.tz)
    positions = rt.store.positions()
    items = [
        patroller_dict(p, local, positions.get(p.id))
        for p in rt.patrollers
        if scope.sees_patroller(p, rt.grid_by_code)
        and (grid is None or grid in p.grid_codes or grid in p.backup_grid_codes)
        and (on_duty is None or p.on_duty(local) == on_duty)
    ]
    return {"count": len(items), "at": local.isoformat(), "items": items}


class ShiftBody(BaseModel):
    """A weekly slot: on duty on `weekdays` (0 = Monday) from `start` to `end` (end ≤ start: overnight)."""

    weekdays: list[int] = Field(min_length=1, max_length=7)
    start: time
    end: time

    @field_validator("weekdays")
    @classmethod
    def _days(cls, v: list[int]) -> list[int]:
        if any(d < 0 or d > 6 for d in v):
            raise ValueError("weekdays: expected numbers 0 (Monday) … 6 (Sunday)")
        return v


class ExceptionBody(BaseModel):
    """A dated exception: off that day, or on for a special shift that day."""

    day: date
    on: bool
    start: time | None = None
    end: time | None = None


class RosterBody(BaseModel):
    """Body of PUT /patrollers/{id}/roster (replaces the roster)."""

    shifts: list[ShiftBody] = Field(default_factory=list, max_length=50)
    exceptions: list[ExceptionBody] = Field(default_factory=list, max_length=400)
    backup_grid_codes: list[str] = Field(default_factory=list, max_length=50)


@router.put("/patrollers/{patroller_id}/roster")
def put_roster(rt: RuntimeDep, scope: ScopeDep, patroller_id: str, body: RosterBody) -> dict[str, Any]:
    """Replace a patroller's weekly shifts, dated exceptions and backup grids; routing uses them at once.
    Admins, and commanders for patrollers of their subtree (backup grids inside it too)."""
    principal = scope.principal
    if principal.role not in ("admin", "commander"):
        raise ForbiddenError(f"role {principal.role!r} may not change rosters")
    current = next((p for p in rt.patrollers if p.id == patroller_id), None)
    if current is not None and not scope.sees_patroller(current, rt.grid_by_code):
        raise NotFoundProblem(f"patroller {patroller_id!r} not found")
    if current is not None and not all(in_scope(principal, c, rt.grid_by_code) for c in current.grid_codes):
        raise ForbiddenError(f"patroller {patroller_id!r} is assigned outside the subtree of grid {principal.grid}: "
                             "its roster is set by the commander of its own grids (or an admin)")
    outside = [c for c in body.backup_grid_codes if not in_scope(principal, c, rt.grid_by_code)]
    if outside:
        raise ForbiddenError(f"backup_grid_codes: {', '.join(outside)} lie outside the subtree of grid {principal.grid}")
    unknown = [c for c in body.backup_grid_codes if c not in rt.grid_by_code or rt.grid_by_code[c].level != 3]
    if unknown:
        raise InvalidQueryProblem(f"backup_grid_codes: {', '.join(unknown)} are not level-3 grids of the current version")
    try:
        exceptions = [RosterException(e.day, e.on, e.start, e.end) for e in body.exceptions]
    except ValueError as exc:
        raise InvalidQueryProblem(f"exceptions: {exc}") from None
    shifts = [Shift(frozenset(s.weekdays), s.start, s.end) for s in body.shifts]
    if not rt.store.set_roster(patroller_id, shifts=shifts, exceptions=exceptions, backup_grid_codes=body.backup_grid_codes):
        raise NotFoundProblem(f"patroller {patroller_id!r} not found")
    rt.refresh_patrollers()
    p = next(p for p in rt.patrollers if p.id == patroller_id)
    return patroller_dict(p, rt.now().astimezone(rt.router.tz), rt.store.positions().get(p.id))


@router.get("/notifications/counters", dependencies=[Depends(allow("admin"))])
def notification_counters(rt: RuntimeDep) -> dict[str, int]:
    """Outbox delivery counters."""
    return rt.store.notification_counters()
