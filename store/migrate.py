"""Versioned SQL migrations: files `store/migrations/<dialect>/NNNN_name.sql`, applied in order.

Each backend applies every pending file in its own transaction and records it in
`schema_migrations`, so running `migrate()` again is a no-op (and a failing file leaves nothing
behind). Hence no statement that refuses to run in a transaction (CREATE INDEX CONCURRENTLY,
VACUUM). Never edit an applied file: add the next NNNN_name.sql. The files are plain SQL of one dialect
(`sqlite` or `postgres`); `split_statements` cuts a SQLite script into single statements because
`sqlite3.executescript` would commit the surrounding transaction.

One table is not a numbered migration: PostgreSQL's `readings`, whose DDL depends on the server
(a TimescaleDB hypertable or monthly partitions). PostgisStore.migrate creates it after the files,
through store.postgis_readings.ensure_readings_schema (idempotent; the mode is kept in `readings_meta`).
"""

from __future__ import annotations

import logging
import re
import sqlite3
from dataclasses import dataclass
from importlib import resources

from store.errors import StoreError

logger = logging.getLogger(__name__)

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(StoreError):
    """A migration file is malformed or could not be applied."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: int
    name: str  # the file name without `.sql`, e.g. "0001_init"
    sql: str


def load_migrations(dialect: str) -> list[Migration]:
    """Return the migrations of one dialect ("sqlite" or "postgres"), ordered by version."""
    folder = resources.files("store") / "migrations" / dialect
    if not folder.is_dir():
        raise MigrationError(f"migrations of dialect {dialect!r}: no folder {folder}")
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name!r}: expected NNNN_lowercase_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(
                f"migration file {entry.name!r}: version {version} already used by {found[version].name}.sql"
            )
        found[version] = Migration(version, entry.name[: -len(".sql")], entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def pending(migrations: list[Migration], applied: set[int]) -> list[Migration]:
    """Return the migrations whose version is not in `applied`, warning about unknown applied ones."""
    known = {m.version for m in migrations}
    unknown = sorted(applied - known)
    if unknown:
        logger.warning("database has migrations %s that this code does not know (newer code ran on it?)", unknown)
    return [m for m in migrations if m.version not in applied]


def split_statements(script: str) -> list[str]:
    """Cut a SQLite script into complete statements (trigger bodies stay whole)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statement = buffer.strip()
            if _has_code(statement):
                statements.append(statement)
            buffer = ""
    if _has_code(buffer):
        raise MigrationError(f"SQL script ends with an incomplete statement: {buffer.strip()[:80]!r}")
    return statements


def _has_code(sql: str) -> bool:
    """Tell whether a chunk holds anything but comments, blanks and semicolons."""
    for line in sql.splitlines():
        code = line.split("--", 1)[0].strip().strip(";").strip()
        if code:
            return True
    return False
