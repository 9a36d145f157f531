"""Codes, shifts and small behaviours of the geo value objects."""

from datetime import date, datetime, time, timedelta

import pytest
from shapely.geometry import LineString, Point, Polygon

from geo.errors import InvalidCodeError
from geo.model import (
    Device,
    District,
    Grid,
    Patroller,
    RosterException,
    Shift,
    child_code,
    level_of,
    parent_code,
)

pytestmark = pytest.mark.unit

MON, TUE, SAT, SUN = 0, 1, 5, 6


@pytest.mark.parametrize(
    ("code", "level"), [("430102001", 1), ("430102001002", 2), ("430102001002003", 3)]
)
def test_level_of_follows_code_length(code: str, level: int) -> None:
    assert level_of(code) == level


@pytest.mark.parametrize(
    "code", ["", "43010200", "4301020010", "43010200100200300001", "43010200a"]
)
def test_level_of_refuses_bad_codes(code: str) -> None:
    with pytest.raises(InvalidCodeError, match="grid code"):
        level_of(code)


def test_parent_code_is_the_prefix() -> None:
    assert parent_code("430102001") is None
    assert parent_code("430102001002") == "430102001"
    assert parent_code("430102001002003") == "430102001002"


def test_child_code_appends_three_digits() -> None:
    assert child_code(None, 1, county="430102") == "430102001"
    assert child_code("430102001", 12) == "430102001012"
    assert child_code("430102001012", 999) == "430102001012999"
    for bad in (0, 1000):
        with pytest.raises(InvalidCodeError):
            child_code("430102001", bad)


def at(weekday: int, hh: int, mm: int = 0) -> datetime:
    """A wall-clock time in the week of Monday 2026-11-23."""
    return datetime(2026, 11, 23 + weekday, hh, mm)


def test_day_shift_covers_its_hours_on_its_days() -> None:
    day = Shift(frozenset({MON, TUE}), time(8), time(20))
    assert day.covers(at(MON, 8))  # start is inclusive
    assert day.covers(at(TUE, 19, 59))
    assert not day.covers(at(MON, 20))  # end is exclusive
    assert not day.covers(at(MON, 7, 59))
    assert not day.covers(at(SAT, 12))


def test_overnight_shift_runs_into_the_next_morning() -> None:
    night = Shift(frozenset({MON}), time(20), time(8))
    assert night.covers(at(MON, 20))
    assert night.covers(at(MON, 23, 59))
    assert night.covers(at(TUE, 0))  # the morning after belongs to Monday's shift
    assert night.covers(at(TUE, 7, 59))
    assert not night.covers(at(TUE, 8))
    assert not night.covers(at(MON, 7))  # Monday morning belongs to Sunday's shift
    assert not night.covers(at(TUE, 20))


def test_sunday_night_wraps_into_monday_morning() -> None:
    night = Shift(frozenset({SUN}), time(20), time(8))
    assert night.covers(at(SUN, 22))
    assert night.covers(at(MON, 3))  # every Monday morning follows a Sunday night
    assert night.covers(datetime(2026, 11, 30, 7, 59))
    assert not night.covers(at(MON, 8))
    assert not night.covers(at(TUE, 3))
    assert not night.covers(at(SAT, 22))


def test_patroller_on_duty_when_any_shift_covers() -> None:
    p = Patroller(
        "P0001",
        "王伟",
        "13800000000",
        ("430102001001001",),
        shifts=(
            Shift(frozenset({MON}), time(8), time(20)),
            Shift(frozenset({SAT}), time(20), time(8)),
        ),
    )
    assert p.on_duty(at(MON, 9))
    assert p.on_duty(at(SUN, 2))
    assert not p.on_duty(at(TUE, 9))
    assert not Patroller("P0002", "李娜", "13900000000", ()).on_duty(at(MON, 9))


def test_device_anchor() -> None:
    pt = Device("smoke-001", "smoke", "s", Point(1, 2), "430102001001001")
    assert pt.anchor().equals(Point(1, 2))
    line = Device(
        "fence-001", "fence", "f", LineString([(0, 0), (4, 0)]), "430102001001001", ("Z1",)
    )
    assert line.anchor().equals(Point(2, 0))
    area = Device("camera-001", "camera", "c", Polygon([(0, 0), (1, 0), (1, 1)]), "430102001001001")
    assert area.geometry.covers(area.anchor())


def test_district_level_filters_grids() -> None:
    sq = Polygon([(0, 0), (1, 0), (1, 1), (0, 1)])
    grids = (
        Grid("430102001", 1, "a", sq),
        Grid("430102001001", 2, "b", sq, "430102001"),
        Grid("430102001001001", 3, "c", sq, "430102001001"),
    )
    d = District("d", grids, (), (), ())
    assert [g.code for g in d.level(3)] == ["430102001001001"]
    assert len(d.level(1)) == 1


def test_new_patroller_fields_default_and_positional_construction_still_works() -> None:
    shift = Shift(frozenset({MON}), time(8), time(20))
    p = Patroller("P1", "王伟", "138", ("430102001001001",), (shift,), (113.8, 27.6))
    assert p.exceptions == () and p.backup_grid_codes == ()
    assert p.on_duty(at(MON, 9)) and not p.on_duty(at(MON, 21))
    q = Patroller("P2", "李娜", "139", ("430102001001001",), backup_grid_codes=("430102001001002",))
    assert q.backup_grid_codes == ("430102001001002",)


def test_shift_started_on_names_the_day_the_occurrence_began() -> None:
    night = Shift(frozenset({MON}), time(20), time(8))
    assert night.started_on(at(MON, 22)) == date(2026, 11, 23)
    assert night.started_on(at(TUE, 3)) == date(2026, 11, 23)
    assert night.started_on(at(TUE, 9)) is None
    day = Shift(frozenset({TUE}), time(8), time(20))
    assert day.started_on(at(TUE, 8)) == date(2026, 11, 24)


def test_off_exception_cancels_the_shifts_that_start_that_day() -> None:
    day = Shift(frozenset({MON, TUE}), time(8), time(20))
    night = Shift(frozenset({MON, TUE}), time(20), time(8))
    p = Patroller("P1", "a", "1", (), (day, night), exceptions=(RosterException(date(2026, 11, 24), False),))
    assert p.on_duty(at(MON, 9)) and p.on_duty(at(MON, 22))
    assert p.on_duty(at(TUE, 7))  # Monday's night shift still runs into Tuesday morning
    assert not p.on_duty(at(TUE, 9))  # Tuesday's day shift is cancelled
    assert not p.on_duty(at(TUE, 22))  # and so is the night shift that starts on Tuesday
    assert not p.on_duty(datetime(2026, 11, 25, 3))  # …including its morning part on Wednesday


def test_off_exception_on_an_overnight_start_day_keeps_the_previous_night() -> None:
    night = Shift(frozenset({SUN}), time(20), time(8))
    p = Patroller("P1", "a", "1", (), (night,), exceptions=(RosterException(date(2026, 11, 30), False),))
    assert p.on_duty(datetime(2026, 11, 29, 22))  # Sunday evening
    assert p.on_duty(datetime(2026, 11, 30, 3))  # Monday morning: the shift started on Sunday


def test_on_exception_adds_a_special_shift_overnight_allowed() -> None:
    special = RosterException(date(2026, 11, 28), True, time(22), time(6))  # Saturday night
    p = Patroller("P1", "a", "1", (), (), exceptions=(special,))
    assert not p.on_duty(at(SAT, 21, 59))
    assert p.on_duty(at(SAT, 22)) and p.on_duty(at(SUN, 5, 59))
    assert not p.on_duty(at(SUN, 6))
    assert not p.on_duty(datetime(2026, 11, 21, 23))  # the Saturday before: weekly rules only
    day_only = RosterException(date(2026, 11, 28), True, time(9), time(12))
    assert day_only.covers(at(SAT, 9)) and not day_only.covers(at(SAT, 12))
    full = RosterException(date(2026, 11, 28), True, time(8), time(8))
    assert full.covers(at(SAT, 8)) and full.covers(at(SUN, 7, 59)) and not full.covers(at(SUN, 8))


def test_off_and_on_on_the_same_day_replace_the_weekly_shift() -> None:
    day = Shift(frozenset({MON}), time(8), time(20))
    p = Patroller(
        "P1", "a", "1", (), (day,),
        exceptions=(RosterException(date(2026, 11, 23), False), RosterException(date(2026, 11, 23), True, time(12), time(16))),
    )
    assert not p.on_duty(at(MON, 9))
    assert p.on_duty(at(MON, 13))
    assert not p.on_duty(at(MON, 17))
    assert p.on_duty(datetime(2026, 11, 30, 9))  # the next Monday is normal again


def test_roster_exception_validation_and_json_round_trip() -> None:
    with pytest.raises(ValueError, match="needs start and end"):
        RosterException(date(2026, 11, 23), True, time(8))
    with pytest.raises(ValueError, match="whole day"):
        RosterException(date(2026, 11, 23), False, time(8), time(9))
    for e in (RosterException(date(2026, 11, 23), False), RosterException(date(2026, 11, 23), True, time(20), time(8))):
        assert RosterException.from_dict(e.to_dict()) == e


def test_started_on_agrees_with_covers() -> None:
    shifts = [
        Shift(frozenset({MON, TUE}), time(8), time(20)),
        Shift(frozenset({SUN, MON}), time(20), time(8)),
        Shift(frozenset(range(7)), time(0), time(0)),
        Shift(frozenset({SAT}), time(8), time(8)),
    ]
    for s in shifts:
        for h in range(0, 14 * 24):
            local = datetime(2026, 11, 23, 0, 30) + timedelta(hours=h)
            assert s.covers(local) == (s.started_on(local) is not None)
