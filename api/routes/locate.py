"""GET /locate: who is responsible for a point."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import RuntimeDep
from geo.errors import OutsideDistrictError

router = APIRouter(tags=["locate"])


@router.get("/locate")
def locate(
    rt: RuntimeDep,
    lon: Annotated[float, Query(ge=-180, le=180, description="WGS84 longitude")],
    lat: Annotated[float, Query(ge=-90, le=90, description="WGS84 latitude")],
) -> dict[str, Any]:
    """The route of a point: grid chain, building, responsible patroller(s)."""
    hit = rt.index.locate(lon, lat)
    if hit is None or hit.l3 is None:
        raise OutsideDistrictError(f"point lon={lon}, lat={lat} is outside every grid of the current version")
    chain = []
    for code in (hit.l1, hit.l2, hit.l3):
        g = rt.grid_by_code.get(code or "")
        if g is not None:
            chain.append({"level": g.level, "code": g.code, "name": g.name})
    now = rt.now()
    local = now.astimezone(rt.router.tz)
    patrollers = [
        {"id": p.id, "name": p.name, "phone": p.phone, "on_duty": p.on_duty(local)}
        for p in rt.patrollers
        if hit.l3 in p.grid_codes
    ]
    chosen, rule = rt.router.choose_patroller(hit.l3, lon, lat, now, rt.intake.positions)
    return {
        "point": {"lon": lon, "lat": lat},
        "grid_version": rt.index.version,
        "grids": chain,
        "building": hit.building,
        "patrollers": patrollers,
        "responsible": {"patroller_id": chosen, "rule": rule},
    }
