"""Batched at-least-once consumption with idempotent effects, retries and a DLQ (§4 rules 1-4).

`apev_runtime.broker.subscriber` hands each fetched batch (what one `getmany` returned, up to the batch
size, no added wait) to `SubscriberDelivery.handle`, which:

1. screens every record: larger than `max_event_bytes` -> DLQ (`oversize`, unread); decoded with the
   contracts (headers read leniently: a header that is not UTF-8 or has no value never blocks decoding);
   any decode or validation error -> DLQ (`permanent`). Dead letters keep the original headers byte for
   byte and in order, and a bounded value (`dlq_max_bytes`), so they always fit.
2. claims the batch's event ids in the inbox with one statement, runs the handler for each new event in
   order (per partition), in one transaction, then commits it. Duplicates (same id, same content hash)
   are skipped; the same id with other content is a `conflict` dead letter.
3. if anything in the batch fails, the batch's effects roll back and its events are handled one at a time
   (`_single`): permanent errors -> DLQ; transient ones retried by stamina (jittered, bounded in attempts
   and time), then DLQ (`transient_exhausted`); a host's open circuit pauses and seeks back (never DLQ).
4. returns; FastStream then commits the consumer's positions once (NACK_ON_ERROR ack policy): last + 1
   for every partition, or the offset a partition was sought back to. Offsets are committed only after
   the database commit, so a revoked partition's uncommitted work is redelivered to its new owner, whose
   inbox recognises what was already committed.

A subscriber declared with `outside_calls=True` (a handler that waits on Databricks, MCP or Slack) takes
one event at a time, checks the inbox with a read, lets the handler commit steps itself (`await
tx.commit()` before an outside call, so no write lock is held while it waits) and writes the inbox row
last, in the handler's final transaction.
"""

from __future__ import annotations

import hashlib
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import stamina
import structlog
from aiokafka import ConsumerRecord, TopicPartition
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncConnection

from apev_contracts.envelope import CloudEvent, decode, traceparent_of
from apev_contracts.topics import dlq_topic
from apev_runtime.delivery import inbox
from apev_runtime.delivery.dlq import H_ORIGINAL_BYTES, H_ORIGINAL_SHA256, DeadLetter, Reason
from apev_runtime.delivery.middleware import Delivery
from apev_runtime.errors import DatabaseUnavailable, Failure, classify, database_unavailable

log = structlog.get_logger("apev.delivery")
_tracer = trace.get_tracer("apev.delivery")

Handler = Callable[..., Awaitable[Any]]


class RawSender(Protocol):
    async def __call__(
        self, topic: str, value: bytes, *, key: bytes | None, headers: list[tuple[str, bytes | None]]
    ) -> Any: ...


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "apev_delivery_messages_total",
            "Messages handled by the delivery kit, by outcome",
            ["consumer", "topic", "outcome"],
            registry=registry,
        )
        self.retries = Counter(
            "apev_delivery_retries_total", "Transient failures retried", ["consumer", "topic"], registry=registry
        )
        self.duration = Histogram(
            "apev_delivery_handler_seconds",
            "Handler time per message handled alone (retries, fallback, outside calls)",
            ["consumer", "topic"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "apev_delivery_batch_seconds",
            "Time per batch (screen, claim, handlers, commit)",
            ["consumer"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "apev_delivery_batch_size",
            "Records per fetched batch",
            ["consumer"],
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
            registry=registry,
        )
        self.fallbacks = Counter(
            "apev_delivery_batch_fallbacks_total",
            "Batches rolled back and handled one message at a time",
            ["consumer"],
            registry=registry,
        )


_metrics_by_registry: dict[int, _Metrics] = {}


def _metrics(registry: CollectorRegistry) -> _Metrics:
    key = id(registry)
    if key not in _metrics_by_registry:
        _metrics_by_registry[key] = _Metrics(registry)
    return _metrics_by_registry[key]


class _Redeliver(Exception):
    """This record must be consumed again: its partition is sought back to it."""


class _Duplicate(Exception):
    pass


class _Conflict(Exception):
    def __init__(self, event_id: str) -> None:
        super().__init__(
            f"event id {event_id!r} was processed before with different content (payload hash differs); "
            "a producer reused an id for another event"
        )


class _BatchHandlerFailed(Exception):
    def __init__(self, item: _Item, cause: Exception) -> None:
        super().__init__(str(cause))
        self.item = item
        self.cause = cause


@dataclass(slots=True)
class _Item:
    record: ConsumerRecord[Any, Any]
    event: CloudEvent[Any]
    entry: inbox.InboxEntry
    first_seen: datetime

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.record.topic, self.record.partition)


def _takes_tx(handler: Handler) -> bool:
    return len(inspect.signature(handler).parameters) >= 2


class SubscriberDelivery:
    """The delivery rules for one subscriber: its consumer (group) name, handler and mode."""

    def __init__(
        self,
        delivery: Delivery,
        *,
        consumer: str,
        handler: Handler,
        send: RawSender,
        seek: Callable[[TopicPartition, int], None],
        outside_calls: bool = False,
    ) -> None:
        self.d = delivery
        self.consumer = consumer
        self.handler = handler
        self.send = send
        self.seek = seek
        self.outside_calls = outside_calls
        self._with_tx = _takes_tx(handler)
        self._m = _metrics(delivery.registry)
        self._counters: dict[tuple[str, str], Any] = {}
        self._stopped: set[TopicPartition] = set()
        self._started = 0.0
        self._alone = 0

    # --- the batch ------------------------------------------------------------------------------------

    async def handle(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        """Handle one fetched batch; return when every record is durable, dead-lettered or sought back."""
        started = self._started = time.monotonic()
        first_seen = datetime.now(UTC)
        self._stopped = set()
        self._alone = 0
        items: list[_Item] = []
        for record in records:
            if self._stopped and TopicPartition(record.topic, record.partition) in self._stopped:
                continue
            try:
                item = await self._screen(record, first_seen)
            except _Redeliver:
                self._seek_back(record)
                continue
            if item is not None:
                items.append(item)
        if len(items) > 1 and self.d.db is not None and not self.outside_calls:
            await self._batch(items)
        else:
            for item in items:
                await self._single_unless_stopped(item)
        self._m.batch_size.labels(self.consumer).observe(len(records))
        self._m.batch_seconds.labels(self.consumer).observe(time.monotonic() - started)

    async def _screen(self, record: ConsumerRecord[Any, Any], first_seen: datetime) -> _Item | None:
        value = record.value or b""
        limit = self.d.settings.max_event_bytes
        if len(value) > limit:
            exc = ValueError(f"event of {len(value)} bytes exceeds the limit of {limit} bytes")
            await self._dead_letter(record, Reason.OVERSIZE, exc, 0, first_seen)
            return None
        topic = record.topic
        prefix = self.d.topic_prefix
        try:
            event = decode(value, record.headers, topic=topic.removeprefix(prefix) if prefix else topic)
        except Exception as exc:  # every decode failure is about the input: it will never decode
            await self._dead_letter(record, Reason.PERMANENT, exc, 1, first_seen)
            return None
        entry = inbox.InboxEntry(
            consumer=self.consumer,
            event_id=event.id,
            payload_hash=event.content_hash(),
            event_type=event.type,
            topic=topic,
            partition=record.partition,
            offset=record.offset,
        )
        return _Item(record=record, event=event, entry=entry, first_seen=first_seen)

    async def _batch(self, items: list[_Item]) -> None:
        db = self.d.db
        assert db is not None
        outcomes: dict[int, inbox.Claim] = {}
        try:
            async with db.engine.begin() as conn:
                claims = await self._claim_distinct(conn, items)
                for i, item in enumerate(items):
                    outcomes[i] = claims[i]
                    if claims[i] is inbox.Claim.NEW:
                        try:
                            await self._call(item, conn)
                        except Exception as exc:
                            raise _BatchHandlerFailed(item, exc) from exc
        except Exception as exc:
            failed = exc.item if isinstance(exc, _BatchHandlerFailed) else None
            cause = exc.cause if isinstance(exc, _BatchHandlerFailed) else exc
            self._m.fallbacks.labels(self.consumer).inc()
            log.info(
                "batch_fallback_one_at_a_time",
                consumer=self.consumer,
                size=len(items),
                failed_event_id=failed.event.id if failed else None,
                error=repr(cause)[:300],
            )
            for item in items:
                await self._single_unless_stopped(item, first_error=cause if item is failed else None)
            return
        processed: dict[str, int] = {}
        for i, item in enumerate(items):
            claim = outcomes[i]
            if claim is inbox.Claim.NEW:
                processed[item.record.topic] = processed.get(item.record.topic, 0) + 1
            elif claim is inbox.Claim.DUPLICATE:
                self._duplicate(item)
            elif item.tp not in self._stopped:
                try:
                    await self._dead_letter(item.record, Reason.CONFLICT, _Conflict(item.event.id), 1, item.first_seen)
                except _Redeliver:
                    self._seek_back(item.record)
        for topic, n in processed.items():
            self._count(topic, "processed", n)
        log.debug("batch_processed", consumer=self.consumer, size=len(items), processed=sum(processed.values()))

    async def _claim_distinct(self, conn: AsyncConnection, items: list[_Item]) -> list[inbox.Claim]:
        """Claims in item order; an id repeated inside the batch is a duplicate (or conflict) of its first."""
        first: dict[str, _Item] = {}
        for item in items:
            first.setdefault(item.event.id, item)
        claimed = await inbox.claim_many(conn, [i.entry for i in first.values()])
        result = []
        for item in items:
            head = first[item.event.id]
            if head is item:
                result.append(claimed[item.event.id])
            else:
                same = head.entry.payload_hash == item.entry.payload_hash
                result.append(inbox.Claim.DUPLICATE if same else inbox.Claim.CONFLICT)
        return result

    # --- one at a time ---------------------------------------------------------------------------------

    async def _single_unless_stopped(self, item: _Item, first_error: Exception | None = None) -> None:
        if item.tp in self._stopped:
            return
        if self._alone and time.monotonic() - self._started > self.d.settings.batch_time_budget_seconds:
            # Handled one at a time, a batch of slow failures could outlast the consumer's poll interval and
            # cost its partitions; what is left is sought back and fetched again by the next poll. At least
            # one message is always handled, so a batch that is slow every time still makes progress.
            log.warning("batch_time_budget_spent", consumer=self.consumer, event_id=item.event.id)
            self._seek_back(item.record)
            return
        self._alone += 1
        try:
            await self._single(item, first_error)
        except _Redeliver:
            self._seek_back(item.record)

    async def _single(self, item: _Item, first_error: Exception | None) -> None:
        s = self.d.settings
        attempts = 0
        retries = self._m.retries.labels(self.consumer, item.record.topic)

        def retryable(exc: Exception) -> bool:
            transient = not isinstance(exc, _Duplicate | _Conflict) and classify(exc) is Failure.TRANSIENT
            if transient:
                retries.inc()
                log.warning(
                    "transient_error_retrying",
                    consumer=self.consumer,
                    event_id=item.event.id,
                    attempt=attempts,
                    error=repr(exc)[:500],
                )
            return transient

        done_before = 0
        if first_error is not None:  # the batch attempt was this event's first attempt
            done_before = 1
            if not retryable(first_error) or s.retry_attempts <= 1:
                await self._failed(item, first_error, 1)
                return
        t0 = time.monotonic()
        try:
            async for attempt in stamina.retry_context(
                on=retryable,
                attempts=s.retry_attempts - done_before,
                timeout=s.retry_timeout_seconds,
                wait_initial=s.retry_initial_wait_seconds,
                wait_max=s.retry_max_wait_seconds,
                wait_jitter=s.retry_initial_wait_seconds,
            ):
                with attempt:
                    attempts = attempt.num + done_before
                    await self._once(item)
        except _Duplicate:
            self._duplicate(item)
            return
        except _Conflict as exc:
            await self._dead_letter(item.record, Reason.CONFLICT, exc, attempts, item.first_seen)
            return
        except Exception as exc:
            await self._failed(item, exc, attempts)
            return
        finally:
            self._m.duration.labels(self.consumer, item.record.topic).observe(time.monotonic() - t0)
        self._count(item.record.topic, "processed")
        log.info("processed", consumer=self.consumer, event_id=item.event.id, attempts=attempts)

    async def _failed(self, item: _Item, exc: Exception, attempts: int) -> None:
        kind = classify(exc)
        if kind is Failure.CIRCUIT_OPEN:
            wanted = getattr(exc, "retry_in", None)
            if wanted is None and database_unavailable(exc):
                wanted = self.d.settings.db_unavailable_pause_seconds
            pause = min(max(float(wanted or 0.0), 0.05), self.d.settings.breaker_pause_seconds)
            self._count(item.record.topic, "paused")
            log.warning(
                "circuit_open_pausing",
                consumer=self.consumer,
                event_id=item.event.id,
                pause_seconds=round(pause, 2),
                error=str(exc),
            )
            await self.d.sleep(pause)
            raise _Redeliver  # sought back and redelivered after the pause; never dead-lettered
        reason = Reason.PERMANENT if kind is Failure.PERMANENT else Reason.TRANSIENT_EXHAUSTED
        await self._dead_letter(item.record, reason, exc, attempts, item.first_seen)

    async def _once(self, item: _Item) -> None:
        db = self.d.db
        if db is None:
            await self._call(item, None)
            return
        if self.outside_calls:
            await self._once_outside(item)
            return
        entered = False
        try:
            async with db.engine.begin() as conn:
                entered = True
                await self._claimed_call(item, conn)
        except (OSError, TimeoutError) as exc:
            if entered:
                raise
            raise DatabaseUnavailable(f"cannot connect to the database: {exc!r}") from exc

    async def _claimed_call(self, item: _Item, conn: AsyncConnection) -> None:
        claimed = await inbox.claim(conn, item.entry)
        if claimed is inbox.Claim.DUPLICATE:
            raise _Duplicate
        if claimed is inbox.Claim.CONFLICT:
            raise _Conflict(item.event.id)
        await self._call(item, conn)

    async def _once_outside(self, item: _Item) -> None:
        """Read the inbox, let the handler commit its own steps, write the inbox row in its last transaction."""
        db = self.d.db
        assert db is not None
        entered = False
        try:
            async with db.engine.connect() as conn:
                entered = True
                await self._outside_call(item, conn)
        except (OSError, TimeoutError) as exc:
            if entered:
                raise
            raise DatabaseUnavailable(f"cannot connect to the database: {exc!r}") from exc

    async def _outside_call(self, item: _Item, conn: AsyncConnection) -> None:
        seen = inbox.seen_as(item.entry, await inbox.lookup(conn, self.consumer, [item.event.id]))
        await conn.rollback()  # end the read: nothing of this connection is held while the handler waits
        if seen is inbox.Claim.DUPLICATE:
            raise _Duplicate
        if seen is inbox.Claim.CONFLICT:
            raise _Conflict(item.event.id)
        try:
            await self._call(item, conn)
            if await inbox.claim(conn, item.entry) is not inbox.Claim.NEW:
                await conn.rollback()  # another member got there first: keep its effects, not ours
                raise _Duplicate
            await conn.commit()
        except BaseException:
            await conn.rollback()
            raise

    async def _call(self, item: _Item, conn: AsyncConnection | None) -> None:
        """The handler, inside the event's trace: what it publishes or calls carries the event's traceparent.
        A span per event only with `event_spans` (FastStream's telemetry already opens one per batch)."""
        record = item.record
        traceparent = traceparent_of(record.headers)
        token = otel_context.attach(propagate.extract({"traceparent": traceparent})) if traceparent else None
        try:
            if self.d.settings.event_spans:
                with _tracer.start_as_current_span(
                    f"{record.topic} process",
                    kind=trace.SpanKind.CONSUMER,
                    attributes={"messaging.kafka.partition": record.partition, "messaging.kafka.offset": record.offset},
                ):
                    await self._invoke(item, conn)
            else:
                await self._invoke(item, conn)
        finally:
            if token is not None:
                otel_context.detach(token)

    async def _invoke(self, item: _Item, conn: AsyncConnection | None) -> None:
        if self._with_tx:
            await self.handler(item.event, conn)
        else:
            await self.handler(item.event)

    # --- outcomes --------------------------------------------------------------------------------------

    def _count(self, topic: str, outcome: str, n: int = 1) -> None:
        counter = self._counters.get((topic, outcome))
        if counter is None:
            counter = self._counters[(topic, outcome)] = self._m.messages.labels(self.consumer, topic, outcome)
        counter.inc(n)

    def _duplicate(self, item: _Item) -> None:
        self._count(item.record.topic, "duplicate")
        log.info("duplicate_skipped", consumer=self.consumer, event_id=item.event.id, topic=item.record.topic)

    def _seek_back(self, record: ConsumerRecord[Any, Any]) -> None:
        tp = TopicPartition(record.topic, record.partition)
        self._stopped.add(tp)
        self.seek(tp, record.offset)

    async def _dead_letter(
        self,
        record: ConsumerRecord[Any, Any],
        reason: Reason,
        exc: BaseException,
        attempts: int,
        first_seen: datetime,
    ) -> None:
        letter = DeadLetter(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            consumer=self.consumer,
            reason=reason,
            error_class=f"{type(exc).__module__}.{type(exc).__qualname__}",
            error_message=str(exc) or repr(exc),
            attempts=attempts,
            first_seen=first_seen,
        )
        value, headers = bounded_dead_letter(
            record.value or b"", list(record.headers or ()), letter.headers(), self.d.settings.dlq_max_bytes
        )
        try:
            await self.send(dlq_topic(record.topic), value, key=record.key, headers=headers)
        except Exception:
            log.error("dlq_publish_failed", consumer=self.consumer, reason=reason.value, exc_info=True)
            await self.d.sleep(self.d.settings.dlq_publish_backoff_seconds)
            raise _Redeliver from None
        self._m.messages.labels(self.consumer, record.topic, "dead_lettered").inc()
        log.warning(
            "dead_lettered",
            consumer=self.consumer,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=reason.value,
            error_class=letter.error_class,
            error=letter.error_message[:500],
            attempts=attempts,
        )


def bounded_dead_letter(
    value: bytes,
    original_headers: list[tuple[str, bytes | None]],
    letter_headers: list[tuple[str, bytes]],
    limit: int,
) -> tuple[bytes, list[tuple[str, bytes | None]]]:
    """The dead letter's value and headers: the original headers byte for byte and in order, then the letter's;
    a value that would not fit in `limit` bytes is cut to a prefix, with its length and sha256 in headers."""
    headers: list[tuple[str, bytes | None]] = [*original_headers, *letter_headers]
    size = len(value) + sum(len(k) + len(v or b"") for k, v in headers)
    if size <= limit:
        return value, headers
    marks: list[tuple[str, bytes]] = [
        (H_ORIGINAL_BYTES, str(len(value)).encode()),
        (H_ORIGINAL_SHA256, hashlib.sha256(value).hexdigest().encode()),
    ]
    headers = [*headers, *marks]
    room = limit - sum(len(k) + len(v or b"") for k, v in headers)
    if room < limit // 2:  # the original headers themselves are huge: keep only ours
        headers = [*letter_headers, *marks]
        room = limit - sum(len(k) + len(v or b"") for k, v in headers)
    return value[: max(room, 0)], headers
