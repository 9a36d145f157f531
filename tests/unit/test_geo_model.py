"""Codes, shifts and small behaviours of the geo value objects."""

from datetime import datetime, time

import pytest
from shapely.geometry import LineString, Point, Polygon

from geo.errors import InvalidCodeError
from geo.model import (
    Device,
    District,
    Grid,
    Patroller,
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
