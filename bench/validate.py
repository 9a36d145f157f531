"""Grid-version validation benchmark: `geo.validate.validate_grids` on a large synthetic tessellation.

`python -m bench.validate [N_L3]` builds `geo.synthetic.build_tessellation(N_L3)` (64-vertex level-3
polygons with their level-2/level-1 parents; not timed), then times `validate_grids` on it, stage by
stage (from its progress callback).

Baseline (timed in the same run): the naive way, on a 2,000-grid tessellation, extrapolated to N_L3:
- sibling/overlap test without a tree: every pair of level-3 grids through `intersects` (vectorized one
  row at a time), then the intersection area of each intersecting pair — O(n²) pairs, extrapolated
  quadratically;
- containment and coverage: `parent.covers(child)` and `child.difference(parent)` per child, and
  `parent.difference(union_all(children))` per parent — linear, extrapolated linearly.
The baseline measures areas in degrees² (no projection), so it does strictly less work than the real
check; `validate_grids` is timed on the same 2,000 grids for a like-for-like figure.
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import time
from collections import defaultdict
from typing import Any

import numpy as np
import shapely

from geo.model import Grid
from geo.synthetic import build_tessellation
from geo.validate import validate_grids

BASELINE_N = 2000


class _StageClock:
    """Progress callback that records when each stage starts; seconds per stage."""

    def __init__(self) -> None:
        """Start the clock."""
        self.t0 = time.perf_counter()
        self.starts: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Record the first report of a stage."""
        self.starts.setdefault(stage, time.perf_counter() - self.t0)

    def seconds(self, end: float) -> dict[str, float]:
        """Seconds spent per stage (a stage lasts until the next one starts)."""
        names = list(self.starts)
        bounds = [self.starts[n] for n in names] + [end]
        return {n: round(bounds[k + 1] - bounds[k], 3) for k, n in enumerate(names)}


def naive_baseline(grids: list[Grid]) -> dict[str, float]:
    """Time the naive checks (no tree, no fast paths) on these grids; seconds per part."""
    l3 = [g for g in grids if g.level == 3]
    geoms = np.array([g.geometry for g in l3], dtype=object)
    by_code = {g.code: g for g in grids}

    t = time.perf_counter()
    overlaps = 0
    for i in range(len(geoms) - 1):
        others = geoms[i + 1 :]
        hit = np.flatnonzero(shapely.intersects(geoms[i], others))
        if len(hit):
            areas = shapely.area(shapely.intersection(geoms[i], others[hit]))
            overlaps += int((areas > 1e-14).sum())
    pairwise = time.perf_counter() - t

    t = time.perf_counter()
    children: dict[str, list[Grid]] = defaultdict(list)
    for g in grids:
        if g.parent_code is not None:
            parent = by_code[g.parent_code]
            children[parent.code].append(g)
            if not parent.geometry.covers(g.geometry):
                _ = g.geometry.difference(parent.geometry).area
    for code, kids in children.items():
        _ = by_code[code].geometry.difference(shapely.union_all([k.geometry for k in kids])).area
    linear = time.perf_counter() - t
    return {"pairwise_seconds": pairwise, "linear_seconds": linear, "overlaps": overlaps}


def run(n_l3: int = 100_000) -> dict[str, Any]:
    """Time validate_grids on n_l3 level-3 grids (plus parents) and the naive baseline."""
    t = time.perf_counter()
    grids = build_tessellation(n_l3)
    build_seconds = time.perf_counter() - t
    gc.collect()

    clock = _StageClock()
    t = time.perf_counter()
    report = validate_grids(grids, progress=clock)
    seconds = time.perf_counter() - t
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    small = build_tessellation(BASELINE_N, seed=1)
    t = time.perf_counter()
    small_report = validate_grids(small)
    small_seconds = time.perf_counter() - t
    naive = naive_baseline(small)
    scale = n_l3 / BASELINE_N
    extrapolated = naive["pairwise_seconds"] * scale**2 + naive["linear_seconds"] * scale
    return {
        "n_l3": n_l3,
        "n_grids": len(grids),
        "build_seconds": round(build_seconds, 2),
        "seconds": round(seconds, 2),
        "per_grid_us": round(seconds / len(grids) * 1e6, 1),
        "stages_seconds": clock.seconds(seconds),
        "findings": len(report.findings),
        "peak_rss_mb": round(peak_rss_mb),
        "subset_n_l3": BASELINE_N,
        "subset_seconds": round(small_seconds, 3),
        "subset_findings": len(small_report.findings),
        "baseline_subset_seconds": round(naive["pairwise_seconds"] + naive["linear_seconds"], 3),
        "baseline_subset_pairwise_seconds": round(naive["pairwise_seconds"], 3),
        "baseline_subset_linear_seconds": round(naive["linear_seconds"], 3),
        "baseline_extrapolated_seconds": round(extrapolated, 1),
        "baseline_speedup": round(extrapolated / seconds, 1),
        "baseline": "naive pairwise intersects + intersection area without a tree (O(n²), "
        f"extrapolated quadratically) and per-child covers/difference + per-parent union_all "
        f"(extrapolated linearly), on {BASELINE_N} level-3 grids",
    }


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000), indent=2))
