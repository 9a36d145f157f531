"""Errors raised by the stores."""


class StoreError(Exception):
    """Base class of store errors."""


class NotFoundError(StoreError):
    """A requested row does not exist."""


class ConflictError(StoreError):
    """A write conflicts with what is stored (e.g. a concurrent update of an incident)."""


class VersionStateError(ConflictError):
    """A grid version is not in the state the operation needs (e.g. publishing a published version)."""


class IdentityConflictError(ConflictError, ValueError):
    """Two devices would share one vendor identity (`devices.identity` is unique when set)."""

    def __init__(self, identity: str, device_id: str, holder_id: str) -> None:
        super().__init__(
            f"device {device_id!r}: identity {identity!r} already belongs to device {holder_id!r}"
        )
        self.identity = identity
        self.device_id = device_id
        self.holder_id = holder_id
