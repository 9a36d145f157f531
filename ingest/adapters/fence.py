"""Pulse electronic-fence alarm hosts on `gridwatch/devices/{host}/fence`: the generic fence JSON and Contact ID.

The topic's `{host}` is the alarm host (the MQTT gateway in front of it); a fence zone of that host is the
vendor identity `fence:<host>/<zone>`, and host-level events (no zone, power, battery) are `fence:<host>`.

## The generic fence JSON

One JSON object per event:
```json
{"id": "evt-20261121-0042", "ts": "2026-11-21T08:15:02+08:00", "zone": "3", "event": "intrusion",
 "voltage_kv": 7.9, "severity": 4}
```
| field | type | meaning |
|---|---|---|
| `id` | string (or integer), 1–128 chars | the host's event id: the alarm's msg_id (dedup key with the identity). Required for alarm events, optional otherwise. |
| `ts` | ISO-8601 with a zone, or epoch seconds / ms | when the host saw it. A zoneless time is read as device-local with a warning; missing or unbelievable → receive time with a warning. |
| `zone` | string (1–32 chars) or non-negative integer | the fence zone (防区). Absent, null or "" → a host-level event. |
| `event` | string | one of the events below; anything else is accepted as `other.fence_<event>` with a warning. |
| `voltage_kv` | number, optional | the zone's pulse voltage at that moment: also a Reading(metric "voltage_kv", unit "kV"). |
| `severity` | integer 1–5, optional | overrides the type's default severity. |
| `restores` | string, optional (`restore` only) | the event (`intrusion`) or alarm type (`fence.intrusion`) that is over. |
| `armed` | boolean, optional (`heartbeat` only) | the zone's (or host's) arming state, copied to the status. |

| `event` | result |
|---|---|
| `intrusion` `touch` `cut` `short` `tamper` `low_voltage` | Alarm `fence.<event>` on the zone (or the host) |
| `power_loss` | Alarm `device.power_loss` on `fence:<host>` (a host's supply, whatever the zone) |
| `restore` | AlarmEnd(type = the `restores` type) on the zone; without `restores`, AlarmEnd(type=None): the zone's latest open alarm, whatever its type |
| `arm` / `disarm` | DeviceStatus(online=True, source="heartbeat", data={"armed": true/false}) |
| `heartbeat` | DeviceStatus(online=True, source="heartbeat", data={"armed": …} if given) |

## Ademco Contact ID (SIA DC-05), as these hosts forward it

`{"id"?, "ts"?, "account"?, "cid": "..."}`, or the bare message as the whole payload, in any of the forms
- `1234 18 1130 01 003` / `123418113001003`: ACCT MT Q XYZ GG CCC (MT 18 or 98),
- `1234181130010037`: the same with the checksum digit, which is verified (digits summed with 0 counted
  as 10 and B–F as 11–15; the sum must be a multiple of 15) → dead letter `bad_checksum` if wrong,
- `E130 01 003` (E = new event, R = restore, P = still present) or `1130 01 003`, the account then from
  the payload's `account` (optional).
Q is the qualifier: 1 new event / opening (disarm), 3 restore / closing (arm), 6 previous event still
present (a status report: a level alarm, raised only if not already open). XYZ is the event code, GG the
partition, CCC the zone (or the user, for open/close); zone 000 is the host itself.

| code (DC-05 name) | type |
|---|---|
| 130 burglary, 131 perimeter, 133 24-hour burglary | fence.intrusion |
| 137 tamper, 144 sensor tamper, 145 expansion module tamper, 383 sensor tamper | fence.tamper |
| 110 fire, 111 smoke | smoke.alarm |
| 301 AC loss | device.power_loss (host) |
| 302 low system battery, 309 battery test failure, 384 RF low battery | device.low_battery (host) |
| 142 polling loop short, 370 protection loop, 372 protection loop short, 373 fire trouble, 380 sensor trouble | fence.short |
| 141 polling loop open, 371 protection loop open, 378 cross-zone trouble | fence.cut |
| 400–403, 407–409 open/close | DeviceStatus(heartbeat, data={"armed": Q == 3, "user", "partition"}) |
| 601 manual test, 602 periodic test report | DeviceStatus(online=True, source="heartbeat") |
| anything else | other.contactid_<code>, with a warning |
The loop codes are read as a pulse fence's wire: an *open* loop (141, 371) is a cut wire, a *shorted* loop
(142, 372) and the generic loop / sensor / fire-loop troubles (370, 373, 380) are a short or loop fault;
378 (cross-zone trouble: one wire of a two-wire zone tripped alone) is reported by these hosts for a
broken wire, so it is fence.cut. 383 is DC-05's *sensor tamper*, so fence.tamper (not a loop fault).
Q 3 of an alarm code → AlarmEnd(type = that type). msg_id: the payload's `id` if present, else
f"cid:{account}:{Q}{XYZ}:{GG}:{CCC}:{ts}" (ts = the UTC time used, ISO-8601).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ingest.adapters.common import (
    SCHEMA,
    UNHANDLED_TOPIC,
    dead_letter,
    json_value,
    payload_text,
    require_aware,
)
from ingest.adapters.shared import (
    finite,
    safe_vendor_ts,
    severity_of,
    short,
    ts_data,
)
from ingest.adapters.timestamps import VendorTs
from ingest.model import Alarm, AlarmEnd, DeadLetter, DeviceStatus, Normalized, Reading

logger = logging.getLogger(__name__)

FORMAT = "fence"
BAD_CHECKSUM = "bad_checksum"

FENCE_EVENTS: Mapping[str, str] = {
    "intrusion": "fence.intrusion", "touch": "fence.touch", "cut": "fence.cut", "short": "fence.short",
    "tamper": "fence.tamper", "low_voltage": "fence.low_voltage", "power_loss": "device.power_loss",
}
"""Generic fence JSON `event` → alarm type."""
STATUS_EVENTS = frozenset({"arm", "disarm", "heartbeat"})
RESTORE = "restore"
HOST_LEVEL_TYPES = frozenset({"device.power_loss", "device.low_battery"})
"""Types that belong to the host whatever zone the message names."""

CID_TYPES: Mapping[str, str] = {
    "130": "fence.intrusion", "131": "fence.intrusion", "133": "fence.intrusion",
    "137": "fence.tamper", "144": "fence.tamper", "145": "fence.tamper", "383": "fence.tamper",
    "110": "smoke.alarm", "111": "smoke.alarm",
    "301": "device.power_loss",
    "302": "device.low_battery", "309": "device.low_battery", "384": "device.low_battery",
    "142": "fence.short", "370": "fence.short", "372": "fence.short", "373": "fence.short", "380": "fence.short",
    "141": "fence.cut", "371": "fence.cut", "378": "fence.cut",
}
"""Contact ID event code → alarm type (see the module doc for why the loop codes map as they do)."""
CID_OPEN_CLOSE = frozenset({"400", "401", "402", "403", "407", "408", "409"})
CID_TESTS = frozenset({"601", "602"})
CID_QUALIFIERS: Mapping[str, str] = {"1": "1", "3": "3", "6": "6", "E": "1", "R": "3", "P": "6"}

_FULL = re.compile(r"([0-9A-F]{4})(18|98)([136])([0-9A-F]{3})([0-9A-F]{2})([0-9A-F]{3})([0-9A-F]?)")
_SHORT = re.compile(r"([0-9A-F]{4})?([ERP136])([0-9A-F]{3})([0-9A-F]{2})([0-9A-F]{3})")
_SPACES = re.compile(r"[\s\-]+")
_CLEAN = re.compile(r"[^a-z0-9_]+")
_CHECKSUM_VALUE = {**{str(d): d for d in range(1, 10)}, "0": 10, "A": 10, "B": 11, "C": 12, "D": 13, "E": 14, "F": 15}


def parse_topic(topic: str) -> str | None:
    """The host of `gridwatch/devices/{host}/fence`, or None."""
    levels = topic.split("/")
    if len(levels) == 4 and levels[0] == "gridwatch" and levels[1] == "devices" and levels[3] == "fence" \
            and levels[2] and not levels[2].startswith("$") and "+" not in levels[2] and "#" not in levels[2]:
        return levels[2]
    return None


def identity(host: str, zone: str | None) -> str:
    """`fence:<host>/<zone>`, or `fence:<host>` for a host-level event."""
    return f"{FORMAT}:{host}/{zone}" if zone else f"{FORMAT}:{host}"


def checksum_ok(message: str) -> bool:
    """The Contact ID rule: digit values (0 → 10, B–F → 11–15) sum to a multiple of 15."""
    return sum(_CHECKSUM_VALUE[ch] for ch in message) % 15 == 0


def decode(topic: str, payload: bytes, received_at: datetime) -> list[Normalized] | DeadLetter:
    """Decode one message of `gridwatch/devices/{host}/fence`; never raises on any payload."""
    host = parse_topic(topic)
    if host is None:
        return dead_letter(topic, payload, received_at, UNHANDLED_TOPIC,
                           f"topic {topic!r}: expected gridwatch/devices/<host>/fence")
    return decode_host(host, payload, received_at, topic=topic)


def decode_host(host: str, payload: bytes, received_at: datetime, *, topic: str) -> list[Normalized] | DeadLetter:
    """Decode a fence JSON or Contact ID message of alarm host `host`."""
    require_aware(received_at)
    text = payload_text(topic, payload, received_at)
    if isinstance(text, DeadLetter):
        return text
    msg = _Msg(host, topic, payload, received_at)
    if len(text) <= 40:  # the bare Contact ID message as the whole payload?
        bare = _SPACES.sub("", text).upper()
        if 9 <= len(bare) <= 16 and (_FULL.fullmatch(bare) or _SHORT.fullmatch(bare)):
            return msg.contact_id({}, text.strip())
    obj = json_value(text, topic, payload, received_at)
    if isinstance(obj, DeadLetter):
        return obj
    if isinstance(obj, str):
        return msg.contact_id({}, obj)
    if not isinstance(obj, dict):
        return msg.dead(SCHEMA, f"payload: expected a JSON object, got {type(obj).__name__}")
    if "cid" in obj:
        return msg.contact_id(obj, obj["cid"])
    return msg.fence_json(obj)


def _clean(name: str) -> str:
    return _CLEAN.sub("_", name.lower()).strip("_")[:48] or "unknown"


class _Msg:
    """One message being decoded (its context, so the helpers stay short)."""

    __slots__ = ("host", "payload", "received_at", "topic")

    def __init__(self, host: str, topic: str, payload: bytes, received_at: datetime) -> None:
        self.host = host
        self.topic = topic
        self.payload = payload
        self.received_at = received_at

    def dead(self, reason: str, detail: str) -> DeadLetter:
        return dead_letter(self.topic, self.payload, self.received_at, reason, detail)

    # -- shared fields ---------------------------------------------------------------------------

    def _common(self, obj: Mapping[str, Any], problems: list[str]) -> tuple[str | None, int | None, VendorTs]:
        """(id, severity, ts) of a payload; appends any problem."""
        msg_id = obj.get("id")
        if msg_id is not None:
            if isinstance(msg_id, int) and not isinstance(msg_id, bool):
                msg_id = str(msg_id)
            if not isinstance(msg_id, str) or not msg_id.strip() or len(msg_id) > 128:
                problems.append(f"id: expected a non-empty string of at most 128 characters (got {short(msg_id)})")
                msg_id = None
            else:
                msg_id = msg_id.strip()
        severity = obj.get("severity")
        if severity is not None and (isinstance(severity, bool) or not isinstance(severity, int)
                                     or not 1 <= severity <= 5):
            problems.append(f"severity: expected an integer 1-5 (got {short(severity)})")
            severity = None
        return msg_id, severity, safe_vendor_ts(obj.get("ts"), self.received_at)

    def _alarm(self, device_id: str, msg_id: str, vt: VendorTs, ts_source: object, alarm_type: str,
               severity: int | None, zone: str | None, data: dict[str, Any], warnings: list[str],
               level: bool = False) -> Alarm:
        data.update(ts_data(vt, ts_source))
        if vt.warning:
            warnings.append(vt.warning)
        return Alarm(device_id=device_id, msg_id=msg_id, ts=vt.utc, type=alarm_type,
                     severity=severity if severity is not None else severity_of(alarm_type),
                     received_at=self.received_at, raw=self.payload, zone=zone, data=data,
                     warnings=tuple(warnings), level=level)

    def _heartbeat(self, device_id: str, vt: VendorTs, data: dict[str, Any]) -> DeviceStatus:
        return DeviceStatus(device_id=device_id, ts=vt.utc, online=True, source="heartbeat",
                            received_at=self.received_at, raw=self.payload, data=data)

    # -- the generic fence JSON ------------------------------------------------------------------

    def fence_json(self, obj: Mapping[str, Any]) -> list[Normalized] | DeadLetter:
        problems: list[str] = []
        msg_id, severity, vt = self._common(obj, problems)
        event_raw = obj.get("event")
        event = event_raw.strip().lower() if isinstance(event_raw, str) and len(event_raw) <= 64 else None
        if not event:
            problems.append("event: required field is missing" if event_raw is None
                            else f"event: expected an event name such as \"intrusion\" (got {short(event_raw)})")
        zone_raw = obj.get("zone")
        zone: str | None = None
        if isinstance(zone_raw, int) and not isinstance(zone_raw, bool) and 0 <= zone_raw < 10**9:
            zone = str(zone_raw)
        elif isinstance(zone_raw, str) and len(zone_raw.strip()) <= 32 and "/" not in zone_raw:
            zone = zone_raw.strip() or None
        elif zone_raw is not None:
            problems.append(f"zone: expected a zone name or number (got {short(zone_raw)})")
        voltage_raw = obj.get("voltage_kv")
        voltage = finite(voltage_raw)
        if voltage_raw is not None and voltage is None:
            problems.append(f"voltage_kv: expected a finite number (got {short(voltage_raw)})")
        armed = obj.get("armed")
        if armed is not None and not isinstance(armed, bool):
            problems.append(f"armed: expected true or false (got {short(armed)})")
        restores = obj.get("restores")
        restored_type: str | None = None
        if restores is not None:
            if isinstance(restores, str) and restores.strip():
                name = restores.strip().lower()
                restored_type = FENCE_EVENTS.get(name) or (name if name in FENCE_EVENTS.values() else None)
                if restored_type is None:
                    restored_type = f"other.{FORMAT}_{_clean(name)}"
            else:
                problems.append(f"restores: expected an event name such as \"intrusion\" (got {short(restores)})")
        alarm_type: str | None = None
        warnings: list[str] = []
        if event and event not in STATUS_EVENTS and event != RESTORE:
            alarm_type = FENCE_EVENTS.get(event)
            if alarm_type is None:
                alarm_type = f"other.{FORMAT}_{_clean(event)}"
                warnings.append(f"unknown fence event {event!r}: accepted as {alarm_type!r}")
            if obj.get("id") is None:  # (a present but bad id already has its own problem)
                problems.append("id: required field is missing")
        if problems:
            return self.dead(SCHEMA, "; ".join(problems))
        assert event is not None
        zone_id = identity(self.host, zone)
        out: list[Normalized] = []
        if event in STATUS_EVENTS:
            data: dict[str, Any] = {}
            if event != "heartbeat":
                data["armed"] = event == "arm"
            elif armed is not None:
                data["armed"] = armed
            out.append(self._heartbeat(zone_id, vt, data))
        elif event == RESTORE:
            end_id = identity(self.host, None) if restored_type in HOST_LEVEL_TYPES else zone_id
            out.append(AlarmEnd(device_id=end_id, ts=vt.utc, received_at=self.received_at, raw=self.payload,
                                msg_id=None, type=restored_type))
        else:
            assert alarm_type is not None and msg_id is not None
            device = identity(self.host, None) if alarm_type in HOST_LEVEL_TYPES else zone_id
            data = {"event": event, "host": self.host}
            if voltage is not None:
                data["voltage_kv"] = voltage
            if warnings:
                logger.info("fence host %s: %s", self.host, warnings[0])
            out.append(self._alarm(device, msg_id, vt, obj.get("ts"), alarm_type, severity, zone, data, warnings))
        if voltage is not None:
            out.append(Reading(device_id=zone_id, ts=vt.utc, metric="voltage_kv", value=voltage, unit="kV"))
        return out

    # -- Contact ID -----------------------------------------------------------------------------

    def contact_id(self, obj: Mapping[str, Any], cid: object) -> list[Normalized] | DeadLetter:
        problems: list[str] = []
        msg_id, severity, vt = self._common(obj, problems)
        account_field = obj.get("account")
        if isinstance(account_field, int) and not isinstance(account_field, bool):
            account_field = str(account_field)
        if account_field is not None and (not isinstance(account_field, str) or len(account_field) > 16):
            problems.append(f"account: expected a string of at most 16 characters (got {short(account_field)})")
            account_field = None
        if not isinstance(cid, str) or len(cid) > 64:
            problems.append(f"cid: expected a Contact ID message such as \"1234 18 1130 01 003\" (got {short(cid)})")
            return self.dead(SCHEMA, "; ".join(problems))
        bare = _SPACES.sub("", cid).upper()
        warnings: list[str] = []
        full = _FULL.fullmatch(bare)
        if full is not None:
            account, _mt, qualifier, code, partition, ccc, check = full.groups()
            if check and not checksum_ok(bare):
                return self.dead(BAD_CHECKSUM, f"cid: checksum of {cid.strip()!r} is wrong (digit sum "
                                               f"{sum(_CHECKSUM_VALUE[c] for c in bare)} is not a multiple of 15)")
            if account_field is not None and account_field.strip().upper() != account:
                warnings.append(f"account {account_field!r} differs from the message's {account!r}; used the message's")
        else:
            short_form = _SHORT.fullmatch(bare)
            if short_form is None:
                problems.append("cid: expected ACCT MT QXYZ GG CCC[S] (e.g. \"1234 18 1130 01 003\") or "
                                f"QXYZ GG CCC (e.g. \"E130 01 003\") (got {short(cid)})")
                return self.dead(SCHEMA, "; ".join(problems))
            account, qualifier, code, partition, ccc = short_form.groups()
            account = account or (account_field.strip() if account_field else "")
        if problems:
            return self.dead(SCHEMA, "; ".join(problems))
        qualifier = CID_QUALIFIERS[qualifier]
        zone = ccc.lstrip("0") or None  # 000: no zone (the host itself)
        if msg_id is None:
            msg_id = f"cid:{account}:{qualifier}{code}:{partition}:{ccc}:{vt.utc.isoformat()}"
        data: dict[str, Any] = {"cid": cid.strip(), "account": account,
                                "qualifier": qualifier, "code": code, "partition": partition}
        if code in CID_OPEN_CLOSE:
            data.update(armed=qualifier == "3", user=zone)
            return [self._heartbeat(identity(self.host, None), vt, data)]
        if code in CID_TESTS:
            return [self._heartbeat(identity(self.host, None), vt, data)]
        alarm_type = CID_TYPES.get(code)
        if alarm_type is None:
            alarm_type = f"other.contactid_{code.lower()}"
            warnings.append(f"unknown Contact ID event code {code}: accepted as {alarm_type!r}")
            logger.info("fence host %s: %s", self.host, warnings[-1])
        device = identity(self.host, None if alarm_type in HOST_LEVEL_TYPES else zone)
        if qualifier == "3":
            return [AlarmEnd(device_id=device, ts=vt.utc, received_at=self.received_at, raw=self.payload,
                             msg_id=None, type=alarm_type)]
        data["zone"] = zone
        return [self._alarm(device, msg_id, vt, obj.get("ts"), alarm_type, severity, zone, data, warnings,
                            level=qualifier == "6")]
