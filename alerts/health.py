"""Device health: a silent or offline device raises a `device.offline` alarm; its return clears it.

- A device registered with an expected interval (`Device.interval_s`, its heartbeat period) that has
  sent nothing for longer than that interval is offline: the health sweep raises one
  `device.offline` alarm for it, routed like any alarm of that device (its grid's patroller).
- An explicit offline (the device's MQTT will, a Zigbee availability `offline`, a status
  `online: false`) raises it at once.
- The alarm's message id is `offline@<last seen>`: several workers sweeping at once, or a sweep
  after a will, store it once (the store dedups on device id + message id).
- When the device sends again, its open `device.offline` incidents are closed by the system
  action `clear`, with the time it came back in the audit log.

Tamper, low battery and power loss arrive as ordinary alarms from the adapters
(`device.tamper`, `device.low_battery`, `device.power_loss`) and become incidents like any other.
"""

from __future__ import annotations

from datetime import datetime

from ingest.model import Alarm

OFFLINE = "device.offline"
OFFLINE_SEVERITY = 3
HEALTH_ACTOR = "system:health"


def offline_alarm(
    device_id: str, *, since: datetime, now: datetime, reason: str, interval_s: float | None, raw: bytes = b""
) -> Alarm:
    """The alarm that says `device_id` went offline (silent since `since`, or said so at `since`)."""
    data: dict[str, object] = {"last_seen": since.isoformat(), "reason": reason}
    if interval_s is not None:
        data["interval_s"] = interval_s
        data["silent_s"] = round((now - since).total_seconds(), 3)
    return Alarm(
        device_id=device_id,
        msg_id=f"offline@{since.isoformat()}",
        ts=now,
        type=OFFLINE,
        severity=OFFLINE_SEVERITY,
        received_at=now,
        raw=raw,
        data=data,
    )


def clear_reason(device_id: str, at: datetime) -> str:
    """The audit text of an automatic clear."""
    return f"device {device_id} back online at {at.isoformat()}"
