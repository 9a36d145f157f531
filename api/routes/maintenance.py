"""Maintenance windows: alarms of a grid or building inside one are recorded but open no incident (design §6b)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime, BaseModel, Field, model_validator

from alerts.maintenance import MaintenanceWindow
from api.access import WATCHERS, ForbiddenError, chain, in_scope
from api.auth import Principal
from api.deps import PrincipalDep, RuntimeDep, allow
from api.errors import InvalidQueryProblem, NotFoundProblem
from store.ports import StoredWindow

router = APIRouter(tags=["maintenance"], dependencies=[Depends(allow(*WATCHERS))])


class WindowCreate(BaseModel):
    """Body of POST /maintenance-windows: a grid code (any level, with its subtree) and/or a building."""

    grid_code: str | None = Field(None, pattern=r"^[0-9A-Za-z_.:-]{1,64}$")
    building: str | None = Field(None, pattern=r"^[0-9A-Za-z_.:-]{1,64}$")
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    reason: str = Field(min_length=1, max_length=500)
    actor: str | None = Field(None, max_length=100, description="ignored: the window is recorded as created by the login")

    @model_validator(mode="after")
    def _check(self) -> WindowCreate:
        if self.grid_code is None and self.building is None:
            raise ValueError("grid_code or building: expected at least one")
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at: expected a time after starts_at")
        return self


def window_dict(w: StoredWindow) -> dict[str, Any]:
    """A stored window as JSON."""
    return {"id": w.id, "grid_code": w.window.grid_code, "building": w.window.building,
            "starts_at": w.window.starts_at.isoformat(), "ends_at": w.window.ends_at.isoformat(),
            "reason": w.window.reason, "created_by": w.created_by}


@router.post("/maintenance-windows", status_code=201)
def create_window(rt: RuntimeDep, principal: PrincipalDep, body: WindowCreate) -> dict[str, Any]:
    """Mute alarms of a grid subtree or a building for a while (they are still stored, with the reason).
    A commander sets windows on grids of its subtree only (and names the grid with a building)."""
    if body.grid_code is not None and body.grid_code not in rt.grid_by_code:
        raise NotFoundProblem(f"grid_code {body.grid_code!r} is not a grid of the current version")
    building_grid = None
    if body.building is not None:
        building_grid = _building_grids(rt).get(body.building)
        if building_grid is None:
            raise NotFoundProblem(f"building {body.building!r} is not a building of the current version")
        if body.grid_code is not None and body.grid_code not in chain(building_grid, rt.grid_by_code):
            raise InvalidQueryProblem(f"building {body.building!r} lies in grid {building_grid}, outside grid_code {body.grid_code!r}")
    if principal.role == "commander":
        for what, code in (("grid_code", body.grid_code), ("building", building_grid)):
            if code is not None and not in_scope(principal, code, rt.grid_by_code):
                raise ForbiddenError(f"{what}: a commander sets windows inside the subtree of grid {principal.grid} only")
    window = MaintenanceWindow(body.grid_code, body.building, body.starts_at, body.ends_at, body.reason)
    window_id = rt.store.add_maintenance_window(window, actor=f"user:{principal.username}")
    rt.refresh_maintenance()
    return window_dict(next(w for w in rt.store.maintenance_windows() if w.id == window_id))


@router.get("/maintenance-windows")
def list_windows(rt: RuntimeDep, principal: PrincipalDep,
                 active: Annotated[bool, Query(description="only windows not over yet")] = True) -> list[dict[str, Any]]:
    """Maintenance windows by start (a commander's: those on grids of its subtree)."""
    buildings = _building_grids(rt) if principal.role != "admin" else {}
    return [window_dict(w) for w in rt.store.maintenance_windows(active_from=rt.now() if active else None)
            if _sees(principal, rt, w, buildings)]


def _building_grids(rt: Any) -> dict[str, str]:
    """Building code → its level-3 grid, in the current version (maintenance windows are few: no cache)."""
    return {b.code: b.grid_code for b in rt.store.buildings()}


def _sees(principal: Principal, rt: Any, w: StoredWindow, buildings: dict[str, str] | None = None) -> bool:
    """Admins: every window; a commander: those on a grid or a building of its subtree."""
    if principal.role == "admin":
        return True
    if w.window.grid_code is not None:
        return in_scope(principal, w.window.grid_code, rt.grid_by_code)
    grid = (buildings if buildings is not None else _building_grids(rt)).get(w.window.building or "")
    return in_scope(principal, grid, rt.grid_by_code)


@router.post("/maintenance-windows/{window_id}/end")
def end_window(rt: RuntimeDep, principal: PrincipalDep, window_id: int) -> dict[str, Any]:
    """End a window now (one that has not started is removed)."""
    if not any(w.id == window_id and _sees(principal, rt, w) for w in rt.store.maintenance_windows()):
        raise NotFoundProblem(f"maintenance window {window_id} is not running or scheduled")
    if not rt.store.end_maintenance_window(window_id, rt.now()):
        raise NotFoundProblem(f"maintenance window {window_id} is not running or scheduled")
    rt.refresh_maintenance()
    return {"id": window_id, "ended_at": rt.now().isoformat()}
