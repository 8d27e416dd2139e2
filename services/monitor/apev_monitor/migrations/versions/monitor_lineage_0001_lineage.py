"""Monitor's lineage store: the OpenLineage run events it received, and the graph they draw (a branch of its own,
so it migrates beside the monitor's other tables whatever revisions they gain).

Revision ID: monitor_lineage_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "monitor_lineage_0001"
down_revision = None
branch_labels = ("monitor_lineage",)
depends_on = "runtime_0002"


def upgrade() -> None:
    op.create_table(
        "monitor_lineage_events",
        sa.Column("run_id", sa.String(36), primary_key=True),
        sa.Column("event_type", sa.String(16), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("job_namespace", sa.String(1000), nullable=False),
        sa.Column("job_name", sa.String(1000), nullable=False),
        sa.Column("event_time", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_monitor_lineage_events_tenant", "monitor_lineage_events", ["tenant_id"])
    op.create_table(
        "monitor_lineage_nodes",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("node_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("namespace", sa.String(1000), nullable=False),
        sa.Column("name", sa.String(1000), nullable=False),
        sa.Column("parent", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "monitor_lineage_edges",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("src", sa.String(64), primary_key=True),
        sa.Column("dst", sa.String(64), primary_key=True),
        sa.Column("via", sa.String(8), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("monitor_lineage_edges")
    op.drop_table("monitor_lineage_nodes")
    op.drop_index("ix_monitor_lineage_events_tenant", "monitor_lineage_events")
    op.drop_table("monitor_lineage_events")
