"""ingest.adapters.xmlsafe: plain XML takes the fast path, anything with a DTD is refused."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ingest.adapters import xmlsafe

pytestmark = pytest.mark.unit

BOMB = b"""<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><a>&lol2;</a>"""
XXE = b"""<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>"""


def test_plain_xml_parses() -> None:
    root = xmlsafe.parse(b'<?xml version="1.0" encoding="UTF-8"?><a xmlns="urn:x"><b>1</b></a>')
    assert isinstance(root, ET.Element) and root.tag == "{urn:x}a"


@pytest.mark.parametrize("payload", [BOMB, XXE, "\ufeff".encode() + XXE, XXE.decode().encode("utf-16")])
def test_dtds_are_refused_on_every_path(payload: bytes) -> None:
    out = xmlsafe.parse(payload)
    assert isinstance(out, str), out


def test_comments_and_utf16_take_the_defused_path_and_still_parse() -> None:
    assert isinstance(xmlsafe.parse(b"<a><!-- note --><b/></a>"), ET.Element)
    assert isinstance(xmlsafe.parse('<?xml version="1.0" encoding="UTF-16"?><a><b>\u706b</b></a>'.encode("utf-16")), ET.Element)


def test_undefined_entities_and_garbage_are_reasons_not_exceptions() -> None:
    for payload in (b"<a>&lol;</a>", b"<a><b></a>", b"\xff\xfe\x00", b""):
        assert isinstance(xmlsafe.parse(payload), str), payload
