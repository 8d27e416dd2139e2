"""Small shared database helpers of the monitor (portable between PostgreSQL and SQLite)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, and_, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection


async def upsert(tx: AsyncConnection, table: Table, key: dict[str, Any], values: dict[str, Any]) -> None:
    """Update the row with `key`, or insert it. Callers hold the row's writer role (the leader, or the
    consumer of the key's partition), so the two statements do not race."""
    where = and_(*(table.c[k] == v for k, v in key.items()))
    result = await tx.execute(update(table).where(where).values(**values))
    if result.rowcount == 0:
        await tx.execute(insert(table).values(**key, **values))
