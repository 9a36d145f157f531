"""Errors raised by alerts/."""

from __future__ import annotations


class AlertsError(Exception):
    """Base class of alerts errors."""


class IllegalTransitionError(AlertsError):
    """An action is not allowed in the incident's current state."""

    def __init__(self, incident_id: str, state: str, action: str, allowed: list[str]) -> None:
        self.incident_id = incident_id
        self.state = state
        self.action = action
        self.allowed = allowed
        super().__init__(
            f"incident {incident_id}: action {action!r} is not allowed in state {state!r}"
            f" (allowed: {', '.join(allowed) or 'none'})"
        )


class UnknownActionError(AlertsError):
    """The action name is not one of the workflow's actions."""
