"""A database outage loses nothing: ingest keeps the batch unacked and retries; the broker's persistent
session holds the rest; when PostgreSQL returns every alarm is stored exactly once."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import paho.mqtt.client as mqtt
import pytest

from api.cli import seed_store
from api.runtime import Runtime
from api.settings import Settings
from ingest.broker import MosquittoBroker
from store import open_store
from tests.fixtures.pgcluster import PrivateCluster

pytestmark = pytest.mark.integration
CST = timezone(timedelta(hours=8))


def test_alarms_published_during_a_database_outage_are_stored_once_it_returns(mosquitto: MosquittoBroker) -> None:
    with PrivateCluster() as cluster:
        url = cluster.create_database("outage", extensions=("postgis",))
        store = open_store(url)
        store.migrate()
        seed_store(store)
        settings = Settings(
            _env_file=None, database_url=url, mqtt_url=mosquitto.url, mqtt_client_id=f"outage-{uuid.uuid4().hex[:8]}", secret_key="x"
        )
        rt = Runtime(settings, store)
        rt.start_ingest()
        try:
            device = next(d for d in rt.devices.values() if d.kind == "thermal")
            pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
            pub.connect(mosquitto.host, mosquitto.port)
            pub.loop_start()

            def send(prefix: str, n: int) -> None:
                for i in range(n):
                    body = {"id": f"{prefix}-{i}", "ts": datetime.now(CST).isoformat(), "type": "thermal.overheat", "severity": 3}
                    pub.publish(f"gridwatch/devices/{device.id}/alarm", json.dumps(body), qos=1).wait_for_publish(10)

            send("before", 5)
            deadline = time.monotonic() + 20
            while store.count_alarms() < 5 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert store.count_alarms() == 5
            cluster.stop_server()
            send("during", 30)
            time.sleep(2.0)  # the worker is now failing and retrying its batch
            cluster.resume_server()
            deadline = time.monotonic() + 60
            count = 0
            while time.monotonic() < deadline:
                try:
                    count = store.count_alarms()
                except Exception:  # noqa: BLE001 - the pool may still be reconnecting
                    count = 0
                if count == 35:
                    break
                time.sleep(0.2)
            assert count == 35
            pub.loop_stop()
            pub.disconnect()
        finally:
            rt.close()
