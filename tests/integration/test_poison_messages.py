"""One bad message must not stall the pipeline: a decoder crash or a store rejection of one message
becomes a dead letter while the rest of its batch is stored; an outage is retried, not dead-lettered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import api.runtime as runtime_module
from api.cli import seed_store
from api.runtime import Runtime
from api.settings import Settings
from ingest.client import Message
from store.ports import Store

pytestmark = pytest.mark.integration
CST = timezone(timedelta(hours=8))


def alarm(device: str, msg_id: str) -> Message:
    body = {"id": msg_id, "ts": datetime.now(CST).isoformat(), "type": "fence.intrusion", "severity": 2}
    return Message(f"gridwatch/devices/{device}/alarm", json.dumps(body).encode(), 1, 1, datetime.now(UTC))


class RejectingStore:
    """The real store, except that its units of work refuse alarms whose id contains 'poison' (or everything when down)."""

    def __init__(self, real: Store) -> None:
        self.real = real
        self.down = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    @contextmanager
    def unit_of_work(self) -> Iterator[Any]:
        if self.down:
            raise ConnectionError("database is down")
        with self.real.unit_of_work() as uow:
            original = uow.add_alarms

            def add_alarms(pairs: Any) -> int:
                if any("poison" in a.msg_id for a, _ in pairs):
                    raise ValueError("value out of range for the column")
                return original(pairs)

            uow.add_alarms = add_alarms
            yield uow


@pytest.fixture
def runtime(sqlite_store: Store) -> tuple[Runtime, RejectingStore, str]:
    seed_store(sqlite_store)
    wrapped = RejectingStore(sqlite_store)
    rt = Runtime(Settings(_env_file=None, database_url="sqlite:///unused"), wrapped)  # type: ignore[arg-type]
    device = next(d.id for d in rt.devices.values() if d.kind == "fence")
    return rt, wrapped, device


def test_a_message_the_store_rejects_is_dead_lettered_and_the_rest_stored(runtime: tuple[Runtime, RejectingStore, str]) -> None:
    rt, store, device = runtime
    result = rt.handle_messages([alarm(device, "ok-1"), alarm(device, "poison-1"), alarm(device, "ok-2")])
    assert result.alarms_stored == 2 and result.dead_letters == 1
    assert store.real.count_alarms() == 2
    (row,) = store.real.dead_letters()
    assert row.dead_letter.reason == "store_rejected" and "value out of range" in row.dead_letter.detail


def test_a_decoder_crash_is_dead_lettered(runtime: tuple[Runtime, RejectingStore, str], monkeypatch: pytest.MonkeyPatch) -> None:
    rt, store, device = runtime
    real_decode = runtime_module.decode_messages

    def flaky(topic: str, payload: bytes, *args: Any, **kwargs: Any) -> Any:
        if b"boom" in payload:
            raise KeyError("boom")
        return real_decode(topic, payload, *args, **kwargs)

    monkeypatch.setattr(runtime_module, "decode_messages", flaky)
    result = rt.handle_messages([alarm(device, "boom-1"), alarm(device, "fine-1")])
    assert result.alarms_stored == 1
    (row,) = store.real.dead_letters()
    assert row.dead_letter.reason == "decode_error" and "KeyError" in row.dead_letter.detail


def test_an_outage_raises_so_the_batch_is_retried_and_nothing_is_dead_lettered(runtime: tuple[Runtime, RejectingStore, str]) -> None:
    rt, store, device = runtime
    store.down = True
    with pytest.raises(ConnectionError):
        rt.handle_messages([alarm(device, "a-1"), alarm(device, "a-2")])
    store.down = False
    assert store.real.dead_letters() == [] and store.real.count_alarms() == 0
    assert rt.handle_messages([alarm(device, "a-1"), alarm(device, "a-2")]).alarms_stored == 2
