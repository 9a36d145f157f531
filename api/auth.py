"""Logins (design §8): argon2 password hashes, JWT bearer tokens, and who a token speaks for.

Roles: `admin` (everything), `commander` (bound to one grid: sees and acts on its subtree),
`patroller` (bound to a patroller id), `planner` (grid versions), `device` (pushes over HTTP).
A token (`POST /api/v1/token`, OAuth2 password flow) is an HS256 JWT signed with the settings'
secret key: `sub` the username, `role`, `grid` / `patroller`, `iat`, `exp`.

This module issues and reads tokens and maps a principal to the workflow's actor
(`alerts.roles.Actor`); it does no I/O. Which routes require which principal is the routers'
business.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from alerts.roles import Actor

if TYPE_CHECKING:
    from store.ports import UserRecord

ROLES = ("admin", "commander", "patroller", "planner", "device")
ALGORITHM = "HS256"
TOKEN_TTL = timedelta(hours=12)
GRID_LEVEL_BY_LENGTH = {9: 1, 12: 2, 15: 3}
"""A grid code's level by its length (design §5: 9 digits district street, +3 community, +3 unit grid)."""

_hasher = PasswordHasher()
DUMMY_HASH = _hasher.hash("gridwatch-no-such-user")
"""Verified against when a username is unknown, so that the answer takes as long as for a known one."""


class AuthError(Exception):
    """A login or a token is not acceptable (the message says why, without leaking which part failed)."""


class UserError(ValueError):
    """A user definition is not valid (the message names the field)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request speaks for."""

    username: str
    role: str
    grid: str | None = None
    patroller_id: str | None = None

    @classmethod
    def of_user(cls, user: UserRecord) -> Principal:
        """Who a stored user speaks for."""
        return cls(user.username, user.role, user.grid_code, user.patroller_id)

    def actor(self, level: int | None = None) -> Actor:
        """The workflow actor of this principal (alerts.roles): a center, a patroller or the system. A
        commander's center is of `level` (its grid's stored level; by default the level its code length says)."""
        if self.role == "commander" and self.grid is not None:
            return Actor("center", self.grid, level=level or grid_level(self.grid), grid=self.grid)
        if self.role == "patroller" and self.patroller_id is not None:
            return Actor("patroller", self.patroller_id)
        if self.role == "admin":
            return Actor("system", f"admin-{self.username}")
        raise AuthError(f"role {self.role!r} does not act on incidents")


def grid_level(code: str) -> int:
    """The level (1..3) of a grid code, by its length; UserError for another length."""
    level = GRID_LEVEL_BY_LENGTH.get(len(code))
    if level is None or not code.isdigit():
        raise UserError(f"grid {code!r}: expected a grid code of 9, 12 or 15 digits")
    return level


def check_user(role: str, grid: str | None, patroller_id: str | None) -> None:
    """Raise UserError unless the role and its binding fit together."""
    if role not in ROLES:
        raise UserError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    if role == "commander":
        if not grid:
            raise UserError("grid: a commander is bound to a grid (its code)")
        grid_level(grid)
    if role == "patroller" and not patroller_id:
        raise UserError("patroller: a patroller user is bound to a patroller id")


def hash_password(password: str) -> str:
    """An argon2id hash of the password (UserError for an empty or too short one)."""
    if len(password) < 8:
        raise UserError("password: expected at least 8 characters")
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether the password matches the stored hash (never raises on a wrong or unreadable hash)."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_tag(password_hash: str) -> str:
    """A short digest of a stored password hash, carried in tokens (`pwd`): when the password changes, the
    hash and so the tag change, and the tokens issued before stop working."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a valid token says: who it speaks for, its id (`jti`), the password tag and its expiry."""

    principal: Principal
    token_id: str
    password_tag: str
    expires_at: datetime


def issue_token(principal: Principal, secret: str, *, password_hash: str, now: datetime | None = None,
                ttl: timedelta = TOKEN_TTL) -> str:
    """A signed bearer token for the principal, issued against its user's current `password_hash`."""
    at = now or datetime.now(UTC)
    claims: dict[str, Any] = {"sub": principal.username, "role": principal.role, "iat": int(at.timestamp()),
                              "exp": int((at + ttl).timestamp()), "jti": secrets.token_urlsafe(16),
                              "pwd": password_tag(password_hash)}
    if principal.grid is not None:
        claims["grid"] = principal.grid
    if principal.patroller_id is not None:
        claims["patroller"] = principal.patroller_id
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def read_token(token: str, secret: str, *, now: datetime | None = None) -> Principal:
    """The principal of a token; AuthError when it is forged, expired or malformed."""
    return read_claims(token, secret, now=now).principal


def read_claims(token: str, secret: str, *, now: datetime | None = None) -> TokenClaims:
    """The claims of a token; AuthError when it is forged, expired or malformed. Whether its user still
    holds (same role, binding and password) and whether it was revoked is the caller's check (api.deps)."""
    options: dict[str, Any] = {"require": ["sub", "role", "exp", "jti", "pwd"]}
    try:
        if now is not None:  # judge expiry by the runtime's clock (tests run it at fixed times)
            claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={**options, "verify_exp": False, "verify_iat": False})
            exp = claims["exp"]
            if isinstance(exp, bool) or not isinstance(exp, int | float):
                raise AuthError("token not valid (exp)")
            if exp <= now.timestamp():
                raise AuthError("token expired")
        else:
            claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options=options)
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token expired") from exc
    except jwt.PyJWTError as exc:
        raise AuthError(f"token not valid ({type(exc).__name__})") from exc
    role, grid, patroller = claims.get("role"), claims.get("grid"), claims.get("patroller")
    if role not in ROLES or not isinstance(claims.get("sub"), str):
        raise AuthError("token not valid (role)")
    if not all(v is None or isinstance(v, str) for v in (grid, patroller)):
        raise AuthError("token not valid (binding)")
    try:
        check_user(role, grid, patroller)
    except UserError as exc:
        raise AuthError("token not valid (binding)") from exc
    token_id, tag, exp = claims.get("jti"), claims.get("pwd"), claims.get("exp")
    if not isinstance(token_id, str) or not isinstance(tag, str) or not token_id or len(token_id) > 64:
        raise AuthError("token not valid (id)")
    try:
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            raise TypeError(exp)
        expires_at = datetime.fromtimestamp(exp, UTC)
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise AuthError("token not valid (exp)") from exc
    return TokenClaims(Principal(claims["sub"], role, grid, patroller), token_id, tag, expires_at)
