"""A leadership holder asked from several tasks at once (the monitor's evaluate and notify loops share one)
keeps its PostgreSQL advisory lock: the checks take turns on its connection instead of colliding there (asyncpg
refuses a second operation in flight; the failed check used to drop the connection, and with it the lock)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from apev_runtime.db.engine import create_database
from apev_runtime.db.leader import AdvisoryLock

pytestmark = [pytest.mark.postgres]


async def test_a_holder_checked_from_many_tasks_at_once_keeps_its_lock(pg_url: str) -> None:
    schema = f"leader_{uuid.uuid4().hex[:10]}"  # only the lock key: no tables
    db, other = create_database(pg_url, schema), create_database(pg_url, schema)
    mine, theirs = AdvisoryLock(db, "alerting"), AdvisoryLock(other, "alerting")
    try:
        assert await mine.acquire()
        first = mine._conn
        for _ in range(10):
            assert await asyncio.gather(*(mine.acquire() for _ in range(8))) == [True] * 8
        assert mine._conn is first  # never dropped and taken again
        assert not await theirs.acquire()  # so no other replica could take it meanwhile
        await mine.release()
        assert await theirs.acquire()
    finally:
        await mine.release()
        await theirs.release()
        await db.dispose()
        await other.dispose()
