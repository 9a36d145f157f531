"""Routing benchmark: the in-memory GridIndex against one PostGIS query per point.

`python -m bench.routing [DSN]` measures the index on the sample district (138 level-3 grids) and on
a 100,000-grid synthetic tessellation (64-vertex polygons); with a DSN it also times
`SELECT code FROM bench_grids WHERE ST_Contains(...)` per point over one psycopg 3 connection.
Figures are for one core; vectorized throughput is the median of several warm runs.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import statistics
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely

from geo.district import build_sample_district
from geo.index import GridIndex
from geo.model import Building, Grid
from geo.synthetic import build_tessellation

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger(__name__)

POSTGIS_QUERY = (
    "SELECT code FROM bench_grids WHERE ST_Contains(geom, ST_SetSRID(ST_MakePoint(%s, %s), 4326))"
)


def random_points(bounds: Sequence[float], n: int, seed: int = 0) -> np.ndarray:
    """Uniform (lon, lat) points over the bounds: shape (n, 2)."""
    minx, miny, maxx, maxy = bounds
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(minx, maxx, n), rng.uniform(miny, maxy, n)])


def _percentiles_us(ns: np.ndarray) -> dict[str, float]:
    """p50/p90/p99/max of durations given in nanoseconds, in microseconds."""
    us = ns / 1000.0
    p50, p90, p99 = np.percentile(us, [50, 90, 99])
    return {
        "p50_us": round(float(p50), 2),
        "p90_us": round(float(p90), 2),
        "p99_us": round(float(p99), 2),
        "max_us": round(float(us.max()), 1),
    }


def bench_index(
    grids: Sequence[Grid],
    buildings: Sequence[Building],
    n_points: int,
    *,
    seed: int = 0,
    repeats: int = 5,
    one_point: int = 20_000,
    check: int = 100_000,
) -> dict[str, Any]:
    """Build a GridIndex and time vectorized full-chain locate (points/s) and one-point locate (µs)."""
    t0 = time.perf_counter()
    index = GridIndex(grids, buildings)
    build_s = time.perf_counter() - t0
    pts = random_points(index.bounds, n_points, seed)
    x, y = pts[:, 0], pts[:, 1]

    t0 = time.perf_counter()
    located = index.locate_many(x, y)  # cold: first touch of tables and prepared geometries
    cold = n_points / (time.perf_counter() - t0)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        index.locate_many(x, y)
        rates.append(n_points / (time.perf_counter() - t0))

    # correctness spot check against a plain STRtree query
    k = min(check, n_points)
    l3 = np.array([index.grid(c).geometry for c in index.l3_codes.tolist()], dtype=object)
    t0 = time.perf_counter()
    pi, gi = shapely.STRtree(l3).query(shapely.points(x[:k], y[:k]), predicate="intersects")
    strtree_rate = k / (time.perf_counter() - t0)
    expected = np.full(k, len(l3))
    np.minimum.at(expected, pi, gi)
    expected[expected == len(l3)] = -1
    mismatches = int((expected != located.l3[:k]).sum())

    m = min(one_point, n_points)
    xs, ys = x[:m].tolist(), y[:m].tolist()
    ns = np.empty(m)
    clock = time.perf_counter_ns
    locate = index.locate
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for i in range(m):
            t = clock()
            locate(xs[i], ys[i])
            ns[i] = clock() - t
    finally:
        if gc_was:
            gc.enable()

    stats = index.stats()["grids"]
    assert stats is not None
    result = {
        "l3_grids": len(index.l3_codes),
        "buildings": len(index.building_codes),
        "points": n_points,
        "inside_share": round(float((located.l3 >= 0).mean()), 4),
        "build_s": round(build_s, 3),
        "points_per_s": round(statistics.median(rates)),
        "points_per_s_cold": round(cold),
        "strtree_l3_only_points_per_s": round(strtree_rate),
        "mismatches_vs_strtree": mismatches,
        "checked_points": k,
        "one_point": _percentiles_us(ns),
        "cells": stats.cells,
        "boundary_cells": stats.boundary_cells,
        "tests_per_boundary_cell": round(stats.tests_per_boundary_cell, 3),
    }
    logger.info("index bench: %s", result)
    return result


def _load_grids(conn: psycopg.Connection[Any], grids: Sequence[Grid]) -> float:
    """(Re)create the temp table bench_grids, COPY the grids in as EWKB, index and analyze it."""
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bench_grids")
        cur.execute(
            "CREATE TEMP TABLE bench_grids (code text, level int, geom geometry(Polygon, 4326))"
        )
        with cur.copy("COPY bench_grids (code, level, geom) FROM STDIN") as copy:
            for g in grids:
                if g.geometry.geom_type != "Polygon":
                    raise ValueError(
                        f"grid {g.code}: bench_grids holds Polygons, got {g.geometry.geom_type}"
                    )
                ewkb = shapely.to_wkb(
                    shapely.set_srid(g.geometry, 4326), hex=True, include_srid=True
                )
                copy.write_row((g.code, g.level, ewkb))
        cur.execute("CREATE INDEX ON bench_grids USING gist (geom)")
        cur.execute("ANALYZE bench_grids")
    return time.perf_counter() - t0


def bench_postgis_per_point(
    conn: psycopg.Connection[Any],
    points: np.ndarray,
    grids: Sequence[Grid] | None = None,
    *,
    expected_l3: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """Time one ST_Contains query per point over `conn` (loads bench_grids first when grids are given).

    The query returns every level holding the point (the full L1/L2/L3 chain when all levels are
    loaded). With `expected_l3`, the level-3 answers are compared with it and mismatches counted.
    """
    load_s = _load_grids(conn, grids) if grids is not None else None
    pts = np.asarray(points, dtype=float)
    ns = np.empty(len(pts))
    rows = 0
    mismatches = 0
    clock = time.perf_counter_ns
    with conn.cursor() as cur:
        # warm up: plan cache and the first pages of the table and its index
        for lon, lat in pts[: min(100, len(pts))].tolist():
            cur.execute(POSTGIS_QUERY, (lon, lat), prepare=True)
            cur.fetchall()
        t_all = time.perf_counter()
        for i, (lon, lat) in enumerate(pts.tolist()):
            t = clock()
            cur.execute(POSTGIS_QUERY, (lon, lat), prepare=True)
            found = cur.fetchall()
            ns[i] = clock() - t
            rows += len(found)
            if expected_l3 is not None:
                l3 = next((c for (c,) in found if len(c) == 15), None)
                mismatches += l3 != expected_l3[i]
        total = time.perf_counter() - t_all
    result: dict[str, Any] = {
        "points": len(pts),
        "points_per_s": round(len(pts) / total) if total else None,
        "rows_per_point": round(rows / max(len(pts), 1), 3),
        "per_point": _percentiles_us(ns),
        "load_s": round(load_s, 3) if load_s is not None else None,
    }
    if expected_l3 is not None:
        result["mismatches_vs_index"] = int(mismatches)
    logger.info("postgis bench: %s", result)
    return result


def _expected_l3(index: GridIndex, pts: np.ndarray) -> list[str | None]:
    """The index's level-3 code per point (None outside), to cross-check PostGIS."""
    l3 = index.locate_many(pts[:, 0], pts[:, 1]).l3
    return [index.l3_codes[i] if i >= 0 else None for i in l3.tolist()]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the routing benchmark (index; PostGIS too when a DSN is given) and return the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.routing", description=__doc__)
    parser.add_argument("dsn", nargs="?", help="PostgreSQL + PostGIS connection string (optional)")
    parser.add_argument(
        "--points", type=int, default=1_000_000, help="points for the vectorized runs"
    )
    parser.add_argument(
        "--big", type=int, default=100_000, help="level-3 grids in the synthetic tessellation"
    )
    parser.add_argument(
        "--pg-points", type=int, default=20_000, help="points queried one by one in PostGIS"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    district = build_sample_district()
    t0 = time.perf_counter()
    tessellation = build_tessellation(args.big, seed=args.seed)
    tess_build_s = time.perf_counter() - t0
    results: dict[str, Any] = {
        "district": bench_index(district.grids, district.buildings, args.points, seed=args.seed),
        "tessellation": {
            "build_tessellation_s": round(tess_build_s, 2),
            **bench_index(tessellation, (), args.points, seed=args.seed),
        },
    }
    if args.dsn:
        import psycopg  # only this half needs a database driver

        with psycopg.connect(args.dsn, autocommit=True) as conn:
            for name, grids, blds in (
                ("district", district.grids, district.buildings),
                ("tessellation", tessellation, ()),
            ):
                index = GridIndex(grids, blds)
                pts = random_points(index.bounds, args.pg_points, args.seed + 1)
                pg = bench_postgis_per_point(conn, pts, grids, expected_l3=_expected_l3(index, pts))
                results[f"postgis_{name}"] = pg
                if pg["points_per_s"]:
                    results[name]["speedup_vs_postgis_per_point"] = round(
                        results[name]["points_per_s"] / pg["points_per_s"]
                    )
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.stdout.write(json.dumps(main(), indent=2, ensure_ascii=False) + "\n")
