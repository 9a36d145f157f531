"""Safe and fast XML parsing of vendor payloads (Hikvision ISAPI, ONVIF).

Entity expansion (billion laughs) and external entities need a DTD. A UTF-8 payload that starts
with `<` and holds no `<!` at all has no DTD (nor comments or CDATA), so the stdlib's expat parser
is safe for it and about 3× faster than building a defusedxml parser per message; anything else
(`<!` anywhere, a BOM, UTF-16, a declared non-UTF-8 encoding) goes through defusedxml with DTDs
forbidden.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

import defusedxml.ElementTree as DefusedET  # type: ignore[import-untyped]
from defusedxml import DefusedXmlException

_DECLARED = re.compile(rb"^\s*<\?xml[^>]*encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")


def parse(payload: bytes) -> ET.Element | str:
    """The root element, or why the payload is not acceptable XML (a DTD, malformed, unreadable)."""
    try:
        if _plain(payload):
            return ET.fromstring(payload)
        root: ET.Element = DefusedET.fromstring(payload, forbid_dtd=True)
    except DefusedXmlException as exc:
        return f"XML with a DTD or entity declarations is refused ({type(exc).__name__})"
    except ET.ParseError as exc:
        return f"payload is not well-formed XML: {exc}"
    except (ValueError, LookupError) as exc:  # an unknown or multi-byte declared encoding
        return f"payload is not readable XML: {exc}"
    return root


def local_name(tag: Any) -> str:
    """An element's tag without its `{namespace}` (vendors vary the namespace; "" for a comment or PI)."""
    text = tag if isinstance(tag, str) else ""
    return text.rsplit("}", 1)[-1]


def _plain(payload: bytes) -> bool:
    if payload.lstrip()[:1] != b"<" or b"<!" in payload:
        return False
    declared = _DECLARED.match(payload)
    return declared is None or declared.group(1).lower() in (b"utf-8", b"utf8", b"us-ascii", b"ascii")
