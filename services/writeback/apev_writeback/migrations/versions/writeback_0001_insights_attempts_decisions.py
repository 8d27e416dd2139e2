"""Writeback service tables: insights, attempts, decisions, MCP tenant codes.

Revision ID: writeback_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "writeback_0001"
down_revision = None
branch_labels = ("writeback",)
depends_on = "runtime_0001"


def upgrade() -> None:
    op.create_table(
        "writeback_insights",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("insight_id", sa.String(128), primary_key=True),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("correlation_id", sa.String(256), nullable=True),
        sa.Column("agent_id", sa.String(128), nullable=False),
        sa.Column("target_system", sa.String(32), nullable=False),
        sa.Column("entity_type", sa.String(64), nullable=False),
        sa.Column("entity_id", sa.String(128), nullable=False),
        sa.Column("changes", sa.JSON, nullable=False),
        sa.Column("old_values", sa.JSON, nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("expected_version", sa.String(128), nullable=True),
        sa.Column("policy", sa.String(16), nullable=False),
        sa.Column("policy_reason", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("wait_reason", sa.Text, nullable=True),
        sa.Column("decided_via", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("change_id", sa.String(128), nullable=True),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("slack_posted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("slack_error", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_writeback_insights_state", "writeback_insights", ["state", "updated_at"])
    op.create_table(
        "writeback_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("insight_id", sa.String(128), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("request", sa.JSON, nullable=False),
        sa.Column("status", sa.Integer, nullable=True),
        sa.Column("response", sa.JSON, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_writeback_attempts_insight", "writeback_attempts", ["tenant_id", "insight_id", "id"])
    op.create_table(
        "writeback_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("insight_id", sa.String(128), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(200), nullable=True),
        sa.Column("result", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_writeback_decisions_insight", "writeback_decisions", ["tenant_id", "insight_id", "id"])
    op.create_table(
        "writeback_tenant_codes",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("mcp_tenant_code", sa.String(64), nullable=False),
        sa.Column("datasource_id", sa.String(128), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("writeback_tenant_codes")
    op.drop_table("writeback_decisions")
    op.drop_table("writeback_attempts")
    op.drop_table("writeback_insights")
