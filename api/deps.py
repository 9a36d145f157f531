"""FastAPI dependencies: the runtime, and who the request speaks for (design §8)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from api.access import Scope, require
from api.auth import AuthError, Principal, TokenClaims, password_tag, read_claims
from api.errors import UnauthorizedProblem
from api.runtime import Runtime

COOKIE = "gridwatch_token"
"""The login cookie of the pages (HttpOnly, SameSite=Strict): EventSource and page loads cannot send a header."""


def get_runtime(request: Request) -> Runtime:
    """The runtime the app was built with."""
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def token_of(request: Request) -> str | None:
    """The bearer token of a request: the `Authorization: Bearer` header, else the login cookie."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            if not value.strip():
                raise UnauthorizedProblem("expected 'Authorization: Bearer <token>' (POST /api/v1/token)")
            return value.strip()
        # another scheme (e.g. a proxy's Basic auth) is not ours: the login cookie may still be there
    return request.cookies.get(COOKIE) or None


def principal_from(rt: Runtime, token: str) -> Principal:
    """The principal of a token, checked against the stored user (401 when it does not hold)."""
    return claims_from(rt, token).principal


def claims_from(rt: Runtime, token: str) -> TokenClaims:
    """The claims of a token that still holds: signed, not expired, its user unchanged (same role, binding
    and password: a deleted, changed or re-passworded user's older tokens stop working) and not revoked by
    logging out. 401 otherwise."""
    try:
        claims = read_claims(token, rt.settings.secret_key.get_secret_value(), now=rt.now())
    except AuthError as exc:
        raise UnauthorizedProblem(str(exc)) from exc
    principal = claims.principal
    user = rt.store.user(principal.username)
    if user is None or (user.role, user.grid_code, user.patroller_id) != (principal.role, principal.grid, principal.patroller_id):
        raise UnauthorizedProblem("token not valid (the user changed)")
    if not hmac.compare_digest(claims.password_tag, password_tag(user.password_hash)):
        raise UnauthorizedProblem("token not valid (the password changed)")
    if rt.store.token_revoked(claims.token_id):
        raise UnauthorizedProblem("token revoked (logged out)")
    return claims


def principal_of(request: Request, rt: RuntimeDep) -> Principal:
    """The principal of the request's token (401 without a valid one)."""
    token = token_of(request)
    if token is None:
        raise UnauthorizedProblem("a bearer token is required (POST /api/v1/token)")
    return principal_from(rt, token)


PrincipalDep = Annotated[Principal, Depends(principal_of)]


def allow(*roles: str) -> Callable[[Principal], Principal]:
    """A dependency: the request's principal when its role is one of `roles` (403 otherwise)."""

    def dependency(principal: PrincipalDep) -> Principal:
        return require(principal, *roles)

    return dependency


def scope_of(principal: PrincipalDep, rt: RuntimeDep) -> Scope:
    """What the request's principal may see (its geofence resolved against the current roster)."""
    return Scope.of(principal, rt.patrollers)


ScopeDep = Annotated[Scope, Depends(scope_of)]
