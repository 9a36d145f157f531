"""Device and phone traffic simulator: realistic alarm v1, reading, status and location messages through any broker.

The message stream (`Simulator.messages()`) is pure and deterministic for a seed (only `ts`
follows the injected clock); `run()` publishes it through `MqttWorker.publish` (QoS 1, capped
in-flight window) at `rate` messages per second.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import shlex
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from shapely.geometry import Point

from geo.model import Device, Patroller
from ingest import topics
from ingest.client import MqttProtocol, MqttWorker
from ingest.url import parse_broker_url

logger = logging.getLogger(__name__)

DEFAULT_TZ = ZoneInfo("Asia/Shanghai")
MALFORMED_KINDS = ("invalid_json", "ts_without_zone", "unknown_device", "out_of_range")

# (type, weight, severity) per device kind
_EVENTS: dict[str, list[tuple[str, int, int]]] = {
    "fence": [("fence.intrusion", 60, 3), ("fence.touch", 10, 3), ("fence.cut", 8, 4), ("fence.short", 6, 3),
              ("fence.tamper", 6, 3), ("fence.low_voltage", 10, 2)],
    "thermal": [("thermal.fire", 25, 5), ("thermal.overheat", 50, 3), ("thermal.intrusion", 25, 3)],
    "camera": [("camera.line_crossing", 60, 3), ("camera.region_entrance", 40, 3)],
    "smoke": [("smoke.alarm", 1, 4)],
}
_MANUAL_TYPE = {"fence": "fence.intrusion", "thermal": "thermal.fire", "camera": "camera.region_entrance",
                "smoke": "smoke.alarm"}


@dataclass(frozen=True, slots=True)
class SimulatedMessage:
    """One message to publish; `kind` says what it simulates (`alarm`, `repeat`, `location`, `malformed:<why>`)."""

    topic: str
    payload: bytes
    kind: str


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _lonlat(device: Device, frac: float) -> tuple[float, float]:
    """A point on the device's geometry: along its line (fence), or the point itself (camera, sensor)."""
    geom = device.geometry
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        geom = geom.boundary
    if geom.geom_type in ("LineString", "LinearRing", "MultiLineString"):
        p = geom.interpolate(frac, normalized=True)
    else:
        p = geom.representative_point()
    return float(p.x), float(p.y)


def _zone_at(device: Device, frac: float) -> str | None:
    """The fence zone covering position `frac` (0..1) along the fence: zones split it evenly."""
    if not device.zones:
        return None
    return device.zones[min(int(frac * len(device.zones)), len(device.zones) - 1)]


def _frac_of(device: Device, lon: float, lat: float) -> float:
    """Where along the device's line the point lon/lat projects (0..1); 0 for point devices."""
    geom = device.geometry
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        geom = geom.boundary
    if geom.geom_type in ("LineString", "LinearRing", "MultiLineString") and geom.length > 0:
        return float(geom.project(Point(lon, lat), normalized=True))
    return 0.0


class Simulator:
    """Publish fence/thermal/camera/smoke alarms, repeats, ~3% malformed messages and patroller GPS tracks."""

    def __init__(
        self,
        devices: Sequence[Device],
        patrollers: Sequence[Patroller],
        broker_url: str,
        *,
        rate: float = 20.0,
        seed: int = 0,
        malformed_share: float = 0.03,
        repeat_share: float = 0.1,
        location_share: float = 0.4,
        telemetry_share: float = 0.0,
        publish_window: int = 500,
        protocol: MqttProtocol = "5",
        tz: tzinfo = DEFAULT_TZ,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """Nothing connects before `run()`/`start()`; `rate <= 0` publishes as fast as the window allows."""
        if not devices:
            raise ValueError("the simulator needs at least one device")
        self.devices = tuple(devices)
        self.patrollers = tuple(patrollers)
        self.broker_url = broker_url
        self.rate = rate
        self.seed = seed
        self.malformed_share = malformed_share
        self.repeat_share = repeat_share
        self.location_share = location_share if self.patrollers else 0.0
        self.telemetry_share = telemetry_share
        self._window = publish_window
        self._protocol = protocol
        self._tz = tz
        self._clock = clock or (lambda: datetime.now(tz))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.published = 0

    # -- the message stream (pure, deterministic for a seed) ------------------------------

    def messages(self) -> Iterator[SimulatedMessage]:
        """Yield an endless, seed-deterministic stream of messages."""
        rng = random.Random(self.seed)
        xs = [_lonlat(d, 0.5) for d in self.devices]
        center = (sum(x for x, _ in xs) / len(xs), sum(y for _, y in xs) / len(xs))
        homes = {p.id: p.home or center for p in self.patrollers}
        positions = dict(homes)
        last: tuple[Device, str, int, float] | None = None
        for n in itertools.count(1):
            msg_id = f"sim{self.seed}-{n:08d}"
            if self.telemetry_share and rng.random() < self.telemetry_share:
                yield self._telemetry(rng)
                continue
            roll = rng.random()
            if roll < self.location_share:
                p = rng.choice(self.patrollers)
                positions[p.id] = self._walk(rng, positions[p.id], homes[p.id])
                lon, lat = positions[p.id]
                acc = round(rng.uniform(3, 25), 1)
                body = {"ts": self._ts(), "lat": round(lat, 6), "lon": round(lon, 6), "acc": acc}
                yield SimulatedMessage(topics.patroller_location(p.id), _dumps(body), "location")
            elif roll < self.location_share + (1 - self.location_share) * self.malformed_share:
                yield self._malformed(rng, msg_id)
            elif last is not None and rng.random() < self.repeat_share:
                device, alarm_type, severity, frac = last
                yield SimulatedMessage(topics.device_alarm(device.id),
                                       _dumps(self._alarm(rng, msg_id, device, alarm_type, severity, frac)), "repeat")
            else:
                device = rng.choice(self.devices)
                events = _EVENTS.get(device.kind, [("device.offline", 1, 2)])
                alarm_type, _w, severity = rng.choices(events, weights=[w for _, w, _ in events])[0]
                frac = rng.random()
                last = (device, alarm_type, severity, frac)
                yield SimulatedMessage(topics.device_alarm(device.id),
                                       _dumps(self._alarm(rng, msg_id, device, alarm_type, severity, frac)), "alarm")

    def _ts(self) -> str:
        return self._clock().astimezone(self._tz).isoformat(timespec="seconds")

    @staticmethod
    def _walk(rng: random.Random, pos: tuple[float, float], home: tuple[float, float]) -> tuple[float, float]:
        # ~20 m steps with a 5% pull back home, so tracks wander but stay in the patroller's area
        lon = pos[0] + rng.gauss(0, 0.0002) + 0.05 * (home[0] - pos[0])
        lat = pos[1] + rng.gauss(0, 0.0002) + 0.05 * (home[1] - pos[1])
        return lon, lat

    def _alarm(self, rng: random.Random, msg_id: str, device: Device, alarm_type: str, severity: int,
               frac: float) -> dict[str, Any]:
        body: dict[str, Any] = {"id": msg_id, "ts": self._ts(), "type": alarm_type, "severity": severity}
        data: dict[str, Any] = {}
        if device.kind == "fence":
            lon, lat = _lonlat(device, frac)
            body |= {"lat": round(lat, 6), "lon": round(lon, 6)}
            zone = _zone_at(device, frac)
            if zone is not None:
                body["zone"] = zone
            low = alarm_type == "fence.low_voltage"
            data["voltage_kv"] = round(rng.uniform(2.0, 4.5) if low else rng.uniform(6.5, 9.5), 1)
        elif device.kind in ("thermal", "camera"):
            lon, lat = _lonlat(device, 0.5)
            lon, lat = lon + rng.uniform(-0.0003, 0.0003), lat + rng.uniform(-0.0003, 0.0003)  # inside the view
            body |= {"lat": round(lat, 6), "lon": round(lon, 6)}
            if alarm_type == "thermal.fire":
                data["temp_c"] = round(rng.uniform(120, 400), 1)
            elif alarm_type == "thermal.overheat":
                data["temp_c"] = round(rng.uniform(65, 110), 1)
            else:
                data["object"] = rng.choice(("person", "person", "vehicle"))
                data["confidence"] = round(rng.uniform(0.6, 0.99), 2)
        elif device.kind == "smoke":
            data["obscuration_pct_ft"] = round(rng.uniform(2, 12), 1)  # no lat/lon: the registered location is used
        body["data"] = data
        return body

    def _telemetry(self, rng: random.Random) -> SimulatedMessage:
        """A heartbeat status, or a reading: a thermal camera's max temperature, a fence's pulse voltage."""
        device = rng.choice(self.devices)
        if device.kind == "thermal" and rng.random() < 0.7:
            body: dict[str, Any] = {"ts": self._ts(), "metric": "temperature_max", "value": round(rng.uniform(18, 45), 1), "unit": "°C"}
            return SimulatedMessage(topics.device_reading(device.id), _dumps(body), "reading")
        if device.kind == "fence" and rng.random() < 0.7:
            body = {"ts": self._ts(), "metric": "voltage_kv", "value": round(rng.uniform(6.5, 9.5), 2), "unit": "kV"}
            return SimulatedMessage(topics.device_reading(device.id), _dumps(body), "reading")
        body = {"ts": self._ts(), "online": True, "battery": rng.randrange(60, 101)}
        return SimulatedMessage(topics.device_status(device.id), _dumps(body), "status")

    def _malformed(self, rng: random.Random, msg_id: str) -> SimulatedMessage:
        why = rng.choice(MALFORMED_KINDS)
        device = rng.choice(self.devices)
        topic = topics.device_alarm(device.id)
        events = _EVENTS.get(device.kind, [("device.offline", 1, 2)])
        body = self._alarm(rng, msg_id, device, events[0][0], events[0][2], rng.random())
        if why == "invalid_json":
            raw = _dumps(body)
            return SimulatedMessage(topic, raw[: len(raw) // 2], f"malformed:{why}")
        if why == "ts_without_zone":
            body["ts"] = self._clock().astimezone(self._tz).replace(tzinfo=None).isoformat(timespec="seconds")
        elif why == "unknown_device":
            topic = topics.device_alarm(f"sim-unknown-{rng.randrange(1000, 9999)}")
        else:  # out_of_range
            body["lat"], body["lon"] = round(rng.uniform(90.5, 99), 4), round(rng.uniform(180.5, 250), 4)
        return SimulatedMessage(topic, _dumps(body), f"malformed:{why}")

    # -- publishing ------------------------------------------------------------------------

    def run(self, count: int | None = None, duration: float | None = None) -> int:
        """Publish until `stop()`, `count` messages or `duration` seconds; return how many were published."""
        self._stop.clear()
        worker = MqttWorker(self.broker_url, client_id=f"gridwatch-sim-{self.seed}-{uuid.uuid4().hex[:8]}",
                            persistent=False, protocol=self._protocol, publish_window=self._window)
        worker.start()
        started = time.monotonic()
        interval = 1.0 / self.rate if self.rate > 0 else 0.0
        next_at = started
        sent = 0
        try:
            for msg in self.messages():
                if self._stop.is_set() or (count is not None and sent >= count):
                    break
                if duration is not None and time.monotonic() - started >= duration:
                    break
                if interval:
                    delay = next_at - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                    next_at = max(next_at + interval, time.monotonic() - 1.0)  # catch up, but never burst > 1 s
                worker.publish(msg.topic, msg.payload, qos=1)
                sent += 1
                self.published = sent
            if not worker.wait_published(30.0):
                logger.warning("simulator: %d messages still unacknowledged after 30 s", worker.outstanding)
        finally:
            worker.stop()
        logger.info("simulator published %d messages to %s", sent, worker.address.redacted)
        return sent

    def start(self, count: int | None = None, duration: float | None = None) -> None:
        """Run in a background thread (see `run`)."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("simulator already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run_logged, args=(count, duration), name="simulator", daemon=True)
        self._thread.start()

    def _run_logged(self, count: int | None, duration: float | None) -> None:
        try:
            self.run(count, duration)
        except Exception:
            logger.exception("simulator stopped by an error")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop publishing and wait for the background thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


def raise_alarm_command(
    broker_url: str,
    device: Device,
    lon: float,
    lat: float,
    *,
    alarm_type: str | None = None,
    severity: int = 3,
    ts: datetime | None = None,
    msg_id: str | None = None,
) -> str:
    """A ready-to-paste `mosquitto_pub` command raising one alarm v1 of `device` at lon/lat.

    A password in the URL is not copied into the command: it reads `$MQTT_PASSWORD` instead.
    """
    address = parse_broker_url(broker_url)
    when = ts or datetime.now(DEFAULT_TZ)
    if when.tzinfo is None:
        raise ValueError("ts must be timezone-aware")
    body: dict[str, Any] = {
        "id": msg_id or f"manual-{uuid.uuid4().hex[:12]}",
        "ts": when.isoformat(timespec="seconds"),
        "type": alarm_type or _MANUAL_TYPE.get(device.kind, "device.offline"),
        "severity": severity,
        "lat": round(lat, 6),
        "lon": round(lon, 6),
    }
    zone = _zone_at(device, _frac_of(device, lon, lat))
    if zone is not None:
        body["zone"] = zone
    args = ["mosquitto_pub", "-h", address.host, "-p", str(address.port), "-q", "1",
            "-t", topics.device_alarm(device.id), "-m", json.dumps(body, separators=(",", ":"), ensure_ascii=False)]
    if address.tls:
        args[1:1] = ["--capath", "/etc/ssl/certs"]
    cmd = shlex.join(args)
    if address.username is not None:
        cmd += f" -u {shlex.quote(address.username)}"
        if address.password is not None:
            cmd += ' -P "$MQTT_PASSWORD"'
    return cmd
