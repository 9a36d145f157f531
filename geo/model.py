"""Value objects of the grid hierarchy and of the things located in it.

Codes (design §6): level 1 = 9 digits (6-digit county + 3-digit street), level 2 = 12 digits
(+ 3-digit community), level 3 = 15 digits (+ 3-digit unit grid); building = its L3 grid's code +
5 digits. A child's code starts with its parent's code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry

from geo.errors import InvalidCodeError

CODE_LENGTH = {1: 9, 2: 12, 3: 15}
BUILDING_CODE_LENGTH = 20
DeviceKind = Literal["fence", "thermal", "camera", "smoke", "sensor"]


def level_of(code: str) -> int:
    """Return the grid level (1..3) of a grid code, or raise InvalidCodeError."""
    if not code.isdigit():
        raise InvalidCodeError(f"grid code {code!r}: expected digits only")
    for level, length in CODE_LENGTH.items():
        if len(code) == length:
            return level
    raise InvalidCodeError(f"grid code {code!r}: expected 9, 12 or 15 digits, got {len(code)}")


def parent_code(code: str) -> str | None:
    """Return the parent's code of a grid code (None for level 1)."""
    level = level_of(code)
    return None if level == 1 else code[: CODE_LENGTH[level - 1]]


def child_code(parent: str | None, number: int, *, county: str = "430000") -> str:
    """Build a child's code: the parent's code + a 3-digit number (level 1: county + number)."""
    if not 1 <= number <= 999:
        raise InvalidCodeError(f"child number {number}: expected 1..999")
    return f"{parent if parent is not None else county}{number:03d}"


@dataclass(frozen=True, slots=True)
class Grid:
    """One polygon of the hierarchy (WGS84 lon/lat)."""

    code: str
    level: int
    name: str
    geometry: BaseGeometry
    parent_code: str | None = None


@dataclass(frozen=True, slots=True)
class Building:
    """A footprint inside one level-3 grid (楼栋)."""

    code: str
    grid_code: str
    name: str
    geometry: BaseGeometry


@dataclass(frozen=True, slots=True)
class GridVersion:
    """A set of grids: a `draft` while planners work on it, then `published` (immutable).

    Exactly one published version is current; each published version was valid from `valid_from`
    until `valid_to` (None while current), so "which grid held this point at time T" has one answer.
    """

    id: int
    label: str
    created_at: datetime
    is_current: bool = False
    status: Literal["draft", "published"] = "published"
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    source: str | None = None  # the imported file's name
    crs: str | None = None  # the CRS the file was read in
    created_by: str | None = None
    published_at: datetime | None = None
    published_by: str | None = None

    def valid_at(self, at: datetime) -> bool:
        """Tell whether this published version was the current one at time `at`."""
        return (
            self.status == "published"
            and self.valid_from is not None
            and self.valid_from <= at
            and (self.valid_to is None or at < self.valid_to)
        )


@dataclass(frozen=True, slots=True)
class Shift:
    """A weekly roster slot: on duty on `weekdays` (0 = Monday) from `start` to `end` (local time).

    `end <= start` means the shift runs past midnight into the next day.
    """

    weekdays: frozenset[int]
    start: time
    end: time

    def covers(self, local: datetime) -> bool:
        """Tell whether the local wall-clock time `local` falls inside this shift."""
        t = local.time()
        day = local.weekday()
        if self.start < self.end:
            return day in self.weekdays and self.start <= t < self.end
        # overnight: the evening part belongs to `day`, the morning part to the day before
        return (day in self.weekdays and t >= self.start) or (
            (day - 1) % 7 in self.weekdays and t < self.end
        )

    def started_on(self, local: datetime) -> date | None:
        """The local date on which the occurrence of this shift covering `local` started (None: off)."""
        t = local.time()
        day = local.weekday()
        if self.start < self.end:
            return local.date() if day in self.weekdays and self.start <= t < self.end else None
        # overnight: the evening part belongs to `day`, the morning part to the day before
        if day in self.weekdays and t >= self.start:
            return local.date()
        if (day - 1) % 7 in self.weekdays and t < self.end:
            return local.date() - timedelta(days=1)
        return None


@dataclass(frozen=True, slots=True)
class RosterException:
    """A dated change to a patroller's weekly roster (local dates and times).

    `on=False`: off for the day — every weekly shift that *starts* on `day` is cancelled (an
    overnight shift that started the evening before still runs into the morning of `day`).
    `on=True`: a special shift on duty from `start` on `day` to `end` (`end <= start`: it runs past
    midnight into the next day; `end == start`: 24 hours). Both may be given for one day: the
    weekly shifts of that day are replaced by the special one.
    """

    day: date
    on: bool
    start: time | None = None
    end: time | None = None

    def __post_init__(self) -> None:
        if self.on and (self.start is None or self.end is None):
            raise ValueError(f"roster exception {self.day}: an on-duty exception needs start and end")
        if not self.on and (self.start is not None or self.end is not None):
            raise ValueError(f"roster exception {self.day}: an off-duty exception is for the whole day (no times)")

    def covers(self, local: datetime) -> bool:
        """Tell whether this on-duty exception's special shift covers local time `local`."""
        if not self.on or self.start is None or self.end is None:
            return False
        t, d = local.time(), local.date()
        if self.start < self.end:
            return d == self.day and self.start <= t < self.end
        return (d == self.day and t >= self.start) or (d == self.day + timedelta(days=1) and t < self.end)

    def to_dict(self) -> dict[str, str | bool | None]:
        """JSON-ready form (ISO date and HH:MM[:SS] times)."""
        return {
            "day": self.day.isoformat(),
            "on": self.on,
            "start": None if self.start is None else self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RosterException:
        """Inverse of to_dict."""
        start, end = d.get("start"), d.get("end")
        return cls(
            date.fromisoformat(d["day"]),
            bool(d["on"]),
            None if start is None else time.fromisoformat(start),
            None if end is None else time.fromisoformat(end),
        )


@dataclass(frozen=True, slots=True)
class Patroller:
    """A person with a phone (平安员), assigned to level-3 grids and on duty by roster shifts.

    `exceptions` are dated changes to the weekly `shifts` (see RosterException);
    `backup_grid_codes` are level-3 grids the patroller covers as a backup (routed to only when
    nobody assigned to the grid is on duty).
    """

    id: str
    name: str
    phone: str
    grid_codes: tuple[str, ...]
    shifts: tuple[Shift, ...] = ()
    home: tuple[float, float] | None = None  # (lon, lat) where the simulator starts their track
    exceptions: tuple[RosterException, ...] = ()
    backup_grid_codes: tuple[str, ...] = ()

    def on_duty(self, local: datetime) -> bool:
        """Tell whether the patroller is rostered at local time `local` (exceptions applied)."""
        if not self.exceptions:
            return any(s.covers(local) for s in self.shifts)
        off = {e.day for e in self.exceptions if not e.on}
        for s in self.shifts:
            started = s.started_on(local)
            if started is not None and started not in off:
                return True
        return any(e.covers(local) for e in self.exceptions)


@dataclass(frozen=True, slots=True)
class Device:
    """A registered sensor: its location is a point, or a zone line/polygon for a fence."""

    id: str
    kind: DeviceKind
    name: str
    geometry: BaseGeometry
    grid_code: str
    zones: tuple[str, ...] = field(default=())
    format: str = "gridwatch"
    """The payload format it speaks: an adapter name in ingest/adapters (gridwatch, frigate, hikvision, …)."""
    identity: str | None = None
    """The vendor identity its messages carry, `<format>:<key>` (e.g. `frigate:front_door`,
    `hikvision:44:19:b6:6d:24:85/1`, `fence:host-07/3`); None for gridwatch-topic devices (id = topic)."""
    interval_s: float | None = None
    """Expected longest silence (heartbeat interval) in seconds; None: not watched for going offline."""

    def anchor(self) -> Point:
        """Return the point that places the device: itself, a line's midpoint, else an inner point."""
        geom = self.geometry
        if isinstance(geom, Point):
            return geom
        if geom.geom_type in ("LineString", "LinearRing"):
            return geom.interpolate(0.5, normalized=True)
        return geom.point_on_surface()


@dataclass(frozen=True, slots=True)
class District:
    """Everything a grid version places on the map: grids, buildings, patrollers and devices."""

    name: str
    grids: tuple[Grid, ...]
    buildings: tuple[Building, ...]
    patrollers: tuple[Patroller, ...]
    devices: tuple[Device, ...]
    timezone: str = "Asia/Shanghai"

    def level(self, level: int) -> tuple[Grid, ...]:
        """Return the grids of one level."""
        return tuple(g for g in self.grids if g.level == level)
