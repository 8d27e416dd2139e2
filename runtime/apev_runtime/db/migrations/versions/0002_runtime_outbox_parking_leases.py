"""Outbox rows that can never be sent are parked; leases keep one outbox relay per database.

Revision ID: runtime_0002
Revises: runtime_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "runtime_0002"
down_revision = "runtime_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("apev_outbox", sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "apev_leases",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("apev_leases")
    op.drop_column("apev_outbox", "parked_at")
