"""Issue 5 benchmarks: adapter decode cost, and readings from MQTT into the store per ingest worker.

- `bench_decoders`: median µs per message of every adapter on a typical payload of its format,
  next to the cost of only parsing the same bytes (json.loads, or ingest.adapters.xmlsafe for XML) measured in
  the same run: the ratio is what the adapter adds on top of parsing.
- `run_readings`: a publisher process sends reading v1 messages (QoS 1; `per_message` readings of
  one device per message, distinct timestamps) → Mosquitto → `Runtime.start_ingest` → store. Rate =
  readings stored / (commit of the batch that stored the last one − first publish); the stored row
  count is checked (0 lost, 0 duplicated). The baseline is `e2e.run_raw` with the same messages
  (publisher → Mosquitto → a subscriber that only counts), so readings/s of the pipeline can be put
  against the readings/s the broker and publisher alone move.
"""

from __future__ import annotations

import json
import random
import statistics
import time
import timeit
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from geo.model import District

PAYLOADS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "payloads"
READING_FILTER = "gridwatch/devices/+/reading"


def _median_us(fn: Callable[[], object], number: int) -> float:
    runs = timeit.repeat(fn, number=number, repeat=7)
    return round(statistics.median(runs) / number * 1e6, 2)


def decoder_cases() -> list[tuple[str, str, bytes]]:
    """(format, topic, payload): one typical message per adapter."""
    ts = "2026-11-21T08:15:02+08:00"
    return [
        ("alarm v1", "gridwatch/devices/fence-0001/alarm",
         json.dumps({"id": "m-1", "ts": ts, "type": "fence.intrusion", "severity": 3, "zone": "Z4", "data": {"voltage_kv": 7.9}}).encode()),
        ("reading v1 (1)", "gridwatch/devices/th-1/reading",
         json.dumps({"ts": ts, "metric": "temperature_max", "value": 41.5, "unit": "°C"}).encode()),
        ("status v1", "gridwatch/devices/th-1/status", json.dumps({"ts": ts, "online": True, "battery": 88}).encode()),
        ("fence JSON", "gridwatch/devices/host-7/fence", (PAYLOADS / "fence" / "intrusion.json").read_bytes()),
        ("Contact ID", "gridwatch/devices/host-7/fence", (PAYLOADS / "contactid" / "perimeter_alarm.json").read_bytes()),
        ("Frigate event", "frigate/events", (PAYLOADS / "frigate" / "event_new.json").read_bytes()),
        ("Frigate review", "frigate/reviews", (PAYLOADS / "frigate" / "review_alert.json").read_bytes()),
        ("Hikvision JSON", "hikvision/roof/event", (PAYLOADS / "hikvision" / "tmpa.json").read_bytes()),
        ("Hikvision XML", "hikvision/gate/event", (PAYLOADS / "hikvision" / "linedetection.xml").read_bytes()),
        ("Dahua", "dahua/nvr1/event", (PAYLOADS / "dahua" / "attach_stream.txt").read_bytes()),
        ("ONVIF", "onvif/cam1/event", (PAYLOADS / "onvif" / "motion_alarm.xml").read_bytes()),
        ("OwnTracks", "owntracks/P1/phone", b'{"_type":"location","tst":1763683200,"lat":27.6,"lon":113.8,"acc":5}'),
        ("Zigbee2MQTT", "zigbee2mqtt/hall_smoke", (PAYLOADS / "zigbee2mqtt" / "heiman_hs1sa_smoke.json").read_bytes()),
        ("Home Assistant config", "homeassistant/binary_sensor/hall/smoke/config",
         (PAYLOADS / "homeassistant" / "z2m_smoke_binary_sensor_config.json").read_bytes()),
    ]


def bench_decoders(number: int = 2000) -> dict[str, Any]:
    """Median µs per message of each adapter (through ingest.decode.decode_messages), and of parsing alone."""
    from ingest.adapters.xmlsafe import parse as fromstring
    from ingest.decode import decode_messages
    from ingest.model import DeadLetter

    received = datetime(2026, 11, 21, 0, 15, 5, tzinfo=UTC)
    out: dict[str, Any] = {}
    for name, topic, payload in decoder_cases():
        result = decode_messages(topic, payload, received)
        if isinstance(result, DeadLetter):
            raise RuntimeError(f"bench payload of {name} is dead-lettered: {result.reason}: {result.detail}")
        xml = payload.lstrip()[:1] == b"<"
        dahua = name == "Dahua"

        def parse(payload: bytes = payload, xml: bool = xml, dahua: bool = dahua) -> object:
            if xml:
                return fromstring(payload)
            if dahua:
                return payload.decode().split("\n")
            return json.loads(payload)

        decode_us = _median_us(lambda topic=topic, payload=payload: decode_messages(topic, payload, received), number)
        parse_us = _median_us(parse, number)
        out[name] = {"decode_us": decode_us, "parse_us": parse_us, "ratio": round(decode_us / parse_us, 1) if parse_us else None,
                     "bytes": len(payload), "outputs": len(result)}
    return out


def reading_messages(district: District, n_readings: int, per_message: int, *, seed: int = 0) -> list[tuple[str, bytes]]:
    """Reading v1 messages of the district's thermal and fence devices (each its own increasing time)."""
    rng = random.Random(seed)
    devices = sorted(d.id for d in district.devices)
    clock = {d: datetime(2026, 11, 21, tzinfo=UTC) + timedelta(milliseconds=rng.randrange(1000)) for d in devices}
    out = []
    for _ in range(max(1, n_readings // per_message)):
        device = rng.choice(devices)
        items = []
        for _ in range(per_message):
            clock[device] += timedelta(milliseconds=100)
            items.append({"ts": clock[device].isoformat(), "metric": "temperature_max", "value": round(rng.uniform(20, 60), 2), "unit": "°C"})
        body: Any = items if per_message > 1 else items[0]
        out.append((f"gridwatch/devices/{device}/reading", json.dumps(body, separators=(",", ":")).encode()))
    return out


def _count_readings(url: str) -> tuple[int, int]:
    """(rows, distinct (device, metric, ts)) in the readings table."""
    q = "SELECT count(*), count(DISTINCT (device_id, metric, ts)) FROM readings"
    if url.startswith("sqlite:///"):
        import sqlite3

        from store.sqlite import _path_of

        with sqlite3.connect(_path_of(url)) as db:
            return tuple(db.execute("SELECT count(*), count(*) FROM (SELECT DISTINCT device_id, metric, ts FROM readings)").fetchone())  # type: ignore[return-value]
    import psycopg

    with psycopg.connect(url) as db:
        return tuple(db.execute(q).fetchone())  # type: ignore[arg-type, return-value]


def run_readings(store_url: str, broker_url: str, district: District, messages: Sequence[tuple[str, bytes]], n_readings: int, *,
                 window: int, settings_kw: dict[str, Any] | None = None, stall_s: float = 60.0) -> dict[str, Any]:
    """Publisher process → Mosquitto → Runtime (start_ingest) → readings table, timed to the last reading stored."""
    from bench import e2e

    runtime = e2e._open_runtime(store_url, broker_url, district, settings_kw or {})
    reached = {"at": None, "stored": 0}
    inner = runtime.handle_messages

    def handle(batch: Any) -> Any:
        result = inner(batch)
        reached["stored"] += result.readings
        if reached["at"] is None and reached["stored"] >= n_readings:
            reached["at"] = time.time()
        return result

    runtime.handle_messages = handle
    pub = None
    try:
        runtime.start_ingest(broker_url)
        if not runtime.worker.wait_connected(10):
            raise e2e.BenchError("ingest worker did not connect")
        pub = e2e._publisher(broker_url, messages, window)
        pub.expect("ready", 30)
        pub.send("go")
        last, last_change = -1, time.monotonic()
        while reached["at"] is None:
            if reached["stored"] != last:
                last, last_change = reached["stored"], time.monotonic()
            elif time.monotonic() - last_change > stall_s:
                raise e2e.BenchError(f"readings stalled at {reached['stored']}/{n_readings} (stats: {runtime.stats})")
            time.sleep(0.05)
        published = pub.expect("done", 60)
        stats = dict(runtime.stats)
    finally:
        if pub is not None:
            pub.close()
        runtime.close()
    rows, distinct = _count_readings(store_url)
    elapsed = reached["at"] - published["t_first"]  # type: ignore[operator]
    return {
        "messages": len(messages), "readings": n_readings, "rows": rows, "lost": n_readings - distinct,
        "duplicated": rows - distinct, "seconds": round(elapsed, 3),
        "readings_per_s": round(n_readings / elapsed) if elapsed > 0 else None,
        "msg_per_s": round(len(messages) / elapsed) if elapsed > 0 else None,
        "batches": stats["batches"], "dead_letters": stats["dead_letters"],
    }
