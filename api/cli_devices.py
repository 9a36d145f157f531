"""`gridwatch devices …`: import the registry, list device states, export the broker's password and ACL files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

devices_app = typer.Typer(help="The device registry and broker security.", no_args_is_help=True)

DbOption = Annotated[str | None, typer.Option(envvar="GRIDWATCH_DATABASE_URL", help="store URL (default: the settings')")]


def _settings(**overrides: object):
    from api.settings import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})


@devices_app.command("import")
def devices_import(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV, GeoJSON or GeoPackage of devices")],
    database_url: DbOption = None,
) -> None:
    """Register devices (upsert by id); each gets its owner grid from the current grid version.

    Every row is checked first; a file with any bad row is refused, naming each row, field and what
    was expected. Running services pick the registry up on `POST /api/v1/devices/reload` or restart.
    """
    from datetime import UTC, datetime

    from geo.devicefile import read_devices
    from geo.index import GridIndex
    from store import open_store

    store = open_store(_settings(database_url=database_url).database_url)
    try:
        store.migrate()
        version = store.current_version()
        if version is None:
            typer.echo("no current grid version: import or seed grids first (gridwatch seed / gridwatch grids import)", err=True)
            raise typer.Exit(2)
        index = GridIndex(store.grids(version=version.id), version=version.id)
        result = read_devices(path, index=index)
        if result.errors:
            for e in result.errors:
                who = f" ({e.device_id})" if e.device_id else ""
                typer.echo(f"{path}: row {e.row}{who}: {e.field}: {e.message}", err=True)
            typer.echo(f"{path}: {len(result.errors)} problem(s); nothing imported", err=True)
            raise typer.Exit(1)
        inserted, updated = store.upsert_devices(result.devices, at=datetime.now(UTC))
        typer.echo(f"{path}: {len(result.devices)} devices ({inserted} new, {updated} updated) in grid version {version.id}")
    finally:
        store.close()


@devices_app.command("list")
def devices_list(database_url: DbOption = None, state: Annotated[str | None, typer.Option(help="online|offline|unknown")] = None) -> None:
    """Devices with their state and when they were last heard from."""
    from store import open_store

    store = open_store(_settings(database_url=database_url).database_url)
    try:
        states = store.device_states()
        for d in store.devices():
            st = states.get(d.id)
            name = st.state if st is not None else "unknown"
            if state is not None and name != state:
                continue
            seen = f"{st.last_seen:%Y-%m-%d %H:%M:%S}" if st is not None and st.last_seen else "-"
            typer.echo(f"{d.id:<20} {d.kind:<8} {d.format:<12} {name:<8} {seen:<19} {d.grid_code}  {d.identity or ''}")
    finally:
        store.close()


@devices_app.command("export-acl")
def devices_export_acl(
    out: Annotated[Path, typer.Option(help="directory for password_file, acl_file and credentials.csv")] = Path("docker/mosquitto/generated"),
    database_url: DbOption = None,
    with_patrollers: Annotated[bool, typer.Option("--patrollers/--no-patrollers", help="also give each patroller's phone a login")] = True,
) -> None:
    """Write Mosquitto's password_file and acl_file from the registry: each device may publish only under its own topic.

    Passwords are derived from GRIDWATCH_SECRET_KEY (the same key gives the same passwords), and the
    service user `gridwatch` gets GRIDWATCH_MQTT_SERVICE_PASSWORD (or one derived the same way).
    credentials.csv lists every login for provisioning devices: it holds secrets (mode 0600).
    """
    from ingest.acl import device_password, write_broker_files
    from store import open_store

    settings = _settings(database_url=database_url)
    secret = settings.secret_key.get_secret_value()
    store = open_store(settings.database_url)
    try:
        devices = store.devices()
        patrollers = [p.id for p in store.patrollers()] if with_patrollers else []
    finally:
        store.close()
    service = settings.mqtt_service_password.get_secret_value() if settings.mqtt_service_password else device_password(secret, "gridwatch")
    files = write_broker_files(out, devices, secret=secret, service_password=service, patrollers=patrollers)
    typer.echo(f"{len(devices)} devices, {len(patrollers)} patrollers → {files.password_file}, {files.acl_file}, {files.credentials_csv}")
