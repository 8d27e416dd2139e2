"""Monitor service tables: runs, owners, latency windows, cost samples, alerts, groups, notifications,
attempts, silences, DLQ offsets.

Revision ID: monitor_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "monitor_0001"
down_revision = None
branch_labels = ("monitor",)
depends_on = "runtime_0002"

MONEY = sa.Numeric(38, 18)


def upgrade() -> None:
    op.create_table(
        "monitor_agent_costs",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("agent_id", sa.String(200), primary_key=True),
        sa.Column("usage_date", sa.Date(), primary_key=True),
        sa.Column("dbus", MONEY, nullable=False),
        sa.Column("dollars", MONEY, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "monitor_alert_history",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(100), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_monitor_alert_history_fp", "monitor_alert_history", ["fingerprint", "id"])
    op.create_table(
        "monitor_alerts",
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("rule", sa.String(100), nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("link", sa.Text(), nullable=True),
        sa.Column("active_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_monitor_alerts_rule_state", "monitor_alerts", ["rule", "state"])
    op.create_table(
        "monitor_cost_samples",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("usage_date", sa.Date(), primary_key=True),
        sa.Column("sku", sa.String(128), primary_key=True),
        sa.Column("dbus", MONEY, nullable=False),
        sa.Column("dollars", MONEY, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "monitor_dlq_offsets",
        sa.Column("topic", sa.String(255), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("end_offset", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "monitor_endpoints",
        sa.Column("endpoint_name", sa.String(200), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("agent_id", sa.String(200), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "monitor_groups",
        sa.Column("group_key", sa.String(64), primary_key=True),
        sa.Column("rule", sa.String(100), nullable=False),
        sa.Column("receiver", sa.String(32), nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_firing", sa.JSON, nullable=False),
    )
    op.create_table(
        "monitor_jobs",
        sa.Column("job_id", sa.String(20), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("agent_id", sa.String(200), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "monitor_latency",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("endpoint_name", sa.String(200), nullable=False),
        sa.Column("replica_id", sa.String(200), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("sum_ms", sa.Float(), nullable=False),
        sa.Column("buckets", sa.JSON, nullable=False),
    )
    op.create_index("ix_monitor_latency_endpoint_end", "monitor_latency", ["endpoint_name", "window_end"])
    op.create_table(
        "monitor_notification_attempts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("notification_id", sa.Integer(), nullable=False),
        sa.Column("receiver", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("retry_after", sa.Float(), nullable=True),
    )
    op.create_index("ix_monitor_attempts_notification", "monitor_notification_attempts", ["notification_id"])
    op.create_table(
        "monitor_notifications",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("group_key", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(100), nullable=False),
        sa.Column("receiver", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("dedup_key", sa.String(255), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
    )
    op.create_index("ix_monitor_notifications_status", "monitor_notifications", ["status", "next_attempt_at"])
    op.create_table(
        "monitor_runs",
        sa.Column("run_id", sa.String(20), primary_key=True),
        sa.Column("repair_attempt", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("job_id", sa.String(20), nullable=False),
        sa.Column("job_name", sa.String(400), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("datasource_id", sa.String(200), nullable=True),
        sa.Column("agent_id", sa.String(200), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_page_url", sa.Text(), nullable=True),
    )
    op.create_index("ix_monitor_runs_end", "monitor_runs", ["end_time"])
    op.create_index("ix_monitor_runs_job_end", "monitor_runs", ["job_id", "end_time"])
    op.create_table(
        "monitor_silences",
        sa.Column("silence_id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("matchers", sa.JSON, nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("expired", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("monitor_silences")
    op.drop_table("monitor_runs")
    op.drop_table("monitor_notifications")
    op.drop_table("monitor_notification_attempts")
    op.drop_table("monitor_latency")
    op.drop_table("monitor_jobs")
    op.drop_table("monitor_groups")
    op.drop_table("monitor_endpoints")
    op.drop_table("monitor_dlq_offsets")
    op.drop_table("monitor_cost_samples")
    op.drop_table("monitor_alerts")
    op.drop_table("monitor_alert_history")
    op.drop_table("monitor_agent_costs")
