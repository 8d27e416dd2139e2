"""The jobs service's own tables (beside the runtime's inbox and outbox): jobs, requests, runs and the
once-per-(run, repair attempt) key that makes `run.finished` exactly-once across replicas."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, DateTime, Index, Integer, MetaData, String, Table, Text, false

metadata = MetaData()

jobs = Table(
    "jobs_jobs",
    metadata,
    Column("job_name", String(400), primary_key=True),  # ap:<tenant>:<kind>:<key>
    Column("tenant_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("key", String(100), nullable=False),
    Column("job_id", String(20), nullable=False, unique=True),
    Column("spec_hash", String(64), nullable=True),  # of the spec as requested, not of what this service adds
    Column("tags", JSON, nullable=False),
    Column("timeout_seconds", Integer, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

requests = Table(
    "jobs_requests",
    metadata,
    Column("request_id", String(200), primary_key=True),  # the job.requested event id
    Column("tenant_id", String(64), nullable=False),
    Column("job_name", String(400), nullable=False),
    Column("action", String(16), nullable=True),  # run, cancel, repair, or None (spec only)
    Column("state", String(16), nullable=False),  # accepted, recorded, done, failed
    Column("job_id", String(20), nullable=True),
    Column("run_id", String(20), nullable=True),
    Column("idempotency_token", String(64), nullable=True),
    Column("repairs_before", Integer, nullable=True),  # repair: repairs the run had when it was recorded
    Column("job_written", String(16), nullable=True),  # created, reset, unchanged
    Column("error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

runs = Table(
    "jobs_runs",
    metadata,
    Column("run_id", String(20), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("job_id", String(20), nullable=False),
    Column("job_name", String(400), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("key", String(100), nullable=False),
    Column("request_id", String(200), nullable=True),
    Column("correlation_id", String(256), nullable=True),
    Column("tags", JSON, nullable=False),
    Column("job_parameters", JSON, nullable=False),
    Column("active", Boolean, nullable=False),  # False once the latest attempt's run.finished is queued
    Column("repairs", Integer, nullable=False, server_default="0"),  # repair attempts started
    Column("latest_repair_id", String(20), nullable=True),
    Column("auto_repaired", Boolean, nullable=False, server_default=false()),
    Column("deadline", DateTime(timezone=True), nullable=True),  # the service's own timeout
    Column("timed_out", Boolean, nullable=False, server_default=false()),
    Column("notified_at", DateTime(timezone=True), nullable=True),  # a completion webhook arrived
    Column("life_cycle_state", String(64), nullable=True),
    Column("result_state", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("ix_jobs_runs_job", runs.c.job_id, runs.c.run_id)
Index("ix_jobs_runs_active", runs.c.active)
Index("ix_jobs_runs_tenant_created", runs.c.tenant_id, runs.c.created_at)

finished = Table(
    "jobs_run_finished",
    metadata,
    Column("run_id", String(20), primary_key=True),
    Column("repair_attempt", Integer, primary_key=True),
    Column("event_id", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("via", String(16), nullable=False),  # webhook, reconciler, timeout
    Column("end_time", DateTime(timezone=True), nullable=False),
    Column("queued_at", DateTime(timezone=True), nullable=False),
    Column("payload", JSON, nullable=True),  # the run.finished data (tasks, state, run page); jobs_0002
)

destination = Table(
    "jobs_destination",
    metadata,
    Column("display_name", String(200), primary_key=True),
    Column("destination_id", String(64), nullable=False),
    Column("config_hash", String(64), nullable=False),  # of url + username + password: update only on change
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
