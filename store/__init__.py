"""One store interface (store.ports.Store), two backends: SQLite and PostgreSQL + PostGIS."""

from __future__ import annotations

from store.ports import Store


def open_store(url: str) -> Store:
    """Open the backend named by the URL scheme: `sqlite:///path` or `postgresql://…`."""
    if url.startswith("sqlite:"):
        from store.sqlite import SqliteStore

        return SqliteStore.from_url(url)
    if url.startswith(("postgresql:", "postgres:")):
        from store.postgis import PostgisStore

        return PostgisStore.from_url(url)
    raise ValueError(f"database URL {url!r}: expected sqlite:///path or postgresql://…")
