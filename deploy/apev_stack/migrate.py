"""Every service's database migrations, run once before the services start (compose's `migrate`, the
Kubernetes `apev-migrate` Job).

Each service also upgrades its schema when it starts; run first, that finds nothing to do, so replicas of a
rolling deploy never race to create the same tables. A service's settings say where its tables live
(`<SERVICE>_DATABASE_URL`, `<SERVICE>_DATABASE_SCHEMA`), exactly as the service itself reads them.
"""

from __future__ import annotations

import importlib
from importlib import resources
from pathlib import Path

SERVICES = ("ingest", "jobs", "serving", "writeback", "monitor")


def migrations_of(service: str) -> list[Path]:
    """The service's own Alembic version folder (`apev_<service>/migrations/versions`), if it has one."""
    folder = resources.files(f"apev_{service}") / "migrations" / "versions"
    return [Path(str(folder))] if folder.is_dir() else []


async def migrate(services: tuple[str, ...] | list[str] = SERVICES) -> dict[str, str]:
    """Upgrade each service's schema to its heads; returns where each went (URL without password)."""
    from apev_runtime.db import migrate as alembic
    from apev_runtime.db.engine import create_database

    unknown = [s for s in services if s not in SERVICES]
    if unknown:
        raise ValueError(f"unknown services {unknown}; expected some of {list(SERVICES)}")
    done: dict[str, str] = {}
    for service in services:
        settings = importlib.import_module(f"apev_{service}.settings").Settings()
        db = create_database(settings.resolved_database_url(), settings.database_schema)
        try:
            await alembic.upgrade(db, migrations_of(service))
        finally:
            await db.dispose()
        url = db.engine.url.render_as_string(hide_password=True)
        done[service] = url + (f" (schema {settings.database_schema})" if settings.database_schema else "")
    return done
