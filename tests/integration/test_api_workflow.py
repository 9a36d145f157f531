"""POST /incidents/{id}/actions over HTTP on both stores: the §6 workflow with its actors (self-declared
until auth lands), 409 for a state that refuses the action, 403 for a forbidden actor, 422 for bad params."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.runtime import Runtime
from store.ports import Store
from tests.integration.apphelpers import (
    Clock,
    actor_headers,
    alarm_message,
    client_for,
    incident_devices,
    make_runtime,
    problem,
    seed,
)

pytestmark = pytest.mark.integration


def iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text is not None else None


@pytest.fixture
def manual(store_backend: Store, clock: Clock) -> Runtime:
    """A runtime over the seeded district that leaves new incidents `reported` (no auto-dispatch)."""
    seed(store_backend)
    return make_runtime(store_backend, clock, auto_dispatch=False)


@pytest.fixture
def manual_client(manual: Runtime) -> Iterator[TestClient]:
    with client_for(manual) as c:
        yield c


def raise_alarm(rt: Runtime, type_: str = "fence.intrusion", msg: str = "m-1") -> str:
    device = incident_devices()[type_]
    (incident_id,) = rt.handle_messages([alarm_message(device.id, msg, at=rt.now(), type_=type_)]).incidents_created
    return incident_id


def act(client: TestClient, incident_id: str, action: str, actor: str | None = None, **extra: Any) -> Any:
    """POST an action, logged in as the user acting as `actor` (default: the client's admin login)."""
    body: dict[str, Any] = {"action": action, **extra}
    headers = actor_headers(client.app.state.runtime, actor) if actor is not None else None  # type: ignore[attr-defined]
    return client.post(f"/api/v1/incidents/{incident_id}/actions", json=body, headers=headers)


def ok(resp: Any) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def centers(detail: dict[str, Any]) -> tuple[str, str, str]:
    route = detail["route"]
    return f"center:1:{route['l1']}", f"center:2:{route['l2']}", f"center:3:{route['l3']}"


def test_happy_path_from_dispatch_to_archive_with_the_right_actors(manual_client: TestClient, manual: Runtime, clock: Clock) -> None:
    client = manual_client
    incident_id = raise_alarm(manual)
    detail = client.get(f"/api/v1/incidents/{incident_id}").json()
    assert detail["state"] == "reported" and "register" in detail["allowed_actions"]
    assert "dispatch" not in detail["allowed_actions"]  # registered (立案) first, design §6
    _, _, center = centers(detail)
    patroller = detail["route"]["patroller_id"] or manual.patrollers[0].id
    me = f"patroller:{patroller}"

    steps: list[tuple[str, str, dict[str, Any], str, str | None]] = [
        ("register", center, {}, "registered", "register"),
        ("dispatch", center, {"assignee": patroller}, "dispatched", "acknowledge"),
        ("acknowledge", me, {}, "acknowledged", "handle"),
        ("arrive", me, {}, "acknowledged", "handle"),
        ("resolve", me, {"photos": ["https://img.example/after.jpg"]}, "resolved", "check"),
        ("check", center, {}, "checking", "check"),
        ("close", center, {}, "closed", None),
        ("call_back", center, {"satisfied": True}, "called_back", None),
        ("archive", center, {}, "archived", None),
    ]
    stamps = {}
    for minute, (action, actor, params, state, stage) in enumerate(steps, start=1):
        clock.now = clock.now + timedelta(minutes=minute)
        body = ok(act(client, incident_id, action, actor, params=params, note=f"{action} note"))
        assert (body["state"], body["stage"]) == (state, stage), action
        assert body["history_entry"]["actor"] == actor and body["history_entry"]["action"] == action
        assert iso(body["history_entry"]["at"]) == clock.now
        stamps[action] = clock.now

    detail = client.get(f"/api/v1/incidents/{incident_id}").json()
    assert detail["state"] == "archived" and detail["allowed_actions"] == [] and detail["deadline"] is None
    assert detail["assignee"] == patroller and detail["details"]["photos"] == [{"url": "https://img.example/after.jpg", "action": "resolve"}]
    assert iso(detail["dispatched_at"]) == stamps["dispatch"]
    assert iso(detail["acknowledged_at"]) == stamps["acknowledge"]
    assert iso(detail["arrived_at"]) == stamps["arrive"]
    assert iso(detail["resolved_at"]) == stamps["resolve"]
    assert iso(detail["closed_at"]) == stamps["close"]
    rows = [(h["action"], h["from"], h["to"], h["actor"]) for h in detail["history"]]
    assert rows[0][:3] == ("report", None, "reported")
    assert rows[1:] == [
        ("register", "reported", "registered", center),
        ("dispatch", "registered", "dispatched", center),
        ("acknowledge", "dispatched", "acknowledged", me),
        ("arrive", "acknowledged", "acknowledged", me),
        ("resolve", "acknowledged", "resolved", me),
        ("check", "resolved", "checking", center),
        ("close", "checking", "closed", center),
        ("call_back", "closed", "called_back", center),
        ("archive", "called_back", "archived", center),
    ]
    assert detail["history"][2]["note"] == f"to patroller {patroller}; dispatch note"


def test_detail_lists_the_allowed_actions_and_those_of_one_actor(client: TestClient, rt: Runtime) -> None:
    incident_id = raise_alarm(rt)
    detail = client.get(f"/api/v1/incidents/{incident_id}").json()
    assert detail["state"] == "dispatched"
    assert detail["allowed_actions"] == ["return", "acknowledge", "escalate", "supervise", "remind", "set_track", "set_difficulty"]
    for field in ("escalation_level", "supervised", "difficulty", "matter_track", "confidence", "unit", "stage", "self_handled", "details"):
        assert field in detail
    _, _, center = centers(detail)

    # each login sees the actions it may take: the assignee its handler actions, the center its own
    mine = client.get(f"/api/v1/incidents/{incident_id}", headers=actor_headers(rt, f"patroller:{detail['assignee']}")).json()
    assert mine["allowed_actions"] == ["return", "acknowledge"]
    theirs = client.get(f"/api/v1/incidents/{incident_id}", headers=actor_headers(rt, center)).json()
    assert theirs["allowed_actions"] == ["escalate", "supervise", "remind", "set_track", "set_difficulty"]


def test_illegal_transition_is_409_naming_state_and_action(client: TestClient, rt: Runtime) -> None:
    incident_id = raise_alarm(rt)
    _, _, center = centers(client.get(f"/api/v1/incidents/{incident_id}").json())

    body = problem(act(client, incident_id, "archive", center), 409)

    assert body["type"].endswith("/illegal-transition")
    assert (body["state"], body["action"]) == ("dispatched", "archive")
    assert "'archive'" in body["detail"] and "'dispatched'" in body["detail"]
    assert "acknowledge" in body["allowed"]
    assert len(client.get(f"/api/v1/incidents/{incident_id}").json()["history"]) == 3  # report, register, dispatch


def test_escalate_goes_up_to_the_district_then_409(client: TestClient, rt: Runtime) -> None:
    incident_id = raise_alarm(rt)
    l1, l2, l3 = centers(client.get(f"/api/v1/incidents/{incident_id}").json())

    assert ok(act(client, incident_id, "escalate", l3))["escalation_level"] == 2
    assert act(client, incident_id, "supervise", l3).status_code == 403  # owned by the street now
    assert ok(act(client, incident_id, "escalate", l2))["escalation_level"] == 1
    body = problem(act(client, incident_id, "escalate", l1), 409)
    assert (body["state"], body["action"]) == ("dispatched", "escalate") and "level 1" in body["detail"]
    assert ok(act(client, incident_id, "supervise", l1))["supervised"] is True


def test_patroller_acting_on_someone_elses_incident_is_refused(client: TestClient, rt: Runtime) -> None:
    incident_id = raise_alarm(rt)
    detail = client.get(f"/api/v1/incidents/{incident_id}").json()
    l3 = detail["route"]["l3"]
    # a patroller of the same grid sees the incident (its geofence) but may not act on another's assignment
    neighbour = next(p.id for p in rt.patrollers if p.id != detail["assignee"] and l3 in (*p.grid_codes, *p.backup_grid_codes))
    body = problem(act(client, incident_id, "acknowledge", f"patroller:{neighbour}"), 403)
    assert f"patroller:{neighbour}" in body["detail"] and incident_id in body["detail"]
    # a patroller of elsewhere does not even see it
    stranger = next(p.id for p in rt.patrollers if l3 not in (*p.grid_codes, *p.backup_grid_codes))
    problem(act(client, incident_id, "acknowledge", f"patroller:{stranger}"), 404)

    after = client.get(f"/api/v1/incidents/{incident_id}").json()
    assert after["state"] == "dispatched" and len(after["history"]) == 3
    problem(act(client, incident_id, "close", f"patroller:{detail['assignee']}"), 403)  # a center action


def test_center_of_another_grid_can_neither_read_nor_act(client: TestClient, rt: Runtime) -> None:
    incident_id = raise_alarm(rt)
    other = raise_alarm(rt, "thermal.fire", "m-2")  # in another level-1 grid
    street_of_other, _, center_of_other = centers(client.get(f"/api/v1/incidents/{other}").json())

    problem(act(client, incident_id, "supervise", center_of_other), 404)  # outside its subtree: not found
    problem(client.get(f"/api/v1/incidents/{incident_id}", headers=actor_headers(rt, street_of_other)), 404)
    # inside the subtree but owned higher up: the workflow's own rule answers 403
    _, _, l3 = centers(client.get(f"/api/v1/incidents/{incident_id}").json())
    assert act(client, incident_id, "escalate", l3).status_code == 200
    body = problem(act(client, incident_id, "supervise", l3), 403)
    assert "owned at level 2" in body["detail"]


@pytest.mark.parametrize(
    ("action", "actor_kind", "extra", "field"),
    [
        ("return", "patroller", {}, "params.reason"),
        ("return", "patroller", {"params": {"reason": ""}}, "params.reason"),
        ("set_track", "center", {"params": {"track": "secret"}}, "params.track"),
        ("set_difficulty", "center", {"params": {}}, "params.difficulty"),
        ("acknowledge", "patroller", {"params": {"eta": 5}}, "params.eta"),
        ("acknowledge", "op-7", {}, "actor"),
        ("acknowledge", "center:9:x", {}, "actor"),
    ],
)
def test_bad_params_or_actor_are_422_naming_the_field(
    client: TestClient, rt: Runtime, action: str, actor_kind: str, extra: dict[str, Any], field: str
) -> None:
    incident_id = raise_alarm(rt)
    detail = client.get(f"/api/v1/incidents/{incident_id}").json()
    actor = {"patroller": f"patroller:{detail['assignee']}", "center": centers(detail)[2]}.get(actor_kind, actor_kind)

    if actor_kind in ("op-7", "center:9:x"):  # a malformed `actor` in the body (the login is the client's admin)
        resp = client.post(f"/api/v1/incidents/{incident_id}/actions", json={"action": action, "actor": actor, **extra})
    else:
        resp = act(client, incident_id, action, actor, **extra)
    body = problem(resp, 422)

    assert [e["field"] for e in body["errors"]] == [field]
    assert client.get(f"/api/v1/incidents/{incident_id}").json()["history"] == detail["history"]


def test_dispatch_without_assignee_or_unit_is_422(manual_client: TestClient, manual: Runtime) -> None:
    incident_id = raise_alarm(manual)
    _, _, center = centers(manual_client.get(f"/api/v1/incidents/{incident_id}").json())
    assert problem(act(manual_client, incident_id, "dispatch", center, params={"unit": "w"}), 409)["state"] == "reported"
    assert ok(act(manual_client, incident_id, "register", center))["state"] == "registered"  # 立案 before 派遣

    body = problem(act(manual_client, incident_id, "dispatch", center), 422)
    assert [e["field"] for e in body["errors"]] == ["params.assignee"]
    body = problem(act(manual_client, incident_id, "dispatch", center, params={"assignee": "nobody-42"}), 422)
    assert [e["field"] for e in body["errors"]] == ["params.assignee"] and "nobody-42" in body["detail"]
    assert ok(act(manual_client, incident_id, "dispatch", center, params={"unit": "water-co"}))["unit"] == "water-co"
    # handling units have no logins: an admin records their steps (as a system actor)
    assert problem(act(manual_client, incident_id, "acknowledge", center), 403)["detail"].endswith("is for the handler (unit water-co)")
    assert ok(act(manual_client, incident_id, "acknowledge", "system:water-co-desk"))["state"] == "acknowledged"


def test_extension_park_resume_and_rework_over_http(client: TestClient, rt: Runtime, clock: Clock) -> None:
    incident_id = raise_alarm(rt)
    detail = client.get(f"/api/v1/incidents/{incident_id}").json()
    _, _, center = centers(detail)
    me = f"patroller:{detail['assignee']}"

    handle_deadline = iso(ok(act(client, incident_id, "acknowledge", me))["deadline"])
    assert handle_deadline is not None and handle_deadline > clock.now
    ok(act(client, incident_id, "request_extension", me, params={"reason": "waiting for parts"}))
    too_early = (handle_deadline - timedelta(minutes=1)).isoformat()
    body = problem(act(client, incident_id, "approve_extension", center, params={"until": too_early}), 422)
    assert [e["field"] for e in body["errors"]] == ["params.until"]
    until = handle_deadline + timedelta(hours=2)
    extended = ok(act(client, incident_id, "approve_extension", center, params={"until": until.isoformat()}))
    assert extended["state"] == "acknowledged" and iso(extended["deadline"]) == until

    parked = ok(act(client, incident_id, "park", center, params={"reason": "road closed"}))
    assert parked["state"] == "parked" and parked["paused_at"] is not None
    clock.advance(minutes=30)
    resumed = ok(act(client, incident_id, "resume", center))
    assert resumed["state"] == "acknowledged" and resumed["paused_at"] is None
    assert iso(resumed["deadline"]) is not None and iso(resumed["deadline"]) > until  # pushed by the stop

    kept = iso(resumed["deadline"])
    ok(act(client, incident_id, "resolve", me))
    ok(act(client, incident_id, "check", center))
    rework = ok(act(client, incident_id, "rework", center, note="gate still open"))
    assert (rework["state"], rework["stage"], iso(rework["deadline"])) == ("rework", "handle", kept)

    clock.now = kept + timedelta(minutes=1)
    ok(act(client, incident_id, "acknowledge", me))
    late = problem(act(client, incident_id, "request_extension", me), 409)
    assert late["action"] == "request_extension" and "deadline" in late["detail"]
