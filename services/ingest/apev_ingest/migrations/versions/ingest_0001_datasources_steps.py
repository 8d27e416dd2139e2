"""Ingest service tables: data sources, provisioning steps, uploaded files, pending runs, MCP webhooks.

Revision ID: ingest_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "ingest_0001"
down_revision = None
branch_labels = ("ingest",)
depends_on = "runtime_0002"


def upgrade() -> None:
    op.create_table(
        "ingest_datasources",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("datasource_id", sa.String(100), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("system", sa.String(32), nullable=False),
        sa.Column("entities", sa.JSON, nullable=False),
        sa.Column("mcp_tenant_code", sa.String(64), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("integration_id", sa.String(100), nullable=True),
        sa.Column("job_name", sa.String(400), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("last_run_id", sa.String(20), nullable=True),
        sa.Column("last_run_outcome", sa.String(16), nullable=True),
        sa.Column("last_run_page_url", sa.Text, nullable=True),
        sa.Column("last_run_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_sync_completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ingest_datasources_code", "ingest_datasources", ["mcp_tenant_code"])
    op.create_table(
        "ingest_steps",
        sa.Column("scope", sa.String(200), primary_key=True),
        sa.Column("step", sa.String(64), primary_key=True),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("duration_seconds", sa.Float, nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ingest_files",
        sa.Column("path", sa.String(1000), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ingest_pending_runs",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("datasource_id", sa.String(100), primary_key=True),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cause", sa.String(32), nullable=False),
        sa.Column("dirty", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "ingest_webhooks",
        sa.Column("delivery_id", sa.String(200), primary_key=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("tenant_code", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ingest_webhooks")
    op.drop_table("ingest_pending_runs")
    op.drop_table("ingest_files")
    op.drop_table("ingest_steps")
    op.drop_index("ix_ingest_datasources_code", "ingest_datasources")
    op.drop_table("ingest_datasources")
