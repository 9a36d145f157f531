"""Logins: `POST /token` (OAuth2 password flow → a JWT bearer token) and `GET /me`."""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from fastapi.security import OAuth2PasswordRequestForm
from starlette.concurrency import run_in_threadpool

from api.auth import DUMMY_HASH, Principal, issue_token, verify_password
from api.deps import PrincipalDep, RuntimeDep
from api.errors import UnauthorizedProblem
from api.runtime import Runtime

router = APIRouter(tags=["auth"])


_CHECKS = threading.BoundedSemaphore(4)
"""At most this many argon2 checks at once (each takes ~64 MiB): a login flood queues instead of eating memory."""


def _verify(stored: str, password: str) -> bool:
    with _CHECKS:
        return verify_password(stored, password)


async def authenticate(rt: Runtime, username: str, password: str) -> Principal | None:
    """The principal of a username and password, None when either is wrong. argon2 runs even for an unknown
    name, so the answer time does not tell which names exist."""
    user = await run_in_threadpool(rt.store.user, username)
    ok = await run_in_threadpool(_verify, user.password_hash if user is not None else DUMMY_HASH, password)
    if user is None or not ok:
        return None
    return Principal(user.username, user.role, user.grid_code, user.patroller_id)


@router.post("/token")
async def token(form: Annotated[OAuth2PasswordRequestForm, Depends()], rt: RuntimeDep, response: Response) -> dict[str, Any]:
    """Exchange a username and password for a bearer token (`Authorization: Bearer …`)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    principal = await authenticate(rt, form.username, form.password)
    if principal is None:
        raise UnauthorizedProblem("username or password is wrong")
    secret = rt.settings.secret_key.get_secret_value()
    return {"access_token": issue_token(principal, secret, now=rt.now()), "token_type": "bearer",
            "role": principal.role, "grid": principal.grid, "patroller": principal.patroller_id}


@router.get("/me")
def me(principal: PrincipalDep) -> dict[str, Any]:
    """Who the bearer token speaks for."""
    return {"username": principal.username, "role": principal.role, "grid": principal.grid, "patroller": principal.patroller_id}

