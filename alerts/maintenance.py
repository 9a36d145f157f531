"""Maintenance windows (design §6b): alarms of a grid or building inside an active window are muted.

A muted alarm is still stored (recorded, not dropped) with no incident and a "muted: <reason>"
warning; it opens or joins no incident and sends nothing. A window names a grid code at any level
(it covers the grid's whole subtree: the alarm's route chain L1/L2/L3 holds the code) and/or a
building code. The runtime loads the windows from the store and hands the current list to
`IncidentIntake.set_maintenance`; this module does no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from alerts.routing import Located


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """Alarms of `grid_code` (any level, with its subtree) or of `building` are muted in [starts_at, ends_at)."""

    grid_code: str | None
    building: str | None
    starts_at: datetime
    ends_at: datetime
    reason: str

    def __post_init__(self) -> None:
        if self.grid_code is None and self.building is None:
            raise ValueError("maintenance window: expected a grid_code or a building, got neither")
        if self.ends_at <= self.starts_at:
            raise ValueError(f"maintenance window: ends_at {self.ends_at.isoformat()} is not after starts_at {self.starts_at.isoformat()}")

    def active_at(self, at: datetime) -> bool:
        """Tell whether the window covers time `at` (start inclusive, end exclusive)."""
        return self.starts_at <= at < self.ends_at


class MaintenanceCalendar:
    """The windows indexed by grid code and building, for a lookup per alarm."""

    def __init__(self, windows: Iterable[MaintenanceWindow] = ()) -> None:
        self.windows: tuple[MaintenanceWindow, ...] = tuple(windows)
        self._by_grid: dict[str, list[MaintenanceWindow]] = {}
        self._by_building: dict[str, list[MaintenanceWindow]] = {}
        for w in self.windows:
            if w.grid_code is not None:
                self._by_grid.setdefault(w.grid_code, []).append(w)
            if w.building is not None:
                self._by_building.setdefault(w.building, []).append(w)

    def __bool__(self) -> bool:
        return bool(self.windows)

    def muting(self, where: Located | None, at: datetime) -> MaintenanceWindow | None:
        """The window that mutes an alarm routed to `where` at time `at` (the first by start), or None."""
        if where is None or not self.windows:
            return None
        found: list[MaintenanceWindow] = []
        for code in (where.l1, where.l2, where.l3):
            if code is not None:
                found.extend(w for w in self._by_grid.get(code, ()) if w.active_at(at))
        if where.building is not None:
            found.extend(w for w in self._by_building.get(where.building, ()) if w.active_at(at))
        return min(found, key=lambda w: (w.starts_at, w.ends_at)) if found else None
