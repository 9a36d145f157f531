"""POST /api/v1/token and GET /api/v1/me on both stores; users from the CLI and the demo."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from api.auth import hash_password
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
        forged = jwt.encode(claims, secret, algorithm="HS256")
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
