"""Reports by people → incidents (patroller, self-handled, citizen/Open311) and the photo checks of api/photos."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, time
from pathlib import Path

import pytest

from alerts.model import IncidentState
from alerts.reports import (
    REPORT_TYPES,
    CitizenReport,
    InvalidReportError,
    PatrollerReport,
    ReportOutsideDistrictError,
    open_report,
)
from alerts.routing import Router
from api.photos import (
    PhotoError,
    PhotoSettings,
    check_photo,
    check_photos,
    find_photo,
    photo_settings,
    remove_photos,
    sniff,
    store_photos,
)
from geo.model import Patroller, Shift
from tests.unit.fakes import BoxIndex

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
ALL_DAY = Shift(frozenset(range(7)), time(0, 0), time(0, 0))
G1, G2 = "430102001001001", "430102001001002"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 20
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 20
WEBP = b"RIFF\x20\x00\x00\x00WEBPVP8 " + b"\x00" * 20


@dataclass
class Pos:
    lon: float
    lat: float


@pytest.fixture
def router() -> Router:
    index = BoxIndex({G1: (0, 0, 1, 1), G2: (1, 0, 2, 1)})
    return Router(index, [Patroller("P1", "Li", "1", (G1,), (ALL_DAY,)), Patroller("P2", "Wang", "2", (G1,), (ALL_DAY,)),
                          Patroller("P3", "Off", "3", (G2,), ())])


POSITIONS = {"P1": Pos(0.9, 0.9), "P2": Pos(0.4, 0.4)}


def ids(_at: datetime) -> str:
    return "INC-1"


def test_patroller_report_is_registered_and_dispatched_to_the_reporter(router: Router) -> None:
    photo = {"path": "photos/INC-1/abc.png", "sha256": "abc", "bytes": 10, "content_type": "image/png"}
    report = PatrollerReport("P1", 0.5, 0.5, "city.road", note="  pothole  ", photos=[photo])
    incident, rows, notes = open_report(report, router, now=T0, positions=POSITIONS, new_id=ids, patrollers={"P1", "P2"})
    assert (incident.id, incident.state, incident.source, incident.type) == ("INC-1", IncidentState.DISPATCHED, "report", "city.road")
    assert incident.assignee == "P1"  # the reporter, not P2 who is nearer
    assert incident.route.point_source == "report" and incident.route.l3 == G1
    assert incident.dispatched_at == T0 and incident.deadline is not None and incident.deadline > T0
    assert incident.severity == REPORT_TYPES["city.road"].severity and incident.note == "pothole"
    assert incident.details == {"reporter": {"kind": "patroller", "patroller_id": "P1"}, "photos": [photo]}
    assert not incident.self_handled and incident.closed_at is None
    assert [(r.action, r.from_state, r.to_state, r.actor) for r in rows] == [
        ("report", None, IncidentState.REPORTED, "patroller:P1"),
        ("register", IncidentState.REPORTED, IncidentState.REGISTERED, "system:auto-register"),
        ("dispatch", IncidentState.REGISTERED, IncidentState.DISPATCHED, "system:auto-dispatch"),
    ]
    assert all(r.incident_id == "INC-1" and r.at == T0 for r in rows)
    assert [n.topic for n in notes] == [f"gridwatch/grids/{G1}/incidents", "gridwatch/patrollers/P1/alerts"]
    assert notes[1].payload["id"] == "INC-1" and notes[1].payload["event"] == "created"


def test_self_handled_report_opens_and_closes_at_once(router: Router) -> None:
    report = PatrollerReport("P2", 0.5, 0.5, "city.litter", note="picked it up", self_handled=True)
    incident, rows, notes = open_report(report, router, now=T0, positions=POSITIONS, new_id=ids)
    assert incident.state is IncidentState.CLOSED and incident.self_handled and incident.difficulty == "green"
    assert incident.closed_at == T0 and incident.assignee == "P2" and incident.dispatched_at is None
    assert [(r.action, r.from_state, r.to_state) for r in rows] == [
        ("report", None, IncidentState.REPORTED),
        ("register", IncidentState.REPORTED, IncidentState.REGISTERED),
        ("close", IncidentState.REGISTERED, IncidentState.CLOSED),
    ]
    assert {r.actor for r in rows} == {"patroller:P2"}
    assert [n.topic for n in notes] == [f"gridwatch/grids/{G1}/incidents"]  # nothing to send the patroller: it is done


def test_citizen_report_goes_to_verifying_and_asks_the_nearest_patroller(router: Router) -> None:
    report = CitizenReport(
        service_code="city.litter", lat=0.5, long=0.5, description="bags by the gate", address_string="1 Gate Rd",
        email="a@example.org", first_name="Ann", last_name="Lee", phone="123", media_url="https://example.org/a.jpg",
        extra={"device_id": "phone-7", "account_id": None},
    )
    incident, rows, notes = open_report(report, router, now=T0, positions=POSITIONS, new_id=ids)
    assert (incident.state, incident.source, incident.type, incident.assignee) == (IncidentState.VERIFYING, "citizen", "city.litter", None)
    assert incident.note == "bags by the gate"
    assert incident.details["reporter"] == {"kind": "citizen", "first_name": "Ann", "last_name": "Lee", "email": "a@example.org", "phone": "123"}
    assert incident.details["open311"] == {"service_code": "city.litter", "lat": 0.5, "long": 0.5, "description": "bags by the gate",
                                           "address_string": "1 Gate Rd", "media_url": "https://example.org/a.jpg", "device_id": "phone-7"}
    assert incident.details["verification"] == {"patroller_id": "P2", "requested_at": T0.isoformat(), "rule": "nearest-on-duty"}
    assert [(r.action, r.from_state, r.to_state, r.actor) for r in rows] == [
        ("report", None, IncidentState.REPORTED, "citizen"),
        ("verify", IncidentState.REPORTED, IncidentState.VERIFYING, "system:auto-verify"),
    ]
    assert [n.topic for n in notes] == [f"gridwatch/grids/{G1}/incidents", "gridwatch/patrollers/P2/alerts"]
    assert notes[1].payload["event"] == "verify" and notes[1].payload["request"] == "verify"


def test_citizen_report_where_nobody_is_on_duty_is_verified_by_the_center(router: Router) -> None:
    incident, rows, notes = open_report(CitizenReport("city.road", lat=0.5, long=1.5), router, now=T0, positions={}, new_id=ids)
    assert incident.state is IncidentState.VERIFYING and incident.details["verification"]["patroller_id"] is None
    assert rows[-1].note and "command center" in rows[-1].note
    assert [n.topic for n in notes] == [f"gridwatch/grids/{G2}/incidents"]


@pytest.mark.parametrize(
    ("report", "field"),
    [
        (PatrollerReport("P1", 181.0, 0.5, "city.road"), "lon"),
        (PatrollerReport("P1", 0.5, float("nan"), "city.road"), "lat"),
        (PatrollerReport("P1", 0.5, 0.5, "alien.landing"), "type"),
        (PatrollerReport(" ", 0.5, 0.5, "city.road"), "patroller_id"),
        (PatrollerReport("P9", 0.5, 0.5, "city.road"), "patroller_id"),
        (PatrollerReport("P1", 0.5, 0.5, "city.road", note="x" * 2001), "note"),
        (CitizenReport("nope", lat=0.5, long=0.5), "service_code"),
        (CitizenReport("city.road", lat=95.0, long=0.5), "lat"),
    ],
)
def test_invalid_reports_name_the_field(router: Router, report: PatrollerReport | CitizenReport, field: str) -> None:
    with pytest.raises(InvalidReportError) as err:
        open_report(report, router, now=T0, positions=POSITIONS, new_id=ids, patrollers={"P1", "P2"})
    assert err.value.field == field and str(err.value).startswith(f"{field}: ")


def test_reports_outside_the_district_are_refused(router: Router) -> None:
    with pytest.raises(ReportOutsideDistrictError, match="outside every grid") as err:
        open_report(PatrollerReport("P1", 5.0, 5.0, "city.road"), router, now=T0, positions=POSITIONS, new_id=ids)
    assert err.value.field == "lon,lat"
    with pytest.raises(ReportOutsideDistrictError) as err:
        open_report(CitizenReport("city.road", lat=5.0, long=5.0), router, now=T0, positions=POSITIONS, new_id=ids)
    assert err.value.field == "long,lat"


# --- photos ----------------------------------------------------------------------------------------
def test_photo_types_come_from_the_bytes_not_the_name() -> None:
    assert sniff(PNG) == ("image/png", "png") and sniff(JPEG) == ("image/jpeg", "jpg") and sniff(WEBP) == ("image/webp", "webp")
    assert sniff(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None and sniff(b"GIF89a") is None
    photo = check_photo(PNG, name="../../evil.jpg")
    assert (photo.content_type, photo.ext, photo.name) == ("image/png", "png", "evil.jpg")
    assert photo.sha256 == hashlib.sha256(PNG).hexdigest()
    assert photo.ref("INC-1") == {"path": f"photos/INC-1/{photo.sha256}.png", "sha256": photo.sha256, "bytes": len(PNG),
                                  "content_type": "image/png", "name": "evil.jpg"}


@pytest.mark.parametrize(
    ("data", "status"),
    [(b"this is text, named photo.jpg", 415), (b"<svg xmlns='http://www.w3.org/2000/svg'/>", 415), (b"", 422),
     (PNG + b"\x00" * 100, 413)],
)
def test_bad_photos_are_refused_with_the_right_status(data: bytes, status: int) -> None:
    with pytest.raises(PhotoError) as err:
        check_photo(data, max_bytes=len(PNG) + 50, name="photo.jpg", index=2)
    assert err.value.status == status and "photos[2]" in str(err.value)


def test_check_photos_limits_the_count_and_drops_repeats(tmp_path: Path) -> None:
    settings = PhotoSettings(tmp_path, max_bytes=1000, max_count=3)
    assert len(check_photos([("a.png", PNG), ("b.png", PNG), ("c.jpg", JPEG)], settings)) == 2
    with pytest.raises(PhotoError, match="at most 3") as err:
        check_photos([("x", PNG)] * 4, settings)
    assert err.value.status == 422


def test_photos_are_stored_by_hash_and_removed_on_failure(tmp_path: Path) -> None:
    photos = check_photos([("a.png", PNG), ("b.webp", WEBP)], PhotoSettings(tmp_path))
    written = store_photos(tmp_path, "INC-1", photos)
    assert [p.read_bytes() for p in written] == [PNG, WEBP]
    assert find_photo(tmp_path, "INC-1", photos[0].sha256) == (written[0].resolve(), "image/png")
    assert find_photo(tmp_path, "INC-1", "0" * 64) is None  # no such photo
    assert find_photo(tmp_path, "../INC-1", photos[0].sha256) is None  # ids are names, not paths
    assert find_photo(tmp_path, "INC-2", photos[0].sha256) is None  # another incident's folder
    written[1].write_bytes(PNG)  # a file whose bytes no longer hash to its name is not served
    assert find_photo(tmp_path, "INC-1", photos[1].sha256) is None
    remove_photos(tmp_path, "INC-1")
    assert not (tmp_path / "photos" / "INC-1").exists()


def test_photo_settings_default_when_the_settings_lack_them() -> None:
    class Bare:
        pass

    s = photo_settings(Bare())
    assert (s.data_dir, s.max_bytes, s.max_count) == (Path("var"), 5 * 1024 * 1024, 5)

    class Full:
        data_dir = "/srv/gw"
        max_photo_bytes = 10
        max_photos = 2

    assert photo_settings(Full()) == PhotoSettings(Path("/srv/gw"), 10, 2)
