"""codec.json_text and codec.fast_text: the one-pass serializers of the bulk write paths equal the
clean-then-dump they replace, for clean and for dirty values."""

from __future__ import annotations

import json
from collections import OrderedDict
from types import MappingProxyType
from typing import Any

import pytest

from store import codec

pytestmark = pytest.mark.unit


def reference(value: Any) -> str:
    return json.dumps(codec.clean_json(value), ensure_ascii=False, separators=(",", ":"))


@pytest.mark.parametrize(
    "value",
    [
        {},
        [],
        {"voltage_kv": 7.9, "zone": "Z4", "n": [1, 2.5, None, True]},
        {"note": "围栏入侵", "nested": {"a": ["b", {"c": "d"}]}},
        {"nul": "a\x00b", "key\x00": 1},
        {"surrogate": "x\ud800y", "\udcff": "k"},
        {"nan": float("nan"), "inf": float("inf"), "ninf": [float("-inf")]},
        {"literal backslash-u": "\\u0000"},
        ("tuple", 1),
        OrderedDict([("b", 1), ("a", 2)]),
        MappingProxyType({"proxy": "\x00"}),
        {1: "int key"},
        "plain",
        3.25,
    ],
)
def test_json_text_equals_clean_then_dump(value: Any) -> None:
    assert codec.json_text(value) == reference(value)


def test_json_text_still_refuses_what_json_cannot_encode() -> None:
    with pytest.raises(TypeError):
        codec.json_text({"when": object()})


@pytest.mark.parametrize("value", [None, "", "plain ascii", "a\x00b", "围栏", "x\ud800", "\x00\udcff"])
def test_fast_text_equals_clean_text(value: str | None) -> None:
    assert codec.fast_text(value) == (None if value is None else codec.clean_text(value))


@pytest.mark.parametrize("value", ["", "abc", "a\x00", "é\x00", "x\ud800y", "\udcff"])
def test_clean_text_ascii_fast_path_changes_nothing(value: str) -> None:
    expected = value.replace("\x00", "\ufffd")
    expected = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in expected)
    assert codec.clean_text(value) == expected
