"""Ingest service: rotations of more than the MCP key (the pipeline principal's Databricks OAuth secret too).

Revision ID: ingest_0003
Revises: ingest_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "ingest_0003"
down_revision = "ingest_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ingest_rotations", sa.Column("kind", sa.String(16), nullable=False, server_default="mcp_api_key"))


def downgrade() -> None:
    op.drop_column("ingest_rotations", "kind")
