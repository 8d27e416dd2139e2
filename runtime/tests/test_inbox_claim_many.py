"""The inbox's batch claim on both databases: new ids, redeliveries (same content) and reused ids (other content)
told apart in one statement, and rows written only for the new ones."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from apev_runtime.db import migrate
from apev_runtime.db.engine import Database, create_database
from apev_runtime.db.tables import inbox as inbox_table
from apev_runtime.delivery import inbox

pytestmark = [pytest.mark.postgres]


def _entry(event_id: str, payload_hash: str, offset: int) -> inbox.InboxEntry:
    return inbox.InboxEntry(
        consumer="c",
        event_id=event_id,
        payload_hash=payload_hash,
        event_type="job.requested",
        topic="t.job.requested",
        partition=offset % 3,
        offset=offset,
    )


@pytest.fixture(params=["postgres", "sqlite"])
async def db(request: pytest.FixtureRequest, pg_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    schema = f"claim_{uuid.uuid4().hex[:8]}"
    database: Database = (
        create_database(pg_url, schema)
        if request.param == "postgres"
        else create_database(f"sqlite+aiosqlite:///{tmp_path / 'claims.db'}")
    )
    await migrate.upgrade(database)
    try:
        yield database
    finally:
        if request.param == "postgres":
            async with database.transaction() as tx:
                await tx.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await database.dispose()


async def test_claim_many_tells_new_duplicate_and_conflict_apart(db: Database) -> None:
    first = [_entry(f"e{i}", f"h{i}", i) for i in range(300)]
    async with db.transaction() as tx:
        claims = await inbox.claim_many(tx, first)
    assert set(claims.values()) == {inbox.Claim.NEW} and len(claims) == 300

    again = [
        _entry("e1", "h1", 1000),  # a redelivery: same id, same content
        _entry("e2", "other", 1001),  # a reused id: same id, other content
        _entry("e300", "h300", 1002),  # new
        _entry("e301", "h301", 1003),  # new
    ]
    async with db.transaction() as tx:
        claims = await inbox.claim_many(tx, again)
    assert claims == {
        "e1": inbox.Claim.DUPLICATE,
        "e2": inbox.Claim.CONFLICT,
        "e300": inbox.Claim.NEW,
        "e301": inbox.Claim.NEW,
    }
    async with db.transaction() as tx:
        assert await inbox.claim_many(tx, [_entry("e302", "h302", 1004)]) == {"e302": inbox.Claim.NEW}
        assert await inbox.claim(tx, _entry("e302", "h302", 1004)) is inbox.Claim.DUPLICATE  # same transaction

    async with db.engine.connect() as conn:
        rows = dict((await conn.execute(select(inbox_table.c.event_id, inbox_table.c.payload_hash))).all())
        offsets = dict((await conn.execute(select(inbox_table.c.event_id, inbox_table.c.offset))).all())
    assert len(rows) == 303
    assert rows["e2"] == "h2" and offsets["e2"] == 2  # the first content stays; the conflict wrote nothing
    assert offsets["e1"] == 1 and offsets["e300"] == 1002
    async with db.engine.connect() as conn:
        stamps = (await conn.execute(select(inbox_table.c.processed_at))).scalars().all()
    assert all(abs((datetime.now(UTC) - s.replace(tzinfo=s.tzinfo or UTC)).total_seconds()) < 120 for s in stamps)
    async with db.transaction() as tx:  # stored as the column type stores it: retention compares it right
        assert await inbox.prune(tx, timedelta(days=14)) == 0
        assert await inbox.prune(tx, timedelta(minutes=-5)) == 303


async def test_a_rolled_back_claim_leaves_the_ids_new(db: Database) -> None:
    entries = [_entry(f"r{i}", "h", i) for i in range(5)]
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            assert set((await inbox.claim_many(tx, entries)).values()) == {inbox.Claim.NEW}
            raise RuntimeError("the handler failed")
    async with db.transaction() as tx:
        assert set((await inbox.claim_many(tx, entries)).values()) == {inbox.Claim.NEW}
