"""create_app(settings): the FastAPI application over a Runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from api.bodylimit import BodyLimit
from api.errors import add_exception_handlers
from api.routes import (
    auth,
    deadletters,
    devices,
    evaluation,
    grids,
    gridversions,
    incidents,
    ingest_http,
    locate,
    login,
    maintenance,
    pages,
    phone,
    registry,
    reports,
    stream,
    wall,
)
from api.runtime import Runtime
from api.settings import Settings
from maps import STATIC_DIR


def create_app(settings: Settings, runtime: Runtime | None = None, *, with_ingest: bool = False) -> FastAPI:
    """Build the app. Without `runtime`, the lifespan opens one from settings (and starts ingest if asked)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = runtime is None
        rt = runtime or Runtime.open(settings)
        app.state.runtime = rt
        if own:
            rt.watch_versions()  # a published grid version reaches this process within version_poll_seconds
            rt.run_sla()  # lights, reminders and escalation
        if own and with_ingest:
            rt.start_ingest()
        if own and settings.mqtt_url:
            rt.start_events()  # every process's events reach this one's live streams
        try:
            yield
        finally:
            if own:
                rt.close()

    app = FastAPI(
        title="gridwatch",
        version="0.1.0",
        description="Grid management and IoT alarm monitoring for city command centers.",
        lifespan=lifespan,
    )
    if runtime is not None:
        app.state.runtime = runtime
    api = APIRouter(prefix="/api/v1")
    for module in (auth, locate, grids, gridversions, incidents, reports, evaluation, maintenance, registry, devices, deadletters, stream,
                   wall):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(pages.router)
    app.include_router(phone.router)
    app.include_router(login.router)
    # the pages' own scripts and the vendored Leaflet: a command center's network may have no internet
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(ingest_http.router)
    add_exception_handlers(app)
    app.add_exception_handler(login.LoginRequired, login.login_redirect)

    def body_limit(method: str, path: str) -> int:
        if method == "POST" and path.rstrip("/") == "/api/v1/grid-versions":
            return settings.max_upload_bytes
        if method == "POST" and (path.rstrip("/") in ("/api/v1/reports", "/api/v1/open311/requests.json")
                                 or (path.startswith("/api/v1/incidents/") and path.rstrip("/").endswith("/photos"))):
            return settings.max_photos * settings.max_photo_bytes + 1024 * 1024
        if method == "POST" and path.rstrip("/") == "/ingest/isapi":  # an event with up to 8 pictures
            return 8 * 5 * 1024 * 1024 + 1024 * 1024
        if method == "POST" and path.rstrip("/") == "/api/v1/devices/import":
            return settings.max_upload_bytes
        return settings.max_body_bytes

    app.add_middleware(BodyLimit, limit_for=body_limit)

    @app.get("/", include_in_schema=False)
    def root(request: Request) -> RedirectResponse:
        """The home page of the login's role (the login page without one)."""
        try:
            principal = login.page_principal(request, app.state.runtime)
        except login.LoginRequired:
            return RedirectResponse("/login", status_code=303)
        return RedirectResponse(login.HOME.get(principal.role, "/map"), status_code=303)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, object]:
        rt = app.state.runtime
        return {"status": "ok", "grid_version": rt.index.version, "ingest": rt.ingest_status()}

    return app
