"""Natural time and working-hours calendars: add / elapsed across lunch breaks, weekends, holidays, make-up days."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from alerts.calendar import NATURAL, WorkCalendar

pytestmark = pytest.mark.unit
CST = ZoneInfo("Asia/Shanghai")
H = timedelta(hours=1)
M = timedelta(minutes=1)
# 2026-11-20 is a Friday, 2026-11-23 a Monday
FRI, SAT, SUN, MON, TUE = (date(2026, 11, d) for d in (20, 21, 22, 23, 24))
WORK = WorkCalendar()


def at(d: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(d, time(hh, mm), tzinfo=CST)


# --- natural ----------------------------------------------------------------------------------------


def test_natural_is_plain_arithmetic() -> None:
    t = at(FRI, 16, 30)
    assert NATURAL.add(t, 4 * H) == at(FRI, 20, 30)
    assert NATURAL.elapsed(t, at(MON, 8, 30)) == timedelta(days=2, hours=16)
    assert NATURAL.elapsed(at(MON, 8, 30), t) == -timedelta(days=2, hours=16)


def test_natural_keeps_the_zone_and_counts_absolute_time_across_dst() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    before = datetime(2026, 3, 29, 1, 30, tzinfo=berlin)  # 02:00 → 03:00 that night
    later = NATURAL.add(before, H)
    assert later.tzinfo is berlin and later == datetime(2026, 3, 29, 3, 30, tzinfo=berlin)
    assert NATURAL.elapsed(before, later) == H


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        NATURAL.add(datetime(2026, 11, 20, 9), H)
    with pytest.raises(ValueError, match="timezone-aware"):
        WORK.elapsed(at(FRI, 9), datetime(2026, 11, 20, 10))


# --- working hours ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "duration", "deadline"),
    [
        (at(MON, 9), 2 * H, at(MON, 11)),
        (at(MON, 8, 30), 3.5 * H, at(MON, 12)),  # ends at the end of a period, not after lunch
        (at(MON, 9), 4 * H, at(MON, 14, 30)),  # across the lunch break
        (at(MON, 12, 30), H, at(MON, 14, 30)),  # starting in the lunch break
        (at(MON, 7), 30 * M, at(MON, 9)),  # starting before office hours
        (at(FRI, 16, 30), 4 * H, at(MON, 11, 30)),  # across a weekend
        (at(FRI, 18), 30 * M, at(MON, 9)),  # after hours on Friday
        (at(SAT, 10), 30 * M, at(MON, 9)),  # on a Saturday
        (at(MON, 9), 7.5 * H, at(TUE, 9)),  # a full working day
        (at(MON, 9), timedelta(0), at(MON, 9)),
    ],
)
def test_working_add_and_elapsed(start: datetime, duration: timedelta, deadline: datetime) -> None:
    assert WORK.add(start, duration) == deadline
    if duration:
        assert WORK.elapsed(start, deadline) == duration


def test_elapsed_counts_only_working_periods() -> None:
    assert WORK.elapsed(at(FRI, 17), at(MON, 9)) == 30 * M + 30 * M
    assert WORK.elapsed(at(SAT, 9), at(SUN, 17)) == timedelta(0)
    assert WORK.elapsed(at(MON, 12), at(MON, 13, 30)) == timedelta(0)
    assert WORK.elapsed(at(MON, 11), at(FRI, 9)) == -(WORK.elapsed(at(FRI, 9), at(MON, 11)))
    assert WORK.elapsed(at(MON, 0), at(MON + timedelta(days=7), 0)) == 5 * 7.5 * H


def test_holiday_is_skipped_across_a_weekend() -> None:
    cal = WorkCalendar(holidays=frozenset({MON}))
    assert cal.add(at(FRI, 16, 30), 4 * H) == at(TUE, 11, 30)
    assert cal.elapsed(at(FRI, 16, 30), at(TUE, 11, 30)) == 4 * H
    assert cal.elapsed(at(MON, 9), at(MON, 11)) == timedelta(0)
    assert not cal.is_workday(MON) and cal.is_workday(TUE)


def test_makeup_working_day_counts() -> None:
    cal = WorkCalendar(makeup_days=frozenset({SAT}))
    assert cal.add(at(FRI, 16, 30), 4 * H) == at(SAT, 11, 30)
    assert cal.elapsed(at(FRI, 17), at(MON, 9)) == 30 * M + 7.5 * H + 30 * M
    assert cal.is_workday(SAT) and not cal.is_workday(SUN)


def test_golden_week_with_makeup_days() -> None:
    # National Day 2026: Oct 1–7 off (Thu–Wed), Sep 20 (Sun) and Oct 10 (Sat) worked
    off = frozenset(date(2026, 10, d) for d in range(1, 8))
    on = frozenset({date(2026, 9, 20), date(2026, 10, 10)})
    cal = WorkCalendar(holidays=off, makeup_days=on)
    start = at(date(2026, 9, 30), 17)  # Wednesday, half an hour before closing
    assert cal.add(start, H) == at(date(2026, 10, 8), 9)
    assert cal.add(start, 30 * M + 2 * 7.5 * H + 30 * M) == at(date(2026, 10, 10), 9)  # Thu, Fri, then the Saturday
    assert cal.elapsed(at(date(2026, 9, 1), 0), at(date(2026, 11, 1), 0)) == 41 * 7.5 * H  # 22 + 1 in September, 17 + 1 in October


def test_result_in_the_zone_of_start() -> None:
    start = at(FRI, 16, 30).astimezone(UTC)
    deadline = WORK.add(start, 4 * H)
    assert deadline.tzinfo is UTC and deadline == at(MON, 11, 30)


def test_custom_periods_and_workdays() -> None:
    cal = WorkCalendar(timezone="UTC", periods=((time(9), time(17)),), workdays=frozenset({0, 1, 2, 3, 4, 5}))
    start = datetime(2026, 11, 20, 16, tzinfo=UTC)  # Friday
    assert cal.add(start, 2 * H) == datetime(2026, 11, 21, 10, tzinfo=UTC)  # Saturday works


def _brute_elapsed(cal: WorkCalendar, start: datetime, end: datetime) -> timedelta:
    minutes = 0
    t = start
    while t < end:
        local = t.astimezone(CST)
        if cal.is_workday(local.date()) and any(a <= local.time() < b for a, b in cal.periods):
            minutes += 1
        t += M
    return minutes * M


def test_against_minute_by_minute_counting() -> None:
    rng = random.Random(4)
    cal = WorkCalendar(holidays=frozenset({MON, date(2026, 12, 1)}), makeup_days=frozenset({date(2026, 11, 29)}))
    base = at(date(2026, 11, 18), 0)
    for _ in range(60):
        start = base + rng.randrange(0, 14 * 24 * 60) * M
        duration = rng.randrange(1, 40 * 60) * M
        deadline = cal.add(start, duration)
        assert _brute_elapsed(cal, start, deadline) == duration
        assert cal.elapsed(start, deadline) == duration
        # the deadline is the earliest such instant: a minute before, less work has been done
        assert cal.elapsed(start, deadline - M) < duration


def test_long_durations_skip_whole_weeks() -> None:
    cal = WorkCalendar(holidays=frozenset({date(2027, 1, 1)}))
    start = at(MON, 8, 30)
    deadline = cal.add(start, 60 * 7.5 * H)  # 60 working days: 12 weeks, minus New Year's day
    assert cal.elapsed(start, deadline) == 60 * 7.5 * H
    assert deadline.date() == date(2027, 2, 15)  # 12 weeks later would be Feb 12 (Fri); the holiday pushes to Monday
    assert deadline.time() == time(17, 30)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"periods": ((time(13), time(12)),)}, "end must come after"),
        ({"periods": ((time(8), time(12)), (time(11), time(14)))}, "must not overlap"),
        ({"periods": ()}, "at least one"),
        ({"holidays": frozenset({MON}), "makeup_days": frozenset({MON})}, "both holidays and make-up"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"workdays": frozenset({7})}, "weekday numbers"),
    ],
)
def test_invalid_calendars(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WorkCalendar(**kwargs)


def test_negative_duration_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        WORK.add(at(MON, 9), -H)
