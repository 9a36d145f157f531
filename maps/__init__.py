"""folium builders: data in (already computed FeatureCollections), one map out. No queries, no SLA maths."""

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

STATIC_DIR = Path(__file__).parent / "static"
"""Scripts, styles and vendored libraries the pages load from `/static` (nothing from a CDN)."""


@lru_cache(maxsize=64)
def static_version(name: str) -> str:
    """A cache-busting suffix of a static file (its modification time when the process first served it): browsers
    and phones get the new script after an upgrade, which restarts the process."""
    try:
        return str(int((STATIC_DIR / name).stat().st_mtime))
    except OSError:
        return "0"


def script_json(value: Any) -> str:
    """JSON safe inside a <script> element (no `<`, `>`, `&` that could end it)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
