"""Errors raised by ingest/."""


class IngestError(Exception):
    """Base class of ingest errors."""


class BrokerUrlError(IngestError, ValueError):
    """A broker URL is not `mqtt[s]://[user[:password]@]host[:port]`."""


class InvalidTopicError(IngestError, ValueError):
    """A topic level (device id, patroller id, grid code) cannot be used in a topic name."""


class MqttConnectionError(IngestError):
    """The MQTT broker could not be reached or refused the connection."""


class MqttPublishError(IngestError):
    """A message could not be queued for publishing (window full past the timeout, or refused)."""


class EmbeddedBrokerError(IngestError):
    """The embedded broker could not be started or stopped."""
