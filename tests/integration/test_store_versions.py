"""The grid-version part of the store contract, on a real SQLite file and a real PostGIS database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from shapely.geometry import box

from geo.model import Building, Grid
from store.errors import StoreError, VersionStateError
from store.ports import Store
from tests.integration.test_store_contract import L1, L2A, L3A, L3B, make_district

pytestmark = pytest.mark.integration

T1 = datetime.now(UTC) + timedelta(hours=1)  # after the seed's valid_from (now)


def redraw() -> tuple[list[Grid], list[Building]]:
    """The test district with L3A and L3B merged into L3A (L3C and L2B unchanged)."""
    district = make_district()
    grids = [g for g in district.grids if g.code != L3B]
    grids = [Grid(L3A, 3, "Unit A1+A2", box(113.80, 27.60, 113.90, 27.65), L2A) if g.code == L3A else g for g in grids]
    buildings = [Building(b.code, L3A, b.name, b.geometry) for b in district.buildings]
    return grids, buildings


@pytest.fixture
def seeded(store_backend: Store) -> Store:
    store_backend.load_district(make_district(), "v1")
    return store_backend


def test_seed_is_a_published_current_version(seeded: Store) -> None:
    v = seeded.current_version()
    assert v is not None and v.status == "published" and v.is_current and v.valid_to is None
    assert v.valid_from is not None and v.published_by == "seed"
    assert [a.action for a in seeded.version_audit(v.id)] == ["import", "publish"]
    assert seeded.version_token() == v.id


def test_draft_is_stored_but_not_current(seeded: Store) -> None:
    current = seeded.current_version()
    grids, buildings = redraw()
    draft = seeded.create_draft("redraw-1", grids, buildings, source="redraw.geojson", crs="EPSG:4547", actor="planner-1", at=T1)
    assert draft.status == "draft" and not draft.is_current and draft.valid_from is None
    assert (draft.source, draft.crs, draft.created_by) == ("redraw.geojson", "EPSG:4547", "planner-1")
    assert seeded.current_version() == current
    assert seeded.version_token() == current.id  # type: ignore[union-attr]
    assert [g.code for g in seeded.grids(version=draft.id, level=3)] == [L3A, "430102001002001"]
    assert {b.grid_code for b in seeded.buildings(version=draft.id)} == {L3A}
    assert len(seeded.grids(level=3)) == 3  # the current version is untouched
    assert [v.id for v in seeded.grid_versions()] == [draft.id, current.id]  # type: ignore[union-attr]
    with pytest.raises(VersionStateError, match="redraw-1"):
        seeded.create_draft("redraw-1", grids, buildings, source=None, crs=None, actor="planner-1", at=T1)


def test_publish_switches_current_and_keeps_history(seeded: Store) -> None:
    old = seeded.current_version()
    assert old is not None
    grids, buildings = redraw()
    draft = seeded.create_draft("redraw-1", grids, buildings, source=None, crs=None, actor="planner-1", at=T1)
    with seeded.unit_of_work() as uow:
        new = uow.publish_version(draft.id, at=T1, actor="planner-1", detail={"policy": "keep"})
        uow.move_devices([("thermal-1", L3A)])
        uow.set_patroller_grids([("p-1", (L3A,))])
    assert new.is_current and new.status == "published" and new.valid_from == T1 and new.published_by == "planner-1"
    assert seeded.version_token() == draft.id
    retired = seeded.grid_version(old.id)
    assert retired is not None and not retired.is_current and retired.valid_to == T1
    # as-of: before the publish the old version answers, from it on the new one
    assert seeded.version_at(T1 - timedelta(seconds=1)).id == old.id  # type: ignore[union-attr]
    assert seeded.version_at(T1).id == draft.id  # type: ignore[union-attr]
    assert seeded.version_at(old.valid_from - timedelta(days=1)) is None  # type: ignore[operator]
    assert [g.code for g in seeded.grids(level=3)] == [L3A, "430102001002001"]
    assert len(seeded.grids(level=3, version=old.id)) == 3
    assert {d.id: d.grid_code for d in seeded.devices()}["thermal-1"] == L3A
    assert {p.id: p.grid_codes for p in seeded.patrollers()}["p-1"] == (L3A,)
    audit = seeded.version_audit(draft.id)
    assert [a.action for a in audit] == ["import", "publish"]
    assert audit[1].actor == "planner-1" and audit[1].detail == {"previous": old.id, "policy": "keep"}
    # published is final: no second publish, no delete, no edits of its grids
    with pytest.raises(VersionStateError, match="only a draft"), seeded.unit_of_work() as uow:
        uow.publish_version(draft.id, at=T1, actor="x", detail={})
    with pytest.raises(VersionStateError, match="only a draft"):
        seeded.delete_draft(draft.id, actor="x", at=T1)


def test_a_failed_publish_changes_nothing(seeded: Store) -> None:
    old = seeded.current_version()
    grids, buildings = redraw()
    draft = seeded.create_draft("redraw-1", grids, buildings, source=None, crs=None, actor="p", at=T1)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), seeded.unit_of_work() as uow:
        uow.publish_version(draft.id, at=T1, actor="p", detail={})
        uow.move_devices([("thermal-1", L3A)])
        raise Boom
    assert seeded.current_version() == old
    assert seeded.grid_version(draft.id).status == "draft"  # type: ignore[union-attr]
    assert {d.id: d.grid_code for d in seeded.devices()}["thermal-1"] == L3B
    assert [a.action for a in seeded.version_audit(draft.id)] == ["import"]


def test_publishing_before_the_current_version_began_is_refused(seeded: Store) -> None:
    grids, buildings = redraw()
    draft = seeded.create_draft("redraw-1", grids, buildings, source=None, crs=None, actor="p", at=T1)
    with pytest.raises(VersionStateError, match="before"), seeded.unit_of_work() as uow:
        uow.publish_version(draft.id, at=datetime(2000, 1, 1, tzinfo=UTC), actor="p", detail={})


def test_drafts_can_be_deleted_and_reports_stored(seeded: Store) -> None:
    grids, buildings = redraw()
    draft = seeded.create_draft("redraw-1", grids, buildings, source=None, crs=None, actor="p", at=T1)
    assert seeded.report(draft.id, "validation") is None
    seeded.save_report(draft.id, "validation", {"ok": True, "findings": [], "name": "网格"})
    seeded.save_report(draft.id, "validation", {"ok": False, "findings": [1]})
    assert seeded.report(draft.id, "validation") == {"ok": False, "findings": [1]}
    seeded.delete_draft(draft.id, actor="p", at=T1)
    assert seeded.grid_version(draft.id) is None
    assert seeded.grids(version=draft.id) == []
    assert [a.action for a in seeded.version_audit(draft.id)] == ["import", "delete"]
    with pytest.raises(VersionStateError, match="no such version"):
        seeded.delete_draft(draft.id, actor="p", at=T1)
    with pytest.raises(VersionStateError, match="no such version"), seeded.unit_of_work() as uow:
        uow.publish_version(draft.id, at=T1, actor="p", detail={})


def test_published_grids_are_immutable_in_the_database(seeded: Store) -> None:
    """The schema itself refuses edits of a published version's grids and of the audit log."""
    v = seeded.current_version()
    assert v is not None
    if seeded.url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(seeded.url.removeprefix("sqlite:///"))
        with pytest.raises(sqlite3.DatabaseError, match="immutable"):
            conn.execute("UPDATE grids SET name = 'x' WHERE version_id = ?", (v.id,))
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM grid_version_audit")
        conn.close()
    else:
        import psycopg

        with psycopg.connect(seeded.url) as conn, pytest.raises(psycopg.Error, match="immutable"):
            conn.execute("DELETE FROM grids WHERE version_id = %s AND code = %s", (v.id, L1))
        with psycopg.connect(seeded.url) as conn, pytest.raises(psycopg.Error, match="append-only"):
            conn.execute("UPDATE grid_version_audit SET actor = 'x'")
    assert isinstance(VersionStateError("x"), StoreError)


def test_a_draft_keeps_duplicate_codes_for_validation_to_report(seeded: Store) -> None:
    grids, buildings = redraw()
    dup = Grid(L3A, 3, "copy-pasted code", box(113.80, 27.65, 113.85, 27.70), L2A)
    draft = seeded.create_draft("dup", [*grids, dup], buildings, source=None, crs=None, actor="p", at=T1)
    assert sorted(g.name for g in seeded.grids(version=draft.id) if g.code == L3A) == ["Unit A1+A2", "copy-pasted code"]


def test_publish_refuses_when_the_current_version_changed_meanwhile(seeded: Store) -> None:
    old = seeded.current_version()
    assert old is not None
    grids, buildings = redraw()
    a = seeded.create_draft("a", grids, buildings, source=None, crs=None, actor="p", at=T1)
    b = seeded.create_draft("b", grids, buildings, source=None, crs=None, actor="p", at=T1)
    with seeded.unit_of_work() as uow:
        uow.publish_version(a.id, at=T1, actor="p", detail={}, expected_current=old.id)
    with pytest.raises(VersionStateError, match="changed"), seeded.unit_of_work() as uow:
        uow.publish_version(b.id, at=T1 + timedelta(seconds=1), actor="p", detail={}, expected_current=old.id)
    assert seeded.current_version().id == a.id  # type: ignore[union-attr]
