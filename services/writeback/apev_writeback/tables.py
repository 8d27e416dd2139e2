"""The writeback service's own tables (beside the runtime's inbox and outbox): one row per insight with its
state, every MCP attempt, every decision (policy, HTTP, Slack), and the MCP tenant codes learned from
`datasource.created`."""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

# state: held -> pending (approved) | rejected; pending -> applied | conflict | failed (stays pending on an outage)
insights = Table(
    "writeback_insights",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("insight_id", String(128), primary_key=True),
    Column("event_id", String(200), nullable=False),
    Column("correlation_id", String(256), nullable=True),
    Column("agent_id", String(128), nullable=False),
    Column("target_system", String(32), nullable=False),
    Column("entity_type", String(64), nullable=False),
    Column("entity_id", String(128), nullable=False),
    Column("changes", JSON, nullable=False),
    Column("old_values", JSON, nullable=True),  # the record's values before, read for the approval message
    Column("reason", Text, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("expected_version", String(128), nullable=True),
    Column("policy", String(16), nullable=False),  # auto, hold, reject
    Column("policy_reason", Text, nullable=False),
    Column("state", String(16), nullable=False),  # held, pending, applied, rejected, conflict, failed
    Column("wait_reason", Text, nullable=True),  # why a pending write-back is not sent yet
    Column("decided_via", String(16), nullable=False),  # policy, http, slack
    Column("decided_by", String(200), nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("change_id", String(128), nullable=True),
    Column("version", Integer, nullable=True),
    Column("detail", Text, nullable=True),  # MCP's detail for a conflict or failure
    Column("slack_posted_at", DateTime(timezone=True), nullable=True),
    Column("slack_error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("ix_writeback_insights_state", insights.c.state, insights.c.updated_at)

attempts = Table(
    "writeback_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("insight_id", String(128), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("via", String(16), nullable=False),  # consumer, approval, resume
    Column("idempotency_key", String(128), nullable=False),
    Column("request", JSON, nullable=False),
    Column("status", Integer, nullable=True),  # HTTP status; None: no answer (connection lost, breaker open)
    Column("response", JSON, nullable=True),
    Column("error", Text, nullable=True),
    Column("latency_ms", Float, nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
)
Index("ix_writeback_attempts_insight", attempts.c.tenant_id, attempts.c.insight_id, attempts.c.id)

decisions = Table(
    "writeback_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("insight_id", String(128), nullable=False),
    Column("decision", String(16), nullable=False),  # auto, hold, reject (policy); approve, reject (people)
    Column("via", String(16), nullable=False),  # policy, http, slack
    Column("actor", String(200), nullable=True),
    Column("result", String(32), nullable=False),  # taken, no_change, refused
    Column("detail", Text, nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
)
Index("ix_writeback_decisions_insight", decisions.c.tenant_id, decisions.c.insight_id, decisions.c.id)

tenant_codes = Table(
    "writeback_tenant_codes",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("mcp_tenant_code", String(64), nullable=False),
    Column("datasource_id", String(128), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
