"""The one settings object (pydantic-settings, env prefix GRIDWATCH_). Only composition roots build it."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET = "change-me-demo-only"


class Settings(BaseSettings):
    """gridwatch configuration; every field can be set as GRIDWATCH_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="GRIDWATCH_", env_nested_delimiter="__", env_file=".env", extra="ignore")

    database_url: str = Field("sqlite:///var/gridwatch.db", description="sqlite:///path or postgresql://…")
    mqtt_url: str | None = Field(None, description="mqtt://user:pass@host:port; unset → embedded broker (demo)")
    mqtt_protocol: str = Field("5", description="MQTT protocol version: 5 or 3.1.1")
    mqtt_client_id: str = "gridwatch-ingest"
    mqtt_shared_group: str | None = Field(None, description="subscribe via $share/<group>/… so several workers split the load")
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET)
    demo: bool = False
    timezone: str = "Asia/Shanghai"
    cooldown_seconds: float = Field(600, description="repeats of (device, type) within this join the open incident")
    auto_dispatch: bool = True
    batch_size: int = Field(5000, description="largest ingest batch under load (one commit, one ack write); the wait bounds it when idle")
    batch_wait_ms: float = 5.0
    max_payload_bytes: int = 64 * 1024
    outbox_retry_seconds: float = 5.0
    max_body_bytes: int = Field(1024 * 1024, description="largest request body of any other route (413 above)")
    max_upload_bytes: int = Field(512 * 1024 * 1024, description="largest grid file accepted by POST /grid-versions")
    stage_drafts: bool = Field(True, description="pre-build the newest draft's index so that its publish swaps in at once")
    version_poll_seconds: float = Field(1.0, description="how often serve/ingest check for a newly published grid version")

    def check_secret(self) -> None:
        """Refuse the default secret outside demo mode (called by the commands that serve users)."""
        if not self.demo and self.secret_key.get_secret_value() == DEFAULT_SECRET and self.database_url.startswith("postgres"):
            raise ValueError("GRIDWATCH_SECRET_KEY must be set to a non-default value outside demo mode")
