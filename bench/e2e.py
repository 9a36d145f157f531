"""End-to-end benchmarks: a publisher process → Mosquitto → (a no-work subscriber | the gridwatch Runtime) → store.

Three measurements, each on its own fresh broker and (for the pipeline) its own fresh database:

- `run_raw`: the QoS 1 pass-through baseline. A publisher process sends N alarm v1 messages (QoS 1,
  in-flight window capped well below paho's 65,535 message ids) and a paho subscriber process that
  does no work counts them. Rate = N / (last message received − first publish).
- `run_pipeline`: the same publisher and messages into `api.runtime.Runtime` with its MQTT ingest
  worker (decode → route → one unit of work per batch → ack → outbox). Rate = N / (commit of the
  batch that stored the N-th alarm − first publish), then checked against `store.count_alarms()`
  and the stored (device id, message id) keys: 0 lost, 0 duplicated.
- `run_latency`: alarms paced at a fixed rate, each carrying its send time (`time.time()`) in `ts`;
  cooldown 0 so every alarm opens an incident, devices chosen so that every incident goes to an
  on-duty patroller. A subscriber process on `gridwatch/patrollers/+/alerts` takes
  `time.time()` on receipt; latency = receipt − the incident's `first_alarm_at`.

Every process uses `time.time()` on the same machine, so the clocks agree.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from geo.model import District

logger = logging.getLogger(__name__)

ALARM_FILTER = "gridwatch/devices/+/alarm"
PATROLLER_ALERTS = "gridwatch/patrollers/+/alerts"
RECEIVE_MAXIMUM = 10_000
"""MQTT 5 receive maximum of both the raw subscriber and the ingest worker (the same pipe)."""
MAX_WINDOW = 60_000
"""Hard cap of the publisher's in-flight window (paho numbers QoS 1 messages with 16-bit ids)."""

#: realistic alarm types per device kind (type, weight, severity), as the simulator draws them
LATENCY_TYPES: dict[str, list[tuple[str, int, int]]] = {
    "fence": [("fence.intrusion", 60, 3), ("fence.cut", 10, 4), ("fence.tamper", 10, 3), ("fence.low_voltage", 20, 2)],
    "thermal": [("thermal.fire", 30, 5), ("thermal.overheat", 50, 3), ("thermal.intrusion", 20, 3)],
    "camera": [("camera.line_crossing", 60, 3), ("camera.region_entrance", 40, 3)],
    "smoke": [("smoke.alarm", 1, 4)],
}


class BenchError(RuntimeError):
    """A benchmark could not run to the end (timeout, child process failure)."""


def _ctx() -> Any:
    # spawn: never fork a process that already runs paho/psycopg threads
    return multiprocessing.get_context("spawn")


def _host_port(url: str) -> tuple[str, int]:
    from ingest.url import parse_broker_url

    address = parse_broker_url(url)
    return address.host, address.port


# --- messages ---------------------------------------------------------------------------------------


def alarm_messages(district: District, n: int, *, seed: int = 0) -> list[tuple[str, bytes]]:
    """N alarm v1 messages (unique ids) from the sample district's devices, as the simulator makes them."""
    from geo.index import GridIndex
    from ingest.decode import decode_messages
    from ingest.pipeline import Inbound, LevelFilter, assemble
    from ingest.registry import Registry
    from ingest.simulator import Simulator

    sim = Simulator(
        district.devices, (), "mqtt://127.0.0.1:1", seed=seed,
        malformed_share=0.0, repeat_share=0.1, location_share=0.0,
    )  # fmt: skip
    # keep only messages the pipeline accepts (a camera's jittered point can fall just outside the
    # district and be dead-lettered), so "N published = N stored" is the exactly-once check
    index = GridIndex(district.grids, district.buildings)
    registry = Registry(district.devices)
    now = datetime.now(UTC)
    out: list[tuple[str, bytes]] = []
    for m in sim.messages():
        if len(out) >= n:
            break
        one = Inbound(m.topic, m.payload, now, decode_messages(m.topic, m.payload, now))
        batch = assemble([one], registry=registry, inside=index.contains, levels=LevelFilter(), thresholds=None, now=now)
        if batch.alarms and not batch.dead_letters:
            out.append((m.topic, m.payload))
    return out


def latency_messages(district: District, n: int, *, on_duty_for: float, seed: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """N alarm bodies (without `ts`, set at send time) of devices that route to an on-duty patroller.

    Every device is placed at its registered point; only devices whose route names a patroller now
    and `on_duty_for` seconds from now are used, so every alarm is expected to notify a patroller.
    """
    from alerts.routing import Router, device_point
    from geo.index import GridIndex
    from ingest import topics

    index = GridIndex(district.grids, district.buildings)
    router = Router(index, district.patrollers, district.timezone)
    now = datetime.now(UTC)
    later = now + timedelta(seconds=on_duty_for)
    chosen = []
    for device in district.devices:
        lon, lat = (round(v, 6) for v in device_point(device))
        if not index.contains(lon, lat):
            continue
        a = router.route(lon, lat, point_source="payload", at=now, positions={})
        b = router.route(lon, lat, point_source="payload", at=later, positions={})
        if a.patroller_id is not None and b.patroller_id is not None:
            chosen.append((device, lon, lat))
    if not chosen:
        raise BenchError("no device routes to an on-duty patroller right now")
    rng = random.Random(seed)
    out: list[tuple[str, dict[str, Any]]] = []
    for i in range(n):
        device, lon, lat = rng.choice(chosen)
        events = LATENCY_TYPES.get(device.kind, [("device.offline", 1, 2)])
        alarm_type, _w, severity = rng.choices(events, weights=[w for _, w, _ in events])[0]
        body = {"id": f"lat{seed}-{i:08d}", "type": alarm_type, "severity": severity, "lat": lat, "lon": lon,
                "data": {}}
        out.append((topics.device_alarm(device.id), body))
    logger.info("latency messages: %d devices route to an on-duty patroller", len(chosen))
    return out


# --- child processes --------------------------------------------------------------------------------


def _publisher_main(url: str, messages: Sequence[tuple[str, Any]], window: int, rate: float, stamp: bool,
                    conn: Connection) -> None:
    """Child process: connect, report ready, wait for go, publish everything (QoS 1), wait for every PUBACK."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    try:
        host, port = _host_port(url)
        slots = threading.Semaphore(window)
        acked = 0
        all_acked = threading.Event()
        connected = threading.Event()
        total = len(messages)

        def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if not reason.is_failure:
                connected.set()

        def on_publish(_c: Any, _u: Any, _mid: int, _reason: Any, _p: Any) -> None:
            nonlocal acked
            acked += 1
            slots.release()
            if acked >= total:
                all_acked.set()

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:8]}",
                             protocol=mqtt.MQTTv5)
        # paho's own in-flight cap rescans every unacked message on each PUBACK (O(window) per ack):
        # no paho cap, the semaphore above is the window
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)
        client.on_connect = on_connect
        client.on_publish = on_publish
        client.connect(host, port, 60, clean_start=True)
        client.loop_start()
        if not connected.wait(10):
            raise BenchError(f"publisher: no CONNACK from {url}")
        conn.send(("ready", None))
        conn.recv()  # go
        interval = 1.0 / rate if rate > 0 else 0.0
        publish = client.publish
        t_first = time.time()
        start = time.perf_counter()
        for i, (topic, payload) in enumerate(messages):
            if interval:
                delay = start + i * interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            slots.acquire()
            if stamp:
                payload["ts"] = datetime.fromtimestamp(time.time(), UTC).isoformat()
                payload = json.dumps(payload, separators=(",", ":")).encode()
            info = publish(topic, payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise BenchError(f"publisher: paho refused message {i}: {mqtt.error_string(info.rc)}")
        t_last = time.time()
        ok = all_acked.wait(120) if total else True
        t_acked = time.time()
        client.disconnect()
        client.loop_stop()
        conn.send(("done", {"sent": total, "acked": acked, "all_acked": ok, "t_first": t_first,
                            "t_last_publish": t_last, "t_all_acked": t_acked}))
    except BaseException as exc:  # report to the parent instead of dying silently
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


def _subscriber_main(url: str, topic_filter: str, expected: int, mode: str, conn: Connection) -> None:
    """Child process: subscribe (QoS 1), count messages (mode "count") or record latencies (mode "latency")."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    try:
        host, port = _host_port(url)
        subscribed = threading.Event()
        done = threading.Event()
        count = 0
        t_first_rx: float | None = None
        t_last_rx: float | None = None
        latencies: list[tuple[float, float]] = []  # (sent, latency) per notification
        keys: set[tuple[str, str]] = set()
        duplicates = 0

        def on_connect(client: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if not reason.is_failure:
                client.subscribe(topic_filter, qos=1)

        def on_subscribe(*_a: Any) -> None:
            subscribed.set()

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            nonlocal count, t_first_rx, t_last_rx, duplicates
            now = time.time()
            count += 1
            if t_first_rx is None:
                t_first_rx = now
            t_last_rx = now
            if mode == "latency":
                body = json.loads(msg.payload)
                key = (body.get("device_id"), body.get("first_alarm_at"))
                if key in keys:
                    duplicates += 1
                else:
                    keys.add(key)
                    sent = datetime.fromisoformat(body["first_alarm_at"]).timestamp()
                    latencies.append((sent, now - sent))
            if count >= expected:
                done.set()

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{uuid.uuid4().hex[:8]}",
                             protocol=mqtt.MQTTv5)
        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        client.connect(host, port, 60, clean_start=True, properties=props)
        client.loop_start()
        if not subscribed.wait(10):
            raise BenchError(f"subscriber: no SUBACK from {url}")
        conn.send(("ready", None))
        while not done.is_set():
            if conn.poll(0.05) and conn.recv() == "stop":
                break
        client.disconnect()
        client.loop_stop()
        conn.send(("done", {"received": count, "t_first_rx": t_first_rx, "t_last_rx": t_last_rx,
                            "latencies_s": latencies, "duplicates": duplicates}))
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


@dataclass
class _Child:
    """A spawned child process and the parent's end of its pipe."""

    name: str
    proc: Any
    conn: Connection

    @classmethod
    def start(cls, name: str, target: Callable[..., None], *args: Any) -> _Child:
        parent, child = _ctx().Pipe()
        proc = _ctx().Process(target=target, args=(*args, child), name=name, daemon=True)
        proc.start()
        child.close()
        return cls(name, proc, parent)

    def expect(self, what: str, timeout: float) -> Any:
        if not self.conn.poll(timeout):
            raise BenchError(f"{self.name}: no {what!r} within {timeout:.0f} s")
        try:
            tag, value = self.conn.recv()
        except EOFError:
            raise BenchError(f"{self.name}: the process ended (exit code {self.proc.exitcode})") from None
        if tag == "error":
            raise BenchError(f"{self.name}: {value}")
        if tag != what:
            raise BenchError(f"{self.name}: expected {what!r}, got {tag!r}")
        return value

    def send(self, value: Any) -> None:
        self.conn.send(value)

    def close(self) -> None:
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()  # only our own child, by its handle
            self.proc.join(5)
        self.conn.close()


def _publisher(url: str, messages: Sequence[tuple[str, Any]], window: int, rate: float = 0.0,
               stamp: bool = False) -> _Child:
    if not 1 <= window <= MAX_WINDOW:
        raise ValueError(f"publish window {window}: expected 1..{MAX_WINDOW}")
    return _Child.start("publisher", _publisher_main, url, list(messages), window, rate, stamp)


# --- raw pass-through --------------------------------------------------------------------------------


def run_raw(broker_url: str, messages: Sequence[tuple[str, bytes]], *, window: int, timeout: float = 120.0,
            topic_filter: str = ALARM_FILTER) -> dict[str, Any]:
    """The baseline: publisher process → Mosquitto → a paho subscriber process that only counts."""
    n = len(messages)
    sub = _Child.start("raw-subscriber", _subscriber_main, broker_url, topic_filter, n, "count")
    pub = None
    try:
        sub.expect("ready", 30)
        pub = _publisher(broker_url, messages, window)
        pub.expect("ready", 30)
        pub.send("go")
        published = pub.expect("done", timeout)
        if not sub.conn.poll(timeout):
            sub.send("stop")
        received = sub.expect("done", 30)
    finally:
        for child in (pub, sub):
            if child is not None:
                child.close()
    elapsed = received["t_last_rx"] - published["t_first"] if received["t_last_rx"] else float("nan")
    return {
        "messages": n,
        "received": received["received"],
        "lost": n - received["received"],
        "window": window,
        "seconds": round(elapsed, 3),
        "msg_per_s": round(n / elapsed) if elapsed > 0 else None,
        "publish_seconds": round(published["t_all_acked"] - published["t_first"], 3),
    }


# --- the pipeline ------------------------------------------------------------------------------------


@dataclass
class _Progress:
    """Commit times of the ingest batches (recorded right after the handler's transaction committed)."""

    target: int
    stored: int = 0
    batches: int = 0
    messages: int = 0
    reached_at: float | None = None
    batch_sizes: list[int] = field(default_factory=list)
    reached: threading.Event = field(default_factory=threading.Event)

    def record(self, stored: int, messages: int) -> None:
        now = time.time()
        self.stored += stored
        self.batches += 1
        self.messages += messages
        self.batch_sizes.append(messages)
        if self.reached_at is None and self.stored >= self.target:
            self.reached_at = now
            self.reached.set()


def _stored_keys(url: str) -> list[tuple[str, str]]:
    """Every stored (device_id, msg_id), straight from the database (duplicates kept)."""
    if url.startswith("sqlite:///"):
        from store.sqlite import _path_of

        with sqlite3.connect(_path_of(url)) as db:
            return [(a, b) for a, b in db.execute("SELECT device_id, msg_id FROM alarms")]
    import psycopg

    with psycopg.connect(url) as db:
        return [(a, b) for a, b in db.execute("SELECT device_id, msg_id FROM alarms")]


def _open_runtime(store_url: str, broker_url: str, district: District, settings_kw: dict[str, Any]) -> Any:
    from api.runtime import Runtime
    from api.settings import Settings
    from store import open_store

    store = open_store(store_url)
    store.migrate()
    store.load_district(district, "bench sample district")
    settings = Settings(
        database_url=store_url, mqtt_url=broker_url, mqtt_client_id=f"bench-ingest-{uuid.uuid4().hex[:8]}",
        secret_key="bench-only-secret", **settings_kw,
    )  # fmt: skip
    return Runtime(settings, store)


def _instrument(runtime: Any, progress: _Progress) -> None:
    """Record every committed batch (the worker calls `runtime.handle_messages`, looked up at start_ingest)."""
    inner = runtime.handle_messages

    def handle(messages: Any) -> Any:
        result = inner(messages)
        progress.record(result.alarms_stored, len(messages))
        return result

    runtime.handle_messages = handle


def _wait_stored(runtime: Any, progress: _Progress, n: int, stall_s: float, poll_s: float = 0.05) -> int:
    """Poll store.count_alarms() until it reaches n; BenchError when nothing moves for stall_s."""
    last, last_change = -1, time.monotonic()
    while True:
        count = runtime.store.count_alarms()
        if count >= n and progress.reached.is_set():
            return count
        if count != last:
            last, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > stall_s:
            raise BenchError(f"pipeline stalled at {count}/{n} alarms stored (stats: {runtime.stats})")
        time.sleep(poll_s)


def _drain_outbox(runtime: Any, timeout: float) -> dict[str, Any]:
    t0 = time.monotonic()
    while True:
        counters = runtime.store.notification_counters()
        if counters["pending"] == 0 or time.monotonic() - t0 > timeout:
            return {**counters, "drain_s": round(time.monotonic() - t0, 2)}
        time.sleep(0.1)


def _check_keys(store_url: str, published: set[tuple[str, str]]) -> dict[str, int]:
    rows = _stored_keys(store_url)
    stored = set(rows)
    return {
        "stored_rows": len(rows),
        "lost": len(published - stored),
        "duplicated": len(rows) - len(stored),
        "unexpected": len(stored - published),
    }


def _keys_of(messages: Sequence[tuple[str, Any]]) -> set[tuple[str, str]]:
    keys = set()
    for topic, payload in messages:
        body = json.loads(payload) if isinstance(payload, bytes | str) else payload
        keys.add((topic.split("/")[2], body["id"]))
    return keys


def run_pipeline(store_url: str, broker_url: str, district: District, messages: Sequence[tuple[str, bytes]], *,
                 window: int, settings_kw: dict[str, Any] | None = None, stall_s: float = 60.0) -> dict[str, Any]:
    """Publisher process → Mosquitto → Runtime (start_ingest) → store, timed to the last alarm stored."""
    n = len(messages)
    runtime = _open_runtime(store_url, broker_url, district, settings_kw or {})
    progress = _Progress(n)
    _instrument(runtime, progress)
    pub = None
    try:
        runtime.start_ingest(broker_url)
        if not runtime.worker.wait_connected(10):
            raise BenchError("ingest worker did not connect")
        pub = _publisher(broker_url, messages, window)
        pub.expect("ready", 30)
        pub.send("go")
        count = _wait_stored(runtime, progress, n, stall_s)
        published = pub.expect("done", 60)
        assert progress.reached_at is not None
        elapsed = progress.reached_at - published["t_first"]
        checks = _check_keys(store_url, _keys_of(messages))
        outbox = _drain_outbox(runtime, 120)
        stats = dict(runtime.stats)
    finally:
        if pub is not None:
            pub.close()
        runtime.close()
    sizes = np.array(progress.batch_sizes or [0])
    return {
        "messages": n,
        "count_alarms": count,
        **checks,
        "dead_letters": stats["dead_letters"],
        "redeliveries_skipped": stats["duplicates"],
        "incidents_created": stats["incidents_created"],
        "window": window,
        "seconds": round(elapsed, 3),
        "alarms_per_s": round(n / elapsed) if elapsed > 0 else None,
        "batches": progress.batches,
        "batch_size_mean": round(float(sizes.mean()), 1),
        "batch_size_p50": int(np.percentile(sizes, 50)),
        "batch_size_max": int(sizes.max()),
        "notifications": outbox,
    }


def run_latency(store_url: str, broker_url: str, district: District, *, rate: float, seconds: float,
                window: int, settings_kw: dict[str, Any] | None = None, seed: int = 0,
                warmup: float = 1.0) -> dict[str, Any]:
    """Paced alarms → patroller notifications; p50/p99 of publish → notification received.

    The percentiles cover the alarms sent after the first `warmup` seconds (connections, prepared
    statements and caches warming up); `p99_all_ms` covers every alarm.
    """
    n = max(1, int(rate * seconds))
    messages = latency_messages(district, n, on_duty_for=seconds + 120, seed=seed)
    keys = _keys_of(messages)
    runtime = _open_runtime(store_url, broker_url, district, {"cooldown_seconds": 0, "correlation_radius_m": 0, "storm_max_incidents": 0, **(settings_kw or {})})
    progress = _Progress(n)
    _instrument(runtime, progress)
    pub = sub = None
    try:
        runtime.start_ingest(broker_url)
        if not runtime.worker.wait_connected(10):
            raise BenchError("ingest worker did not connect")
        sub = _Child.start("latency-subscriber", _subscriber_main, broker_url, PATROLLER_ALERTS, n, "latency")
        sub.expect("ready", 30)
        pub = _publisher(broker_url, messages, window, rate=rate, stamp=True)
        pub.expect("ready", 30)
        pub.send("go")
        published = pub.expect("done", seconds * 3 + 60)
        count = _wait_stored(runtime, progress, n, 60)
        if not sub.conn.poll(60):
            sub.send("stop")
        received = sub.expect("done", 30)
        checks = _check_keys(store_url, keys)
        outbox = _drain_outbox(runtime, 60)
        stats = dict(runtime.stats)
    finally:
        for child in (pub, sub):
            if child is not None:
                child.close()
        runtime.close()
    pairs = received["latencies_s"]
    cutoff = published["t_first"] + min(warmup, seconds / 2)
    lat_ms = np.array([lat for sent, lat in pairs if sent >= cutoff]) * 1000.0
    all_ms = np.array([lat for _, lat in pairs]) * 1000.0
    send_s = published["t_last_publish"] - published["t_first"]
    out: dict[str, Any] = {
        "alarms": n,
        "target_rate": rate,
        "achieved_rate": round(n / send_s) if send_s > 0 else None,
        "count_alarms": count,
        **checks,
        "incidents_created": stats["incidents_created"],
        "notifications_expected": n,
        "notifications_received": len(all_ms),
        "measured_after_s": round(cutoff - published["t_first"], 2),
        "measured": len(lat_ms),
        "notification_duplicates": received["duplicates"],
        "outbox": outbox,
    }
    if len(lat_ms):
        p50, p90, p99 = np.percentile(lat_ms, [50, 90, 99])
        out.update(p50_ms=round(float(p50), 2), p90_ms=round(float(p90), 2), p99_ms=round(float(p99), 2),
                   max_ms=round(float(lat_ms.max()), 2))
    if len(all_ms):
        out.update(p50_all_ms=round(float(np.percentile(all_ms, 50)), 2),
                   p99_all_ms=round(float(np.percentile(all_ms, 99)), 2))
    return out


def quiet_runtime_logs() -> None:
    """Keep per-batch INFO logs of the runtime out of the benchmark's output."""
    for name in ("api.runtime", "ingest.client", "alerts", "store", "geo"):
        logging.getLogger(name).setLevel(logging.WARNING)
