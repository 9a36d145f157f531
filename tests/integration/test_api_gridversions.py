"""Planners over HTTP, on both real stores: upload → validation → diff → publish → hot swap → as-of locate."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from shapely.geometry import LineString

from api.runtime import Runtime
from geo.edit import sample_redraw
from geo.gridfile import write_grid_file
from geo.model import Grid
from store.ports import IncidentQuery, Store
from tests.integration.apphelpers import (
    Clock,
    alarm_message,
    make_runtime,
    problem,
    sample_district,
    token_headers,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def redraw_file(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    grids, change = sample_redraw(list(sample_district().grids))
    return write_grid_file(grids, tmp_path / "redraw.geojson"), change


def upload(client: TestClient, path: Path, headers: dict[str, str] | None = None, **form: str) -> Any:
    with path.open("rb") as f:
        return client.post("/api/v1/grid-versions", files={"file": (path.name, f)}, data=form, headers=headers)


def inside(rt: Runtime, code: str, version: int | None = None) -> tuple[float, float]:
    g = rt.store.grid(code, version=version)
    assert g is not None
    p = g.geometry.representative_point()
    return p.x, p.y


def test_upload_validate_diff_publish_and_locate_as_of(
    client: TestClient, rt: Runtime, clock: Clock, redraw_file: tuple[Path, dict[str, Any]]
) -> None:
    path, change = redraw_file
    old_version = rt.index.version
    absorbed, kept, split, new_code = change["merged"][1], change["into"], change["split"], change["new_code"]
    # an open incident in the grid that the merge absorbs
    device = next(d for d in rt.devices.values() if d.grid_code == absorbed and d.geometry.geom_type == "Point")
    rt.handle_messages([alarm_message(device.id, "before-redraw")])
    (before,) = rt.store.incidents(IncidentQuery(grid_prefix=absorbed))
    assert before.route.grid_version == old_version

    planner = token_headers(rt, "planner", username="planner-li")  # the audit log names the login
    resp = upload(client, path, planner, label="merge-and-split")
    assert resp.status_code == 201, resp.text
    body = resp.json()
    vid = body["version"]["id"]
    assert body["version"]["status"] == "draft" and body["version"]["source"] == "redraw.geojson"
    assert body["validation"] == {"ok": True, "errors": 0, "warnings": 0, "counts": {}}
    assert body["links"]["plan"] == f"/plan/{vid}"
    assert client.get(f"/api/v1/grid-versions/{vid}/validation").json()["findings"] == []
    assert client.get(f"/api/v1/grid-versions/{vid}/validation?format=geojson").json()["type"] == "FeatureCollection"

    diff = client.get(f"/api/v1/grid-versions/{vid}/diff?against=current&days=30").json()
    d = diff["diff"]
    assert [a["code"] for a in d["added"]] == [new_code]
    assert [r["code"] for r in d["removed"]] == [absorbed]
    assert sorted(r["code"] for r in d["reshaped"]) == sorted([kept, split])
    assert {"id": before.id, "from": absorbed, "to": kept} in d["moves"]["incidents"]
    assert {"id": device.id, "from": absorbed, "to": kept} in d["moves"]["devices"]
    w = diff["whatif"]
    assert w["days"] == 30 and w["incidents"] == 1
    per = {g["code"]: g for g in w["per_grid"]}
    assert per[absorbed] == {"code": absorbed, "before": 1, "after": None}
    assert per[kept]["after"] == 1

    page = client.get(f"/plan/{vid}")
    assert page.status_code == 200 and new_code in page.text and absorbed in page.text and before.id in page.text

    # nothing changes before the publish
    lon, lat = inside(rt, new_code, version=vid)
    assert client.get(f"/api/v1/locate?lon={lon}&lat={lat}").json()["grids"][2]["code"] == split
    publish_at = clock.advance(minutes=5)
    resp = client.post(f"/api/v1/grid-versions/{vid}/publish", json={"policy": "move"}, headers=planner)
    assert resp.status_code == 200, resp.text
    result = resp.json()
    assert result["previous"] == old_version and result["version"]["is_current"]
    assert [m["id"] for m in result["incidents_moved"]] == [before.id]
    assert rt.index.version == vid  # this process swapped at once
    located = client.get(f"/api/v1/locate?lon={lon}&lat={lat}").json()
    assert located["grid_version"] == vid and located["grids"][2]["code"] == new_code
    at = (publish_at - timedelta(seconds=1)).isoformat()
    then = client.get("/api/v1/locate", params={"lon": lon, "lat": lat, "at": at}).json()
    assert then["grid_version"] == old_version and then["grids"][2]["code"] == split
    assert then["responsible"] is None and "current version only" in then["note"]
    problem(client.get("/api/v1/locate", params={"lon": lon, "lat": lat, "at": "2000-01-01T00:00:00+08:00"}), 404)
    problem(client.get("/api/v1/locate", params={"lon": lon, "lat": lat, "at": "2026-11-22T10:00:00"}), 422)

    moved = rt.store.incident(before.id)
    assert moved is not None and moved.route.l3 == kept and moved.route.grid_version == vid
    assert [h.action for h in rt.store.history(before.id)][-1] == "regrid"
    assert {d.id: d.grid_code for d in rt.store.devices()}[device.id] == kept
    audit = client.get(f"/api/v1/grid-versions/{vid}").json()["audit"]
    assert [a["action"] for a in audit] == ["import", "publish"] and audit[1]["actor"] == "user:planner-li"
    assert audit[1]["detail"]["policy"] == "move"
    problem(client.post(f"/api/v1/grid-versions/{vid}/publish", json={}), 409)
    problem(client.delete(f"/api/v1/grid-versions/{vid}"), 409)
    # the published version's map shows it against its predecessor
    assert absorbed in client.get(f"/plan/{vid}").text


def test_policy_keep_leaves_incidents_with_their_version(
    client: TestClient, rt: Runtime, clock: Clock, redraw_file: tuple[Path, dict[str, Any]]
) -> None:
    path, change = redraw_file
    absorbed = change["merged"][1]
    device = next(d for d in rt.devices.values() if d.grid_code == absorbed and d.geometry.geom_type == "Point")
    result = rt.handle_messages([alarm_message(device.id, "keep-1")])
    (iid,) = result.incidents_created
    vid = upload(client, path).json()["version"]["id"]
    clock.advance(minutes=1)
    body = client.post(f"/api/v1/grid-versions/{vid}/publish", json={"policy": "keep"}).json()
    assert body["incidents_moved"] == [] and body["incidents_kept"] >= 1
    kept = rt.store.incident(iid)
    assert kept is not None and kept.route.l3 == absorbed and kept.route.grid_version != vid
    # a new alarm of the same device is routed with the new version
    clock.advance(minutes=20)
    rt.handle_messages([alarm_message(device.id, "keep-2", at=clock.now)])
    newest = rt.store.incidents(IncidentQuery(limit=1))[0]
    assert newest.route.grid_version == vid and newest.route.l3 == change["into"]


def test_errors_block_publishing_and_bad_uploads_get_clear_problems(client: TestClient, rt: Runtime, tmp_path: Path) -> None:
    grids = list(sample_district().grids)
    victim = next(g for g in grids if g.level == 3)
    shrunk = [g if g.code != victim.code else type(g)(g.code, 3, g.name, g.geometry.buffer(-0.001), g.parent_code) for g in grids]
    path = write_grid_file(shrunk, tmp_path / "gap.geojson")
    body = upload(client, path).json()
    assert body["validation"]["ok"] is False and body["validation"]["counts"].get("gap") == 1
    vid = body["version"]["id"]
    refused = problem(client.post(f"/api/v1/grid-versions/{vid}/publish", json={}), 409)
    assert refused["errors"][0]["check"] == "gap" and victim.code[:12] in refused["errors"][0]["codes"]
    assert rt.store.current_version().id != vid  # type: ignore[union-attr]
    assert client.delete(f"/api/v1/grid-versions/{vid}").status_code == 204
    problem(client.get(f"/api/v1/grid-versions/{vid}/validation"), 404)

    (tmp_path / "grids.txt").write_text("x")
    problem(upload(client, tmp_path / "grids.txt"), 415)
    (tmp_path / "broken.geojson").write_text("{not json")
    problem(upload(client, tmp_path / "broken.geojson"), 422)
    (tmp_path / "nocode.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"level": 3, "name": "x"},
         "geometry": {"type": "Polygon", "coordinates": [[[113.8, 27.6], [113.81, 27.6], [113.81, 27.61], [113.8, 27.6]]]}}]}))
    assert "code" in problem(upload(client, tmp_path / "nocode.geojson"), 422)["detail"]
    rt.settings.max_upload_bytes = 10
    problem(upload(client, path), 413)
    problem(client.post("/api/v1/grid-versions/999/publish", json={}), 404)
    problem(client.post(f"/api/v1/grid-versions/{vid}/publish", json={"policy": "teleport"}), 422)


def test_another_process_hot_swaps_within_seconds(
    store_backend: Store, client: TestClient, rt: Runtime, clock: Clock, redraw_file: tuple[Path, dict[str, Any]]
) -> None:
    """A second runtime over the same store (as `ingest` would be) picks up a publish by polling."""
    path, change = redraw_file
    other = make_runtime(store_backend, clock)
    other.watch_versions(interval=0.2)
    try:
        vid = upload(client, path).json()["version"]["id"]
        clock.advance(minutes=1)
        assert client.post(f"/api/v1/grid-versions/{vid}/publish", json={}).status_code == 200
        deadline = time.monotonic() + 30
        while other.index.version != vid and time.monotonic() < deadline:
            time.sleep(0.05)
        assert other.index.version == vid
        lon, lat = inside(other, change["new_code"])
        hit = other.index.locate(lon, lat)
        assert hit is not None and hit.l3 == change["new_code"]
        assert {d.id: d.grid_code for d in other.devices.values()} == {d.id: d.grid_code for d in rt.store.devices()}
    finally:
        other.stop_watching()


def test_a_staged_draft_index_is_swapped_in_without_a_rebuild(
    store_backend: Store, client: TestClient, rt: Runtime, clock: Clock, redraw_file: tuple[Path, dict[str, Any]]
) -> None:
    path, change = redraw_file
    other = make_runtime(store_backend, clock)
    vid = upload(client, path).json()["version"]["id"]
    assert other.stage_newest_draft() == vid
    staged = other._staged[vid].result(timeout=60)[0]
    assert staged.version == vid and other.index.version != vid  # built, not live
    clock.advance(minutes=1)
    assert client.post(f"/api/v1/grid-versions/{vid}/publish", json={}).status_code == 200
    assert other.check_version()
    assert other.index is staged and vid not in other._staged
    lon, lat = inside(other, change["new_code"])
    assert other.index.locate(lon, lat).l3 == change["new_code"]  # type: ignore[union-attr]
    other.close()


def test_a_draft_that_cannot_be_indexed_is_not_staged(store_backend: Store, client: TestClient, rt: Runtime,
                                                      clock: Clock, tmp_path: Path) -> None:
    grids = list(sample_district().grids)
    last = grids[-1].code
    bad = [g if g.code != last else Grid(g.code, 3, g.name, LineString([(0, 0), (1, 1)]), g.parent_code) for g in grids]
    other = make_runtime(store_backend, clock)
    draft = store_backend.create_draft("broken", bad, [], source=None, crs=None, actor="t", at=clock.now)
    assert other.stage_newest_draft() == draft.id
    deadline = time.monotonic() + 60
    while draft.id not in other._unstageable and time.monotonic() < deadline:
        time.sleep(0.05)
    assert draft.id in other._unstageable and draft.id not in other._staged
    other.close()


def test_uploads_are_labelled_from_their_file_and_errors_name_it(client: TestClient, rt: Runtime, tmp_path: Path,
                                                                  redraw_file: tuple[Path, dict[str, Any]]) -> None:
    path, _ = redraw_file
    first = upload(client, path).json()["version"]
    second = upload(client, path).json()["version"]  # same file, same second: still two drafts
    assert first["label"].startswith("redraw-") and second["label"].startswith(first["label"])
    assert second["label"] != first["label"]
    (tmp_path / "streets.geojson").write_text('{"type": "FeatureCollection", "features": [{"type": "Feature",'
                                              ' "properties": {"level": 1}, "geometry": null}]}')
    detail = problem(upload(client, tmp_path / "streets.geojson"), 422)["detail"]
    assert detail.startswith("streets.geojson") and "gridwatch-upload" not in detail


def test_oversized_bodies_are_refused_while_they_arrive(client: TestClient, rt: Runtime) -> None:
    rt.settings.max_body_bytes = 1000
    body = problem(client.post("/api/v1/incidents/x/actions", content=b"{" + b" " * 5000 + b"}",
                               headers={"content-type": "application/json"}), 413)
    assert "1000 bytes" in body["detail"]

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(10):
            yield b" " * 500

    problem(client.post("/api/v1/incidents/x/actions", content=chunks(), headers={"content-type": "application/json"}), 413)
    assert client.post("/api/v1/incidents/x/actions", json={"action": "acknowledge"}).status_code == 404  # small: passes


def test_locate_at_out_of_range_is_422(client: TestClient) -> None:
    problem(client.get("/api/v1/locate", params={"lon": 113.85, "lat": 27.62, "at": "0001-01-01T00:00:00+08:00"}), 422)


def test_incidents_routed_with_the_old_grids_during_the_swap_are_caught_up(
    store_backend: Store, client: TestClient, rt: Runtime, clock: Clock, redraw_file: tuple[Path, dict[str, Any]]
) -> None:
    """A worker that has not swapped yet routes with the old grids; after its swap those incidents move."""
    path, change = redraw_file
    absorbed, into = change["merged"][1], change["into"]
    lagging = make_runtime(store_backend, clock)
    device = next(d for d in lagging.devices.values() if d.grid_code == absorbed and d.geometry.geom_type == "Point")
    vid = upload(client, path).json()["version"]["id"]
    clock.advance(minutes=1)
    assert client.post(f"/api/v1/grid-versions/{vid}/publish", json={"policy": "keep"}).status_code == 200
    clock.advance(seconds=1)
    (iid,) = lagging.handle_messages([alarm_message(device.id, "during-swap", at=clock.now)]).incidents_created
    stale = rt.store.incident(iid)
    assert stale is not None and stale.route.l3 == absorbed and stale.route.grid_version != vid
    assert lagging.check_version() and not lagging.check_version()  # swapped once, then nothing to do
    moved = rt.store.incident(iid)
    assert moved is not None and moved.route.l3 == into and moved.route.grid_version == vid
    entry = rt.store.history(iid)[-1]
    assert entry.action == "regrid" and entry.actor == "system:regrid"
    lagging.close()
