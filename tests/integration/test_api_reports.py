"""POST /reports (JSON, multipart with photos, self-handled), photos served back, Open311 — on both stores."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import api.routes.reports as reports_routes
from api.app import create_app
from api.photos import PhotoSettings
from api.runtime import Runtime
from store.ports import IncidentQuery
from tests.integration.apphelpers import Clock, actor_headers, problem, token_headers

pytestmark = pytest.mark.integration
MAX_PHOTO = 64 * 1024


def png_bytes(width: int = 2, height: int = 2) -> bytes:
    """A real (tiny, valid) PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64 + b"\xff\xd9"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Photos go to a temporary data_dir with a small per-photo limit (whatever the settings hold)."""
    root = tmp_path / "data"
    monkeypatch.setattr(reports_routes, "photo_settings", lambda _s: PhotoSettings(root, max_bytes=MAX_PHOTO, max_count=5))
    return root


@pytest.fixture
def client(rt: Runtime, data_dir: Path) -> Iterator[TestClient]:
    app = create_app(rt.settings, rt)
    if not any(getattr(r, "path", "") == "/api/v1/reports" for r in app.routes):
        app.include_router(reports_routes.router, prefix="/api/v1")  # until api/app.py includes it
    with TestClient(app) as c:
        c.headers.update(token_headers(rt))  # an admin
        yield c


def spot(rt: Runtime) -> tuple[str, float, float, str]:
    """A level-3 grid, a point inside it and the patroller on the day shift there (P0001 at 10:00 on Monday)."""
    grid = rt.store.grids(level=3)[0]
    p = grid.geometry.representative_point()
    on_duty = sorted(pt.id for pt in rt.patrollers if grid.code in pt.grid_codes and pt.on_duty(rt.now().astimezone(rt.router.tz)))
    return grid.code, p.x, p.y, on_duty[0]


def history(client: TestClient, incident_id: str) -> list[tuple[str, str | None, str, str]]:
    body = client.get(f"/api/v1/incidents/{incident_id}").json()
    return [(h["action"], h["from"], h["to"], h["actor"]) for h in body["history"]]


def test_json_report_is_registered_and_dispatched_to_the_reporter(client: TestClient, rt: Runtime, clock: Clock) -> None:
    grid, lon, lat, pid = spot(rt)
    resp = client.post("/api/v1/reports", json={"patroller_id": pid, "lon": lon, "lat": lat, "type": "city.road", "note": "pothole"})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert resp.headers["location"] == f"/api/v1/incidents/{body['id']}"
    assert (body["state"], body["source"], body["assignee"], body["grid"]) == ("dispatched", "report", pid, grid)
    assert body["self_handled"] is False and body["photos"] == []
    assert body["route"]["point_source"] == "report"
    assert body["reporter"] == {"kind": "patroller", "patroller_id": pid}
    stored = rt.store.incident(body["id"])
    assert stored is not None and stored.dispatched_at == clock.now and stored.deadline is not None
    assert stored.details["reporter"]["patroller_id"] == pid and stored.note == "pothole"
    assert history(client, body["id"]) == [
        ("report", None, "reported", f"patroller:{pid}"),
        ("register", "reported", "registered", "system:auto-register"),
        ("dispatch", "registered", "dispatched", "system:auto-dispatch"),
    ]
    topics = {n.topic for _, n in rt.store.pending_notifications()}
    assert topics == {f"gridwatch/grids/{grid}/incidents", f"gridwatch/patrollers/{pid}/alerts"}


def test_self_handled_report_is_opened_and_closed_at_once(client: TestClient, rt: Runtime, clock: Clock) -> None:
    _, lon, lat, pid = spot(rt)
    resp = client.post("/api/v1/reports", json={"patroller_id": pid, "lon": lon, "lat": lat, "type": "city.litter", "self_handled": True})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert (body["state"], body["self_handled"], body["difficulty"]) == ("closed", True, "green")
    stored = rt.store.incident(body["id"])
    assert stored is not None and stored.self_handled and stored.closed_at == clock.now and stored.difficulty == "green"
    assert [h[:3] for h in history(client, body["id"])] == [
        ("report", None, "reported"), ("register", "reported", "registered"), ("close", "registered", "closed")]


def test_multipart_report_with_photos_serves_them_back_byte_identical(client: TestClient, rt: Runtime, data_dir: Path) -> None:
    _, lon, lat, pid = spot(rt)
    png = png_bytes()
    resp = client.post(
        "/api/v1/reports",
        data={"patroller_id": pid, "lon": str(lon), "lat": str(lat), "type": "fence.damage", "self_handled": "false"},
        files=[("photos", ("fence.png", png, "application/octet-stream")), ("photos", ("x.jpg", JPEG, "image/jpeg"))],
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert [p["content_type"] for p in body["photos"]] == ["image/png", "image/jpeg"]
    first = body["photos"][0]
    assert first["bytes"] == len(png) and first["path"] == f"photos/{body['id']}/{first['sha256']}.png"
    assert (data_dir / first["path"]).read_bytes() == png
    stored = rt.store.incident(body["id"])
    assert stored is not None and [p["sha256"] for p in stored.details["photos"]] == [p["sha256"] for p in body["photos"]]
    served = client.get(first["url"])
    assert served.status_code == 200 and served.content == png
    assert served.headers["content-type"] == "image/png"
    problem(client.get(f"/api/v1/incidents/{body['id']}/photos/{'0' * 64}"), 404)
    problem(client.get(f"/api/v1/incidents/{body['id']}/photos/not-a-hash"), 422)


@pytest.mark.parametrize(
    ("content", "status"),
    [(b"hello, I am text pretending to be a JPEG\n", 415), (b"", 422), (b"\x89PNG\r\n\x1a\n" + b"\x00" * MAX_PHOTO, 413)],
    ids=["text-as-jpg", "empty", "too-big"],
)
def test_bad_photos_are_refused_and_nothing_is_stored(client: TestClient, rt: Runtime, data_dir: Path, content: bytes, status: int) -> None:
    _, lon, lat, pid = spot(rt)
    resp = client.post("/api/v1/reports", data={"patroller_id": pid, "lon": str(lon), "lat": str(lat), "type": "city.road"},
                       files=[("photos", ("photo.jpg", content, "image/jpeg"))])
    body = problem(resp, status)
    assert body["errors"][0]["field"] == "photos" and "photos[0]" in body["detail"]
    assert rt.store.incidents(IncidentQuery()) == []
    assert not (data_dir / "photos").exists() or not any((data_dir / "photos").iterdir())


def test_too_many_photos_and_photos_in_json_are_refused(client: TestClient, rt: Runtime) -> None:
    _, lon, lat, pid = spot(rt)
    files = [("photos", (f"{i}.png", png_bytes(i + 1, 1), "image/png")) for i in range(6)]
    body = problem(client.post("/api/v1/reports", data={"patroller_id": pid, "lon": str(lon), "lat": str(lat), "type": "city.road"},
                               files=files), 422)
    assert "at most 5" in body["detail"]
    body = problem(client.post("/api/v1/reports", json={"patroller_id": pid, "lon": lon, "lat": lat, "type": "city.road",
                                                         "photos": ["x"]}), 422)
    assert body["errors"][0]["field"] == "photos"


@pytest.mark.parametrize(
    ("change", "field"),
    [({"lon": 200.0}, "lon"), ({"lat": -91}, "lat"), ({"type": "alien.landing"}, "type"),
     ({"patroller_id": "P9999"}, "patroller_id"), ({"lon": 10.0, "lat": 10.0}, "lon,lat")],
)
def test_invalid_reports_name_the_field(client: TestClient, rt: Runtime, change: dict[str, object], field: str) -> None:
    _, lon, lat, pid = spot(rt)
    body = problem(client.post("/api/v1/reports", json={"patroller_id": pid, "lon": lon, "lat": lat, "type": "city.road", **change}), 422)
    assert body["errors"][0]["field"] == field, body
    if field == "lon,lat":
        assert body["type"].endswith("/outside-district")


def test_open311_services_and_request(client: TestClient, rt: Runtime) -> None:
    services = client.get("/api/v1/open311/services.json").json()
    codes = {s["service_code"] for s in services}
    assert {"city.litter", "fence.intrusion"} <= codes
    assert all({"service_code", "service_name", "description", "metadata", "type", "keywords", "group"} <= set(s) for s in services)

    grid, lon, lat, pid = spot(rt)
    resp = client.post("/api/v1/open311/requests.json", data={
        "service_code": "city.litter", "lat": str(lat), "long": str(lon), "description": "bags dumped by the gate",
        "address_string": "1 Gate Rd", "email": "a@example.org", "first_name": "Ann", "last_name": "Lee",
        "phone": "+86 10 1234", "media_url": "https://example.org/x.jpg", "api_key": "secret", "device_id": "",
    })
    assert resp.status_code == 201, resp.text
    (answer,) = resp.json()
    assert set(answer) >= {"service_request_id", "service_notice"} and "verify" in answer["service_notice"]
    incident = rt.store.incident(answer["service_request_id"])
    assert incident is not None
    assert (incident.state.value, incident.source, incident.type, incident.route.l3) == ("verifying", "citizen", "city.litter", grid)
    assert incident.details["reporter"] == {"kind": "citizen", "first_name": "Ann", "last_name": "Lee",
                                            "email": "a@example.org", "phone": "+86 10 1234"}
    assert incident.details["open311"]["address_string"] == "1 Gate Rd"
    assert "api_key" not in incident.details["open311"] and incident.details["verification"]["patroller_id"] == pid
    assert [h[:3] for h in history(client, incident.id)] == [("report", None, "reported"), ("verify", "reported", "verifying")]
    verify = [n for _, n in rt.store.pending_notifications() if n.topic == f"gridwatch/patrollers/{pid}/alerts"]
    assert len(verify) == 1 and verify[0].payload["event"] == "verify"
    for _, note in rt.store.pending_notifications():  # the citizen's name and contact are never broadcast
        assert "a@example.org" not in str(note.payload) and "Ann" not in str(note.payload)
    assert client.get(f"/api/v1/incidents/{incident.id}").json()["details"]["reporter"]["email"] == "a@example.org"
    listed = next(i for i in client.get("/api/v1/incidents").json()["items"] if i["id"] == incident.id)
    assert "email" not in listed["details"]["reporter"]

    body = problem(client.post("/api/v1/open311/requests.json", data={"service_code": "city.litter", "lat": str(lat)}), 422)
    assert body["errors"][0]["field"] == "long"
    body = problem(client.post("/api/v1/open311/requests.json", data={"service_code": "nope", "lat": str(lat), "long": str(lon)}), 422)
    assert body["errors"][0]["field"] == "service_code"


def test_resolve_photos_are_uploaded_then_referenced_by_hash_and_never_by_path(
    client: TestClient, rt: Runtime, data_dir: Path
) -> None:
    """A client cannot make the photo route serve an arbitrary file (e.g. the database) under the data dir."""
    grid, lon, lat, pid = spot(rt)
    created = client.post("/api/v1/reports", json={"patroller_id": pid, "lon": lon, "lat": lat, "type": "city.litter"})
    iid = created.json()["id"]
    (data_dir / "secret.txt").parent.mkdir(parents=True, exist_ok=True)
    (data_dir / "secret.txt").write_text("the database")
    actor = f"patroller:{pid}"
    assert client.post(f"/api/v1/incidents/{iid}/actions", json={"action": "acknowledge"}, headers=actor_headers(rt, actor)).status_code == 200
    evil = {"action": "resolve", "params": {"photos": [{"sha256": "a" * 64, "path": "secret.txt",
                                                                        "content_type": "text/html"}]}}
    assert problem(client.post(f"/api/v1/incidents/{iid}/actions", json=evil), 422)["errors"][0]["field"] == "params.photos"
    up = client.post(f"/api/v1/incidents/{iid}/photos", files=[("photos", ("after.png", png_bytes(3, 3), "text/html"))])
    assert up.status_code == 201, up.text
    sha = up.json()["photos"][0]["sha256"]
    done = client.post(f"/api/v1/incidents/{iid}/actions", json={"action": "resolve", "params": {"photos": [sha]}}, headers=actor_headers(rt, actor))
    assert done.status_code == 200, done.text
    served = client.get(f"/api/v1/incidents/{iid}/photos/{sha}")
    assert served.status_code == 200 and served.content == png_bytes(3, 3)
    assert served.headers["content-type"] == "image/png" and served.headers["x-content-type-options"] == "nosniff"
    problem(client.get(f"/api/v1/incidents/{iid}/photos/{'a' * 64}"), 404)
    problem(client.post(f"/api/v1/incidents/{iid}/photos", files=[("photos", ("x.png", b"<html>", "image/png"))]), 415)
