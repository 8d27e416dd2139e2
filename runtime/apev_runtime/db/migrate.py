"""Run Alembic migrations programmatically: the runtime's, plus a service's own version folders.

A service's first migration declares `depends_on = "runtime_0001"` (or a later runtime revision) so
its tables come after the inbox and outbox. Each service has its own version table in its own schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from apev_runtime.db.engine import Database

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
    async with db.engine.begin() as conn:
        await conn.run_sync(run)
