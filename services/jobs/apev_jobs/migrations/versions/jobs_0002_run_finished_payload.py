"""Jobs service: the `run.finished` payload kept with its (run, repair attempt) key, so the runs list can show
each attempt's tasks, state message and run page without asking the workspace again.

Revision ID: jobs_0002
Revises: jobs_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "jobs_0002"
down_revision = "jobs_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs_run_finished") as batch:
        batch.add_column(sa.Column("payload", sa.JSON, nullable=True))
    op.create_index("ix_jobs_runs_tenant_created", "jobs_runs", ["tenant_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_runs_tenant_created", table_name="jobs_runs")
    with op.batch_alter_table("jobs_run_finished") as batch:
        batch.drop_column("payload")
