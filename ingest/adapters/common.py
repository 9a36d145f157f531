"""Pieces every JSON adapter shares: size/UTF-8/JSON checks, zoned timestamps, dead-letter details."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationError
from pydantic_core import PydanticCustomError

from ingest.model import DeadLetter

MAX_PAYLOAD_BYTES = 64 * 1024
"""Payloads above this are dead-lettered before any parsing (a device cannot make us parse megabytes)."""

# Dead-letter reasons: short, stable slugs (stored, counted and filtered on; never rename them).
PAYLOAD_TOO_LARGE = "payload_too_large"
NOT_UTF8 = "not_utf8"
INVALID_JSON = "invalid_json"
SCHEMA = "schema"
TS_WITHOUT_ZONE = "ts_without_zone"

_MAX_DETAIL = 500
_TS_EXAMPLE = "2026-11-21T08:15:02+08:00"


def _zoned_ts(value: Any) -> datetime:
    # Parsed here, not by pydantic: pydantic would also take epoch numbers and digit strings.
    if not isinstance(value, str) or len(value) > 64:
        raise PydanticCustomError("iso_timestamp", f"expected an ISO-8601 string with a zone, e.g. {_TS_EXAMPLE}")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError(
            "iso_timestamp", f"expected an ISO-8601 timestamp with a zone, e.g. {_TS_EXAMPLE}"
        ) from None
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise PydanticCustomError(TS_WITHOUT_ZONE, f"expected a zone offset (Z or ±hh:mm), e.g. {_TS_EXAMPLE}")
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


def load_json_object(payload: bytes, topic: str, received_at: datetime) -> dict[str, Any] | DeadLetter:
    """Check size, UTF-8 and JSON syntax, in that order; return the top-level object or a DeadLetter."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return dead_letter(
            topic, payload, received_at, PAYLOAD_TOO_LARGE,
            f"payload is {len(payload)} bytes; expected at most {MAX_PAYLOAD_BYTES}",
        )
    try:
        text = payload.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        detail = f"payload is not UTF-8: {exc.reason} at byte {exc.start}"
        return dead_letter(topic, payload, received_at, NOT_UTF8, detail)
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:  # json.JSONDecodeError and the NaN/Infinity refusal
        return dead_letter(topic, payload, received_at, INVALID_JSON, f"payload is not JSON: {exc}")
    except RecursionError:
        return dead_letter(topic, payload, received_at, INVALID_JSON, "payload is nested too deeply")
    if not isinstance(obj, dict):
        return dead_letter(
            topic, payload, received_at, SCHEMA, f"payload: expected a JSON object, got {type(obj).__name__}"
        )
    return obj


def _reject_constant(name: str) -> float:
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
