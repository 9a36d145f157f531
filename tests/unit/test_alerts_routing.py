"""The routing chain: assigned → backups → neighbouring grids → command center (rule in the route record)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time

import pytest

from alerts.model import RouteRecord
from alerts.routing import Candidate, Router, distance_m
from geo.model import Patroller, RosterException, Shift
from tests.unit.fakes import BoxIndex

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai, a Saturday
ALL_DAY = Shift(frozenset(range(7)), time(0, 0), time(0, 0))
G1, G2, G3, G4 = (f"430102001001{n:03d}" for n in (1, 2, 3, 4))
# four grids in a row, 0.01° (~1 km) wide, along the equator so degrees are easy to reason about
INDEX = BoxIndex({G1: (0, 0, 0.01, 0.01), G2: (0.01, 0, 0.02, 0.01), G3: (0.02, 0, 0.03, 0.01), G4: (0.03, 0, 0.04, 0.01)})
NEIGHBOURS = {G1: (G2,), G2: (G1, G3), G3: (G2, G4), G4: (G3,)}
POINT = (0.005, 0.005)  # in G1


@dataclass
class Pos:
    lon: float
    lat: float


def p(pid: str, grids=(), *, on: bool = True, backup=(), exceptions=()) -> Patroller:
    return Patroller(pid, pid, "1", tuple(grids), (ALL_DAY,) if on else (), exceptions=exceptions, backup_grid_codes=tuple(backup))


def route(router: Router, positions, at: datetime = T0) -> RouteRecord:
    return router.route(*POINT, point_source="payload", at=at, positions=positions)


def test_existing_constructor_and_record_shape_are_unchanged() -> None:
    router = Router(INDEX, [p("A", [G1])], "Asia/Shanghai")
    rec = route(router, {"A": Pos(0.004, 0.004)})
    assert (rec.patroller_id, rec.rule) == ("A", "nearest-on-duty")
    assert RouteRecord.from_dict(rec.to_dict()) == rec
    assert router.choose_patroller(G1, *POINT, T0, {}) == ("A", "on-duty-no-position")


def test_step1_nearest_on_duty_assigned_then_without_position() -> None:
    router = Router(INDEX, [p("A", [G1]), p("B", [G1]), p("C", [G1], on=False), p("D", [G1])])
    assert route(router, {"A": Pos(0.009, 0.009), "B": Pos(0.006, 0.006), "C": Pos(0.005, 0.005)}).patroller_id == "B"
    rec = route(router, {})
    assert (rec.patroller_id, rec.rule) == ("A", "on-duty-no-position")  # lowest id without a position


def test_step1_wins_over_a_nearer_backup_or_neighbour() -> None:
    router = Router(INDEX, [p("A", [G1]), p("B", [G2], backup=[G1]), p("C", [G2])], neighbours=NEIGHBOURS)
    rec = route(router, {"B": Pos(*POINT), "C": Pos(*POINT)})
    assert (rec.patroller_id, rec.rule) == ("A", "on-duty-no-position")


def test_step2_on_duty_backup_nearest_by_gps_then_without_position() -> None:
    people = [p("A", [G1], on=False), p("B", [G3], backup=[G1]), p("C", [G4], backup=[G1]), p("D", [G4], backup=[G1], on=False)]
    router = Router(INDEX, people, neighbours=NEIGHBOURS)
    rec = route(router, {"B": Pos(0.025, 0.005), "C": Pos(0.012, 0.005), "D": Pos(*POINT)})
    assert (rec.patroller_id, rec.rule) == ("C", "backup-on-duty")
    rec = route(router, {})
    assert (rec.patroller_id, rec.rule) == ("B", "backup-on-duty-no-position")


def test_step2_backup_wins_over_a_nearer_neighbour() -> None:
    router = Router(INDEX, [p("B", [G4], backup=[G1]), p("N", [G2])], neighbours=NEIGHBOURS)
    rec = route(router, {"B": Pos(0.035, 0.005), "N": Pos(0.011, 0.005)})
    assert (rec.patroller_id, rec.rule) == ("B", "backup-on-duty")


def test_step3_neighbour_grid_patroller_within_radius() -> None:
    people = [p("A", [G1], on=False), p("N1", [G2]), p("N2", [G2]), p("X", [G3])]
    router = Router(INDEX, people, neighbours=NEIGHBOURS)
    positions = {"N1": Pos(0.018, 0.005), "N2": Pos(0.012, 0.005), "X": Pos(0.006, 0.005)}
    rec = route(router, positions)
    # X stands nearer but G3 is not a neighbour of G1
    assert (rec.patroller_id, rec.rule) == ("N2", "neighbour-on-duty")


def test_step3_radius_and_position_are_required() -> None:
    people = [p("N1", [G2]), p("N2", [G2])]
    router = Router(INDEX, people, neighbours=NEIGHBOURS)
    # N1: ~1446 m away (inside 1500 m); N2 unplaced does not qualify
    near = Pos(0.005 + 0.013, 0.005)
    assert distance_m(*POINT, near.lon, near.lat) < 1500
    assert route(router, {"N1": near}).patroller_id == "N1"
    far = Pos(0.005 + 0.0136, 0.005)  # ~1512 m
    assert distance_m(*POINT, far.lon, far.lat) > 1500
    rec = route(router, {"N1": far})
    assert (rec.patroller_id, rec.rule) == (None, "grid-command-center")
    wide = Router(INDEX, people, neighbours=NEIGHBOURS, neighbour_radius_m=2000.0)
    assert route(wide, {"N1": far}).rule == "neighbour-on-duty"


def test_step3_needs_the_neighbours_map() -> None:
    router = Router(INDEX, [p("N1", [G2])])  # no neighbours given: the old chain
    rec = route(router, {"N1": Pos(0.011, 0.005)})
    assert (rec.patroller_id, rec.rule) == (None, "grid-command-center")


def test_step4_command_center_and_outside_grids() -> None:
    router = Router(INDEX, [p("A", [G1], on=False), p("N", [G2], on=False)], neighbours=NEIGHBOURS)
    rec = route(router, {"A": Pos(*POINT), "N": Pos(*POINT)})
    assert (rec.patroller_id, rec.rule, rec.l3) == (None, "grid-command-center", G1)
    out = router.route(5.0, 5.0, point_source="payload", at=T0, positions={})
    assert (out.patroller_id, out.rule, out.l3) == (None, "outside-grids", None)


def test_roster_exceptions_change_who_is_on_duty() -> None:
    sat = date(2026, 11, 21)
    off = p("A", [G1], exceptions=(RosterException(sat, False),))
    special = p("B", [G1], on=False, exceptions=(RosterException(sat, True, time(9), time(11)),))
    router = Router(INDEX, [off, special])
    assert route(router, {}).patroller_id == "B"  # 10:00 local
    assert route(router, {}, at=datetime(2026, 11, 21, 4, tzinfo=UTC)).rule == "grid-command-center"  # 12:00


def test_decide_and_explain_record_every_candidate() -> None:
    people = [
        p("A", [G1], on=False),
        p("B", [G3], backup=[G1]),
        p("N1", [G2]),
        p("N2", [G2]),
        p("N3", [G2]),
        p("N4", [G2], on=False),
    ]
    router = Router(INDEX, people, neighbours=NEIGHBOURS)
    positions = {"N1": Pos(0.012, 0.005), "N2": Pos(0.010, 0.005), "N3": Pos(0.03, 0.005)}
    decision = router.decide(*POINT, point_source="payload", at=T0, positions=positions)
    assert decision.record == route(router, positions)
    assert (decision.record.patroller_id, decision.record.rule) == ("B", "backup-on-duty-no-position")
    decision = router.decide(*POINT, point_source="payload", at=T0, positions={**positions, "B": Pos(0.5, 0.5)})
    assert decision.record.rule == "backup-on-duty"
    # without the backup on duty, the neighbours decide; every one looked at is listed
    router = Router(INDEX, [x for x in people if x.id != "B"], neighbours=NEIGHBOURS)
    chosen, rule, tried = router.explain(G1, *POINT, T0, positions)
    assert (chosen, rule) == ("N2", "neighbour-on-duty")
    by_id = {c.patroller_id: c for c in tried}
    assert by_id["A"] == Candidate("A", "assigned", "off-duty", None, G1)
    assert (by_id["N2"].outcome, by_id["N1"].outcome) == ("chosen", "farther")
    assert by_id["N3"].outcome == "beyond-radius" and by_id["N3"].distance_m > 1500
    assert by_id["N4"].outcome == "off-duty"
    d = router.decide(*POINT, point_source="payload", at=T0, positions=positions).to_dict()
    assert d["rule"] == "neighbour-on-duty" and d["patroller_id"] == "N2"
    assert {c["patroller_id"] for c in d["candidates"]} == {"A", "N1", "N2", "N3", "N4"}


def test_negative_radius_is_refused() -> None:
    with pytest.raises(ValueError):
        Router(INDEX, [], neighbour_radius_m=-1)
