"""One store interface (store.ports.Store), two backends: SQLite and PostgreSQL + PostGIS."""

from __future__ import annotations

import os

from store.ports import Store

TIMESCALE_ENV = "GRIDWATCH_TIMESCALE"
"""Environment variable read by open_store when no `timescale` is given: "auto" (default) or "off"."""


def open_store(url: str, *, timescale: str | None = None) -> Store:
    """Open the backend named by the URL scheme: `sqlite:///path` or `postgresql://…`.

    `timescale` (PostgreSQL only; SQLite ignores it): "auto" stores readings in a TimescaleDB
    hypertable when the server can load the extension, else in monthly partitions; "off" always
    uses monthly partitions. None: the GRIDWATCH_TIMESCALE environment variable, else "auto". It
    matters when `migrate()` first creates the readings table; an existing table keeps its mode.
    """
    if timescale is None:
        timescale = os.environ.get(TIMESCALE_ENV, "").strip().lower() or "auto"
    if timescale not in ("auto", "off"):
        raise ValueError(f"timescale {timescale!r} (or ${TIMESCALE_ENV}): expected auto or off")
    if url.startswith("sqlite:"):
        from store.sqlite import SqliteStore

        return SqliteStore.from_url(url)
    if url.startswith(("postgresql:", "postgres:")):
        from store.postgis import PostgisStore

        return PostgisStore.from_url(url, timescale=timescale)
    raise ValueError(f"database URL {url!r}: expected sqlite:///path or postgresql://…")
