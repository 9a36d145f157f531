"""Broker URL parsing: schemes, default ports, credentials kept out of the printable form."""

from __future__ import annotations

import pytest

from ingest.errors import BrokerUrlError
from ingest.url import BrokerAddress, parse_broker_url

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://localhost", BrokerAddress("localhost", 1883)),
        ("mqtt://broker.example:1884", BrokerAddress("broker.example", 1884)),
        ("mqtts://broker.example", BrokerAddress("broker.example", 8883, tls=True)),
        ("tcp://10.0.0.5:1883", BrokerAddress("10.0.0.5", 1883)),
        ("mqtt://[::1]:1883", BrokerAddress("::1", 1883)),
        ("mqtt://ingest:s%40cret@h:1", BrokerAddress("h", 1, username="ingest", password="s@cret")),
    ],
)
def test_parse(url: str, expected: BrokerAddress) -> None:
    assert parse_broker_url(url) == expected


def test_redacted_form_and_repr_never_show_the_password() -> None:
    address = parse_broker_url("mqtts://ingest:hunter2@broker:8883")
    assert address.redacted == "mqtts://broker:8883"
    assert "hunter2" not in repr(address)
    assert parse_broker_url("mqtt://[::1]:1883").netloc == "[::1]:1883"


@pytest.mark.parametrize("url", ["http://h", "h:1883", "mqtt://", "mqtt://h:99999", "mqtt://h/path", "mqtt://h?x=1"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(BrokerUrlError):
        parse_broker_url(url)
