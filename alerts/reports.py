"""Reports by people (design §1, §6): a patroller's one-tap report and a citizen's (Open311 GeoReport v2).

Pure: time, ids and last known positions come in as arguments; no I/O. Both kinds open an incident
that passes the same workflow as a device alarm (alerts.workflow), routed like an alarm:

- a **patroller** report is registered and dispatched to the reporting patroller at once (they are on
  the spot); with `self_handled=True` it is opened and closed at once (reported → registered →
  closed, difficulty "green": resolved by the patroller on the spot, 五色);
- a **citizen** report goes to `verifying`: the command center asks the nearest on-duty patroller of
  the grid to confirm it (a notification on that patroller's topic).

`details` keeps who reported (and the Open311 fields) and the photo references.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from alerts import sla, workflow
from alerts.errors import AlertsError
from alerts.intake import grid_topic, new_incident_id, patroller_topic
from alerts.model import HistoryEntry, Incident, IncidentState, Notification, RouteRecord
from alerts.routing import HasLonLat, Router
from alerts.views import incident_dict

AUTO_REGISTER = "system:auto-register"
AUTO_DISPATCH = "system:auto-dispatch"
AUTO_VERIFY = "system:auto-verify"
MAX_NOTE = 2000
SELF_HANDLED_DIFFICULTY = "green"


class ReportError(AlertsError):
    """A report cannot be accepted; `field` names the offending input field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class InvalidReportError(ReportError):
    """A field is missing, malformed or out of range."""


class ReportOutsideDistrictError(ReportError):
    """The report's position lies outside every grid of the district."""


@dataclass(frozen=True, slots=True)
class ReportType:
    """An incident type people can report (offered as an Open311 service)."""

    code: str
    name: str
    description: str
    group: str
    severity: int = 2


#: The incident types people can report, by code. Types follow `<kind>.<event>` (design §4) so that
#: the SLA limits by type prefix (alerts.sla) apply to reports as they do to alarms.
REPORT_TYPES: Mapping[str, ReportType] = {
    t.code: t
    for t in (
        ReportType("fence.intrusion", "Intrusion at a fence", "Someone climbing or crossing a perimeter fence", "security", 3),
        ReportType("fence.damage", "Damaged fence", "A cut, broken or fallen perimeter fence", "security", 2),
        ReportType("smoke.fire", "Fire or smoke", "Fire, smoke or a smell of burning", "safety", 4),
        ReportType("safety.hazard", "Public safety hazard", "A danger to people: loose structure, open pit, exposed wire", "safety", 3),
        ReportType("city.litter", "Litter or dumping", "Litter, overflowing bins or illegal dumping", "environment", 1),
        ReportType("city.road", "Damaged road", "Potholes, broken pavement or a missing manhole cover", "infrastructure", 2),
        ReportType("city.lighting", "Street light out", "A street or path light that does not work", "infrastructure", 1),
        ReportType("other.report", "Something else", "Anything else the command center should know", "other", 2),
    )
}


@dataclass(frozen=True, slots=True)
class PatrollerReport:
    """A patroller's one-tap report at their position. `photos`: stored photo references (dicts)."""

    patroller_id: str
    lon: float
    lat: float
    type: str
    note: str | None = None
    photos: Sequence[Mapping[str, Any]] = ()
    self_handled: bool = False


@dataclass(frozen=True, slots=True)
class CitizenReport:
    """A citizen's report with the fields of an Open311 GeoReport v2 service request.

    `service_code` becomes the incident type; `lat`/`long` are required (no geocoding of
    `address_string` here). `photos` are stored photo references, `media_url` a link the citizen gave.
    """

    service_code: str
    lat: float
    long: float
    description: str | None = None
    address_string: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    media_url: str | None = None
    photos: Sequence[Mapping[str, Any]] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)  # other Open311 fields kept as given (device_id, …)


Report = PatrollerReport | CitizenReport


def check_position(lon: float, lat: float, *, lon_field: str = "lon", lat_field: str = "lat") -> None:
    """Raise InvalidReportError when a WGS84 position is not finite or out of range."""
    for name, value, bound in ((lon_field, lon, 180.0), (lat_field, lat, 90.0)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise InvalidReportError(name, f"expected a finite number, got {value!r}")
        if not -bound <= value <= bound:
            raise InvalidReportError(name, f"{value} is out of range [-{bound:g}, {bound:g}] (WGS84 degrees)")


def open_report(
    report: Report,
    router: Router,
    *,
    now: datetime,
    positions: Mapping[str, HasLonLat],
    new_id: Callable[[datetime], str] = new_incident_id,
    types: Mapping[str, ReportType] = REPORT_TYPES,
    patrollers: Collection[str] | None = None,
    limits: Mapping[str, Any] = sla.DEFAULT_LIMITS,
) -> tuple[Incident, list[HistoryEntry], list[Notification]]:
    """Open the incident of a report: the incident, its audit rows and its notifications.

    `patrollers` (ids), when given, must hold a patroller report's `patroller_id`. Raises
    InvalidReportError (field named) or ReportOutsideDistrictError; nothing is returned half-done.
    """
    if isinstance(report, PatrollerReport):
        return _open_patroller(report, router, now, positions, new_id, types, patrollers, limits)
    if isinstance(report, CitizenReport):
        return _open_citizen(report, router, now, positions, new_id, types)
    raise TypeError(f"not a report: {type(report).__name__}")


def _report_type(code: str, field_name: str, types: Mapping[str, ReportType]) -> ReportType:
    if not isinstance(code, str) or code not in types:
        raise InvalidReportError(field_name, f"unknown type {code!r}; expected one of {', '.join(sorted(types))}")
    return types[code]


def _clean(text: str | None, field_name: str, limit: int = MAX_NOTE) -> str | None:
    if text is None:
        return None
    text = text.strip()
    if len(text) > limit:
        raise InvalidReportError(field_name, f"longer than {limit} characters")
    return text or None


def _route(router: Router, lon: float, lat: float, now: datetime, positions: Mapping[str, HasLonLat],
           lon_field: str, lat_field: str) -> tuple[RouteRecord, str]:
    """The route of a report's position and its level-3 grid code; raise when the position is unusable."""
    check_position(lon, lat, lon_field=lon_field, lat_field=lat_field)
    route = router.route(float(lon), float(lat), point_source="report", at=now, positions=positions)
    if route.l3 is None:
        raise ReportOutsideDistrictError(
            f"{lon_field},{lat_field}", f"point {lon_field}={lon}, {lat_field}={lat} is outside every grid of the district"
        )
    return route, route.l3


def _new_incident(incident_id: str, rtype: ReportType, source: str, route: RouteRecord, now: datetime,
                  note: str | None, details: dict[str, Any]) -> Incident:
    return Incident(
        id=incident_id,
        type=rtype.code,
        state=IncidentState.REPORTED,
        severity=rtype.severity,
        source=source,
        route=route,
        created_at=now,
        updated_at=now,
        note=note,
        details=details,
    )


def _open_patroller(
    report: PatrollerReport,
    router: Router,
    now: datetime,
    positions: Mapping[str, HasLonLat],
    new_id: Callable[[datetime], str],
    types: Mapping[str, ReportType],
    patrollers: Collection[str] | None,
    limits: Mapping[str, Any],
) -> tuple[Incident, list[HistoryEntry], list[Notification]]:
    pid = (report.patroller_id or "").strip()
    if not pid:
        raise InvalidReportError("patroller_id", "required")
    if patrollers is not None and pid not in patrollers:
        raise InvalidReportError("patroller_id", f"unknown patroller {pid!r}")
    rtype = _report_type(report.type, "type", types)
    note = _clean(report.note, "note")
    route, grid = _route(router, report.lon, report.lat, now, positions, "lon", "lat")
    actor = f"patroller:{pid}"
    details: dict[str, Any] = {
        "reporter": {"kind": "patroller", "patroller_id": pid},
        "photos": [dict(p) for p in report.photos],
    }
    incident = _new_incident(new_id(now), rtype, "report", route, now, note, details)
    incident.assignee = pid  # the reporter is on the spot: the incident is theirs
    rows = [HistoryEntry(incident.id, now, "report", None, IncidentState.REPORTED, actor, note)]
    if report.self_handled:
        rows.append(workflow.apply(incident, "register", actor=actor, at=now))
        rows.append(workflow.apply(incident, "close", actor=actor, at=now, note=note))
        incident.self_handled = True
        incident.difficulty = SELF_HANDLED_DIFFICULTY
        incident.closed_at = incident.closed_at or now
        incident.stage = None
        body = incident_dict(incident, now, event="created")
        return incident, rows, [Notification(grid_topic(grid), body)]
    rows.append(workflow.apply(incident, "register", actor=AUTO_REGISTER, at=now))
    rows.append(workflow.apply(incident, "dispatch", actor=AUTO_DISPATCH, at=now))
    incident.assignee = pid
    incident.deadline = incident.deadline or sla.deadline_for(incident.type, now, limits)
    body = incident_dict(incident, now, event="created")
    notes = [Notification(grid_topic(grid), body), Notification(patroller_topic(pid), body)]
    return incident, rows, notes


def _open_citizen(
    report: CitizenReport,
    router: Router,
    now: datetime,
    positions: Mapping[str, HasLonLat],
    new_id: Callable[[datetime], str],
    types: Mapping[str, ReportType],
) -> tuple[Incident, list[HistoryEntry], list[Notification]]:
    rtype = _report_type(report.service_code, "service_code", types)
    description = _clean(report.description, "description", 4000)
    route, grid = _route(router, report.long, report.lat, now, positions, "long", "lat")
    citizen = {
        "kind": "citizen",
        **{
            k: v
            for k, v in (
                ("first_name", _clean(report.first_name, "first_name", 200)),
                ("last_name", _clean(report.last_name, "last_name", 200)),
                ("email", _clean(report.email, "email", 320)),
                ("phone", _clean(report.phone, "phone", 50)),
            )
            if v is not None
        },
    }
    open311 = {
        "service_code": rtype.code,
        "lat": float(report.lat),
        "long": float(report.long),
        **{
            k: v
            for k, v in (
                ("description", description),
                ("address_string", _clean(report.address_string, "address_string", 500)),
                ("media_url", _clean(report.media_url, "media_url", 2000)),
            )
            if v is not None
        },
        **{k: v for k, v in report.extra.items() if v is not None},
    }
    details: dict[str, Any] = {"reporter": citizen, "open311": open311, "photos": [dict(p) for p in report.photos]}
    incident = _new_incident(new_id(now), rtype, "citizen", route, now, description, details)
    rows = [HistoryEntry(incident.id, now, "report", None, IncidentState.REPORTED, "citizen", description)]
    verifier = route.patroller_id
    rows.append(workflow.apply(incident, "verify", actor=AUTO_VERIFY, at=now,
                               note=None if verifier else "no patroller on duty: the command center verifies"))
    incident.note = description  # the verify note must not replace the citizen's words
    incident.details["verification"] = {"patroller_id": verifier, "requested_at": now.isoformat(), "rule": route.rule}
    body = incident_dict(incident, now, event="created")
    notes = [Notification(grid_topic(grid), body)]
    if verifier is not None:
        ask = incident_dict(incident, now, event="verify")
        ask["request"] = "verify"
        notes.append(Notification(patroller_topic(verifier), ask))
    return incident, rows, notes
