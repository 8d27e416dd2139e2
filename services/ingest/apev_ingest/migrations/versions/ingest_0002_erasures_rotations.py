"""Ingest service: the GDPR erasure audit record (counts per table, never the personal data) and MCP key
rotations.

Revision ID: ingest_0002
Revises: ingest_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "ingest_0002"
down_revision = "ingest_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingest_erasures",
        sa.Column("request_id", sa.String(200), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("subject_hash", sa.String(64), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("counts", sa.JSON, nullable=False),
        sa.Column("files_deleted", sa.JSON, nullable=False),
        sa.Column("remaining", sa.JSON, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_ingest_erasures_tenant", "ingest_erasures", ["tenant_id", "created_at"])
    op.create_table(
        "ingest_rotations",
        sa.Column("request_id", sa.String(200), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("cause", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("new_key_id", sa.String(64), nullable=True),
        sa.Column("old_key_ids", sa.JSON, nullable=False),
        sa.Column("retire_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ingest_rotations_state", "ingest_rotations", ["state", "retire_after"])


def downgrade() -> None:
    op.drop_index("ix_ingest_rotations_state", "ingest_rotations")
    op.drop_table("ingest_rotations")
    op.drop_index("ix_ingest_erasures_tenant", "ingest_erasures")
    op.drop_table("ingest_erasures")
