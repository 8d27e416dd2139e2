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

One relay publishes per database (and service schema) at a time: a PostgreSQL advisory lock, or a lease row on
SQLite (`apev_runtime.db.leader`), so two replicas or a rolling deploy never publish a row twice or out of
order. `add` refuses an event larger than the topic's limit when it is written; a row that fails to send for
a permanent reason (e.g. the broker refuses its size) is parked (`parked_at`, logged, counted) and the relay
goes on with the next row.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from prometheus_client import REGISTRY, CollectorRegistry, Counter
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from apev_contracts.envelope import CloudEvent, encode
from apev_runtime.db.engine import Database
from apev_runtime.db.leader import Leadership, leadership_for
from apev_runtime.db.tables import outbox
from apev_runtime.errors import PermanentError

log = structlog.get_logger("apev.outbox")


class Producer(Protocol):
    async def send_and_wait(
        self, topic: str, value: bytes, key: bytes | None = ..., headers: list[tuple[str, bytes]] | None = ...
    ) -> Any: ...


MAX_EVENT_BYTES = 1_048_576
"""Largest record (value + key + headers) `add` accepts: Kafka's default message size, and what consumers
accept (`DELIVERY_MAX_EVENT_BYTES`)."""


class EventTooLarge(PermanentError):
    """An event that no consumer would accept (and the broker may refuse) is refused when it is written."""


async def add(
    tx: AsyncConnection,
    event: CloudEvent[Any],
    *,
    traceparent: str | None = None,
    max_bytes: int = MAX_EVENT_BYTES,
) -> None:
    """Queue `event` for publishing in the caller's transaction (same id twice: kept once)."""
    record = encode(event, traceparent=traceparent)
    size = len(record.value) + len(record.key) + sum(len(k) + len(v) for k, v in record.headers)
    if size > max_bytes:
        raise EventTooLarge(
            f"{event.type} event {event.id!r} encodes to {size} bytes, over the limit of {max_bytes} bytes "
            f"for topic {record.topic!r}: send a reference (a table, a volume path) instead of the content"
        )
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


class _RelayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter("apev_outbox_published_total", "Outbox rows published", registry=registry)
        self.parked = Counter(
            "apev_outbox_parked_total", "Outbox rows parked: they can never be sent", ["topic"], registry=registry
        )


_relay_metrics: dict[int, _RelayMetrics] = {}


def _metrics(registry: CollectorRegistry) -> _RelayMetrics:
    if id(registry) not in _relay_metrics:
        _relay_metrics[id(registry)] = _RelayMetrics(registry)
    return _relay_metrics[id(registry)]


def is_permanent_send_error(exc: BaseException) -> bool:
    """Kafka refuses this record for good (size, topic name, authorisation); retrying cannot help."""
    if isinstance(exc, KafkaTimeoutError | KafkaConnectionError):
        return False
    return isinstance(exc, KafkaError) and not exc.retriable


class OutboxRelay:
    """Publishes outbox rows in id order and marks them published; one relay per database holds the role."""

    def __init__(
        self,
        db: Database,
        producer: Producer,
        *,
        in_doubt_check: InDoubtCheck | None = None,
        batch_size: int = 100,
        idle_seconds: float = 0.2,
        leadership: Leadership | None = None,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.db = db
        self.producer = producer
        self.in_doubt_check = in_doubt_check
        self.batch_size = batch_size
        self.idle_seconds = idle_seconds
        self.leadership = leadership or leadership_for(db, "outbox-relay")
        self.metrics = _metrics(registry)
        self._wake = asyncio.Event()
        self._publishing = asyncio.Lock()

    def wake(self) -> None:
        """Tell a sleeping relay there is something to publish (saves waiting for the next poll)."""
        self._wake.set()

    async def publish_pending(self) -> int:
        """Publish every unpublished row that exists now; returns how many were published (0 when another
        relay holds the role)."""
        async with self._publishing:
            if not await self.leadership.acquire():
                return 0
            total = 0
            while True:
                rows = await self._next_rows()
                if not rows:
                    return total
                total += await self._publish(rows)

    async def _next_rows(self) -> list[Any]:
        async with self.db.engine.connect() as conn:
            return list(
                (
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
                        .where(outbox.c.published_at.is_(None), outbox.c.parked_at.is_(None))
                        .order_by(outbox.c.id)
                        .limit(self.batch_size)
                    )
                ).all()
            )

    async def _publish(self, rows: list[Any]) -> int:
        """Send `rows` in order. Fresh rows are marked `sending_at` in one statement before any is sent; those
        never attempted when a send fails are unmarked again, so only the failed one is left in doubt."""
        fresh = [r.id for r in rows if r.sending_at is None]
        if fresh:
            await self._mark(fresh, sending_at=datetime.now(UTC))
        published: list[int] = []
        try:
            for i, row in enumerate(rows):
                if row.sending_at is not None and self.in_doubt_check is not None:
                    since = row.sending_at if row.sending_at.tzinfo else row.sending_at.replace(tzinfo=UTC)
                    if await self.in_doubt_check(row.topic, row.key, row.event_id, since):
                        log.info("outbox_in_doubt_found_on_topic", event_id=row.event_id, topic=row.topic)
                        published.append(row.id)
                        continue
                headers = [(k, v.encode("utf-8")) for k, v in row.headers]
                try:
                    await self.producer.send_and_wait(row.topic, value=row.value, key=row.key, headers=headers)
                except Exception as exc:
                    if is_permanent_send_error(exc):
                        await self._park(row, exc)
                        continue
                    untried = [r.id for r in rows[i + 1 :] if r.sending_at is None]
                    async with self.db.transaction() as tx:
                        await tx.execute(
                            update(outbox)
                            .where(outbox.c.id == row.id)
                            .values(attempts=outbox.c.attempts + 1, last_error=repr(exc)[:2000])
                        )
                        if untried:
                            await tx.execute(update(outbox).where(outbox.c.id.in_(untried)).values(sending_at=None))
                    raise
                published.append(row.id)
        finally:
            if published:
                await self._mark(published, published_at=datetime.now(UTC))
                self.metrics.published.inc(len(published))
        return len(published)

    async def _park(self, row: Any, exc: BaseException) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                update(outbox)
                .where(outbox.c.id == row.id)
                .values(parked_at=datetime.now(UTC), attempts=outbox.c.attempts + 1, last_error=repr(exc)[:2000])
            )
        self.metrics.parked.labels(row.topic).inc()
        log.error(
            "outbox_row_parked",
            event_id=row.event_id,
            topic=row.topic,
            bytes=len(row.value),
            error_class=type(exc).__name__,
            error=str(exc)[:500],
        )

    async def _mark(self, row_ids: list[int], **values: Any) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(update(outbox).where(outbox.c.id.in_(row_ids)).values(**values))

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Publish until `stop` is set; a failed send is retried after a short pause, in the same order. While
        another relay holds the role this one only checks, every `idle_seconds`, whether it can take over."""
        stop = stop or asyncio.Event()
        try:
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
        finally:
            await self.close()

    async def close(self) -> None:
        """Give up the role (a replica waiting for it takes over at its next check)."""
        with contextlib.suppress(Exception):
            await self.leadership.release()


async def prune(db: Database, older_than: timedelta) -> int:
    """Delete published rows older than the retention period."""
    async with db.transaction() as tx:
        result = await tx.execute(
            delete(outbox).where(
                outbox.c.published_at.is_not(None), outbox.c.published_at < datetime.now(UTC) - older_than
            )
        )
    return int(result.rowcount or 0)
