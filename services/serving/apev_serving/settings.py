"""Settings of the serving service: `SERVING_*` environment variables (see apev_runtime.settings)."""

from __future__ import annotations

import os
import socket

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from apev_runtime.settings import ServiceSettings

WORKLOAD_SIZES = ("Small", "Medium", "Large")


def _replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}".replace("_", "-")[:120]


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SERVING_", extra="ignore", env_nested_delimiter="__")

    service_name: str = "serving"
    consumer_group: str = "apev-serving"
    databricks_threads: int = 32
    """Worker threads for SDK calls: invokes wait on the endpoint in these threads."""

    chat_endpoint: str = "apev-local-chat"
    """Chat serving endpoint agents plan with when their registration names none (a Foundation Model endpoint on
    Databricks, e.g. `databricks-meta-llama-3-3-70b-instruct`; the local workspace's deterministic one locally)."""
    agent_workspace_url: str | None = None
    """The workspace URL served agents and their jobs call back to; default: `DATABRICKS_HOST`."""
    task_root: str = "/Shared/agentprovision/pipeline"
    """Workspace folder of the agents' task files (uploaded by this service when their content changes)."""
    models_schema: str = "agents"
    """Schema in the tenant's catalog holding the agents' registered models."""
    min_answer_accuracy: float = Field(0.8, ge=0.0, le=1.0)
    """A new version rolls out only when its deploy run's MLflow metric `answer_accuracy` (the smoke test's share
    of right answers on the fixed question set) is at least this; otherwise the endpoint keeps the version it
    serves and the new one is `rejected`."""
    default_workload_size: str = "Small"
    scale_ceiling: str = "Large"
    """`endpoint.scale.requested` raises the workload size one step, never above this."""
    scale_cooldown_seconds: float = 600.0
    """After a scale-up, further requests for the same endpoint change nothing for this long."""
    endpoint_wait_timeout_seconds: float = 240.0
    """How long a create/update/roll waits for READY (kept under the consumer's 300 s poll interval)."""
    endpoint_poll_seconds: float = 0.2
    tenant_concurrency: int = 16
    """Invokes one tenant may have in flight on this replica; more get 429 with `Retry-After`."""
    tenant_concurrency_overrides: dict[str, int] = Field(default_factory=dict)
    retry_after_seconds: int = 1
    invoke_timeout_seconds: float = 30.0
    """End-to-end bound of one invoke (Databricks allows 297 s per request; agents answer far sooner)."""
    latency_window_seconds: float = 10.0
    """`serving.latency.sampled` window (ARCHITECTURE §8: 10 s)."""
    replica_id: str = Field(default_factory=_replica_id)
    warehouse_id: str | None = Field(None, validation_alias="DATABRICKS_WAREHOUSE_ID")

    # ---- SQL query API (POST /api/v1/databricks/sql/query)
    sql_max_rows: int = 10_000
    """Rows one result may have; more is refused (413) naming this limit: add a LIMIT or aggregate."""
    sql_max_bytes: int = 8 * 1024 * 1024
    """Bytes (JSON rows) one result may have; Databricks' INLINE results stop at 25 MiB."""
    sql_timeout_seconds: float = 30.0
    """Longest a statement may run; a request may ask for less (`timeout_seconds`). Then it is cancelled (504)."""
    sql_page_rows: int = 1000
    """Rows per page unless the request asks for fewer or more (`page_rows`, at most `sql_max_rows`)."""
    sql_max_statement_chars: int = 65_536
    sql_cache_ttl_seconds: float = 300.0
    sql_cache_max_entries: int = 1000
    sql_cache_max_bytes: int = 64 * 1024 * 1024
    """The result cache is bounded by entries and bytes (least recently used out first)."""
    sql_invalidating_kinds: tuple[str, ...] = ("ingest", "agent-insights")
    """A successful run of these kinds rewrote the tenant's gold tables: its cached results are dropped."""
    vector_search_endpoint: str = "apev-vector-search"
    """Vector Search endpoint serving the tenants' document indexes (created when missing, type STANDARD)."""
    embedding_endpoint: str = "apev-local-embeddings"
    """Serving endpoint the indexes embed with: `databricks-gte-large-en` on Databricks, the local workspace's
    deterministic hashed bag-of-words endpoint locally (not semantic beyond shared words)."""
    index_sync_timeout_seconds: float = 180.0
    """How long an index refresh after an ingest run waits for its sync (kept under the 300 s poll interval)."""
    index_poll_seconds: float = 0.2
    reader_token_lifetime_seconds: int = 3600
    """Lifetime of the tenant reader principal's token this service mints (renewed at three quarters)."""

    def concurrency_for(self, tenant_id: str) -> int:
        return self.tenant_concurrency_overrides.get(tenant_id, self.tenant_concurrency)
