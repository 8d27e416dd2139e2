"""The inbox: one row per (consumer, event id), written in the same transaction as the handler's effects."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import bindparam, delete, select, text
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


# PostgreSQL: one statement with one array parameter per column, whatever the batch size (asyncpg encodes
# arrays natively; SQLAlchemy's multi-row VALUES costs ~25 µs of Python per row), and one row back: the
# inserted ids as one array (asyncpg decodes it natively; a RETURNING row per id costs SQLAlchemy's result
# processing per row). Unqualified table: a service's engine sets `search_path` to its schema.
_PG_CLAIM = text(
    """
    WITH inserted AS (
        INSERT INTO apev_inbox
            (consumer, event_id, payload_hash, event_type, topic, "partition", "offset", processed_at)
        SELECT :consumer, e.event_id, e.payload_hash, e.event_type, e.topic, e.part, e.off, :now
        FROM unnest(
            CAST(:event_ids AS text[]), CAST(:hashes AS text[]), CAST(:types AS text[]), CAST(:topics AS text[]),
            CAST(:partitions AS integer[]), CAST(:offsets AS bigint[])
        ) AS e(event_id, payload_hash, event_type, topic, part, off)
        ON CONFLICT DO NOTHING
        RETURNING event_id
    )
    SELECT array_agg(event_id) FROM inserted
    """
)
# SQLite: the same with one JSON parameter holding the rows (`json_each`); `WHERE true` keeps `ON CONFLICT` from
# being read as a join constraint. `now` is bound with the column's type, so it is stored as SQLAlchemy stores it.
_SQLITE_CLAIM = text(
    """
    INSERT INTO apev_inbox (consumer, event_id, payload_hash, event_type, topic, "partition", "offset", processed_at)
    SELECT :consumer, json_extract(e.value, '$[0]'), json_extract(e.value, '$[1]'), json_extract(e.value, '$[2]'),
        json_extract(e.value, '$[3]'), json_extract(e.value, '$[4]'), json_extract(e.value, '$[5]'), :now
    FROM json_each(:rows) AS e WHERE true
    ON CONFLICT DO NOTHING
    RETURNING event_id
    """
).bindparams(bindparam("now", type_=inbox.c.processed_at.type))


async def _insert_new(conn: AsyncConnection, entries: Sequence[InboxEntry], now: datetime) -> set[str]:
    if conn.dialect.name == "postgresql":
        params = {
            "consumer": entries[0].consumer,
            "now": now,
            "event_ids": [e.event_id for e in entries],
            "hashes": [e.payload_hash for e in entries],
            "types": [e.event_type for e in entries],
            "topics": [e.topic for e in entries],
            "partitions": [e.partition for e in entries],
            "offsets": [e.offset for e in entries],
        }
        return set((await conn.execute(_PG_CLAIM, params)).scalar_one() or ())
    rows = json.dumps([[e.event_id, e.payload_hash, e.event_type, e.topic, e.partition, e.offset] for e in entries])
    return set(
        (await conn.execute(_SQLITE_CLAIM, {"consumer": entries[0].consumer, "now": now, "rows": rows})).scalars()
    )


async def claim_many(conn: AsyncConnection, entries: Sequence[InboxEntry]) -> dict[str, Claim]:
    """Claim a batch of distinct event ids of one consumer in one statement; say which are new.

    Runs inside the batch's transaction: if a handler fails, the rows roll back with the effects. One partition
    is consumed by one member of a group at a time and an event's key fixes its partition, so two members never
    claim one id at once; the primary key still guards that case (the loser sees a duplicate).
    """
    if not entries:
        return {}
    if len({e.consumer for e in entries}) != 1:
        raise ValueError("claim_many takes the entries of one consumer")
    inserted = await _insert_new(conn, entries, datetime.now(UTC))
    result = {e.event_id: Claim.NEW for e in entries if e.event_id in inserted}
    seen = [e for e in entries if e.event_id not in inserted]
    if seen:
        hashes = await lookup(conn, seen[0].consumer, [e.event_id for e in seen])
        for e in seen:
            result[e.event_id] = Claim.DUPLICATE if hashes.get(e.event_id) == e.payload_hash else Claim.CONFLICT
    return result


async def claim(conn: AsyncConnection, entry: InboxEntry) -> Claim:
    """Claim one event id (`claim_many` of one)."""
    return (await claim_many(conn, [entry]))[entry.event_id]


async def lookup(conn: AsyncConnection, consumer: str, event_ids: Sequence[str]) -> dict[str, str]:
    """Payload hashes of the ids this consumer has processed (a read: it takes no write lock)."""
    rows = await conn.execute(
        select(inbox.c.event_id, inbox.c.payload_hash).where(
            inbox.c.consumer == consumer, inbox.c.event_id.in_(list(event_ids))
        )
    )
    return {event_id: payload_hash for event_id, payload_hash in rows}


def seen_as(entry: InboxEntry, hashes: dict[str, str]) -> Claim:
    """NEW when the id is unseen, else DUPLICATE or CONFLICT by the stored hash."""
    stored = hashes.get(entry.event_id)
    if stored is None:
        return Claim.NEW
    return Claim.DUPLICATE if stored == entry.payload_hash else Claim.CONFLICT


async def prune(conn: AsyncConnection, older_than: timedelta) -> int:
    """Delete inbox rows older than the retention period (longer than any redelivery or replay window)."""
    result = await conn.execute(delete(inbox).where(inbox.c.processed_at < datetime.now(UTC) - older_than))
    return int(result.rowcount or 0)
