"""`gridwatch users …`: people who log in (design §8)."""

from __future__ import annotations

from typing import Annotated

import typer

users_app = typer.Typer(help="Users who log in: admin, commander (bound to a grid), patroller, planner, device.", no_args_is_help=True)

DbOption = Annotated[str | None, typer.Option(envvar="GRIDWATCH_DATABASE_URL", help="store URL (default: the settings')")]

DEMO_USERS = (
    ("admin", "admin", None, None),
    ("district", "commander", "district", None),
    ("street", "commander", "street", None),
    ("patroller", "patroller", None, "patroller"),
    ("planner", "planner", None, None),
)
"""The demo's users: (username, role, grid: district / street = the sample district's first L1 / L2 grid, patroller)."""


def _store(database_url: str | None):  # noqa: ANN202
    from api.settings import Settings
    from store import open_store

    settings = Settings(**({"database_url": database_url} if database_url else {}))
    store = open_store(settings.database_url)
    store.migrate()
    return store


@users_app.command("add")
def users_add(
    username: str,
    role: Annotated[str, typer.Option(help="admin | commander | patroller | planner | device")],
    grid: Annotated[str | None, typer.Option(help="commander: the grid code whose subtree they command")] = None,
    patroller: Annotated[str | None, typer.Option(help="patroller: their patroller id")] = None,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True,
                                          help="asked for when left out (on the command line it would show in `ps` and shell history)")] = "",
    database_url: DbOption = None,
) -> None:
    """Create a user (or replace one of that name); the password is stored as an argon2 hash."""
    from datetime import UTC, datetime

    from api.auth import UserError, check_user, hash_password
    from store.ports import UserRecord

    try:
        check_user(role, grid, patroller)
        record = UserRecord(username, hash_password(password), role, grid, patroller)
    except UserError as exc:
        typer.echo(f"user {username!r}: {exc}", err=True)
        raise typer.Exit(2) from exc
    store = _store(database_url)
    try:
        if role == "commander" and store.grid(grid or "") is None:
            typer.echo(f"user {username!r}: grid {grid!r} is not in the current grid version", err=True)
            raise typer.Exit(2)
        created = store.save_user(record, at=datetime.now(UTC))
    finally:
        store.close()
    typer.echo(f"{'created' if created else 'updated'} {role} {username}" + (f" of grid {grid}" if grid else ""))


@users_app.command("token")
def users_token(
    username: str,
    days: Annotated[int, typer.Option(min=1, max=3650, help="how long the token is valid")] = 365,
    database_url: DbOption = None,
) -> None:
    """Print a long-lived bearer token for a `device` user (a camera's or a phone app's HTTP push, which cannot
    log in by itself). It stops working when the user is deleted (`users delete`), changes role or binding, or
    gets a new password (`users passwd`: revokes every token of the user)."""
    from datetime import UTC, datetime, timedelta

    from api.auth import Principal, issue_token
    from api.settings import Settings

    store = _store(database_url)
    try:
        user = store.user(username)
    finally:
        store.close()
    if user is None or user.role != "device":
        typer.echo(f"user {username!r}: expected an existing user of role device (people log in for 12 h tokens)", err=True)
        raise typer.Exit(2)
    settings = Settings(**({"database_url": database_url} if database_url else {}))
    typer.echo(issue_token(Principal.of_user(user), settings.secret_key.get_secret_value(), password_hash=user.password_hash,
                           ttl=timedelta(days=days), now=datetime.now(UTC)))


@users_app.command("passwd")
def users_passwd(
    username: str,
    password: Annotated[str, typer.Option(prompt="New password", hide_input=True, confirmation_prompt=True,
                                          help="asked for when left out (on the command line it would show in `ps` and shell history)")] = "",
    database_url: DbOption = None,
) -> None:
    """Set a user's password, keeping role and binding: every token issued before stops working (logins and
    `users token` tokens alike)."""
    import dataclasses
    from datetime import UTC, datetime

    from api.auth import UserError, hash_password

    try:
        new_hash = hash_password(password)
    except UserError as exc:
        typer.echo(f"user {username!r}: {exc}", err=True)
        raise typer.Exit(2) from exc
    store = _store(database_url)
    try:
        user = store.user(username)
        if user is None:
            typer.echo(f"user {username!r} not found", err=True)
            raise typer.Exit(1)
        store.save_user(dataclasses.replace(user, password_hash=new_hash), at=datetime.now(UTC))
    finally:
        store.close()
    typer.echo(f"password of {username} changed; its older tokens no longer work")


@users_app.command("delete")
def users_delete(username: str, database_url: DbOption = None) -> None:
    """Remove a user: its tokens stop working at once."""
    store = _store(database_url)
    try:
        found = store.delete_user(username)
    finally:
        store.close()
    if not found:
        typer.echo(f"user {username!r} not found", err=True)
        raise typer.Exit(1)
    typer.echo(f"deleted {username}")


@users_app.command("list")
def users_list(database_url: DbOption = None) -> None:
    """Users with their roles and bindings (never their hashes)."""
    store = _store(database_url)
    try:
        for u in store.users():
            typer.echo(f"{u.username:<20} {u.role:<10} {u.grid_code or ''}{u.patroller_id or ''}")
    finally:
        store.close()


def ensure_demo_users(store, password: str) -> list[tuple[str, str, str | None]]:  # noqa: ANN001
    """Create the demo users over the sample district (idempotent); return (username, role, binding)."""
    from datetime import UTC, datetime

    from api.auth import hash_password
    from store.ports import UserRecord

    l1 = store.grids(level=1)
    l2 = [g for g in store.grids(level=2) if l1 and g.parent_code == l1[0].code] or store.grids(level=2)
    patrollers = store.patrollers()
    binding = {"district": l1[0].code if l1 else None, "street": l2[0].code if l2 else None,
               "patroller": patrollers[0].id if patrollers else None}
    out = []
    hashed = hash_password(password)
    for username, role, grid_key, patroller_key in DEMO_USERS:
        grid = binding.get(grid_key) if grid_key else None
        pid = binding.get(patroller_key) if patroller_key else None
        if (grid_key and grid is None) or (patroller_key and pid is None):
            continue
        if store.user(username) is None:  # never reset an existing user's password
            store.save_user(UserRecord(username, hashed, role, grid, pid), at=datetime.now(UTC))
        out.append((username, role, grid or pid))
    return out
