"""JSON views of incidents, shared by the notifications and the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from alerts import sla
from alerts.model import HistoryEntry, Incident


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def incident_dict(incident: Incident, now: datetime, *, event: str | None = None) -> dict[str, Any]:
    """The incident as JSON (what phones, map walls and the API see)."""
    light = sla.light(incident, now)
    out: dict[str, Any] = {
        "id": incident.id,
        "type": incident.type,
        "state": incident.state.value,
        "light": light.value if light else None,
        "severity": incident.severity,
        "source": incident.source,
        "device_id": incident.device_id,
        "grid": incident.route.l3,
        "building": incident.route.building,
        "lon": incident.route.lon,
        "lat": incident.route.lat,
        "assignee": incident.assignee,
        "alarm_count": incident.alarm_count,
        "first_alarm_at": _iso(incident.first_alarm_at),
        "last_alarm_at": _iso(incident.last_alarm_at),
        "dispatched_at": _iso(incident.dispatched_at),
        "deadline": _iso(incident.deadline),
        "created_at": _iso(incident.created_at),
        "updated_at": _iso(incident.updated_at),
        "note": incident.note,
        "route": incident.route.to_dict(),
        "escalation_level": incident.escalation_level,
        "supervised": incident.supervised,
        "difficulty": incident.difficulty,
        "matter_track": incident.matter_track,
        "confidence": incident.confidence,
        "unit": incident.unit,
        "stage": incident.stage,
        "stage_started_at": _iso(incident.stage_started_at),
        "paused_at": _iso(incident.paused_at),
        "reminded_at": _iso(incident.reminded_at),
        "escalated_at": _iso(incident.escalated_at),
        "acknowledged_at": _iso(incident.acknowledged_at),
        "arrived_at": _iso(incident.arrived_at),
        "resolved_at": _iso(incident.resolved_at),
        "closed_at": _iso(incident.closed_at),
        "self_handled": incident.self_handled,
        "details": dict(incident.details),
    }
    if event is not None:
        out["event"] = event
    return out


def history_dict(entry: HistoryEntry) -> dict[str, Any]:
    """One audit-log row as JSON."""
    return {
        "at": entry.at.isoformat(),
        "action": entry.action,
        "from": entry.from_state.value if entry.from_state else None,
        "to": entry.to_state.value,
        "actor": entry.actor,
        "note": entry.note,
    }
