"""GET /stream: Server-Sent Events of incidents, patrollers' grid moves, command-center events and device states."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from api.deps import RuntimeDep
from api.stream import sse

router = APIRouter(tags=["stream"])
KINDS = ("incident", "patroller", "center", "device")


@router.get("/stream")
async def stream(
    rt: RuntimeDep,
    grid: Annotated[str | None, Query(pattern=r"^[0-9A-Za-z_.:-]{1,64}$", description="only events in this grid's subtree")] = None,
    kinds: Annotated[str | None, Query(pattern=r"^(incident|patroller|center|device)(,(incident|patroller|center|device))*$",
                                       description="comma list of incident, patroller, center, device (default: all)")] = None,
) -> StreamingResponse:
    """Live events as `text/event-stream`: `event: incident` (created, updated, light, remind, escalate, …),
    `event: patroller` (exit / enter a grid), `event: center` (escalations to a command center), `event: device` (a device online / offline)."""
    sub = rt.hub.subscribe(grid, frozenset(kinds.split(",")) if kinds else frozenset())
    return StreamingResponse(sse(sub, rt.hub), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
