"""The `gridwatch` command line (typer). Heavy imports happen inside the commands."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Annotated

import typer

from api.cli_devices import devices_app
from api.cli_grids import grids_app
from api.cli_users import users_app

app = typer.Typer(help="gridwatch: grid management and IoT alarm monitoring.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
dl_app = typer.Typer(help="Dead letters: messages that could not be accepted.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(dl_app, name="deadletters")
app.add_typer(grids_app, name="grids")
app.add_typer(devices_app, name="devices")
app.add_typer(users_app, name="users")

SAMPLE_LABEL = "sample-district-seed-7"
DEMO_PASSWORD = "gridwatch-demo"
"""Password of the demo users `make demo` creates (demo mode only)."""
logger = logging.getLogger("gridwatch")


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("amqtt", "transitions", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _settings(**overrides: object):
    from api.settings import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def seed_store(store, seed: int = 7) -> int:
    """Load the sample district into a store unless it is there already; return the version id."""
    from geo.district import build_sample_district

    label = SAMPLE_LABEL if seed == 7 else f"sample-district-seed-{seed}"
    return store.load_district(build_sample_district(seed=seed), label).id


@db_app.command("migrate")
def db_migrate(database_url: Annotated[str | None, typer.Option(envvar="GRIDWATCH_DATABASE_URL")] = None) -> None:
    """Apply pending schema migrations."""
    from store import open_store

    store = open_store(_settings(database_url=database_url).database_url)
    applied = store.migrate()
    typer.echo(f"applied: {', '.join(applied) or 'nothing (up to date)'}")
    store.close()


@app.command()
def seed(
    database_url: Annotated[str | None, typer.Option(envvar="GRIDWATCH_DATABASE_URL")] = None,
    seed_value: Annotated[int, typer.Option("--seed")] = 7,
) -> None:
    """Build the sample district (5 / 29 / 138 grids, ~1,100 buildings, 163 patrollers, devices) and store it."""
    from store import open_store

    settings = _settings(database_url=database_url)
    store = open_store(settings.database_url)
    store.migrate()
    version = seed_store(store, seed_value)
    typer.echo(f"sample district stored as grid version {version} in {settings.database_url}")
    store.close()


@dl_app.command("list")
def deadletters_list(
    database_url: Annotated[str | None, typer.Option(envvar="GRIDWATCH_DATABASE_URL")] = None,
    limit: int = 20,
    reason: Annotated[str | None, typer.Option(help="only this reason, e.g. unknown_device")] = None,
    pending: Annotated[bool, typer.Option("--pending", help="only letters not replayed yet")] = False,
) -> None:
    """Show the newest dead letters with their reasons, and the counters per reason."""
    from store import open_store

    store = open_store(_settings(database_url=database_url).database_url)
    try:
        for row in store.dead_letters(limit=limit, reason=reason, pending_only=pending):
            dl = row.dead_letter
            mark = " replayed" if row.replayed_at else ""
            typer.echo(f"{row.id:>6}  {dl.received_at:%Y-%m-%d %H:%M:%S}  {dl.reason:<18} {dl.topic}  {dl.detail[:80]}{mark}")
        counts = store.dead_letter_counts()
        if counts:
            typer.echo("by reason: " + ", ".join(f"{r} {c.get('pending', 0)} pending / {c.get('replayed', 0)} replayed"
                                                 for r, c in sorted(counts.items())))
    finally:
        store.close()


@dl_app.command("show")
def deadletters_show(letter_id: int, database_url: Annotated[str | None, typer.Option(envvar="GRIDWATCH_DATABASE_URL")] = None) -> None:
    """Print one dead letter: topic, reason, detail, replay history and the whole payload."""
    from api.routes.deadletters import letter_dict
    from store import open_store

    store = open_store(_settings(database_url=database_url).database_url)
    try:
        row = store.dead_letter(letter_id)
        if row is None:
            typer.echo(f"dead letter {letter_id} not found", err=True)
            raise typer.Exit(1)
        for key, value in letter_dict(row, full=True).items():
            typer.echo(f"{key:>13}: {value}")
    finally:
        store.close()


@dl_app.command("replay")
def deadletters_replay(
    ids: Annotated[list[int] | None, typer.Argument(help="dead letter ids (or use --reason)")] = None,
    reason: Annotated[str | None, typer.Option(help="replay every pending letter of this reason, oldest first")] = None,
    limit: int = 1000,
    database_url: Annotated[str | None, typer.Option(envvar="GRIDWATCH_DATABASE_URL")] = None,
) -> None:
    """Decode dead letters again with today's adapters and registry; store what now passes.

    E.g. after registering a device: `gridwatch deadletters replay --reason unknown_device`.
    Notifications of incidents a replay creates wait in the outbox for the next running service.
    """
    from api.runtime import Runtime

    todo = list(ids or [])
    if not todo and reason is None:
        typer.echo("give dead letter ids or --reason", err=True)
        raise typer.Exit(2)
    rt = Runtime.open(_settings(database_url=database_url))
    try:
        if reason is not None:
            todo.extend(r.id for r in reversed(rt.store.dead_letters(limit=limit, reason=reason, pending_only=True)))
        results = rt.replay_dead_letters(todo)
    finally:
        rt.close()
    for r in results:
        extra = r.get("result") or f"{r.get('reason', '')}: {r.get('detail', '')}".strip(": ")
        typer.echo(f"{r['id']:>6}  {r['status']:<16} {extra}")
    accepted = sum(1 for r in results if r["status"] == "accepted")
    typer.echo(f"{accepted} of {len(results)} accepted")


def _wait(duration: float | None, stop: threading.Event) -> None:
    def _stop(*_: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    stop.wait(duration)


GRACEFUL_SHUTDOWN_S = 10
"""How long a stopping server waits for requests still running (live streams are ended at once)."""


def _http_server(app_, host: str, port: int, log_level: str):  # noqa: ANN001, ANN202
    """A uvicorn server that, when told to stop, first ends the app's live streams (EventHub.close): an open
    map wall would otherwise hold the shutdown (uvicorn waits for every response to finish)."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:
            # a signal handler runs on the event loop's thread, which may be inside the hub's lock right now
            # (a stream opening or ending): close the hub from another thread instead of waiting here
            threading.Thread(target=end_streams, args=(app_,), name="end-streams", daemon=True).start()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app_, host=host, port=port, log_level=log_level, lifespan="on",
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    return Server(config)


def end_streams(app_) -> None:  # noqa: ANN001
    """End the live streams of an app whose runtime is up (see EventHub.close)."""
    rt = getattr(app_.state, "runtime", None)
    if rt is not None:
        rt.hub.close()


def _serve_http(app_, host: str, port: int):
    server = _http_server(app_, host, port, "warning")
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, name="http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        raise typer.BadParameter(f"HTTP server did not start on {host}:{port} (port in use?)")
    return server, thread


@app.command()
def serve(
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    no_ingest: Annotated[bool, typer.Option("--no-ingest", help="API only; no MQTT worker")] = False,
) -> None:
    """Run the API and map (and the ingest worker unless --no-ingest) against the configured store and broker."""
    from api.app import create_app

    _logging(verbose)
    settings = _settings()
    try:
        settings.check_secret()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    server = _http_server(create_app(settings, with_ingest=not no_ingest), settings.api_host, settings.api_port, "info")
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it shut down for
        pass
    if not server.started:  # e.g. the port is taken (uvicorn logged why)
        raise typer.Exit(3)


@app.command()
def ingest(
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
) -> None:
    """Run the ingest worker alone (several may share a $share/ subscription: set GRIDWATCH_MQTT_SHARED_GROUP)."""
    from api.runtime import Runtime

    _logging(verbose)
    rt = Runtime.open(_settings())
    rt.start_ingest()
    typer.echo(f"ingest worker {rt.settings.mqtt_client_id} running; Ctrl-C to stop")
    _wait(duration, threading.Event())
    rt.close()


@app.command()
def simulate(
    mqtt_url: Annotated[str, typer.Option(envvar="GRIDWATCH_MQTT_URL")] = "mqtt://127.0.0.1:1883",
    rate: Annotated[float, typer.Option(help="messages per second")] = 5.0,
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    seed_value: Annotated[int, typer.Option("--seed")] = 7,
    protocol: Annotated[str, typer.Option(help="5 or 3.1.1")] = "5",
) -> None:
    """Publish simulated device and patroller traffic from the sample district to any broker."""
    from geo.district import build_sample_district
    from ingest.simulator import Simulator

    _logging(False)
    district = build_sample_district(seed=seed_value)
    sim = Simulator(district.devices, district.patrollers, mqtt_url, rate=rate, seed=seed_value, protocol=protocol,
                    telemetry_share=0.2)
    sim.start()
    _wait(duration, threading.Event())
    sim.stop()


@app.command()
def demo(
    duration: Annotated[float | None, typer.Option(envvar="DURATION", help="stop after this many seconds (default: until Ctrl-C)")] = None,
    rate: Annotated[float, typer.Option(help="simulated messages per second")] = 4.0,
    broker_kind: Annotated[str, typer.Option("--broker", help="embedded (amqtt, in-process) or mosquitto (installed binary, durable)")] = "embedded",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """The full loop on embedded defaults: SQLite, embedded MQTT broker, simulated devices, API and map."""
    from api.app import create_app
    from api.runtime import Runtime
    from ingest.broker import EmbeddedBroker, MosquittoBroker
    from ingest.simulator import Simulator, raise_alarm_command
    from store import open_store

    _logging(verbose)
    if broker_kind not in ("embedded", "mosquitto"):
        raise typer.BadParameter(f"--broker {broker_kind!r}: expected embedded or mosquitto")
    protocol = "3.1.1" if broker_kind == "embedded" else "5"
    settings = _settings(demo=True, mqtt_protocol=protocol)
    if settings.sla_config is None:  # minutes, not hours: the wall's lights change while one watches
        from alerts.sla import DEMO_FILE

        settings = settings.model_copy(update={"sla_config": str(DEMO_FILE)})
    store = open_store(settings.database_url)
    store.migrate()
    version = seed_store(store)
    from api.cli_users import ensure_demo_users

    demo_users = ensure_demo_users(store, DEMO_PASSWORD)
    rt = Runtime(settings, store)
    broker = EmbeddedBroker() if broker_kind == "embedded" else MosquittoBroker()
    broker_url = broker.start()
    stop = threading.Event()
    server = sim = None
    try:
        rt.start_ingest(broker_url)
        rt.start_events(broker_url)
        server, _ = _serve_http(create_app(settings, rt), settings.api_host, settings.api_port)
        sim = Simulator(list(rt.devices.values()), rt.patrollers, broker_url, rate=rate, seed=int(time.time()), protocol=protocol,
                        telemetry_share=0.2)
        sim.start()
        base = f"http://{settings.api_host}:{settings.api_port}"
        device = next(d for d in rt.devices.values() if d.kind == "fence")
        thermal = next((d for d in rt.devices.values() if d.kind == "thermal"), device)
        grid = rt.grid_by_code[device.grid_code]
        c = grid.geometry.representative_point()
        typer.echo(
            "\n".join(
                [
                    "",
                    "gridwatch demo is running",
                    f"  store:        {settings.database_url} (grid version {version}: {len(rt.grid_by_code)} grids, {len(rt.devices)} devices, {len(rt.patrollers)} patrollers)",
                    f"  broker:       {broker_url}",
                    f"  map wall:     {base}/map  (log in as district, street or admin)",
                    f"  phone view:   {base}/patroller  (log in as patroller; best in a phone-sized window)",
                    f"  API docs:     {base}/docs",
                    f"  incidents:    {base}/api/v1/incidents",
                    f"  devices:      {base}/api/v1/devices (state), {base}/api/v1/devices/{thermal.id}/readings?bucket=1m",
                    f"  dead letters: {base}/api/v1/dead-letters/counters",
                    f"  demo users (password {DEMO_PASSWORD!r}; pages: {base}/login, API: POST {base}/api/v1/token):",
                    *(f"    {name:<10} {role:<10} {binding or ''}" for name, role, binding in demo_users),
                    "  raise an alarm by hand (it will be routed to grid " + grid.code + "):",
                    "    " + raise_alarm_command(broker_url, device, c.x, c.y),
                    "",
                    "Ctrl-C to stop" + (f" (stopping by itself after {duration:g} s)" if duration else ""),
                ]
            ),
        )
        _wait(duration, stop)
    finally:
        typer.echo("stopping…")
        if sim is not None:
            sim.stop()
        if server is not None:
            end_streams(server.config.app)
            server.should_exit = True
        rt.close()
        broker.stop()
        typer.echo(f"stopped: {rt.stats['alarms_stored']} alarms stored, {rt.stats['incidents_created']} incidents opened, "
                   f"{rt.stats['readings']} readings, {rt.stats['dead_letters']} dead letters")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
