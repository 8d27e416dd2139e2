"""Jobs service tables: jobs, requests, runs, run.finished keys.

Revision ID: jobs_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "jobs_0001"
down_revision = None
branch_labels = ("jobs",)
depends_on = "runtime_0001"


def upgrade() -> None:
    op.create_table(
        "jobs_jobs",
        sa.Column("job_name", sa.String(400), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("job_id", sa.String(20), nullable=False, unique=True),
        sa.Column("spec_hash", sa.String(64), nullable=True),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("timeout_seconds", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "jobs_requests",
        sa.Column("request_id", sa.String(200), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("job_name", sa.String(400), nullable=False),
        sa.Column("action", sa.String(16), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("job_id", sa.String(20), nullable=True),
        sa.Column("run_id", sa.String(20), nullable=True),
        sa.Column("idempotency_token", sa.String(64), nullable=True),
        sa.Column("repairs_before", sa.Integer, nullable=True),
        sa.Column("job_written", sa.String(16), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "jobs_runs",
        sa.Column("run_id", sa.String(20), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("job_id", sa.String(20), nullable=False),
        sa.Column("job_name", sa.String(400), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=True),
        sa.Column("correlation_id", sa.String(256), nullable=True),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("job_parameters", sa.JSON, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("repairs", sa.Integer, nullable=False, server_default="0"),
        sa.Column("latest_repair_id", sa.String(20), nullable=True),
        sa.Column("auto_repaired", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("timed_out", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("life_cycle_state", sa.String(64), nullable=True),
        sa.Column("result_state", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_jobs_runs_job", "jobs_runs", ["job_id", "run_id"])
    op.create_index("ix_jobs_runs_active", "jobs_runs", ["active"])
    op.create_table(
        "jobs_run_finished",
        sa.Column("run_id", sa.String(20), primary_key=True),
        sa.Column("repair_attempt", sa.Integer, primary_key=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "jobs_destination",
        sa.Column("display_name", sa.String(200), primary_key=True),
        sa.Column("destination_id", sa.String(64), nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("jobs_destination")
    op.drop_table("jobs_run_finished")
    op.drop_table("jobs_runs")
    op.drop_table("jobs_requests")
    op.drop_table("jobs_jobs")
