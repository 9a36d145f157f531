"""Pieces the adapters share: size/UTF-8/JSON checks, zoned timestamps, dead-letter details, vendor-event helpers."""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationError
from pydantic_core import PydanticCustomError

from ingest.adapters.timestamps import VendorTs, vendor_ts
from ingest.model import Alarm, DeadLetter, Normalized, Reading

MAX_PAYLOAD_BYTES = 64 * 1024
"""Payloads above this are dead-lettered before any parsing (a device cannot make us parse megabytes)."""

# Dead-letter reasons: short, stable slugs (stored, counted and filtered on; never rename them).
PAYLOAD_TOO_LARGE = "payload_too_large"
NOT_UTF8 = "not_utf8"
INVALID_JSON = "invalid_json"
SCHEMA = "schema"
TS_WITHOUT_ZONE = "ts_without_zone"
UNSUPPORTED_MESSAGE = "unsupported_message"
INVALID_XML = "invalid_xml"
UNHANDLED_TOPIC = "unhandled_topic"  # the same slug as ingest.decode.UNHANDLED_TOPIC

CAMERA_SEVERITY: dict[str, int] = {
    "camera.motion": 2,
    "camera.line_crossing": 3,
    "camera.region_entrance": 3,
    "camera.region_exit": 2,
    "camera.tamper": 3,
    "thermal.fire": 5,
    "thermal.overheat": 4,
}
"""Default severity of the camera/thermal alarm types the vendor camera adapters (Dahua, Hikvision) map to."""
OTHER_SEVERITY = 2
"""Severity of a vendor event the camera adapters do not know (`other.<vendor>_<name>`)."""
MAX_EPOCH_INT = 10**18
"""A JSON integer beyond this is no believable epoch (and float() of a far larger one raises)."""

TS_EXAMPLE = "2026-11-21T08:15:02+08:00"
"""The zoned ISO-8601 time named in dead-letter details."""

_MAX_DETAIL = 500


def _zoned_ts(value: Any) -> datetime:
    # Parsed here, not by pydantic: pydantic would also take epoch numbers and digit strings.
    if not isinstance(value, str) or len(value) > 64:
        raise PydanticCustomError("iso_timestamp", f"expected an ISO-8601 string with a zone, e.g. {TS_EXAMPLE}")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError(
            "iso_timestamp", f"expected an ISO-8601 timestamp with a zone, e.g. {TS_EXAMPLE}"
        ) from None
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise PydanticCustomError(TS_WITHOUT_ZONE, f"expected a zone offset (Z or ±hh:mm), e.g. {TS_EXAMPLE}")
    return ts


ZonedTimestamp = Annotated[datetime, BeforeValidator(_zoned_ts)]
"""An ISO-8601 string that carries a zone; a zoneless one fails with error type `ts_without_zone`."""
Latitude = Annotated[float, Field(ge=-90, le=90, strict=True, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180, le=180, strict=True, allow_inf_nan=False)]


def dead_letter(topic: str, payload: bytes, received_at: datetime, reason: str, detail: str) -> DeadLetter:
    """Build a DeadLetter, capping the detail's length."""
    if len(detail) > _MAX_DETAIL:
        detail = detail[: _MAX_DETAIL - 1] + "…"
    return DeadLetter(topic=topic, payload=payload, reason=reason, detail=detail, received_at=received_at)


def require_aware(received_at: datetime) -> None:
    """Refuse a naive receive time (a caller's bug, not a device's: raised, never dead-lettered)."""
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware (UTC)")


def check_size(topic: str, payload: bytes, received_at: datetime) -> DeadLetter | None:
    """A `payload_too_large` DeadLetter for a payload above MAX_PAYLOAD_BYTES, else None."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return dead_letter(
            topic, payload, received_at, PAYLOAD_TOO_LARGE,
            f"payload is {len(payload)} bytes; expected at most {MAX_PAYLOAD_BYTES}",
        )
    return None


def utf8_text(topic: str, payload: bytes, received_at: datetime, *, bom: bool = True) -> str | DeadLetter:
    """The payload as text (a leading BOM dropped unless `bom=False`), or a `not_utf8` DeadLetter."""
    try:
        return payload.decode("utf-8-sig" if bom else "utf-8")
    except UnicodeDecodeError as exc:
        detail = f"payload is not UTF-8: {exc.reason} at byte {exc.start}"
        return dead_letter(topic, payload, received_at, NOT_UTF8, detail)


def payload_text(topic: str, payload: bytes, received_at: datetime) -> str | DeadLetter:
    """check_size, then utf8_text: the payload as text, or the first DeadLetter."""
    too_large = check_size(topic, payload, received_at)
    if too_large is not None:
        return too_large
    return utf8_text(topic, payload, received_at)


def json_value(text: str, topic: str, payload: bytes, received_at: datetime) -> Any:
    """`text` parsed as JSON (NaN/Infinity refused), or an `invalid_json` DeadLetter."""
    try:
        return json.loads(text, parse_constant=reject_constant)
    except ValueError as exc:  # json.JSONDecodeError and the NaN/Infinity refusal
        return dead_letter(topic, payload, received_at, INVALID_JSON, f"payload is not JSON: {exc}")
    except RecursionError:
        return dead_letter(topic, payload, received_at, INVALID_JSON, "payload is nested too deeply")


def load_json(payload: bytes, topic: str, received_at: datetime) -> Any:
    """Check size, UTF-8 and JSON syntax, in that order; return the JSON value or a DeadLetter."""
    text = payload_text(topic, payload, received_at)
    if isinstance(text, DeadLetter):
        return text
    return json_value(text, topic, payload, received_at)


def load_json_object(payload: bytes, topic: str, received_at: datetime) -> dict[str, Any] | DeadLetter:
    """Check size, UTF-8 and JSON syntax, in that order; return the top-level object or a DeadLetter."""
    obj = load_json(payload, topic, received_at)
    if isinstance(obj, DeadLetter):
        return obj
    if not isinstance(obj, dict):
        return dead_letter(
            topic, payload, received_at, SCHEMA, f"payload: expected a JSON object, got {type(obj).__name__}"
        )
    return obj


def reject_constant(name: str) -> float:
    """json's parse_constant: NaN, Infinity and -Infinity are not JSON."""
    raise ValueError(f"{name} is not valid JSON")


def schema_dead_letter(err: ValidationError, topic: str, payload: bytes, received_at: datetime) -> DeadLetter:
    """Turn a pydantic ValidationError into a DeadLetter naming each bad field and what was expected."""
    errors = err.errors(include_url=False)
    only_zone = bool(errors) and all(e["type"] == TS_WITHOUT_ZONE for e in errors)
    return dead_letter(topic, payload, received_at, TS_WITHOUT_ZONE if only_zone else SCHEMA, schema_detail(err))


def schema_detail(err: ValidationError) -> str:
    """`field: what was expected (got value)` for every error, joined by `; `."""
    parts = []
    for e in err.errors(include_url=False):
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "missing":
            parts.append(f"{loc}: required field is missing")
            continue
        if not loc:  # a model-level rule: its message names the fields, the input is the whole payload
            parts.append(str(e["msg"]))
            continue
        parts.append(f"{loc}: {e['msg']} (got {_short(e.get('input'))})")
    return "; ".join(parts)


def _short(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


# --- vendor event helpers (Dahua, ONVIF, Hikvision, Frigate) -----------------------------------------------
def event_topic_device(topic: str, log: logging.Logger, vendor: str) -> str | None:
    """The device of a `<prefix>/<device>/event` topic (the bridges' form); None (logged) for any other topic."""
    levels = topic.split("/")
    if len(levels) < 3 or levels[-1] != "event" or not levels[-2]:
        log.debug("%s: %s is not a <prefix>/<device>/event topic; ignored", vendor, topic)
        return None
    return levels[-2]


def receive_time_msg_id(msg_id: str, vt: VendorTs, received_at: datetime, warnings: list[str], time_name: str) -> str:
    """`msg_id`, made unique by the receive time (with a warning) when the event carried no usable time."""
    if vt.offset == "received":
        msg_id += f"@{received_at.isoformat()}"
        warnings.append(
            f"no usable {time_name}: the message id includes the receive time (a redelivery may repeat it)"
        )
    return msg_id


def capped_vendor_ts(value: Any, received_at: datetime) -> VendorTs:
    """vendor_ts, with JSON integers beyond the float range made unreadable first (float() would raise)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_EPOCH_INT:
        value = math.inf
    return vendor_ts(value, received_at)


def camera_alarm(
    device_id: str,
    msg_id: str,
    vt: VendorTs,
    alarm_type: str,
    severity: int,
    received_at: datetime,
    raw: bytes,
    data: dict[str, Any],
    warnings: list[str],
    reading: Reading | None = None,
    *,
    zone: str | None = None,
) -> list[Normalized]:
    """[the event's Alarm at `vt`], followed by `reading` (a measurement the event carried) if given."""
    outputs: list[Normalized] = [
        Alarm(
            device_id=device_id,
            msg_id=msg_id,
            ts=vt.utc,
            type=alarm_type,
            severity=severity,
            received_at=received_at,
            raw=raw,
            zone=zone,
            data=data,
            warnings=tuple(warnings),
        )
    ]
    if reading is not None:
        outputs.append(reading)
    return outputs


def show(value: Any) -> str:
    """repr() of a value for a dead letter's `(got …)`, cut at 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"
