"""Topic builders and the inbound topic parser (design §4)."""

from __future__ import annotations

import pytest

from ingest import topics
from ingest.errors import InvalidTopicError
from ingest.topics import TopicRoute

pytestmark = pytest.mark.unit


def test_builders_follow_the_design() -> None:
    assert topics.device_alarm("fence-1") == "gridwatch/devices/fence-1/alarm"
    assert topics.device_reading("fence-1") == "gridwatch/devices/fence-1/reading"
    assert topics.device_status("fence-1") == "gridwatch/devices/fence-1/status"
    assert topics.patroller_location("p7") == "gridwatch/patrollers/p7/location"
    assert topics.patroller_alerts("p7") == "gridwatch/patrollers/p7/alerts"
    assert topics.grid_incidents("430000001002") == "gridwatch/grids/430000001002/incidents"
    assert topics.owntracks("p7", "phone") == "owntracks/p7/phone"


@pytest.mark.parametrize("bad", ["", "a/b", "+", "#", "x#", "$SYS", "a\x00"])
def test_ids_that_would_change_the_topic_are_refused(bad: str) -> None:
    with pytest.raises(InvalidTopicError):
        topics.device_alarm(bad)
    with pytest.raises(InvalidTopicError):
        topics.patroller_alerts(bad)


@pytest.mark.parametrize(
    ("topic", "route"),
    [
        ("gridwatch/devices/fence-1/alarm", TopicRoute("alarm", "fence-1")),
        ("gridwatch/devices/fence-1/reading", TopicRoute("reading", "fence-1")),
        ("gridwatch/devices/cam-9/status", TopicRoute("status", "cam-9")),
        ("gridwatch/patrollers/p7/location", TopicRoute("location", "p7")),
        ("owntracks/p7/phone", TopicRoute("owntracks", "p7", owntracks_device="phone")),
    ],
)
def test_parse_inbound_topics(topic: str, route: TopicRoute) -> None:
    assert topics.parse(topic) == route


@pytest.mark.parametrize(
    "topic",
    [
        "gridwatch/devices//alarm",
        "gridwatch/devices/fence-1/alarm/extra",
        "gridwatch/devices/fence-1/other",
        "gridwatch/patrollers/p7/alerts",  # outbound, not ingest's
        "gridwatch/grids/430000001/incidents",
        "owntracks/p7/phone/event",
        "owntracks/p7",
        "frigate/events",
        "",
    ],
)
def test_parse_returns_none_for_topics_ingest_does_not_handle(topic: str) -> None:
    assert topics.parse(topic) is None


def test_every_ingest_filter_matches_what_parse_accepts() -> None:
    assert set(topics.INGEST_FILTERS) == {
        "gridwatch/devices/+/alarm", "gridwatch/devices/+/reading", "gridwatch/devices/+/status",
        "gridwatch/patrollers/+/location", "owntracks/+/+",
    }


def test_shared_subscription() -> None:
    assert topics.shared(topics.DEVICE_ALARMS) == "$share/gridwatch/gridwatch/devices/+/alarm"
    assert topics.shared("a/b", "g2") == "$share/g2/a/b"
    assert topics.shared("$share/g/a") == "$share/g/a"
