"""Inbox and outbox rows are pruned after their retention period, and only then."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select, update

from apev_runtime import outbox
from apev_runtime.db import migrate
from apev_runtime.db.engine import create_database
from apev_runtime.db.tables import inbox as inbox_table
from apev_runtime.db.tables import outbox as outbox_table
from apev_runtime.delivery import inbox
from apev_runtime.testing import job_event

pytestmark = [pytest.mark.postgres]


async def test_prune_drops_only_rows_past_retention(pg_url: str) -> None:
    db = create_database(pg_url, "retention_test")
    await migrate.upgrade(db)
    now = datetime.now(UTC)
    try:
        async with db.transaction() as tx:
            for i, age in enumerate([timedelta(days=30), timedelta(hours=1)]):
                await tx.execute(
                    insert(inbox_table).values(
                        consumer="c",
                        event_id=f"e{i}",
                        payload_hash="h",
                        event_type="t",
                        topic="x",
                        partition=0,
                        offset=i,
                        processed_at=now - age,
                    )
                )
            old, fresh, unpublished = job_event(), job_event(), job_event()
            for e in (old, fresh, unpublished):
                await outbox.add(tx, e)
            await tx.execute(
                update(outbox_table)
                .where(outbox_table.c.event_id == old.id)
                .values(published_at=now - timedelta(days=10))
            )
            await tx.execute(update(outbox_table).where(outbox_table.c.event_id == fresh.id).values(published_at=now))
        async with db.transaction() as tx:
            assert await inbox.prune(tx, timedelta(days=14)) == 1
        assert await outbox.prune(db, timedelta(days=7)) == 1
        async with db.engine.connect() as conn:
            assert (await conn.execute(select(inbox_table.c.event_id))).scalars().all() == ["e1"]
            left = set((await conn.execute(select(outbox_table.c.event_id))).scalars())
            assert left == {fresh.id, unpublished.id}  # never an unpublished row, however old
            assert (await conn.execute(select(func.count()).select_from(outbox_table))).scalar_one() == 2
    finally:
        await db.dispose()
