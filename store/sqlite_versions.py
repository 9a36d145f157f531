"""Grid versions on SQLite: drafts, publishing, as-of lookups, reports and the audit log.

`SqliteVersions` is mixed into store.sqlite.SqliteStore (it uses its `_transaction` and `_query`);
the `*_in` functions run inside a unit of work (store.sqlite_uow), so that publishing a version,
moving devices and patrollers and re-attributing open incidents commit together or not at all.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from geo.model import Building, Grid, GridVersion
from store import codec
from store.errors import VersionStateError
from store.ports import VersionAudit
from store.sqlite_uow import from_ts_text, to_json, ts_text

logger = logging.getLogger(__name__)

VERSION_SELECT = f"SELECT {', '.join(codec.VERSION_COLUMNS)} FROM grid_versions"
_AUDIT_SELECT = "SELECT id, version_id, at, actor, action, detail FROM grid_version_audit"


def version_from_row(row: sqlite3.Row) -> GridVersion:
    """A GridVersion from a row of VERSION_SELECT."""
    return codec.version_from_values(row, from_ts_text)


def insert_version(
    tx: sqlite3.Connection, label: str, *, at: datetime, source: str | None, crs: str | None, actor: str
) -> int:
    """Insert a draft version row (status 'draft'); VersionStateError if the label is taken."""
    if tx.execute("SELECT 1 FROM grid_versions WHERE label = ?", (label,)).fetchone():
        raise VersionStateError(f"grid version label {label!r} exists already: choose another label")
    now = ts_text(at)
    cur = tx.execute(
        "INSERT INTO grid_versions (label, created_at, status, source, crs, created_by) VALUES (?, ?, 'draft', ?, ?, ?)",
        (label, now, source, crs, actor),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def insert_grid_rows(tx: sqlite3.Connection, version_id: int, grids: Sequence[Grid], buildings: Sequence[Building]) -> None:
    """Insert the grids and buildings of a (draft) version."""
    tx.executemany(
        "INSERT INTO grids (version_id, code, level, name, parent_code, geom) VALUES (?, ?, ?, ?, ?, ?)",
        ((version_id, g.code, g.level, g.name, g.parent_code, codec.to_wkb(g.geometry)) for g in grids),
    )
    tx.executemany(
        "INSERT INTO buildings (version_id, code, grid_code, name, geom) VALUES (?, ?, ?, ?, ?)",
        ((version_id, b.code, b.grid_code, b.name, codec.to_wkb(b.geometry)) for b in buildings),
    )


def audit_in(tx: sqlite3.Connection, version_id: int, *, at: datetime, actor: str, action: str, detail: Mapping[str, Any]) -> None:
    """Append an audit row."""
    tx.execute(
        "INSERT INTO grid_version_audit (version_id, at, actor, action, detail) VALUES (?, ?, ?, ?, ?)",
        (version_id, ts_text(at), actor, action, to_json(dict(detail))),
    )


def publish_in(tx: sqlite3.Connection, version_id: int, *, at: datetime, actor: str, detail: Mapping[str, Any],
               expected_current: int | None = None) -> GridVersion:
    """Make a draft current from `at`; the current version is valid until `at`. Audited.

    `expected_current` (0: none) guards against a publish computed against a version that another
    publish has replaced meanwhile: VersionStateError, and the caller computes again.
    """
    row = tx.execute(f"{VERSION_SELECT} WHERE id = ?", (version_id,)).fetchone()
    if row is None:
        raise VersionStateError(f"grid version {version_id}: no such version")
    if row["status"] != "draft":
        raise VersionStateError(f"grid version {version_id} is {row['status']}: only a draft can be published")
    current = tx.execute(f"{VERSION_SELECT} WHERE is_current = 1").fetchone()
    _check_expected(current["id"] if current is not None else 0, expected_current, version_id)
    now = ts_text(at)
    if current is not None and current["valid_from"] is not None and current["valid_from"] > now:
        raise VersionStateError(f"publish time {now} is before the current version's valid_from {current['valid_from']}")
    tx.execute("UPDATE grid_versions SET is_current = 0, valid_to = ? WHERE is_current = 1", (now,))
    tx.execute(
        "UPDATE grid_versions SET status = 'published', is_current = 1, valid_from = ?, published_at = ?,"
        " published_by = ? WHERE id = ?",
        (now, now, actor, version_id),
    )
    audit_in(tx, version_id, at=at, actor=actor, action="publish",
             detail={"previous": current["id"] if current is not None else None, **detail})
    published = tx.execute(f"{VERSION_SELECT} WHERE id = ?", (version_id,)).fetchone()
    return version_from_row(published)


def _check_expected(current: int, expected: int | None, version_id: int) -> None:
    if expected is not None and current != expected:
        raise VersionStateError(
            f"grid version {version_id}: the current version changed ({expected or 'none'} → {current}) while the"
            " publish was prepared; publish again"
        )


def move_devices_in(tx: sqlite3.Connection, moves: Sequence[tuple[str, str]]) -> None:
    """Set devices' owner grids."""
    tx.executemany("UPDATE devices SET grid_code = ? WHERE id = ?", [(grid, device) for device, grid in moves])


def set_patroller_grids_in(tx: sqlite3.Connection, moves: Sequence[tuple[str, tuple[str, ...]]]) -> None:
    """Set patrollers' level-3 assignments."""
    tx.executemany("UPDATE patrollers SET grid_codes = ? WHERE id = ?", [(to_json(list(c)), p) for p, c in moves])


class SqliteVersions:
    """The grid-version part of store.ports.Store on SQLite (a mixin of SqliteStore)."""

    if TYPE_CHECKING:  # provided by SqliteStore
        def _transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...
        def _query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[sqlite3.Row]: ...

    def create_draft(
        self, label: str, grids: Sequence[Grid], buildings: Sequence[Building], *,
        source: str | None, crs: str | None, actor: str, at: datetime,
    ) -> GridVersion:
        """Store grids (and their buildings) as a new draft version, with an "import" audit row."""
        with self._transaction() as tx:
            version_id = insert_version(tx, label, at=at, source=source, crs=crs, actor=actor)
            insert_grid_rows(tx, version_id, grids, buildings)
            audit_in(tx, version_id, at=at, actor=actor, action="import",
                     detail={"source": source, "crs": crs, "grids": len(grids), "buildings": len(buildings)})
            row = tx.execute(f"{VERSION_SELECT} WHERE id = ?", (version_id,)).fetchone()
        logger.info("sqlite: draft grid version %s %r (%d grids, %d buildings)", version_id, label, len(grids), len(buildings))
        return version_from_row(row)

    def delete_draft(self, version_id: int, *, actor: str, at: datetime) -> None:
        """Delete a draft (a published version cannot be deleted), with an audit row."""
        with self._transaction() as tx:
            row = tx.execute("SELECT status, label FROM grid_versions WHERE id = ?", (version_id,)).fetchone()
            if row is None:
                raise VersionStateError(f"grid version {version_id}: no such version")
            if row["status"] != "draft":
                raise VersionStateError(f"grid version {version_id} is published: only a draft can be deleted")
            tx.execute("DELETE FROM grid_versions WHERE id = ?", (version_id,))
            audit_in(tx, version_id, at=at, actor=actor, action="delete", detail={"label": row["label"]})

    def grid_versions(self) -> list[GridVersion]:
        """Every version, newest first."""
        return [version_from_row(r) for r in self._query(f"{VERSION_SELECT} ORDER BY id DESC")]

    def grid_version(self, version_id: int) -> GridVersion | None:
        """One version by id."""
        rows = self._query(f"{VERSION_SELECT} WHERE id = ?", (version_id,))
        return version_from_row(rows[0]) if rows else None

    def version_at(self, at: datetime) -> GridVersion | None:
        """The published version that was current at time `at`."""
        t = ts_text(at)
        rows = self._query(
            f"{VERSION_SELECT} WHERE status = 'published' AND valid_from <= ? AND (valid_to IS NULL OR ? < valid_to)"
            " ORDER BY valid_from DESC LIMIT 1",
            (t, t),
        )
        return version_from_row(rows[0]) if rows else None

    def version_token(self) -> int:
        """The current version's id (0 when there is none)."""
        rows = self._query("SELECT id FROM grid_versions WHERE is_current = 1")
        return int(rows[0][0]) if rows else 0

    def save_report(self, version_id: int, kind: str, body: dict[str, Any]) -> None:
        """Store (replace) a report of a version."""
        with self._transaction() as tx:
            tx.execute(
                "INSERT INTO grid_version_reports (version_id, kind, created_at, body) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (version_id, kind) DO UPDATE SET created_at = excluded.created_at, body = excluded.body",
                (version_id, kind, ts_text(codec.now_utc()), json.dumps(body, ensure_ascii=False, allow_nan=False)),
            )

    def report(self, version_id: int, kind: str) -> dict[str, Any] | None:
        """A stored report, or None."""
        rows = self._query("SELECT body FROM grid_version_reports WHERE version_id = ? AND kind = ?", (version_id, kind))
        return json.loads(rows[0][0]) if rows else None

    def version_audit(self, version_id: int | None = None) -> list[VersionAudit]:
        """Audit rows of one version (or all), oldest first."""
        rows = self._query(f"{_AUDIT_SELECT} WHERE ? IS NULL OR version_id = ? ORDER BY id", (version_id, version_id))
        return [_audit(r) for r in rows]


def _audit(row: sqlite3.Row) -> VersionAudit:
    return VersionAudit(row["id"], row["version_id"], from_ts_text(row["at"]), row["actor"], row["action"], json.loads(row["detail"]))

