"""Patroller positions: gridwatch location JSON and OwnTracks `_type: location` → PatrollerPosition.

- `gridwatch/patrollers/{patroller_id}/location`: `{"ts": ISO-8601 with zone, "lat", "lon", "acc"?}`.
- `owntracks/{user}/{device}` (and `owntracks/{user}/{device}/event` for transitions): the OwnTracks app's
  JSON; the patroller id is the OwnTracks `user` (the phone's device name is ignored). `tst` is epoch
  seconds (UTC), `acc` metres. `decode_owntracks_all` returns a list:
  - `_type: location` → [PatrollerPosition];
  - `_type: transition` (`event` enter/leave of a region `desc`, with `tst`, `lat`, `lon`, `acc`) →
    [PatrollerPosition]: it is a fix like any other; the region event itself is not used;
  - `_type: lwt` (the app's MQTT will, published by the broker when the phone's connection is lost) →
    [DeviceStatus(device_id=f"patroller:{user}", online=False, source="will")]. Its `tst` is the time the
    app *connected* (OwnTracks booklet), not when it went away, so ts = the receive time and `tst` is kept
    in data (`connected_at`, `ts_source`);
  - other types (`waypoint`, `status`, `card`, `cmd`, …) → [] (logged at debug);
  - `_type: encrypted` is dead-lettered (`schema`): ingest cannot read it, and someone should turn
    encryption off on that phone rather than lose the track silently.
  `decode_owntracks` is the older single-result form: the position of a `_type: location`, None for
  every other readable type.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ingest.adapters.common import (
    SCHEMA,
    Latitude,
    Longitude,
    ZonedTimestamp,
    dead_letter,
    load_json_object,
    schema_dead_letter,
)
from ingest.adapters.shared import safe_vendor_ts
from ingest.model import DeadLetter, DeviceStatus, Normalized, PatrollerPosition

logger = logging.getLogger(__name__)

Accuracy = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
_MAX_EPOCH_S = 32503680000  # 3000-01-01: keeps datetime.fromtimestamp in range


class LocationV1(BaseModel):
    """The gridwatch location payload."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    ts: ZonedTimestamp
    lat: Latitude
    lon: Longitude
    acc: Accuracy | None = None


class _OwnTracksFix(BaseModel):
    """The fields of an OwnTracks message with a position that gridwatch uses (subclasses pin `_type`)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    type_: str = Field(alias="_type")
    tst: Annotated[float, Field(strict=True, ge=0, le=_MAX_EPOCH_S, allow_inf_nan=False)]
    lat: Latitude
    lon: Longitude
    acc: Accuracy | None = None


class OwnTracksLocation(_OwnTracksFix):
    """The fields of an OwnTracks `_type: location` message that gridwatch uses."""

    type_: Literal["location"] = Field(alias="_type")


class OwnTracksTransition(_OwnTracksFix):
    """The fields of an OwnTracks `_type: transition` (enter/leave a region) that gridwatch uses."""

    type_: Literal["transition"] = Field(alias="_type")


PATROLLER_PREFIX = "patroller:"
"""Device identity of a patroller's phone in DeviceStatus (its MQTT will)."""


def decode(patroller_id: str, payload: bytes, received_at: datetime, *, topic: str) -> PatrollerPosition | DeadLetter:
    """Decode a gridwatch location payload into a PatrollerPosition, or a DeadLetter with the reason."""
    obj = load_json_object(payload, topic, received_at)
    if isinstance(obj, DeadLetter):
        return obj
    try:
        msg = LocationV1.model_validate(obj)
    except ValidationError as err:
        return schema_dead_letter(err, topic, payload, received_at)
    return PatrollerPosition(patroller_id=patroller_id, ts=msg.ts, lon=msg.lon, lat=msg.lat, acc=msg.acc)


def decode_owntracks(
    user: str, payload: bytes, received_at: datetime, *, topic: str
) -> PatrollerPosition | DeadLetter | None:
    """Decode an OwnTracks message; None for non-location types (ignored), DeadLetter when malformed."""
    kind, out = _owntracks(user, payload, received_at, topic)
    if isinstance(out, DeadLetter):
        return out
    if kind != "location":
        return None
    return next((item for item in out if isinstance(item, PatrollerPosition)), None)


def decode_owntracks_all(
    user: str, payload: bytes, received_at: datetime, *, topic: str
) -> list[Normalized] | DeadLetter:
    """Decode an OwnTracks message into what it says: a position, the phone's will, or nothing."""
    return _owntracks(user, payload, received_at, topic)[1]


def _owntracks(
    user: str, payload: bytes, received_at: datetime, topic: str
) -> tuple[Any, list[Normalized] | DeadLetter]:
    """(the message's `_type`, its decoded list or DeadLetter)."""
    obj = load_json_object(payload, topic, received_at)
    if isinstance(obj, DeadLetter):
        return None, obj
    kind = obj.get("_type")
    if kind == "encrypted":
        return kind, dead_letter(
            topic, payload, received_at, SCHEMA,
            "_type: encrypted OwnTracks payloads are not supported; turn off encryption in the app",
        )
    if kind == "lwt":
        return kind, [_lwt(user, obj, payload, received_at)]
    if kind == "transition":
        model: type[OwnTracksLocation | OwnTracksTransition] = OwnTracksTransition
    elif isinstance(kind, str) and kind != "location":
        logger.debug("owntracks %s: ignoring _type %r on %s", user, kind, topic)
        return kind, []
    else:
        model = OwnTracksLocation
    try:
        msg = model.model_validate(obj)
    except ValidationError as err:
        return kind, schema_dead_letter(err, topic, payload, received_at)
    ts = datetime.fromtimestamp(msg.tst, tz=UTC)
    return kind, [PatrollerPosition(patroller_id=user, ts=ts, lon=msg.lon, lat=msg.lat, acc=msg.acc)]


def _lwt(user: str, obj: dict[str, Any], payload: bytes, received_at: datetime) -> DeviceStatus:
    data: dict[str, Any] = {}
    tst = obj.get("tst")
    if tst is not None:
        data["ts_source"] = str(tst)[:64]
        connected = safe_vendor_ts(tst, received_at)
        if connected.offset != "received":
            data["connected_at"] = connected.utc.isoformat()
    return DeviceStatus(device_id=f"{PATROLLER_PREFIX}{user}", ts=received_at.astimezone(UTC), online=False,
                        source="will", received_at=received_at, raw=payload, data=data)
