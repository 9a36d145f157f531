"""Traccar's OsmAnd protocol: a phone's HTTP GET/POST with query or form parameters → PatrollerPosition.

`http://<server>/?id=p-007&lat=27.6231&lon=113.8544&timestamp=1795220102&accuracy=8&speed=1.2&bearing=90&altitude=58&batt=81`
(what Traccar Client and OsmAnd's online tracking send). The HTTP endpoint parses the query string / form
body into a mapping and calls `decode_query(params, received_at, raw=<the raw query or body bytes>)`.

| parameter | meaning |
|---|---|
| `id` or `deviceid` | the patroller id (required) |
| `lat`, `lon`, or `location=lat,lon` | WGS84 degrees (required; out-of-range → `schema`) |
| `timestamp` | epoch seconds, epoch ms, or ISO-8601 / `yyyy-MM-dd HH:mm:ss` (zoneless → device-local, as Traccar reads it with the server's zone); missing → the receive time |
| `accuracy` | metres, ≥ 0 (→ PatrollerPosition.acc; an unreadable one is dropped) |
| `valid` | `false` / `0`: the phone says the fix is not valid → nothing (`[]`): an old or no-fix position must not move the patroller |
| `speed` (knots), `bearing`/`heading`, `altitude`, `batt`, `charge`, `hdop`, … | not carried by PatrollerPosition: ignored |
Missing or malformed required parameters → dead letter `schema` naming the parameter.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import parse_qsl

from ingest.adapters.common import NOT_UTF8, SCHEMA, dead_letter, require_aware
from ingest.adapters.shared import short
from ingest.adapters.timestamps import vendor_ts
from ingest.model import DeadLetter, Normalized, PatrollerPosition

logger = logging.getLogger(__name__)

DEFAULT_TOPIC = "http/osmand"
MAX_ID_CHARS = 128
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,3})?")
_INVALID = frozenset({"false", "0", "no"})


def _float(text: str | None) -> float | None:
    if text is None or len(text) > 40:
        return None
    text = text.strip()
    if _DECIMAL.fullmatch(text) is None:
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def decode_raw(raw: bytes, received_at: datetime, *, topic: str = DEFAULT_TOPIC) -> list[Normalized] | DeadLetter:
    """Decode an OsmAnd request given as its URL-encoded parameters (query string, form body, or both
    joined by `&`): what the HTTP route receives and what a dead letter of it stores for replay."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return dead_letter(topic, raw, received_at, NOT_UTF8, f"parameters are not UTF-8: {exc.reason} at byte {exc.start}")
    return decode_query(dict(parse_qsl(text, keep_blank_values=True)), received_at, topic=topic, raw=raw)


def decode_query(
    params: Mapping[str, str],
    received_at: datetime,
    *,
    topic: str = DEFAULT_TOPIC,
    raw: bytes,
) -> list[Normalized] | DeadLetter:
    """Decode one OsmAnd request's parameters into [PatrollerPosition], [] or a DeadLetter."""
    require_aware(received_at)
    problems: list[str] = []

    def param(name: str) -> str | None:
        value = params.get(name)
        return value if isinstance(value, str) else None

    id_name = "id" if param("id") is not None else "deviceid"
    patroller = (param(id_name) or "").strip()
    if not patroller:
        problems.append("id: required parameter is missing (id or deviceid)")
    elif len(patroller) > MAX_ID_CHARS or any(ch in patroller for ch in "/+#\x00"):
        problems.append(f"{id_name}: expected an id of at most {MAX_ID_CHARS} characters without / + # "
                        f"(got {short(patroller)})")
    lat_text, lon_text = param("lat"), param("lon")
    lat_name, lon_name = "lat", "lon"
    if lat_text is None and lon_text is None and param("location") is not None:
        parts = (param("location") or "").split(",")
        if len(parts) == 2:
            lat_text, lon_text = parts
            lat_name = lon_name = "location"
        else:
            problems.append(f"location: expected lat,lon (got {short(param('location'))})")
            lat_name = lon_name = ""
    for name, text, limit in ((lat_name, lat_text, 90.0), (lon_name, lon_text, 180.0)):
        if not name:
            continue
        label = "lat" if limit == 90.0 else "lon"
        value = _float(text)
        if text is None:
            problems.append(f"{label}: required parameter is missing (lat and lon, or location=lat,lon)")
        elif value is None or not -limit <= value <= limit:
            problems.append(f"{name}: expected {label} as a number in [-{limit:g}, {limit:g}] (got {short(text)})")
    if problems:
        return dead_letter(topic, raw, received_at, SCHEMA, "; ".join(problems))
    lat, lon = _float(lat_text), _float(lon_text)
    assert lat is not None and lon is not None
    valid = param("valid")
    if valid is not None and valid.strip().lower() in _INVALID:
        logger.debug("osmand %s: valid=%s; position not used", patroller, valid)
        return []
    acc = _float(param("accuracy"))
    if acc is not None and acc < 0:
        acc = None
    vt = vendor_ts(param("timestamp"), received_at)
    if vt.warning:
        logger.info("osmand %s: %s", patroller, vt.warning)
    return [PatrollerPosition(patroller_id=patroller, ts=vt.utc, lon=lon, lat=lat, acc=acc)]
