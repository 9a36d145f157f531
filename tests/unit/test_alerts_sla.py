"""SLA config, stage clocks and lights from timestamps (design §6)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alerts import sla
from alerts.calendar import NATURAL, WorkCalendar
from alerts.model import Incident, IncidentState, Light, RouteRecord

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
CST = ZoneInfo("Asia/Shanghai")
FRI_1630 = datetime(2026, 11, 20, 16, 30, tzinfo=CST)
M = timedelta(minutes=1)
H = timedelta(hours=1)


def incident(type_: str = "fence.intrusion", state: IncidentState = IncidentState.DISPATCHED, severity: int = 3) -> Incident:
    route = RouteRecord(0, 0, "payload", 1, None, None, None, None, None, "x", T0)
    return Incident("I", type_, state, severity, "device", route, T0, T0)


def dispatched(type_: str) -> Incident:
    """An incident as intake saves it before the stage clocks: deadline + dispatched_at, stage None."""
    inc = incident(type_)
    inc.dispatched_at = T0
    inc.deadline = sla.deadline_for(type_, T0)
    return inc


# --- legacy (intake) helpers and incidents saved before the stage clocks -----------------------------


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [(0, Light.GREEN), (11.2, Light.GREEN), (11.25, Light.YELLOW), (14.9, Light.YELLOW), (15, Light.RED), (90, Light.RED)],
)
def test_fence_intrusion_lights(minutes: float, expected: Light) -> None:
    assert sla.light(dispatched("fence.intrusion"), T0 + timedelta(minutes=minutes)) is expected


def test_longest_prefix_wins() -> None:
    assert sla.limit_for("thermal.fire") == timedelta(minutes=5)
    assert sla.limit_for("thermal.overheat") == timedelta(minutes=15)
    assert sla.limit_for("other.thing") == timedelta(hours=1)


def test_no_light_without_a_running_clock() -> None:
    inc = dispatched("fence.intrusion")
    inc.state = IncidentState.CLOSED
    assert sla.light(inc, T0) is None
    assert sla.light(incident(state=IncidentState.REPORTED), T0) is None  # never dispatched


def test_legacy_clock_uses_the_saved_deadline() -> None:
    inc = dispatched("fence.intrusion")
    inc.deadline = T0 + 40 * M  # saved with other limits
    assert sla.fraction(inc, T0 + 10 * M) == pytest.approx(0.25)
    assert sla.light(inc, T0 + 30 * M) is Light.YELLOW
    assert sla.light(inc, T0 + 40 * M) is Light.RED


# --- configuration ---------------------------------------------------------------------------------


def test_packaged_defaults_follow_design_section_6() -> None:
    cfg = sla.DEFAULT
    assert cfg.source.endswith("sla_defaults.yaml")
    assert cfg.limit("pothole", "register") == 30 * M
    assert cfg.limit("pothole", "register", severity=4) == 10 * M  # urgent
    assert cfg.limit("pothole", "acknowledge") == H
    assert cfg.limit("pothole", "check") == H
    assert cfg.limit("fence.intrusion", "acknowledge") == 15 * M
    assert cfg.limit("fence.cut", "acknowledge") == 30 * M
    assert cfg.limit("thermal.fire", "handle") == 5 * M
    assert cfg.limit("city.litter.overflow", "handle") == 4 * H
    assert isinstance(cfg.calendar_for("city.litter.overflow"), WorkCalendar)
    assert cfg.calendar_for("fence.intrusion") is NATURAL
    assert cfg.urgent_severity == 4 and cfg.yellow_at == sla.YELLOW_AT == 0.75
    assert sla.DEFAULT_LIMITS["fence.intrusion"] == 15 * M
    with pytest.raises(ValueError, match="unknown SLA stage"):
        cfg.limit("x", "arrive")


CUSTOM = """
urgent_severity: 3
calendars:
  office:
    timezone: Asia/Shanghai
    workdays: [mon, tue, wed, thu, fri]
    periods: ["09:00-12:00", "14:00-18:00"]
    holidays: [2026-11-23]
    makeup_days: ["2026-11-28"]
types:
  "":
    limits: {register: 20m, acknowledge: 45m, handle: 2h, check: 1h30m}
    urgent: {register: 5m, acknowledge: 2h}
  road:
    calendar: office
    limits: {handle: 1d}
  road.pothole:
    limits: {check: 30m}
"""


def test_custom_file_inherits_by_prefix(tmp_path: Path) -> None:
    path = tmp_path / "sla.yaml"
    path.write_text(CUSTOM)
    cfg = sla.load_sla_config(path)
    assert cfg.source == str(path)
    assert cfg.limit("road.pothole.deep", "check") == 30 * M
    assert cfg.limit("road.pothole", "handle") == timedelta(days=1)  # from "road"
    assert cfg.limit("road.pothole", "register") == 20 * M  # from ""
    assert cfg.limit("road.pothole", "register", severity=3) == 5 * M
    assert cfg.limit("road.pothole", "acknowledge", severity=3) == 45 * M  # urgent never looser than normal
    cal = cfg.calendar_for("road.pothole")  # inherited from "road"
    assert isinstance(cal, WorkCalendar) and cal.name == "office"
    assert not cal.is_workday(date(2026, 11, 23)) and cal.is_workday(date(2026, 11, 28))
    assert cfg.calendar_for("fence") is NATURAL


def _minimal(**over: str) -> str:
    body = {
        "types": '  "":\n    limits: {register: 30m, acknowledge: 1h, handle: 1h, check: 1h}\n',
    }
    body.update(over)
    return "".join(f"{k}:\n{v}" if v.startswith("  ") else f"{k}: {v}\n" for k, v in body.items())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty SLA config"),
        ("types: [\n", "invalid YAML"),
        ("- 1\n- 2\n", "expected a mapping"),
        (_minimal(colour="red"), "colour: unknown key"),
        ('types:\n  "":\n    limits: {register: 30m, acknowledge: 1h, handle: 1h}\n',
         r'types\[""\]\.limits: .*missing check'),
        ("types:\n  fence:\n    limits: {handle: 1h}\n", 'no default entry ""'),
        (_minimal(types='  "":\n    limits: {register: 30m, acknowledge: 1h, handle: 1h, check: 1h}\n'
                        '  fence:\n    limits: {handle: 15x}\n'),
         r'types\["fence"\]\.limits\.handle: \'15x\' is not a duration'),
        (_minimal(types='  "":\n    limits: {register: 30m, acknowledge: 1h, handle: 1h, check: 1h}\n'
                        '  fence:\n    limits: {handle: 15}\n'),
         r'types\["fence"\]\.limits\.handle: expected a duration with a unit'),
        (_minimal(types='  "":\n    limits: {register: 30m, acknowledge: 1h, handle: 1h, check: 0m}\n'),
         r'types\[""\]\.limits\.check: the limit must be positive'),
        (_minimal(types='  "":\n    limits: {register: 30m, acknowledge: 1h, handle: 1h, check: 1h, arrive: 5m}\n'),
         r'types\[""\]\.limits\.arrive: unknown key'),
        (_minimal(types='  "":\n    calendar: office\n    limits: {register: 30m, acknowledge: 1h, handle: 1h, check: 1h}\n'),
         r'types\[""\]\.calendar: unknown calendar \'office\''),
        (_minimal(calendars="  working:\n    periods: [08:30-12:00, 1330]\n"),
         r"calendars\.working\.periods\[1\]: expected a quoted period"),
        (_minimal(calendars='  working:\n    periods: ["13:30-12:00"]\n'), r"calendars\.working: period .* end must come after"),
        (_minimal(calendars="  working:\n    holidays: [2026-13-01]\n"), r"calendars\.working\.holidays\[0\]: expected a date"),
        (_minimal(calendars="  working:\n    workdays: [mon, funday]\n"), r"calendars\.working\.workdays\[1\]: expected a weekday"),
        (_minimal(calendars="  working:\n    timezone: Mars/Olympus\n"), r"calendars\.working: unknown time zone"),
        (_minimal(calendars="  natural:\n    timezone: UTC\n"), r"calendars\.natural: .*built in"),
        (_minimal(yellow_at="1.5"), "yellow_at: expected a share"),
        (_minimal(urgent_severity="high"), "urgent_severity: expected an integer"),
    ],
)
def test_config_errors_name_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(sla.SlaConfigError, match=message) as err:
        sla.load_sla_config(path)
    assert str(err.value).startswith(f"{path}: ")


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(sla.SlaConfigError, match=r"nope\.yaml: cannot read"):
        sla.load_sla_config(tmp_path / "nope.yaml")


# --- stage clocks ----------------------------------------------------------------------------------


def test_start_stage_sets_the_deadline_on_the_type_calendar() -> None:
    inc = incident("fence.intrusion")
    sla.start_stage(inc, "acknowledge", T0)
    assert (inc.stage, inc.stage_started_at, inc.deadline) == ("acknowledge", T0, T0 + 15 * M)
    litter = incident("city.litter.overflow", state=IncidentState.ACKNOWLEDGED)
    sla.start_stage(litter, "handle", FRI_1630)
    assert litter.deadline == datetime(2026, 11, 23, 11, 30, tzinfo=CST)  # 1 h on Friday, 3 h on Monday
    assert sla.light(litter, datetime(2026, 11, 22, 12, tzinfo=CST)) is Light.GREEN  # Sunday: 1 of 4 h used
    assert sla.fraction(litter, datetime(2026, 11, 23, 10, 30, tzinfo=CST)) == pytest.approx(0.75)
    assert sla.light(litter, datetime(2026, 11, 23, 10, 30, tzinfo=CST)) is Light.YELLOW


def test_urgent_register_limit() -> None:
    inc = incident("pothole", state=IncidentState.REPORTED, severity=5)
    sla.start_stage(inc, "register", T0)
    assert inc.deadline == T0 + 10 * M


@pytest.mark.parametrize(
    ("minutes", "expected", "share"),
    [(0, Light.GREEN, 0.0), (44, Light.GREEN, 44 / 60), (45, Light.YELLOW, 0.75), (59, Light.YELLOW, 59 / 60),
     (60, Light.RED, 1.0), (120, Light.RED, 2.0)],
)
def test_lights_of_a_stage_clock(minutes: int, expected: Light, share: float) -> None:
    inc = incident("pothole", state=IncidentState.ACKNOWLEDGED)
    sla.start_stage(inc, "handle", T0)
    now = T0 + minutes * M
    assert sla.light(inc, now) is expected
    assert sla.fraction(inc, now) == pytest.approx(share)


def test_stage_none_stops_the_clock() -> None:
    inc = incident()
    sla.start_stage(inc, "acknowledge", T0)
    sla.start_stage(inc, None, T0 + M)
    assert (inc.stage, inc.deadline, inc.stage_started_at) == (None, None, None)
    assert sla.light(inc, T0 + H) is None and sla.fraction(inc, T0 + H) is None


def test_closed_incident_has_no_light_even_with_a_stage() -> None:
    inc = incident()
    sla.start_stage(inc, "acknowledge", T0)
    inc.state = IncidentState.CLOSED
    assert sla.light(inc, T0) is None


def test_unknown_stage_refused() -> None:
    with pytest.raises(ValueError, match="unknown SLA stage"):
        sla.start_stage(incident(), "arrive", T0)


def test_rework_keeps_the_deadline() -> None:
    inc = incident("pothole", state=IncidentState.ACKNOWLEDGED)
    sla.start_stage(inc, "handle", T0)
    original = inc.deadline
    sla.start_stage(inc, "check", T0 + 30 * M)
    assert inc.deadline == T0 + 30 * M + H
    sla.start_stage(inc, "handle", T0 + 40 * M, keep_deadline=True)  # failed check → rework
    assert inc.stage == "handle" and inc.deadline == T0 + 30 * M + H
    fresh = incident("pothole")
    sla.start_stage(fresh, "handle", T0, keep_deadline=True)  # nothing to keep: a new clock
    assert fresh.deadline == original


def test_paused_clock_is_frozen_and_does_not_go_red() -> None:
    inc = incident("pothole", state=IncidentState.ACKNOWLEDGED)
    sla.start_stage(inc, "handle", T0)
    sla.pause(inc, T0 + 30 * M)
    sla.pause(inc, T0 + 40 * M)  # keeps the first pause
    assert inc.paused_at == T0 + 30 * M
    for later in (T0 + 59 * M, T0 + 2 * H, T0 + timedelta(days=3)):
        assert sla.light(inc, later) is Light.GREEN
        assert sla.fraction(inc, later) == pytest.approx(0.5)
    sla.resume(inc, T0 + 5 * H)
    assert inc.paused_at is None and inc.deadline == T0 + 5 * H + 30 * M
    assert sla.fraction(inc, T0 + 5 * H) == pytest.approx(0.5)
    assert sla.light(inc, T0 + 5 * H + 15 * M) is Light.YELLOW
    assert sla.light(inc, T0 + 5 * H + 30 * M) is Light.RED
    sla.resume(inc, T0 + 6 * H)  # not paused: nothing happens
    assert inc.deadline == T0 + 5 * H + 30 * M


def test_resume_pushes_by_working_time_only() -> None:
    inc = incident("city.litter", state=IncidentState.ACKNOWLEDGED)
    sla.start_stage(inc, "handle", FRI_1630)  # deadline Monday 11:30
    sla.pause(inc, datetime(2026, 11, 20, 17, tzinfo=CST))  # 30 min of work left on Friday
    sla.resume(inc, datetime(2026, 11, 23, 9, tzinfo=CST))  # paused over the weekend: 30 + 30 working min
    assert inc.deadline == datetime(2026, 11, 23, 14, tzinfo=CST)  # 3.5 h left: 09:00-12:00, 13:30-14:00
    assert sla.fraction(inc, datetime(2026, 11, 23, 9, tzinfo=CST)) == pytest.approx(0.5 / 4)


def test_extension_rebases_the_deadline() -> None:
    inc = incident("pothole", state=IncidentState.ACKNOWLEDGED)
    sla.start_stage(inc, "handle", T0)
    assert sla.light(inc, T0 + 50 * M) is Light.YELLOW
    sla.extend(inc, T0 + 3 * H)
    assert inc.deadline == T0 + 3 * H
    assert sla.light(inc, T0 + 50 * M) is Light.GREEN
    assert sla.light(inc, T0 + 3 * H - 16 * M) is Light.GREEN
    assert sla.light(inc, T0 + 3 * H - 15 * M) is Light.YELLOW  # a quarter of the limit left
    assert sla.light(inc, T0 + 3 * H) is Light.RED
    assert sla.overdue(inc, T0 + 4 * H) == H


def test_naive_times_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sla.start_stage(incident(), "acknowledge", datetime(2026, 11, 21, 8))
    with pytest.raises(ValueError, match="timezone-aware"):
        sla.extend(incident(), datetime(2026, 11, 21, 8))


def test_the_demo_limits_are_minutes_and_never_looser_than_production() -> None:
    from datetime import timedelta as _td

    from alerts.sla import DEMO_FILE, STAGES, load_sla_config

    demo, prod = load_sla_config(DEMO_FILE), load_sla_config()
    for incident_type in ("fence.intrusion", "thermal.fire", "smoke.alarm", "camera.line_crossing", "city.litter", "other.x"):
        for stage in STAGES:
            for severity in (3, 5):
                limit = demo.limit(incident_type, stage, severity)
                assert _td(0) < limit <= _td(minutes=5), (incident_type, stage, severity, limit)
                assert limit <= prod.limit(incident_type, stage, severity), (incident_type, stage, severity)
