"""Runtime tables: inbox (consumer de-duplication) and outbox (transactional publishing).

Revision ID: runtime_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "runtime_0001"
down_revision = None
branch_labels = ("runtime",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "apev_inbox",
        sa.Column("consumer", sa.String(200), primary_key=True),
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("payload_hash", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("topic", sa.String(249), nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_apev_inbox_processed_at", "apev_inbox", ["processed_at"])
    op.create_table(
        "apev_outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(200), nullable=False, unique=True),
        sa.Column("topic", sa.String(249), nullable=False),
        sa.Column("key", sa.LargeBinary, nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sending_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_index("ix_apev_outbox_unpublished", "apev_outbox", ["published_at", "id"])


def downgrade() -> None:
    op.drop_table("apev_outbox")
    op.drop_table("apev_inbox")
