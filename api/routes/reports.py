"""Reports by people: POST /reports (patroller one-tap, JSON or multipart with photos), Open311 GeoReport v2
(POST /open311/requests.json, GET /open311/services.json), and GET /incidents/{id}/photos/{sha256}.

A report is checked completely (fields, position, photos) before anything is written; then its photos
are written under `<data_dir>/photos/<incident_id>/`, and the incident, its audit rows and its
notifications are stored in one unit of work (the photo folder is removed if that fails).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from alerts.actions import IncidentNotFoundError
from alerts.intake import new_incident_id
from alerts.model import OPEN_STATES, HistoryEntry, Incident, Notification
from alerts.reports import (
    REPORT_TYPES,
    CitizenReport,
    PatrollerReport,
    Report,
    ReportError,
    ReportOutsideDistrictError,
    open_report,
)
from alerts.views import incident_dict
from api import photos as photo_store
from api.access import FIELD, ForbiddenError, Scope
from api.auth import Principal
from api.deps import RuntimeDep, ScopeDep, allow
from api.errors import problem
from api.photos import Photo, PhotoError, PhotoSettings, check_photos, photo_settings
from api.routes.incidents import visible_incident
from api.runtime import Runtime

router = APIRouter(tags=["reports"])

JSON_TYPES = ("application/json",)
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
#: Open311 fields kept in the incident's details as given (api_key is never stored).
OPEN311_EXTRA = ("address_id", "device_id", "account_id", "jurisdiction_id")


class ReportCreate(BaseModel):
    """A patroller's one-tap report (JSON body, or the non-file fields of a multipart form)."""

    model_config = ConfigDict(extra="ignore")

    patroller_id: str | None = Field(None, min_length=1, max_length=100,
                                     description="the reporting patroller (a patroller's login: itself; admins name one)")
    lon: float = Field(ge=-180, le=180, description="WGS84 longitude")
    lat: float = Field(ge=-90, le=90, description="WGS84 latitude")
    type: str = Field(min_length=1, max_length=100, description="an incident type of GET /open311/services.json")
    note: str | None = Field(None, max_length=2000)
    self_handled: bool = Field(False, description="handled on the spot: the incident is opened and closed at once")


class Open311Request(BaseModel):
    """The fields of an Open311 GeoReport v2 service request (POST requests.json)."""

    model_config = ConfigDict(extra="ignore")

    service_code: str = Field(min_length=1, max_length=100)
    lat: float = Field(ge=-90, le=90)
    long: float = Field(ge=-180, le=180)
    address_string: str | None = Field(None, max_length=500)
    address_id: str | None = Field(None, max_length=100)
    email: str | None = Field(None, max_length=320)
    device_id: str | None = Field(None, max_length=200)
    account_id: str | None = Field(None, max_length=200)
    first_name: str | None = Field(None, max_length=200)
    last_name: str | None = Field(None, max_length=200)
    phone: str | None = Field(None, max_length=50)
    description: str | None = Field(None, max_length=4000)
    media_url: str | None = Field(None, max_length=2000)
    jurisdiction_id: str | None = Field(None, max_length=100)


def _body_schema(model: type[BaseModel], files_field: str) -> dict[str, Any]:
    schema = model.model_json_schema()
    form = {**schema, "properties": {**schema["properties"], files_field: {
        "type": "array", "items": {"type": "string", "format": "binary"}, "description": "JPEG, PNG or WebP photos"}}}
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": schema},
        "multipart/form-data": {"schema": form},
    }}}


# --- request parsing -------------------------------------------------------------------------------
def _validation_error(exc: ValidationError) -> RequestValidationError:
    return RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)])


async def _read(request: Request, settings: PhotoSettings, files_field: str) -> tuple[dict[str, Any], list[tuple[str | None, bytes]]]:
    """The fields and the (name, bytes) files of a JSON or form request."""
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype in JSON_TYPES:
        try:
            body = await request.json()
        except ValueError:
            raise RequestValidationError([{"loc": ("body",), "msg": "not valid JSON", "type": "json_invalid"}]) from None
        if not isinstance(body, dict):
            raise RequestValidationError([{"loc": ("body",), "msg": "expected a JSON object", "type": "dict_type"}])
        if body.get(files_field):
            raise RequestValidationError([{"loc": ("body", files_field), "type": "value_error",
                                           "msg": "send photos as files of a multipart/form-data request"}])
        return body, []
    if ctype in FORM_TYPES:
        form: FormData = await request.form(max_files=max(4 * settings.max_count, 20))  # over max_count: 422 below
        try:
            fields = {k: v for k, v in form.multi_items() if k != files_field and isinstance(v, str)}
            uploads = form.getlist(files_field)
            if len(uploads) > settings.max_count:
                raise PhotoError(422, f"{files_field}: {len(uploads)} files, at most {settings.max_count} are accepted", field=files_field)
            files: list[tuple[str | None, bytes]] = []
            for i, item in enumerate(uploads):
                if not isinstance(item, UploadFile):
                    raise PhotoError(422, f"{files_field}[{i}]: expected a file, got a text field", field=files_field)
                data = await item.read(settings.max_bytes + 1)
                if len(data) > settings.max_bytes:
                    size = item.size if item.size is not None else len(data)
                    raise PhotoError(413, f"{files_field}[{i}] ({item.filename!r}): {size} bytes is over the limit of"
                                          f" {settings.max_bytes} bytes per photo", field=files_field)
                files.append((item.filename, data))
            return fields, files
        finally:
            await form.close()
    raise PhotoError(415, f"content-type {ctype!r}: expected application/json or multipart/form-data", field="content-type")


def _problem_for(request: Request, exc: Exception) -> JSONResponse:
    path = str(request.url.path)
    if isinstance(exc, PhotoError):
        titles = {413: ("photo-too-large", "Photo too large"), 415: ("unsupported-media-type", "Unsupported media type")}
        type_, title = titles.get(exc.status, ("validation", "Invalid request"))
        return problem(exc.status, type_, title, str(exc), instance=path, errors=[{"field": exc.field, "message": str(exc)}])
    assert isinstance(exc, ReportError)
    type_, title = ("outside-district", "Outside the district") if isinstance(exc, ReportOutsideDistrictError) else ("validation", "Invalid request")
    message = str(exc).removeprefix(f"{exc.field}: ")
    return problem(422, type_, title, str(exc), instance=path, errors=[{"field": exc.field, "message": message}])


# --- storing ---------------------------------------------------------------------------------------
def _store(rt: Runtime, report_of: Any, photos: list[Photo], settings: PhotoSettings) -> Incident:
    """Open the report's incident, write its photos, store it in one unit of work, hand its notifications to the outbox."""
    now = rt.now()
    incident_id = new_incident_id(now)
    refs = [p.ref(incident_id) for p in photos]
    report: Report = report_of(refs)
    incident, rows, notes = open_report(
        report, rt.router, now=now, positions=rt.intake.positions, new_id=lambda _at: incident_id,
        patrollers={p.id for p in rt.patrollers},
    )
    photo_store.store_photos(settings.data_dir, incident_id, photos)
    try:
        ids = _commit(rt, incident, rows, notes)
    except BaseException:
        photo_store.remove_photos(settings.data_dir, incident_id)
        raise
    rt.outbox.submit(list(zip(ids, notes, strict=True)))
    return incident


def _commit(rt: Runtime, incident: Incident, rows: list[HistoryEntry], notes: list[Notification]) -> list[int]:
    with rt.store.unit_of_work() as uow:
        uow.save_incidents([incident])
        uow.add_history(rows)
        return uow.add_notifications(notes)


def _photo_urls(incident: Incident) -> list[dict[str, Any]]:
    return [
        {**ref, "url": f"/api/v1/incidents/{incident.id}/photos/{ref['sha256']}"}
        for ref in incident.details.get("photos", [])
        if isinstance(ref, dict) and "sha256" in ref  # resolve may add plain URL/id strings
    ]


def report_view(incident: Incident, rt: Runtime) -> dict[str, Any]:
    """The stored report as JSON: the incident view plus the report's own fields."""
    out = incident_dict(incident, rt.now())
    out.update(
        self_handled=incident.self_handled,
        difficulty=incident.difficulty,
        closed_at=incident.closed_at.isoformat() if incident.closed_at else None,
        reporter=incident.details.get("reporter"),
        photos=_photo_urls(incident),
    )
    if "open311" in incident.details:
        out["open311"] = incident.details["open311"]
    if "verification" in incident.details:
        out["verification"] = incident.details["verification"]
    return out


# --- routes ----------------------------------------------------------------------------------------
def _field_scope(scope: ScopeDep, principal: Annotated[Principal, Depends(allow(*FIELD))]) -> Scope:
    return scope


@router.post("/reports", status_code=201, openapi_extra=_body_schema(ReportCreate, "photos"),
             responses={413: {"description": "a photo (or the body) is too large"}, 415: {"description": "a photo is not JPEG/PNG/WebP"}})
async def create_report(rt: RuntimeDep, request: Request, principal: Annotated[Principal, Depends(allow("patroller", "admin"))]) -> Response:
    """A patroller's one-tap report at a position: JSON, or multipart/form-data with up to 5 `photos` files.
    A patroller reports as itself (`patroller_id` may be omitted); an admin names the patroller."""
    settings = photo_settings(rt.settings)
    try:
        fields, files = await _read(request, settings, "photos")
        try:
            body = ReportCreate.model_validate(fields)
        except ValidationError as exc:
            raise _validation_error(exc) from None
        reporter = _reporter(principal, body.patroller_id)
        photos = check_photos(files, settings)

        def report_of(refs: list[dict[str, Any]]) -> PatrollerReport:
            return PatrollerReport(reporter, body.lon, body.lat, body.type, body.note, refs, body.self_handled)

        incident = await run_in_threadpool(_store, rt, report_of, photos, settings)
    except (PhotoError, ReportError) as exc:
        return _problem_for(request, exc)
    return JSONResponse(report_view(incident, rt), status_code=201, headers={"Location": f"/api/v1/incidents/{incident.id}"})


def _reporter(principal: Principal, named: str | None) -> str:
    """The patroller a report is by: a patroller's login is itself; an admin must name one."""
    if principal.role == "patroller":
        if named is not None and named != principal.patroller_id:
            raise ForbiddenError(f"patroller_id {named!r}: you are patroller {principal.patroller_id}; omit patroller_id")
        return principal.patroller_id or ""
    if named is None:
        raise RequestValidationError([{"loc": ("body", "patroller_id"), "msg": "Field required (the reporting patroller)", "type": "missing"}])
    return named


@router.get("/open311/services.json", tags=["open311"], dependencies=[Depends(allow("admin", "commander", "patroller", "device"))])
def open311_services() -> list[dict[str, Any]]:
    """Open311 GeoReport v2 service list: the incident types people can report."""
    return [
        {"service_code": t.code, "service_name": t.name, "description": t.description, "metadata": False,
         "type": "realtime", "keywords": t.code.replace(".", ","), "group": t.group}
        for t in REPORT_TYPES.values()
    ]


@router.post("/open311/requests.json", status_code=201, tags=["open311"], openapi_extra=_body_schema(Open311Request, "media"),
             dependencies=[Depends(allow("admin", "commander", "device"))])
async def open311_request(rt: RuntimeDep, request: Request) -> Response:
    """Open311 GeoReport v2 service request (form fields; `lat`/`long` required; optional `media` photo files).

    The citizen's report opens an incident in `verifying`: the nearest on-duty patroller is asked to confirm it.
    Sent by the hotline or citizen-app integration (a `device` login), an admin or a commander.
    """
    settings = photo_settings(rt.settings)
    try:
        fields, files = await _read(request, settings, "media")
        fields = {k: v for k, v in fields.items() if not (isinstance(v, str) and v == "")}  # form fields left blank
        try:
            body = Open311Request.model_validate(fields)
        except ValidationError as exc:
            raise _validation_error(exc) from None
        photos = check_photos(files, settings)

        def report_of(refs: list[dict[str, Any]]) -> CitizenReport:
            return CitizenReport(
                service_code=body.service_code, lat=body.lat, long=body.long, description=body.description,
                address_string=body.address_string, email=body.email, first_name=body.first_name,
                last_name=body.last_name, phone=body.phone, media_url=body.media_url, photos=refs,
                extra={k: getattr(body, k) for k in OPEN311_EXTRA},
            )

        incident = await run_in_threadpool(_store, rt, report_of, photos, settings)
    except PhotoError as exc:
        if exc.field == "photos":
            exc.field = "media"
        return _problem_for(request, exc)
    except ReportError as exc:
        return _problem_for(request, exc)
    verifier = incident.details.get("verification", {}).get("patroller_id")
    notice = "received; a patroller has been asked to verify it" if verifier else "received; the command center will verify it"
    return JSONResponse([{"service_request_id": incident.id, "service_notice": notice, "account_id": None}], status_code=201)


@router.get("/incidents/{incident_id}/photos/{sha256}", response_class=FileResponse,
            responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}}})
def get_photo(
    rt: RuntimeDep,
    scope: Annotated[Scope, Depends(_field_scope)],
    incident_id: str,
    sha256: Annotated[str, PathParam(pattern=photo_store.SHA256_PATTERN, description="the photo's SHA-256 (hex, lower case)")],
) -> FileResponse:
    """One photo of an incident, byte for byte as uploaded (404 outside the caller's scope)."""
    incident = visible_incident(rt, scope, incident_id)
    if not any(isinstance(p, dict) and p.get("sha256") == sha256 for p in incident.details.get("photos", [])):
        raise IncidentNotFoundError(f"incident {incident_id!r} has no photo {sha256}")
    found = photo_store.find_photo(Path(photo_settings(rt.settings).data_dir), incident.id, sha256)
    if found is None:
        raise IncidentNotFoundError(f"photo {sha256} of incident {incident_id!r} is missing from the photo store")
    path, content_type = found
    return FileResponse(path, media_type=content_type, headers={
        "Cache-Control": "private, max-age=86400, immutable", "X-Content-Type-Options": "nosniff",
        "Content-Disposition": f'inline; filename="{path.name}"'})


@router.post("/incidents/{incident_id}/photos", status_code=201)
async def upload_photos(rt: RuntimeDep, scope: Annotated[Scope, Depends(_field_scope)], incident_id: str, request: Request) -> Response:
    """Attach photos to an incident (multipart `photos`), e.g. before `resolve` with `params.photos` = their hashes.
    A patroller adds photos to its own incidents only; nobody to a closed one (409)."""
    settings = photo_settings(rt.settings)
    incident = visible_incident(rt, scope, incident_id)
    p = scope.principal
    if p.role == "patroller" and incident.assignee != p.patroller_id:
        raise ForbiddenError(f"incident {incident_id}: patroller {p.patroller_id} adds photos to its own incidents only")
    if incident.state not in OPEN_STATES:
        return problem(409, "closed", "Incident is closed", f"incident {incident_id} is {incident.state.value}: no more photos",
                       instance=str(request.url.path))
    try:
        fields, files = await _read(request, settings, "photos")
        photos = check_photos(files, settings)
        if not photos:
            raise PhotoError(422, "photos: expected at least one file")
    except PhotoError as exc:
        return _problem_for(request, exc)
    refs = await run_in_threadpool(_attach, rt, incident_id, photos, settings)
    return JSONResponse({"incident_id": incident_id, "photos": refs}, status_code=201)


def _attach(rt: Runtime, incident_id: str, photos: list[Photo], settings: PhotoSettings) -> list[dict[str, Any]]:
    photo_store.store_photos(Path(settings.data_dir), incident_id, photos, keep_existing=True)
    refs = [{**p.ref(incident_id), "action": "upload"} for p in photos]
    with rt.store.unit_of_work() as uow:
        incident = uow.get_incident(incident_id, for_update=True)
        if incident is None:
            raise IncidentNotFoundError(f"incident {incident_id!r} not found")
        known = {p.get("sha256") for p in incident.details.get("photos", []) if isinstance(p, dict)}
        incident.details["photos"] = [*incident.details.get("photos", []), *(r for r in refs if r["sha256"] not in known)]
        uow.save_incidents([incident])
    return refs
