"""ingest.acl without a broker: password derivation, the $7$ hash format, ACL text, users, files.

The same files are checked against a real Mosquitto in tests/integration/test_broker_acl.py.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest
from shapely.geometry import Point

from geo.model import Device
from ingest.acl import (
    AclError,
    acl_file,
    check_mosquitto_hash,
    device_password,
    mosquitto_hash,
    password_file,
    users,
    write_broker_files,
)

pytestmark = pytest.mark.unit

HASH = re.compile(r"^\$7\$(\d+)\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$")


def device(device_id: str, fmt: str = "gridwatch", identity: str | None = None) -> Device:
    return Device(device_id, "smoke", device_id, Point(113.85, 27.62), "430102001001001", format=fmt, identity=identity)


def test_device_password_is_deterministic_and_urlsafe() -> None:
    pw = device_password("s3cret", "dev-a")
    assert pw == device_password("s3cret", "dev-a")
    assert len(pw) == 32 and re.fullmatch(r"[A-Za-z0-9_-]{32}", pw)
    assert pw != device_password("s3cret", "dev-b") != device_password("other", "dev-a")
    import hmac

    mac = hmac.new(b"s3cret", b"gridwatch-mqtt:dev-a", hashlib.sha256).digest()
    assert pw == base64.urlsafe_b64encode(mac).decode().rstrip("=")[:32]
    with pytest.raises(AclError, match="secret is empty"):
        device_password("", "dev-a")


def test_mosquitto_hash_format() -> None:
    encoded = mosquitto_hash("pässword")
    m = HASH.match(encoded)
    assert m is not None, encoded
    iterations, salt, key = int(m.group(1)), base64.b64decode(m.group(2)), base64.b64decode(m.group(3))
    assert iterations == 101 and len(salt) == 12 and len(key) == 64
    assert key == hashlib.pbkdf2_hmac("sha512", "pässword".encode(), salt, 101, 64)
    assert mosquitto_hash("pässword") != encoded  # a fresh salt each time
    fixed = mosquitto_hash("pw", salt=b"0123456789ab", iterations=1000)
    assert fixed.startswith("$7$1000$MDEyMzQ1Njc4OWFi$") and fixed == mosquitto_hash("pw", salt=b"0123456789ab", iterations=1000)
    assert check_mosquitto_hash("pässword", encoded) and not check_mosquitto_hash("password", encoded)
    with pytest.raises(ValueError, match="salt"):
        mosquitto_hash("pw", salt=b"")
    with pytest.raises(ValueError, match="iterations"):
        mosquitto_hash("pw", iterations=0)


def test_password_file_lines() -> None:
    text = password_file([("gridwatch", "a"), ("dev-a", "b")])
    lines = text.splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["gridwatch", "dev-a"]
    assert all(HASH.match(line.split(":", 1)[1]) for line in lines) and text.endswith("\n")
    assert check_mosquitto_hash("b", lines[1].split(":", 1)[1])
    with pytest.raises(AclError, match="twice"):
        password_file([("x", "a"), ("x", "b")])
    with pytest.raises(AclError, match="':'"):
        password_file([("a:b", "a")])


def blocks(text: str) -> dict[str, list[str]]:
    """user → its rule lines; '' → rule lines before the first user line."""
    out: dict[str, list[str]] = {"": []}
    current = ""
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("user "):
            current = line[5:]
            out[current] = []
        else:
            out[current].append(line)
    return out


def test_acl_file_rules() -> None:
    devices = [
        device("dev-b"), device("dev-a"),
        device("cam-1", "frigate", "frigate:gate"), device("cam-2", "frigate", "frigate:yard"),
        device("zb-1", "zigbee2mqtt", "zigbee2mqtt:smoke"),
        device("fz-1", "fence", "fence:host-9/1"), device("fz-2", "fence", "fence:host-9/2"),
        device("fz-3", "fence", "fence:dev-a/1"),  # a host registered as a gridwatch device too
        device("x-1", "acme", "acme:1"),
    ]
    text = acl_file(devices, patrollers=["p-1"])
    b = blocks(text)
    assert b[""] == []  # nothing for anonymous clients
    assert not any(line.startswith("pattern") for line in text.splitlines())  # only as a comment
    assert "#   pattern write gridwatch/devices/%u/#" in text
    assert list(b) == ["", "gridwatch", "frigate", "zigbee2mqtt", "dev-a", "dev-b", "host-9", "p-1"]
    assert b["gridwatch"] == [
        "topic read gridwatch/#", "topic read frigate/#", "topic read zigbee2mqtt/#", "topic read homeassistant/#",
        "topic read dahua/#", "topic read onvif/#", "topic read hikvision/#", "topic read owntracks/#",
        "topic write gridwatch/patrollers/+/alerts", "topic write gridwatch/grids/+/incidents",
        "topic write gridwatch/grids/+/patrollers", "topic write gridwatch/grids/+/devices",
        "topic write gridwatch/centers/+/+/incidents",
    ]
    assert b["dev-a"] == ["topic write gridwatch/devices/dev-a/#"]
    # a fence alarm host publishes on gridwatch/devices/<host>/fence: one user per host
    assert b["host-9"] == ["topic write gridwatch/devices/host-9/#"]
    assert b["frigate"] == ["topic readwrite frigate/#"] and b["zigbee2mqtt"] == ["topic readwrite zigbee2mqtt/#"]
    assert b["p-1"] == [
        "topic write gridwatch/patrollers/p-1/location", "topic write owntracks/p-1/#",
        "topic read gridwatch/patrollers/p-1/alerts",
    ]
    assert "# no broker user for format 'acme' (1 device(s)): x-1" in text
    assert acl_file(devices, patrollers=["p-1"]) == text  # deterministic
    assert "user ops" in acl_file([], service_user="ops")


@pytest.mark.parametrize(
    ("devices", "patrollers", "service", "match"),
    [
        ([device("gridwatch")], (), "gridwatch", "both a service and a device"),
        ([device("frigate"), device("c", "frigate", "frigate:c")], (), "gridwatch", "both a bridge and a device"),
        ([device("p-1")], ("p-1",), "gridwatch", "both a device and a patroller"),
        ([device("zigbee2mqtt")], (), "gridwatch", "reserved for the vendor bridges"),
        ([], ("onvif",), "gridwatch", "reserved for the vendor bridges"),
        ([device("f", "fence", "fence:frigate/1")], (), "gridwatch", "reserved for the vendor bridges"),
        ([device("f", "fence", "fence:p-1/1")], ("p-1",), "gridwatch", "both a fence-host and a patroller"),
        ([device("f", "fence", "frigate:x")], (), "gridwatch", "expected fence:<host>"),
        ([device("x"), device("x")], (), "gridwatch", "given twice"),
        ([device("a b")], (), "gridwatch", "whitespace"),
        ([device("a/b")], (), "gridwatch", "'/'"),
        ([], ("p+1",), "gridwatch", "'\\+'"),
        ([], (), "svc:1", "':'"),
    ],
)
def test_username_clashes_and_bad_names(devices: list[Device], patrollers: tuple[str, ...], service: str, match: str) -> None:
    with pytest.raises(AclError, match=match):
        acl_file(devices, patrollers=patrollers, service_user=service)


def test_users_roles() -> None:
    roles = users([device("d"), device("c", "onvif", "onvif:c/t"), device("f", "fence", "fence:h")], patrollers=["p"])
    assert roles == {"gridwatch": "service", "onvif": "bridge", "d": "device", "h": "fence-host", "p": "patroller"}


def test_write_broker_files(tmp_path: Path) -> None:
    out = tmp_path / "broker"
    devices = [device("dev-a"), device("cam-1", "hikvision", "hikvision:44:19:b6:6d:24:85/1")]
    files = write_broker_files(out, devices, secret="s", service_password="svc", patrollers=["p-1"])
    for path in (files.password_file, files.acl_file, files.credentials_csv):
        assert path.parent == out and path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in out.iterdir()) == ["credentials.csv", "mosquitto.acl", "mosquitto.passwd"]
    creds = files.credentials_csv.read_text().splitlines()
    assert creds[0] == "user,password"
    assert dict(line.split(",") for line in creds[1:]) == {
        u: device_password("s", u) for u in ("hikvision", "dev-a", "p-1")
    }  # not the service user
    hashes = dict(line.split(":", 1) for line in files.password_file.read_text().splitlines())
    assert set(hashes) == {"gridwatch", "hikvision", "dev-a", "p-1"}
    assert check_mosquitto_hash("svc", hashes["gridwatch"])
    assert check_mosquitto_hash(device_password("s", "dev-a"), hashes["dev-a"])
    conf = files.mosquitto_conf()
    assert "allow_anonymous false\n" in conf and f"password_file {files.password_file}" in conf
    # rerun: same passwords, files replaced and still private
    files.acl_file.chmod(0o644)
    again = write_broker_files(out, devices, secret="s", service_password="svc", patrollers=["p-1"])
    assert again.credentials_csv.read_text() == files.credentials_csv.read_text()
    assert again.acl_file.stat().st_mode & 0o777 == 0o600
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left
    with pytest.raises(AclError, match="service_password"):
        write_broker_files(out, devices, secret="s", service_password="")
