"""Settings every service shares. Each service subclasses `ServiceSettings` with its own env prefix.

Environment variables use the service's prefix (`JOBS_DATABASE_URL`), except the cross-cutting ones with
well-known names, read unprefixed by every service: `KAFKA_BOOTSTRAP_SERVERS`, `DATABRICKS_HOST` and its auth,
`DATABRICKS_TOKEN` (PAT) or `DATABRICKS_CLIENT_ID` + `DATABRICKS_CLIENT_SECRET` (OAuth M2M, a service principal).
Delivery bounds are `DELIVERY_*` (shared by all services).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from apev_runtime.auth import JwtVerifier


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class DeliverySettings(BaseSettings):
    """Bounds of the at-least-once delivery middleware (§4)."""

    model_config = SettingsConfigDict(env_prefix="DELIVERY_", extra="ignore")

    max_event_bytes: int = 1_048_576
    """Events larger than this are dead-lettered unread (1 MiB, Kafka's default message size)."""
    retry_attempts: int = 5
    """Attempts per message for transient errors, the first included."""
    retry_timeout_seconds: float = 60.0
    """Total time spent retrying one message; well under aiokafka's 300 s `max_poll_interval_ms`."""
    retry_initial_wait_seconds: float = 0.2
    retry_max_wait_seconds: float = 10.0
    inbox_retention_days: float = 14.0
    """Inbox rows older than this are pruned; keep it longer than any redelivery or DLQ replay window."""
    outbox_retention_days: float = 7.0
    """Published outbox rows older than this are pruned."""
    prune_interval_seconds: float = 3600.0
    breaker_pause_seconds: float = 30.0
    """Longest wait in one go while a host's circuit is open, before the message is sought back and retried."""
    db_unavailable_pause_seconds: float = 1.0
    """Wait before redelivering a message whose handling found the service's own database unreachable."""
    dlq_publish_backoff_seconds: float = 1.0
    dlq_max_bytes: int = 524_288
    """Largest dead letter (value + headers); a larger value is cut to a prefix, so the DLQ never refuses it."""
    batch_size: int = 500
    outside_calls_batch_size: int = 50
    """Records fetched at once by an `outside_calls` subscriber: each is handled alone, the offsets committed
    once for all (the batch's time budget still bounds how long that takes)."""
    batch_time_budget_seconds: float = 120.0
    """A batch handled one message at a time (after a failure) stops starting new messages after this long and
    leaves the rest to the next poll; with `retry_timeout_seconds` it stays well under the 300 s poll interval."""
    event_spans: bool = False
    """Open a tracing span per consumed event (about 20 µs each); off, handlers still run inside the event's
    trace (its `traceparent` is the current context) and FastStream opens one span per batch."""
    """Most records handled in one database transaction (what one fetch returns, up to this)."""


class ServiceSettings(BaseSettings):
    """Settings every service has. Subclass with `model_config = SettingsConfigDict(env_prefix="JOBS_")`."""

    model_config = SettingsConfigDict(env_prefix="APEV_", extra="ignore", env_nested_delimiter="__")

    service_name: str = "apev"
    environment: Literal["local", "test", "production"] = "local"
    data_dir: Path = Path(".stack/data")

    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS"))
    kafka_client_id: str | None = None
    kafka_topic_prefix: str = Field("", validation_alias=_env("KAFKA_TOPIC_PREFIX"))
    """Prepended to every topic name (environments sharing a cluster; isolated test runs)."""
    kafka_group_instance_id: str | None = Field(None, validation_alias=_env("KAFKA_GROUP_INSTANCE_ID"))
    """Static group membership: a replica's stable name (a StatefulSet pod's). A replica restarted under the same
    name takes its partitions back at once, without a rebalance; one that stays away keeps them until its session
    times out. Each consumer's `group.instance.id` is this name, its group and its topics. Unset: dynamic."""
    kafka_session_timeout_ms: int = Field(10_000, ge=6_000, validation_alias=_env("KAFKA_SESSION_TIMEOUT_MS"))
    """How long the group waits for a silent (killed) member before handing its partitions to the others; also
    the rebalance timeout (aiokafka's default). Heartbeats go every 500 ms (or a third of it, if less)."""

    database_url: str | None = None
    """SQLAlchemy async URL; default: a SQLite file `<data_dir>/<service_name>.db` (the embedded default)."""
    database_schema: str | None = None
    """PostgreSQL schema holding this service's tables (one database, a schema per service)."""

    log_format: Literal["json", "console", "auto"] = "auto"
    log_level: str = "INFO"

    http_host: str = "127.0.0.1"
    http_port: int = 0
    public_url: str | None = None

    delivery: DeliverySettings = Field(default_factory=DeliverySettings)

    mcp_base_url: str | None = Field(None, validation_alias=_env("MCP_BASE_URL"))
    mcp_api_key: SecretStr | None = Field(None, validation_alias=_env("MCP_API_KEY"))

    databricks_host: str | None = Field(None, validation_alias=_env("DATABRICKS_HOST"))
    databricks_token: SecretStr | None = Field(None, validation_alias=_env("DATABRICKS_TOKEN"))
    databricks_client_id: str | None = Field(None, validation_alias=_env("DATABRICKS_CLIENT_ID"))
    """OAuth M2M: a service principal's application id (with `DATABRICKS_CLIENT_SECRET`), instead of a PAT."""
    databricks_client_secret: SecretStr | None = Field(None, validation_alias=_env("DATABRICKS_CLIENT_SECRET"))
    databricks_threads: int = 8

    @model_validator(mode="after")
    def _one_databricks_auth(self) -> ServiceSettings:
        m2m = self.databricks_client_id or self.databricks_client_secret
        if self.databricks_token and m2m:
            raise ValueError(
                "Databricks: configure either DATABRICKS_TOKEN (PAT) or DATABRICKS_CLIENT_ID + "
                "DATABRICKS_CLIENT_SECRET (OAuth M2M), not both"
            )
        if m2m and not (self.databricks_client_id and self.databricks_client_secret):
            missing = "DATABRICKS_CLIENT_SECRET" if self.databricks_client_id else "DATABRICKS_CLIENT_ID"
            raise ValueError(f"Databricks OAuth M2M needs both client id and secret; {missing} is not set")
        return self

    @property
    def databricks_configured(self) -> bool:
        """A host and one auth method (PAT or M2M): the service builds its Databricks clients."""
        return bool(self.databricks_host and (self.databricks_token or self.databricks_client_id))

    # Every service verifies the same issuer's tokens, so these are shared (unprefixed) settings.
    jwt_issuer: str = Field("agentprovision", validation_alias=_env("APEV_JWT_ISSUER"))
    jwt_audience: str = Field("apev", validation_alias=_env("APEV_JWT_AUDIENCE"))
    jwt_secret: SecretStr | None = Field(None, validation_alias=_env("APEV_JWT_SECRET"))
    """HS256 key (development, tests). Production: `APEV_JWT_PUBLIC_KEY` (PEM) or `APEV_JWT_JWKS_URL` (RS256)."""
    jwt_public_key: str | None = Field(None, validation_alias=_env("APEV_JWT_PUBLIC_KEY"))
    jwt_jwks_url: str | None = Field(None, validation_alias=_env("APEV_JWT_JWKS_URL"))

    def jwt_verifier(self) -> JwtVerifier | None:
        """The verifier for the service's API, or None when no key is configured (the API then refuses all)."""
        if not (self.jwt_secret or self.jwt_public_key or self.jwt_jwks_url):
            return None
        return JwtVerifier(
            issuer=self.jwt_issuer,
            audience=self.jwt_audience,
            secret=self.jwt_secret.get_secret_value() if self.jwt_secret else None,
            public_key=self.jwt_public_key,
            jwks_url=self.jwt_jwks_url,
        )

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / (self.service_name + '.db')}"
