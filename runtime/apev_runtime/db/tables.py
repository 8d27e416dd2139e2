"""The tables the runtime owns in every service's database: the inbox, the outbox and leases.

Declared without a schema; on PostgreSQL each service's engine maps them to its own schema
(`schema_translate_map`), so one database can hold a schema per service (§8 Databases).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

inbox = Table(
    "apev_inbox",
    metadata,
    Column("consumer", String(200), primary_key=True),
    Column("event_id", String(200), primary_key=True),
    Column("payload_hash", String(64), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("topic", String(249), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False),
)
Index("ix_apev_inbox_processed_at", inbox.c.processed_at)

outbox = Table(
    "apev_outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", String(200), nullable=False, unique=True),
    Column("topic", String(249), nullable=False),
    Column("key", LargeBinary, nullable=False),
    Column("value", LargeBinary, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sending_at", DateTime(timezone=True), nullable=True),
    Column("published_at", DateTime(timezone=True), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Column("parked_at", DateTime(timezone=True), nullable=True),
)
Index("ix_apev_outbox_unpublished", outbox.c.published_at, outbox.c.id)

leases = Table(
    "apev_leases",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
"""Who holds a named role (the outbox relay on SQLite) until when; PostgreSQL uses advisory locks instead."""
