"""Logins: `POST /token` (OAuth2 password flow → a JWT bearer token) and `GET /me`."""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Response
from fastapi.security import OAuth2PasswordRequestForm
from starlette.concurrency import run_in_threadpool

from api.auth import DUMMY_HASH, AuthError, Principal, issue_token, read_token, verify_password
from api.deps import RuntimeDep
from api.errors import UnauthorizedProblem

router = APIRouter(tags=["auth"])


_CHECKS = threading.BoundedSemaphore(4)
"""At most this many argon2 checks at once (each takes ~64 MiB): a login flood queues instead of eating memory."""


def _verify(stored: str, password: str) -> bool:
    with _CHECKS:
        return verify_password(stored, password)


@router.post("/token")
async def token(form: Annotated[OAuth2PasswordRequestForm, Depends()], rt: RuntimeDep, response: Response) -> dict[str, Any]:
    """Exchange a username and password for a bearer token (`Authorization: Bearer …`)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    user = await run_in_threadpool(rt.store.user, form.username)
    # argon2 runs even for an unknown name, so the answer time does not tell which names exist
    stored = user.password_hash if user is not None else DUMMY_HASH
    ok = await run_in_threadpool(_verify, stored, form.password)
    if user is None or not ok:
        raise UnauthorizedProblem("username or password is wrong")
    principal = Principal(user.username, user.role, user.grid_code, user.patroller_id)
    secret = rt.settings.secret_key.get_secret_value()
    return {"access_token": issue_token(principal, secret, now=rt.now()), "token_type": "bearer",
            "role": user.role, "grid": user.grid_code, "patroller": user.patroller_id}


def principal_of(rt: RuntimeDep, authorization: Annotated[str | None, Header()] = None) -> Principal:
    """The principal of the request's bearer token (401 without a valid one)."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not value:
        raise UnauthorizedProblem("a bearer token is required (POST /api/v1/token)")
    try:
        principal = read_token(value.strip(), rt.settings.secret_key.get_secret_value(), now=rt.now())
    except AuthError as exc:
        raise UnauthorizedProblem(str(exc)) from exc
    # the user must still exist with the same role and binding (a changed or deleted user's old tokens stop working)
    user = rt.store.user(principal.username)
    if user is None or (user.role, user.grid_code, user.patroller_id) != (principal.role, principal.grid, principal.patroller_id):
        raise UnauthorizedProblem("token not valid (the user changed)")
    return principal


PrincipalDep = Annotated[Principal, Depends(principal_of)]


@router.get("/me")
def me(principal: PrincipalDep) -> dict[str, Any]:
    """Who the bearer token speaks for."""
    return {"username": principal.username, "role": principal.role, "grid": principal.grid, "patroller": principal.patroller_id}

