"""Patroller positions: gridwatch location JSON and OwnTracks `_type: location` → PatrollerPosition.

- `gridwatch/patrollers/{patroller_id}/location`: `{"ts": ISO-8601 with zone, "lat", "lon", "acc"?}`.
- `owntracks/{user}/{device}`: the OwnTracks app's JSON; the patroller id is the OwnTracks `user`
  (the phone's device name is ignored). `tst` is epoch seconds (UTC), `acc` metres.
  Only `_type: location` is a position. Other OwnTracks types on that topic (`lwt`, `transition`,
  `waypoint`, `status`, `card`, …) are not errors: `decode_owntracks` returns None and logs at debug.
  `_type: encrypted` is dead-lettered (`schema`): ingest cannot read it, and someone should turn
  encryption off on that phone rather than lose the track silently.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Literal

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
from ingest.model import DeadLetter, PatrollerPosition

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


class OwnTracksLocation(BaseModel):
    """The fields of an OwnTracks `_type: location` message that gridwatch uses."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    type_: Literal["location"] = Field(alias="_type")
    tst: Annotated[float, Field(strict=True, ge=0, le=_MAX_EPOCH_S, allow_inf_nan=False)]
    lat: Latitude
    lon: Longitude
    acc: Accuracy | None = None


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
    obj = load_json_object(payload, topic, received_at)
    if isinstance(obj, DeadLetter):
        return obj
    kind = obj.get("_type")
    if kind == "encrypted":
        return dead_letter(
            topic, payload, received_at, SCHEMA,
            "_type: encrypted OwnTracks payloads are not supported; turn off encryption in the app",
        )
    if isinstance(kind, str) and kind != "location":
        logger.debug("owntracks %s: ignoring _type %r on %s", user, kind, topic)
        return None
    try:
        msg = OwnTracksLocation.model_validate(obj)
    except ValidationError as err:
        return schema_dead_letter(err, topic, payload, received_at)
    ts = datetime.fromtimestamp(msg.tst, tz=UTC)
    return PatrollerPosition(patroller_id=user, ts=ts, lon=msg.lon, lat=msg.lat, acc=msg.acc)
