"""The serving service's own tables (beside the runtime's inbox and outbox): agents, their model versions, and
the endpoints this service manages (state as last seen, scale-up bookkeeping for the cooldown)."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, DateTime, Float, Integer, MetaData, String, Table, Text

metadata = MetaData()

agents = Table(
    "serving_agents",
    metadata,
    Column("agent_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("model_name", String(400), nullable=False),  # <catalog>.<schema>.<name> in Unity Catalog
    Column("model_source", String(1024), nullable=False),
    Column("tables", JSON, nullable=False),  # ["gold.monthly_kpis", ...]: exactly what its principal may read
    Column("config", JSON, nullable=False),  # what the model reads as APEV_AGENT_CONFIG
    Column("chat_endpoint", String(63), nullable=False),
    Column("endpoint_name", String(63), nullable=False, unique=True),
    Column("principal", String(200), nullable=False),  # agent_<id>
    Column("principal_id", String(64), nullable=True),  # its application id
    Column("schedule", JSON, nullable=True),
    Column("workload_size", String(16), nullable=False),
    Column("scale_to_zero", Boolean, nullable=False),
    Column("state", String(32), nullable=False),  # provisioning, deploying, serving, deploy_failed, failed
    Column("deploy_request_id", String(64), nullable=True),
    Column("insights_request_id", String(64), nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

versions = Table(
    "serving_versions",
    metadata,
    Column("agent_id", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("run_id", String(20), nullable=True),  # the agent-deploy run that registered it
    Column("state", String(16), nullable=False),  # registered, serving, retired, failed, rejected
    Column("mlflow_run_id", String(64), nullable=True),  # the MLflow run the version was registered with
    Column("experiment_id", String(64), nullable=True),  # that run's experiment
    Column("answer_accuracy", Float, nullable=True),  # the run's smoke-test metrics
    Column("latency_p95_ms", Float, nullable=True),
    Column("reason", Text, nullable=True),  # why a version was rejected (not rolled out)
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

endpoints = Table(
    "serving_endpoints",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("tenant_id", String(64), nullable=False, index=True),
    Column("agent_id", String(64), nullable=True),
    Column("ready", String(16), nullable=True),  # READY, NOT_READY
    Column("config_update", String(32), nullable=True),  # NOT_UPDATING, IN_PROGRESS, UPDATE_FAILED, ...
    Column("message", Text, nullable=True),  # the workspace's message of a failed update
    Column("served_entities", JSON, nullable=False),
    Column("routes", JSON, nullable=False),
    Column("workload_size", String(16), nullable=False),
    Column("last_scaled_at", DateTime(timezone=True), nullable=True),
    Column("scale_event_id", String(64), nullable=True),  # the scale request that claimed the last step
    Column("scale_target", String(16), nullable=True),
    Column("scale_count", Integer, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

insights = Table(
    "serving_insights",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("insight_id", String(128), primary_key=True),  # the row's stable id in gold.agent_insights
    Column("agent_id", String(64), nullable=False, index=True),
    Column("event_id", String(64), nullable=False),  # the insight.created it became (ids.insight_id)
    Column("run_id", String(20), nullable=True),  # the insights run that wrote the row
    Column("state", String(16), nullable=False),  # published, invalid (the row does not fit the contract)
    Column("error", Text, nullable=True),
    Column("row_created_at", String(40), nullable=True),  # as the workspace returned it
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

insight_watermarks = Table(
    "serving_insight_watermarks",
    metadata,
    Column("agent_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("created_at", String(40), nullable=False),  # newest `created_at` read (rows at it are read again)
    Column("run_id", String(20), nullable=True),  # the run.finished that moved it
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
