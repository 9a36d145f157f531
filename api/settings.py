"""The one settings object (pydantic-settings, env prefix GRIDWATCH_). Only composition roots build it."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET = "change-me-demo-only-never-use-this-secret-in-production"


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
    mqtt_service_password: SecretStr | None = Field(
        None, description="the broker password of the `gridwatch` service user (`devices export-acl`); default: derived from the secret key")
    demo: bool = False
    map_tiles: str = Field("OpenStreetMap",
                           description="base tiles of the map wall: a folium tiles name or URL template; 'none': no tiles (offline)")
    timezone: str = "Asia/Shanghai"
    cooldown_seconds: float = Field(600, description="repeats of (device, type) within this join the open incident")
    auto_dispatch: bool = True
    correlation_radius_m: float = Field(50.0, description="alarms of other devices this close (and recent) join one incident; 0: off")
    correlation_window_s: float = Field(60.0, description="… within this many seconds of the incident's last alarm")
    storm_window_s: float = Field(60.0, description="storm control: the window over which a grid's new incidents are counted")
    storm_max_incidents: int = Field(3, description="more new incidents than this in one level-3 grid per window fold into a storm incident; 0: off")
    storm_notify_interval_s: float = Field(30.0, description="a storm incident notifies each recipient at most this often")
    batch_size: int = Field(5000, description="largest ingest batch under load (one commit, one ack write); the wait bounds it when idle")
    batch_wait_ms: float = 5.0
    max_payload_bytes: int = 64 * 1024
    outbox_retry_seconds: float = 5.0
    data_dir: str = Field("var", description="where uploaded files live: <data_dir>/photos/<incident_id>/<sha256>.<ext>")
    max_photo_bytes: int = Field(5 * 1024 * 1024, description="largest photo accepted per file (413 above)")
    max_photos: int = Field(5, description="most photos per report")
    evaluation_config: str | None = Field(None, description="YAML of evaluation weights/grades/limits (default: alerts/evaluation_defaults.yaml)")
    max_body_bytes: int = Field(1024 * 1024, description="largest request body of any other route (413 above)")
    max_upload_bytes: int = Field(512 * 1024 * 1024, description="largest grid file accepted by POST /grid-versions")
    stage_drafts: bool = Field(True, description="pre-build the newest draft's index so that its publish swaps in at once")
    sla_config: str | None = Field(None, description="YAML file of SLA limits and calendars (default: alerts/sla_defaults.yaml)")
    sla_sweep_seconds: float = Field(5.0, description="how often lights are recomputed, reminders sent and incidents escalated")
    version_poll_seconds: float = Field(1.0, description="how often serve/ingest check for a newly published grid version")
    health_sweep_seconds: float = Field(
        1.0, gt=0, description="how often silent devices are looked for; keep it ≤ 10 % of the shortest device interval")
    threshold_rules: str | None = Field(None, description="YAML of reading threshold rules (default: alerts/thresholds_defaults.yaml)")
    timescale: str = Field("auto", pattern="^(auto|off)$",
                           description="readings on PostgreSQL: a TimescaleDB hypertable when the extension exists (auto), or native partitions (off)")

    def check_secret(self) -> None:
        """Refuse the default secret, or one shorter than 32 bytes, outside demo mode (it signs logins)."""
        if self.demo:
            return
        key = self.secret_key.get_secret_value()
        if key == DEFAULT_SECRET or len(key.encode()) < 32:
            raise ValueError("GRIDWATCH_SECRET_KEY must be set to a secret of at least 32 bytes (e.g. `openssl rand -hex 32`)"
                             " outside demo mode: it signs the login tokens")
