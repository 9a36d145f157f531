"""Two ingest workers writing alarms of the same device at once (shared subscription) on PostGIS:
one incident, no lost alarm count, no double incident."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from api.cli import seed_store
from api.runtime import Runtime
from api.settings import Settings
from ingest.client import Message
from store.ports import IncidentQuery, Store

pytestmark = pytest.mark.integration
CST = timezone(timedelta(hours=8))


def _messages(device: str, prefix: str, n: int) -> list[Message]:
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        body = {"id": f"{prefix}-{i}", "ts": now.astimezone(CST).isoformat(), "type": "fence.intrusion", "severity": 2}
        out.append(Message(f"gridwatch/devices/{device}/alarm", json.dumps(body).encode(), i + 1, 1, now))
    return out


def test_concurrent_workers_join_one_incident_without_losing_counts(postgis_store: Store) -> None:
    seed_store(postgis_store)
    settings = Settings(_env_file=None, database_url="postgresql://unused", secret_key="x")
    workers = [Runtime(settings, postgis_store) for _ in range(2)]
    device = next(d.id for d in workers[0].devices.values() if d.kind == "fence")
    batches = [[_messages(device, f"w{w}-b{b}", 5) for b in range(10)] for w in range(2)]
    # the same redelivered batch goes to both workers too
    shared = _messages(device, "both", 5)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(w: int) -> None:
        try:
            start.wait()
            for batch in batches[w]:
                workers[w].handle_messages(batch)
            workers[w].handle_messages(shared)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    incidents = postgis_store.incidents(IncidentQuery())
    assert len(incidents) == 1
    assert incidents[0].alarm_count == 2 * 10 * 5 + 5
    assert postgis_store.count_alarms() == 105
