"""Errors raised by the stores."""


class StoreError(Exception):
    """Base class of store errors."""


class NotFoundError(StoreError):
    """A requested row does not exist."""


class ConflictError(StoreError):
    """A write conflicts with what is stored (e.g. a concurrent update of an incident)."""


class VersionStateError(ConflictError):
    """A grid version is not in the state the operation needs (e.g. publishing a published version)."""
