"""SLA limits and lights (design §6): green < 75 % of the limit elapsed, yellow 75–100 %, red ≥ 100 %.

Only the handling clock of a dispatched incident is computed here for now; per-stage clocks,
working-hours calendars and escalation belong to the workflow issue.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from alerts.model import Incident, IncidentState, Light

#: Handling limit per alarm type prefix (longest matching prefix wins); local practice defaults.
DEFAULT_LIMITS: Mapping[str, timedelta] = {
    "fence.intrusion": timedelta(minutes=15),
    "fence": timedelta(minutes=30),
    "thermal.fire": timedelta(minutes=5),
    "smoke": timedelta(minutes=5),
    "thermal": timedelta(minutes=15),
    "camera": timedelta(minutes=15),
    "": timedelta(hours=1),
}
YELLOW_AT = 0.75

_CLOCK_STATES = frozenset(
    {IncidentState.DISPATCHED, IncidentState.ACKNOWLEDGED, IncidentState.RETURNED, IncidentState.REWORK}
)


def limit_for(incident_type: str, limits: Mapping[str, timedelta] = DEFAULT_LIMITS) -> timedelta:
    """The handling limit of an incident type: the longest prefix of `type` found in `limits`."""
    best = ""
    for prefix in limits:
        if incident_type.startswith(prefix) and len(prefix) >= len(best):
            best = prefix
    return limits[best]


def deadline_for(incident_type: str, dispatched_at: datetime, limits: Mapping[str, timedelta] = DEFAULT_LIMITS) -> datetime:
    """When the handling clock started at `dispatched_at` runs out."""
    return dispatched_at + limit_for(incident_type, limits)


def light(incident: Incident, now: datetime) -> Light | None:
    """The incident's light at `now`; None when no clock runs (not yet dispatched, or closed out)."""
    if incident.state not in _CLOCK_STATES or incident.dispatched_at is None or incident.deadline is None:
        return None
    total = (incident.deadline - incident.dispatched_at).total_seconds()
    elapsed = (now - incident.dispatched_at).total_seconds()
    if total <= 0 or elapsed >= total:
        return Light.RED
    return Light.YELLOW if elapsed >= YELLOW_AT * total else Light.GREEN
