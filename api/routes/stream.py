"""GET /stream: Server-Sent Events of incidents, patrollers' grid moves, command-center events and device states."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.access import FIELD, Scope, grid_filter
from api.deps import RuntimeDep, ScopeDep, allow, principal_from, token_of
from api.errors import UnauthorizedProblem
from api.stream import sse

router = APIRouter(tags=["stream"], dependencies=[Depends(allow(*FIELD))])
KINDS = ("incident", "patroller", "center", "device")


@router.get("/stream")
async def stream(
    request: Request,
    rt: RuntimeDep,
    scope: ScopeDep,
    grid: Annotated[str | None, Query(pattern=r"^[0-9A-Za-z_.:-]{1,64}$", description="only events in this grid's subtree")] = None,
    kinds: Annotated[str | None, Query(pattern=r"^(incident|patroller|center|device)(,(incident|patroller|center|device))*$",
                                       description="comma list of incident, patroller, center, device (default: all)")] = None,
) -> StreamingResponse:
    """Live events as `text/event-stream`: `event: incident` (created, updated, light, remind, escalate, …),
    `event: patroller` (exit / enter a grid), `event: center` (escalations to a command center), `event: device` (a device online / offline).
    Within the caller's scope: a commander's subtree; a patroller's own incidents and its geofence's."""
    if scope.principal.role == "commander":  # its subtree only (403 for a grid outside it)
        grid = grid_filter(scope.principal, grid, rt.grid_by_code)
    sub = rt.hub.subscribe(grid, frozenset(kinds.split(",")) if kinds else frozenset(), allow=scope.event_filter())
    token = token_of(request) or ""
    principal = scope.principal

    async def still_allowed() -> bool:  # the same login, still valid (not expired, user unchanged)
        try:
            if await run_in_threadpool(principal_from, rt, token) != principal:
                return False
        except UnauthorizedProblem:
            return False
        sub.allow = Scope.of(principal, rt.patrollers).event_filter()  # a patroller's geofence follows roster changes
        return True

    return StreamingResponse(sse(sub, rt.hub, still_allowed=still_allowed), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
