"""Logins: `POST /token` (OAuth2 password flow → a JWT bearer token) and `GET /me`."""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import OAuth2PasswordRequestForm
from starlette.concurrency import run_in_threadpool

from api.auth import DUMMY_HASH, Principal, issue_token, verify_password
from api.deps import COOKIE, PrincipalDep, RuntimeDep, claims_from, token_of
from api.errors import UnauthorizedProblem
from api.runtime import Runtime
from store.ports import UserRecord

router = APIRouter(tags=["auth"])


_CHECKS = threading.BoundedSemaphore(4)
"""At most this many argon2 checks at once (each takes ~64 MiB): a login flood queues instead of eating memory."""


def _verify(stored: str, password: str) -> bool:
    with _CHECKS:
        return verify_password(stored, password)


async def authenticate(rt: Runtime, username: str, password: str) -> UserRecord | None:
    """The user of a username and password, None when either is wrong. argon2 runs even for an unknown
    name, so the answer time does not tell which names exist."""
    user = await run_in_threadpool(rt.store.user, username)
    ok = await run_in_threadpool(_verify, user.password_hash if user is not None else DUMMY_HASH, password)
    if user is None or not ok:
        return None
    return user


def token_for(rt: Runtime, user: UserRecord) -> str:
    """A login's token for a user who just gave their password."""
    return issue_token(Principal.of_user(user), rt.settings.secret_key.get_secret_value(),
                       password_hash=user.password_hash, now=rt.now())


@router.post("/token")
async def token(form: Annotated[OAuth2PasswordRequestForm, Depends()], rt: RuntimeDep, response: Response) -> dict[str, Any]:
    """Exchange a username and password for a bearer token (`Authorization: Bearer …`)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    user = await authenticate(rt, form.username, form.password)
    if user is None:
        raise UnauthorizedProblem("username or password is wrong")
    return {"access_token": token_for(rt, user), "token_type": "bearer",
            "role": user.role, "grid": user.grid_code, "patroller": user.patroller_id}


@router.get("/me")
def me(principal: PrincipalDep) -> dict[str, Any]:
    """Who the bearer token speaks for."""
    return {"username": principal.username, "role": principal.role, "grid": principal.grid, "patroller": principal.patroller_id}



@router.post("/logout", status_code=204)
def logout(request: Request, rt: RuntimeDep) -> Response:
    """Revoke the token of this request (header or login cookie) before its expiry: it stops working at once,
    on every route and on an open live stream at its next check. Other logins of the same user go on."""
    token = token_of(request)
    if token is None:
        raise UnauthorizedProblem("a bearer token is required (POST /api/v1/token)")
    revoke(rt, token)
    cookie = request.cookies.get(COOKIE)
    if cookie and cookie != token:  # the cookie goes too: its token must not outlive it elsewhere
        try:
            revoke(rt, cookie)
        except UnauthorizedProblem:
            pass  # expired or already ended
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/")
    return response


def revoke(rt: Runtime, token: str) -> None:
    """Revoke a token that still holds (401 otherwise: nothing to revoke)."""
    claims = claims_from(rt, token)
    rt.store.revoke_token(claims.token_id, username=claims.principal.username, expires_at=claims.expires_at, at=rt.now())
