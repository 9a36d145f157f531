"""Readings on PostgreSQL: a TimescaleDB hypertable when the extension can be used, else monthly partitions.

`ensure_readings_schema` (run by PostgisStore.migrate after the SQL migrations; idempotent) creates
the `readings` table once and records its mode in `readings_meta`:

- "timescaledb", chosen when `timescale="auto"`, `timescaledb` is in pg_available_extensions and
  `CREATE EXTENSION IF NOT EXISTS timescaledb` succeeds (it fails unless the server preloads the
  library: shared_preload_libraries). A hypertable on ts (1-day chunks) with a unique index
  (device_id, metric, ts), compression (segment by device_id, metric; order by ts desc) after 7
  days, and continuous aggregates `readings_1m` / `readings_1h` (real-time: materialized_only =
  false) with refresh policies. Compression and continuous aggregates are TimescaleDB's
  community-licensed features: on an Apache-2-only build they fail, the hypertable stays, and
  bucketed queries then GROUP BY on the hypertable itself (readings_meta caggs = 'no').
- "partitioned" otherwise (or with `timescale="off"`): `readings PARTITION BY RANGE (ts)` with a
  BRIN index on ts and the unique index (device_id, metric, ts), both created on the parent so every
  partition gets them. Partitions `readings_pYYYY_MM` (UTC months) are created on demand before a
  write touches their month (`Readings.ensure_partitions`).

The mode of an existing table is never changed (that would need a data migration); a setting that
asks for the other mode is logged and ignored.

Partitions are created with CREATE TABLE + ALTER TABLE … ATTACH PARTITION, which takes only a SHARE
UPDATE EXCLUSIVE lock on `readings` (CREATE TABLE … PARTITION OF takes ACCESS EXCLUSIVE, so it would
wait for every open transaction that wrote readings). Creators serialize on an advisory lock. A
unit of work that has not written readings yet creates them on a separate autocommit connection, so
they are committed (and cached) at once whatever becomes of the write; one that has (its lock on
`readings` is held already) creates them inside its own transaction, under a savepoint.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Any, Protocol

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from store import codec
from store.errors import StoreError
from store.ports import ReadingRow

logger = logging.getLogger(__name__)

TIMESCALE_SETTINGS = ("auto", "off")
MODES = ("timescaledb", "partitioned")

#: pg_advisory locks: ensure_readings_schema (session lock) and partition creation (transaction lock)
SCHEMA_LOCK = 0x6772_6964_0010
PARTITION_LOCK = 0x6772_6964_0011
#: how long a partition creator on its own connection waits for a lock before creating in-transaction
PARTITION_LOCK_TIMEOUT = "5s"

READINGS_META = (
    "CREATE TABLE IF NOT EXISTS readings_meta (key text PRIMARY KEY, value text NOT NULL,"
    " updated_at timestamptz NOT NULL DEFAULT now())"
)
_COLUMNS = "device_id text NOT NULL, ts timestamptz NOT NULL, metric text NOT NULL, value double precision NOT NULL, unit text"
UNIQUE_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS readings_key ON readings (device_id, metric, ts)"
PARTITIONED_DDL = (
    f"CREATE TABLE IF NOT EXISTS readings ({_COLUMNS}) PARTITION BY RANGE (ts)",
    UNIQUE_INDEX,
    "CREATE INDEX IF NOT EXISTS readings_ts_brin ON readings USING brin (ts)",
)
TIMESCALE_TABLE = f"CREATE TABLE IF NOT EXISTS readings ({_COLUMNS})"
HYPERTABLE = "SELECT create_hypertable('readings', by_range('ts', INTERVAL '1 day'), if_not_exists => TRUE)"
"""The generalized interface (TimescaleDB ≥ 2.13)."""
HYPERTABLE_OLD = "SELECT create_hypertable('readings', 'ts', chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE)"
"""The interface before 2.13 (deprecated since, still accepted by 2.x)."""
COMPRESSION = (
    "ALTER TABLE readings SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id, metric',"
    " timescaledb.compress_orderby = 'ts DESC')",
    "SELECT add_compression_policy('readings', compress_after => INTERVAL '7 days', if_not_exists => TRUE)",
)
#: continuous aggregates: (view, bucket width, refresh start_offset, end_offset, schedule_interval)
CAGGS = (
    ("readings_1m", "1 minute", "2 days", "1 minute", "1 minute"),
    ("readings_1h", "1 hour", "7 days", "1 hour", "15 minutes"),
)
CAGG_OF_BUCKET = {"1m": "readings_1m", "1h": "readings_1h"}


def cagg_ddl(view: str, width: str, start: str, end: str, every: str) -> tuple[str, str]:
    """CREATE MATERIALIZED VIEW … WITH (timescaledb.continuous) (outside a transaction block) and its refresh policy."""
    create = (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {view}"
        " WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS"
        f" SELECT device_id, metric, time_bucket(INTERVAL '{width}', ts) AS bucket, count(*) AS n,"
        " min(value) AS vmin, max(value) AS vmax, avg(value) AS vavg, max(unit) AS unit"
        " FROM readings GROUP BY device_id, metric, bucket WITH NO DATA"
    )
    policy = (
        f"SELECT add_continuous_aggregate_policy('{view}', start_offset => INTERVAL '{start}',"
        f" end_offset => INTERVAL '{end}', schedule_interval => INTERVAL '{every}', if_not_exists => TRUE)"
    )
    return create, policy


class SqlConnection(Protocol):
    """What ensure_readings_schema needs of a connection (a psycopg.Connection, or a fake in unit tests)."""

    autocommit: bool

    def execute(self, query: Any, params: Any = None) -> Any: ...
    def transaction(self) -> Any: ...


def _scalar(conn: SqlConnection, query: Any, params: Any = None) -> Any:
    """The first column of the first row (None without a row), whatever the row factory."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        return None
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


def check_timescale(timescale: str) -> str:
    """Return the setting if valid ("auto" | "off"); ValueError else."""
    if timescale not in TIMESCALE_SETTINGS:
        raise ValueError(f"timescale setting {timescale!r}: expected one of {', '.join(TIMESCALE_SETTINGS)}")
    return timescale


def _version(text: str | None) -> tuple[int, ...]:
    parts = []
    for piece in (text or "0").split("."):
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def choose_mode(conn: SqlConnection, timescale: str) -> str:
    """"timescaledb" if the setting allows it, the server offers it and CREATE EXTENSION works; else "partitioned".

    Runs on an autocommit connection: a failing CREATE EXTENSION (not preloaded, no privilege)
    leaves nothing behind.
    """
    if check_timescale(timescale) == "off":
        return "partitioned"
    if _scalar(conn, "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'") in (None, 0):
        logger.info("readings: TimescaleDB is not available on this server: monthly partitions")
        return "partitioned"
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as e:
        logger.warning("readings: TimescaleDB is available but cannot be used (%s): monthly partitions",
                       str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
        return "partitioned"
    return "timescaledb"


def ensure_readings_schema(conn_or_pool: SqlConnection | ConnectionPool[Any], *, timescale: str = "auto") -> str:
    """Create `readings` if missing (TimescaleDB or monthly partitions, see the module) and return its mode.

    Idempotent and safe to run from several processes at once (a session advisory lock). Takes a
    connection outside a transaction (switched to autocommit for the call) or a pool.
    """
    check_timescale(timescale)
    if isinstance(conn_or_pool, ConnectionPool):
        with conn_or_pool.connection() as conn:
            return _ensure(conn, timescale)
    return _ensure(conn_or_pool, timescale)


@contextmanager
def _autocommit(conn: SqlConnection) -> Any:
    was = conn.autocommit
    if not was:
        status = getattr(getattr(conn, "info", None), "transaction_status", None)
        if status is not None and status != psycopg.pq.TransactionStatus.IDLE:
            raise StoreError("ensure_readings_schema: the connection is inside a transaction")
        conn.autocommit = True
    try:
        yield conn
    finally:
        if not was:
            conn.autocommit = False


def _ensure(conn: SqlConnection, timescale: str) -> str:
    with _autocommit(conn):
        conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        try:
            conn.execute(READINGS_META)
            mode = _scalar(conn, "SELECT value FROM readings_meta WHERE key = 'mode'")
            exists = bool(_scalar(conn, "SELECT to_regclass('readings') IS NOT NULL"))
            if mode in MODES and exists:
                wanted = "partitioned" if timescale == "off" else None
                if wanted is not None and wanted != mode:
                    logger.warning("readings: the table is in %s mode; timescale=%r is ignored (no data migration)",
                                   mode, timescale)
                return str(mode)
            if exists:  # created by an older run that did not record its mode
                kind = _scalar(conn, "SELECT relkind::text FROM pg_class WHERE oid = to_regclass('readings')")
                timescale_installed = _scalar(conn, "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")
                if kind != "p" and not timescale_installed:
                    raise StoreError("readings: a table `readings` exists that is neither partitioned nor a"
                                     " TimescaleDB hypertable; rename or drop it and run migrate() again")
                mode = "partitioned" if kind == "p" else "timescaledb"
                caggs = all(_scalar(conn, "SELECT to_regclass(%s) IS NOT NULL", (v,)) for v, *_ in CAGGS)
            else:
                mode = choose_mode(conn, timescale)
                caggs = False
                if mode == "timescaledb":
                    try:
                        caggs = _create_timescale(conn)
                    except psycopg.Error as e:
                        logger.warning("readings: the TimescaleDB hypertable could not be made (%s): monthly partitions",
                                       str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
                        mode = "partitioned"
                if mode == "partitioned":
                    with conn.transaction():
                        for statement in PARTITIONED_DDL:
                            conn.execute(statement)
            with conn.transaction():
                for key, value in (("mode", mode), ("caggs", "yes" if caggs else "no")):
                    conn.execute(
                        "INSERT INTO readings_meta (key, value) VALUES (%s, %s)"
                        " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
                        (key, value),
                    )
            logger.info("readings: %s mode%s", mode, " with continuous aggregates" if caggs else "")
            return mode
        finally:
            with suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))


def _create_timescale(conn: SqlConnection) -> bool:
    """The hypertable, compression and continuous aggregates; return whether the aggregates exist.

    The hypertable is made in one transaction (a failure leaves no table: the caller falls back to
    partitions); compression and each aggregate are optional extras, made afterwards. CREATE
    MATERIALIZED VIEW … WITH (timescaledb.continuous) refuses to run inside a transaction block: it
    runs alone on the autocommit connection.
    """
    version = _version(_scalar(conn, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"))
    with conn.transaction():
        conn.execute(TIMESCALE_TABLE)
        conn.execute(HYPERTABLE if version >= (2, 13) else HYPERTABLE_OLD)
        conn.execute(UNIQUE_INDEX)
    try:
        with conn.transaction():
            for statement in COMPRESSION:
                conn.execute(statement)
    except psycopg.Error as e:
        logger.warning("readings: TimescaleDB compression not enabled: %s", str(e).strip())
    caggs = True
    for view, *spec in CAGGS:
        create, policy = cagg_ddl(view, *spec)
        try:
            conn.execute(create)  # autocommit: its own implicit transaction
            conn.execute(policy)
        except psycopg.Error as e:
            logger.warning("readings: continuous aggregate %s not made: %s", view, str(e).strip())
            caggs = False
    return caggs


# --- partitions ---------------------------------------------------------------------------------------
def month_of(ts: datetime) -> tuple[int, int]:
    """The (year, month) of a UTC datetime."""
    return ts.year, ts.month


def partition_name(month: tuple[int, int]) -> str:
    """readings_pYYYY_MM."""
    return f"readings_p{month[0]:04d}_{month[1]:02d}"


def partition_bounds(month: tuple[int, int]) -> tuple[str, str]:
    """The partition's [from, to) bounds as UTC timestamptz literals."""
    year, mon = month
    nxt = (year + 1, 1) if mon == 12 else (year, mon + 1)
    return f"{year:04d}-{mon:02d}-01 00:00:00+00", f"{nxt[0]:04d}-{nxt[1]:02d}-01 00:00:00+00"


def create_partitions(conn: SqlConnection, months: Iterable[tuple[int, int]]) -> list[str]:
    """Create and attach the monthly partitions that do not exist yet; return the names created.

    Runs inside the caller's transaction (or savepoint), after an advisory lock that serializes creators.
    """
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
    created = []
    for month in sorted(set(months)):
        name = partition_name(month)
        attached = _scalar(
            conn,
            "SELECT count(*) FROM pg_inherits WHERE inhrelid = to_regclass(%s) AND inhparent = 'readings'::regclass",
            (name,),
        )
        if attached:
            continue
        low, high = partition_bounds(month)
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (LIKE readings INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
                     .format(sql.Identifier(name)))
        conn.execute(sql.SQL("ALTER TABLE readings ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})")
                     .format(sql.Identifier(name), sql.Literal(low), sql.Literal(high)))
        created.append(name)
    return created


# --- writes and queries ------------------------------------------------------------------------------
READING_STAGE = (
    b"CREATE TEMP TABLE IF NOT EXISTS reading_stage (seq integer NOT NULL, device_id text, ts timestamptz,"
    b" metric text, value double precision, unit text) ON COMMIT DELETE ROWS"
)
_READING_COPY = "COPY reading_stage (seq, device_id, ts, metric, value, unit) FROM STDIN (FORMAT BINARY)"
_READING_COPY_TYPES = ("int4", "text", "timestamptz", "text", "float8", "text")
# ORDER BY seq: a sample repeated in the call is stored from its first copy
_READING_INSERT = (
    "WITH s AS (DELETE FROM reading_stage RETURNING *)"
    " INSERT INTO readings (device_id, ts, metric, value, unit) SELECT device_id, ts, metric, value, unit FROM s"
    " ORDER BY seq ON CONFLICT DO NOTHING"
)
_READING_INSERT_ARRAYS = (
    "INSERT INTO readings (device_id, ts, metric, value, unit)"
    " SELECT d, t, m, v, u FROM unnest(%s::text[], %s::timestamptz[], %s::text[], %s::float8[], %s::text[])"
    " WITH ORDINALITY AS k(d, t, m, v, u, n) ORDER BY n ON CONFLICT DO NOTHING"
)
READINGS_COPY_MIN_ROWS = 64
"""Smaller writes go as one INSERT … SELECT FROM unnest(arrays); bigger ones through COPY."""

_EPOCH = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"


class Readings:
    """The readings table of one database, shared by a store's connections (thread-safe).

    Knows the mode (read from readings_meta once) and, in partitioned mode, which monthly
    partitions exist (a cache filled from the catalog and by the partitions it creates).
    """

    def __init__(self, url: str | None = None, *, timescale: str = "auto") -> None:
        self.url = url
        self.timescale = check_timescale(timescale)
        self._lock = threading.Lock()
        self._mode: tuple[str, bool] | None = None  # (mode, continuous aggregates)
        self._months: set[tuple[int, int]] = set()

    def migrate(self, conn_or_pool: SqlConnection | ConnectionPool[Any]) -> str:
        """ensure_readings_schema with this object's setting; forget what was cached."""
        mode = ensure_readings_schema(conn_or_pool, timescale=self.timescale)
        with self._lock:
            self._mode = None
            self._months.clear()
        return mode

    def mode(self, conn: SqlConnection) -> tuple[str, bool]:
        """(mode, whether the continuous aggregates exist), read once from readings_meta."""
        if self._mode is None:
            rows = conn.execute("SELECT key, value FROM readings_meta").fetchall()
            meta = {(r["key"] if isinstance(r, dict) else r[0]): (r["value"] if isinstance(r, dict) else r[1]) for r in rows}
            if meta.get("mode") not in MODES:
                raise StoreError("readings: no readings table yet (run the store's migrate())")
            self._mode = (meta["mode"], meta.get("caggs") == "yes")
        return self._mode

    def forget_partitions(self) -> None:
        """Drop the partition cache (after a write found a partition missing, e.g. dropped by retention)."""
        with self._lock:
            self._months.clear()

    def ensure_partitions(self, conn: SqlConnection, months: set[tuple[int, int]], *, in_transaction: bool) -> list[str]:
        """Make sure the partitions of these months exist before a write; return the names created.

        `conn` is the writing transaction's connection; `in_transaction`: it holds a lock on
        readings already (it wrote readings), so partitions must be created inside it.
        """
        with self._lock:
            missing = months - self._months
        if not missing:
            return []
        names = {partition_name(m): m for m in missing}
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'readings'::regclass AND c.relname = ANY(%s)",
            (list(names),),
        ).fetchall()
        found = {names[r["relname"] if isinstance(r, dict) else r[0]] for r in rows}
        with self._lock:
            self._months |= found
        missing -= found
        if not missing:
            return []
        if not in_transaction and self.url is not None:
            try:
                with psycopg.connect(self.url, autocommit=True) as other:
                    with other.transaction():
                        other.execute(f"SET LOCAL lock_timeout = '{PARTITION_LOCK_TIMEOUT}'")
                        created = create_partitions(other, missing)
                with self._lock:
                    self._months |= missing
                if created:
                    logger.info("readings: created partitions %s", ", ".join(created))
                return created
            except psycopg.Error as e:
                logger.warning("readings: partitions %s not created on a separate connection (%s); creating them"
                               " in the writing transaction", sorted(names), str(e).strip())
        with conn.transaction():  # a savepoint; cached only once committed (next ensure finds them)
            created = create_partitions(conn, missing)
        if created:
            logger.info("readings: created partitions %s in a writing transaction", ", ".join(created))
        return created

    def insert(self, conn: psycopg.Connection[Any], readings: Sequence[Any], *, touched: bool) -> int:
        """Store readings through COPY and a staging table (or one array INSERT when few); return rows inserted."""
        rows = codec.reading_rows(readings)
        if not rows:
            return 0
        mode, _ = self.mode(conn)
        if mode == "partitioned":
            self.ensure_partitions(conn, {month_of(r[1]) for r in rows}, in_transaction=touched)
        try:
            with conn.cursor() as cur:
                if len(rows) < READINGS_COPY_MIN_ROWS:
                    cur.execute(_READING_INSERT_ARRAYS, [list(c) for c in zip(*rows, strict=True)])
                    return max(0, cur.rowcount)
                with cur.copy(_READING_COPY) as copy:
                    copy.set_types(_READING_COPY_TYPES)
                    for seq, row in enumerate(rows):
                        copy.write_row((seq, *row))
                cur.execute(_READING_INSERT)
                return max(0, cur.rowcount)
        except psycopg.errors.CheckViolation:  # "no partition of relation readings found for row"
            self.forget_partitions()
            raise

    def query(self, conn: psycopg.Connection[Any], device_id: str, *, since: datetime, until: datetime,
              bucket: str, metric: str | None, limit: int) -> list[ReadingRow]:
        """Store.readings (see store.ports)."""
        width = codec.check_bucket(bucket)
        metric_clause = "" if metric is None else " AND metric = %(metric)s"
        params: dict[str, Any] = {"device": device_id, "metric": metric, "limit": max(0, limit)}
        if width is None:
            params.update(lo=codec.to_utc(since, "since"), hi=codec.to_utc(until, "until"))
            rows = conn.execute(
                "SELECT ts, metric, value, unit FROM readings WHERE device_id = %(device)s AND ts >= %(lo)s"
                f" AND ts < %(hi)s{metric_clause} ORDER BY metric, ts LIMIT %(limit)s",
                params,
            ).fetchall()
            return [ReadingRow(codec.to_utc(r["ts"]), r["metric"], r["unit"], 1, r["value"], r["value"], r["value"])
                    for r in rows]
        lo, hi = codec.bucket_window(since, until, width)
        params.update(lo=lo, hi=hi, width=width)
        mode, caggs = self.mode(conn)
        if mode == "timescaledb" and caggs:
            query = (
                f"SELECT bucket AS ts, metric, unit, n, vmin, vmax, vavg FROM {CAGG_OF_BUCKET[bucket]}"
                f" WHERE device_id = %(device)s AND bucket >= %(lo)s AND bucket < %(hi)s{metric_clause}"
                " ORDER BY metric, bucket LIMIT %(limit)s"
            )
        else:
            query = (
                f"SELECT date_bin(%(width)s::interval, ts, {_EPOCH}) AS ts, metric, max(unit) AS unit, count(*) AS n,"
                " min(value) AS vmin, max(value) AS vmax, avg(value) AS vavg FROM readings"
                f" WHERE device_id = %(device)s AND ts >= %(lo)s AND ts < %(hi)s{metric_clause}"
                " GROUP BY metric, 1 ORDER BY metric, 1 LIMIT %(limit)s"
            )
        rows = conn.execute(query, params).fetchall()
        return [ReadingRow(codec.to_utc(r["ts"]), r["metric"], r["unit"], int(r["n"]), r["vmin"], r["vmax"], r["vavg"])
                for r in rows]

