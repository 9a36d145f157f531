"""Logins of the pages: `GET /login` (a form), `POST /login` (sets the HttpOnly session cookie holding
the same JWT as `POST /api/v1/token`), `POST /logout`. A page without a valid login redirects here.

The cookie is `SameSite=Strict` (a cross-site form or script cannot ride on it) and `Secure` when the
request came over HTTPS; EventSource (`GET /api/v1/stream`) and page loads send it, which a header
token cannot do.
"""

from __future__ import annotations

import html
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.auth import TOKEN_TTL, Principal
from api.deps import COOKIE, RuntimeDep, principal_from, token_of
from api.errors import UnauthorizedProblem
from api.routes.auth import authenticate, revoke, token_for

router = APIRouter(tags=["pages"])

HOME = {"patroller": "/patroller", "planner": "/docs", "device": "/docs"}
"""Where a role lands after logging in without a `next` (commanders and admins: the map wall)."""


class LoginRequired(Exception):
    """A page was asked for without a valid login: redirect to /login?next=<the page>."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url
        super().__init__(next_url)


def safe_next(value: str | None, fallback: str = "/map") -> str:
    """A local path to go to after login (never another host: no scheme, no `//`, no backslash)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value or "\n" in value or "\r" in value:
        return fallback
    return value


def page_principal(request: Request, rt: RuntimeDep) -> Principal:
    """The login of a page request (LoginRequired → a redirect to /login when there is none or it expired)."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    try:
        token = token_of(request)
        if token is None:
            raise LoginRequired(here)
        return principal_from(rt, token)
    except UnauthorizedProblem:
        raise LoginRequired(here) from None


def login_redirect(request: Request, exc: Exception) -> Response:
    """The handler of LoginRequired."""
    assert isinstance(exc, LoginRequired)
    response = RedirectResponse(f"/login?next={quote(exc.next_url, safe='')}", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>gridwatch · log in</title><link rel="icon" href="data:,">
<style>
body{{font-family:system-ui,sans-serif;background:#eceff1;display:flex;min-height:100vh;margin:0;align-items:center;justify-content:center}}
form{{background:#fff;padding:24px 28px;border-radius:8px;box-shadow:0 2px 12px #0002;width:min(320px,86vw)}}
h1{{font-size:20px;margin:0 0 16px}} label{{display:block;font-size:13px;color:#455a64;margin-top:12px}}
input{{width:100%;box-sizing:border-box;font-size:16px;padding:8px;margin-top:4px;border:1px solid #b0bec5;border-radius:4px}}
button{{margin-top:18px;width:100%;font-size:16px;padding:10px;background:#1565c0;color:#fff;border:0;border-radius:4px}}
.error{{color:#c62828;font-size:14px;margin-top:10px}}
</style></head><body>
<form method="post" action="/login" id="login">
<h1>gridwatch</h1>
<label>Username <input name="username" id="username" autocomplete="username" required autofocus value="{username}"></label>
<label>Password <input name="password" id="password" type="password" autocomplete="current-password" required></label>
<input type="hidden" name="next" value="{next}">
<button type="submit" id="submit">Log in</button>
{error}
</form></body></html>"""


def _page(next_url: str, *, error: str = "", username: str = "", status: int = 200) -> HTMLResponse:
    err = f'<p class="error" id="error">{html.escape(error)}</p>' if error else ""
    body = _PAGE.format(next=html.escape(next_url, quote=True), username=html.escape(username, quote=True), error=err)
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


@router.get("/login", response_class=HTMLResponse)
def login_page(next: str | None = None) -> HTMLResponse:  # noqa: A002 - the query parameter's name
    """The login form."""
    return _page(safe_next(next, ""))


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    rt: RuntimeDep,
    username: Annotated[str, Form(max_length=100)],
    password: Annotated[str, Form(max_length=200)],
    next: Annotated[str, Form(max_length=2000)] = "",  # noqa: A002
) -> Response:
    """Check the password; on success set the session cookie and go to `next` (or the role's home page)."""
    user = await authenticate(rt, username, password)
    if user is None:
        return _page(safe_next(next, ""), error="Username or password is wrong.", username=username, status=401)
    token = token_for(rt, user)
    response = RedirectResponse(safe_next(next, HOME.get(user.role, "/map")), status_code=303)
    response.set_cookie(COOKIE, token, max_age=int(TOKEN_TTL.total_seconds()), path="/", httponly=True,
                        samesite="strict", secure=_https(request))
    return response


def _https(request: Request) -> bool:
    """Whether the browser talks HTTPS: directly, or to a TLS-terminating proxy that says so."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


@router.post("/logout")
def logout(request: Request, rt: RuntimeDep) -> Response:
    """Revoke the session's token (it stops working at once, even if a copy of the cookie survives) and
    forget the cookie."""
    token = request.cookies.get(COOKIE)
    if token:
        try:
            revoke(rt, token)
        except UnauthorizedProblem:
            pass  # expired or already ended: nothing to revoke, the cookie goes anyway
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
