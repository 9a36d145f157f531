"""The planners' service: import a grid file as a draft, validate it, diff it, publish it, export it.

Used by the CLI (`gridwatch grids …`) and the HTTP routes (`/api/v1/grid-versions…`); the logic
lives in geo/ (file I/O, validation, diff, what-if) and alerts/regrid.py (moving open incidents);
this module only loads what they need from the store and writes their results back.

Publishing is one transaction: the draft becomes current, devices and patroller assignments
follow the new grids, and (policy `move`) open incidents whose point changed grid are re-routed
with a `regrid` audit row each. Running `serve`/`ingest` processes see the new version through
`Runtime.watch_versions` within `version_poll_seconds`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from alerts.model import OPEN_STATES
from alerts.regrid import POLICIES, regrid_in
from alerts.routing import Router
from geo.diff import IncidentPoint, diff_versions
from geo.gridfile import assemble_draft, read_grid_file, write_grid_file
from geo.index import GridIndex
from geo.model import Building, Grid, GridVersion
from geo.validate import validate_grids
from geo.whatif import workload_whatif
from store.errors import VersionStateError
from store.ports import IncidentQuery, Store

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
_MAX_INCIDENTS = 1_000_000


class PlanningError(Exception):
    """A planner's request cannot be carried out (the message says why and what to do)."""


class VersionNotFoundError(PlanningError):
    """No grid version has this id."""


class PublishRefusedError(PlanningError):
    """The draft has validation errors: they block publishing."""

    def __init__(self, version_id: int, errors: list[dict[str, Any]]) -> None:
        self.version_id = version_id
        self.errors = errors
        first = "; ".join(f"{e['check']} {','.join(e['codes'])}" for e in errors[:5])
        more = f" and {len(errors) - 5} more" if len(errors) > 5 else ""
        super().__init__(
            f"grid version {version_id} has {len(errors)} validation error(s) that block publishing: {first}{more}"
        )


@dataclass(frozen=True)
class ImportResult:
    """A stored draft and its validation report."""

    version: GridVersion
    validation: dict[str, Any]
    feature_count: int
    unplaced_buildings: list[str]


@dataclass(frozen=True)
class PublishResult:
    """What a publish changed."""

    version: GridVersion
    previous: int | None
    policy: str
    devices_moved: int
    patrollers_moved: int
    incidents_moved: list[dict[str, Any]] = field(default_factory=list)
    incidents_kept: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "version": version_dict(self.version),
            "previous": self.previous,
            "policy": self.policy,
            "devices_moved": self.devices_moved,
            "patrollers_moved": self.patrollers_moved,
            "incidents_moved": self.incidents_moved,
            "incidents_kept": self.incidents_kept,
        }


def version_dict(v: GridVersion) -> dict[str, Any]:
    """A grid version as JSON."""
    def iso(t: datetime | None) -> str | None:
        return None if t is None else t.isoformat()

    return {
        "id": v.id, "label": v.label, "status": v.status, "is_current": v.is_current,
        "created_at": iso(v.created_at), "created_by": v.created_by, "source": v.source, "crs": v.crs,
        "valid_from": iso(v.valid_from), "valid_to": iso(v.valid_to),
        "published_at": iso(v.published_at), "published_by": v.published_by,
    }


def findings_geojson(report: dict[str, Any]) -> dict[str, Any]:
    """The findings of a stored validation report as a GeoJSON FeatureCollection (open it in QGIS)."""
    return {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": f["location"], "properties": {k: v for k, v in f.items() if k != "location"}}
            for f in report["findings"]
        ],
    }


def attribute_buildings(buildings: list[Building], grids: list[Grid]) -> tuple[list[Building], list[str]]:
    """Give each building the level-3 grid holding most of its footprint; return (placed, codes of unplaced)."""
    l3 = [g for g in grids if g.level == 3]
    if not buildings or not l3:
        return [], [b.code for b in buildings]
    geoms = np.array([g.geometry for g in l3], dtype=object)
    bad = ~shapely.is_valid(geoms)
    geoms[bad] = shapely.make_valid(geoms[bad])  # an invalid draft grid still holds its buildings
    footprints = np.array([b.geometry for b in buildings], dtype=object)
    bi, gi = shapely.STRtree(geoms).query(footprints, predicate="intersects")
    areas = shapely.area(shapely.intersection(footprints[bi], geoms[gi]))
    best: dict[int, tuple[float, int]] = {}
    for b, g, a in zip(bi.tolist(), gi.tolist(), areas.tolist(), strict=True):
        if a > 0 and (b not in best or a > best[b][0]):
            best[b] = (a, g)
    placed = [Building(b.code, l3[best[i][1]].code, b.name, b.geometry) for i, b in enumerate(buildings) if i in best]
    return placed, [b.code for i, b in enumerate(buildings) if i not in best]


def default_label(path: Path, at: datetime) -> str:
    """A label from the file name and the import time: `redraw-20261122T1650`."""
    stem = re.sub(r"[^\w.-]+", "-", path.name.split(".")[0]).strip("-") or "grids"
    return f"{stem}-{at:%Y%m%dT%H%M%S}"


class Planning:
    """Import → validate → diff → publish, over one store."""

    def __init__(self, store: Store, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 timezone: str = "Asia/Shanghai", tolerance_m2: float = 1.0) -> None:
        self.store = store
        self.now = clock
        self.timezone = timezone
        self.tolerance_m2 = tolerance_m2

    # --- import and validation ------------------------------------------------------------------
    def import_file(
        self, path: str | Path, *, label: str | None = None, crs: str | None = None, level: int | None = None,
        layer: str | None = None, actor: str = "planner", source: str | None = None,
        progress: Progress | None = None,
    ) -> ImportResult:
        """Read a grid file into a new draft (buildings re-attributed to its grids) and validate it."""
        path = Path(path)
        read = read_grid_file(path, crs=crs, level=level, layer=layer,
                              progress=(lambda done, total: progress("read", done, total)) if progress else None)
        base = self.store.grids() if level is not None or self.store.current_version() else []
        grids = assemble_draft(read.grids, base, level)
        footprints = self.store.buildings()
        buildings, unplaced = attribute_buildings(footprints, grids)
        at = self.now()
        version = self.store.create_draft(
            label or self._free_label(default_label(Path(source or path.name), at)), grids, buildings,
            source=source or path.name, crs=read.source_crs, actor=actor, at=at,
        )
        report = self._validate(version.id, grids, footprints, progress)
        return ImportResult(version, report, read.feature_count, unplaced)

    def _free_label(self, label: str) -> str:
        taken = {v.label for v in self.store.grid_versions()}
        n, free = 1, label
        while free in taken:
            n += 1
            free = f"{label}-{n}"
        return free

    def validate(self, version_id: int, *, progress: Progress | None = None) -> dict[str, Any]:
        """Validate a version's grids with the current buildings and devices; store and return the report."""
        self._version(version_id)
        return self._validate(version_id, self.store.grids(version=version_id), self.store.buildings(), progress)

    def _validate(self, version_id: int, grids: list[Grid], footprints: list[Building],
                  progress: Progress | None) -> dict[str, Any]:
        report = validate_grids(grids, buildings=footprints, devices=self.store.devices(),
                                tolerance_m2=self.tolerance_m2, progress=progress).to_dict()
        self.store.save_report(version_id, "validation", report)
        return report

    def validation(self, version_id: int) -> dict[str, Any]:
        """The stored validation report of a version (validated now if it has none)."""
        self._version(version_id)
        return self.store.report(version_id, "validation") or self.validate(version_id)

    # --- diff and what-if -------------------------------------------------------------------------
    def diff(self, version_id: int, *, against: int | None = None, days: int = 30) -> dict[str, Any]:
        """Diff a version against another (default: the current one) with the workload what-if."""
        draft = self._version(version_id)
        base = self._version(against) if against is not None else self.store.current_version()
        if base is None:
            raise PlanningError("there is no current grid version to diff against: publish one first")
        old, new = self.store.grids(version=base.id), self.store.grids(version=draft.id)
        open_incidents = self.store.incidents(IncidentQuery(states=tuple(OPEN_STATES), limit=_MAX_INCIDENTS))
        diff = diff_versions(
            old, new, buildings=self.store.buildings(version=base.id), devices=self.store.devices(),
            patrollers=self.store.patrollers(), tolerance_m2=self.tolerance_m2,
            open_incidents=[IncidentPoint(i.id, i.route.lon, i.route.lat, i.route.l3) for i in open_incidents],
        )
        since = self.now() - timedelta(days=days)
        recent = self.store.incidents(IncidentQuery(since=since, limit=_MAX_INCIDENTS))
        lons = np.array([i.route.lon for i in recent], dtype=np.float64)
        lats = np.array([i.route.lat for i in recent], dtype=np.float64)
        whatif: dict[str, Any] | None
        try:
            whatif = workload_whatif(lons, lats, GridIndex(old, version=base.id), GridIndex(new, version=draft.id),
                                     days=days).to_dict()
        except Exception as exc:  # noqa: BLE001 - an invalid draft cannot be indexed; the diff still stands
            logger.warning("what-if of version %s skipped: %s", version_id, exc)
            whatif = {"days": days, "error": f"the draft cannot be indexed until its validation errors are fixed: {exc}"}
        body = {"version": version_dict(draft), "against": version_dict(base), "diff": diff.to_dict(),
                "whatif": whatif, "table": diff.table()}
        if against is None:
            self.store.save_report(version_id, "diff", body)
        return body

    # --- publish -----------------------------------------------------------------------------------
    def publish(self, version_id: int, *, policy: str = "keep", actor: str = "planner") -> PublishResult:
        """Make a validated draft current; move devices, assignments and (policy `move`) open incidents."""
        if policy not in POLICIES:
            raise PlanningError(f"policy {policy!r}: expected one of {', '.join(POLICIES)}")
        draft = self._version(version_id)
        if draft.status != "draft":
            raise VersionStateError(f"grid version {version_id} is {draft.status}: only a draft can be published")
        report = self.validate(version_id)
        errors = [f for f in report["findings"] if f["severity"] == "error"]
        if errors:
            raise PublishRefusedError(version_id, errors)
        current = self.store.current_version()
        new_grids = self.store.grids(version=version_id)
        index = GridIndex(new_grids, self.store.buildings(version=version_id), version=version_id)
        device_moves, patroller_moves, patrollers = self._registry_moves(current, new_grids)
        router = Router(index, patrollers, self.timezone)
        positions = self.store.positions()
        candidates = self.store.incidents(IncidentQuery(states=tuple(OPEN_STATES), limit=_MAX_INCIDENTS))
        at = self.now()
        moved: list[dict[str, Any]] = []
        with self.store.unit_of_work() as uow:
            version = uow.publish_version(version_id, at=at, actor=actor, expected_current=current.id if current else 0,
                                          detail={"policy": policy, "devices_moved": len(device_moves),
                                                  "patrollers_moved": len(patroller_moves)})
            uow.move_devices(device_moves)
            uow.set_patroller_grids(patroller_moves)
            if policy == "move":
                for candidate in candidates:
                    outcome = regrid_in(uow, candidate.id, router, now=at, actor=actor, positions=positions)
                    if outcome is not None:
                        moved.append({"id": candidate.id, "from": outcome.from_grid, "to": outcome.to_grid,
                                      "assignee": outcome.incident.assignee})
        logger.info("published grid version %s (policy %s): %d devices, %d patrollers, %d incidents moved",
                    version_id, policy, len(device_moves), len(patroller_moves), len(moved))
        return PublishResult(version, current.id if current else None, policy, len(device_moves),
                             len(patroller_moves), moved, len(candidates) - len(moved))

    def _registry_moves(self, current: GridVersion | None, new_grids: list[Grid]):  # noqa: ANN202
        """Devices to re-own and patroller assignments to remap, and the patrollers as they will be."""
        from dataclasses import replace

        patrollers = self.store.patrollers()
        if current is None:
            return [], [], patrollers
        diff = diff_versions(self.store.grids(version=current.id), new_grids, devices=self.store.devices(),
                             patrollers=patrollers, tolerance_m2=self.tolerance_m2)
        device_moves = [(m.id, m.to_code) for m in diff.moves.devices if m.to_code is not None]
        patroller_moves = [(m.id, tuple(m.to_codes)) for m in diff.moves.patrollers]
        remapped = dict(patroller_moves)
        patrollers = [replace(p, grid_codes=remapped[p.id]) if p.id in remapped else p for p in patrollers]
        return device_moves, patroller_moves, patrollers

    # --- export and helpers --------------------------------------------------------------------------
    def export(self, path: str | Path, *, version_id: int | None = None) -> Path:
        """Write a version's grids (default: the current one) to GeoPackage / GeoJSON for QGIS."""
        version = self._version(version_id) if version_id is not None else self.store.current_version()
        if version is None:
            raise PlanningError("there is no current grid version to export")
        return Path(write_grid_file(self.store.grids(version=version.id), path))

    def version(self, version_id: int) -> GridVersion:
        """One version (VersionNotFoundError if there is none)."""
        return self._version(version_id)

    def _version(self, version_id: int) -> GridVersion:
        version = self.store.grid_version(version_id)
        if version is None:
            raise VersionNotFoundError(f"grid version {version_id} not found (see `gridwatch grids list`)")
        return version
