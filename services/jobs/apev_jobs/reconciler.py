"""The reconciler loop: one replica at a time (a PostgreSQL advisory lock; trivially one on SQLite)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator

import structlog
from sqlalchemy import text

from apev_jobs.service import JobsService
from apev_runtime.db.engine import Database

log = structlog.get_logger("apev.jobs.reconciler")


def lock_key(schema: str | None) -> int:
    """A signed 64-bit advisory lock key per service schema (test schemas never block each other)."""
    digest = hashlib.sha256(f"apev-jobs-reconciler:{schema or ''}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.asynccontextmanager
async def single_replica(db: Database) -> AsyncIterator[bool]:
    """Yields whether this replica holds the lock for this pass. A session-level advisory lock on its own
    connection: no write lock, no transaction held across the pass's Databricks calls."""
    if db.dialect != "postgresql":
        yield True
        return
    key = lock_key(db.schema)
    async with db.engine.connect() as conn:
        held = bool(await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}))
        await conn.commit()
        try:
            yield held
        finally:
            if held:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                await conn.commit()


async def run(service: JobsService, db: Database, interval: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
        if stop.is_set():
            return
        try:
            async with single_replica(db) as held:
                service.metrics.reconciler_passes.labels(str(held).lower()).inc()
                if held:
                    counts = await service.reconcile()
                    if counts["recovered"] or counts["timed_out"]:
                        log.info("reconciled", **counts)
        except Exception:
            log.warning("reconcile_failed", exc_info=True)
