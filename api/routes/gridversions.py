"""Grid versions over HTTP: upload a draft, read its validation and diff, publish it (design §4)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from api.deps import PrincipalDep, RuntimeDep, allow
from api.errors import problem
from api.planning import Planning, findings_geojson, version_dict
from geo.errors import GridFileError

router = APIRouter(tags=["grid versions"], dependencies=[Depends(allow("planner", "admin"))])
SUFFIXES = (".geojson", ".json", ".gpkg", ".zip")
_CHUNK = 1 << 20


def planning(rt: RuntimeDep) -> Planning:
    """The planning service over the runtime's store and clock."""
    return Planning(rt.store, clock=rt.now, timezone=rt.settings.timezone)


class PublishRequest(BaseModel):
    """Body of POST /grid-versions/{id}/publish."""

    policy: Literal["keep", "move"] = Field("keep", description="open incidents keep their owner, or move to the new grid")


@router.post("/grid-versions", status_code=201)
def upload_version(
    rt: RuntimeDep,
    principal: PrincipalDep,
    file: Annotated[UploadFile, File(description="GeoJSON, GeoPackage or zipped Shapefile")],
    label: Annotated[str | None, Form(max_length=100)] = None,
    crs: Annotated[str | None, Form(description="EPSG:4326, EPSG:4490, EPSG:4547, GCJ-02 … (default: the file's)")] = None,
    level: Annotated[int | None, Form(ge=1, le=3, description="the file holds this level only")] = None,
    layer: Annotated[str | None, Form()] = None,
) -> Any:
    """Import a grid file as a draft version; answer with the version and its validation summary."""
    name = Path(file.filename or "upload").name
    suffix = next((s for s in SUFFIXES if name.lower().endswith(s)), None)
    if suffix is None:
        return problem(415, "grid-file", "Unsupported grid file", f"file {name!r}: expected one of {', '.join(SUFFIXES)}")
    limit = rt.settings.max_upload_bytes
    with tempfile.TemporaryDirectory(prefix="gridwatch-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        size = 0
        with path.open("wb") as out:
            while chunk := file.file.read(_CHUNK):
                size += len(chunk)
                if size > limit:
                    return problem(413, "too-large", "Upload too large", f"file {name!r} is over {limit} bytes (GRIDWATCH_MAX_UPLOAD_BYTES)")
                out.write(chunk)
        try:
            result = planning(rt).import_file(path, label=label, crs=crs, level=level, layer=layer, actor=f"user:{principal.username}", source=name)
        except GridFileError as exc:  # name the user's file, not the server's temporary copy
            raise GridFileError(str(exc).replace(str(path), name)) from None
    v = result.version
    report = result.validation
    return {
        "version": version_dict(v),
        "features": result.feature_count,
        "unplaced_buildings": result.unplaced_buildings,
        "validation": {k: report[k] for k in ("ok", "errors", "warnings", "counts")},
        "links": {
            "validation": f"/api/v1/grid-versions/{v.id}/validation",
            "diff": f"/api/v1/grid-versions/{v.id}/diff?against=current",
            "publish": f"/api/v1/grid-versions/{v.id}/publish",
            "plan": f"/plan/{v.id}",
        },
    }


@router.get("/grid-versions")
def list_versions(rt: RuntimeDep) -> list[dict[str, Any]]:
    """Every grid version, newest first."""
    return [version_dict(v) for v in rt.store.grid_versions()]


@router.get("/grid-versions/{version_id}")
def get_version(rt: RuntimeDep, version_id: int) -> dict[str, Any]:
    """One version with its audit log."""
    v = planning(rt).version(version_id)
    audit = [{"at": a.at.isoformat(), "actor": a.actor, "action": a.action, "detail": a.detail}
             for a in rt.store.version_audit(version_id)]
    return {**version_dict(v), "audit": audit}


@router.get("/grid-versions/{version_id}/validation")
def get_validation(
    rt: RuntimeDep, version_id: int,
    format: Annotated[Literal["json", "geojson"], Query(description="geojson: every finding as a Feature")] = "json",  # noqa: A002
) -> Any:
    """The validation report: every finding with severity, grid code(s), measure and location."""
    report = planning(rt).validation(version_id)
    if format == "geojson":
        return JSONResponse(findings_geojson(report), media_type="application/geo+json")
    return report


@router.get("/grid-versions/{version_id}/diff")
def get_diff(
    rt: RuntimeDep, version_id: int,
    against: Annotated[str, Query(pattern=r"^(current|\d+)$", description="`current` or a version id")] = "current",
    days: Annotated[int, Query(ge=0, le=3660, description="what-if: replay the incidents of the last N days")] = 30,
) -> dict[str, Any]:
    """What the version changes against another, and the workload what-if."""
    body = planning(rt).diff(version_id, against=None if against == "current" else int(against), days=days)
    return {k: v for k, v in body.items() if k != "table"}


@router.post("/grid-versions/{version_id}/publish")
def publish_version(rt: RuntimeDep, principal: PrincipalDep, version_id: int, body: PublishRequest | None = None) -> dict[str, Any]:
    """Make a validated draft current (errors block it: 409 with the errors)."""
    req = body or PublishRequest()
    result = planning(rt).publish(version_id, policy=req.policy, actor=f"user:{principal.username}")
    rt.check_version()  # this process routes with the new version at once; the others within seconds
    return result.to_dict()


@router.delete("/grid-versions/{version_id}", status_code=204)
def delete_version(rt: RuntimeDep, principal: PrincipalDep, version_id: int) -> None:
    """Delete a draft (published versions are immutable)."""
    planning(rt).version(version_id)
    rt.store.delete_draft(version_id, actor=f"user:{principal.username}", at=rt.now())


@router.get("/grid-versions/{version_id}/export")
def export_version(
    rt: RuntimeDep, version_id: int, format: Annotated[Literal["gpkg", "geojson"], Query()] = "gpkg",  # noqa: A002
) -> FileResponse:
    """Download a version's grids as GeoPackage (one layer per level, for QGIS) or GeoJSON."""
    tmp = Path(tempfile.mkdtemp(prefix="gridwatch-export-"))
    try:
        path = planning(rt).export(tmp / f"grids-v{version_id}.{format}", version_id=version_id)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    media = "application/geopackage+sqlite3" if format == "gpkg" else "application/geo+json"
    return FileResponse(path, media_type=media, filename=path.name,
                        background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True))
