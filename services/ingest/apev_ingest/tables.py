"""The ingest service's own tables (beside the runtime's inbox and outbox)."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, DateTime, Float, Index, MetaData, String, Table, Text, false

metadata = MetaData()

datasources = Table(
    "ingest_datasources",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("datasource_id", String(100), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("system", String(32), nullable=False),
    Column("entities", JSON, nullable=False),
    Column("mcp_tenant_code", String(64), nullable=True),  # as MCP spells it, once matched
    Column("state", String(32), nullable=False),  # accepted, provisioned, registered, job_requested, first_run_finished
    Column("integration_id", String(100), nullable=True),
    Column("job_name", String(400), nullable=False),
    Column("event_id", String(200), nullable=False),  # the datasource.created that created it
    Column("last_run_id", String(20), nullable=True),
    Column("last_run_outcome", String(16), nullable=True),
    Column("last_run_page_url", Text, nullable=True),
    Column("last_run_end", DateTime(timezone=True), nullable=True),
    Column("last_success_at", DateTime(timezone=True), nullable=True),  # freshness: gold as of this run's end
    Column("last_sync_completed_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("ix_ingest_datasources_code", datasources.c.mcp_tenant_code)

steps = Table(
    "ingest_steps",
    metadata,
    # scope: `tenant:<t>` for what the tenant's data sources share, `ds:<t>:<data source>` for the rest
    Column("scope", String(200), primary_key=True),
    Column("step", String(64), primary_key=True),
    Column("detail", JSON, nullable=False),
    Column("duration_seconds", Float, nullable=False),
    Column("done_at", DateTime(timezone=True), nullable=False),
)

files = Table(
    "ingest_files",
    metadata,
    Column("path", String(1000), primary_key=True),
    Column("sha256", String(64), nullable=False),
    Column("uploaded_at", DateTime(timezone=True), nullable=False),
)

pending_runs = Table(
    "ingest_pending_runs",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("datasource_id", String(100), primary_key=True),
    Column("request_id", String(200), nullable=False),  # the job.requested event id
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("cause", String(32), nullable=False),  # first_sync, data_changed, changed_while_pending
    # a data.changed arrived while this run was pending: it may have fetched before the change, so its
    # run.finished requests one more run (still at most one pending)
    Column("dirty", Boolean, nullable=False, server_default=false()),
)

webhooks = Table(
    "ingest_webhooks",
    metadata,
    Column("delivery_id", String(200), primary_key=True),  # MCP's event id, the same on every retry
    Column("type", String(64), nullable=False),
    Column("tenant_code", String(64), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("body", JSON, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

erasures = Table(
    "ingest_erasures",
    metadata,
    Column("request_id", String(200), primary_key=True),  # the erasure.requested event id
    Column("tenant_id", String(64), nullable=False),
    # sha256 of (tenant, employee id): finds a person's requests again without keeping the id itself
    Column("subject_hash", String(64), nullable=False),
    Column("requested_by", String(200), nullable=True),
    Column("state", String(16), nullable=False),  # requested (HTTP), erasing, verified
    Column("counts", JSON, nullable=False),  # table -> rows deleted by this request
    Column("files_deleted", JSON, nullable=False),  # landing file paths deleted (paths carry no personal data)
    Column("remaining", JSON, nullable=True),  # the follow-up check: table -> rows left, "landing_files" -> files
    # the tables the monitor's lineage graph names downstream of the person's entity (null: graph not available)
    Column("lineage_tables", JSON, nullable=True),
    Column("lineage_note", String(500), nullable=True),  # how the targets were found (lineage and scan, or scan only)
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("verified_at", DateTime(timezone=True), nullable=True),
)
Index("ix_ingest_erasures_tenant", erasures.c.tenant_id, erasures.c.created_at)

rotations = Table(
    "ingest_rotations",
    metadata,
    Column("request_id", String(200), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    # mcp_api_key (the pipeline's MCP key) or sp_secret (the pipeline principal's Databricks OAuth secret)
    Column("kind", String(16), nullable=False, server_default="mcp_api_key"),
    Column("cause", String(16), nullable=False),  # http, age
    # requested -> stored (new key in the secret scope) -> done (old keys revoked after the grace period)
    Column("state", String(16), nullable=False),
    Column("new_key_id", String(64), nullable=True),
    Column("old_key_ids", JSON, nullable=False),
    Column("retire_after", DateTime(timezone=True), nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("ix_ingest_rotations_state", rotations.c.state, rotations.c.retire_after)
