"""RFC 9457 problem+json responses; the one place that maps domain errors to HTTP status codes."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from alerts.actions import IncidentNotFoundError
from alerts.errors import IllegalTransitionError, UnknownActionError
from alerts.roles import ForbiddenActionError, InvalidActorError
from alerts.workflow import InvalidParamsError
from api.access import ForbiddenError
from api.auth import AuthError
from api.planning import PlanningError, PublishRefusedError, VersionNotFoundError
from geo.errors import GridFileError, GridSetError, OutsideDistrictError
from store.errors import VersionStateError

logger = logging.getLogger(__name__)
PROBLEM = "application/problem+json"


class NotFoundProblem(Exception):
    """A resource addressed by the URL does not exist."""


class InvalidQueryProblem(Exception):
    """A query parameter is well-typed but unusable (the message names it)."""


class UnauthorizedProblem(Exception):
    """No valid login (a missing, forged or expired token, or a wrong password)."""


STATUS = {
    InvalidQueryProblem: (422, "validation", "Invalid request"),
    NotFoundProblem: (404, "not-found", "Not found"),
    UnauthorizedProblem: (401, "unauthorized", "Login required"),
    AuthError: (401, "unauthorized", "Login required"),
    IncidentNotFoundError: (404, "not-found", "Not found"),
    OutsideDistrictError: (404, "outside-district", "Outside the district"),
    IllegalTransitionError: (409, "illegal-transition", "Illegal transition"),
    UnknownActionError: (422, "unknown-action", "Unknown action"),
    VersionNotFoundError: (404, "not-found", "Not found"),
    ForbiddenActionError: (403, "forbidden", "Not allowed for this actor"),
    ForbiddenError: (403, "forbidden", "Not allowed for this role or grid"),
    InvalidActorError: (422, "validation", "Invalid actor"),
    InvalidParamsError: (422, "validation", "Invalid action parameters"),
    PlanningError: (422, "planning", "Cannot do this with grid versions"),
    PublishRefusedError: (409, "publish-refused", "Validation errors block publishing"),
    VersionStateError: (409, "version-state", "Grid version in the wrong state"),
    GridFileError: (422, "grid-file", "Unreadable grid file"),
    GridSetError: (422, "grid-set", "Unusable set of grids"),
}


def problem(status: int, type_: str, title: str, detail: str, **extra: object) -> JSONResponse:
    """A problem+json response."""
    body = {"type": f"https://gridwatch.dev/problems/{type_}", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def add_exception_handlers(app: FastAPI) -> None:
    """Register the handlers that turn errors into problem+json."""

    def domain_handler(request: Request, exc: Exception) -> JSONResponse:
        status, type_, title = next(STATUS[t] for t in type(exc).__mro__ if t in STATUS)
        extra = {}
        if isinstance(exc, IllegalTransitionError):
            extra = {"state": exc.state, "action": exc.action, "allowed": exc.allowed}
        elif isinstance(exc, InvalidParamsError):
            extra = {"errors": [{"field": f"params.{exc.field}" if exc.field else "params", "message": exc.message}]}
        elif isinstance(exc, ForbiddenActionError):
            extra = {"actor": str(exc.actor), "action": exc.action}
        elif isinstance(exc, PublishRefusedError):
            extra = {"errors": [{k: v for k, v in e.items() if k != "location"} for e in exc.errors]}
        response = problem(status, type_, title, str(exc), instance=str(request.url.path), **extra)
        if status == 401:
            challenge = 'Bearer error="invalid_token"' if request.headers.get("authorization") else "Bearer"
            response.headers["WWW-Authenticate"] = challenge
        return response

    for exc_type in STATUS:
        app.add_exception_handler(exc_type, domain_handler)

    async def validation_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem(422, "validation", "Invalid request", detail, errors=errors, instance=str(request.url.path))

    async def http_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, "http", str(exc.detail), str(exc.detail), instance=str(request.url.path))

    async def unexpected_handler(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "internal", "Internal error", "the server failed to handle this request; see its log", instance=str(request.url.path))

    app.add_exception_handler(Exception, unexpected_handler)
    app.add_exception_handler(RequestValidationError, validation_handler)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_handler)  # type: ignore[arg-type]
