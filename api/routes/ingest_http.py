"""Devices that push over HTTP: Hikvision ISAPI event notifications, Traccar/OsmAnd phone positions.

They take the same path as an MQTT batch (decode → resolve → store once → route) through
`Runtime.handle_inbound`; a refused message becomes a dead letter (with the topic `http/isapi` or
`http/osmand`) and the device still gets a 200, because most firmware retries — or gives up
sending — on anything else. Pictures of an ISAPI multipart push are stored by their SHA-256 and
named in the alarm's data.

Only `device` logins (and admins; patrollers their own positions) may push: a bearer token in the `Authorization` header, or — for
phone apps that can only be given a URL (Traccar Client, OsmAnd) — in an `access_token` query
parameter, which is removed before the request is decoded or stored.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from api.access import ForbiddenError
from api.auth import Principal
from api.deps import RuntimeDep, principal_from, token_of
from api.errors import UnauthorizedProblem
from api.photos import sniff
from ingest.adapters import hikvision, osmand
from ingest.decode import HTTP_ISAPI, HTTP_OSMAND
from ingest.model import Alarm, DeadLetter
from ingest.pipeline import Inbound

INGEST_ROLES = ("device", "admin", "patroller")
"""Patrollers push their own positions (the phone view sends its GPS to /ingest/osmand)."""
TOKEN_PARAM = "access_token"


def device_principal(request: Request, rt: RuntimeDep) -> Principal:
    """The pushing device's login: header (or cookie) token, else the `access_token` query parameter."""
    token = token_of(request) or request.query_params.get(TOKEN_PARAM)
    if not token:
        raise UnauthorizedProblem(f"a device token is required (Authorization: Bearer, or ?{TOKEN_PARAM}=)")
    principal = principal_from(rt, token)
    if principal.role not in INGEST_ROLES:
        raise ForbiddenError(f"role {principal.role!r} may not push device data (allowed: {', '.join(INGEST_ROLES)})")
    return principal


def without_token(query: bytes) -> bytes:
    """The raw query string without its access_token parameter (a token is never stored)."""
    pairs = parse_qsl(query.decode("utf-8", "replace"), keep_blank_values=True)
    if all(k != TOKEN_PARAM for k, _ in pairs):  # by the decoded name: `access%5Ftoken` is the same parameter
        return query
    return urlencode([(k, v) for k, v in pairs if k != TOKEN_PARAM]).encode()


DevicePrincipal = Annotated[Principal, Depends(device_principal)]
router = APIRouter(prefix="/ingest", tags=["device ingest"], dependencies=[Depends(device_principal)])

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
async def isapi_push(request: Request, rt: RuntimeDep, principal: DevicePrincipal) -> dict[str, Any]:
    """Hikvision ISAPI HTTP(S) alarm push: EventNotificationAlert as XML, JSON or multipart with pictures."""
    if principal.role == "patroller":
        raise ForbiddenError("role 'patroller' pushes positions (/ingest/osmand), not camera events")
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
async def osmand_position_get(request: Request, rt: RuntimeDep, principal: DevicePrincipal) -> dict[str, Any]:
    """Traccar client / OsmAnd protocol: `?id=&lat=&lon=&timestamp=&accuracy=…`."""
    return await osmand_position(request, rt, principal)


@router.post("/osmand")
async def osmand_position_post(request: Request, rt: RuntimeDep, principal: DevicePrincipal) -> dict[str, Any]:
    """Traccar client / OsmAnd protocol, parameters in the query or a form body."""
    return await osmand_position(request, rt, principal)


async def osmand_position(request: Request, rt: Any, principal: Principal) -> dict[str, Any]:
    """One OsmAnd request → a position (or a dead letter), stored like an MQTT location. A device login bound
    to a patroller (a phone's) pushes that patroller's positions only (403 for another `id`)."""
    raw = request.url.query.encode()
    if request.method == "POST" and "json" not in request.headers.get("content-type", ""):
        body = await request.body()
        if body:  # a form body: its parameters join the query's
            raw = (raw + b"&" + body) if raw else body
    raw = without_token(raw)
    if principal.patroller_id is not None:
        named = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)).get("id")
        if named != principal.patroller_id:
            raise ForbiddenError(f"id {named!r}: login {principal.username} pushes the positions of patroller {principal.patroller_id} only")
    received = rt.now()
    decoded = osmand.decode_raw(raw, received, topic=HTTP_OSMAND)
    result = await run_in_threadpool(rt.handle_inbound, [Inbound(HTTP_OSMAND, raw, received, decoded)])
    return {"positions": result.positions, "dead_letters": result.dead_letters}
