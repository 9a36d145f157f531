"""The incident aggregate's data: states, lights, route records, history rows, notifications."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class IncidentState(StrEnum):
    """The workflow states of design §6."""

    REPORTED = "reported"
    VERIFYING = "verifying"
    REGISTERED = "registered"
    DISPATCHED = "dispatched"
    RETURNED = "returned"
    ACKNOWLEDGED = "acknowledged"
    EXTENSION_REQUESTED = "extension_requested"
    PARKED = "parked"
    RESOLVED = "resolved"
    CHECKING = "checking"
    REWORK = "rework"
    CLOSED = "closed"
    CALLED_BACK = "called_back"
    ARCHIVED = "archived"
    CANCELLED = "cancelled"


#: States in which an incident is still being worked on (not closed out).
OPEN_STATES = frozenset(
    s
    for s in IncidentState
    if s not in {IncidentState.CLOSED, IncidentState.CALLED_BACK, IncidentState.ARCHIVED, IncidentState.CANCELLED}
)


class Light(StrEnum):
    """SLA colour of an incident (design §6)."""

    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"


@dataclass(frozen=True, slots=True)
class RouteRecord:
    """Who is responsible here, and why (design §6b). Replaying it settles "not our grid" disputes."""

    lon: float
    lat: float
    point_source: str  # "payload" | "device" | "report"
    grid_version: int
    l1: str | None
    l2: str | None
    l3: str | None
    building: str | None
    patroller_id: str | None
    rule: str  # e.g. "nearest-on-duty-assigned", "grid-command-center"
    routed_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "lon": self.lon,
            "lat": self.lat,
            "point_source": self.point_source,
            "grid_version": self.grid_version,
            "l1": self.l1,
            "l2": self.l2,
            "l3": self.l3,
            "building": self.building,
            "patroller_id": self.patroller_id,
            "rule": self.rule,
            "routed_at": self.routed_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RouteRecord:
        """Inverse of to_dict."""
        return cls(**{**d, "routed_at": datetime.fromisoformat(d["routed_at"])})


@dataclass(slots=True)
class Incident:
    """The unit of work (案件). Mutated only through alerts.workflow."""

    id: str
    type: str
    state: IncidentState
    severity: int
    source: str  # "device" | "report"
    route: RouteRecord
    created_at: datetime
    updated_at: datetime
    device_id: str | None = None
    alarm_count: int = 1
    first_alarm_at: datetime | None = None
    last_alarm_at: datetime | None = None
    assignee: str | None = None  # patroller id, or None when the grid's command center owns it
    dispatched_at: datetime | None = None
    deadline: datetime | None = None
    note: str | None = None
    # --- the command-center workflow (design §6): cross-cutting fields, not states -----------------
    escalation_level: int = 3  # the command level that owns it: 3 community, 2 street, 1 district
    supervised: bool = False  # 督办 issued
    difficulty: str | None = None  # 五色: green / blue / yellow / orange / red
    matter_track: str | None = None  # 三事分流: public / community / private
    confidence: float = 1.0  # raised when alarms of several devices correlate
    unit: str | None = None  # the handling unit, when dispatched to one instead of a patroller
    stage: str | None = None  # the SLA stage whose clock runs: register / acknowledge / handle / check
    stage_started_at: datetime | None = None
    paused_at: datetime | None = None  # clock stopped (parked)
    reminded_at: datetime | None = None  # last 催办
    escalated_at: datetime | None = None
    acknowledged_at: datetime | None = None
    arrived_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    self_handled: bool = False
    light: str | None = None  # the light last published (the scheduler publishes changes)
    details: dict[str, Any] = field(default_factory=dict)  # photos, reporter, Open311 fields, storm summary, devices

    @property
    def grid_code(self) -> str | None:
        """The owning level-3 grid."""
        return self.route.l3

    @property
    def is_open(self) -> bool:
        """Still being worked on."""
        return self.state in OPEN_STATES


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One audit-log row of an incident transition (append-only)."""

    incident_id: str
    at: datetime
    action: str
    from_state: IncidentState | None
    to_state: IncidentState
    actor: str
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    """An outbound MQTT message, written to the outbox in the same transaction as its cause."""

    topic: str
    payload: dict[str, Any] = field(default_factory=dict)
