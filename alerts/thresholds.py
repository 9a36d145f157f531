"""Threshold rules on readings: "thermal max temperature above 80 °C for 10 s" raises an alarm.

A rule names a metric, a bound (`above` or `below`), how long the bound must hold (`for_s`, 0 = at
once), the alarm type and severity, and optionally the device kinds it applies to. Rules are data
(YAML, `thresholds_defaults.yaml`); `ThresholdWatch` is the state machine, one per process, fed the
readings of each batch in time order:

- a reading past the bound starts (or continues) a breach; when the breach has lasted `for_s`, one
  alarm is raised, with a message id derived from the breach's first reading
  (`rule:<name>@<start ts>`), so a redelivered batch yields the same id and the store dedups it;
- a reading back inside the bound ends the breach (and re-arms the rule); if an alarm was raised the
  watch emits an AlarmEnd for it.

Pure: no I/O, no clock (the readings' own timestamps drive it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ingest.model import Alarm, AlarmEnd, Reading


class ThresholdConfigError(ValueError):
    """A threshold rule file is malformed (the message names the rule and the field)."""


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    """One rule: `metric` above/below `bound` for `for_s` seconds raises `alarm_type`."""

    name: str
    metric: str
    bound: float
    above: bool
    for_s: float
    alarm_type: str
    severity: int = 3
    kinds: tuple[str, ...] = ()

    def breached(self, value: float) -> bool:
        """Whether a value is past the bound."""
        return value > self.bound if self.above else value < self.bound


@dataclass(slots=True)
class _Breach:
    start: datetime
    start_value: float
    peak: float
    raised: str | None = None  # msg id of the alarm raised for this breach


@dataclass(slots=True)
class ThresholdWatch:
    """Per (device, rule) breach state; `feed` turns readings into alarms and alarm ends."""

    rules: tuple[ThresholdRule, ...]
    _by_metric: dict[str, list[ThresholdRule]] = field(default_factory=dict)
    _state: dict[tuple[str, str], _Breach] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for rule in self.rules:
            self._by_metric.setdefault(rule.metric, []).append(rule)

    def feed(self, readings: Iterable[Reading], kind_of: Mapping[str, str], received_at: datetime) -> list[Alarm | AlarmEnd]:
        """Readings of registered devices (ids resolved) → alarms raised and ended; the state moves on."""
        out, commit = self.plan(readings, kind_of, received_at)
        commit()
        return out

    def plan(self, readings: Iterable[Reading], kind_of: Mapping[str, str],
             received_at: datetime) -> tuple[list[Alarm | AlarmEnd], Callable[[], None]]:
        """Like `feed`, but the state moves on only when the returned `commit()` is called."""
        state = {k: dataclasses.replace(v) for k, v in self._state.items()}
        out = self._run(state, readings, kind_of, received_at)

        def commit() -> None:
            self._state = state

        return out, commit

    def _run(self, state: dict[tuple[str, str], _Breach], readings: Iterable[Reading], kind_of: Mapping[str, str],
             received_at: datetime) -> list[Alarm | AlarmEnd]:
        out: list[Alarm | AlarmEnd] = []
        by_metric = self._by_metric
        for r in sorted(readings, key=lambda x: x.ts) if by_metric else ():
            rules = by_metric.get(r.metric)
            if not rules:
                continue
            for rule in rules:
                if rule.kinds and kind_of.get(r.device_id) not in rule.kinds:
                    continue
                key = (r.device_id, rule.name)
                breach = state.get(key)
                if not rule.breached(r.value):
                    if breach is not None:
                        del state[key]
                        if breach.raised is not None:
                            out.append(AlarmEnd(r.device_id, r.ts, received_at, b"", msg_id=breach.raised, type=rule.alarm_type))
                    continue
                if breach is None:
                    breach = state[key] = _Breach(r.ts, r.value, r.value)
                elif r.ts < breach.start:  # an older reading arrived late: the breach began earlier
                    breach.start, breach.start_value = r.ts, r.value
                breach.peak = max(breach.peak, r.value) if rule.above else min(breach.peak, r.value)
                held = (r.ts - breach.start).total_seconds()
                if breach.raised is None and held >= rule.for_s:
                    breach.raised = f"rule:{rule.name}@{breach.start.isoformat()}"
                    out.append(self._alarm(rule, r, breach, held, received_at))
        return out

    @staticmethod
    def _alarm(rule: ThresholdRule, r: Reading, breach: _Breach, held: float, received_at: datetime) -> Alarm:
        word = "above" if rule.above else "below"
        return Alarm(
            device_id=r.device_id,
            msg_id=breach.raised or "",
            ts=r.ts,
            type=rule.alarm_type,
            severity=rule.severity,
            received_at=received_at,
            raw=b"",
            data={
                "rule": rule.name,
                "metric": rule.metric,
                "bound": rule.bound,
                "value": r.value,
                "peak": breach.peak,
                "held_s": round(held, 3),
                "since": breach.start.isoformat(),
                "text": f"{rule.metric} {word} {rule.bound:g} for {held:.0f} s (value {r.value:g})",
            },
        )


_KEYS = {"metric", "above", "below", "for_s", "type", "severity", "kinds"}


def parse_rules(doc: Any, *, source: str = "rules") -> tuple[ThresholdRule, ...]:
    """Rules from a parsed YAML document `{rules: {name: {metric, above|below, for_s, type, severity, kinds}}}`."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("rules", {}), Mapping):
        raise ThresholdConfigError(f"{source}: expected a mapping with a `rules` mapping")
    out = []
    for name, spec in (doc.get("rules") or {}).items():
        where = f"{source}: rule {name!r}"
        if not isinstance(spec, Mapping):
            raise ThresholdConfigError(f"{where}: expected a mapping")
        unknown = set(spec) - _KEYS
        if unknown:
            raise ThresholdConfigError(f"{where}: unknown keys {sorted(unknown)} (expected {sorted(_KEYS)})")
        if ("above" in spec) == ("below" in spec):
            raise ThresholdConfigError(f"{where}: give exactly one of `above` or `below`")
        bound = spec.get("above", spec.get("below"))
        if isinstance(bound, bool) or not isinstance(bound, int | float):
            raise ThresholdConfigError(f"{where}: the bound must be a number (got {bound!r})")
        for_s = spec.get("for_s", 0)
        if isinstance(for_s, bool) or not isinstance(for_s, int | float) or for_s < 0:
            raise ThresholdConfigError(f"{where}: for_s must be a number ≥ 0 (got {for_s!r})")
        metric, alarm_type = spec.get("metric"), spec.get("type")
        if not isinstance(metric, str) or not metric or not isinstance(alarm_type, str) or "." not in alarm_type:
            raise ThresholdConfigError(f"{where}: needs `metric` and a `type` such as thermal.overheat")
        severity = spec.get("severity", 3)
        if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
            raise ThresholdConfigError(f"{where}: severity must be an integer 1..5 (got {severity!r})")
        kinds = spec.get("kinds", [])
        if isinstance(kinds, str):
            kinds = [kinds]
        if not isinstance(kinds, Sequence) or not all(isinstance(k, str) for k in kinds):
            raise ThresholdConfigError(f"{where}: kinds must be a list of device kinds")
        out.append(ThresholdRule(str(name), metric, float(bound), "above" in spec, float(for_s), alarm_type, severity, tuple(kinds)))
    return tuple(out)


def load_rules(path: str | Path | None = None) -> tuple[ThresholdRule, ...]:
    """Rules from a YAML file, or the shipped defaults (`alerts/thresholds_defaults.yaml`)."""
    if path is None:
        text = resources.files("alerts").joinpath("thresholds_defaults.yaml").read_text(encoding="utf-8")
        return parse_rules(yaml.safe_load(text), source="thresholds_defaults.yaml")
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ThresholdConfigError(f"{p}: cannot read threshold rules: {exc}") from exc
    return parse_rules(doc, source=str(p))
