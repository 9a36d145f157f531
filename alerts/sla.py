"""SLA clocks and lights (design §6): green < 75 % of the stage limit elapsed, yellow 75–100 %, red ≥ 100 %.

One clock runs per incident, for its current `stage` (register / acknowledge / handle / check). Its
limit comes from an `SlaConfig` (YAML, `load_sla_config`): per incident type (longest prefix wins,
"" is the default), with urgent variants for severe incidents, counted on the type's calendar
(natural time or working hours, alerts.calendar). The workflow drives the clock with
`start_stage`, `pause`/`resume` (parked) and `extend` (approved extension); the scheduler reads
`fraction`/`light` and escalates (alerts.escalation). Pure: time always comes in as an argument.

The clock is kept as a deadline: `fraction` = share of the limit used up = 1 - remaining / limit,
where remaining is the calendar time from now (or from `paused_at` while parked) to the deadline.
So a pause freezes the light, `resume` pushes the deadline by the paused calendar time, and an
extension simply moves the deadline (yellow again when a quarter of the limit is left).

Incidents saved before the stage clocks (stage None, `dispatched_at` + `deadline` set) keep today's
light: a natural clock from `dispatched_at` to `deadline` while dispatched/acknowledged/returned/rework.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from alerts.calendar import NATURAL, Calendar, NaturalCalendar, WorkCalendar
from alerts.model import Incident, IncidentState, Light

__all__ = [
    "DEFAULT",
    "DEFAULT_LIMITS",
    "STAGES",
    "YELLOW_AT",
    "SlaConfig",
    "SlaConfigError",
    "TypeRule",
    "clock",
    "clock_time",
    "deadline_for",
    "extend",
    "fraction",
    "light",
    "limit_for",
    "load_sla_config",
    "overdue",
    "pause",
    "resume",
    "start_stage",
]

STAGES = ("register", "acknowledge", "handle", "check")
YELLOW_AT = 0.75
URGENT_SEVERITY = 4
DEFAULTS_FILE = "sla_defaults.yaml"
DEMO_FILE = Path(__file__).with_name("sla_demo.yaml")
"""Minute-scale limits for `gridwatch demo` (lights change while one watches); never a production default."""

#: States whose legacy clock (stage None: dispatched_at → deadline) runs, as before the stage clocks.
_CLOCK_STATES = frozenset(
    {IncidentState.DISPATCHED, IncidentState.ACKNOWLEDGED, IncidentState.RETURNED, IncidentState.REWORK}
)
_US = timedelta(microseconds=1)


class SlaConfigError(ValueError):
    """An SLA configuration that cannot be used; the message names the file and the key."""


# --- configuration ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TypeRule:
    """The effective (inherited) limits of one type prefix."""

    prefix: str
    limits: Mapping[str, timedelta]  # every stage
    urgent: Mapping[str, timedelta]  # every stage (== limits where no urgent variant is configured)
    calendar: str


@dataclass(frozen=True, eq=False)
class SlaConfig:
    """Per-type stage limits, urgent variants and calendars; see alerts/sla_defaults.yaml."""

    rules: Mapping[str, TypeRule]
    calendars: Mapping[str, Calendar]
    urgent_severity: int = URGENT_SEVERITY
    yellow_at: float = YELLOW_AT
    source: str = "<memory>"
    _by_type: dict[str, TypeRule] = field(default_factory=dict, init=False, repr=False)

    def __repr__(self) -> str:
        return (
            f"SlaConfig({self.source!r}, types={list(self.rules)}, calendars={list(self.calendars)}, "
            f"urgent_severity={self.urgent_severity}, yellow_at={self.yellow_at})"
        )

    def rule_for(self, incident_type: str) -> TypeRule:
        """The rule of the longest configured prefix of `incident_type` (cached per type)."""
        rule = self._by_type.get(incident_type)
        if rule is None:
            best = ""
            for prefix in self.rules:
                if len(prefix) > len(best) and incident_type.startswith(prefix):
                    best = prefix
            rule = self._by_type[incident_type] = self.rules[best]
        return rule

    def limit(self, incident_type: str, stage: str, severity: int = 0) -> timedelta:
        """The limit of `stage` for an incident of `incident_type` and `severity`."""
        rule = self.rule_for(incident_type)
        try:
            return (rule.urgent if severity >= self.urgent_severity else rule.limits)[stage]
        except KeyError:
            raise ValueError(f"unknown SLA stage {stage!r}: expected one of {', '.join(STAGES)}") from None

    def calendar_for(self, incident_type: str) -> Calendar:
        """The calendar the clocks of `incident_type` count on."""
        return self.calendars[self.rule_for(incident_type).calendar]

    def working_prefixes(self) -> list[str]:
        """Type prefixes whose clocks count working time (their yellow point can't be bounded in wall time)."""
        return sorted(p for p, r in self.rules.items() if not isinstance(self.calendars[r.calendar], NaturalCalendar))

    def limits_by_prefix(self, stage: str) -> Mapping[str, timedelta]:
        """{type prefix: normal limit of `stage`}, e.g. for `limit_for`."""
        return MappingProxyType({p: r.limits[stage] for p, r in self.rules.items()})

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> SlaConfig:
        """Build from the parsed YAML document; SlaConfigError names `source` and the key."""
        return _Parser(source).config(data)


def load_sla_config(path: str | Path | None = None) -> SlaConfig:
    """Load an SLA config from a YAML file; None loads the packaged alerts/sla_defaults.yaml."""
    import yaml  # pyyaml: a dependency of amqtt; imported here so importing the module stays cheap

    if path is None:
        ref = resources.files("alerts").joinpath(DEFAULTS_FILE)
        source = str(ref)
        reader = ref.read_text
    else:
        source = str(path)
        reader = Path(path).read_text
    try:
        text = reader(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SlaConfigError(f"{source}: cannot read the SLA config: {exc}") from exc
    try:
        data = yaml.load(text, Loader=_loader(yaml))  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, ValueError) as exc:
        raise SlaConfigError(f"{source}: invalid YAML: {exc}") from exc
    return _Parser(source).config(data)


def _loader(yaml: Any) -> type:
    """SafeLoader that leaves dates as text, so a bad date is reported with its key."""

    class Loader(yaml.SafeLoader):  # type: ignore[misc, name-defined]
        pass

    Loader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_scalar)
    return Loader


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s)\s*")
_UNITS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
_WEEKDAYS = {name: i for i, names in enumerate(
    [("mon", "monday"), ("tue", "tuesday"), ("wed", "wednesday"), ("thu", "thursday"),
     ("fri", "friday"), ("sat", "saturday"), ("sun", "sunday")]) for name in names}
_PERIOD = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")


class _Parser:
    """YAML document → SlaConfig, with errors of the form "<file>: <key>: <problem>"."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> SlaConfigError:
        return SlaConfigError(f"{self.source}: {key}: {problem}" if key else f"{self.source}: {problem}")

    def mapping(self, value: Any, key: str, allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__} {value!r}")
        for k in value:
            if not isinstance(k, str):
                raise self.fail(key, f"keys must be strings, got {k!r} (quote it)")
            if allowed is not None and k not in allowed:
                where = f"{key}.{k}" if key else k
                raise self.fail(where, f"unknown key (expected one of {', '.join(allowed)})")
        return value

    def duration(self, value: Any, key: str) -> timedelta:
        text = value if isinstance(value, str) else None
        if text is None or not text.strip():
            raise self.fail(key, f"expected a duration with a unit such as 15m, 4h or 1h30m, got {value!r}")
        pos, seconds = 0, 0.0
        text = text.strip()
        while pos < len(text):
            m = _DURATION.match(text, pos)
            if m is None:
                raise self.fail(key, f"{value!r} is not a duration (use e.g. 90s, 15m, 4h, 1h30m, 2d)")
            seconds += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if seconds <= 0:
            raise self.fail(key, f"the limit must be positive, got {value!r}")
        return timedelta(seconds=seconds)

    def stage_limits(self, value: Any, key: str) -> dict[str, timedelta]:
        raw = self.mapping(value, key, STAGES)
        return {stage: self.duration(v, f"{key}.{stage}") for stage, v in raw.items()}

    def date_(self, value: Any, key: str) -> date:
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
        raise self.fail(key, f"expected a date YYYY-MM-DD, got {value!r}")

    def dates(self, value: Any, key: str) -> frozenset[date]:
        if value is None:
            return frozenset()
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list of dates, got {value!r}")
        return frozenset(self.date_(v, f"{key}[{i}]") for i, v in enumerate(value))

    def period(self, value: Any, key: str) -> tuple[time, time]:
        m = _PERIOD.fullmatch(value) if isinstance(value, str) else None
        if m is None:
            raise self.fail(key, f'expected a quoted period "HH:MM-HH:MM", got {value!r}')
        h1, m1, h2, m2 = map(int, m.groups())
        try:
            return time(h1, m1), time(h2, m2)
        except ValueError as exc:
            raise self.fail(key, f"{value!r}: {exc}") from None

    def calendar(self, value: Any, key: str, name: str) -> WorkCalendar:
        raw = self.mapping(value, key, ("timezone", "workdays", "periods", "holidays", "makeup_days"))
        kwargs: dict[str, Any] = {"name": name}
        if "timezone" in raw:
            if not isinstance(raw["timezone"], str):
                raise self.fail(f"{key}.timezone", f"expected a time zone name, got {raw['timezone']!r}")
            kwargs["timezone"] = raw["timezone"]
        if "workdays" in raw:
            days = raw["workdays"]
            if not isinstance(days, list):
                raise self.fail(f"{key}.workdays", f"expected a list of weekday names, got {days!r}")
            numbers = set()
            for i, d in enumerate(days):
                n = _WEEKDAYS.get(d.strip().lower()) if isinstance(d, str) else None
                if n is None:
                    raise self.fail(f"{key}.workdays[{i}]", f"expected a weekday name (mon .. sun), got {d!r}")
                numbers.add(n)
            kwargs["workdays"] = frozenset(numbers)
        if "periods" in raw:
            periods = raw["periods"]
            if not isinstance(periods, list):
                raise self.fail(f"{key}.periods", f'expected a list of "HH:MM-HH:MM", got {periods!r}')
            kwargs["periods"] = tuple(self.period(p, f"{key}.periods[{i}]") for i, p in enumerate(periods))
        kwargs["holidays"] = self.dates(raw.get("holidays"), f"{key}.holidays")
        kwargs["makeup_days"] = self.dates(raw.get("makeup_days"), f"{key}.makeup_days")
        try:
            return WorkCalendar(**kwargs)
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None

    def config(self, data: Any) -> SlaConfig:
        top = self.mapping(data, "", ("urgent_severity", "yellow_at", "calendars", "types"))
        if not top:
            raise self.fail("", "empty SLA config (expected the keys types, calendars, urgent_severity, yellow_at)")
        urgent_severity = top.get("urgent_severity", URGENT_SEVERITY)
        if isinstance(urgent_severity, bool) or not isinstance(urgent_severity, int):
            raise self.fail("urgent_severity", f"expected an integer severity, got {urgent_severity!r}")
        yellow_at = top.get("yellow_at", YELLOW_AT)
        if isinstance(yellow_at, bool) or not isinstance(yellow_at, (int, float)) or not 0 < yellow_at < 1:
            raise self.fail("yellow_at", f"expected a share between 0 and 1 (e.g. 0.75), got {yellow_at!r}")

        calendars: dict[str, Calendar] = {"natural": NATURAL}
        for name, spec in self.mapping(top.get("calendars"), "calendars").items():
            if name == "natural":
                raise self.fail("calendars.natural", "'natural' is built in and cannot be redefined")
            calendars[name] = self.calendar(spec, f"calendars.{name}", name)

        types = self.mapping(top.get("types"), "types")
        if "" not in types:
            raise self.fail("types", 'no default entry "" (it must give the limits of every stage)')
        raw_rules: dict[str, tuple[dict[str, timedelta], dict[str, timedelta], str | None]] = {}
        for prefix, spec in types.items():
            key = f'types["{prefix}"]'
            entry = self.mapping(spec, key, ("calendar", "limits", "urgent"))
            cal = entry.get("calendar")
            if cal is not None and (not isinstance(cal, str) or cal not in calendars):
                raise self.fail(f"{key}.calendar", f"unknown calendar {cal!r} (known: {', '.join(calendars)})")
            raw_rules[prefix] = (
                self.stage_limits(entry.get("limits"), f"{key}.limits"),
                self.stage_limits(entry.get("urgent"), f"{key}.urgent"),
                cal,
            )
        missing = [s for s in STAGES if s not in raw_rules[""][0]]
        if missing:
            raise self.fail('types[""].limits', f"the default entry must give every stage; missing {', '.join(missing)}")

        rules: dict[str, TypeRule] = {}
        for prefix in types:
            limits: dict[str, timedelta] = {}
            urgent: dict[str, timedelta] = {}
            calendar = "natural"
            # ancestors first, so the more specific prefix overrides stage by stage
            for p in sorted((p for p in raw_rules if prefix.startswith(p)), key=len):
                lim, urg, cal = raw_rules[p]
                limits.update(lim)
                urgent.update(urg)
                calendar = cal or calendar
            urgent = {s: min(limits[s], urgent.get(s, limits[s])) for s in STAGES}
            rules[prefix] = TypeRule(prefix, MappingProxyType(limits), MappingProxyType(urgent), calendar)
        return SlaConfig(
            rules=MappingProxyType(rules),
            calendars=MappingProxyType(calendars),
            urgent_severity=urgent_severity,
            yellow_at=float(yellow_at),
            source=self.source,
        )


#: The packaged defaults (alerts/sla_defaults.yaml).
DEFAULT = load_sla_config()

#: Acknowledge limit per type prefix of the defaults (the clock intake starts on auto-dispatch).
DEFAULT_LIMITS: Mapping[str, timedelta] = DEFAULT.limits_by_prefix("acknowledge")
_ACTIVE: SlaConfig = DEFAULT


def activate(config: SlaConfig) -> None:
    """Make `config` the process's SLA configuration (the runtime calls this with GRIDWATCH_SLA_CONFIG's file)."""
    global _ACTIVE
    _ACTIVE = config


def active(config: SlaConfig | None = None) -> SlaConfig:
    """`config`, or the process's active configuration (the packaged defaults unless activated)."""
    return config if config is not None else _ACTIVE


# --- the legacy helpers (intake) -------------------------------------------------------------------


def limit_for(incident_type: str, limits: Mapping[str, timedelta] = DEFAULT_LIMITS) -> timedelta:
    """The limit of an incident type: the longest prefix of `type` found in `limits`."""
    best = ""
    for prefix in limits:
        if incident_type.startswith(prefix) and len(prefix) >= len(best):
            best = prefix
    return limits[best]


def deadline_for(incident_type: str, dispatched_at: datetime, limits: Mapping[str, timedelta] = DEFAULT_LIMITS) -> datetime:
    """When the (natural-time) clock started at `dispatched_at` runs out."""
    return dispatched_at + limit_for(incident_type, limits)


# --- the clock -------------------------------------------------------------------------------------


def _check_aware(t: datetime, name: str) -> None:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {t.isoformat()}")


def _calendar(incident: Incident, config: SlaConfig) -> Calendar:
    return config.calendar_for(incident.type) if incident.stage is not None else NATURAL


def clock(incident: Incident, config: SlaConfig | None = None) -> tuple[Calendar, datetime, timedelta] | None:
    """(calendar, deadline, limit) of the incident's running clock; None when no clock runs."""
    config = active(config)
    deadline = incident.deadline
    if deadline is None:
        return None
    if incident.stage is not None:
        if not incident.is_open:
            return None
        limit = config.limit(incident.type, incident.stage, incident.severity)
        return config.calendar_for(incident.type), deadline, limit
    # saved before the stage clocks: natural clock from dispatched_at to deadline
    if incident.state not in _CLOCK_STATES or incident.dispatched_at is None:
        return None
    return NATURAL, deadline, deadline - incident.dispatched_at


def clock_time(incident: Incident, now: datetime) -> datetime:
    """The instant the clock reads: `now`, or `paused_at` while the clock is stopped."""
    paused = incident.paused_at
    return paused if paused is not None and paused < now else now


def _progress(incident: Incident, now: datetime, config: SlaConfig) -> tuple[int, int] | None:
    """(remaining µs of calendar time to the deadline, limit µs) at `now`; None without a clock."""
    c = clock(incident, config)
    if c is None:
        return None
    cal, deadline, limit = c
    remaining = cal.elapsed(clock_time(incident, now), deadline)
    return remaining // _US, limit // _US


def fraction(incident: Incident, now: datetime, config: SlaConfig | None = None) -> float | None:
    """Share of the stage limit used up at `now` (≥ 1 overdue, 2 = a full limit past the deadline).

    Frozen while paused; None when no clock runs.
    """
    config = active(config)
    p = _progress(incident, now, config)
    if p is None:
        return None
    remaining, limit = p
    if limit <= 0:
        return 1.0 if remaining <= 0 else 0.0
    return max(0.0, (limit - remaining) / limit)


def light(incident: Incident, now: datetime, config: SlaConfig | None = None) -> Light | None:
    """The incident's light at `now`; None when no clock runs (not yet started, stopped or closed)."""
    config = active(config)
    p = _progress(incident, now, config)
    if p is None:
        return None
    remaining, limit = p
    if remaining <= 0 or limit <= 0:
        return Light.RED
    return Light.YELLOW if limit - remaining >= config.yellow_at * limit else Light.GREEN


def overdue(incident: Incident, now: datetime, config: SlaConfig | None = None) -> timedelta | None:
    """Calendar time past the deadline at `now` (frozen while paused; negative before it); None without a clock."""
    config = active(config)
    c = clock(incident, config)
    if c is None:
        return None
    cal, deadline, _ = c
    return cal.elapsed(deadline, clock_time(incident, now))


def start_stage(
    incident: Incident,
    stage: str | None,
    at: datetime,
    config: SlaConfig | None = None,
    *,
    keep_deadline: bool = False,
) -> None:
    """Start the clock of `stage` at `at`: the deadline is the stage limit added on the type's calendar.

    `stage` None stops the clock (stage, stage_started_at, deadline and paused_at become None).
    `keep_deadline` (rework) keeps the current deadline when there is one.
    """
    config = active(config)
    if stage is None:
        incident.stage = None
        incident.stage_started_at = None
        incident.deadline = None
        incident.paused_at = None
        return
    if stage not in STAGES:
        raise ValueError(f"unknown SLA stage {stage!r}: expected one of {', '.join(STAGES)}")
    _check_aware(at, "at")
    incident.stage = stage
    incident.stage_started_at = at
    incident.paused_at = None
    if not keep_deadline or incident.deadline is None:
        limit = config.limit(incident.type, stage, incident.severity)
        incident.deadline = config.calendar_for(incident.type).add(at, limit)


def pause(incident: Incident, at: datetime) -> None:
    """Stop the clock (parked); pausing a paused clock keeps the first `paused_at`."""
    _check_aware(at, "at")
    if incident.paused_at is None:
        incident.paused_at = at


def resume(incident: Incident, at: datetime, config: SlaConfig | None = None) -> None:
    """Restart a paused clock: the deadline moves by the calendar time it was paused."""
    config = active(config)
    paused_at = incident.paused_at
    if paused_at is None:
        return
    _check_aware(at, "at")
    if incident.deadline is not None and at > paused_at:
        cal = _calendar(incident, config)
        stopped = cal.elapsed(paused_at, at)
        if stopped > timedelta(0):
            incident.deadline = cal.add(incident.deadline, stopped)
    incident.paused_at = None


def extend(incident: Incident, until: datetime) -> None:
    """An approved extension: the clock now runs out at `until` (the limit, hence the light scale, stays)."""
    _check_aware(until, "until")
    incident.deadline = until
