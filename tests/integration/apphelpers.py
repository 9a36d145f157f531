"""Helpers of the API tests: the seeded sample district, a runtime on a fixed clock, MQTT-shaped messages."""

from __future__ import annotations

import json
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
    """Load the sample district into `store` as `api.cli.seed_store` does, valid from a day before T0 (the
    tests' clock: a publish at the clock's time must come after it, whatever the real date); return its id."""
    return store.load_district(sample_district(), SAMPLE_LABEL, at=T0 - timedelta(days=1)).id


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


TEST_HASH = "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$not-a-password-login-is-by-token-only"
"""The stored hash of test users: their tests get tokens from `token_headers` and never log in by password."""


def token_headers(rt: Runtime, role: str = "admin", *, grid: str | None = None, patroller: str | None = None,
                  username: str | None = None) -> dict[str, str]:
    """An `Authorization` header for a user of `role` (created in the runtime's store when missing)."""
    from api.auth import Principal, issue_token
    from store.ports import UserRecord

    name = username or f"test-{role}" + (f"-{grid}" if grid else "") + (f"-{patroller}" if patroller else "")
    user = rt.store.user(name)
    if user is None:
        user = UserRecord(name, TEST_HASH, role, grid, patroller)
        rt.store.save_user(user, at=rt.now())
    token = issue_token(Principal(name, role, grid, patroller), rt.settings.secret_key.get_secret_value(),
                        password_hash=user.password_hash, now=rt.now())
    return {"Authorization": f"Bearer {token}"}


def actor_headers(rt: Runtime, actor: str) -> dict[str, str]:
    """The headers of a login acting as a workflow actor text: 'center:<level>:<grid>' → a commander of that
    grid, 'patroller:<id>' → that patroller, 'system:…' → an admin."""
    kind, _, rest = actor.partition(":")
    if kind == "center":
        return token_headers(rt, "commander", grid=rest.partition(":")[2])
    if kind == "patroller":
        return token_headers(rt, "patroller", patroller=rest)
    if kind == "system":  # an admin named after the system actor: it acts as 'system:admin-<name>'
        return token_headers(rt, "admin", username=rest)
    raise ValueError(f"no login acts as {actor!r}")


@contextmanager
def client_for(rt: Runtime, *, raise_server_exceptions: bool = True, role: str | None = "admin",
               **binding: str) -> Iterator[TestClient]:
    """A TestClient over `create_app(settings, rt)`, with the lifespan run, logged in as a user of `role`
    (bound to `grid=` / `patroller=`; `role=None`: no login)."""
    app = create_app(rt.settings, rt)
    with TestClient(app, raise_server_exceptions=raise_server_exceptions) as client:
        if role is not None:
            client.headers.update(token_headers(rt, role, **binding))
        yield client


@contextmanager
def ingesting(store: Store, mqtt_url: str, name: str, **settings: Any) -> Iterator[Runtime]:
    """A runtime over `store` with its MQTT ingest worker and its live stream's broker feed running against
    `mqtt_url` (a client id of its own, starting with `name`), stopped on exit."""
    import uuid

    config = Settings(_env_file=None, database_url="postgresql://unused", mqtt_url=mqtt_url,
                      mqtt_client_id=f"{name}-{uuid.uuid4().hex[:8]}",
                      secret_key="test-secret-long-enough-for-hs256-0123456789", **settings)
    rt = Runtime(config, store)
    rt.start_ingest()
    assert rt.worker is not None and rt.worker.wait_connected(10), f"the ingest worker did not connect to {mqtt_url}"
    assert rt.start_events().is_subscribed, f"the live stream's feed did not subscribe at {mqtt_url}"  # like `serve`
    try:
        yield rt
    finally:
        rt.stop_events()
        rt.stop_ingest()


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



# --- reading the map wall's data (/api/v1/wall/*) ---------------------------------------------------
def wall_grids(client: TestClient, **params: str | int) -> dict[str, dict[str, Any]]:
    """The grid features the wall shows for `params` (parent=, zoom=), by code: their properties (fill, open, light, …)."""
    resp = client.get("/api/v1/wall/grids", params=params)
    assert resp.status_code == 200, resp.text
    features = resp.json()["features"]
    by_code = {f["properties"]["code"]: f["properties"] for f in features}
    assert len(by_code) == len(features), "grid codes repeat in the map wall"
    return by_code


def wall_markers(client: TestClient, **params: str) -> list[tuple[float, float, str | None]]:
    """The incident markers of the wall's side panel (`grid=`): (lat, lon, light), in list order."""
    resp = client.get("/api/v1/wall/summary", params=params)
    assert resp.status_code == 200, resp.text
    return [(i["lat"], i["lon"], i["light"]) for i in resp.json()["items"]]


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
