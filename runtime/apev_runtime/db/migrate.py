"""Run Alembic migrations programmatically: the runtime's, plus a service's own version folders.

A service's first migration declares `depends_on = "runtime_0001"` (or a later runtime revision) so
its tables come after the inbox and outbox. Each service has its own version table in its own schema.

Replicas (or a replica and the `migrate` job) may upgrade the same schema at the same moment: each upgrade
holds a lock for its whole run, so they go one after the other and the later ones find nothing to do.
PostgreSQL: `pg_advisory_xact_lock` keyed on the schema name, taken first in the migration's transaction and
released by its commit or rollback (a process that dies frees it with its connection). SQLite: an exclusive
`flock` on `<database file>.migrate.lock` next to the file (an in-memory database has no second process).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection

from apev_runtime.db.engine import Database
from apev_runtime.db.leader import advisory_key

RUNTIME_VERSIONS = Path(__file__).parent / "migrations" / "versions"


def _config(connection: Connection, schema: str | None, version_locations: Sequence[Path]) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("version_locations", " ".join(str(p) for p in (RUNTIME_VERSIONS, *version_locations)))
    cfg.set_main_option("path_separator", "space")
    cfg.attributes["connection"] = connection
    cfg.attributes["schema"] = schema
    return cfg


async def upgrade(db: Database, version_locations: Sequence[Path] = (), revision: str = "heads") -> None:
    """Bring the service's schema to `revision` (default: every head)."""

    def run(connection: Connection) -> None:
        command.upgrade(_config(connection, db.schema, version_locations), revision)

    # The raw engine (no schema map): env.py creates the schema first, then maps to it.
    async with _file_lock(db), db.engine.begin() as conn:
        if db.dialect == "postgresql":  # before CREATE SCHEMA: concurrent upgrades would race on it
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": migration_lock_key(db.schema)})
        await conn.run_sync(run)


def migration_lock_key(schema: str | None) -> int:
    """The advisory lock an upgrade of `schema` holds (distinct from every other schema's and role's)."""
    return advisory_key("migrate", schema)


@contextlib.asynccontextmanager
async def _file_lock(db: Database) -> AsyncIterator[None]:
    """SQLite: one upgrade of a database file at a time, across processes. Anything else: nothing to do."""
    path = db.engine.url.database if db.dialect == "sqlite" else None
    if not path or path == ":memory:" or path.startswith("file:"):
        yield
        return
    fd = os.open(f"{path}.migrate.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
