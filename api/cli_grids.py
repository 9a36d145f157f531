"""`gridwatch grids …`: the planners' commands (import, validate, diff, publish, export, list)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

grids_app = typer.Typer(help="Grid versions: import, validate, diff, publish, export.", no_args_is_help=True)

DbUrl = Annotated[str | None, typer.Option(envvar="GRIDWATCH_DATABASE_URL", help="the store (default: settings)")]
Actor = Annotated[str, typer.Option(envvar="GRIDWATCH_ACTOR", help="who does this (written to the audit log)")]


@contextmanager
def _planning(database_url: str | None) -> Iterator[Any]:
    from api.planning import Planning
    from api.settings import Settings
    from store import open_store

    settings = Settings(**({"database_url": database_url} if database_url else {}))
    store = open_store(settings.database_url)
    store.migrate()
    try:
        yield Planning(store, timezone=settings.timezone)
    finally:
        store.close()


@contextmanager
def _progress() -> Iterator[Any]:
    """A rich progress bar fed with (stage, done, total) callbacks; quiet when not on a terminal."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=max(total, 1))
            bar.update(tasks[stage], completed=done, total=max(total, 1))

        yield update


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _summary(report: dict[str, Any]) -> str:
    verdict = "OK to publish" if report["ok"] else "errors block publishing"
    return f"validation: {report['errors']} error(s), {report['warnings']} warning(s): {verdict}"


def _findings_table(report: dict[str, Any], limit: int = 200) -> str:
    rows = report["findings"]
    lines = [f"{'severity':<8} {'check':<17} {'measure':>14}  codes / message"]
    for f in rows[:limit]:
        measure = "" if f["measure"] is None else f"{f['measure']:.1f} {f['unit'] or ''}"
        lines.append(f"{f['severity']:<8} {f['check']:<17} {measure:>14}  {', '.join(f['codes'])}: {f['message']}")
    if len(rows) > limit:
        lines.append(f"… and {len(rows) - limit} more (use --json)")
    return "\n".join(lines)


@grids_app.command("import")
def grids_import(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="GeoJSON, GeoPackage or zipped Shapefile")],
    label: Annotated[str | None, typer.Option(help="version label (default: file name + time)")] = None,
    crs: Annotated[str | None, typer.Option(help="CRS of the file if it declares none or a wrong one: EPSG:4326, EPSG:4490, EPSG:4547, GCJ-02 …")] = None,
    level: Annotated[int | None, typer.Option(min=1, max=3, help="the file holds this level only; other levels come from the current version")] = None,
    layer: Annotated[str | None, typer.Option(help="GeoPackage layer (default: all)")] = None,
    actor: Actor = "planner",
    database_url: DbUrl = None,
) -> None:
    """Import a grid file as a draft version and validate it."""
    from api.planning import PlanningError
    from geo.errors import GeoError
    from store.errors import StoreError

    with _planning(database_url) as planning, _progress() as progress:
        try:
            result = planning.import_file(path, label=label, crs=crs, level=level, layer=layer, actor=actor, progress=progress)
        except (GeoError, PlanningError, StoreError, OSError) as exc:
            _fail(exc)
    v = result.version
    typer.echo(f"draft grid version {v.id} {v.label!r}: {result.feature_count} features read ({v.crs}), "
               f"{len(result.unplaced_buildings)} building(s) in no grid")
    typer.echo(_findings_table(result.validation) if result.validation["findings"] else "no findings")
    typer.echo(_summary(result.validation))
    typer.echo(f"next: gridwatch grids diff {v.id}   ·   gridwatch grids publish {v.id}")


@grids_app.command("validate")
def grids_validate(
    version_id: Annotated[int, typer.Argument(help="grid version id")],
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    geojson: Annotated[Path | None, typer.Option(help="write every finding as GeoJSON to this file")] = None,
    database_url: DbUrl = None,
) -> None:
    """Validate a version (exit status 1 when it has errors)."""
    from api.planning import PlanningError, findings_geojson

    with _planning(database_url) as planning, _progress() as progress:
        try:
            report = planning.validate(version_id, progress=progress)
        except PlanningError as exc:
            _fail(exc)
    if geojson is not None:
        geojson.write_text(json.dumps(findings_geojson(report), ensure_ascii=False), encoding="utf-8")
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=1))
    else:
        typer.echo(_findings_table(report) if report["findings"] else "no findings")
        typer.echo(_summary(report))
    if not report["ok"]:
        raise typer.Exit(1)


@grids_app.command("diff")
def grids_diff(
    version_id: Annotated[int, typer.Argument(help="the draft's version id")],
    against: Annotated[int | None, typer.Option(help="version to compare with (default: the current one)")] = None,
    days: Annotated[int, typer.Option(min=0, help="what-if: replay the incidents of the last N days")] = 30,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    database_url: DbUrl = None,
) -> None:
    """What a draft changes: grids added/removed/reshaped, what moves, and the workload what-if."""
    from api.planning import PlanningError

    with _planning(database_url) as planning:
        try:
            body = planning.diff(version_id, against=against, days=days)
        except PlanningError as exc:
            _fail(exc)
    if as_json:
        typer.echo(json.dumps({k: v for k, v in body.items() if k != "table"}, ensure_ascii=False, indent=1))
        return
    typer.echo(f"grid version {version_id} against {body['against']['id']} ({body['against']['label']})")
    typer.echo(body["table"])
    typer.echo(_whatif_table(body["whatif"]))


def _whatif_table(w: dict[str, Any]) -> str:
    if "error" in w:
        return f"workload what-if: {w['error']}"
    lines = [f"workload what-if: {w['incidents']} incident(s) of the last {w['days']} days replayed",
             f"{'':<7} {'grids':>6} {'max':>6} {'mean':>7} {'max/mean':>9} {'CV':>6}"]
    def num(x: float | None, width: int, digits: int = 2) -> str:
        return f"{'—':>{width}}" if x is None else f"{x:>{width}.{digits}f}"

    for side in ("before", "after"):
        s = w[side]
        lines.append(f"{side:<7} {s['grids']:>6} {num(s['max'], 6, 0)} {num(s['mean'], 7)} {num(s['max_over_mean'], 9)} {num(s['cv'], 6)}")
    changed = [g for g in w["per_grid"] if g["before"] != g["after"]]
    for g in changed[:50]:
        lines.append(f"  {g['code']}: {g['before'] if g['before'] is not None else '—'} → {g['after'] if g['after'] is not None else '—'}")
    if len(changed) > 50:
        lines.append(f"  … and {len(changed) - 50} more")
    return "\n".join(lines)


@grids_app.command("publish")
def grids_publish(
    version_id: Annotated[int, typer.Argument(help="the draft's version id")],
    policy: Annotated[str, typer.Option(help="open incidents: keep their owner, or move to the new grid")] = "keep",
    actor: Actor = "planner",
    database_url: DbUrl = None,
) -> None:
    """Make a validated draft the current version (running serve/ingest pick it up within seconds)."""
    from api.planning import PlanningError, PublishRefusedError
    from store.errors import VersionStateError

    with _planning(database_url) as planning:
        try:
            result = planning.publish(version_id, policy=policy, actor=actor)
        except PublishRefusedError as exc:
            typer.secho(f"refused: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
        except (PlanningError, VersionStateError) as exc:
            _fail(exc)
    typer.echo(f"grid version {version_id} is current (was {result.previous}); policy {policy}: "
               f"{result.devices_moved} device(s), {result.patrollers_moved} patroller(s), "
               f"{len(result.incidents_moved)} open incident(s) moved")
    for m in result.incidents_moved[:50]:
        typer.echo(f"  incident {m['id']}: {m['from']} → {m['to']} (owner {m['assignee'] or 'command center'})")


@grids_app.command("export")
def grids_export(
    path: Annotated[Path, typer.Argument(help=".gpkg (one layer per level, for QGIS) or .geojson")],
    version_id: Annotated[int | None, typer.Option("--version", help="default: the current version")] = None,
    database_url: DbUrl = None,
) -> None:
    """Export a version's grids."""
    from api.planning import PlanningError
    from geo.errors import GeoError

    with _planning(database_url) as planning:
        try:
            out = planning.export(path, version_id=version_id)
        except (PlanningError, GeoError, OSError) as exc:
            _fail(exc)
    typer.echo(f"wrote {out}")


@grids_app.command("list")
def grids_list(database_url: DbUrl = None) -> None:
    """Grid versions, newest first."""
    with _planning(database_url) as planning:
        versions = planning.store.grid_versions()
    for v in versions:
        span = f"{v.valid_from:%Y-%m-%d %H:%M:%S} → {f'{v.valid_to:%Y-%m-%d %H:%M:%S}' if v.valid_to else 'now'}" if v.valid_from else ""
        typer.echo(f"{v.id:>4}  {'*' if v.is_current else ' '} {v.status:<9} {v.label:<32} {span}")


@grids_app.command("sample-redraw")
def grids_sample_redraw(
    path: Annotated[Path, typer.Argument(help="where to write the redraw (.geojson or .gpkg)")],
    database_url: DbUrl = None,
) -> None:
    """Write a clean redraw of the current version (two grids merged, one split), to try import → publish."""
    from geo.edit import sample_redraw
    from geo.gridfile import write_grid_file

    with _planning(database_url) as planning:
        grids, change = sample_redraw(planning.store.grids())
    write_grid_file(grids, path)
    typer.echo(f"wrote {path}: merged {' + '.join(change['merged'])} into {change['into']}, "  # type: ignore[arg-type]
               f"split {change['split']} (new grid {change['new_code']})")
