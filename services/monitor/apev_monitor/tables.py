"""The monitor service's own tables (beside the runtime's inbox and outbox): what it learned from events
(runs, job and endpoint owners, latency windows, cost samples), alert states and their history, notification
groups, notifications with every delivery attempt, silences and DLQ offset snapshots."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
)

metadata = MetaData()
MONEY = Numeric(38, 18)

runs = Table(
    "monitor_runs",
    metadata,
    Column("run_id", String(20), primary_key=True),
    Column("repair_attempt", Integer, primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("job_id", String(20), nullable=False),
    Column("job_name", String(400), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("datasource_id", String(200), nullable=True),
    Column("agent_id", String(200), nullable=True),
    Column("outcome", String(16), nullable=False),
    Column("start_time", DateTime(timezone=True), nullable=False),
    Column("end_time", DateTime(timezone=True), nullable=False),
    Column("run_page_url", Text, nullable=True),
)
Index("ix_monitor_runs_job_end", runs.c.job_id, runs.c.end_time)
Index("ix_monitor_runs_end", runs.c.end_time)

jobs = Table(
    "monitor_jobs",
    metadata,
    Column("job_id", String(20), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("agent_id", String(200), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

endpoints = Table(
    "monitor_endpoints",
    metadata,
    Column("endpoint_name", String(200), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("agent_id", String(200), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

latency = Table(
    "monitor_latency",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("endpoint_name", String(200), nullable=False),
    Column("replica_id", String(200), nullable=False),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("window_end", DateTime(timezone=True), nullable=False),
    Column("count", Integer, nullable=False),
    Column("sum_ms", Float, nullable=False),
    Column("buckets", JSON, nullable=False),
)
Index("ix_monitor_latency_endpoint_end", latency.c.endpoint_name, latency.c.window_end)

cost_samples = Table(
    "monitor_cost_samples",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("usage_date", Date, primary_key=True),
    Column("sku", String(128), primary_key=True),
    Column("dbus", MONEY, nullable=False),
    Column("dollars", MONEY, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("window_end", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

agent_costs = Table(
    "monitor_agent_costs",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("agent_id", String(200), primary_key=True),
    Column("usage_date", Date, primary_key=True),
    Column("dbus", MONEY, nullable=False),
    Column("dollars", MONEY, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

alerts = Table(
    "monitor_alerts",
    metadata,
    Column("fingerprint", String(64), primary_key=True),  # sha256 of rule + sorted labels
    Column("rule", String(100), nullable=False),
    Column("labels", JSON, nullable=False),
    Column("tenant_id", String(64), nullable=True),
    Column("state", String(16), nullable=False),  # pending, firing, resolved, inactive
    Column("value", Text, nullable=True),
    Column("summary", Text, nullable=False),
    Column("link", Text, nullable=True),
    Column("active_since", DateTime(timezone=True), nullable=True),
    Column("fired_at", DateTime(timezone=True), nullable=True),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("ix_monitor_alerts_rule_state", alerts.c.rule, alerts.c.state)

alert_history = Table(
    "monitor_alert_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("fingerprint", String(64), nullable=False),
    Column("rule", String(100), nullable=False),
    Column("state", String(16), nullable=False),
    Column("value", Text, nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
)
Index("ix_monitor_alert_history_fp", alert_history.c.fingerprint, alert_history.c.id)

groups = Table(
    "monitor_groups",
    metadata,
    Column("group_key", String(64), primary_key=True),  # sha256 of rule + receiver + group labels
    Column("rule", String(100), nullable=False),
    Column("receiver", String(32), nullable=False),
    Column("labels", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_sent_at", DateTime(timezone=True), nullable=True),
    Column("last_firing", JSON, nullable=False),  # fingerprints in the last notification
)

notifications = Table(
    "monitor_notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("group_key", String(64), nullable=False),
    Column("rule", String(100), nullable=False),
    Column("receiver", String(32), nullable=False),
    Column("kind", String(16), nullable=False),  # firing, resolved
    Column("dedup_key", String(255), nullable=False),
    Column("payload", JSON, nullable=False),  # what the receiver needs to render: summary, alerts, labels, link
    Column("status", String(16), nullable=False),  # pending, delivered, failed, expired, unconfirmed
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
)
Index("ix_monitor_notifications_status", notifications.c.status, notifications.c.next_attempt_at)

attempts = Table(
    "monitor_notification_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("notification_id", Integer, nullable=False),
    Column("receiver", String(32), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("outcome", String(16), nullable=False),  # delivered, retry, failed, unconfirmed
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("retry_after", Float, nullable=True),
)
Index("ix_monitor_attempts_notification", attempts.c.notification_id)

silences = Table(
    "monitor_silences",
    metadata,
    Column("silence_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("matchers", JSON, nullable=False),  # {label: value}, all must equal
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Column("ends_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("comment", Text, nullable=False),
    Column("expired", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

dlq_offsets = Table(
    "monitor_dlq_offsets",
    metadata,
    Column("topic", String(255), primary_key=True),
    Column("at", DateTime(timezone=True), primary_key=True),
    Column("end_offset", BigInteger, nullable=False),  # sum over partitions
)
