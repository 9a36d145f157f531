"""Maintenance windows: alarms of a grid or building inside one are recorded but open no incident (design §6b)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field, model_validator

from alerts.maintenance import MaintenanceWindow
from api.deps import RuntimeDep
from api.errors import NotFoundProblem
from store.ports import StoredWindow

router = APIRouter(tags=["maintenance"])


class WindowCreate(BaseModel):
    """Body of POST /maintenance-windows: a grid code (any level, with its subtree) and/or a building."""

    grid_code: str | None = Field(None, pattern=r"^[0-9A-Za-z_.:-]{1,64}$")
    building: str | None = Field(None, pattern=r"^[0-9A-Za-z_.:-]{1,64}$")
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    reason: str = Field(min_length=1, max_length=500)
    actor: str = Field("api", min_length=1, max_length=100)

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
def create_window(rt: RuntimeDep, body: WindowCreate) -> dict[str, Any]:
    """Mute alarms of a grid subtree or a building for a while (they are still stored, with the reason)."""
    if body.grid_code is not None and body.grid_code not in rt.grid_by_code:
        raise NotFoundProblem(f"grid_code {body.grid_code!r} is not a grid of the current version")
    window = MaintenanceWindow(body.grid_code, body.building, body.starts_at, body.ends_at, body.reason)
    window_id = rt.store.add_maintenance_window(window, actor=body.actor)
    rt.refresh_maintenance()
    return window_dict(next(w for w in rt.store.maintenance_windows() if w.id == window_id))


@router.get("/maintenance-windows")
def list_windows(rt: RuntimeDep, active: Annotated[bool, Query(description="only windows not over yet")] = True) -> list[dict[str, Any]]:
    """Maintenance windows by start."""
    return [window_dict(w) for w in rt.store.maintenance_windows(active_from=rt.now() if active else None)]


@router.post("/maintenance-windows/{window_id}/end")
def end_window(rt: RuntimeDep, window_id: int) -> dict[str, Any]:
    """End a window now (one that has not started is removed)."""
    if not rt.store.end_maintenance_window(window_id, rt.now()):
        raise NotFoundProblem(f"maintenance window {window_id} is not running or scheduled")
    rt.refresh_maintenance()
    return {"id": window_id, "ended_at": rt.now().isoformat()}
