"""Natural time and working-hours calendars for SLA clocks (design §6, pure: no I/O, no clock).

A calendar answers two questions: when does `duration` of its time, counted from `start`, run out
(`add`), and how much of its time lies between two instants (`elapsed`, signed: negative when `end`
is before `start`). `NATURAL` is plain arithmetic on absolute time. A `WorkCalendar` counts only the
day periods (default 08:30–12:00 and 13:30–17:30, Asia/Shanghai) of working days: Monday–Friday
by default, minus `holidays`, plus `makeup_days` (调休 Saturdays/Sundays that are worked).

Aware datetimes in, aware out (in the tz of `start`). Working time is counted on the local wall
clock of the calendar's time zone. `elapsed` costs O(log holidays) whatever the span, and `add`
walks days only across holiday/make-up weeks, so a sweep over thousands of incidents stays cheap.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo

__all__ = ["NATURAL", "Calendar", "NaturalCalendar", "WorkCalendar", "DEFAULT_PERIODS", "DEFAULT_TIMEZONE"]

DEFAULT_TIMEZONE = "Asia/Shanghai"
DEFAULT_PERIODS: tuple[tuple[time, time], ...] = ((time(8, 30), time(12, 0)), (time(13, 30), time(17, 30)))
MONDAY_TO_FRIDAY = frozenset(range(5))

_US_PER_DAY = 86_400_000_000
_ZERO = timedelta(0)


class Calendar(Protocol):
    """What the SLA clock needs from a calendar."""

    def add(self, start: datetime, duration: timedelta) -> datetime: ...
    def elapsed(self, start: datetime, end: datetime) -> timedelta: ...


def _aware(t: datetime, name: str) -> None:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {t.isoformat()}")


class NaturalCalendar:
    """Round-the-clock time: absolute arithmetic (safe across DST changes of the tz of `start`)."""

    __slots__ = ()

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """`start` + `duration`, in the tz of `start`."""
        _aware(start, "start")
        if start.tzinfo is UTC:
            return start + duration
        return (start.astimezone(UTC) + duration).astimezone(start.tzinfo)

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """`end` - `start` in absolute time."""
        _aware(start, "start")
        _aware(end, "end")
        if start.tzinfo is end.tzinfo and start.tzinfo is UTC:
            return end - start
        return end.astimezone(UTC) - start.astimezone(UTC)

    def __repr__(self) -> str:
        return "NATURAL"


NATURAL = NaturalCalendar()


def _us(t: time) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond


def _day_us(local: datetime) -> int:
    return ((local.hour * 60 + local.minute) * 60 + local.second) * 1_000_000 + local.microsecond


@dataclass(frozen=True, eq=False)
class WorkCalendar:
    """Working hours: `periods` (local wall-clock) of working days, in time zone `timezone`.

    A date is a working day when it is in `makeup_days`, or its weekday (0 = Monday) is in
    `workdays` and it is not in `holidays`. A date may not be both a holiday and a make-up day.
    """

    timezone: str = DEFAULT_TIMEZONE
    periods: tuple[tuple[time, time], ...] = DEFAULT_PERIODS
    workdays: frozenset[int] = MONDAY_TO_FRIDAY
    holidays: frozenset[date] = frozenset()
    makeup_days: frozenset[date] = frozenset()
    name: str = "working"
    # derived in __post_init__
    _tz: tzinfo = field(init=False, repr=False)
    _spans: tuple[tuple[int, int], ...] = field(init=False, repr=False)  # periods in µs of the day
    _daily_us: int = field(init=False, repr=False)  # working µs of one working day
    _week_days: int = field(init=False, repr=False)  # working days of a plain week
    _minus: tuple[date, ...] = field(init=False, repr=False)  # holidays on would-be working days
    _plus: tuple[date, ...] = field(init=False, repr=False)  # make-up days on would-be days off
    _special: tuple[date, ...] = field(init=False, repr=False)  # both, sorted

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "periods", tuple((a, b) for a, b in self.periods))
        set_(self, "workdays", frozenset(self.workdays))
        set_(self, "holidays", frozenset(self.holidays))
        set_(self, "makeup_days", frozenset(self.makeup_days))
        try:
            tz = ZoneInfo(self.timezone)
        except (KeyError, ValueError) as exc:  # ZoneInfoNotFoundError is a KeyError
            raise ValueError(f"unknown time zone {self.timezone!r}") from exc
        if not self.periods:
            raise ValueError("a working calendar needs at least one day period")
        spans: list[tuple[int, int]] = []
        for a, b in self.periods:
            if not isinstance(a, time) or not isinstance(b, time) or a.tzinfo or b.tzinfo:
                raise ValueError(f"period {a}-{b}: expected two naive times")
            s, e = _us(a), _us(b)
            if s >= e:
                raise ValueError(f"period {a:%H:%M}-{b:%H:%M}: the end must come after the start")
            if spans and s < spans[-1][1]:
                raise ValueError(f"period {a:%H:%M}-{b:%H:%M}: periods must be sorted and must not overlap")
            spans.append((s, e))
        bad = sorted(d for d in self.workdays if not isinstance(d, int) or not 0 <= d <= 6)
        if bad:
            raise ValueError(f"workdays {bad}: expected weekday numbers 0 (Monday) .. 6 (Sunday)")
        both = sorted(self.holidays & self.makeup_days)
        if both:
            raise ValueError(f"dates {', '.join(map(str, both))} are both holidays and make-up working days")
        if not self.workdays and not self.makeup_days:
            raise ValueError("a working calendar needs working days")
        set_(self, "_tz", tz)
        set_(self, "_spans", tuple(spans))
        set_(self, "_daily_us", sum(e - s for s, e in spans))
        set_(self, "_week_days", len(self.workdays))
        set_(self, "_minus", tuple(sorted(d for d in self.holidays if d.weekday() in self.workdays)))
        set_(self, "_plus", tuple(sorted(d for d in self.makeup_days if d.weekday() not in self.workdays)))
        set_(self, "_special", tuple(sorted(set(self._minus) | set(self._plus))))

    # ------------------------------------------------------------------------------------------
    def is_workday(self, d: date) -> bool:
        """Whether `d` is a working day."""
        if d in self.makeup_days:
            return True
        return d.weekday() in self.workdays and d not in self.holidays

    def _workdays_between(self, first: date, stop: date) -> int:
        """Working days in [first, stop) (0 when stop <= first), in O(log holidays)."""
        n = (stop - first).days
        if n <= 0:
            return 0
        weeks, rest = divmod(n, 7)
        wd = first.weekday()
        count = weeks * self._week_days + sum(1 for i in range(rest) if (wd + i) % 7 in self.workdays)
        if self._minus:
            count -= bisect_left(self._minus, stop) - bisect_left(self._minus, first)
        if self._plus:
            count += bisect_left(self._plus, stop) - bisect_left(self._plus, first)
        return count

    def _worked_before(self, day_us: int) -> int:
        """Working µs of a working day before the wall-clock instant `day_us`."""
        total = 0
        for s, e in self._spans:
            if day_us <= s:
                break
            total += min(day_us, e) - s
        return total

    def _local(self, t: datetime) -> datetime:
        return t.astimezone(self._tz).replace(tzinfo=None)

    def _position(self, t: datetime) -> tuple[date, int]:
        """(local date, working µs of that date before `t`)."""
        local = self._local(t)
        d = local.date()
        return d, (self._worked_before(_day_us(local)) if self.is_workday(d) else 0)

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Working time between `start` and `end` (negative when `end` < `start`)."""
        _aware(start, "start")
        _aware(end, "end")
        if end < start:
            return -self.elapsed(end, start)
        d0, w0 = self._position(start)
        d1, w1 = self._position(end)
        if d0 == d1:
            us = w1 - w0
        else:
            first_rest = (self._daily_us - w0) if self.is_workday(d0) else 0
            middle = self._workdays_between(d0 + timedelta(days=1), d1) * self._daily_us
            us = first_rest + middle + w1
        return timedelta(microseconds=us)

    def _at(self, d: date, worked_us: int) -> datetime:
        """The local wall-clock instant of day `d` after `worked_us` (0 < worked_us <= daily) of work."""
        for s, e in self._spans:
            if worked_us <= e - s:
                return datetime.combine(d, time()) + timedelta(microseconds=s + worked_us)
            worked_us -= e - s
        raise AssertionError("worked_us exceeds a working day")  # pragma: no cover

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """When `duration` of working time counted from `start` runs out (in the tz of `start`).

        A zero duration returns `start`; a deadline that falls on the end of a period is that end
        (12:00, not 13:30). Negative durations are refused.
        """
        _aware(start, "start")
        if duration < _ZERO:
            raise ValueError(f"duration must not be negative, got {duration}")
        if duration == _ZERO:
            return start
        remaining = duration // timedelta(microseconds=1)
        d, worked = self._position(start)
        if self.is_workday(d):
            left_today = self._daily_us - worked
            if remaining <= left_today:
                local = self._at(d, worked + remaining)
                return local.replace(tzinfo=self._tz).astimezone(start.tzinfo)
            remaining -= left_today
        daily = self._daily_us
        d += timedelta(days=1)
        # whole weeks without holidays or make-up days in one step each
        week = self._week_days * daily
        special = self._special
        while week and remaining > week:
            i = bisect_left(special, d)
            if i < len(special) and special[i] < d + timedelta(days=7):
                break
            d += timedelta(days=7)
            remaining -= week
        while True:
            if self.is_workday(d):
                if remaining <= daily:
                    local = self._at(d, remaining)
                    return local.replace(tzinfo=self._tz).astimezone(start.tzinfo)
                remaining -= daily
            d += timedelta(days=1)
            if week == 0 and d > (special[-1] if special else d):  # only make-up days remain: none left
                raise ValueError(f"no working time after {start.isoformat()} in calendar {self.name!r}")

    def __repr__(self) -> str:
        periods = ", ".join(f"{a:%H:%M}-{b:%H:%M}" for a, b in self.periods)
        return (
            f"WorkCalendar({self.name!r}, {self.timezone}, [{periods}], workdays={sorted(self.workdays)}, "
            f"{len(self.holidays)} holidays, {len(self.makeup_days)} make-up days)"
        )
