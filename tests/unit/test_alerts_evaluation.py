"""Evaluation metrics over a hand-computed fixture: every rate a distinct fraction, mean times, coverage, score, grade."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from shapely.geometry import box

from alerts import workflow
from alerts.evaluation import (
    CSV_COLUMNS,
    DEFAULT_CONFIG,
    EvaluationConfig,
    EvaluationConfigError,
    EvaluationRow,
    Tracks,
    config_from_dict,
    evaluate,
    load_config,
    score_of,
    to_csv,
)
from alerts.model import HistoryEntry, Incident, IncidentState, RouteRecord
from geo.model import Building

pytestmark = pytest.mark.unit
T = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
END = T + timedelta(minutes=600)
L1, L2 = "430102001", "430102001001"
G1, G2 = L2 + "001", L2 + "002"
LON0, LAT0 = 113.85, 27.62
M_LAT = 1 / 111_195  # degrees of latitude per metre


def at(minutes: float) -> datetime:
    return T + timedelta(minutes=minutes)


def build(
    iid: str,
    created: float,
    steps: list[tuple[str, float]],
    *,
    grid: str = G1,
    assignee: str | None = "P1",
    deadline: float | None = None,
    severity: int = 2,
    escalation: int = 3,
    self_handled: bool = False,
    **times: float,
) -> tuple[Incident, list[HistoryEntry]]:
    """An incident created at T+`created` min, moved through `steps` (action, minute) by the workflow."""
    route = RouteRecord(LON0, LAT0, "report", 1, grid[:9], grid[:12], grid, None, assignee, "test", at(created))
    inc = Incident(iid, "city.road", IncidentState.REPORTED, severity, "report", route, at(created), at(created),
                   assignee=assignee, escalation_level=escalation, self_handled=self_handled)
    rows = [HistoryEntry(iid, at(created), "report", None, IncidentState.REPORTED, "test")]
    for action, minute in steps:
        if action == "dispatch" and inc.state is IncidentState.REPORTED:  # registered first (design §6)
            rows.append(workflow.apply(inc, "register", actor="test", at=at(minute)))
        params = {"until": at(deadline)} if action == "approve_extension" and deadline is not None else None
        kw = {"params": params} if params else {}
        rows.append(workflow.apply(inc, action, actor="test", at=at(minute), **kw))
    # as the workflow leaves them: an open incident's deadline is its running clock's; a closed one has
    # none, its handle deadline was kept in details at resolve
    inc.details.pop("handle_deadline", None)
    if deadline is not None and inc.state in (IncidentState.CLOSED, IncidentState.CHECKING, IncidentState.RESOLVED):
        inc.deadline = None if inc.state is IncidentState.CLOSED else inc.deadline
        inc.details["handle_deadline"] = at(deadline).isoformat()
    else:
        inc.deadline = at(deadline) if deadline is not None else None
    for name, minute in times.items():  # milestone fields as the workflow stamps them
        setattr(inc, name, at(minute))
    return inc, rows



def fixture() -> tuple[list[Incident], dict[str, list[HistoryEntry]]]:
    built = [
        # A: dispatched on time (10 ≤ 30), closed on time (80 ≤ 100)
        build("A", 0, [("dispatch", 10), ("acknowledge", 20), ("resolve", 60), ("check", 70), ("close", 80)], deadline=100,
              dispatched_at=10, acknowledged_at=20, arrived_at=30, resolved_at=60, closed_at=80),
        # B: dispatched late (40 > 30), reworked once, closed late (200 > 180)
        build("B", 0, [("dispatch", 40), ("acknowledge", 60), ("resolve", 120), ("check", 130), ("rework", 140),
                       ("acknowledge", 150), ("resolve", 160), ("check", 170), ("close", 200)], deadline=180,
              dispatched_at=40, acknowledged_at=60, resolved_at=160, closed_at=200),
        # C: urgent, dispatched late (15 > 10), extended, closed on time (220 ≤ 300); owned by the street center
        build("C", 100, [("dispatch", 115), ("acknowledge", 120), ("request_extension", 130), ("approve_extension", 140),
                         ("resolve", 200), ("check", 210), ("close", 220)], deadline=300, severity=4, escalation=2,
              dispatched_at=115, acknowledged_at=120, resolved_at=200, closed_at=220),
        # D: on time (5), extended, still open past its deadline (400) at the end → overdue open
        build("D", 100, [("dispatch", 105), ("acknowledge", 110), ("request_extension", 120), ("approve_extension", 125)],
              deadline=400, dispatched_at=105, acknowledged_at=110),
        # E: on time (10); acknowledged only after the period (650): dispatched and overdue (550) at the end
        build("E", 200, [("dispatch", 210), ("acknowledge", 650)], deadline=550, dispatched_at=210, acknowledged_at=650),
        # F: self-handled: registered and closed at once; no deadline, no dispatch
        build("F", 300, [("register", 300), ("close", 300)], self_handled=True, closed_at=300),
        # G: never dispatched, 30-min limit passed before the end → a late dispatch
        build("G", 500, [], assignee=None),
        # H: never dispatched, limit not yet passed at the end → not counted for dispatch
        build("H", 590, [], assignee=None),
        # I: on time (20), arrived, closed late (470 > 440)
        build("I", 400, [("dispatch", 420), ("acknowledge", 430), ("resolve", 450), ("check", 460), ("close", 470)],
              deadline=440, dispatched_at=420, acknowledged_at=430, arrived_at=425, resolved_at=450, closed_at=470),
        # J: on time (10); closed only after the period (700): checking and overdue (500) at the end
        build("J", 300, [("dispatch", 310), ("acknowledge", 320), ("resolve", 340), ("check", 350), ("close", 700)],
              deadline=500, dispatched_at=310, acknowledged_at=320, resolved_at=340, closed_at=700),
        # outside the period: before and after
        build("K", -100, [("dispatch", -90)], deadline=-50),
        build("L", 610, [("dispatch", 615)], deadline=700),
        # grid G2, patroller P2: all perfect
        build("M", 0, [("dispatch", 5), ("acknowledge", 10), ("resolve", 20), ("check", 25), ("close", 30)], grid=G2,
              assignee="P2", deadline=60, dispatched_at=5, acknowledged_at=10, resolved_at=20, closed_at=30),
    ]
    return [i for i, _ in built], {i.id: rows for i, rows in built}


def building(code: str, grid: str, west_m: float, south_m: float) -> Building:
    """A 20 m × 20 m footprint, its south-west corner at (west_m, south_m) metres from (LON0, LAT0)."""
    m_lon = M_LAT / 0.8859  # cos(27.62°) ≈ 0.8860
    return Building(code, grid, code, box(LON0 + west_m * m_lon, LAT0 + south_m * M_LAT,
                                          LON0 + (west_m + 20) * m_lon, LAT0 + (south_m + 20) * M_LAT))


BUILDINGS = [
    building(G1 + "00001", G1, 0, 0),
    building(G1 + "00002", G1, 200, 0),
    building(G1 + "00003", G1, 400, 0),
    building(G1 + "00004", G1, 600, 0),
    building(G2 + "00001", G2, 0, 400),
    building(G2 + "00002", G2, 200, 400),
]


def point_north_of(b: Building, metres: float) -> tuple[float, float]:
    c = b.geometry.centroid
    return c.x, b.geometry.bounds[3] + metres * M_LAT


def tracks() -> list[tuple[str, datetime, float, float]]:
    rows = []
    for pid, b, metres, minute in (
        ("P1", BUILDINGS[0], 25, 10),  # visited (25 m ≤ 30)
        ("P1", BUILDINGS[1], 5, 20),  # visited
        ("P2", BUILDINGS[2], 0, 30),  # visited by P2 (inside the footprint)
        ("P1", BUILDINGS[3], 40, 40),  # 40 m away: not visited
        ("P1", BUILDINGS[3], 0, 700),  # after the period: ignored
        ("P2", BUILDINGS[4], 10, 50),  # G2: one of two visited
    ):
        lon, lat = point_north_of(b, metres)
        rows.append((pid, at(minute), lon, lat))
    return rows


def by_key(rows: list[EvaluationRow]) -> dict[str, EvaluationRow]:
    return {r.key: r for r in rows}


def test_every_grid_metric_is_the_hand_computed_fraction() -> None:
    incidents, history = fixture()
    rows = by_key(evaluate(incidents, history, start=T, end=END, by="grid", level=3, buildings=BUILDINGS, tracks=tracks()))
    g1 = rows[G1]
    assert (g1.incidents, g1.closed, g1.closed_rate) == (10, 5, pytest.approx(5 / 10))  # A B C F I
    assert (g1.due, g1.on_time_closed, g1.on_time_close_rate) == (7, 2, pytest.approx(2 / 7))  # due A B C D E I J; on time A C
    assert (g1.dispatch_checked, g1.on_time_dispatched, g1.on_time_dispatch_rate) == (8, 5, pytest.approx(5 / 8))  # + G; A D E I J
    assert (g1.reworked, g1.rework_rate) == (1, pytest.approx(1 / 10))  # B
    assert (g1.extended, g1.extension_rate) == (2, pytest.approx(2 / 10))  # C D
    assert (g1.overdue_open, g1.overdue_open_rate) == (3, pytest.approx(3 / 10))  # D E J
    assert g1.self_handled == 1  # F
    assert g1.mean_minutes_to_acknowledge == pytest.approx((10 + 20 + 5 + 5 + 10 + 10) / 6)  # A B C D I J (E: after the end)
    assert g1.mean_minutes_to_arrive == pytest.approx((20 + 5) / 2)  # A I
    assert g1.mean_minutes_to_resolve == pytest.approx((60 + 160 + 100 + 50 + 40) / 5)  # A B C I J
    assert (g1.buildings, g1.buildings_visited, g1.coverage) == (4, 3, pytest.approx(3 / 4))
    expected = 100 * (0.2 * 0.5 + 0.25 * 2 / 7 + 0.15 * 5 / 8 + 0.1 * 0.9 + 0.05 * 0.8 + 0.15 * 0.7 + 0.1 * 0.75)
    assert g1.score == pytest.approx(expected) and g1.score == pytest.approx(57.5178571)
    assert g1.grade == "E"
    g2 = rows[G2]
    assert (g2.incidents, g2.closed_rate, g2.on_time_close_rate, g2.on_time_dispatch_rate) == (1, 1.0, 1.0, 1.0)
    assert (g2.rework_rate, g2.overdue_open_rate, g2.coverage) == (0.0, 0.0, 0.5)
    assert g2.score == pytest.approx(95.0) and g2.grade == "A"


def test_levels_patrollers_and_centers() -> None:
    incidents, history = fixture()
    (l2,) = evaluate(incidents, history, start=T, end=END, level=2, buildings=BUILDINGS, tracks=tracks())
    assert (l2.key, l2.level, l2.incidents, l2.closed) == (L2, 2, 11, 6)
    assert (l2.buildings, l2.buildings_visited) == (6, 4)
    chains = {G1: (L1, L2), G2: (L1, L2)}  # foreign codes: the parent chain decides, not the prefix
    (same,) = evaluate(incidents, history, start=T, end=END, level=2, buildings=BUILDINGS, tracks=tracks(), ancestors=chains)
    assert (same.buildings, same.buildings_visited) == (6, 4)
    (l1,) = evaluate(incidents, history, start=T, end=END, level=1)
    assert (l1.key, l1.incidents, l1.coverage) == (L1, 11, None)  # no tracks: no coverage

    rows = by_key(evaluate(incidents, history, start=T, end=END, by="patroller", buildings=BUILDINGS, tracks=tracks(),
                           patroller_grids={"P1": [G1], "P2": [G2]}))
    assert set(rows) == {"P1", "P2"}  # G and H have no assignee
    p1 = rows["P1"]
    assert (p1.incidents, p1.closed, p1.self_handled, p1.level) == (8, 5, 1, None)
    assert (p1.buildings, p1.buildings_visited) == (4, 2)  # P2's visit to G1's third building is not P1's
    assert rows["P2"].coverage == pytest.approx(1 / 2)

    centers = by_key(evaluate(incidents, history, start=T, end=END, by="center", level=2))
    assert set(centers) == {L2} and centers[L2].incidents == 1  # C was escalated to the street center
    centers = by_key(evaluate(incidents, history, start=T, end=END, by="center", level=3))
    assert centers[G1].incidents == 9 and centers[G2].incidents == 1
    everyone = evaluate(incidents, history, start=T, end=END, by="center", level=None)
    assert {(r.key, r.level, r.incidents) for r in everyone} == {(G1, 3, 9), (G2, 3, 1), (L2, 2, 1)}


def test_units_give_rows_without_incidents_and_history_is_optional() -> None:
    incidents, _ = fixture()
    rows = evaluate(incidents, {}, start=T, end=END, units=[G2, "430102001001003"])
    assert [r.key for r in rows] == [G2, "430102001001003"]
    empty = rows[1]
    assert empty.incidents == 0 and empty.closed_rate is None and empty.score is None and empty.grade is None
    # without audit rows the incident fields alone give the same answers for a finished incident
    assert rows[0].closed == 1 and rows[0].on_time_dispatch_rate == 1.0 and rows[0].mean_minutes_to_acknowledge == 5


def test_milestones_come_from_history_when_the_fields_are_unset() -> None:
    inc, rows = build("X", 0, [("dispatch", 10), ("acknowledge", 16), ("resolve", 30), ("check", 35), ("close", 40)], deadline=60)
    inc.acknowledged_at = inc.resolved_at = inc.closed_at = None
    (row,) = evaluate([inc], {"X": rows}, start=T, end=END)
    assert (row.closed, row.on_time_closed, row.mean_minutes_to_acknowledge, row.mean_minutes_to_resolve) == (1, 1, 6, 30)


def test_grades_follow_the_thresholds() -> None:
    cfg = EvaluationConfig(weights={"closed_rate": 1.0})
    assert [cfg.grade(s) for s in (100, 90, 89.99, 80, 79.5, 70, 60, 59.9, 0, None)] == \
        ["A", "A", "B", "B", "C", "C", "D", "E", "E", None]
    row = EvaluationRow("grid", G1, 3, T, END, incidents=4, closed=3, closed_rate=0.75)
    assert score_of(row, cfg) == pytest.approx(75.0) and cfg.grade(score_of(row, cfg)) == "C"
    lower = EvaluationConfig(weights={"rework_rate": 3.0, "closed_rate": 1.0})
    row.rework_rate = 0.5  # counts as 1 − 0.5
    assert score_of(row, lower) == pytest.approx(100 * (3 * 0.5 + 1 * 0.75) / 4)


def test_config_defaults_and_errors(tmp_path) -> None:  # noqa: ANN001
    cfg = load_config()
    assert cfg == DEFAULT_CONFIG
    assert cfg.dispatch_limit == timedelta(minutes=30) and cfg.urgent_dispatch_limit == timedelta(minutes=10)
    assert cfg.coverage_radius_m == 30 and sum(cfg.weights.values()) == pytest.approx(1.0)
    assert [g for g, _ in cfg.grades] == ["A", "B", "C", "D", "E"]
    with pytest.raises(EvaluationConfigError, match="weights.speed"):
        config_from_dict({"weights": {"speed": 1}})
    with pytest.raises(EvaluationConfigError, match="coverage_radius_m"):
        config_from_dict({"coverage_radius_m": -1})
    custom = tmp_path / "eval.yaml"
    custom.write_text("coverage_radius_m: 50\nweights: {coverage: 1}\ngrades: {good: 50, bad: 0}\n")
    assert load_config(custom).grade(49) == "bad"
    incidents, history = fixture()
    (g1,) = evaluate(incidents, history, start=T, end=END, units=[G1], buildings=BUILDINGS, tracks=tracks(),
                     config=load_config(custom))
    assert g1.buildings_visited == 4 and g1.score == 100 and g1.grade == "good"  # 40 m is within 50 m


def test_tracks_arrays_and_period_bounds() -> None:
    t = Tracks.from_rows(tracks())
    assert len(t) == 6 and len(t.between(T, END)) == 5
    incidents, history = fixture()
    with pytest.raises(ValueError, match="empty period"):
        evaluate(incidents, history, start=END, end=T)
    with pytest.raises(ValueError, match="level"):
        evaluate(incidents, history, start=T, end=END, level=4)


def test_csv_has_a_header_and_one_line_per_row() -> None:
    incidents, history = fixture()
    rows = evaluate(incidents, history, start=T, end=END, buildings=BUILDINGS, tracks=tracks())
    text = to_csv(rows)
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert tuple(parsed[0]) == CSV_COLUMNS and [p["key"] for p in parsed] == [G1, G2]
    assert float(parsed[0]["on_time_close_rate"]) == pytest.approx(2 / 7) and parsed[0]["grade"] == "E"
    assert parsed[0]["period_from"] == T.isoformat()
    assert parsed[1]["mean_minutes_to_arrive"] == ""  # None → empty cell
    assert rows[0].to_dict()["period_to"] == END.isoformat()
