"""Devices, patrollers, dead letters and outbox counters."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import RuntimeDep
from api.geojson import collection, device_feature

router = APIRouter(tags=["registry"])


@router.get("/devices")
def list_devices(rt: RuntimeDep) -> dict[str, Any]:
    """The device registry as a FeatureCollection."""
    return collection([device_feature(d) for d in rt.devices.values()])


@router.get("/patrollers")
def list_patrollers(rt: RuntimeDep) -> dict[str, Any]:
    """Patrollers with assignments, duty status and last known position."""
    now = rt.now()
    local = now.astimezone(rt.router.tz)
    positions = rt.store.positions()
    items = []
    for p in rt.patrollers:
        pos = positions.get(p.id)
        items.append(
            {
                "id": p.id,
                "name": p.name,
                "phone": p.phone,
                "grid_codes": list(p.grid_codes),
                "on_duty": p.on_duty(local),
                "position": None if pos is None else {"lon": pos.lon, "lat": pos.lat, "acc": pos.acc, "ts": pos.ts.isoformat()},
            }
        )
    return {"count": len(items), "items": items}


@router.get("/dead-letters")
def list_dead_letters(rt: RuntimeDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    """Messages that could not be accepted, newest first, with the reason."""
    items = []
    for row in rt.store.dead_letters(limit=limit):
        dl = row.dead_letter
        try:
            payload = dl.payload.decode()
        except UnicodeDecodeError:
            payload = "base64:" + base64.b64encode(dl.payload).decode()
        items.append(
            {"id": row.id, "topic": dl.topic, "reason": dl.reason, "detail": dl.detail, "received_at": dl.received_at.isoformat(), "payload": payload[:2000]}
        )
    return {"count": len(items), "items": items}


@router.get("/notifications/counters")
def notification_counters(rt: RuntimeDep) -> dict[str, int]:
    """Outbox delivery counters."""
    return rt.store.notification_counters()
