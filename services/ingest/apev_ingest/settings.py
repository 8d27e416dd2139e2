"""Settings of the ingest service: `INGEST_*` environment variables (see apev_runtime.settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from apev_runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INGEST_", extra="ignore", env_nested_delimiter="__")

    service_name: str = "ingest"
    consumer_group: str = "apev-ingest"

    tenants_file: Path = Path("deploy/tenants.yaml")
    """Tenant settings (ARCHITECTURE §8): MCP tenant code, freshness budgets per data source, ...; reloaded
    when the file changes. Unknown tenants get the file's `defaults`."""
    warehouse_id: str | None = Field(None, validation_alias="DATABRICKS_WAREHOUSE_ID")
    """The SQL warehouse the tenant's principals get CAN_USE on and the ingestion job's SQL tasks use;
    default: the first running warehouse."""
    mcp_workspace_url: str | None = None
    """The MCP URL the *workspace* reaches (stored in the tenant's secret scope as `mcp_base_url`); default:
    the service's own `MCP_BASE_URL`."""
    mcp_webhook_secret: SecretStr | None = None
    """HMAC secret of MCP's webhooks to `POST /webhooks/mcp`; without it the endpoint refuses every call (401).
    With `public_url` set, the service subscribes each tenant's MCP webhooks with it."""
    webhook_tolerance_seconds: float = 300.0
    breaker_failures: int = 5
    """Consecutive failed MCP calls that open the MCP host's breaker (consumption then pauses)."""
    breaker_cool_down_seconds: float = 30.0
    """How long an open MCP breaker refuses calls before one probe is let through."""
    pipeline_root: str = "/Shared/agentprovision/pipeline"
    """Workspace folder of the pipeline's task files."""
    page_size: int = 500
    """Records per MCP request in the ingestion job."""
    pending_run_max_age_seconds: float = 3 * 3600
    """A coalesced run still pending after this long (its run.finished never came) no longer blocks a new one."""
    metrics_refresh_seconds: float = 15.0
    credential_max_age_days: float = 90.0
    """Tenant MCP keys older than this are rotated by the credentials loop."""
    credential_grace_seconds: float = 3600.0
    """After a rotation the old key stays valid this long, so runs that read it before the rotation finish."""
    credential_check_seconds: float = 300.0
    """How often the credentials loop rotates what is due, revokes keys past their grace and resumes rotations."""
    monitor_url: str | None = None
    """The monitor (`INGEST_MONITOR_URL`) whose lineage graph (`GET /api/v1/lineage/downstream-tables`) names the
    tables an erasure must touch, recorded beside what the catalog scan deleted; optional: unset or down, the
    catalog scan alone is used and the audit record says so. Called with a service token (`APEV_JWT_SECRET`)."""
    monitor_timeout_seconds: float = 5.0
    """A monitor slower than this counts as down for the erasure's lineage question."""
