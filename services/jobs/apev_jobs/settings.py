"""Settings of the jobs service: `JOBS_*` environment variables (see apev_runtime.settings)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from apev_runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="JOBS_", extra="ignore", env_nested_delimiter="__")

    service_name: str = "jobs"
    consumer_group: str = "apev-jobs"

    # Completion is pushed: Databricks posts to `<public_url>/webhooks/databricks` with this basic auth.
    webhook_username: str = "apev-jobs"
    webhook_password: SecretStr | None = None
    """Basic-auth password of the notification destination; without it the webhook refuses every call (401)."""
    destination_name: str = "apev-jobs completion"
    """Display name the service finds its notification destination by (only this service creates it)."""

    reconcile_interval_seconds: float = 30.0
    """How often one replica (PostgreSQL advisory lock) lists the workspace's active runs."""
    timeout_grace_seconds: float = 300.0
    """A run still active this long after its job's `timeout_seconds` counted from the request (queue time
    included, which Databricks does not count) is cancelled by the service and reported TIMEDOUT."""
    auto_repair_kinds: set[str] = Field(default_factory=set)
    """Job kinds whose failed runs get one automatic repair of their failed tasks (off by default)."""
    run_as_tenant_principal: bool = True
    """Jobs run as the tenant's pipeline service principal (`tenant_<t>_pipeline`) unless the spec names one."""
    warehouse_id: str | None = Field(None, validation_alias="DATABRICKS_WAREHOUSE_ID")
    """SQL tasks without a warehouse use this one, else the first running warehouse."""
    breaker_failures: int = 5
    """Consecutive failed Databricks calls (after the SDK's own retries) that open the circuit breaker."""
    breaker_cool_down_seconds: float = 30.0

    lineage_transport: Literal["kafka", "http", "file", "none"] = "kafka"
    """Where OpenLineage run events go: `lineage.emitted` through the outbox (kafka), an OpenLineage backend
    (http, `lineage_url`), a JSON-lines file (file, `lineage_file`), or nowhere (see apev_jobs/lineage_transport.py)."""
    lineage_url: str | None = None
    """The OpenLineage backend's base URL for `http` (events are POSTed to `<url>/api/v1/lineage`)."""
    lineage_file: str | None = None
    """The file `file` appends one event per line to."""
    lineage_row_counts: bool = True
    """After a successful run, count the rows of its output tables (one statement) for the outputStatistics facet."""

    def webhook_url(self) -> str | None:
        return self.public_url.rstrip("/") + "/webhooks/databricks" if self.public_url else None
