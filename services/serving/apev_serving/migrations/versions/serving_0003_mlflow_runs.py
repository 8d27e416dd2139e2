"""Serving service: each agent version's MLflow run (experiment, run id, smoke-test metrics) and why a version
was not rolled out.

Revision ID: serving_0003
Revises: serving_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "serving_0003"
down_revision = "serving_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("serving_versions") as batch:
        batch.add_column(sa.Column("mlflow_run_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("experiment_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("answer_accuracy", sa.Float, nullable=True))
        batch.add_column(sa.Column("latency_p95_ms", sa.Float, nullable=True))
        batch.add_column(sa.Column("reason", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("serving_versions") as batch:
        for name in ("reason", "latency_p95_ms", "answer_accuracy", "experiment_id", "mlflow_run_id"):
            batch.drop_column(name)
