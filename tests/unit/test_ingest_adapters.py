"""Payload adapters on byte fixtures: alarm v1, gridwatch location, OwnTracks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ingest.adapters import alarm_v1, location
from ingest.adapters.common import MAX_PAYLOAD_BYTES
from ingest.model import Alarm, DeadLetter, PatrollerPosition

pytestmark = pytest.mark.unit

RECEIVED = datetime(2026, 11, 21, 0, 15, 3, tzinfo=UTC)
TOPIC = "gridwatch/devices/fence-0001/alarm"
VALID = (
    b'{"id": "msg-000123", "ts": "2026-11-21T08:15:02+08:00", "type": "fence.intrusion",'
    b' "severity": 3, "lat": 27.6231, "lon": 113.8544, "zone": "Z4", "data": {"voltage_kv": 7.9}}'
)


def decode_alarm(payload: bytes) -> Alarm | DeadLetter:
    return alarm_v1.decode("fence-0001", payload, RECEIVED, topic=TOPIC)


def with_fields(**changes: object) -> bytes:
    body = json.loads(VALID)
    for key, value in changes.items():
        if value is ...:
            body.pop(key, None)
        else:
            body[key] = value
    return json.dumps(body).encode()


def dead(result: object, reason: str) -> DeadLetter:
    assert isinstance(result, DeadLetter), result
    assert result.reason == reason, (result.reason, result.detail)
    return result


# -- alarm v1: accepted -----------------------------------------------------------------------

def test_valid_alarm_is_normalized_with_raw_payload_kept() -> None:
    alarm = decode_alarm(VALID)
    assert isinstance(alarm, Alarm)
    assert alarm.key == ("fence-0001", "msg-000123")
    assert alarm.ts == datetime(2026, 11, 21, 0, 15, 2, tzinfo=UTC)
    assert alarm.ts.utcoffset() == timedelta(hours=8)  # the device's own zone is kept
    assert (alarm.type, alarm.severity, alarm.zone) == ("fence.intrusion", 3, "Z4")
    assert (alarm.lon, alarm.lat) == (113.8544, 27.6231)
    assert alarm.data == {"voltage_kv": 7.9}
    assert alarm.raw == VALID
    assert alarm.received_at == RECEIVED
    assert alarm.warnings == ()


def test_minimal_alarm_gets_defaults() -> None:
    alarm = decode_alarm(b'{"id":"a1","ts":"2026-11-21T00:15:02Z","type":"smoke.alarm"}')
    assert isinstance(alarm, Alarm)
    assert alarm.severity == alarm_v1.DEFAULT_SEVERITY
    assert alarm.lon is alarm.lat is alarm.zone is None
    assert alarm.data == {}


def test_unknown_fields_are_ignored_not_refused() -> None:
    assert isinstance(decode_alarm(with_fields(firmware="2.1.0")), Alarm)


@pytest.mark.parametrize(
    ("raw_type", "expected"),
    [("fence.teleport", "other.fence.teleport"), ("Gas Leak", "other.gas_leak"), ("other.flood", "other.flood")],
)
def test_unknown_type_is_accepted_as_other_with_a_warning(raw_type: str, expected: str) -> None:
    alarm = decode_alarm(with_fields(type=raw_type))
    assert isinstance(alarm, Alarm)
    assert alarm.type == expected
    assert len(alarm.warnings) == 1 and raw_type in alarm.warnings[0]


def test_every_documented_type_passes_unchanged() -> None:
    for t in sorted(alarm_v1.ALARM_TYPES):
        alarm = decode_alarm(with_fields(type=t))
        assert isinstance(alarm, Alarm) and alarm.type == t and alarm.warnings == ()


def test_ts_far_ahead_of_receive_time_is_a_warning() -> None:
    alarm = decode_alarm(with_fields(ts="2026-11-21T09:15:02+08:00"))
    assert isinstance(alarm, Alarm)
    assert any("ahead" in w for w in alarm.warnings)


def test_utf8_bom_is_tolerated() -> None:
    assert isinstance(decode_alarm(b"\xef\xbb\xbf" + VALID), Alarm)


# -- alarm v1: dead letters -------------------------------------------------------------------

def test_oversized_payload_is_refused_before_parsing() -> None:
    payload = b"{" + b" " * MAX_PAYLOAD_BYTES + b"}"
    letter = dead(decode_alarm(payload), "payload_too_large")
    assert str(MAX_PAYLOAD_BYTES) in letter.detail
    assert letter.payload == payload and letter.topic == TOPIC and letter.received_at == RECEIVED


def test_payload_of_exactly_the_limit_is_parsed() -> None:
    payload = VALID[:-1] + b" " * (MAX_PAYLOAD_BYTES - len(VALID)) + b"}"
    assert len(payload) == MAX_PAYLOAD_BYTES
    assert isinstance(decode_alarm(payload), Alarm)


@pytest.mark.parametrize(
    "payload",
    [b'{"id": "x", "ts": ', b"", b"not json", b"{'id': 'x'}", b'{"id":"a","lat":NaN}', b"[" * 40000],
)
def test_malformed_json_is_dead_lettered(payload: bytes) -> None:
    dead(decode_alarm(payload), "invalid_json")


def test_non_utf8_payload_is_dead_lettered() -> None:
    letter = dead(decode_alarm(b'{"id": "\xff\xfe"}'), "not_utf8")
    assert "byte" in letter.detail


@pytest.mark.parametrize("payload", [b"[1, 2]", b'"text"', b"42", b"null"])
def test_json_that_is_not_an_object_is_a_schema_error(payload: bytes) -> None:
    assert "JSON object" in dead(decode_alarm(payload), "schema").detail


@pytest.mark.parametrize("ts", ["2026-11-21T08:15:02", "2026-11-21 08:15:02", "2026-11-21"])
def test_ts_without_zone_has_its_own_reason(ts: str) -> None:
    letter = dead(decode_alarm(with_fields(ts=ts)), "ts_without_zone")
    assert letter.detail.startswith("ts:")


@pytest.mark.parametrize("ts", [1763683502, "yesterday", "1763683502", None])
def test_ts_that_is_not_iso_8601_is_a_schema_error(ts: object) -> None:
    assert "ts:" in dead(decode_alarm(with_fields(ts=ts)), "schema").detail


@pytest.mark.parametrize("severity", [0, 6, "3", 2.5, True, None])
def test_bad_severity_names_the_field(severity: object) -> None:
    letter = dead(decode_alarm(with_fields(severity=severity)), "schema")
    assert letter.detail.startswith("severity:")


@pytest.mark.parametrize("field", ["id", "ts", "type"])
def test_missing_required_field_is_named(field: str) -> None:
    letter = dead(decode_alarm(with_fields(**{field: ...})), "schema")
    assert letter.detail == f"{field}: required field is missing"


@pytest.mark.parametrize(
    ("lat", "lon", "bad"),
    [(95.0, 113.85, "lat"), (-90.5, 113.85, "lat"), (27.62, 181.0, "lon"), (27.62, -200, "lon"),
     (27.6, "113.8", "lon")],
)
def test_out_of_range_coordinates_are_refused(lat: object, lon: object, bad: str) -> None:
    letter = dead(decode_alarm(with_fields(lat=lat, lon=lon)), "schema")
    assert letter.detail.startswith(f"{bad}:")


def test_lat_without_lon_is_refused() -> None:
    letter = dead(decode_alarm(with_fields(lon=...)), "schema")
    assert "lat/lon" in letter.detail and "both or neither" in letter.detail


def test_several_errors_are_all_named_and_zone_error_then_is_schema() -> None:
    letter = dead(decode_alarm(with_fields(ts="2026-11-21T08:15:02", severity=9, data=[1])), "schema")
    for name in ("ts:", "severity:", "data:"):
        assert name in letter.detail


def test_empty_id_and_non_string_id_are_refused() -> None:
    assert dead(decode_alarm(with_fields(id="")), "schema").detail.startswith("id:")
    assert dead(decode_alarm(with_fields(id=123)), "schema").detail.startswith("id:")


def test_naive_received_at_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        alarm_v1.decode("d", VALID, datetime(2026, 1, 1), topic=TOPIC)


# -- gridwatch location -----------------------------------------------------------------------

LOC_TOPIC = "gridwatch/patrollers/p-007/location"


def test_gridwatch_location_is_decoded() -> None:
    pos = location.decode("p-007", b'{"ts":"2026-11-21T08:15:02+08:00","lat":27.62,"lon":113.85,"acc":8}',
                          RECEIVED, topic=LOC_TOPIC)
    assert pos == PatrollerPosition("p-007", datetime(2026, 11, 21, 8, 15, 2, tzinfo=timezone(timedelta(hours=8))),
                                    lon=113.85, lat=27.62, acc=8.0)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"ts":"2026-11-21T08:15:02","lat":27.62,"lon":113.85}', "ts_without_zone"),
        (b'{"ts":"2026-11-21T08:15:02Z","lat":127.62,"lon":113.85}', "schema"),
        (b'{"ts":"2026-11-21T08:15:02Z","lon":113.85}', "schema"),
        (b'{"ts":"2026-11-21T08:15:02Z","lat":27.62,"lon":113.85,"acc":-1}', "schema"),
        (b'{"ts":', "invalid_json"),
    ],
)
def test_bad_gridwatch_location_is_dead_lettered(payload: bytes, reason: str) -> None:
    dead(location.decode("p-007", payload, RECEIVED, topic=LOC_TOPIC), reason)


# -- OwnTracks --------------------------------------------------------------------------------

OT_TOPIC = "owntracks/p-007/phone"
OT_LOCATION = (
    b'{"_type":"location","tid":"p7","tst":1763683502,"lat":27.6231,"lon":113.8544,"acc":12,'
    b'"alt":58,"batt":81,"conn":"m","t":"u","vel":3}'
)


def test_owntracks_location_becomes_a_position_of_the_user() -> None:
    pos = location.decode_owntracks("p-007", OT_LOCATION, RECEIVED, topic=OT_TOPIC)
    assert pos == PatrollerPosition("p-007", datetime.fromtimestamp(1763683502, UTC), lon=113.8544, lat=27.6231,
                                    acc=12.0)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"_type":"lwt","tst":1763683502}',
        b'{"_type":"transition","event":"enter","desc":"grid 3","tst":1763683502,"lat":27.6,"lon":113.8}',
        b'{"_type":"status","android":{}}',
        b'{"_type":"card","name":"Li"}',
    ],
)
def test_owntracks_non_location_types_are_ignored(payload: bytes) -> None:
    assert location.decode_owntracks("p-007", payload, RECEIVED, topic=OT_TOPIC) is None


@pytest.mark.parametrize(
    ("payload", "reason", "field"),
    [
        (b'{"_type":"location","lat":27.6,"lon":113.8}', "schema", "tst"),
        (b'{"_type":"location","tst":"soon","lat":27.6,"lon":113.8}', "schema", "tst"),
        (b'{"_type":"location","tst":1763683502,"lat":27.6,"lon":213.8}', "schema", "lon"),
        (b'{"lat":27.6,"lon":113.8,"tst":1763683502}', "schema", "_type"),
        (b'{"_type":"encrypted","data":"c2VjcmV0"}', "schema", "_type"),
        (b"\xff", "not_utf8", ""),
    ],
)
def test_bad_owntracks_messages_are_dead_lettered(payload: bytes, reason: str, field: str) -> None:
    letter = dead(location.decode_owntracks("p-007", payload, RECEIVED, topic=OT_TOPIC), reason)
    assert letter.detail.startswith(field)
