"""The inbox: one row per (consumer, event id), written in the same transaction as the handler's effects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from apev_runtime.db.tables import inbox


class Claim(StrEnum):
    NEW = "new"
    DUPLICATE = "duplicate"  # same id, same content: already processed, skip
    CONFLICT = "conflict"  # same id, different content: a producer bug, dead-letter


@dataclass(frozen=True)
class InboxEntry:
    consumer: str
    event_id: str
    payload_hash: str
    event_type: str
    topic: str
    partition: int
    offset: int


async def claim(conn: AsyncConnection, entry: InboxEntry) -> Claim:
    """Record `entry` unless this consumer has seen the event id; say which case this is.

    Runs inside the handler's transaction: if the handler fails, the row is rolled back with its effects.
    One partition is consumed by one member of a group at a time and an event's key fixes its partition,
    so two members never claim one id at once; the primary key still guards the impossible case.
    """
    seen = (
        await conn.execute(
            select(inbox.c.payload_hash).where(inbox.c.consumer == entry.consumer, inbox.c.event_id == entry.event_id)
        )
    ).scalar_one_or_none()
    if seen is not None:
        return Claim.DUPLICATE if seen == entry.payload_hash else Claim.CONFLICT
    await conn.execute(
        insert(inbox).values(
            consumer=entry.consumer,
            event_id=entry.event_id,
            payload_hash=entry.payload_hash,
            event_type=entry.event_type,
            topic=entry.topic,
            partition=entry.partition,
            offset=entry.offset,
            processed_at=datetime.now(UTC),
        )
    )
    return Claim.NEW


async def prune(conn: AsyncConnection, older_than: timedelta) -> int:
    """Delete inbox rows older than the retention period (longer than any redelivery or replay window)."""
    result = await conn.execute(delete(inbox).where(inbox.c.processed_at < datetime.now(UTC) - older_than))
    return int(result.rowcount or 0)
