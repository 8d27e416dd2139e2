"""Serving service tables: agents, model versions, endpoints.

Revision ID: serving_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "serving_0001"
down_revision = None
branch_labels = ("serving",)
depends_on = "runtime_0002"


def upgrade() -> None:
    op.create_table(
        "serving_agents",
        sa.Column("agent_id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False, index=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("model_name", sa.String(400), nullable=False),
        sa.Column("model_source", sa.String(1024), nullable=False),
        sa.Column("tables", sa.JSON, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("chat_endpoint", sa.String(63), nullable=False),
        sa.Column("endpoint_name", sa.String(63), nullable=False, unique=True),
        sa.Column("principal", sa.String(200), nullable=False),
        sa.Column("principal_id", sa.String(64), nullable=True),
        sa.Column("schedule", sa.JSON, nullable=True),
        sa.Column("workload_size", sa.String(16), nullable=False),
        sa.Column("scale_to_zero", sa.Boolean, nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("deploy_request_id", sa.String(64), nullable=True),
        sa.Column("insights_request_id", sa.String(64), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "serving_versions",
        sa.Column("agent_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.String(20), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "serving_endpoints",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False, index=True),
        sa.Column("agent_id", sa.String(64), nullable=True),
        sa.Column("ready", sa.String(16), nullable=True),
        sa.Column("config_update", sa.String(32), nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("served_entities", sa.JSON, nullable=False),
        sa.Column("routes", sa.JSON, nullable=False),
        sa.Column("workload_size", sa.String(16), nullable=False),
        sa.Column("last_scaled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scale_event_id", sa.String(64), nullable=True),
        sa.Column("scale_target", sa.String(16), nullable=True),
        sa.Column("scale_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("serving_endpoints")
    op.drop_table("serving_versions")
    op.drop_table("serving_agents")
