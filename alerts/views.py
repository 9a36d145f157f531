"""JSON views of incidents, shared by the notifications and the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from alerts import sla
from alerts.model import HistoryEntry, Incident


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


#: Personal data of a citizen reporter: shown on the incident's own page, never broadcast (MQTT, lists, map).
PERSONAL_FIELDS = frozenset({"first_name", "last_name", "email", "phone"})


def public_details(details: dict[str, Any]) -> dict[str, Any]:
    """Details without a citizen reporter's name and contact (and without Open311 extra fields)."""
    out = dict(details)
    reporter = out.get("reporter")
    if isinstance(reporter, dict):
        out["reporter"] = {k: v for k, v in reporter.items() if k not in PERSONAL_FIELDS}
    open311 = out.get("open311")
    if isinstance(open311, dict):
        keep = {"service_code", "lat", "long", "description", "address_string", "media_url"}
        out["open311"] = {k: v for k, v in open311.items() if k in keep}
    return out


def incident_dict(incident: Incident, now: datetime, *, event: str | None = None, personal: bool = False) -> dict[str, Any]:
    """The incident as JSON (what phones, map walls and the API see).

    A citizen reporter's name and contact appear only with `personal=True` (the incident's own page).
    """
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
        "details": dict(incident.details) if personal else public_details(incident.details),
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
