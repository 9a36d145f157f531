"""Resolve what a message names (a gridwatch device id or a vendor identity) to a registered device.

Adapters put either the device id of a gridwatch topic or a vendor identity `<format>:<key>` into a
normalized message's `device_id` (see ingest/adapters). The registry knows each device's identity
(`Device.identity`, from `gridwatch devices import`). Resolution, first match wins:

1. a registered device id (gridwatch topics);
2. an exact identity (`hikvision:44:19:b6:6d:24:85/2`: that camera channel);
3. the identity without its last `/part` (`hikvision:44:19:b6:6d:24:85`: one registration for every
   channel of an NVR, or every zone of a fence host); the part is kept as the alarm's zone;
4. `<format>:<device id>[/<zone>]` where `<device id>` is a registered device of that format (a fence
   host publishing on its own gridwatch topic: `fence:host-07/3` → device `host-07`, zone `3`); a
   device is never resolved through another format's messages.

Pure: no I/O; a Runtime rebuilds it when the registry changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from geo.model import Device


@dataclass(frozen=True, slots=True)
class Resolved:
    """The device a message is about, and the sub-part (zone or channel) the reference named."""

    device: Device
    part: str | None = None


class Registry:
    """Device lookup by id and by vendor identity."""

    def __init__(self, devices: Iterable[Device]) -> None:
        self.by_id: dict[str, Device] = {d.id: d for d in devices}
        self.by_identity: dict[str, Device] = {d.identity: d for d in self.by_id.values() if d.identity}
        self._children: dict[str, list[Device]] = {}
        for identity, device in self.by_identity.items():
            parent, sep, _ = identity.rpartition("/")
            if sep and ":" in parent:
                self._children.setdefault(parent, []).append(device)
        self._cache: dict[str, Resolved | None] = {}
        self.watched = any(d.interval_s is not None for d in self.by_id.values())
        """Whether any device expects heartbeats (else the health sweep has nothing to look for)."""

    def __len__(self) -> int:
        return len(self.by_id)

    def get(self, device_id: str) -> Device | None:
        """A device by its gridwatch id."""
        return self.by_id.get(device_id)

    def resolve(self, ref: str) -> Resolved | None:
        """The device `ref` names (id or vendor identity), or None when nothing registered matches."""
        try:
            return self._cache[ref]
        except KeyError:
            pass
        found = self._resolve(ref)
        if len(self._cache) < 100_000:
            self._cache[ref] = found
        return found

    def _resolve(self, ref: str) -> Resolved | None:
        device = self.by_id.get(ref) or self.by_identity.get(ref)
        if device is not None:
            return Resolved(device)
        fmt, colon, key = ref.partition(":")
        if colon and (device := self.by_id.get(key)) is not None and _speaks(device, fmt):
            return Resolved(device)
        parent, sep, part = ref.rpartition("/")
        if not sep or not parent:
            return None
        device = self.by_identity.get(parent)
        if device is not None:
            return Resolved(device, part or None)
        fmt, colon, host = parent.partition(":")
        if colon and (device := self.by_id.get(host)) is not None and _speaks(device, fmt):
            return Resolved(device, part or None)
        return None

    def children(self, ref: str) -> list[Device]:
        """Devices registered under a device-level identity (`dahua:nvr1` → `dahua:nvr1/0`, `dahua:nvr1/1`, …)."""
        return list(self._children.get(ref, ()))


def _speaks(device: Device, fmt: str) -> bool:
    """Whether a message of format `fmt` naming a device by its id may speak for it.

    Only its own format (a Zigbee bridge cannot raise alarms as fence host `fence-07` by naming a
    sensor `fence-07`), or the fence adapter for a fence host publishing on its own gridwatch topic
    (the broker ACL binds that topic to the host's login)."""
    return fmt == device.format or (fmt == "fence" and device.format in ("gridwatch", "fence"))


def how_to_register(ref: str) -> str:
    """The hint a dead letter of an unknown device gives."""
    if ":" in ref and not ref.startswith("patroller:"):
        return f"device identity {ref!r} is not registered (add it with `gridwatch devices import`, identity column)"
    return f"device {ref!r} is not registered"
