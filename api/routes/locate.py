"""GET /locate: who is responsible for a point (now, or at a past time: `at=`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.access import PEOPLE, ForbiddenError, in_scope
from api.deps import PrincipalDep, RuntimeDep, allow
from api.errors import InvalidQueryProblem, NotFoundProblem
from geo.errors import OutsideDistrictError

router = APIRouter(tags=["locate"], dependencies=[Depends(allow(*PEOPLE))])


@router.get("/locate")
def locate(
    rt: RuntimeDep,
    principal: PrincipalDep,
    lon: Annotated[float, Query(ge=-180, le=180, description="WGS84 longitude")],
    lat: Annotated[float, Query(ge=-90, le=90, description="WGS84 latitude")],
    at: Annotated[datetime | None, Query(description="answer with the grid version valid at this time (ISO 8601 with a zone)")] = None,
) -> dict[str, Any]:
    """The route of a point: grid chain, building, responsible patroller(s)."""
    if at is not None and at.tzinfo is None:
        raise InvalidQueryProblem(f"at={at.isoformat()}: expected a time zone (e.g. +08:00 or Z)")
    if at is not None:
        try:
            at.astimezone(UTC)
        except OverflowError:
            raise InvalidQueryProblem(f"at={at.isoformat()}: out of range") from None
    index, grid_by_code = rt.index, rt.grid_by_code
    if at is not None:
        version = rt.store.version_at(at)
        if version is None:
            raise NotFoundProblem(f"no grid version was current at {at.isoformat()}")
        if version.id != index.version:
            index, grid_by_code = rt.version_index(version.id)
    hit = index.locate(lon, lat)
    if hit is None or hit.l3 is None:
        when = f"grid version {index.version}" if at is not None else "the current version"
        raise OutsideDistrictError(f"point lon={lon}, lat={lat} is outside every grid of {when}")
    if principal.role == "commander" and not in_scope(principal, hit.l3, grid_by_code):
        raise ForbiddenError(f"point lon={lon}, lat={lat} is in grid {hit.l3}, outside the subtree of grid {principal.grid}")
    chain = []
    for code in (hit.l1, hit.l2, hit.l3):
        g = grid_by_code.get(code or "")
        if g is not None:
            chain.append({"level": g.level, "code": g.code, "name": g.name})
    out: dict[str, Any] = {
        "point": {"lon": lon, "lat": lat},
        "grid_version": index.version,
        "at": at.isoformat() if at is not None else None,
        "grids": chain,
        "building": hit.building,
    }
    if index is not rt.index:
        # assignments and rosters are not versioned: who was on duty then is in the incidents' route records
        out.update(patrollers=[], responsible=None, note="patroller assignments are shown for the current version only")
        return out
    now = at or rt.now()
    local = now.astimezone(rt.router.tz)
    out["patrollers"] = [
        {"id": p.id, "name": p.name, "phone": p.phone if principal.role in ("admin", "commander") else None, "on_duty": p.on_duty(local)}
        for p in rt.patrollers
        if hit.l3 in p.grid_codes
    ]
    chosen, rule = rt.router.choose_patroller(hit.l3, lon, lat, now, rt.intake.positions)
    out["responsible"] = {"patroller_id": chosen, "rule": rule}
    return out
