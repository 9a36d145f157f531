"""Logins: argon2 hashes, JWT tokens, principals → workflow actors (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from api.auth import (
    AuthError,
    Principal,
    UserError,
    check_user,
    grid_level,
    hash_password,
    issue_token,
    password_tag,
    read_claims,
    read_token,
    verify_password,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
SECRET = "unit-test-secret-of-some-length-1234"


def test_passwords_are_argon2_hashes_that_verify() -> None:
    h = hash_password("correct horse")
    assert h.startswith("$argon2id$") and "correct horse" not in h
    assert verify_password(h, "correct horse") and not verify_password(h, "wrong horse")
    assert not verify_password("not-a-hash", "correct horse")
    with pytest.raises(UserError, match="at least 8"):
        hash_password("short")


def test_tokens_round_trip_and_refuse_forgery_expiry_and_bad_roles() -> None:
    p = Principal("street", "commander", grid="430102001")
    token = issue_token(p, SECRET, password_hash="$argon2id$hash-1", now=T0)
    assert read_token(token, SECRET, now=T0 + timedelta(hours=1)) == p
    with pytest.raises(AuthError, match="expired"):
        read_token(token, SECRET, now=T0 + timedelta(hours=13))
    with pytest.raises(AuthError, match="not valid"):
        read_token(token, "another-secret-of-some-length-12345", now=T0)
    with pytest.raises(AuthError):
        read_token("garbage", SECRET, now=T0)
    forged = jwt.encode({"sub": "x", "role": "god", "exp": int((T0 + timedelta(hours=1)).timestamp()), "jti": "j", "pwd": "t"},
                        SECRET, algorithm="HS256")
    with pytest.raises(AuthError, match="role"):
        read_token(forged, SECRET, now=T0)
    unsigned = jwt.encode({"sub": "x", "role": "admin", "exp": 9999999999}, None, algorithm="none")
    with pytest.raises(AuthError):
        read_token(unsigned, SECRET, now=T0)


def test_tokens_carry_an_id_and_the_tag_of_the_password_they_were_issued_against() -> None:
    p = Principal("ops", "admin")
    first, second = (read_claims(issue_token(p, SECRET, password_hash="$argon2id$hash-1", now=T0), SECRET, now=T0)
                     for _ in range(2))
    assert first.principal == second.principal == p
    assert first.token_id != second.token_id and len(first.token_id) >= 16  # each login is revocable alone
    assert first.password_tag == password_tag("$argon2id$hash-1") != password_tag("$argon2id$hash-2")
    assert "hash-1" not in first.password_tag
    assert first.expires_at == T0 + timedelta(hours=12)
    exp = int((T0 + timedelta(hours=1)).timestamp())
    for claims, what in (({"sub": "ops", "role": "admin", "exp": exp, "pwd": "t"}, "jti"),
                         ({"sub": "ops", "role": "admin", "exp": exp, "jti": "j"}, "pwd"),
                         ({"sub": "ops", "role": "admin", "exp": exp, "jti": 7, "pwd": "t"}, "id"),
                         ({"sub": "ops", "role": "admin", "exp": 1e300, "jti": "j", "pwd": "t"}, "exp")):
        with pytest.raises(AuthError, match="not valid"):
            read_claims(jwt.encode(claims, SECRET, algorithm="HS256"), SECRET, now=T0)


def test_principals_map_to_workflow_actors() -> None:
    assert str(Principal("s", "commander", grid="430102001").actor()) == "center:1:430102001"
    assert str(Principal("c", "commander", grid="430102001001").actor()) == "center:2:430102001001"
    assert str(Principal("p", "patroller", patroller_id="P0001").actor()) == "patroller:P0001"
    assert Principal("a", "admin").actor().kind == "system"
    with pytest.raises(AuthError):
        Principal("pl", "planner").actor()


def test_user_definitions_are_checked() -> None:
    check_user("commander", "430102001001001", None)
    check_user("patroller", None, "P0001")
    for role, grid, pid, field in [("boss", None, None, "role"), ("commander", None, None, "grid"),
                                   ("commander", "4301", None, "grid"), ("patroller", None, None, "patroller")]:
        with pytest.raises(UserError, match=field):
            check_user(role, grid, pid)
    assert (grid_level("430102001"), grid_level("430102001001"), grid_level("430102001001001")) == (1, 2, 3)


def test_the_secret_must_be_long_and_not_the_default_outside_demo() -> None:
    from api.settings import Settings

    for key in (None, "short-secret"):
        kw = {} if key is None else {"secret_key": key}
        with pytest.raises(ValueError, match="at least 32 bytes"):
            Settings(_env_file=None, database_url="sqlite:///x.db", **kw).check_secret()
    Settings(_env_file=None, database_url="sqlite:///x.db", demo=True).check_secret()
    Settings(_env_file=None, database_url="sqlite:///x.db", secret_key="x" * 32).check_secret()
