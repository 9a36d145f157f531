"""`make bench`: routing and end-to-end benchmarks on private services, written to bench/RESULTS.md.

Starts its own PostgreSQL + PostGIS (tests.fixtures.pgcluster.PrivateCluster, on disk by default and
with production durability: fsync and synchronous_commit on) and a fresh Mosquitto child process
per measurement (ingest.broker.MosquittoBroker: no in-flight cap, 1,000,000 queued messages).

    .venv/bin/python -m bench.run                 # full run (a few minutes)
    .venv/bin/python -m bench.run --quick         # smoke run at small sizes
    .venv/bin/python -m bench.run --skip-routing --messages 50000 --stores postgis

(a) routing: vectorized GridIndex (full L1/L2/L3 chain + building) vs one PostGIS ST_Contains
    query per point over one connection, same points, same run; and one-point locate p50/p99.
(b) end to end: a publisher process (paho, QoS 1, capped in-flight window) → Mosquitto →
    Runtime.start_ingest → store, vs the raw QoS 1 pass-through (same publisher → Mosquitto → a paho
    subscriber that only counts), measured in the same run; 0 lost / 0 duplicated checked.
(c) latency: alarms paced at 1,000/s → patroller notification received by a subscriber.
(f) pages (bench/pages.py): /map first render, a 100,000-grid district view and drill-down, and alarm publish →
    incident on the wall, in headless Chromium (Debian `chromium` through Playwright), each against a baseline
    measured in the same run; `--skip-pages` leaves them out (the 100k store is built once, cached in var/bench/).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger("bench")

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "RESULTS.md"

#: PostgreSQL settings of the benchmark cluster: production durability (a commit is on disk before
#: the MQTT ack), unlike the test clusters (fsync off)
DURABLE_SETTINGS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on", "shared_buffers": "256MB"}


# Targets of issue 2
T_ROUTE_DISTRICT = 2_000_000
T_ROUTE_BIG = 300_000
T_ONE_POINT_P99_US = 20.0
T_VS_POSTGIS = 10.0
T_E2E_RATIO = 0.8
T_LATENCY_P99_MS = 30.0
# Targets of issue 3
T_VALIDATE_S = 60.0
T_HOT_SWAP_S = 5.0
# Targets of issue 5
T_READINGS_PER_S = 20_000
T_DECODE_US = 50.0
READINGS_PER_MESSAGE = (1, 20)


NOTES = (
    "Every process shares the same 2 cores: publisher, Mosquitto, the gridwatch process, PostgreSQL and (for"
    " the raw baseline and the latency run) a subscriber. The raw baseline is bounded by the publisher"
    " (paho in pure Python); on this VM it moves by ±15% from run to run, hence interleaved raw runs and"
    " their mean.",
    "The gridwatch ingest process is bound by its GIL: paho receive, decode + pydantic validation,"
    " routing, the unit of work and the outbox relay all run in one Python process. A py-spy profile at"
    " ~8,000 alarms/s (PostGIS) put about 22% in decode/validation (ingest/adapters, ingest/checks),"
    " 18% in MQTT receive, 30% in the unit of work and 15% in building and relaying notifications.",
    "The throughput stream uses the default 600 s cooldown: most alarms join an open incident, and each"
    " batch saves and notifies every incident it changed once, so bigger batches under load (up to"
    " 5,000 here) mean fewer incident writes and notifications per alarm (about 0.17 instead of 0.63"
    " at 500).",
    "Latency: with cooldown 0 each alarm opens an incident and two notifications. The ingest thread"
    " publishes a batch's notifications itself right after its commit (the relay thread only writes the"
    " delivered-marks, coalesced every 0.1 s, and retries failures); a batch waits at most the batch wait"
    " after its first message arrived. A batch of ~11 alarms costs ~7 ms on PostGIS (four round trips:"
    " locks + known keys + open incidents, alarms, then incidents, history and outbox rows with the durable"
    " commit), ~3 ms on SQLite; on PostGIS the ingest thread is busy ~85% of the time at 1,000 alarms/s, so"
    " queueing and the CPU shared by all processes on 2 cores set the p99 (runs vary by ±30%).",
)


@dataclass(frozen=True)
class Sizes:
    """How big each benchmark is (CLI flags; --quick shrinks them)."""

    points: int
    big: int
    pg_points: int
    messages: int
    window: int
    latency_rate: float
    latency_seconds: float
    plan_grids: int = 100_000
    readings: int = 200_000
    pages_grids: int = 100_000
    pages_runs: int = 7
    pages_alarms: int = 50


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: small sizes everywhere")
    p.add_argument("--points", type=int, help="points per vectorized routing run (default 1,000,000)")
    p.add_argument("--big", type=int, help="level-3 grids of the synthetic tessellation (default 100,000)")
    p.add_argument("--pg-points", type=int, help="points queried one by one in PostGIS (default 20,000)")
    p.add_argument("--messages", type=int, help="alarms per end-to-end throughput run (default 100,000)")
    p.add_argument("--window", type=int, default=2000, help="publisher in-flight window (1..60000, default 2000)")
    p.add_argument("--latency-rate", type=float, default=1000.0, help="paced alarms/s of the latency run")
    p.add_argument("--latency-seconds", type=float, help="duration of the latency run (default 10)")
    p.add_argument("--stores", default="postgis,sqlite", help="comma list of stores: postgis,sqlite")
    p.add_argument("--skip-routing", action="store_true")
    p.add_argument("--skip-e2e", action="store_true")
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument("--skip-planning", action="store_true")
    p.add_argument("--plan-grids", type=int, help="level-3 grids of the planner benchmarks (default 100,000)")
    p.add_argument("--skip-devices", action="store_true", help="skip the issue 5 benchmarks (decoders, readings)")
    p.add_argument("--readings", type=int, help="readings per readings run (default 200,000)")
    p.add_argument("--skip-pages", action="store_true", help="skip the issue 6 page benchmarks (headless Chromium)")
    p.add_argument("--pages-grids", type=int, help="level-3 grids of the big map wall benchmark (default 100,000)")
    p.add_argument("--pages-runs", type=int, help="cold page loads per measurement (default 7)")
    p.add_argument("--pages-alarms", type=int, help="alarms of the publish → wall measurement (default 50)")
    p.add_argument("--rounds", type=int, default=None, help="end-to-end rounds (raw + each store), default 2 (1 with --quick)")
    p.add_argument("--batch-size", type=int, default=0,
                   help="Settings.batch_size of the ingest worker (default 0 = the Settings default)")
    p.add_argument("--batch-wait-ms", type=float, help="override Settings.batch_wait_ms of the ingest worker")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="parent folder of the PostgreSQL cluster, SQLite files and broker data (default: the"
                        " system temp dir, normally on disk; /dev/shm would be a RAM disk)")
    p.add_argument("--pg-fast", action="store_true", help="run PostgreSQL with fsync/synchronous_commit off")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="Markdown results file")
    p.add_argument("--json", type=Path, default=None, help="also write the raw figures as JSON here")
    return p.parse_args(argv)


def sizes_of(args: argparse.Namespace) -> Sizes:
    quick = args.quick
    return Sizes(
        points=args.points or (100_000 if quick else 1_000_000),
        big=args.big or (5_000 if quick else 100_000),
        pg_points=args.pg_points or (500 if quick else 20_000),
        messages=args.messages or (2_000 if quick else 100_000),
        window=args.window,
        latency_rate=args.latency_rate,
        latency_seconds=args.latency_seconds or (2.0 if quick else 10.0),
        plan_grids=args.plan_grids or (5_000 if quick else 100_000),
        readings=args.readings or (4_000 if quick else 200_000),
        pages_grids=args.pages_grids or (2_000 if quick else 100_000),
        pages_runs=args.pages_runs or (2 if quick else 7),
        pages_alarms=args.pages_alarms or (5 if quick else 50),
    )


# --- environment ---------------------------------------------------------------------------------


def filesystem_of(path: Path) -> str:
    """The filesystem type holding `path` (from /proc/mounts), e.g. ext4 or tmpfs."""
    best, fstype = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return fstype
    target = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3 and (target == parts[1] or target.startswith(parts[1].rstrip("/") + "/")):
            if len(parts[1]) > len(best):
                best, fstype = parts[1], parts[2]
    return fstype


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "?"


def machine_info() -> dict[str, Any]:
    import paho.mqtt
    import psycopg
    import shapely

    from ingest.broker import mosquitto_binary

    mosq = mosquitto_binary()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "mosquitto": _version([mosq, "-h"]) if mosq else "not installed",
        "paho_mqtt": paho.mqtt.__version__,
        "psycopg": psycopg.__version__,
        "shapely": shapely.__version__,
    }


@contextmanager
def postgis_cluster(base: Path, fast: bool) -> Iterator[Any]:
    from tests.fixtures.pgcluster import ClusterError, PrivateCluster

    settings = {} if fast else DURABLE_SETTINGS
    cluster = PrivateCluster(base_dir=base, settings=settings).start()
    try:
        if not cluster.has_extension("postgis"):
            raise ClusterError("PostGIS is not installed for this PostgreSQL (scripts/test-deps.sh installs it)")
        yield cluster
    finally:
        cluster.close()


@contextmanager
def broker(base: Path) -> Iterator[str]:
    """A fresh Mosquitto for one measurement (no sessions or queues left over from the previous one)."""
    from ingest.broker import MosquittoBroker

    data = Path(tempfile.mkdtemp(prefix="mosquitto-", dir=base))
    b = MosquittoBroker(data_dir=data)
    b.start()
    try:
        yield b.url
    finally:
        b.stop()


# --- the benchmarks ------------------------------------------------------------------------------


def bench_routing(cluster: Any, sizes: Sizes, seed: int) -> dict[str, Any]:
    import psycopg

    from bench import routing
    from geo.district import build_sample_district
    from geo.index import GridIndex
    from geo.synthetic import build_tessellation

    district = build_sample_district()
    t0 = time.perf_counter()
    tessellation = build_tessellation(sizes.big, seed=seed)
    tess_s = time.perf_counter() - t0
    url = cluster.create_database("bench_routing", extensions=("postgis",))
    out: dict[str, Any] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for name, grids, buildings in (("district", district.grids, district.buildings),
                                       ("tessellation", tessellation, ())):
            logger.info("routing: %s (%d grids)", name, len(grids))
            idx = routing.bench_index(grids, buildings, sizes.points, seed=seed)
            index = GridIndex(grids, buildings)
            pts = routing.random_points(index.bounds, sizes.pg_points, seed + 1)
            pg = routing.bench_postgis_per_point(conn, pts, grids, expected_l3=routing._expected_l3(index, pts))
            # the same points through the index, so the ratio compares like with like
            same = _index_rate_on(index, pts)
            out[name] = {"index": idx, "postgis": pg, "index_on_postgis_points_per_s": same}
    out["tessellation"]["build_tessellation_s"] = round(tess_s, 2)
    return out


def _index_rate_on(index: Any, pts: Any, repeats: int = 5) -> int:
    rates = []
    x, y = pts[:, 0].copy(), pts[:, 1].copy()
    index.locate_many(x, y)
    for _ in range(repeats):
        t0 = time.perf_counter()
        index.locate_many(x, y)
        rates.append(len(x) / (time.perf_counter() - t0))
    return round(statistics.median(rates))


@contextmanager
def fresh_store(kind: str, cluster: Any, base: Path, label: str) -> Iterator[str]:
    """A new, empty database for one measurement; dropped afterwards, with a checkpoint before it
    starts so that no earlier run's dirty pages are flushed during this one."""
    name = f"bench_{label}_{uuid.uuid4().hex[:6]}"
    cluster.execute("CHECKPOINT")
    if kind == "postgis":
        url = cluster.create_database(name, extensions=("postgis",))
        try:
            yield url
        finally:
            cluster.drop_database(name)
        return
    path = base / f"{name}.db"
    try:
        yield f"sqlite:///{path}"
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def bench_planning(cluster: Any, base: Path, sizes: Sizes, stores: Sequence[str]) -> dict[str, Any]:
    """Validate, import and hot-swap sizes.plan_grids level-3 grids (bench/validate.py, bench/planning.py)."""
    from bench import planning

    logger.info("planning: validate %d level-3 grids", sizes.plan_grids)
    out: dict[str, Any] = {"validate": planning.bench_validate_isolated(sizes.plan_grids)}
    for kind in stores:
        with fresh_store(kind, cluster, base, "plan_import") as url:
            logger.info("planning: import %d grids into %s", sizes.plan_grids, kind)
            out[kind] = {"import": planning.bench_import_isolated(url, sizes.plan_grids, base)}
        with fresh_store(kind, cluster, base, "plan_swap") as url:
            logger.info("planning: hot swap of %d grids on %s", sizes.plan_grids, kind)
            out[kind]["hot_swap"] = planning.bench_hot_swap(url, sizes.plan_grids)
    return out


def bench_e2e(cluster: Any, base: Path, sizes: Sizes, stores: Sequence[str], seed: int,
              settings_kw: dict[str, Any], rounds: int = 2) -> dict[str, Any]:
    from bench import e2e
    from geo.district import build_sample_district

    district = build_sample_district()
    messages = e2e.alarm_messages(district, sizes.messages, seed=seed)
    out: dict[str, Any] = {"raw": [], "runs": {kind: [] for kind in stores}}

    def raw() -> None:
        logger.info("e2e: raw pass-through (%d messages, window %d)", sizes.messages, sizes.window)
        cluster.execute("CHECKPOINT")
        with broker(base) as url:
            out["raw"].append(e2e.run_raw(url, messages, window=sizes.window))
        logger.info("e2e: raw → %s msg/s", out["raw"][-1]["msg_per_s"])

    # interleaved rounds (raw, then each store), closed by one more raw run: the machine's drift
    # shows in the spread of the raw runs, and every pipeline run has a raw run next to it
    for _ in range(rounds):
        raw()
        for kind in stores:
            logger.info("e2e: pipeline on %s", kind)
            with broker(base) as url, fresh_store(kind, cluster, base, "e2e") as store_url:
                run = e2e.run_pipeline(store_url, url, district, messages, window=sizes.window, settings_kw=settings_kw)
            out["runs"][kind].append(run)
            logger.info("e2e: %s → %s alarms/s", kind, run["alarms_per_s"])
    raw()
    rates = [r["msg_per_s"] for r in out["raw"] if r["msg_per_s"]]
    out["raw_msg_per_s"] = round(statistics.mean(rates)) if rates else None
    for kind, runs in out["runs"].items():
        # the summary of a store: its mean rate, and clean only if every run was clean
        rates = [r["alarms_per_s"] for r in runs if r["alarms_per_s"]]
        out[kind] = {
            **runs[-1],
            "alarms_per_s": round(statistics.mean(rates)) if rates else None,
            "lost": sum(r["lost"] for r in runs),
            "duplicated": sum(r["duplicated"] for r in runs),
            "count_ok": all(r["count_alarms"] == r["messages"] for r in runs),
            "messages_total": sum(r["messages"] for r in runs),
        }
    return out


def bench_devices(cluster: Any, base: Path, sizes: Sizes, stores: Sequence[str], seed: int,
                  settings_kw: dict[str, Any]) -> dict[str, Any]:
    from bench import devices, e2e
    from geo.district import build_sample_district

    logger.info("devices: adapter decode costs")
    out: dict[str, Any] = {"decoders": devices.bench_decoders(), "readings": {}}
    district = build_sample_district()
    for per in READINGS_PER_MESSAGE:
        n = sizes.readings if per > 1 else sizes.readings // 4  # one reading per message: fewer, it takes longer
        messages = devices.reading_messages(district, n, per, seed=seed)
        n = len(messages) * per
        with broker(base) as url:
            raw = e2e.run_raw(url, messages, window=sizes.window, topic_filter=devices.READING_FILTER)
        entry: dict[str, Any] = {"raw": raw, "raw_readings_per_s": raw["msg_per_s"] * per if raw["msg_per_s"] else None}
        for kind in stores:
            logger.info("devices: %d readings (%d per message) into %s", n, per, kind)
            with broker(base) as url, fresh_store(kind, cluster, base, f"readings{per}") as store_url:
                entry[kind] = devices.run_readings(store_url, url, district, messages, n, window=sizes.window, settings_kw=settings_kw)
            logger.info("devices: %s → %s readings/s", kind, entry[kind]["readings_per_s"])
        out["readings"][per] = entry
    return out


def bench_latency(cluster: Any, base: Path, sizes: Sizes, stores: Sequence[str], seed: int,
                  settings_kw: dict[str, Any]) -> dict[str, Any]:
    from bench import e2e
    from geo.district import build_sample_district

    district = build_sample_district()
    out: dict[str, Any] = {}
    for kind in stores:
        logger.info("latency: %s at %.0f alarms/s for %.0f s", kind, sizes.latency_rate, sizes.latency_seconds)
        with broker(base) as url, fresh_store(kind, cluster, base, "lat") as store_url:
            out[kind] = e2e.run_latency(store_url, url, district, rate=sizes.latency_rate,
                                        seconds=sizes.latency_seconds, window=sizes.window,
                                        settings_kw=settings_kw, seed=seed)
        logger.info("latency: %s p50 %s ms, p99 %s ms", kind, out[kind].get("p50_ms"), out[kind].get("p99_ms"))
    return out


def bench_pages(base: Path, sizes: Sizes) -> dict[str, Any]:
    from bench import pages

    with broker(base) as url:
        return pages.run(base, url, n_l3=sizes.pages_grids, runs=sizes.pages_runs, alarms=sizes.pages_alarms)


# --- report --------------------------------------------------------------------------------------


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and not v.is_integer():
        s = f"{v:,.2f}"
    else:
        s = f"{int(v):,}"
    return f"{s}{unit}"


def _met(ok: bool | None) -> str:
    return "–" if ok is None else ("**met**" if ok else "**not met**")


def target_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(benchmark, figure, baseline in the same run, target, met) rows of the summary table."""
    rows: list[tuple[str, str, str, str, str]] = []
    routing = results.get("routing")
    if routing:
        for name, label, target in (("district", "138 L3 grids (sample district)", T_ROUTE_DISTRICT),
                                    ("tessellation", f"{routing['tessellation']['index']['l3_grids']:,} L3 grids, 64-vertex",
                                     T_ROUTE_BIG)):
            r = routing[name]
            rate = r["index"]["points_per_s"]
            pg = r["postgis"]["points_per_s"]
            same = r["index_on_postgis_points_per_s"]
            rows.append((f"routing, {label}: vectorized full chain", f"{_fmt(rate)} points/s", "–",
                         f"≥ {_fmt(target)} points/s", _met(rate >= target)))
            ratio = same / pg if pg else None
            rows.append((f"routing, {label}: index vs one PostGIS query per point",
                         f"{_fmt(ratio)}× ({_fmt(same)} vs {_fmt(pg)} points/s)",
                         f"PostGIS ST_Contains per point: {_fmt(pg)} points/s",
                         f"≥ {T_VS_POSTGIS:g}×", _met(ratio is not None and ratio >= T_VS_POSTGIS)))
            p99 = r["index"]["one_point"]["p99_us"]
            rows.append((f"routing, {label}: one point", f"p50 {r['index']['one_point']['p50_us']} µs, p99 {p99} µs",
                         "–", f"p99 ≤ {T_ONE_POINT_P99_US:g} µs", _met(p99 <= T_ONE_POINT_P99_US)))
    e2e = results.get("e2e")
    if e2e:
        raw = e2e.get("raw_msg_per_s")
        for kind in ("postgis", "sqlite"):
            r = e2e.get(kind)
            if not r:
                continue
            rate = r["alarms_per_s"]
            ratio = rate / raw if rate and raw else None
            target = f"≥ {T_E2E_RATIO:g}× raw" if kind == "postgis" else "none set (reported)"
            ok = (ratio is not None and ratio >= T_E2E_RATIO) if kind == "postgis" else None
            rows.append((f"end to end, QoS 1, {kind}: sustained alarms/s", f"{_fmt(ratio)}× raw ({_fmt(rate)} alarms/s)",
                         f"raw QoS 1 pass-through: {_fmt(raw)} msg/s", target, _met(ok)))
            clean = r["lost"] == 0 and r["duplicated"] == 0 and r.get("count_ok", r["count_alarms"] == r["messages"])
            total = r.get("messages_total", r["messages"])
            rows.append((f"end to end, {kind}: delivery", f"{r['lost']} lost, {r['duplicated']} duplicated of {_fmt(total)}",
                         "–", "0 lost, 0 duplicated", _met(clean)))
    lat = results.get("latency")
    if lat:
        for kind in ("postgis", "sqlite"):
            r = lat.get(kind)
            if not r:
                continue
            p99 = r.get("p99_ms")
            complete = r["notifications_received"] == r["notifications_expected"]
            rows.append((f"latency, {kind}: publish → patroller notification at {_fmt(r['target_rate'])} alarms/s",
                         f"p50 {_fmt(r.get('p50_ms'))} ms, p99 {_fmt(p99)} ms "
                         f"({r['notifications_received']:,}/{r['notifications_expected']:,} received)",
                         "–", f"p99 ≤ {T_LATENCY_P99_MS:g} ms",
                         _met(p99 is not None and p99 <= T_LATENCY_P99_MS and complete)))
    plan = results.get("planning")
    if plan:
        v = plan["validate"]
        rows.append((f"planners: validate {v['n_l3']:,} L3 grids ({v['n_grids']:,} with parents)",
                     f"{v['seconds']} s ({v['findings']} findings, peak RSS {v['peak_rss_mb']} MB incl. building the grids)",
                     f"naive checks without a tree: ~{_fmt(v['baseline_extrapolated_seconds'])} s extrapolated"
                     f" from {v['subset_n_l3']:,} grids ({v['baseline_speedup']}× slower)",
                     f"≤ {T_VALIDATE_S:g} s", _met(v["seconds"] <= T_VALIDATE_S)))
        for kind in ("postgis", "sqlite"):
            r = plan.get(kind)
            if not r:
                continue
            i, h = r["import"], r["hot_swap"]
            rows.append((f"planners, {kind}: import + validate {i['features']:,} grids (GeoPackage → draft)",
                         f"{i['seconds']} s, peak RSS {i['peak_rss_mb']} MB", "–", "none set (reported)", _met(None)))
            worst = h["worst_publish_plus_swap_seconds"]
            rows.append((f"planners, {kind}: publish → running runtime routes with the new {h['n_l3']:,}-grid index",
                         f"worst {worst} s over {h['rounds']} staged publishes (swaps {h['swap_seconds']} s);"
                         f" cold (not staged) {h['cold_publish_plus_swap_seconds']} s",
                         f"restarting the runtime instead: {h['restart_baseline_seconds']} s",
                         f"≤ {T_HOT_SWAP_S:g} s", _met(worst <= T_HOT_SWAP_S)))
    dev = results.get("devices")
    if dev:
        for per, entry in dev["readings"].items():
            for kind in ("postgis", "sqlite"):
                r = entry.get(kind)
                if not r:
                    continue
                clean = r["lost"] == 0 and r["duplicated"] == 0
                rows.append((f"readings, {kind}: MQTT → store, one ingest worker, {per} reading(s) per message",
                             f"{_fmt(r['readings_per_s'])} readings/s ({r['lost']} lost, {r['duplicated']} duplicated)",
                             f"raw QoS 1 pass-through of the same messages: {_fmt(entry['raw_readings_per_s'])} readings/s",
                             f"≥ {_fmt(T_READINGS_PER_S)} readings/s" if kind == "postgis" else "none set (reported)",
                             _met(r["readings_per_s"] is not None and r["readings_per_s"] >= T_READINGS_PER_S and clean)
                             if kind == "postgis" else _met(None)))
        worst = max(dev["decoders"].items(), key=lambda kv: kv[1]["decode_us"])
        rows.append(("adapters: decode, median per message (every format)",
                     f"worst {worst[0]} {worst[1]['decode_us']} µs; " + ", ".join(f"{k} {v['decode_us']}" for k, v in dev["decoders"].items()),
                     "parsing alone (json.loads / xmlsafe): " + ", ".join(f"{k} {v['parse_us']}" for k, v in dev["decoders"].items()),
                     f"≤ {T_DECODE_US:g} µs each", _met(worst[1]["decode_us"] <= T_DECODE_US)))
    if results.get("pages"):
        from bench import pages

        rows += pages.target_rows(results["pages"])
    return rows


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    s = results["setup"]
    lines = [
        "# gridwatch benchmark results",
        "",
        f"Written by `make bench` (`python -m bench.run {' '.join(results['argv'])}`).",
        "",
        f"- date: {results['date']} (run took {results['duration_s']:.0f} s)",
        f"- machine: {m['cores']} cores (os.cpu_count()), CPU {m['cpu']}, {m['platform']}",
        f"- software: Python {m['python']}, {m['mosquitto']}, paho-mqtt {m['paho_mqtt']}, psycopg {m['psycopg']},"
        f" shapely {m['shapely']}, {s.get('postgres', '?')}, PostGIS {s.get('postgis', '?')}",
        f"- PostgreSQL: private cluster in {s['pg_dir']} ({s['pg_fs']}, {'a RAM disk' if s['pg_fs'] == 'tmpfs' else 'on disk'}),"
        f" {s['pg_durability']}",
        f"- SQLite: files in {s['data_dir']} ({s['data_fs']}), WAL, synchronous=FULL",
        "- Mosquitto: a fresh child process per measurement, persistence on, max_inflight_messages 0 (no cap),"
        " max_queued_messages 1,000,000; subscribers and the ingest worker use MQTT 5 with receive maximum"
        f" {s['receive_maximum']:,}",
        f"- publisher: a separate process (paho, QoS 1, MQTT 5) with an in-flight window of {s['window']:,};"
        f" ingest batch size up to {s['batch_size']:,} (Settings.batch_size; its default is"
        f" {s['default_batch_size']:,}), batch wait {s['batch_wait_ms']} ms",
        f"- sizes: {json.dumps(s['sizes'])}",
        "",
        "## Targets",
        "",
        "| benchmark | figure | baseline (same run) | target | result |",
        "|---|---|---|---|---|",
    ]
    for row in target_rows(results):
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "## Details", ""]
    routing = results.get("routing")
    if routing:
        lines += [
            "### (a) routing",
            "",
            "| grids | index points/s (median of 5, warm) | one point p50 / p90 / p99 µs | PostGIS per point points/s "
            "| PostGIS p50 / p99 µs | index on the PostGIS points | mismatches index vs STRtree / PostGIS |",
            "|---|---|---|---|---|---|---|",
        ]
        for name in ("district", "tessellation"):
            r = routing[name]
            i, pg = r["index"], r["postgis"]
            op = i["one_point"]
            lines.append(
                f"| {i['l3_grids']:,} L3 ({i['buildings']:,} buildings) | {_fmt(i['points_per_s'])} ({_fmt(i['points'])} points,"
                f" {i['inside_share']:.0%} inside) | {op['p50_us']} / {op['p90_us']} / {op['p99_us']} | {_fmt(pg['points_per_s'])}"
                f" ({_fmt(pg['points'])} points, {pg['rows_per_point']} rows/point) | {pg['per_point']['p50_us']} /"
                f" {pg['per_point']['p99_us']} | {_fmt(r['index_on_postgis_points_per_s'])} |"
                f" {i['mismatches_vs_strtree']} / {pg.get('mismatches_vs_index', '–')} |"
            )
        lines += ["", "The PostGIS side loads all three levels into a GiST-indexed table and runs one prepared"
                  " `ST_Contains` query per point (the full chain comes back as rows); the ratio uses the index's"
                  " rate on those same points.", ""]
    e2e = results.get("e2e")
    if e2e:
        lines += [
            "### (b) end to end, QoS 1",
            "",
            "| run | messages | seconds (first publish → last stored / received) | msg/s | ratio to raw | lost | duplicated |"
            " batches (mean / max size) | incidents | notifications delivered |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for i, r in enumerate(e2e["raw"], 1):
            lines.append(f"| raw pass-through #{i} | {_fmt(r['messages'])} | {r['seconds']} | {_fmt(r['msg_per_s'])} | – |"
                         f" {r['lost']} | – | – | – | – |")
        raw = e2e["raw_msg_per_s"]
        for kind in ("postgis", "sqlite"):
            for n, r in enumerate(e2e.get("runs", {}).get(kind, []), 1):
                ratio = r["alarms_per_s"] / raw if raw and r["alarms_per_s"] else None
                lines.append(
                    f"| pipeline, {kind} #{n} | {_fmt(r['messages'])} | {r['seconds']} | {_fmt(r['alarms_per_s'])} |"
                    f" {_fmt(ratio)}× | {r['lost']} | {r['duplicated']} | {r['batches']:,} ({r['batch_size_mean']} /"
                    f" {r['batch_size_max']}) | {_fmt(r['incidents_created'])} | {_fmt(r['notifications']['delivered'])}"
                    f" ({r['notifications']['pending']} pending) |"
                )
        lines += ["", f"Raw baseline used for the ratios: mean of the raw runs, {_fmt(raw)} msg/s; a store's figure"
                  " in the targets table is the mean of its runs."
                  " Messages come from the device simulator's stream (fence, thermal, camera and smoke alarms of"
                  " the sample district's 390 devices, 10% repeats, default 600 s cooldown), so most alarms join"
                  " an open incident and each batch updates (and notifies) each changed incident once.", ""]
    lat = results.get("latency")
    if lat:
        lines += [
            "### (c) latency: publish → patroller notification",
            "",
            "| store | alarms | paced rate (achieved) | received / expected | p50 ms | p90 ms | p99 ms | max ms"
            " | p50 / p99 ms incl. warm-up | lost | duplicated |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for kind in ("postgis", "sqlite"):
            r = lat.get(kind)
            if not r:
                continue
            lines.append(
                f"| {kind} | {_fmt(r['alarms'])} | {_fmt(r['target_rate'])}/s ({_fmt(r['achieved_rate'])}/s) |"
                f" {_fmt(r['notifications_received'])} / {_fmt(r['notifications_expected'])} | {_fmt(r.get('p50_ms'))} |"
                f" {_fmt(r.get('p90_ms'))} | {_fmt(r.get('p99_ms'))} | {_fmt(r.get('max_ms'))} |"
                f" {_fmt(r.get('p50_all_ms'))} / {_fmt(r.get('p99_all_ms'))} | {r['lost']} | {r['duplicated']} |"
            )
        warm = next((r["measured_after_s"] for r in lat.values() if r), 1.0)
        lines += ["", "Cooldown 0 (every alarm opens an incident); only devices that route to an on-duty patroller"
                  " are used, each alarm carries its send time (`time.time()`) in `ts`, and the subscriber takes"
                  " `time.time()` on receipt (same machine). The percentiles cover the alarms sent after the"
                  f" first {warm:g} s (warm-up: pool connections, prepared statements); the column before last"
                  " includes them.", ""]
    plan = results.get("planning")
    if plan:
        v = plan["validate"]
        lines += [
            "### (d) planners: validation, import, hot swap",
            "",
            f"Validation of {v['n_l3']:,} level-3 grids of 64 vertices with their parents ({v['n_grids']:,} grids,"
            f" `geo.synthetic.build_tessellation`, built in {v['build_seconds']} s, not timed): {v['seconds']} s"
            f" ({v['per_grid_us']} µs per grid), by stage {json.dumps(v['stages_seconds'])}. Baseline: {v['baseline']};"
            f" on the {v['subset_n_l3']:,}-grid subset the naive checks took {v['baseline_subset_seconds']} s vs"
            f" {v['subset_seconds']} s.",
            "",
            "| store | import + validate (s) | stages (start s) | peak RSS MB | staged publishes: staging / swap s"
            " | cold publish + swap s | restart baseline s |",
            "|---|---|---|---|---|---|---|",
        ]
        for kind in ("postgis", "sqlite"):
            r = plan.get(kind)
            if not r:
                continue
            i, h = r["import"], r["hot_swap"]
            lines.append(
                f"| {kind} | {i['seconds']} ({i['file_mb']} MB GeoPackage) | {json.dumps(i['stage_starts_s'])} |"
                f" {i['peak_rss_mb']} | {h['staging_seconds']} / {h['swap_seconds']} |"
                f" {h['cold_publish_plus_swap_seconds']} | {h['restart_baseline_seconds']} |"
            )
        lines += ["", "Hot swap: a Runtime watching the store (1 s poll, as `serve`/`ingest`) pre-builds the newest"
                  " draft's index; the swap figure runs from the publish commit to the runtime routing with the new"
                  " index (so it includes up to one poll interval). The cold round publishes a draft that was not"
                  " staged: the index is built after the publish. The restart baseline builds a fresh Runtime"
                  " over the same store.", ""]
    dev = results.get("devices")
    if dev:
        lines += ["### (e) devices: adapter decode, readings into the store", "",
                  "| format | bytes | outputs | decode µs (median) | parse only µs | decode / parse |", "|---|---|---|---|---|---|"]
        for name, d in dev["decoders"].items():
            lines.append(f"| {name} | {d['bytes']} | {d['outputs']} | {d['decode_us']} | {d['parse_us']} | {d['ratio']}× |")
        lines += ["", "Decode runs through `ingest.decode.decode_messages` (topic dispatch + adapter); \"parse only\" is"
                  " json.loads, or `ingest.adapters.xmlsafe.parse` for XML, of the same bytes in the same run.", "",
                  "| readings per message | run | messages | readings | seconds | readings/s | lost | duplicated |",
                  "|---|---|---|---|---|---|---|---|"]
        for per, entry in dev["readings"].items():
            raw = entry["raw"]
            lines.append(f"| {per} | raw pass-through | {_fmt(raw['messages'])} | {_fmt(raw['messages'] * int(per))} | {raw['seconds']}"
                         f" | {_fmt(entry['raw_readings_per_s'])} | {raw['lost']} | – |")
            for kind in ("postgis", "sqlite"):
                r = entry.get(kind)
                if r:
                    lines.append(f"| {per} | {kind} | {_fmt(r['messages'])} | {_fmt(r['readings'])} | {r['seconds']}"
                                 f" | {_fmt(r['readings_per_s'])} | {r['lost']} | {r['duplicated']} |")
        lines += ["", "Readings: reading v1 messages (`gridwatch/devices/{id}/reading`, QoS 1) of the sample district's"
                  " devices, each with its own increasing timestamps; one ingest worker (`Runtime.start_ingest`);"
                  " the PostgreSQL store writes them through binary COPY into monthly range partitions (TimescaleDB is"
                  " not installed here). The rate runs from the first publish to the commit of the batch that stored"
                  " the last reading; lost / duplicated count distinct (device, metric, ts) rows. At one reading per"
                  " message both the raw run and the pipeline are bound by the publisher (one pure-Python paho"
                  " process, ±10 % between runs): the pipeline keeps up with it, so that figure is a lower bound of"
                  " what one worker takes; the 20-per-message run shows the worker's own ceiling (the raw baseline"
                  " then moves 20× the readings per message).", ""]
    if results.get("pages"):
        from bench import pages

        lines += pages.render_section(results["pages"])
    if results.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in results["notes"]] + [""]
    return "\n".join(lines)


def _pg_versions(cluster: Any) -> dict[str, str]:
    import psycopg

    try:
        url = cluster.create_database(f"bench_info_{uuid.uuid4().hex[:6]}", extensions=("postgis",))
        with psycopg.connect(url) as conn:
            pg = conn.execute("SHOW server_version").fetchone()[0]
            gis = conn.execute("SELECT postgis_lib_version()").fetchone()[0]
        return {"postgres": f"PostgreSQL {pg}", "postgis": gis}
    except Exception:  # noqa: BLE001 - informative only
        return {}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmarks, write the Markdown report and return the figures."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    from bench.e2e import RECEIVE_MAXIMUM, quiet_runtime_logs

    quiet_runtime_logs()
    sizes = sizes_of(args)
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    for s in stores:
        if s not in ("postgis", "sqlite"):
            raise SystemExit(f"--stores: unknown store {s!r} (expected postgis, sqlite)")
    settings_kw: dict[str, Any] = {}
    if args.batch_size:  # 0: the Settings default
        settings_kw["batch_size"] = args.batch_size
    if args.batch_wait_ms is not None:
        settings_kw["batch_wait_ms"] = args.batch_wait_ms
    from api.settings import Settings

    defaults = Settings(secret_key="x", database_url="sqlite:///unused.db")
    started = time.monotonic()
    parent = args.data_dir or Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="gridwatch-bench-", dir=parent))
    base.chmod(0o755)  # the cluster runs as the postgres OS user when we are root
    results: dict[str, Any] = {
        "date": datetime.now(UTC).astimezone().isoformat(timespec="seconds"),
        "argv": list(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "notes": list(NOTES),
    }
    try:
        with postgis_cluster(base, args.pg_fast) as cluster:
            results["setup"] = {
                "pg_dir": str(cluster.base), "pg_fs": filesystem_of(base),
                "pg_durability": "fsync off, synchronous_commit off (--pg-fast)" if args.pg_fast
                else "fsync on, synchronous_commit on, full_page_writes on (production durability)",
                "data_dir": str(base), "data_fs": filesystem_of(base),
                "window": sizes.window, "receive_maximum": RECEIVE_MAXIMUM,
                "batch_size": settings_kw.get("batch_size", defaults.batch_size),
                "batch_wait_ms": settings_kw.get("batch_wait_ms", defaults.batch_wait_ms),
                "default_batch_size": defaults.batch_size,
                "sizes": sizes.__dict__, **_pg_versions(cluster),
            }
            if not args.skip_routing:
                results["routing"] = bench_routing(cluster, sizes, args.seed)
            if not args.skip_e2e:
                rounds = args.rounds or (1 if args.quick else 2)
                results["e2e"] = bench_e2e(cluster, base, sizes, stores, args.seed, settings_kw, rounds)
            if not args.skip_latency:
                results["latency"] = bench_latency(cluster, base, sizes, stores, args.seed, settings_kw)
            if not args.skip_planning:
                results["planning"] = bench_planning(cluster, base, sizes, stores)
            if not args.skip_devices:
                results["devices"] = bench_devices(cluster, base, sizes, stores, args.seed, settings_kw)
            if not args.skip_pages:
                results["pages"] = bench_pages(base, sizes)
    finally:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    results["duration_s"] = time.monotonic() - started
    text = render(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    sys.stdout.write(text + "\n")
    logger.info("wrote %s", args.output)
    return results


if __name__ == "__main__":
    main()
