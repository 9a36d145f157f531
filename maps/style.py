"""Colours of lights and grid fills shared by the map builders."""

from __future__ import annotations

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
