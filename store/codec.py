"""Conversions shared by both backends: UTC datetimes, shifts, route records, incident and alarm rows.

Datetimes leave the store timezone-aware in UTC on both backends. A naive datetime going in is
refused (ValueError): its meaning would differ between SQLite and PostgreSQL.

Text is cleaned on the way in (`clean_text`, `clean_json`): NUL characters and lone surrogates
become U+FFFD, and non-finite floats inside JSON become the strings "NaN"/"Infinity"/"-Infinity".
PostgreSQL cannot store those (and SQLite cannot encode surrogates), and one such value from a
device must not fail, and so endlessly redeliver, a whole ingest batch (design §7). Raw payload
bytes are stored unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry

from alerts.model import HistoryEntry, Incident, IncidentState, RouteRecord
from geo.model import Device, Grid, GridVersion, Shift
from ingest.model import Alarm, DeadLetter, Reading
from store.errors import IdentityConflictError

#: Columns of `incidents` written by save_incidents, in order (PostGIS adds a generated `geom`).
INCIDENT_COLUMNS: tuple[str, ...] = (
    "id",
    "type",
    "state",
    "severity",
    "source",
    "device_id",
    "route",
    "l1",
    "l2",
    "l3",
    "building",
    "lon",
    "lat",
    "alarm_count",
    "first_alarm_at",
    "last_alarm_at",
    "assignee",
    "dispatched_at",
    "deadline",
    "note",
    "created_at",
    "updated_at",
    *(
        "escalation_level", "supervised", "difficulty", "matter_track", "confidence", "unit", "stage",
        "stage_started_at", "paused_at", "reminded_at", "escalated_at", "acknowledged_at", "arrived_at",
        "resolved_at", "closed_at", "self_handled", "light", "details",
    ),
)
#: The workflow columns' datetimes (migration 0003), in INCIDENT_COLUMNS order.
INCIDENT_WORKFLOW_TIMES = (
    "stage_started_at", "paused_at", "reminded_at", "escalated_at", "acknowledged_at", "arrived_at",
    "resolved_at", "closed_at",
)


def incident_workflow_row(i: Incident, ts: Callable[[datetime | None, str], Any], js: Callable[[Any], Any]) -> tuple[Any, ...]:
    """The workflow columns' values of an incident (after `updated_at`, in INCIDENT_COLUMNS order).

    `ts` writes an optional datetime the way the backend stores it, `js` a JSON value.
    """
    return (
        i.escalation_level, bool(i.supervised), i.difficulty, i.matter_track, float(i.confidence), i.unit, i.stage,
        ts(i.stage_started_at, "incident.stage_started_at"), ts(i.paused_at, "incident.paused_at"),
        ts(i.reminded_at, "incident.reminded_at"), ts(i.escalated_at, "incident.escalated_at"),
        ts(i.acknowledged_at, "incident.acknowledged_at"), ts(i.arrived_at, "incident.arrived_at"),
        ts(i.resolved_at, "incident.resolved_at"), ts(i.closed_at, "incident.closed_at"),
        bool(i.self_handled), i.light, js(i.details),
    )

#: Columns of `alarms` written by add_alarms, in order (`id` is generated).
ALARM_COLUMNS: tuple[str, ...] = (
    "device_id",
    "msg_id",
    "ts",
    "type",
    "severity",
    "lon",
    "lat",
    "zone",
    "data",
    "raw",
    "received_at",
    "incident_id",
    "warnings",
)


def to_utc(value: datetime, field: str = "datetime") -> datetime:
    """Return `value` in UTC; refuse a naive datetime."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{field} {value.isoformat()}: expected a timezone-aware datetime")
    return value.astimezone(UTC)


def opt_utc(value: datetime | None, field: str = "datetime") -> datetime | None:
    """to_utc for an optional value."""
    return None if value is None else to_utc(value, field)


def clean_text(value: str) -> str:
    """Text every backend can store: NUL and lone surrogates become U+FFFD."""
    if value.isascii():  # the common case: only a NUL can need replacing
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    return value


def clean_json(value: Any) -> Any:
    """A JSON-ready value every backend can store (clean_text on strings and keys, finite numbers)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Mapping):
        return {clean_text(k) if isinstance(k, str) else k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


_COMPACT = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def fast_text(value: str | None) -> str | None:
    """clean_text for an optional value, with a fast path for plain ASCII (the common case)."""
    if value is None or (value.isascii() and "\x00" not in value):
        return value
    return clean_text(value)


def json_text(value: Any) -> str:
    """Compact JSON text of clean_json(value), serialized once (the hot path of bulk writes).

    Equal to `json.dumps(clean_json(value), ensure_ascii=False, separators=(",", ":"))`: the value
    is dumped as it is, and cleaned only when the dump shows something to clean (a non-finite
    float, an escaped NUL, or a lone surrogate that is not UTF-8).
    """
    try:
        text = _COMPACT(value)
    except (ValueError, TypeError):  # NaN/Infinity, or a Mapping that is not a dict: clean first
        return _COMPACT(clean_json(value))
    if "\\u0000" in text:
        return _COMPACT(clean_json(value))
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return _COMPACT(clean_json(value))
    return text


def _clean_row(values: dict[str, Any]) -> dict[str, Any]:
    """clean_text on text columns and clean_json on JSON columns; other values pass unchanged."""
    for key, value in values.items():
        if isinstance(value, str):
            values[key] = clean_text(value)
        elif isinstance(value, dict | list):
            values[key] = clean_json(value)
    return values


def shifts_to_json(shifts: tuple[Shift, ...]) -> list[dict[str, Any]]:
    """JSON-ready form of a roster."""
    return [{"weekdays": sorted(s.weekdays), "start": s.start.isoformat(), "end": s.end.isoformat()} for s in shifts]


def shifts_from_json(data: list[dict[str, Any]]) -> tuple[Shift, ...]:
    """Inverse of shifts_to_json."""
    return tuple(
        Shift(frozenset(int(d) for d in s["weekdays"]), time.fromisoformat(s["start"]), time.fromisoformat(s["end"]))
        for s in data
    )


def route_from_json(data: Mapping[str, Any]) -> RouteRecord:
    """RouteRecord.from_dict with `routed_at` in UTC."""
    route = RouteRecord.from_dict(dict(data))
    return dataclasses.replace(route, routed_at=to_utc(route.routed_at, "route.routed_at"))


def incident_values(incident: Incident) -> dict[str, Any]:
    """Column values of an incident (datetimes in UTC, route as a dict)."""
    route = incident.route
    return _clean_row(
        {
            "id": incident.id,
            "type": incident.type,
            "state": str(incident.state),
            "severity": incident.severity,
            "source": incident.source,
            "device_id": incident.device_id,
            "route": route.to_dict(),
            "l1": route.l1,
            "l2": route.l2,
            "l3": route.l3,
            "building": route.building,
            "lon": route.lon,
            "lat": route.lat,
            "alarm_count": incident.alarm_count,
            "first_alarm_at": opt_utc(incident.first_alarm_at, "incident.first_alarm_at"),
            "last_alarm_at": opt_utc(incident.last_alarm_at, "incident.last_alarm_at"),
            "assignee": incident.assignee,
            "dispatched_at": opt_utc(incident.dispatched_at, "incident.dispatched_at"),
            "deadline": opt_utc(incident.deadline, "incident.deadline"),
            "note": incident.note,
            "created_at": to_utc(incident.created_at, "incident.created_at"),
            "updated_at": to_utc(incident.updated_at, "incident.updated_at"),
            **dict(zip(INCIDENT_COLUMNS[22:], incident_workflow_row(incident, opt_utc, lambda d: d), strict=True)),
        }
    )


def incident_from_values(v: Mapping[str, Any]) -> Incident:
    """Build an incident from decoded column values (aware datetimes, route as a dict)."""
    return Incident(
        id=v["id"],
        type=v["type"],
        state=IncidentState(v["state"]),
        severity=v["severity"],
        source=v["source"],
        route=route_from_json(v["route"]),
        created_at=to_utc(v["created_at"]),
        updated_at=to_utc(v["updated_at"]),
        device_id=v["device_id"],
        alarm_count=v["alarm_count"],
        first_alarm_at=opt_utc(v["first_alarm_at"]),
        last_alarm_at=opt_utc(v["last_alarm_at"]),
        assignee=v["assignee"],
        dispatched_at=opt_utc(v["dispatched_at"]),
        deadline=opt_utc(v["deadline"]),
        note=v["note"],
        escalation_level=v["escalation_level"],
        supervised=bool(v["supervised"]),
        difficulty=v["difficulty"],
        matter_track=v["matter_track"],
        confidence=v["confidence"],
        unit=v["unit"],
        stage=v["stage"],
        self_handled=bool(v["self_handled"]),
        light=v["light"],
        details=v["details"] if isinstance(v["details"], dict) else json.loads(v["details"] or "{}"),
        **{k: opt_utc(v[k]) for k in INCIDENT_WORKFLOW_TIMES},
    )


def alarm_values(alarm: Alarm, incident_id: str | None) -> dict[str, Any]:
    """Column values of an alarm row (datetimes in UTC, data/warnings as JSON-ready objects)."""
    return _clean_row(
        {
            "device_id": alarm.device_id,
            "msg_id": alarm.msg_id,
            "ts": to_utc(alarm.ts, "alarm.ts"),
            "type": alarm.type,
            "severity": alarm.severity,
            "lon": alarm.lon,
            "lat": alarm.lat,
            "zone": alarm.zone,
            "data": alarm.data,
            "raw": bytes(alarm.raw),
            "received_at": to_utc(alarm.received_at, "alarm.received_at"),
            "incident_id": incident_id,
            "warnings": list(alarm.warnings),
        }
    )


def alarm_from_values(v: Mapping[str, Any]) -> Alarm:
    """Build an alarm from decoded column values."""
    return Alarm(
        device_id=v["device_id"],
        msg_id=v["msg_id"],
        ts=to_utc(v["ts"]),
        type=v["type"],
        severity=v["severity"],
        received_at=to_utc(v["received_at"]),
        raw=bytes(v["raw"]),
        lon=v["lon"],
        lat=v["lat"],
        zone=v["zone"],
        data=v["data"] if v["data"] is not None else {},
        warnings=tuple(v["warnings"] or ()),
    )


def history_values(entry: HistoryEntry) -> dict[str, Any]:
    """Column values of an audit-log row."""
    return _clean_row(
        {
            "incident_id": entry.incident_id,
            "at": to_utc(entry.at, "history.at"),
            "action": entry.action,
            "from_state": None if entry.from_state is None else str(entry.from_state),
            "to_state": str(entry.to_state),
            "actor": entry.actor,
            "note": entry.note,
        }
    )


def history_from_values(v: Mapping[str, Any]) -> HistoryEntry:
    """Build an audit-log row from decoded column values."""
    return HistoryEntry(
        incident_id=v["incident_id"],
        at=to_utc(v["at"]),
        action=v["action"],
        from_state=None if v["from_state"] is None else IncidentState(v["from_state"]),
        to_state=IncidentState(v["to_state"]),
        actor=v["actor"],
        note=v["note"],
    )


def key_map(keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """Distinct keys as stored (clean_text on both parts), each with the caller's spellings of it."""
    found: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for a, b in keys:
        spellings = found.setdefault((clean_text(a), clean_text(b)), [])
        if (a, b) not in spellings:
            spellings.append((a, b))
    return found


def dead_letter_values(letter: DeadLetter) -> dict[str, Any]:
    """Column values of a dead letter (the payload bytes unchanged)."""
    return _clean_row(
        {
            "topic": letter.topic,
            "payload": bytes(letter.payload),
            "reason": letter.reason,
            "detail": letter.detail,
            "received_at": to_utc(letter.received_at, "dead_letter.received_at"),
        }
    )


def notification_values(topic: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Column values of an outbox row."""
    return _clean_row({"topic": topic, "payload": dict(payload)})


def now_utc() -> datetime:
    """The current time in UTC (stamps written by the store itself)."""
    return datetime.now(UTC)


def to_wkb(geometry: BaseGeometry) -> bytes:
    """2D WKB of a geometry (gridwatch geometries are WGS84 lon/lat; a Z value is not kept)."""
    return bytes(shapely.to_wkb(geometry, output_dimension=2))


def to_ewkb_hex(geometry: BaseGeometry) -> str:
    """2D hex EWKB with SRID 4326: the text form PostGIS reads in COPY and in `%s::geometry`."""
    return str(shapely.to_wkb(shapely.set_srid(geometry, 4326), hex=True, output_dimension=2, include_srid=True))


def from_wkb(data: bytes | memoryview) -> BaseGeometry:
    """Inverse of to_wkb."""
    return shapely.from_wkb(bytes(data))


def grids_from_rows(rows: Sequence[Mapping[str, Any]], geom_key: str) -> list[Grid]:
    """Grids from rows (code, level, name, parent_code, WKB): one vectorized WKB decode for all."""
    geoms = shapely.from_wkb([bytes(r[geom_key]) for r in rows]) if rows else []
    return [
        Grid(r["code"], r["level"], r["name"], g, r["parent_code"]) for r, g in zip(rows, geoms, strict=True)
    ]


OUTBOX_COUNTERS = ("pending", "delivered", "failed_attempts", "retrying")
#: Outbox counters, in SQL both backends speak (FILTER works in PostgreSQL and SQLite ≥ 3.30).
OUTBOX_COUNTERS_SQL = (
    "SELECT count(*) FILTER (WHERE delivered_at IS NULL) AS pending,"
    " count(delivered_at) AS delivered,"
    " coalesce(sum(attempts), 0) - count(delivered_at) AS failed_attempts,"
    " count(*) FILTER (WHERE delivered_at IS NULL AND attempts > 0) AS retrying"
    " FROM outbox"
)


# --- grid versions -------------------------------------------------------------------------------
VERSION_COLUMNS = (
    "id", "label", "created_at", "is_current", "status", "valid_from", "valid_to",
    "source", "crs", "created_by", "published_at", "published_by",
)
VERSION_TIMES = ("created_at", "valid_from", "valid_to", "published_at")


def version_from_values(v: Mapping[str, Any], parse: Callable[[Any], datetime | None]) -> GridVersion:
    """A GridVersion from a row of VERSION_COLUMNS; `parse` turns a stored time into an aware datetime."""
    times = {k: parse(v[k]) if v[k] is not None else None for k in VERSION_TIMES}
    return GridVersion(
        id=int(v["id"]), label=v["label"], created_at=times["created_at"], is_current=bool(v["is_current"]),  # type: ignore[arg-type]
        status=v["status"], valid_from=times["valid_from"], valid_to=times["valid_to"], source=v["source"],
        crs=v["crs"], created_by=v["created_by"], published_at=times["published_at"], published_by=v["published_by"],
    )


def near_bbox(points: Sequence[tuple[float, float]], radius_m: float) -> tuple[float, float, float, float]:
    """The lon/lat box holding every point grown by `radius_m` (a prefilter for `within_radius`)."""
    lons = [p[0] for p in points]
    lats = [p[1] for p in points]
    dlat = radius_m / 111_195.0
    dlon = radius_m / (111_195.0 * max(math.cos(math.radians(max(abs(min(lats)), abs(max(lats))))), 1e-6))
    return min(lons) - dlon, min(lats) - dlat, max(lons) + dlon, max(lats) + dlat


def within_radius(incidents: Sequence[Incident], points: Sequence[tuple[float, float]], radius_m: float) -> list[Incident]:
    """The incidents whose route point is within `radius_m` metres (haversine) of any of the points."""
    if not incidents or not points:
        return []
    import numpy as np

    r = 6_371_008.8
    ilon = np.radians([i.route.lon for i in incidents])[:, None]
    ilat = np.radians([i.route.lat for i in incidents])[:, None]
    plon = np.radians([p[0] for p in points])[None, :]
    plat = np.radians([p[1] for p in points])[None, :]
    a = np.sin((plat - ilat) / 2) ** 2 + np.cos(ilat) * np.cos(plat) * np.sin((plon - ilon) / 2) ** 2
    d = 2 * r * np.arcsin(np.sqrt(np.minimum(a, 1.0)))
    near = (d <= radius_m).any(axis=1)
    return [i for i, ok in zip(incidents, near.tolist(), strict=True) if ok]


# --- devices, readings (migration 0004) ----------------------------------------------------------
DEVICE_STATE_NAMES = ("unknown", "online", "offline")


def check_device_state(state: str) -> str:
    """Return `state` if it is one of DEVICE_STATE_NAMES; ValueError else."""
    if state not in DEVICE_STATE_NAMES:
        raise ValueError(f"device state {state!r}: expected one of {', '.join(DEVICE_STATE_NAMES)}")
    return state


def last_copies(devices: Iterable[Device]) -> list[Device]:
    """The devices with the last copy of each id winning, in order of first appearance."""
    return list({d.id: d for d in devices}.values())


def check_identities(devices: Sequence[Device], stored: Iterable[tuple[str, str | None]]) -> None:
    """Refuse a registration that would give one identity to two devices (IdentityConflictError).

    `devices`: the registration (one copy per id); `stored`: (id, identity) of the stored rows whose id
    or identity the registration touches. A stored holder that the registration moves to another
    identity (or none) gives its identity up.
    """
    wanted = {d.id: d for d in devices}
    owner: dict[str, str] = {}
    for d in devices:
        if d.identity is None:
            continue
        other = owner.setdefault(d.identity, d.id)
        if other != d.id:
            raise IdentityConflictError(d.identity, d.id, other)
    for holder, identity in stored:
        if identity is None or identity not in owner:
            continue
        if holder in wanted and wanted[holder].identity != identity:
            continue  # the holder gives it up in this registration
        if owner[identity] != holder:
            raise IdentityConflictError(identity, owner[identity], holder)


def reading_rows(readings: Iterable[Reading]) -> list[tuple[str, datetime, str, float, str | None]]:
    """(device_id, ts in UTC, metric, value, unit) of the readings with a finite value, text cleaned."""
    text = fast_text
    rows = []
    for r in readings:
        value = float(r.value)
        if not math.isfinite(value):
            continue
        rows.append((text(r.device_id), to_utc(r.ts, "reading.ts"), text(r.metric), value, text(r.unit)))  # type: ignore[arg-type]
    return rows


#: Width of the buckets of Store.readings.
BUCKET_WIDTH = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1)}


def check_bucket(bucket: str) -> timedelta | None:
    """The width of a bucket name ("raw": None); ValueError for an unknown name."""
    if bucket == "raw":
        return None
    width = BUCKET_WIDTH.get(bucket)
    if width is None:
        raise ValueError(f"readings bucket {bucket!r}: expected one of raw, {', '.join(BUCKET_WIDTH)}")
    return width


def floor_bucket(value: datetime, width: timedelta) -> datetime:
    """The start (UTC) of the bucket holding `value`: buckets are aligned on the UTC epoch."""
    utc = to_utc(value)
    step = int(width.total_seconds())
    seconds = utc.hour * 3600 + utc.minute * 60 + utc.second  # 1m and 1h divide a day
    return utc.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(seconds=seconds - seconds % step)


def bucket_window(since: datetime, until: datetime, width: timedelta) -> tuple[datetime, datetime]:
    """The sample times [lo, hi) covering every bucket that overlaps [since, until), whole."""
    lo = floor_bucket(since, width)
    hi = floor_bucket(until, width)
    if hi != to_utc(until):
        hi += width
    return lo, hi
