"""POST /api/v1/token and GET /api/v1/me on both stores; users from the CLI and the demo."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from api.auth import hash_password, password_tag
from api.cli_users import ensure_demo_users
from api.runtime import Runtime
from store.ports import UserRecord
from tests.integration.apphelpers import PROBLEM, Clock

pytestmark = pytest.mark.integration


def login(client: TestClient, username: str, password: str) -> object:
    return client.post("/api/v1/token", data={"username": username, "password": password})


def test_a_user_logs_in_and_the_token_says_who_they_are(rt: Runtime, client: TestClient, clock: Clock) -> None:
    grid = rt.store.grids(level=2)[0].code
    assert rt.store.save_user(UserRecord("street", hash_password("street-secret"), "commander", grid), at=clock.now)
    assert not rt.store.save_user(UserRecord("street", hash_password("street-secret"), "commander", grid), at=clock.now)
    r = login(client, "street", "street-secret")
    assert r.status_code == 200, r.text  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    assert body["token_type"] == "bearer" and body["role"] == "commander" and body["grid"] == grid
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json() == {"username": "street", "role": "commander", "grid": grid, "patroller": None}
    clock.advance(hours=13)
    expired = client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]


def test_wrong_passwords_unknown_users_and_missing_tokens_are_401(rt: Runtime, client: TestClient, clock: Clock) -> None:
    client.headers.pop("Authorization")  # the fixture's client is logged in as an admin
    rt.store.save_user(UserRecord("admin", hash_password("admin-secret"), "admin"), at=clock.now)
    for name, pw in (("admin", "wrong-secret"), ("nobody", "admin-secret")):
        r = login(client, name, pw)
        assert r.status_code == 401 and r.headers["content-type"].startswith(PROBLEM)  # type: ignore[attr-defined]
        assert r.json()["detail"] == "username or password is wrong"  # type: ignore[attr-defined]
    assert client.get("/api/v1/me").status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": "Bearer nonsense"}).status_code == 401
    assert rt.store.user("admin").password_hash.startswith("$argon2id$")  # type: ignore[union-attr]


def test_demo_users_cover_every_role(rt: Runtime, client: TestClient) -> None:
    made = ensure_demo_users(rt.store, "demo-password")
    assert {role for _, role, _ in made} == {"admin", "commander", "patroller", "planner"}
    assert ensure_demo_users(rt.store, "demo-password") == made  # idempotent
    for name, role, _ in made:
        assert login(client, name, "demo-password").json()["role"] == role  # type: ignore[attr-defined]
    street = rt.store.user("street")
    district = rt.store.user("district")
    assert street is not None and district is not None and street.grid_code.startswith(district.grid_code)  # type: ignore[union-attr]


def test_users_cli_adds_checks_and_lists(tmp_path: object) -> None:
    from typer.testing import CliRunner

    from api.cli import app

    url = f"sqlite:///{tmp_path}/users.db"
    runner = CliRunner()
    assert runner.invoke(app, ["seed", "--database-url", url]).exit_code == 0
    ok = runner.invoke(app, ["users", "add", "ops", "--role", "admin", "--database-url", url], input="ops-password\nops-password\n")
    assert ok.exit_code == 0 and "created admin ops" in ok.output, ok.output
    bad = runner.invoke(app, ["users", "add", "boss", "--role", "commander", "--grid", "999999999", "--password", "long-enough",
                              "--database-url", url])
    assert bad.exit_code == 2 and "not in the current grid version" in bad.output
    short = runner.invoke(app, ["users", "add", "x", "--role", "planner", "--password", "short", "--database-url", url])
    assert short.exit_code == 2 and "at least 8" in short.output
    listed = runner.invoke(app, ["users", "list", "--database-url", url])
    assert "ops" in listed.output and "$argon2" not in listed.output


def test_tokens_of_changed_or_deleted_users_stop_working_and_401s_challenge(rt: Runtime, client: TestClient, clock: Clock) -> None:
    import jwt

    client.headers.pop("Authorization")  # the fixture's client is logged in as an admin

    grid = rt.store.grids(level=2)[0].code
    rt.store.save_user(UserRecord("cmd", hash_password("cmd-secret-1"), "commander", grid), at=clock.now)
    r = login(client, "cmd", "cmd-secret-1")
    assert r.headers["cache-control"] == "no-store"  # type: ignore[attr-defined]
    bearer = {"Authorization": f"Bearer {r.json()['access_token']}"}  # type: ignore[attr-defined]
    assert client.get("/api/v1/me", headers=bearer).status_code == 200
    rt.store.save_user(UserRecord("cmd", hash_password("cmd-secret-2"), "planner"), at=clock.now)  # demoted
    refused = client.get("/api/v1/me", headers=bearer)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert client.get("/api/v1/me").headers["www-authenticate"] == "Bearer"
    secret = rt.settings.secret_key.get_secret_value()
    exp = int((clock.now + timedelta(hours=1)).timestamp())
    for claims in ({"sub": "ghost", "role": "admin", "exp": exp},  # no such user
                   {"sub": "cmd", "role": "commander", "exp": exp},  # a commander without a grid
                   {"sub": "cmd", "role": "planner", "exp": "tomorrow"}):  # a malformed expiry
        tag = password_tag(rt.store.user("cmd").password_hash)  # type: ignore[union-attr]
        forged = jwt.encode({**claims, "jti": "forged-1", "pwd": tag}, secret, algorithm="HS256")
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {forged}"}).status_code == 401, claims


def test_the_demo_does_not_reset_an_existing_password(rt: Runtime, client: TestClient, clock: Clock) -> None:
    rt.store.save_user(UserRecord("admin", hash_password("the-real-admin-pw"), "admin"), at=clock.now)
    ensure_demo_users(rt.store, "demo-password")
    assert login(client, "admin", "the-real-admin-pw").status_code == 200  # type: ignore[attr-defined]
    assert login(client, "admin", "demo-password").status_code == 401  # type: ignore[attr-defined]


def test_device_tokens_are_long_lived_bound_and_revocable(rt: Runtime, client: TestClient, clock: Clock, tmp_path: object) -> None:
    """A phone app's token from `gridwatch users token`: valid for days, pushes its own patroller's positions
    only, and dead once the user is deleted."""
    from typer.testing import CliRunner

    from api.cli import app

    url = rt.store.url
    runner = CliRunner()
    pid = rt.patrollers[0].id
    added = runner.invoke(app, ["users", "add", "phone-7", "--role", "device", "--patroller", pid, "--password", "phone-password",
                                "--database-url", url])
    assert added.exit_code == 0, added.output
    refused = runner.invoke(app, ["users", "token", "nobody", "--database-url", url])
    assert refused.exit_code == 2 and "role device" in refused.output
    made = runner.invoke(app, ["users", "token", "phone-7", "--days", "30", "--database-url", url],
                         env={"GRIDWATCH_SECRET_KEY": rt.settings.secret_key.get_secret_value()})
    assert made.exit_code == 0, made.output
    token = made.output.strip()
    client.headers.pop("Authorization")
    clock.advance(days=20)  # long past a login's 12 h
    here = {"lat": 27.62, "lon": 113.85, "access_token": token}
    assert client.get("/ingest/osmand", params={"id": pid, **here}).status_code == 200
    assert client.get("/ingest/osmand", params={"id": "someone-else", **here}).status_code == 403
    assert runner.invoke(app, ["users", "delete", "phone-7", "--database-url", url]).exit_code == 0
    assert client.get("/ingest/osmand", params={"id": pid, **here}).status_code == 401
    assert runner.invoke(app, ["users", "delete", "phone-7", "--database-url", url]).exit_code == 1


def _token_id(token: str) -> str:
    import jwt

    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


def test_logging_out_revokes_that_token_and_no_other(rt: Runtime, client: TestClient, clock: Clock) -> None:
    client.headers.pop("Authorization")
    rt.store.save_user(UserRecord("ops", hash_password("ops-secret-1"), "admin"), at=clock.now)
    first, second = (login(client, "ops", "ops-secret-1").json()["access_token"] for _ in range(2))  # type: ignore[attr-defined]
    bearer = {"Authorization": f"Bearer {first}"}
    out = client.post("/api/v1/logout", headers=bearer)
    assert out.status_code == 204, out.text
    refused = client.get("/api/v1/me", headers=bearer)
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    assert client.get("/api/v1/incidents", headers=bearer).status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {second}"}).status_code == 200  # another login goes on
    assert client.post("/api/v1/logout", headers=bearer).status_code == 401  # nothing left to revoke
    assert client.post("/api/v1/logout").status_code == 401
    assert rt.store.token_revoked(_token_id(first)) and not rt.store.token_revoked(_token_id(second))

    # a revoked token's row is kept until the token would have expired, then pruned by a later revocation
    clock.advance(hours=13)
    third = login(client, "ops", "ops-secret-1").json()["access_token"]  # type: ignore[attr-defined]
    assert client.post("/api/v1/logout", headers={"Authorization": f"Bearer {third}"}).status_code == 204
    assert not rt.store.token_revoked(_token_id(first)) and rt.store.token_revoked(_token_id(third))
    rt.store.revoke_token(_token_id(third), username="ops", expires_at=clock.now + timedelta(hours=1), at=clock.now)  # idempotent
    assert rt.store.token_revoked(_token_id(third))


def test_logging_out_of_the_pages_revokes_the_session_cookie(rt: Runtime, client: TestClient, clock: Clock) -> None:
    client.headers.pop("Authorization")
    rt.store.save_user(UserRecord("wall", hash_password("wall-secret-1"), "admin"), at=clock.now)
    r = client.post("/login", data={"username": "wall", "password": "wall-secret-1"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    session = r.cookies.get("gridwatch_token")
    assert session
    client.cookies.clear()
    cookie = {"Cookie": f"gridwatch_token={session}"}
    assert client.get("/api/v1/me", headers=cookie).status_code == 200
    out = client.post("/logout", headers=cookie, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert "gridwatch_token=" in out.headers["set-cookie"] and "Max-Age=0" in out.headers["set-cookie"]
    # a copy of the cookie kept elsewhere is dead too
    assert client.get("/api/v1/me", headers=cookie).status_code == 401
    page = client.get("/map", headers=cookie, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert client.post("/logout", headers=cookie, follow_redirects=False).status_code == 303  # twice is harmless

    # a bearer logout that also carries the cookie ends both (the cookie is deleted: its token must not outlive it)
    again = client.post("/login", data={"username": "wall", "password": "wall-secret-1"}, follow_redirects=False)
    session = again.cookies.get("gridwatch_token")
    client.cookies.clear()
    bearer = login(client, "wall", "wall-secret-1").json()["access_token"]  # type: ignore[attr-defined]
    both = {"Authorization": f"Bearer {bearer}", "Cookie": f"gridwatch_token={session}"}
    assert client.post("/api/v1/logout", headers=both).status_code == 204
    assert client.get("/api/v1/me", headers={"Cookie": f"gridwatch_token={session}"}).status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {bearer}"}).status_code == 401


def test_a_new_password_ends_every_older_token(rt: Runtime, client: TestClient, clock: Clock) -> None:
    from typer.testing import CliRunner

    from api.cli import app

    client.headers.pop("Authorization")
    url, runner = rt.store.url, CliRunner()
    env = {"GRIDWATCH_SECRET_KEY": rt.settings.secret_key.get_secret_value()}
    rt.store.save_user(UserRecord("ops", hash_password("ops-secret-1"), "admin"), at=clock.now)
    rt.store.save_user(UserRecord("cam-gw", hash_password("cam-secret-1"), "device"), at=clock.now)
    person = {"Authorization": f"Bearer {login(client, 'ops', 'ops-secret-1').json()['access_token']}"}  # type: ignore[attr-defined]
    made = runner.invoke(app, ["users", "token", "cam-gw", "--database-url", url], env=env)
    assert made.exit_code == 0, made.output
    device = {"Authorization": f"Bearer {made.output.strip()}"}
    assert client.get("/api/v1/me", headers=person).status_code == 200
    assert client.get("/api/v1/me", headers=device).status_code == 200

    for name, new in (("ops", "ops-secret-2"), ("cam-gw", "cam-secret-2")):
        changed = runner.invoke(app, ["users", "passwd", name, "--database-url", url], input=f"{new}\n{new}\n")
        assert changed.exit_code == 0 and "older tokens no longer work" in changed.output, changed.output
    for headers in (person, device):
        refused = client.get("/api/v1/me", headers=headers)
        assert refused.status_code == 401 and "password changed" in refused.json()["detail"]
    user = rt.store.user("ops")
    assert user is not None and user.role == "admin"  # role and binding kept
    assert login(client, "ops", "ops-secret-1").status_code == 401  # type: ignore[attr-defined]
    fresh = login(client, "ops", "ops-secret-2").json()["access_token"]  # type: ignore[attr-defined]
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200
    assert runner.invoke(app, ["users", "passwd", "nobody", "--password", "long-enough-1", "--database-url", url]).exit_code == 1
    short = runner.invoke(app, ["users", "passwd", "ops", "--password", "short", "--database-url", url])
    assert short.exit_code == 2 and "at least 8" in short.output
