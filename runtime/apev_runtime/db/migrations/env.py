"""Alembic environment, driven by `apev_runtime.db.migrate.upgrade` (never by alembic.ini)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

config = context.config
connection: Connection = config.attributes["connection"]
schema: str | None = config.attributes.get("schema")

if schema:
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    connection = connection.execution_options(schema_translate_map={None: schema})

context.configure(
    connection=connection,
    target_metadata=None,
    version_table_schema=schema,
    include_schemas=bool(schema),
)
with context.begin_transaction():
    context.run_migrations()
