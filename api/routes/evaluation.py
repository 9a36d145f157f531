"""GET /evaluation: design §6 evaluation per grid, patroller or command center over a period, as JSON or CSV."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import AwareDatetime

from alerts.evaluation import (
    DEFAULT_CONFIG,
    EvaluationConfig,
    evaluate,
    load_config,
    to_csv,
)
from alerts.model import HistoryEntry, Incident
from api.access import Scope, grid_filter
from api.deps import PrincipalDep, RuntimeDep, allow
from api.errors import InvalidQueryProblem, NotFoundProblem
from api.runtime import Runtime
from geo.model import Grid
from store.ports import IncidentQuery

router = APIRouter(tags=["evaluation"], dependencies=[Depends(allow("admin", "commander", "planner"))])

GRID_CODE = r"^[0-9A-Za-z_.:-]{1,64}$"
DEFAULT_PERIOD = timedelta(days=30)
#: The most incidents one evaluation reads; the answer says `truncated` when it hit this.
INCIDENT_LIMIT = 200_000


@lru_cache(maxsize=4)
def _config_from(path: str | None) -> EvaluationConfig:
    return DEFAULT_CONFIG if path is None else load_config(path)


def evaluation_config(settings: Any) -> EvaluationConfig:
    """The configuration named by settings.evaluation_config (a YAML file), else the packaged defaults."""
    return _config_from(getattr(settings, "evaluation_config", None))


def _ancestors(grids: dict[str, Grid]) -> dict[str, tuple[str, ...]]:
    """The codes above each grid (parent chain; a missing parent_code falls back to the code prefix rule)."""
    out: dict[str, tuple[str, ...]] = {}
    for code, grid in grids.items():
        chain: list[str] = []
        g: Grid | None = grid
        while g is not None and g.parent_code and g.parent_code not in chain:
            chain.append(g.parent_code)
            g = grids.get(g.parent_code)
        if not chain:
            chain = [c for c, other in grids.items() if other.level < grid.level and code.startswith(c)]
        out[code] = tuple(chain)
    return out


def _history(rt: Runtime, incidents: list[Incident]) -> dict[str, list[HistoryEntry]]:
    ids = [i.id for i in incidents]
    batch = getattr(rt.store, "history_for", None)
    if batch is not None:
        return batch(ids)  # type: ignore[no-any-return]
    return {i: rt.store.history(i) for i in ids}  # one query per incident: slow for long periods


@router.get("/evaluation", response_model=None)
def get_evaluation(
    rt: RuntimeDep,
    principal: PrincipalDep,
    by: Annotated[Literal["grid", "patroller", "center"] | None,
                  Query(description="grid (default), patroller (default when `patroller` is given) or center")] = None,
    level: Annotated[int | None, Query(ge=1, le=3, description="grid / center level (default: the `grid`'s level, else 3)")] = None,
    grid: Annotated[str | None, Query(pattern=GRID_CODE, description="only this grid and what lies below it")] = None,
    patroller: Annotated[str | None, Query(min_length=1, max_length=100, description="only this patroller")] = None,
    from_: Annotated[AwareDatetime | None, Query(alias="from", description="period start, ISO 8601 with a zone (default: `to` − 30 days)")] = None,
    to: Annotated[AwareDatetime | None, Query(description="period end, exclusive (default: now)")] = None,
    format: Annotated[Literal["json", "csv"], Query(description="json (default) or csv")] = "json",  # noqa: A002
) -> Any:
    """Counts, rates, mean times, patrol coverage, score and A–E grade per unit over [from, to).
    A commander's evaluation covers its subtree (`grid` defaults to its grid; 403 outside it)."""
    end = to or rt.now()
    start = from_ or end - DEFAULT_PERIOD
    if start >= end:
        raise InvalidQueryProblem(f"from={start.isoformat()}: must be before to={end.isoformat()}")
    grids = rt.grid_by_code
    if principal.role == "commander":
        grid = grid_filter(principal, grid, grids)
    if grid is not None and grid not in grids:
        raise NotFoundProblem(f"grid {grid!r} is not in the current grid version")
    scope = Scope.of(principal, rt.patrollers)
    everyone = principal.role != "commander"  # admins and planners evaluate every patroller
    if patroller is not None and not any(p.id == patroller and (everyone or scope.sees_patroller(p, grids)) for p in rt.patrollers):
        raise NotFoundProblem(f"patroller {patroller!r} not found")  # outside a commander's subtree: as unknown
    group = by or ("patroller" if patroller is not None else "grid")
    grid_level = grids[grid].level if grid is not None else None
    row_level = level or grid_level or 3
    if group != "patroller" and grid_level is not None and row_level < grid_level:
        raise InvalidQueryProblem(f"level={row_level}: grid {grid} is a level-{grid_level} grid; its rows are of level {grid_level} or below")

    ancestors = _ancestors(grids)

    def in_scope(code: str) -> bool:
        return grid is None or code == grid or grid in ancestors.get(code, ())

    if group == "patroller":
        patrollers = [p for p in rt.patrollers if (patroller is None or p.id == patroller)
                      and (grid is None or any(in_scope(c) for c in p.grid_codes))]
        units = [p.id for p in sorted(patrollers, key=lambda p: p.id)]
    else:
        units = sorted(c for c, g in grids.items() if g.level == row_level and in_scope(c))

    query: dict[str, Any] = {"grid": grid, "since": start, "limit": INCIDENT_LIMIT}
    if patroller is not None and "assignees" in IncidentQuery.__dataclass_fields__:
        query["assignees"] = (patroller,)
    fetched = rt.store.incidents(IncidentQuery(**query))
    incidents = [i for i in fetched if start <= i.created_at < end and (patroller is None or i.assignee == patroller)]
    track = getattr(rt.store, "track", None)
    tracks = track(start, end, patroller_id=patroller) if track is not None else None
    rows = evaluate(
        incidents,
        _history(rt, incidents),
        start=start,
        end=end,
        by=group,
        level=None if group == "patroller" else row_level,
        units=units,
        buildings=rt.store.buildings(),
        tracks=tracks,
        patroller_grids={p.id: p.grid_codes for p in rt.patrollers},
        ancestors=ancestors,
        config=evaluation_config(rt.settings),
    )
    if format == "csv":
        name = f"evaluation-{group}-{start:%Y%m%dT%H%M%S}-{end:%Y%m%dT%H%M%S}.csv"
        return Response(to_csv(rows), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    return {
        "by": group,
        "level": None if group == "patroller" else row_level,
        "grid": grid,
        "patroller": patroller,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "coverage": track is not None,
        "truncated": len(fetched) >= INCIDENT_LIMIT,
        "count": len(rows),
        "items": [r.to_dict() for r in rows],
    }
