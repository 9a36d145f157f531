"""Workload what-if: replay past incident points against the current and the draft grid index.

Planners redraw grids partly to balance the work between them. `workload_whatif` counts the
incidents of the last N days (the caller selects the points) per level-3 grid in both versions and
summarises how balanced each side is. Pure logic, vectorized through `GridIndex.locate_many`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from geo.index import GridIndex

#: Rows of changed grids in `WhatIf.table()`.
TABLE_ROWS = 20


@dataclass(frozen=True, slots=True)
class BalanceStats:
    """How evenly incidents spread over the level-3 grids of one version.

    `mean`, `std` (population) and `cv` (= std / mean) are taken over every grid, zeros included;
    `max_over_mean` and `cv` are None when there is no located incident.
    """

    grids: int
    incidents: int  # located in some grid
    outside: int  # in no grid
    max: int
    mean: float
    max_over_mean: float | None
    cv: float | None
    std: float

    @classmethod
    def of(cls, counts: np.ndarray, outside: int) -> BalanceStats:
        """Compute the statistics of per-grid counts."""
        counts = np.asarray(counts, dtype=np.int64)
        total = int(counts.sum())
        mean = float(counts.mean()) if len(counts) else 0.0
        std = float(counts.std()) if len(counts) else 0.0
        peak = int(counts.max()) if len(counts) else 0
        return cls(
            grids=len(counts),
            incidents=total,
            outside=int(outside),
            max=peak,
            mean=mean,
            max_over_mean=peak / mean if mean > 0 else None,
            cv=std / mean if mean > 0 else None,
            std=std,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form."""
        return {
            "grids": self.grids,
            "incidents": self.incidents,
            "outside": self.outside,
            "max": self.max,
            "mean": self.mean,
            "max_over_mean": self.max_over_mean,
            "cv": self.cv,
            "std": self.std,
        }

    def line(self, label: str) -> str:
        """Format the statistics as one table line."""
        mom = "-" if self.max_over_mean is None else f"{self.max_over_mean:.2f}"
        cv = "-" if self.cv is None else f"{self.cv:.3f}"
        return (
            f"{label:<7} grids {self.grids:>6}  incidents {self.incidents:>7}  outside {self.outside:>5}  "
            f"max {self.max:>5}  mean {self.mean:8.2f}  max/mean {mom:>6}  std {self.std:8.2f}  cv {cv}"
        )


@dataclass(frozen=True, slots=True)
class GridWorkload:
    """Incidents of one level-3 grid before and after (None: the grid does not exist on that side)."""

    code: str
    before: int | None
    after: int | None


@dataclass(frozen=True, slots=True)
class WhatIf:
    """Per-grid incident counts and balance statistics of the current and the draft version."""

    days: int
    incidents: int
    before: BalanceStats
    after: BalanceStats
    per_grid: tuple[GridWorkload, ...]

    def changed(self) -> tuple[GridWorkload, ...]:
        """Return the grids whose count differs (including grids present on one side only)."""
        return tuple(g for g in self.per_grid if g.before != g.after)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form."""
        return {
            "days": self.days,
            "incidents": self.incidents,
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "per_grid": [{"code": g.code, "before": g.before, "after": g.after} for g in self.per_grid],
        }

    def table(self, rows: int = TABLE_ROWS) -> str:
        """Return a plain-text report for the CLI: both statistics lines and the grids that change."""
        lines = [
            f"workload what-if: {self.incidents} incidents of the last {self.days} days",
            self.before.line("before"),
            self.after.line("after"),
        ]
        changed = self.changed()
        if changed:
            lines.append("grids whose count changes:")
            for g in changed[:rows]:
                b = "-" if g.before is None else str(g.before)
                a = "-" if g.after is None else str(g.after)
                lines.append(f"  {g.code}  {b:>6} -> {a:<6}")
            if len(changed) > rows:
                lines.append(f"  … and {len(changed) - rows} more")
        return "\n".join(lines)


def _counts(index: GridIndex, lons: np.ndarray, lats: np.ndarray) -> tuple[np.ndarray, int]:
    """Return the incidents per level-3 grid of `index` (in `l3_codes` order) and the number outside."""
    l3 = index.locate_many(lons, lats).l3
    inside = l3 >= 0
    return np.bincount(l3[inside], minlength=len(index.l3_codes)), int((~inside).sum())


def workload_whatif(
    lons: np.ndarray, lats: np.ndarray, old: GridIndex, new: GridIndex, *, days: int
) -> WhatIf:
    """Replay incident points (lon/lat arrays) against the current (`old`) and draft (`new`) index.

    Every level-3 grid of each version is counted, zeros included. `days` only labels the result:
    the caller selects the incidents of the last `days` days.
    """
    lons = np.asarray(lons, dtype=np.float64).ravel()
    lats = np.asarray(lats, dtype=np.float64).ravel()
    if lons.shape != lats.shape:
        raise ValueError(f"lons {lons.shape} and lats {lats.shape}: expected the same length")
    if days < 0:
        raise ValueError(f"days {days}: expected ≥ 0")
    before, out_b = _counts(old, lons, lats)
    after, out_a = _counts(new, lons, lats)
    b_map = dict(zip(old.l3_codes.tolist(), before.tolist(), strict=True))
    a_map = dict(zip(new.l3_codes.tolist(), after.tolist(), strict=True))
    per_grid = tuple(GridWorkload(c, b_map.get(c), a_map.get(c)) for c in sorted(b_map.keys() | a_map.keys()))
    return WhatIf(
        days=days,
        incidents=len(lons),
        before=BalanceStats.of(before, out_b),
        after=BalanceStats.of(after, out_a),
        per_grid=per_grid,
    )
