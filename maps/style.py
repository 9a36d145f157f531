"""Colours of lights and grid fills shared by the map builders."""

from __future__ import annotations

from html import escape

LIGHT_COLORS = {"green": "#2e7d32", "yellow": "#f9a825", "red": "#c62828"}
NO_LIGHT_COLOR = "#1565c0"  # open, clock not running yet (reported / registered)
QUIET_FILL = "#90a4ae"  # no open incident
LIGHT_RANK = {None: 0, "green": 1, "yellow": 2, "red": 3}


def light_color(light: str | None) -> str:
    """Colour of an incident marker for its light."""
    return LIGHT_COLORS.get(light or "", NO_LIGHT_COLOR)


def worst_light(lights: list[str | None]) -> str | None:
    """The worst of several lights (red > yellow > green > none)."""
    return max(lights, key=lambda x: LIGHT_RANK.get(x, 0), default=None)


def inert(value: object) -> str:
    """User text made safe for a folium page: HTML-escaped, and with no `{`/`}` left.

    branca compiles every rendered script as a new jinja template, so `{{ … }}` in a grid name or an
    alarm type would be *evaluated on the server*; as HTML entities the braces still display.
    """
    return escape(str(value)).replace("{", "&#123;").replace("}", "&#125;")
