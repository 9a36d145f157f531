"""The device registry: list with live state, import (CSV / GeoJSON / GeoPackage), readings."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, UploadFile
from pydantic import AwareDatetime
from starlette.concurrency import run_in_threadpool

from api.access import FIELD, Scope, chain
from api.deps import RuntimeDep, ScopeDep, allow
from api.errors import InvalidQueryProblem, NotFoundProblem
from api.geojson import collection, device_feature

router = APIRouter(tags=["devices"], dependencies=[Depends(allow(*FIELD))])


def _sees(scope: Scope, rt: Any, d: Any) -> bool:
    """Admins: every device; a commander: those owned by its subtree; a patroller: those of its geofence."""
    return scope.sees_grid_codes([d.grid_code], rt.grid_by_code)


def _visible_device(scope: Scope, rt: Any, device_id: str) -> Any:
    d = rt.devices.get(device_id)
    if d is None or not _sees(scope, rt, d):
        raise NotFoundProblem(f"device {device_id!r} not found")
    return d

IMPORT_SUFFIXES = (".csv", ".geojson", ".json", ".gpkg")


@router.get("/devices")
def list_devices(
    rt: RuntimeDep,
    scope: ScopeDep,
    kind: Annotated[str | None, Query(description="fence, thermal, camera, smoke, sensor")] = None,
    state: Annotated[Literal["online", "offline", "unknown"] | None, Query()] = None,
    grid: Annotated[str | None, Query(description="a grid code (any level): devices owned inside its subtree")] = None,
) -> dict[str, Any]:
    """The device registry as a FeatureCollection, with each device's state (online / offline / unknown),
    within the caller's scope."""
    states = rt.store.device_states()
    features = []
    for d in rt.devices.values():
        f = device_feature(d, states.get(d.id))
        if not _sees(scope, rt, d):
            continue
        if (kind is None or d.kind == kind) and (state is None or f["properties"]["state"] == state) and (grid is None or grid in chain(d.grid_code, rt.grid_by_code)):
            features.append(f)
    return collection(features)


@router.get("/devices/counters")
def device_counters(rt: RuntimeDep, scope: ScopeDep) -> dict[str, Any]:
    """How many devices are online, offline and not heard from yet, by kind."""
    states = rt.store.device_states()
    out: dict[str, dict[str, int]] = {}
    total = 0
    for d in rt.devices.values():
        if not _sees(scope, rt, d):
            continue
        total += 1
        st = states.get(d.id)
        bucket = out.setdefault(d.kind, {"online": 0, "offline": 0, "unknown": 0})
        bucket[st.state if st is not None and st.state in bucket else "unknown"] += 1
    return {"by_kind": out, "total": total}


@router.get("/devices/{device_id}")
def get_device(device_id: str, rt: RuntimeDep, scope: ScopeDep) -> dict[str, Any]:
    """One device as a Feature with its state."""
    d = _visible_device(scope, rt, device_id)
    return device_feature(d, rt.store.device_states().get(device_id))


@router.get("/devices/{device_id}/readings")
def device_readings(
    device_id: str,
    rt: RuntimeDep,
    scope: ScopeDep,
    from_: Annotated[AwareDatetime | None, Query(alias="from", description="start (default: `to` − 1 h)")] = None,
    to: Annotated[AwareDatetime | None, Query(description="end, exclusive (default: now)")] = None,
    bucket: Annotated[Literal["raw", "1m", "1h"], Query(description="raw samples or 1-minute / 1-hour aggregates")] = "raw",
    metric: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> dict[str, Any]:
    """A device's readings in [from, to): raw samples, or count/min/max/avg per minute or hour and metric."""
    _visible_device(scope, rt, device_id)
    until: datetime = to or rt.now()
    since: datetime = from_ or until - timedelta(hours=1)
    if since >= until:
        raise InvalidQueryProblem(f"from: expected a time before to ({since.isoformat()} ≥ {until.isoformat()})")
    if until - since > timedelta(days=366):
        raise InvalidQueryProblem("from/to: expected a range of at most 366 days")
    rows = rt.store.readings(device_id, since=since, until=until, bucket=bucket, metric=metric, limit=limit)
    items = [{"ts": r.ts.isoformat(), "metric": r.metric, "unit": r.unit, "count": r.count, "min": r.min, "max": r.max, "avg": r.avg}
             for r in rows]
    return {"device_id": device_id, "from": since.isoformat(), "to": until.isoformat(), "bucket": bucket, "count": len(items), "items": items}


@router.post("/devices/import", dependencies=[Depends(allow("admin"))])
async def import_devices(file: UploadFile, rt: RuntimeDep) -> dict[str, Any]:
    """Register devices from a CSV, GeoJSON or GeoPackage file (upsert by id); owner grids are assigned.

    Every row is checked first; any bad row refuses the whole file with a 422 naming each row,
    field and what was expected.
    """
    from geo.devicefile import read_devices

    name = file.filename or "devices.csv"
    suffix = Path(name).suffix.lower()
    if suffix not in IMPORT_SUFFIXES:
        raise InvalidQueryProblem(f"file {name!r}: expected one of {', '.join(IMPORT_SUFFIXES)}")
    data = await file.read()

    def read() -> Any:  # file parsing and grid assignment: not on the event loop
        with tempfile.TemporaryDirectory(prefix="gridwatch-devices-") as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(data)
            return read_devices(path, index=rt.index)

    result = await run_in_threadpool(read)
    if result.errors:
        lines = [f"row {e.row}" + (f" ({e.device_id})" if e.device_id else "") + f": {e.field}: {e.message}" for e in result.errors[:50]]
        raise InvalidQueryProblem(f"{name}: {len(result.errors)} problem(s): " + "; ".join(lines))
    inserted, updated = await run_in_threadpool(rt.store.upsert_devices, result.devices, at=rt.now())
    await run_in_threadpool(rt.refresh_devices)
    return {"file": name, "devices": len(result.devices), "inserted": inserted, "updated": updated}


@router.post("/devices/reload", dependencies=[Depends(allow("admin"))])
def reload_devices(rt: RuntimeDep) -> dict[str, Any]:
    """Reload the registry from the store (after `gridwatch devices import` from the CLI)."""
    rt.refresh_devices()
    return {"devices": len(rt.devices)}
