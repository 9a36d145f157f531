"""Planner benchmarks: import + validate a 100,000-grid file, and publish → hot swap in a running runtime.

(a) import: a GeoPackage of N level-3 grids with their level-2/level-1 parents (written once, not
    timed) goes through `Planning.import_file`: read (pyogrio, in chunks) → parents → draft stored
    (SQLite executemany / PostGIS COPY) → validation report stored. Peak RSS is reported.
(b) hot swap: a Runtime over a store whose current version has N grids polls the version counter
    (Settings.version_poll_seconds, 1 s) like `serve`/`ingest` do, and pre-builds the newest draft's
    index; another N-grid draft is published and the time until the runtime routes with it is
    measured (publish commit → new index live). One cold round publishes a draft that was not
    staged. Baseline in the same run: what a restart would cost instead — building a fresh Runtime
    over the same store (load grids + index). Target: publish + swap ≤ 5 s.
"""

from __future__ import annotations

import logging
import resource
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger("bench.planning")


def _rss_mb() -> int:
    """Peak resident memory of this process's address space (VmHWM: unlike ru_maxrss, not inherited
    from the parent across fork + exec), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def bench_import(url: str, n_l3: int, workdir: Path) -> dict[str, Any]:
    """Write an n_l3 tessellation to a GeoPackage, then time importing (and validating) it into `url`."""
    from api.planning import Planning
    from geo.gridfile import write_grid_file
    from geo.synthetic import build_tessellation
    from store import open_store

    grids = build_tessellation(n_l3, seed=11)
    path = write_grid_file(grids, workdir / f"tessellation-{n_l3}.gpkg")
    del grids
    store = open_store(url)
    store.migrate()
    stages: dict[str, float] = {}
    t0 = time.perf_counter()

    def progress(stage: str, done: int, total: int) -> None:
        stages.setdefault(stage, round(time.perf_counter() - t0, 2))

    rss_before = _rss_mb()
    try:
        result = Planning(store).import_file(path, label=f"bench-{n_l3}", progress=progress)
        seconds = time.perf_counter() - t0
    finally:
        store.close()
    return {
        "n_l3": n_l3, "features": result.feature_count, "seconds": round(seconds, 2),
        "errors": result.validation["errors"], "warnings": result.validation["warnings"],
        "stage_starts_s": stages, "peak_rss_mb": _rss_mb(), "rss_before_mb": rss_before,
        "file_mb": round(path.stat().st_size / 2**20, 1),
    }


def _child(*args: str) -> dict[str, Any]:
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "bench.planning", *args],
                          capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"planning benchmark {args[0]} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def bench_import_isolated(url: str, n_l3: int, workdir: Path) -> dict[str, Any]:
    """bench_import in a child process, so that its peak RSS is the import's own."""
    return _child("import", url, str(n_l3), str(workdir))


def bench_validate_isolated(n_l3: int) -> dict[str, Any]:
    """bench.validate.run in a child process (its peak RSS: tessellation + validation)."""
    return _child("validate", str(n_l3))


def _draft(store: Any, grids: list[Any], label: str) -> int:
    return int(store.create_draft(label, grids, [], source="bench", crs="EPSG:4326", actor="bench", at=datetime.now(UTC)).id)


def _publish(store: Any, version_id: int) -> None:
    with store.unit_of_work() as uow:
        uow.publish_version(version_id, at=datetime.now(UTC), actor="bench", detail={})


def _wait(cond: Callable[[], bool], timeout: float) -> float:
    t0 = time.perf_counter()
    while not cond():
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"not done within {timeout:g} s")
        time.sleep(0.005)
    return time.perf_counter() - t0


def bench_hot_swap(url: str, n_l3: int, rounds: int = 3) -> dict[str, Any]:
    """Publish N-grid versions into a store a Runtime watches; seconds from commit to the new index live.

    Staged rounds: the draft is imported, the watching runtime pre-builds its index (as it does for
    the newest draft while planners review it), then it is published. The cold round publishes a
    draft the runtime has not staged (stage_drafts off): the index is built after the publish.
    """
    from api.runtime import Runtime
    from api.settings import Settings
    from geo.synthetic import build_tessellation
    from store import open_store

    store = open_store(url)
    store.migrate()
    versions = [build_tessellation(n_l3, seed=20 + k) for k in range(rounds + 2)]
    _publish(store, _draft(store, versions[0], f"swap-0-{n_l3}"))
    settings = Settings(_env_file=None, database_url=url, demo=True)
    t0 = time.perf_counter()
    rt = Runtime(settings, store)
    restart_s = time.perf_counter() - t0  # the baseline: what rebuilding the runtime from the store costs
    rt.watch_versions()
    staged, swaps, publishes = [], [], []

    def one(k: int, stage: bool) -> tuple[float, float, float]:
        vid = _draft(store, versions[k], f"swap-{k}-{n_l3}")
        ready = _wait(lambda: vid in rt._staged and rt._staged[vid].done(), 300) if stage else 0.0
        t = time.perf_counter()
        _publish(store, vid)
        pub = time.perf_counter() - t
        swap = _wait(lambda: rt.index.version == vid, 300)
        probe = versions[k][-1].geometry.representative_point()
        hit = rt.index.locate(probe.x, probe.y)
        assert hit is not None and hit.l3 == versions[k][-1].code, "the swapped index routes to the new grids"
        return ready, pub, swap

    try:
        for k in range(1, rounds + 1):
            ready, pub, swap = one(k, stage=True)
            staged.append(ready)
            publishes.append(pub)
            swaps.append(swap)
        rt.settings.stage_drafts = False
        _, cold_pub, cold_swap = one(rounds + 1, stage=False)
    finally:
        rt.close()
        store.close()
    return {
        "n_l3": n_l3, "rounds": rounds, "poll_seconds": settings.version_poll_seconds,
        "staging_seconds": [round(x, 2) for x in staged],
        "publish_seconds": [round(x, 2) for x in publishes],
        "swap_seconds": [round(x, 2) for x in swaps], "worst_swap_seconds": round(max(swaps), 2),
        "worst_publish_plus_swap_seconds": round(max(p + s for p, s in zip(publishes, swaps, strict=True)), 2),
        "cold_publish_plus_swap_seconds": round(cold_pub + cold_swap, 2),
        "restart_baseline_seconds": round(restart_s, 2),
    }


def run(urls: dict[str, str], n_l3: int, workdir: Path | None = None) -> dict[str, Any]:
    """Both measurements on each store URL ({"sqlite": url, "postgis": url})."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="gridwatch-bench-plan-") as tmp:
        for kind, url in urls.items():
            logger.info("planning: import %d grids into %s", n_l3, kind)
            imp = bench_import(url, n_l3, Path(workdir or tmp))
            out[kind] = {"import": imp}
        for kind, url in urls.items():
            logger.info("planning: hot swap of %d grids on %s", n_l3, kind)
            out[kind]["hot_swap"] = bench_hot_swap(url.replace("import", "swap") if kind == "sqlite" else url, n_l3)
    return out


if __name__ == "__main__":
    import json
    import sys

    if sys.argv[1:2] == ["import"]:  # the child process of bench_import_isolated
        print(json.dumps(bench_import(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))))
        raise SystemExit(0)
    if sys.argv[1:2] == ["validate"]:  # the child process of bench_validate_isolated
        from bench import validate

        result = validate.run(int(sys.argv[2]))
        result["peak_rss_mb"] = _rss_mb()
        print(json.dumps(result))
        raise SystemExit(0)
    logging.basicConfig(level=logging.INFO)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as d:
        print(json.dumps(run({"sqlite": f"sqlite:///{d}/import.db"}, n, Path(d)), indent=2))
