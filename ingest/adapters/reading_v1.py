"""Reading v1 (design §4): `gridwatch/devices/{device_id}/reading` JSON → list[Reading], or a DeadLetter.

One reading, or a JSON list of at most `MAX_READINGS` of them:
```json
{"ts": "2026-11-21T08:15:02+08:00", "metric": "voltage_kv", "value": 7.9, "unit": "kV"}
[{"ts": 1763683502, "metric": "temperature", "value": 21.5, "unit": "°C"},
 {"ts": 1763683502, "metric": "battery", "value": 87, "unit": "%"}]
```
- `ts`: ISO-8601 *with a zone* (`Z` or `±hh:mm`), or epoch seconds / epoch milliseconds as a JSON number
  (told apart by size). This is gridwatch's own format, so it is strict like alarm v1: a zoneless ISO
  time is dead-lettered with reason `ts_without_zone`, anything else unreadable (a digit string, a date
  without a time, `0000-00-00…`) with `schema`. A readable time that cannot be believed (before 2000,
  more than a day ahead) is replaced by the receive time, as `vendor_ts` does everywhere.
- `metric`: 1–64 characters of `[a-z0-9_.]` (snake_case, e.g. `temperature`, `battery`, `voltage_kv`).
- `value`: a finite JSON number (not a boolean, not a string, not NaN/Infinity).
- `unit`: optional string of at most 32 characters, or null.
Unknown fields are ignored. The device id comes from the topic. One bad item dead-letters the whole
message (the device gets one clear error, nothing half-stored); the detail names every bad item and field,
e.g. `[3].value: expected a finite number (got "hot")`.

This is the hot path (20,000 readings/s target), so items are checked by hand rather than by a pydantic
model; a batch's repeated `ts` value is parsed once.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import datetime
from typing import Any

from ingest.adapters.common import (
    SCHEMA,
    TS_EXAMPLE,
    TS_WITHOUT_ZONE,
    dead_letter,
    load_json,
    require_aware,
)
from ingest.adapters.shared import finite, safe_vendor_ts, short
from ingest.adapters.timestamps import VendorTs
from ingest.model import DeadLetter, Reading

logger = logging.getLogger(__name__)

MAX_READINGS = 1000
"""Most readings one message may carry."""
MAX_UNIT_CHARS = 32
_MAX_ERRORS = 5  # named in a dead letter's detail; the rest are counted
_METRIC = re.compile(r"[a-z0-9_.]{1,64}")
_metric_ok = _METRIC.fullmatch
_isfinite = math.isfinite
_BIG = 10**300  # a JSON integer beyond this does not fit a float
_TS_TYPES = (str, int, float)
_MISSING = "required field is missing"
_TS_EXPECTED = f"expected an ISO-8601 time with a zone (e.g. {TS_EXAMPLE}) or epoch seconds/ms as a number"


class _ItemError(Exception):
    """The problems of one item: (field, what was expected) pairs; `zoneless` when all are a zoneless ts."""

    def __init__(self, problems: list[tuple[str, str]], *, zoneless: bool = False) -> None:
        super().__init__(problems)
        self.problems = problems
        self.zoneless = zoneless

    def describe(self, prefix: str = "") -> str:
        sep = "." if prefix else ""
        return "; ".join(f"{prefix}{sep}{name}: {what}" if name else f"{prefix or 'payload'}: {what}"
                         for name, what in self.problems)


def _parse_ts(value: Any, received_at: datetime) -> VendorTs:
    """The strict gridwatch rule first (zoned ISO or an epoch number), then vendor_ts for the conversion."""
    if isinstance(value, str):
        if len(value) > 64:
            raise _ItemError([("ts", f"{_TS_EXPECTED} (got a string of {len(value)} characters)")])
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise _ItemError([("ts", f"{_TS_EXPECTED} (got {short(value)})")]) from None
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            expected = f"expected a zone offset (Z or ±hh:mm), e.g. {TS_EXAMPLE} (got {short(value)})"
            raise _ItemError([("ts", expected)], zoneless=True)
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise _ItemError([("ts", f"{_TS_EXPECTED} (got {short(value)})")])
    return safe_vendor_ts(value, received_at)


def _ts(value: Any, device_id: str, received_at: datetime, ts_cache: dict[Any, VendorTs]) -> VendorTs:
    """`_parse_ts` once per distinct value of a message (a batch usually repeats its ts)."""
    hashable = type(value) in _TS_TYPES  # exact types: True/1/1.0 would share a key otherwise
    if hashable:
        cached = ts_cache.get(value)
        if cached is not None:
            return cached
    vt = _parse_ts(value, received_at)
    if vt.warning is not None:
        logger.info("device %s: reading ts %s", device_id, vt.warning)
    if hashable:
        ts_cache[value] = vt
    return vt


def _item(obj: Any, device_id: str, received_at: datetime, ts_cache: dict[Any, VendorTs]) -> Reading:
    if type(obj) is dict:
        metric = obj.get("metric")
        value = obj.get("value")
        unit = obj.get("unit")
        if (
            type(metric) is str and _metric_ok(metric) is not None
            and ((type(value) is float and _isfinite(value)) or (type(value) is int and -_BIG < value < _BIG))
            and (unit is None or (type(unit) is str and len(unit) <= MAX_UNIT_CHARS))
            and "ts" in obj
        ):
            vt = _ts(obj["ts"], device_id, received_at, ts_cache)  # raises _ItemError for a bad ts
            return Reading(device_id, vt.utc, metric, float(value), unit)
    raise _item_error(obj, device_id, received_at, ts_cache)


def _item_error(obj: Any, device_id: str, received_at: datetime, ts_cache: dict[Any, VendorTs]) -> _ItemError:
    """Every problem of a bad item (the slow path: only for items `_item` refused)."""
    if not isinstance(obj, dict):
        return _ItemError([("", f"expected a JSON object with ts, metric, value (got {short(obj)})")])
    problems: list[tuple[str, str]] = []
    zoneless = False
    if "ts" not in obj:
        problems.append(("ts", _MISSING))
    else:
        try:
            _ts(obj["ts"], device_id, received_at, ts_cache)
        except _ItemError as exc:
            problems.extend(exc.problems)
            zoneless = exc.zoneless
    metric = obj.get("metric")
    if not isinstance(metric, str) or _METRIC.fullmatch(metric) is None:
        problems.append(("metric", _MISSING if "metric" not in obj
                         else f"expected 1-64 characters of a-z 0-9 _ . (got {short(metric)})"))
    value = obj.get("value")
    if finite(value) is None:
        problems.append(("value", _MISSING if "value" not in obj
                         else f"expected a finite number (got {short(value)})"))
    unit = obj.get("unit")
    if unit is not None and (not isinstance(unit, str) or len(unit) > MAX_UNIT_CHARS):
        problems.append(("unit", f"expected a string of at most {MAX_UNIT_CHARS} characters or null "
                                 f"(got {short(unit)})"))
    if not problems:  # cannot happen (the fast path takes exactly these rules); never let it pass silently
        problems.append(("", f"expected a reading object (got {short(obj)})"))
    return _ItemError(problems, zoneless=zoneless and len(problems) == 1)


def decode(device_id: str, payload: bytes, received_at: datetime, *, topic: str) -> list[Reading] | DeadLetter:
    """Decode one reading v1 payload of device `device_id` into Readings, or a DeadLetter with the reason."""
    require_aware(received_at)
    obj = load_json(payload, topic, received_at)
    if isinstance(obj, DeadLetter):
        return obj
    ts_cache: dict[Any, VendorTs] = {}
    if isinstance(obj, dict):
        try:
            return [_item(obj, device_id, received_at, ts_cache)]
        except _ItemError as exc:
            return dead_letter(topic, payload, received_at, TS_WITHOUT_ZONE if exc.zoneless else SCHEMA,
                               exc.describe())
    if not isinstance(obj, list):
        return dead_letter(topic, payload, received_at, SCHEMA,
                           f"payload: expected a JSON object or a list of them, got {type(obj).__name__}")
    if len(obj) > MAX_READINGS:
        return dead_letter(topic, payload, received_at, SCHEMA,
                           f"payload: expected at most {MAX_READINGS} readings, got {len(obj)}")
    if not obj:
        logger.debug("device %s: empty reading list on %s", device_id, topic)
    out: list[Reading] = []
    failures: list[str] = []
    zoneless = True
    bad = 0
    for index, item in enumerate(obj):
        try:
            out.append(_item(item, device_id, received_at, ts_cache))
        except _ItemError as exc:
            bad += 1
            zoneless = zoneless and exc.zoneless
            if len(failures) < _MAX_ERRORS:
                failures.append(exc.describe(f"[{index}]"))
    if bad:
        detail = "; ".join(failures)
        if bad > len(failures):
            detail += f"; and {bad - len(failures)} more bad items"
        return dead_letter(topic, payload, received_at, TS_WITHOUT_ZONE if zoneless else SCHEMA, detail)
    return out
