"""Grid versions on PostgreSQL + PostGIS: drafts, publishing, as-of lookups, reports and the audit log.

`PostgisVersions` is mixed into store.postgis.PostgisStore (it uses its `_connection` and `_query`);
the `*_in` functions run inside a unit of work (store.postgis_uow), so that publishing a version,
moving devices and patrollers and re-attributing open incidents commit together or not at all.
Grids and buildings of a draft go in by COPY (100,000 grids in seconds).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

from geo.model import Building, Grid, GridVersion
from store import codec
from store.errors import VersionStateError
from store.ports import VersionAudit

if TYPE_CHECKING:
    from store.postgis_uow import Conn

logger = logging.getLogger(__name__)

VERSION_SELECT = f"SELECT {', '.join(codec.VERSION_COLUMNS)} FROM grid_versions"
_AUDIT_SELECT = "SELECT id, version_id, at, actor, action, detail FROM grid_version_audit"
#: pg_advisory_xact_lock key that serializes version changes (publish, import) across processes
VERSION_LOCK = 0x6772_6964_0003


def version_from_row(row: Mapping[str, Any]) -> GridVersion:
    """A GridVersion from a row of VERSION_SELECT."""
    return codec.version_from_values(row, codec.to_utc)


def insert_version(conn: Conn, label: str, *, at: datetime, source: str | None, crs: str | None, actor: str) -> int:
    """Insert a draft version row (status 'draft'); VersionStateError if the label is taken."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (VERSION_LOCK,))
    if conn.execute("SELECT 1 FROM grid_versions WHERE label = %s", (label,)).fetchone():
        raise VersionStateError(f"grid version label {label!r} exists already: choose another label")
    row = conn.execute(
        "INSERT INTO grid_versions (label, created_at, status, source, crs, created_by)"
        " VALUES (%s, %s, 'draft', %s, %s, %s) RETURNING id",
        (label, at, source, crs, actor),
    ).fetchone()
    assert row is not None
    return int(row["id"])


def insert_grid_rows(conn: Conn, version_id: int, grids: Sequence[Grid], buildings: Sequence[Building]) -> None:
    """COPY the grids and buildings of a (draft) version."""
    with conn.cursor() as cur:
        with cur.copy("COPY grids (version_id, code, level, name, parent_code, geom) FROM STDIN") as copy:
            for g in grids:
                copy.write_row((version_id, g.code, g.level, g.name, g.parent_code, codec.to_ewkb_hex(g.geometry)))
        with cur.copy("COPY buildings (version_id, code, grid_code, name, geom) FROM STDIN") as copy:
            for b in buildings:
                copy.write_row((version_id, b.code, b.grid_code, b.name, codec.to_ewkb_hex(b.geometry)))


def audit_in(conn: Conn, version_id: int, *, at: datetime, actor: str, action: str, detail: Mapping[str, Any]) -> None:
    """Append an audit row."""
    conn.execute(
        "INSERT INTO grid_version_audit (version_id, at, actor, action, detail) VALUES (%s, %s, %s, %s, %s)",
        (version_id, at, actor, action, Jsonb(dict(detail))),
    )


def publish_in(conn: Conn, version_id: int, *, at: datetime, actor: str, detail: Mapping[str, Any],
               expected_current: int | None = None) -> GridVersion:
    """Make a draft current from `at`; the current version is valid until `at`. Audited.

    `expected_current` (0: none) guards against a publish computed against a version that another
    publish has replaced meanwhile: VersionStateError, and the caller computes again.
    """
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (VERSION_LOCK,))
    row = conn.execute(f"{VERSION_SELECT} WHERE id = %s FOR UPDATE", (version_id,)).fetchone()
    if row is None:
        raise VersionStateError(f"grid version {version_id}: no such version")
    if row["status"] != "draft":
        raise VersionStateError(f"grid version {version_id} is {row['status']}: only a draft can be published")
    current = conn.execute(f"{VERSION_SELECT} WHERE is_current FOR UPDATE").fetchone()
    _check_expected(current["id"] if current is not None else 0, expected_current, version_id)
    if current is not None and current["valid_from"] is not None and current["valid_from"] > at:
        raise VersionStateError(f"publish time {at} is before the current version's valid_from {current['valid_from']}")
    conn.execute("UPDATE grid_versions SET is_current = false, valid_to = %s WHERE is_current", (at,))
    conn.execute(
        "UPDATE grid_versions SET status = 'published', is_current = true, valid_from = %s, published_at = %s,"
        " published_by = %s WHERE id = %s",
        (at, at, actor, version_id),
    )
    audit_in(conn, version_id, at=at, actor=actor, action="publish",
             detail={"previous": current["id"] if current is not None else None, **detail})
    conn.execute("SELECT pg_notify('gridwatch_grid_version', %s)", (str(version_id),))
    published = conn.execute(f"{VERSION_SELECT} WHERE id = %s", (version_id,)).fetchone()
    assert published is not None
    return version_from_row(published)


def _check_expected(current: int, expected: int | None, version_id: int) -> None:
    if expected is not None and current != expected:
        raise VersionStateError(
            f"grid version {version_id}: the current version changed ({expected or 'none'} → {current}) while the"
            " publish was prepared; publish again"
        )


def move_devices_in(conn: Conn, moves: Sequence[tuple[str, str]]) -> None:
    """Set devices' owner grids."""
    if moves:
        conn.execute(
            "UPDATE devices AS d SET grid_code = m.grid FROM unnest(%s::text[], %s::text[]) AS m (id, grid)"
            " WHERE d.id = m.id",
            ([d for d, _ in moves], [g for _, g in moves]),
        )


def set_patroller_grids_in(conn: Conn, moves: Sequence[tuple[str, tuple[str, ...]]]) -> None:
    """Set patrollers' level-3 assignments."""
    with conn.cursor() as cur:
        cur.executemany("UPDATE patrollers SET grid_codes = %s WHERE id = %s", [(list(c), p) for p, c in moves])


class PostgisVersions:
    """The grid-version part of store.ports.Store on PostgreSQL (a mixin of PostgisStore)."""

    if TYPE_CHECKING:  # provided by PostgisStore
        def _connection(self) -> AbstractContextManager[Conn]: ...
        def _query(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[dict[str, Any]]: ...

    def create_draft(
        self, label: str, grids: Sequence[Grid], buildings: Sequence[Building], *,
        source: str | None, crs: str | None, actor: str, at: datetime,
    ) -> GridVersion:
        """Store grids (and their buildings) as a new draft version, with an "import" audit row."""
        with self._connection() as conn:
            version_id = insert_version(conn, label, at=at, source=source, crs=crs, actor=actor)
            insert_grid_rows(conn, version_id, grids, buildings)
            audit_in(conn, version_id, at=at, actor=actor, action="import",
                     detail={"source": source, "crs": crs, "grids": len(grids), "buildings": len(buildings)})
            row = conn.execute(f"{VERSION_SELECT} WHERE id = %s", (version_id,)).fetchone()
        assert row is not None
        logger.info("draft grid version %s %r (%d grids, %d buildings)", version_id, label, len(grids), len(buildings))
        return version_from_row(row)

    def delete_draft(self, version_id: int, *, actor: str, at: datetime) -> None:
        """Delete a draft (a published version cannot be deleted), with an audit row."""
        with self._connection() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (VERSION_LOCK,))
            row = conn.execute("SELECT status, label FROM grid_versions WHERE id = %s", (version_id,)).fetchone()
            if row is None:
                raise VersionStateError(f"grid version {version_id}: no such version")
            if row["status"] != "draft":
                raise VersionStateError(f"grid version {version_id} is published: only a draft can be deleted")
            conn.execute("DELETE FROM grid_versions WHERE id = %s", (version_id,))
            audit_in(conn, version_id, at=at, actor=actor, action="delete", detail={"label": row["label"]})

    def grid_versions(self) -> list[GridVersion]:
        """Every version, newest first."""
        return [version_from_row(r) for r in self._query(f"{VERSION_SELECT} ORDER BY id DESC")]

    def grid_version(self, version_id: int) -> GridVersion | None:
        """One version by id."""
        rows = self._query(f"{VERSION_SELECT} WHERE id = %s", (version_id,))
        return version_from_row(rows[0]) if rows else None

    def version_at(self, at: datetime) -> GridVersion | None:
        """The published version that was current at time `at`."""
        rows = self._query(
            f"{VERSION_SELECT} WHERE status = 'published' AND valid_from <= %(at)s"
            " AND (valid_to IS NULL OR %(at)s < valid_to) ORDER BY valid_from DESC LIMIT 1",
            {"at": codec.to_utc(at, "at")},
        )
        return version_from_row(rows[0]) if rows else None

    def version_token(self) -> int:
        """The current version's id (0 when there is none)."""
        rows = self._query("SELECT id FROM grid_versions WHERE is_current")
        return int(rows[0]["id"]) if rows else 0

    def save_report(self, version_id: int, kind: str, body: dict[str, Any]) -> None:
        """Store (replace) a report of a version."""
        with self._connection() as conn:
            conn.execute(
                "INSERT INTO grid_version_reports (version_id, kind, body) VALUES (%s, %s, %s)"
                " ON CONFLICT (version_id, kind) DO UPDATE SET created_at = now(), body = EXCLUDED.body",
                (version_id, kind, Jsonb(body)),
            )

    def report(self, version_id: int, kind: str) -> dict[str, Any] | None:
        """A stored report, or None."""
        rows = self._query(
            "SELECT body FROM grid_version_reports WHERE version_id = %s AND kind = %s", (version_id, kind)
        )
        return rows[0]["body"] if rows else None

    def version_audit(self, version_id: int | None = None) -> list[VersionAudit]:
        """Audit rows of one version (or all), oldest first."""
        rows = self._query(
            f"{_AUDIT_SELECT} WHERE %(v)s::bigint IS NULL OR version_id = %(v)s ORDER BY id", {"v": version_id}
        )
        return [
            VersionAudit(r["id"], r["version_id"], codec.to_utc(r["at"]), r["actor"], r["action"], r["detail"])
            for r in rows
        ]

