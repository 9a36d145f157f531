"""Mosquitto broker security from the device registry (design §8): password file, ACL file, credentials.

Users:

- the service user (`gridwatch`: the ingest workers and the notifier) reads `gridwatch/#` and the
  vendor prefixes, and writes patroller alerts and grid incident events;
- one user per gridwatch-format device, named by its device id, that may write only
  `gridwatch/devices/<id>/#` (its will topic, `…/status`, is under it);
- one user per fence alarm host (`fence` format, identity `fence:<host>[/<zone>]`): the host's
  gateway publishes on `gridwatch/devices/<host>/fence` (ingest/adapters/fence.py), so it gets the
  same rule as a device named `<host>` (and is that user when the host is registered as a device);
- one bridge user per vendor format present in the registry (`frigate`, `zigbee2mqtt`,
  `homeassistant`, `dahua`, `onvif`, `hikvision`) that may write, and read, only its own prefix
  (the bridges subscribe to their own command topics such as `zigbee2mqtt/bridge/request/#`);
- one user per patroller phone: writes its location (`gridwatch/patrollers/<id>/location`,
  `owntracks/<id>/#`) and reads its alerts.

Devices of any other format get no broker user; the ACL file lists them in a comment.
Usernames share one namespace: a device id, patroller id, bridge name or the service user that
clashes raises AclError, and the bridge names are reserved even while no device uses that format.

Anonymous clients: the ACL has no rule before its first `user` line, so an anonymous client could
do nothing even if admitted; `BrokerFiles.mosquitto_conf()` also says `allow_anonymous false`.

**Why no `pattern` line.** Design §8 phrases the device rule as `pattern write
gridwatch/devices/%u/#`. Mosquitto applies `pattern` lines to *every* authenticated user, so that
line would also let the service user, each vendor bridge and each patroller publish as a device
whose id equals its username (patroller `p-7` → `gridwatch/devices/p-7/alarm`), and would keep
working for a device id removed from the registry as long as its password did. The generated file
therefore grants each device its own explicit `user` block and keeps the pattern only as a comment.
(Usernames are checked to be topic levels, without `+`, `#` or `/`, so `%u` could not inject
wildcards; the problem is the pattern's reach, not its expansion.)

Passwords: `device_password(secret, user)` derives every non-service password from one secret,
so `export-acl` can be rerun and a device re-provisioned without storing plaintext; the password
file holds only Mosquitto's salted PBKDF2-SHA512 hashes (`$7$`, as `mosquitto_passwd` writes them).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import logging
import os
import secrets
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from geo.model import Device
from ingest.errors import IngestError, InvalidTopicError
from ingest.topics import OWNTRACKS_ROOT, ROOT, device_status, patroller_location

logger = logging.getLogger(__name__)

SERVICE_USER = "gridwatch"
GRIDWATCH_FORMAT = "gridwatch"
BRIDGE_PREFIXES: Mapping[str, str] = {
    "frigate": "frigate",
    "zigbee2mqtt": "zigbee2mqtt",
    "homeassistant": "homeassistant",
    "dahua": "dahua",
    "onvif": "onvif",
    "hikvision": "hikvision",
}
"""Vendor format → the topic prefix its bridge publishes under (the bridge's username is the format)."""
SERVICE_READ: tuple[str, ...] = (f"{ROOT}/#", *(f"{p}/#" for p in BRIDGE_PREFIXES.values()), f"{OWNTRACKS_ROOT}/#")
SERVICE_WRITE: tuple[str, ...] = (
    f"{ROOT}/patrollers/+/alerts",  # a patroller's incidents
    f"{ROOT}/grids/+/incidents",  # incident events of a grid
    f"{ROOT}/grids/+/patrollers",  # patrollers entering / leaving a grid (geofence)
    f"{ROOT}/grids/+/devices",  # device state changes, for the live stream (api.feed)
    f"{ROOT}/centers/+/+/incidents",  # escalation and supervision of a command center
)
"""Every outbound topic of the service (alerts.intake, alerts.actions, alerts.escalation, api.runtime)."""
DEVICE_PATTERN = f"pattern write {ROOT}/devices/%u/#"
PASSWORD_CONTEXT = "gridwatch-mqtt:"
PASSWORD_LENGTH = 32
SALT_BYTES = 12
HASH_BYTES = 64
DEFAULT_ITERATIONS = 101  # mosquitto_passwd's default (mosquitto 2.0)


class AclError(IngestError, ValueError):
    """Broker users cannot be generated (a name that cannot be a username or topic level, a clash)."""


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """The files `write_broker_files` wrote (each mode 0600)."""

    password_file: Path
    acl_file: Path
    credentials_csv: Path

    def mosquitto_conf(self) -> str:
        """The mosquitto.conf lines that put these files to work (global, not per listener)."""
        return (
            "allow_anonymous false\n"
            f"password_file {self.password_file.resolve()}\n"
            f"acl_file {self.acl_file.resolve()}\n"
        )


# ------------------------------------------------------------------------------------ passwords


def device_password(secret: str, device_id: str) -> str:
    """The broker password of a user (device, bridge or patroller), derived from `secret`.

    urlsafe base64 (no padding) of HMAC-SHA256(secret, "gridwatch-mqtt:" + device_id), cut to 32
    characters (192 bits): the same secret and id always give the same password.
    """
    if not secret:
        raise AclError("secret is empty; expected the deployment's broker secret (settings)")
    mac = hmac.new(secret.encode(), (PASSWORD_CONTEXT + device_id).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")[:PASSWORD_LENGTH]


def mosquitto_hash(password: str, *, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS) -> str:
    """Hash a password for a Mosquitto 2 password_file: `$7$<iterations>$<b64 salt>$<b64 hash>`.

    PBKDF2-HMAC-SHA512 over the UTF-8 password, 64-byte key, standard base64 with padding, a fresh
    random 12-byte salt unless `salt` is given — what `mosquitto_passwd` writes (hash type 7).
    """
    if salt is None:
        salt = secrets.token_bytes(SALT_BYTES)
    if not 1 <= len(salt) <= HASH_BYTES:
        raise ValueError(f"salt of {len(salt)} bytes: expected 1..{HASH_BYTES} ({SALT_BYTES} is mosquitto's)")
    if iterations < 1:
        raise ValueError(f"iterations {iterations}: expected a positive number")
    key = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, HASH_BYTES)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode('ascii')}${b64(key).decode('ascii')}"


def check_mosquitto_hash(password: str, encoded: str) -> bool:
    """Tell whether `password` matches a `$7$` hash (as mosquitto verifies it)."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[0] or parts[1] != "7" or not parts[2].isdigit():
        raise ValueError(f"{encoded[:12]!r}…: expected $7$<iterations>$<salt>$<hash>")
    salt = base64.b64decode(parts[3], validate=True)
    expected = mosquitto_hash(password, salt=salt, iterations=int(parts[2]))
    return hmac.compare_digest(expected, encoded)


def _check_username(user: str, what: str) -> str:
    """A username must be a topic level and fit `user:hash` lines and `user <name>` ACL lines."""
    try:
        device_status(user)  # the topic-level rule (no / + # NUL, no leading $)
    except InvalidTopicError as exc:
        raise AclError(f"{what} {user!r}: {exc}") from None
    if ":" in user or any(ch.isspace() or not ch.isprintable() for ch in user):
        raise AclError(f"{what} {user!r}: expected no ':', whitespace or control characters (broker username)")
    return user


def password_file(entries: Iterable[tuple[str, str]]) -> str:
    """The text of a Mosquitto password_file: one `user:hash` line per (user, plaintext password)."""
    lines = []
    seen: set[str] = set()
    for user, password in entries:
        _check_username(user, "user")
        if user in seen:
            raise AclError(f"user {user!r} given twice; expected each user once")
        seen.add(user)
        lines.append(f"{user}:{mosquitto_hash(password)}\n")
    return "".join(lines)


# ------------------------------------------------------------------------------------------ ACL


@dataclass(frozen=True, slots=True)
class _Split:
    devices: list[str]  # gridwatch-format device users
    fence_hosts: list[str]  # fence alarm hosts that are not already device users
    bridges: list[str]  # vendor formats present, in BRIDGE_PREFIXES order
    other: dict[str, list[str]]  # formats with no broker user → their device ids


def fence_host(device: Device) -> str:
    """The alarm host of a `fence` device: `fence:<host>[/<zone>]` → `<host>`."""
    fmt, _, key = (device.identity or "").partition(":")
    host = key.split("/", 1)[0]
    if fmt != "fence" or not host:
        raise AclError(f"device {device.id!r}: identity {device.identity!r}; expected fence:<host>[/<zone>]")
    return _check_username(host, f"device {device.id!r}: fence host")


def _split(devices: Sequence[Device]) -> _Split:
    """Sort the registry's devices into broker users."""
    device_users: list[str] = []
    hosts: set[str] = set()
    bridges: set[str] = set()
    other: dict[str, list[str]] = {}
    for d in devices:
        if d.format == GRIDWATCH_FORMAT:
            device_users.append(_check_username(d.id, "device id"))
        elif d.format == "fence":
            hosts.add(fence_host(d))
        elif d.format in BRIDGE_PREFIXES:
            bridges.add(d.format)
        else:
            other.setdefault(d.format, []).append(d.id)
    dupes = sorted({u for u in device_users if device_users.count(u) > 1})
    if dupes:
        raise AclError(f"device ids {', '.join(dupes)} given twice; expected unique device ids")
    return _Split(
        sorted(device_users),
        sorted(hosts - set(device_users)),
        [f for f in BRIDGE_PREFIXES if f in bridges],
        other,
    )


def users(devices: Sequence[Device], *, service_user: str = SERVICE_USER,
          patrollers: Sequence[str] = ()) -> dict[str, str]:
    """Every broker user → its role (`service`, `bridge`, `device`, `fence-host`, `patroller`); AclError on clashes."""
    split = _split(devices)
    roles: dict[str, str] = {}

    def add(user: str, role: str) -> None:
        if user in roles:
            raise AclError(
                f"username {user!r} is both a {roles[user]} and a {role}; expected distinct names "
                f"(device ids, patroller ids, bridge names and the service user share one namespace)"
            )
        roles[user] = role

    add(_check_username(service_user, "service user"), "service")
    for b in split.bridges:
        add(b, "bridge")
    for u in split.devices:
        add(u, "device")
    for h in split.fence_hosts:
        add(h, "fence-host")
    for p in patrollers:
        try:
            patroller_location(p)
        except InvalidTopicError as exc:
            raise AclError(str(exc)) from None
        add(_check_username(p, "patroller id"), "patroller")
    # bridge names stay reserved even while no device of that format exists: adding the first
    # frigate camera later must not turn device "frigate" into the frigate bridge
    reserved = sorted(u for u, role in roles.items() if role not in ("service", "bridge") and u in BRIDGE_PREFIXES)
    if reserved:
        raise AclError(f"username(s) {', '.join(map(repr, reserved))} are reserved for the vendor bridges; "
                       f"expected other device / patroller ids")
    return roles


def acl_file(devices: Sequence[Device], *, service_user: str = SERVICE_USER,
             patrollers: Sequence[str] = ()) -> str:
    """The text of a Mosquitto acl_file for the registry's devices, bridges and patrollers.

    Explicit `user` blocks only (no active `pattern` line: see the module docstring); nothing
    before the first `user` line, so anonymous clients get no access. Raises AclError when a
    username clashes or cannot be a username.
    """
    roles = users(devices, service_user=service_user, patrollers=patrollers)
    split = _split(devices)
    out = [
        "# gridwatch broker ACL (design §8), generated by ingest.acl from the device registry.",
        "# Regenerate it (export-acl), do not edit it. No rule precedes the first `user` line:",
        "# anonymous clients get nothing (and mosquitto.conf says allow_anonymous false).",
        "#",
        "# Design §8's generic device rule is deliberately NOT active:",
        f"#   {DEVICE_PATTERN}",
        "# mosquitto applies `pattern` lines to every user, so it would also let the service user,",
        "# the vendor bridges and the patrollers publish as a device named like themselves.",
        "# Each device gets an explicit `user` block below instead.",
        "",
        "# service: ingest workers and notifier",
        f"user {service_user}",
        *(f"topic read {t}" for t in SERVICE_READ),
        *(f"topic write {t}" for t in SERVICE_WRITE),
        "",
    ]
    for b in split.bridges:
        out += [f"# vendor bridge: {b}", f"user {b}", f"topic readwrite {BRIDGE_PREFIXES[b]}/#", ""]
    for user, role in roles.items():
        if role == "device":
            out += [f"user {user}", f"topic write {ROOT}/devices/{user}/#", ""]
    for user, role in roles.items():
        if role == "fence-host":
            out += ["# fence alarm host", f"user {user}", f"topic write {ROOT}/devices/{user}/#", ""]
    for user, role in roles.items():
        if role == "patroller":
            out += [
                "# patroller phone",
                f"user {user}",
                f"topic write {ROOT}/patrollers/{user}/location",
                f"topic write {OWNTRACKS_ROOT}/{user}/#",
                f"topic read {ROOT}/patrollers/{user}/alerts",
                "",
            ]
    for fmt, ids in sorted(split.other.items()):
        logger.warning("%d device(s) of format %r get no broker user", len(ids), fmt)
        out.append(f"# no broker user for format {fmt!r} ({len(ids)} device(s)): {', '.join(sorted(ids))}")
    return "\n".join(out).rstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------- files


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600, atomically (temp file in the same dir + rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    os.chmod(path, 0o600)


def write_broker_files(
    out_dir: Path | str,
    devices: Sequence[Device],
    *,
    secret: str,
    service_password: str,
    patrollers: Sequence[str] = (),
    service_user: str = SERVICE_USER,
) -> BrokerFiles:
    """Write `mosquitto.passwd`, `mosquitto.acl` and `credentials.csv` into `out_dir` (mode 0600).

    Every user but the service user gets `device_password(secret, username)`.

    WARNING: `credentials.csv` (`user,password`) holds the plaintext passwords of every device,
    bridge and patroller user, for provisioning them. Hand it over over a secure channel and delete
    it; it can be regenerated from the same secret. The service user's password is not in it.
    """
    if not service_password:
        raise AclError("service_password is empty; expected the service user's broker password")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    roles = users(devices, service_user=service_user, patrollers=patrollers)
    creds = {u: (service_password if role == "service" else device_password(secret, u)) for u, role in roles.items()}
    files = BrokerFiles(out / "mosquitto.passwd", out / "mosquitto.acl", out / "credentials.csv")
    _write_private(files.password_file, password_file(creds.items()))
    _write_private(files.acl_file, acl_file(devices, service_user=service_user, patrollers=patrollers))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["user", "password"])
    writer.writerows((u, p) for u, p in creds.items() if roles[u] != "service")
    _write_private(files.credentials_csv, buf.getvalue())
    logger.info("broker files for %d users written to %s", len(roles), out)
    return files
