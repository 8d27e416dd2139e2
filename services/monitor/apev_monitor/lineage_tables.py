"""The lineage store's tables (migration `monitor_lineage_0001`)."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, DateTime, MetaData, String, Table, false

metadata = MetaData()

events = Table(
    "monitor_lineage_events",
    metadata,
    Column("run_id", String(36), primary_key=True),  # the OpenLineage run id
    Column("event_type", String(16), primary_key=True),  # START, COMPLETE, FAIL, ABORT
    Column("tenant_id", String(64), nullable=False),
    Column("job_namespace", String(1000), nullable=False),
    Column("job_name", String(1000), nullable=False),
    Column("event_time", String(64), nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("body", JSON, nullable=False),  # the OpenLineage RunEvent as received
    Column("received_at", DateTime(timezone=True), nullable=False),
)

nodes = Table(
    "monitor_lineage_nodes",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("node_id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # dataset, run, job
    Column("namespace", String(1000), nullable=False),
    Column("name", String(1000), nullable=False),
    Column("parent", Boolean, nullable=False, server_default=false()),  # a run other runs name as their parent
)

edges = Table(
    "monitor_lineage_edges",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("src", String(64), primary_key=True),
    Column("dst", String(64), primary_key=True),
    Column("via", String(8), nullable=False),  # io, job, parent
)
