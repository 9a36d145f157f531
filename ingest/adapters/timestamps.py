"""Vendor timestamps → aware UTC, with the source's offset kept and every quirk named.

Devices in the field send: ISO-8601 with a zone (`2026-11-21T08:15:02+08:00`), ISO-8601 *without*
one (Hikvision and Dahua firmwares send device-local wall time), `2026-11-21 08:15:02` with a space,
epoch seconds or epoch milliseconds (as numbers or digit strings), and zeroed or unset clocks
(`0000-00-00T00:00:00`, `1970-01-01…`, epoch 0) from a device that lost its RTC. `vendor_ts`
turns each into a UTC datetime and says what it did: `offset` is what the source carried
(`+08:00`, `Z`, `epoch`, `assumed +08:00`, `received`), and `warning` is set whenever a guess was
made, so the stored alarm shows it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

DEVICE_TZ: tzinfo = ZoneInfo("Asia/Shanghai")
"""Device-local time without a zone is read in this zone (the sample district's; settings may change it)."""
MIN_VALID = datetime(2000, 1, 1, tzinfo=UTC)
"""Anything before this is an unset device clock, not a real event time."""
MAX_AHEAD = timedelta(days=1)
"""A timestamp further ahead of the receive time than this is not believed either."""
_EPOCH_MS = 100_000_000_000  # above this an epoch number is milliseconds (year 5138 in seconds)
_ZEROED = re.compile(r"^0{4}-0{2}-0{2}")


@dataclass(frozen=True, slots=True)
class VendorTs:
    """A parsed vendor timestamp."""

    utc: datetime
    offset: str
    warning: str | None = None


def _offset_text(ts: datetime) -> str:
    off = ts.utcoffset()
    if off is None:
        return "none"
    if off == timedelta(0):
        return "Z"
    total = int(off.total_seconds() // 60)
    sign = "+" if total >= 0 else "-"
    return f"{sign}{abs(total) // 60:02d}:{abs(total) % 60:02d}"


def _received(received_at: datetime, why: str) -> VendorTs:
    return VendorTs(received_at.astimezone(UTC), "received", f"{why}; used the receive time")


def _checked(ts: datetime, offset: str, received_at: datetime, warning: str | None) -> VendorTs:
    utc = ts.astimezone(UTC)
    if utc < MIN_VALID:
        return _received(received_at, f"device clock unset ({utc:%Y-%m-%d})")
    if utc - received_at > MAX_AHEAD:
        return _received(received_at, f"timestamp {utc.isoformat()} is more than a day ahead")
    return VendorTs(utc, offset, warning)


def from_epoch(value: float, received_at: datetime) -> VendorTs:
    """Epoch seconds or milliseconds (told apart by size) → UTC."""
    if not math.isfinite(value) or value <= 0:
        return _received(received_at, f"epoch {value!r} is not a time")
    unit = "s"
    if value >= _EPOCH_MS:
        value, unit = value / 1000.0, "ms"
    if value >= 32503680000:  # year 3000
        return _received(received_at, f"epoch {value!r} is out of range")
    return _checked(datetime.fromtimestamp(value, tz=UTC), f"epoch {unit}", received_at, None)


def vendor_ts(value: object, received_at: datetime, *, local_tz: tzinfo = DEVICE_TZ) -> VendorTs:
    """Parse any vendor timestamp; never raises (a missing or unreadable one → the receive time, with a warning)."""
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware (UTC)")
    if value is None or value == "":
        return _received(received_at, "no timestamp")
    if isinstance(value, bool):
        return _received(received_at, f"timestamp {value!r} is not a time")
    if isinstance(value, int | float):
        try:
            return from_epoch(float(value), received_at)
        except OverflowError:  # an int beyond float range (JSON allows any length)
            return _received(received_at, "epoch number is out of range")
    if not isinstance(value, str):
        return _received(received_at, f"timestamp of type {type(value).__name__} is not a time")
    text = value.strip()
    if len(text) > 64:
        return _received(received_at, "timestamp is longer than 64 characters")
    if re.fullmatch(r"\d{9,14}(\.\d+)?", text):
        return from_epoch(float(text), received_at)
    if _ZEROED.match(text):
        return _received(received_at, f"zeroed timestamp {text!r}")
    try:
        ts = datetime.fromisoformat(text.replace(" ", "T", 1) if " " in text[:11] else text)
    except ValueError:
        return _received(received_at, f"timestamp {text!r} is not ISO-8601 or epoch")
    if ts.tzinfo is None or ts.utcoffset() is None:
        local = ts.replace(tzinfo=local_tz)
        assumed = _offset_text(local)
        return _checked(local, f"assumed {assumed}", received_at, f"timestamp {text!r} has no zone; read as device-local {assumed}")
    return _checked(ts, _offset_text(ts), received_at, None)


def fixed_offset(minutes: int) -> timezone:
    """A fixed UTC offset (for devices whose registry entry says which zone their clock is in)."""
    return timezone(timedelta(minutes=minutes))
