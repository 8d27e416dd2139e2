"""Settings of the monitor service: `MONITOR_*` environment variables (see apev_runtime.settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from apev_runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MONITOR_", extra="ignore", env_nested_delimiter="__")

    service_name: str = "monitor"
    consumer_group: str = "apev-monitor"

    rules_file: Path | None = None
    """Alert rules (schema in `apev_monitor/rules.py`); default: the packaged `rules.yaml`. Invalid: no start."""
    tenants_file: Path = Path("deploy/tenants.yaml")
    """Tenant settings (ARCHITECTURE §8): `daily_dbu_budget`, `freshness_minutes`; reloaded when it changes."""

    evaluate_interval_seconds: float = 15.0
    """How often the leader replica evaluates the rules and groups what to notify."""
    notify_interval_seconds: float = 1.0
    """How often due notifications are delivered (and failed ones retried)."""
    sample_interval_seconds: float = 900.0
    """How often the billing sampler re-reads `system.billing.usage` (needs DATABRICKS_HOST/TOKEN)."""
    sample_days: int = 3
    """Usage days re-read each cycle (today included), so late corrections publish an updated sample."""
    warehouse_id: str | None = Field(None, validation_alias="DATABRICKS_WAREHOUSE_ID")
    """Warehouse of the sampler's statements; default: the first running warehouse."""

    slack_webhooks: dict[str, SecretStr] = Field(default_factory=dict)
    """Slack incoming webhook URL per name (`alerts`, `billing`, ...); rules name one (`slack_webhook`).
    A rule whose webhook is not configured falls back to `alerts`; none configured: Slack is skipped."""
    slack_resend_unconfirmed: bool = False
    """Re-send a Slack message whose answer did not say whether it was posted (502/504, the connection lost
    after sending): true risks a duplicate message, false (default) a missed one (PagerDuty always re-sends:
    its `dedup_key` makes that safe)."""
    pagerduty_events_url: str = "https://events.pagerduty.com"
    pagerduty_routing_key: SecretStr | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    email_from: str = "apev-monitor@localhost"
    email_to: list[str] = Field(default_factory=list)
    notification_ttl_seconds: float = 3600.0
    """A notification not delivered within this long is marked expired (every attempt stays recorded)."""
    notify_timeout_seconds: float = 10.0
    breaker_failures: int = 5
    breaker_cool_down_seconds: float = 30.0
    console_base_url: str | None = None
    """Where links in notifications point for alerts without a run page (default: `public_url`)."""

    ingest_url: str | None = None
    """The operator console's view of the other services (their HTTP APIs, never their tables); unset: the
    console shows that part as not configured."""
    jobs_url: str | None = None
    serving_url: str | None = None
    writeback_url: str | None = None
    console_timeout_seconds: float = 8.0
    """How long the console waits for one service call before showing that service as down."""
    console_poll_seconds: float = 5.0
    """How often a console page refreshes what changes (its fragments), in the browser."""
    console_cookie_secure: bool = False
    """Mark the session cookie `Secure` (set it behind HTTPS)."""
    console_token_ttl_seconds: int = 300
    """Lifetime of the service tokens the console mints for its calls (HS256 with `APEV_JWT_SECRET`)."""
