"""Settings of the writeback service: `WRITEBACK_*` environment variables (see apev_runtime.settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from apev_runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="WRITEBACK_", extra="ignore", env_nested_delimiter="__")

    service_name: str = "writeback"
    consumer_group: str = "apev-writeback"

    tenants_file: Path = Path("deploy/tenants.yaml")
    """Tenant settings (ARCHITECTURE §8): MCP tenant code, write-back policy, Slack approvers and approvals
    channel; reloaded when the file changes. Unknown tenants get the file's `defaults`."""
    slack_signing_secret: SecretStr | None = None
    """The Slack app's signing secret; without it `POST /slack/interactions` refuses every request (401)."""
    slack_timestamp_window_seconds: int = 300

    mcp_attempts: int = 5
    """Tries per MCP call for 429/503/connection errors (Retry-After honoured), within `mcp_retry_timeout_seconds`."""
    mcp_retry_timeout_seconds: float = 30.0
    mcp_wait_initial_seconds: float = 0.1
    mcp_timeout_seconds: float = 10.0
    breaker_failures: int = 5
    """Consecutive failed MCP calls that open the host's breaker (consumption then pauses)."""
    breaker_cool_down_seconds: float = 30.0

    target_concurrency: int = 4
    """MCP write-backs in flight at once per (tenant, target system): one tenant's burst waits on its own slots."""
    target_rate_per_second: float = 50.0
    """Write-backs per second per (tenant, target system)."""

    resume_interval_seconds: float = 5.0
    """How often write-backs left pending (approved but not yet sent, waiting for an MCP code, cut short by a
    crash or an outage) and held insights whose Slack message is not posted are taken up again."""
    resume_after_seconds: float = 30.0
    """A pending write-back untouched this long is resumed (younger ones are still in someone's hands)."""
