"""Helpers of the API tests: the seeded sample district, a runtime on a fixed clock, MQTT-shaped messages."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

import httpx
from fastapi.testclient import TestClient

from api.app import create_app
from api.cli import SAMPLE_LABEL
from api.runtime import Runtime
from api.settings import Settings
from geo.district import build_sample_district
from geo.model import Device, District
from ingest.client import Message
from store.ports import Store

PROBLEM = "application/problem+json"
CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
"""Monday 10:00 in Asia/Shanghai: the weekday day shift (08:00-20:00) is on duty."""


@lru_cache(maxsize=1)
def sample_district() -> District:
    """The sample district of `gridwatch seed` (seed 7), built once per session (it is immutable)."""
    return build_sample_district(seed=7)


def seed(store: Store) -> int:
    """Load the sample district into `store` exactly as `api.cli.seed_store` does; return the version id."""
    return store.load_district(sample_district(), SAMPLE_LABEL).id


class Clock:
    """A settable clock for the runtime (aware UTC)."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        """Move the clock forward by a timedelta given as keywords (minutes=12, …)."""
        self.now += timedelta(**delta)
        return self.now


def make_runtime(store: Store, clock: Clock, **settings: Any) -> Runtime:
    """A runtime over an already seeded store (it loads the grid index at construction)."""
    return Runtime(Settings(_env_file=None, database_url=store.url, demo=True, **settings), store, clock=clock)


@contextmanager
def client_for(rt: Runtime, *, raise_server_exceptions: bool = True) -> Iterator[TestClient]:
    """A TestClient over `create_app(settings, rt)`, with the lifespan run."""
    app = create_app(rt.settings, rt)
    with TestClient(app, raise_server_exceptions=raise_server_exceptions) as client:
        yield client


def message(topic: str, payload: bytes, at: datetime = T0) -> Message:
    """An inbound MQTT message as the worker hands it to Runtime.handle_messages."""
    return Message(topic=topic, payload=payload, mid=0, qos=1, received_at=at)


def alarm_payload(
    msg_id: str,
    *,
    type_: str = "fence.intrusion",
    at: datetime = T0,
    severity: int = 3,
    lon: float | None = None,
    lat: float | None = None,
    zone: str | None = None,
    data: dict[str, Any] | None = None,
) -> bytes:
    """An alarm v1 payload (design §4); `ts` is written in +08:00 to exercise zone handling."""
    body: dict[str, Any] = {
        "id": msg_id,
        "ts": at.astimezone(CST).isoformat(),
        "type": type_,
        "severity": severity,
    }
    if lon is not None:
        body["lon"], body["lat"] = lon, lat
    if zone is not None:
        body["zone"] = zone
    if data is not None:
        body["data"] = data
    return json.dumps(body).encode()


def alarm_message(device_id: str, msg_id: str, *, at: datetime = T0, **fields: Any) -> Message:
    """An alarm v1 message of `device_id` on its alarm topic."""
    return message(f"gridwatch/devices/{device_id}/alarm", alarm_payload(msg_id, at=at, **fields), at)


def location_message(patroller_id: str, lon: float, lat: float, *, at: datetime = T0, acc: float | None = None) -> Message:
    """A gridwatch location message of a patroller's phone."""
    body: dict[str, Any] = {"ts": at.isoformat(), "lon": lon, "lat": lat}
    if acc is not None:
        body["acc"] = acc
    return message(f"gridwatch/patrollers/{patroller_id}/location", json.dumps(body).encode(), at)


def problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    """Assert `resp` is an RFC 9457 problem with `status`; return its body."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].split(";")[0] == PROBLEM
    body: dict[str, Any] = resp.json()
    assert body["status"] == status
    assert body["type"].startswith("https://") and body["title"] and body["detail"]
    return body



# --- reading a rendered folium map wall ---------------------------------------------------------
_GEOJSON_DATA = re.compile(r"geo_json_\w+_add\((\{.*\})\);")
_CIRCLE_MARKER = re.compile(r"L\.circleMarker\(\s*\[([^\]]+)\],\s*(\{.*?\})\s*\)", re.DOTALL)


def wall_grids(html: str) -> dict[str, dict[str, Any]]:
    """The grid features embedded in a map wall page, by code: their properties (fill, open_incidents, …)."""
    found = _GEOJSON_DATA.findall(html)
    assert len(found) == 1, f"expected one grids GeoJSON layer, found {len(found)}"
    features = json.loads(found[0])["features"]
    by_code = {f["properties"]["code"]: f["properties"] for f in features}
    assert len(by_code) == len(features), "grid codes repeat in the map wall"
    return by_code


def wall_markers(html: str) -> list[tuple[float, float, str]]:
    """The incident markers of a map wall page: (lat, lon, colour) (device markers, radius 4, left out)."""
    return [m for m in _markers(html, devices=False)]


def device_markers(html: str) -> list[tuple[float, float, str]]:
    """The device markers of a map wall page: (lat, lon, colour by state)."""
    return [m for m in _markers(html, devices=True)]


def _markers(html: str, *, devices: bool) -> list[tuple[float, float, str]]:
    out = []
    for latlon, options in _CIRCLE_MARKER.findall(html):
        opts = json.loads(options)
        if (opts.get("radius") == 4) != devices:
            continue
        lat, lon = (float(v) for v in latlon.split(","))
        out.append((lat, lon, opts["color"]))
    return out


# --- incidents of the sample district -------------------------------------------------------------
LIMIT_MINUTES = {"fence.intrusion": 15, "fence.cut": 30, "thermal.fire": 5}
"""The handling limits (alerts.sla defaults) of the three incidents `feed_incidents` opens."""


def incident_devices() -> dict[str, Device]:
    """Three devices of the sample district in three different level-1 grids, by incident type."""
    devices = sorted(sample_district().devices, key=lambda d: d.id)
    chosen: dict[str, Device] = {}
    used_l1: set[str] = set()
    for type_, kind in (("fence.intrusion", "fence"), ("fence.cut", "fence"), ("thermal.fire", "thermal")):
        device = next(d for d in devices if d.kind == kind and d.grid_code[:9] not in used_l1)
        chosen[type_] = device
        used_l1.add(device.grid_code[:9])
    return chosen


def feed_incidents(rt: Runtime) -> dict[str, str]:
    """Open one auto-dispatched incident per type of `LIMIT_MINUTES` at the runtime's now; return ids by type."""
    devices = incident_devices()
    now = rt.now()
    result = rt.handle_messages(
        [alarm_message(d.id, f"msg-{i}", at=now, type_=t) for i, (t, d) in enumerate(devices.items())]
    )
    assert len(result.incidents_created) == 3, result
    by_type = {}
    for incident_id in result.incidents_created:
        incident = rt.store.incident(incident_id)
        assert incident is not None
        by_type[incident.type] = incident_id
    return by_type
