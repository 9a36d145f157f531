"""Cross-device correlation (design §6b): alarms of different devices near each other in space and
time are one event, so they join one incident and raise its confidence.

Rules (thresholds in `CorrelationConfig`, the one place for the intake's thresholds):
- an alarm joins an open incident of the same *family* (intrusion, fire, …; `families`) whose
  route point lies within `radius_m` of the alarm's point and whose last alarm is within `window_s`
  of the alarm — fence intrusion + thermal-camera intrusion at one building is the canonical case;
- a device already correlated into an incident keeps joining it within the (longer) cooldown, as
  the incident's own device does by the (device, type) cooldown rule;
- confidence = 1 − Π(1 − c_kind) over the incident's distinct devices (`kind_confidence`).
Types without a family (device faults: low voltage, offline, …) never correlate across devices.
Pure: no I/O; the intake feeds it the store's open incidents near the batch's points.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from alerts.model import Incident
from alerts.routing import distance_m

#: The incident type of a storm incident (see alerts.storm).
STORM_TYPE = "storm"
#: The second part of the lock key a unit of work takes per level-3 grid: (l3 code, CORRELATE_LOCK).
CORRELATE_LOCK = "correlate"
M_PER_DEG_LAT = 110_000.0  # a little under the true ~111,195 m: a cell is never shorter than the radius

DEFAULT_FAMILIES: Mapping[str, str] = MappingProxyType({
    "fence.intrusion": "intrusion",
    "fence.cut": "intrusion",
    "thermal.intrusion": "intrusion",
    "camera.line_crossing": "intrusion",
    "camera.region_entrance": "intrusion",
    "thermal.fire": "fire",
    "thermal.overheat": "fire",
    "smoke": "fire",
})
"""Alarm type (or `<kind>` / `<kind>.<event>` prefix; the longest matching prefix wins) → family."""

DEFAULT_KIND_CONFIDENCE: Mapping[str, float] = MappingProxyType({
    "fence": 0.6,  # wind, animals, branches: the most false alarms
    "thermal": 0.7,
    "camera": 0.7,
    "smoke": 0.8,
})
"""How much one alarm of a device of this kind is believed on its own."""


@dataclass(frozen=True, slots=True)
class CorrelationConfig:
    """Thresholds of dedup, correlation, storm control (one place; the runtime fills it from settings).

    `radius_m <= 0` or `window_s <= 0` turns cross-device correlation off; `storm_max_incidents=None`
    turns storm control off (e.g. a latency benchmark where every alarm must open an incident).
    """

    cooldown: timedelta = timedelta(minutes=10)
    radius_m: float = 50.0
    window_s: float = 60.0
    storm_window_s: float = 60.0
    storm_max_incidents: int | None = 3  # per level-3 grid per storm_window_s; the next one folds
    storm_notify_interval_s: float = 30.0
    kind_confidence: Mapping[str, float] = field(default_factory=lambda: DEFAULT_KIND_CONFIDENCE)
    default_confidence: float = 0.5
    families: Mapping[str, str] = field(default_factory=lambda: DEFAULT_FAMILIES)

    def __post_init__(self) -> None:
        for name in ("radius_m", "window_s", "storm_window_s", "storm_notify_interval_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"CorrelationConfig.{name}: expected >= 0, got {getattr(self, name)}")
        if self.cooldown < timedelta(0):
            raise ValueError(f"CorrelationConfig.cooldown: expected >= 0, got {self.cooldown}")
        if self.storm_max_incidents is not None and self.storm_max_incidents < 0:
            raise ValueError(f"CorrelationConfig.storm_max_incidents: expected >= 0 or None, got {self.storm_max_incidents}")
        for kind, c in {**self.kind_confidence, "default_confidence": self.default_confidence}.items():
            if not 0.0 <= c <= 1.0:
                raise ValueError(f"CorrelationConfig confidence of {kind!r}: expected 0..1, got {c}")

    @property
    def correlates(self) -> bool:
        """Cross-device correlation is on."""
        return self.radius_m > 0 and self.window_s > 0

    @property
    def storms(self) -> bool:
        """Storm control is on."""
        return self.storm_max_incidents is not None

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.window_s)

    @property
    def storm_window(self) -> timedelta:
        return timedelta(seconds=self.storm_window_s)

    @property
    def storm_notify_interval(self) -> timedelta:
        return timedelta(seconds=self.storm_notify_interval_s)

    def family(self, alarm_type: str) -> str | None:
        """The correlation family of an alarm type (longest matching prefix), or None: no correlation."""
        fam = self.families.get(alarm_type)
        if fam is not None:
            return fam
        parts = alarm_type.split(".")
        for n in range(len(parts) - 1, 0, -1):
            fam = self.families.get(".".join(parts[:n]))
            if fam is not None:
                return fam
        return None

    def confidence_of(self, kind: str | None) -> float:
        """The confidence of one device of this kind."""
        if kind is None:
            return self.default_confidence
        return self.kind_confidence.get(kind, self.default_confidence)


def combined_confidence(confidences: Iterable[float]) -> float:
    """1 − Π(1 − c): independent witnesses of one event (1.0 stays 1.0; no witness gives 0.0)."""
    miss = 1.0
    for c in confidences:
        miss *= 1.0 - c
    return round(1.0 - miss, 6)


def incident_devices(incident: Incident) -> list[str]:
    """The distinct devices whose alarms joined an incident (details["devices"], else its own device)."""
    listed = incident.details.get("devices")
    if isinstance(listed, list) and listed:
        return [str(d) for d in listed]
    return [incident.device_id] if incident.device_id is not None else []


def add_device(incident: Incident, device_id: str, alarm_type: str, confidence_of: Callable[[str], float]) -> bool:
    """Record a correlated device in details["devices"] / details["types"]; recompute the confidence.

    `confidence_of` gives a device id's confidence. Return True when the device is new to the incident.
    """
    devices = incident_devices(incident)
    new = device_id not in devices
    if new:
        devices.append(device_id)
    types = incident_types(incident)
    if alarm_type not in types:
        types.append(alarm_type)
    incident.details["devices"] = devices
    incident.details["types"] = types
    incident.confidence = combined_confidence(confidence_of(d) for d in devices)
    return new


class NearIndex:
    """Open incidents bucketed by their route point, for "which are within r metres of this point"."""

    def __init__(self, radius_m: float) -> None:
        self.radius_m = radius_m
        self._cell = max(radius_m, 1.0) / M_PER_DEG_LAT  # degrees; a cell is >= r tall, r·cos(lat) wide
        self._cells: dict[tuple[int, int], dict[str, Incident]] = {}
        self._where: dict[str, tuple[int, int]] = {}

    def _key(self, lon: float, lat: float) -> tuple[int, int]:
        return (math.floor(lon / self._cell), math.floor(lat / self._cell))

    def add(self, incident: Incident) -> None:
        """Index an incident (again: the same id replaces the former object)."""
        key = self._key(incident.route.lon, incident.route.lat)
        old = self._where.get(incident.id)
        if old is not None and old != key:
            self._cells[old].pop(incident.id, None)
        self._cells.setdefault(key, {})[incident.id] = incident
        self._where[incident.id] = key

    def __contains__(self, incident_id: object) -> bool:
        return incident_id in self._where

    def near(self, lon: float, lat: float) -> Iterator[tuple[float, Incident]]:
        """(distance in metres, incident) of the indexed incidents within the radius of the point."""
        cx, cy = self._key(lon, lat)
        cos = max(math.cos(math.radians(min(abs(lat), 89.0))), 1e-6)
        kx = math.ceil(1.0 / cos) + 1
        for x in range(cx - kx, cx + kx + 1):
            for y in range(cy - 1, cy + 2):
                for inc in self._cells.get((x, y), {}).values():
                    d = distance_m(lon, lat, inc.route.lon, inc.route.lat)
                    if d <= self.radius_m:
                        yield d, inc


def incident_types(incident: Incident) -> list[str]:
    """The alarm types joined into an incident (details["types"], else its own type)."""
    listed = incident.details.get("types")
    return [str(t) for t in listed] if isinstance(listed, list) and listed else [incident.type]


def correlates_with(
    config: CorrelationConfig, incident: Incident, *, device_id: str, alarm_type: str, family: str | None, ts: datetime
) -> bool:
    """Tell whether an alarm near `incident` joins it (the caller checks the distance).

    Another device's alarm of the same family joins within `window_s`. A device already in the
    incident joins with a type it already contributed, within the cooldown (its repeats); another
    type of the same device is a new event (as the (device, type) dedup rule has it).
    """
    if family is None or not incident.is_open or incident.type == STORM_TYPE:
        return False
    if config.family(incident.type) != family:
        return False
    gap = abs(ts - (incident.last_alarm_at or incident.created_at))
    if device_id in incident_devices(incident):
        return alarm_type in incident_types(incident) and gap <= config.cooldown
    return gap <= config.window
