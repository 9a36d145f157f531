"""Broker URLs: `mqtt://user:pass@host:port` (mqtts → TLS); credentials never reach a log line."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from ingest.errors import BrokerUrlError

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
_ALIASES = {"tcp": "mqtt", "ssl": "mqtts", "tls": "mqtts"}


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where a broker listens and how to log in; `redacted` is the only form fit for logs."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def scheme(self) -> str:
        """`mqtts` when TLS is used, else `mqtt`."""
        return "mqtts" if self.tls else "mqtt"

    @property
    def redacted(self) -> str:
        """The URL without credentials, e.g. `mqtt://broker:1883`."""
        return f"{self.scheme}://{self.netloc}"

    @property
    def netloc(self) -> str:
        """`host:port` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress:
    """Parse `mqtt[s]://[user[:password]@]host[:port]` (also tcp://, ssl://); default ports 1883/8883."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise BrokerUrlError(f"broker URL: {exc}; expected mqtt[s]://[user[:password]@]host[:port]") from None
    scheme = _ALIASES.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme not in DEFAULT_PORTS:
        raise BrokerUrlError(
            f"broker URL scheme {parts.scheme!r}: expected mqtt:// or mqtts:// (tcp:// and ssl:// also accepted)"
        )
    if not parts.hostname:
        raise BrokerUrlError("broker URL: expected a host, e.g. mqtt://localhost:1883")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BrokerUrlError("broker URL: expected no path, query or fragment after host:port")
    return BrokerAddress(
        host=parts.hostname,
        port=port or DEFAULT_PORTS[scheme],
        tls=scheme == "mqtts",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )
