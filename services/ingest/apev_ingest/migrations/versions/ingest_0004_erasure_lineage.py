"""Ingest service: the erasure audit record names the tables the monitor's lineage graph put downstream of the
person's entity (`lineage_tables`; null when the graph was not available) and how the targets were found.

Revision ID: ingest_0004
Revises: ingest_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "ingest_0004"
down_revision = "ingest_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ingest_erasures", sa.Column("lineage_tables", sa.JSON, nullable=True))
    op.add_column("ingest_erasures", sa.Column("lineage_note", sa.String(500), nullable=True))


def downgrade() -> None:
    op.drop_column("ingest_erasures", "lineage_note")
    op.drop_column("ingest_erasures", "lineage_tables")
