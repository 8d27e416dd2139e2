"""The transactional outbox: publish an event if and only if the state change that caused it commits.

    async with db.transaction() as tx:
        await tx.execute(...state change...)
        await outbox.add(tx, event)            # same transaction
    relay = OutboxRelay(db, producer)           # one per service process
    await relay.run()                           # publishes in order, marks rows

Each row is marked `sending_at` (committed) before it is sent and `published_at` after. A row found with
`sending_at` but no `published_at` is *in doubt*: the relay died, or the send failed, after the broker may
have stored it. Before re-sending an in-doubt row the relay looks for its event id on the partition its key
maps to, from shortly before `sending_at`, and only marks it if found: a relay killed between send and
mark does not publish twice. (Were that check impossible, the copy would carry the same event id and
consumers' inboxes would drop it.) Rows go out in id order, one at a time, which keeps per-key order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from apev_contracts.envelope import CloudEvent, encode
from apev_runtime.db.engine import Database
from apev_runtime.db.tables import outbox

log = structlog.get_logger("apev.outbox")


class Producer(Protocol):
    async def send_and_wait(
        self, topic: str, value: bytes, key: bytes | None = ..., headers: list[tuple[str, bytes]] | None = ...
    ) -> Any: ...


async def add(tx: AsyncConnection, event: CloudEvent[Any], *, traceparent: str | None = None) -> None:
    """Queue `event` for publishing in the caller's transaction (same id twice: kept once)."""
    record = encode(event, traceparent=traceparent)
    exists = (await tx.execute(select(outbox.c.id).where(outbox.c.event_id == event.id))).first()
    if exists:
        return
    await tx.execute(
        insert(outbox).values(
            event_id=event.id,
            topic=record.topic,
            key=record.key,
            value=record.value,
            headers=[[k, v.decode("utf-8")] for k, v in record.headers],
            created_at=datetime.now(UTC),
            attempts=0,
        )
    )


class InDoubtCheck(Protocol):
    async def __call__(self, topic: str, key: bytes, event_id: str, since: datetime) -> bool: ...


class KafkaInDoubtCheck:
    """Answers "is this event already on its topic?" by scanning the partition its key maps to."""

    def __init__(self, bootstrap: str, topic_prefix: str = "", slack: timedelta = timedelta(seconds=10)) -> None:
        self.bootstrap = bootstrap
        self.topic_prefix = topic_prefix
        self.slack = slack

    async def __call__(self, topic: str, key: bytes, event_id: str, since: datetime) -> bool:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.partitioner import DefaultPartitioner

        name = self.topic_prefix + topic
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None)
        await consumer.start()
        try:
            await consumer._client.force_metadata_update()
            partitions = sorted(consumer.partitions_for_topic(name) or [])
            if not partitions:
                return False
            tp = TopicPartition(name, DefaultPartitioner()(key, partitions, partitions))
            consumer.assign([tp])
            start = await consumer.offsets_for_times({tp: int((since - self.slack).timestamp() * 1000)})
            end = (await consumer.end_offsets([tp]))[tp]
            if start[tp] is None:
                return False
            consumer.seek(tp, start[tp].offset)
            while await consumer.position(tp) < end:
                for records in (await consumer.getmany(tp, timeout_ms=1000)).values():
                    for r in records:
                        if r.key == key and _event_id(r.value) == event_id:
                            return True
            return False
        finally:
            await consumer.stop()


def _event_id(value: bytes | None) -> str | None:
    try:
        doc = json.loads(value or b"")
    except ValueError:
        return None
    return doc.get("id") if isinstance(doc, dict) else None


class OutboxRelay:
    """Publishes outbox rows in id order and marks them published. One relay per database."""

    def __init__(
        self,
        db: Database,
        producer: Producer,
        *,
        in_doubt_check: InDoubtCheck | None = None,
        batch_size: int = 100,
        idle_seconds: float = 0.2,
    ) -> None:
        self.db = db
        self.producer = producer
        self.in_doubt_check = in_doubt_check
        self.batch_size = batch_size
        self.idle_seconds = idle_seconds
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Tell a sleeping relay there is something to publish (saves waiting for the next poll)."""
        self._wake.set()

    async def publish_pending(self) -> int:
        """Publish every unpublished row that exists now; returns how many were published."""
        total = 0
        while True:
            async with self.db.engine.connect() as conn:
                rows = (
                    await conn.execute(
                        select(
                            outbox.c.id,
                            outbox.c.event_id,
                            outbox.c.topic,
                            outbox.c.key,
                            outbox.c.value,
                            outbox.c.headers,
                            outbox.c.sending_at,
                        )
                        .where(outbox.c.published_at.is_(None))
                        .order_by(outbox.c.id)
                        .limit(self.batch_size)
                    )
                ).all()
            if not rows:
                return total
            for row in rows:
                headers = [(k, v.encode("utf-8")) for k, v in row.headers]
                if row.sending_at is not None and self.in_doubt_check is not None:
                    since = row.sending_at if row.sending_at.tzinfo else row.sending_at.replace(tzinfo=UTC)
                    if await self.in_doubt_check(row.topic, row.key, row.event_id, since):
                        log.info("outbox_in_doubt_found_on_topic", event_id=row.event_id, topic=row.topic)
                        await self._mark(row.id, published_at=datetime.now(UTC))
                        total += 1
                        continue
                await self._mark(row.id, sending_at=datetime.now(UTC))
                try:
                    await self.producer.send_and_wait(row.topic, value=row.value, key=row.key, headers=headers)
                except Exception as exc:
                    async with self.db.transaction() as tx:
                        await tx.execute(
                            update(outbox)
                            .where(outbox.c.id == row.id)
                            .values(attempts=outbox.c.attempts + 1, last_error=repr(exc)[:2000])
                        )
                    raise
                await self._mark(row.id, published_at=datetime.now(UTC))
                total += 1

    async def _mark(self, row_id: int, **values: Any) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(update(outbox).where(outbox.c.id == row_id).values(**values))

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Publish until `stop` is set; a failed send is retried after a short pause, in the same order."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                published = await self.publish_pending()
                if published:
                    log.debug("outbox_published", count=published)
            except Exception:
                log.warning("outbox_publish_failed", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.idle_seconds)


async def prune(db: Database, older_than: timedelta) -> int:
    """Delete published rows older than the retention period."""
    async with db.transaction() as tx:
        result = await tx.execute(
            delete(outbox).where(
                outbox.c.published_at.is_not(None), outbox.c.published_at < datetime.now(UTC) - older_than
            )
        )
    return int(result.rowcount or 0)
