"""Devices that push over HTTP: Hikvision ISAPI event notifications, Traccar/OsmAnd phone positions.

They take the same path as an MQTT batch (decode → resolve → store once → route) through
`Runtime.handle_inbound`; a refused message becomes a dead letter (with the topic `http/isapi` or
`http/osmand`) and the device still gets a 200, because most firmware retries — or gives up
sending — on anything else. Pictures of an ISAPI multipart push are stored by their SHA-256 and
named in the alarm's data.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from api.deps import RuntimeDep
from api.photos import sniff
from ingest.adapters import hikvision, osmand
from ingest.decode import HTTP_ISAPI, HTTP_OSMAND
from ingest.model import Alarm, DeadLetter
from ingest.pipeline import Inbound

router = APIRouter(prefix="/ingest", tags=["device ingest"])

def _store_pictures(data_dir: str, pictures: tuple[hikvision.Picture, ...]) -> list[dict[str, Any]]:
    out = []
    folder = Path(data_dir) / "pictures"
    for pic in pictures:
        digest = hashlib.sha256(pic.data).hexdigest()
        # the type the bytes say (api.photos.sniff, as for report photos), not the type the part claims
        content_type, ext = sniff(pic.data) or ("application/octet-stream", "bin")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{digest}.{ext}"
        if not path.exists():
            tmp = path.with_suffix(".part")
            tmp.write_bytes(pic.data)
            tmp.replace(path)
        out.append({"sha256": digest, "content_type": content_type, "bytes": len(pic.data), "name": pic.name})
    return out


def _summary(result: Any) -> dict[str, Any]:
    return {"alarms_stored": result.alarms_stored, "duplicates": result.duplicates, "dead_letters": result.dead_letters,
            "incidents_created": result.incidents_created, "incidents_joined": result.incidents_joined}


@router.post("/isapi")
async def isapi_push(request: Request, rt: RuntimeDep) -> dict[str, Any]:
    """Hikvision ISAPI HTTP(S) alarm push: EventNotificationAlert as XML, JSON or multipart with pictures."""
    body = await request.body()
    received = rt.now()
    # parsing a multipart body of pictures takes a while: not on the event loop
    out = await run_in_threadpool(hikvision.decode_http, request.headers.get("content-type", ""), body, received)
    decoded = out.result
    if not isinstance(decoded, DeadLetter) and out.pictures:
        pics = await run_in_threadpool(_store_pictures, rt.settings.data_dir, out.pictures)
        decoded = [dataclasses.replace(m, data={**m.data, "pictures": pics}) if isinstance(m, Alarm) else m for m in decoded]
    payload = out.event_payload or body[: rt.settings.max_payload_bytes]
    result = await run_in_threadpool(rt.handle_inbound, [Inbound(HTTP_ISAPI, payload, received, decoded)])
    return _summary(result)


@router.get("/osmand")
async def osmand_position_get(request: Request, rt: RuntimeDep) -> dict[str, Any]:
    """Traccar client / OsmAnd protocol: `?id=&lat=&lon=&timestamp=&accuracy=…`."""
    return await osmand_position(request, rt)


@router.post("/osmand")
async def osmand_position_post(request: Request, rt: RuntimeDep) -> dict[str, Any]:
    """Traccar client / OsmAnd protocol, parameters in the query or a form body."""
    return await osmand_position(request, rt)


async def osmand_position(request: Request, rt: Any) -> dict[str, Any]:
    """One OsmAnd request → a position (or a dead letter), stored like an MQTT location."""
    raw = request.url.query.encode()
    if request.method == "POST" and "json" not in request.headers.get("content-type", ""):
        body = await request.body()
        if body:  # a form body: its parameters join the query's
            raw = (raw + b"&" + body) if raw else body
    received = rt.now()
    decoded = osmand.decode_raw(raw, received, topic=HTTP_OSMAND)
    result = await run_in_threadpool(rt.handle_inbound, [Inbound(HTTP_OSMAND, raw, received, decoded)])
    return {"positions": result.positions, "dead_letters": result.dead_letters}
