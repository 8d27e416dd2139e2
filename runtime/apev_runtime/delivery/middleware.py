"""The delivery middleware: at-least-once consumption with idempotent effects, retries and a DLQ (§4 rules 1-4).

Installed once at broker level (see `apev_runtime.broker.make_broker`), with the broker's ack policy
`NACK_ON_ERROR`: FastStream commits the offset after this middleware returns, and seeks back (redelivers)
when it raises. For each message:

1. Larger than `max_event_bytes` -> DLQ (`oversize`), unread.
2. Decoded with the contracts (CloudEvents envelope, registered type and major version, payload model);
   any decode or validation error -> DLQ (`permanent`).
3. In one database transaction: claim (consumer, event id) in the inbox; a duplicate with the same content
   hash is acknowledged without calling the handler; a different hash -> DLQ (`conflict`). Then the handler
   runs with that transaction in context (`Tx`), so its state changes and outbox rows commit with the inbox
   row, or not at all.
4. Permanent errors -> DLQ. Transient errors -> retried by stamina (jittered exponential backoff, bounded in
   attempts and total time, kept far below the consumer's poll interval), then DLQ (`transient_exhausted`).
   A host's open circuit breaker pauses this consumer (waits, then seeks back), it never dead-letters.
5. If publishing to the DLQ fails, the error propagates: the message is sought back and redelivered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import stamina
import structlog
from faststream import BaseMiddleware, Context
from faststream.exceptions import HandlerException
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncConnection

from apev_contracts.envelope import CloudEvent
from apev_contracts.topics import dlq_topic
from apev_runtime.db.engine import Database
from apev_runtime.delivery import inbox
from apev_runtime.delivery.dlq import DeadLetter, Reason
from apev_runtime.errors import Failure, classify
from apev_runtime.settings import DeliverySettings

log = structlog.get_logger("apev.delivery")

TX_KEY = "apev_tx"
EVENT_KEY = "apev_event"

Tx = Annotated[AsyncConnection, Context(TX_KEY)]
"""Handler parameter: the transaction holding this event's inbox row. Write effects and outbox rows on it."""


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "apev_delivery_messages_total",
            "Messages handled by the delivery middleware, by outcome",
            ["consumer", "topic", "outcome"],
            registry=registry,
        )
        self.retries = Counter(
            "apev_delivery_retries_total", "Transient failures retried", ["consumer", "topic"], registry=registry
        )
        self.duration = Histogram(
            "apev_delivery_handler_seconds", "Handler time per message", ["consumer", "topic"], registry=registry
        )


_metrics_by_registry: dict[int, _Metrics] = {}


def _metrics(registry: CollectorRegistry) -> _Metrics:
    key = id(registry)
    if key not in _metrics_by_registry:
        _metrics_by_registry[key] = _Metrics(registry)
    return _metrics_by_registry[key]


class _Duplicate(Exception):
    pass


class _Conflict(Exception):
    def __init__(self, event_id: str) -> None:
        super().__init__(
            f"event id {event_id!r} was processed before with different content (payload hash differs); "
            "a producer reused an id for another event"
        )


@dataclass
class Delivery:
    """Broker middleware factory: `KafkaBroker(middlewares=[Delivery(db, settings)], ...)`."""

    db: Database | None
    settings: DeliverySettings
    registry: CollectorRegistry = REGISTRY
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def __call__(self, msg: Any, context: Any) -> _DeliveryScope:
        return _DeliveryScope(msg, context=context, delivery=self)


class _DeliveryScope(BaseMiddleware):
    def __init__(self, msg: Any, *, context: Any, delivery: Delivery) -> None:
        super().__init__(msg, context=context)
        self.delivery = delivery

    async def consume_scope(self, call_next: Callable[[Any], Awaitable[Any]], msg: Any) -> Any:
        d = self.delivery
        record = msg.raw_message
        handler = self.context.get_local("handler_")
        consumer = str(getattr(handler, "group_id", None) or "unnamed")
        topic, partition, offset = record.topic, record.partition, record.offset
        metrics = _metrics(d.registry)
        first_seen = datetime.now(UTC)
        bound = log.bind(consumer=consumer, topic=topic, partition=partition, offset=offset)

        async def dead_letter(reason: Reason, exc: BaseException, attempts: int) -> None:
            letter = DeadLetter(
                topic=topic,
                partition=partition,
                offset=offset,
                consumer=consumer,
                reason=reason,
                error_class=f"{type(exc).__module__}.{type(exc).__qualname__}",
                error_message=str(exc) or repr(exc),
                attempts=attempts,
                first_seen=first_seen,
            )
            headers = [*(record.headers or ()), *letter.headers()]
            try:
                broker = self.context.get("broker")
                await broker.publish(
                    msg.body, topic=dlq_topic(topic), key=record.key, headers=dict(_str_headers(headers))
                )
            except Exception:
                bound.error("dlq_publish_failed", reason=reason.value, exc_info=True)
                await d.sleep(d.settings.dlq_publish_backoff_seconds)
                raise
            metrics.messages.labels(consumer, topic, "dead_lettered").inc()
            bound.warning(
                "dead_lettered",
                reason=reason.value,
                error_class=letter.error_class,
                error=letter.error_message,
                attempts=attempts,
            )

        if len(msg.body or b"") > d.settings.max_event_bytes:
            exc = ValueError(f"event of {len(msg.body)} bytes exceeds the limit of {d.settings.max_event_bytes} bytes")
            await dead_letter(Reason.OVERSIZE, exc, 0)
            return None
        try:
            event: CloudEvent[Any] = await msg.decode()
        except Exception as exc:  # every decode failure is about the input: it will never decode
            await dead_letter(Reason.PERMANENT, exc, 1)
            return None

        bound = bound.bind(event_id=event.id, event_type=event.type, tenant_id=event.tenantid)
        attempts = 0

        def retryable(exc: Exception) -> bool:
            transient = not isinstance(exc, _Duplicate | _Conflict | HandlerException) and (
                classify(exc) is Failure.TRANSIENT
            )
            if transient:
                metrics.retries.labels(consumer, topic).inc()
                bound.warning("transient_error_retrying", attempt=attempts, error=repr(exc))
            return transient

        t0 = time.monotonic()
        try:
            async for attempt in stamina.retry_context(
                on=retryable,
                attempts=d.settings.retry_attempts,
                timeout=d.settings.retry_timeout_seconds,
                wait_initial=d.settings.retry_initial_wait_seconds,
                wait_max=d.settings.retry_max_wait_seconds,
                wait_jitter=d.settings.retry_initial_wait_seconds,
            ):
                with attempt:
                    attempts = attempt.num
                    result = await self._process_once(call_next, msg, event, consumer, record)
        except _Duplicate:
            metrics.messages.labels(consumer, topic, "duplicate").inc()
            bound.info("duplicate_skipped")
            return None
        except _Conflict as exc:
            await dead_letter(Reason.CONFLICT, exc, attempts)
            return None
        except HandlerException:
            raise  # FastStream's own ack/nack/reject requests
        except Exception as exc:
            kind = classify(exc)
            if kind is Failure.CIRCUIT_OPEN:
                pause = min(max(float(getattr(exc, "retry_in", 0.0)), 0.05), d.settings.breaker_pause_seconds)
                metrics.messages.labels(consumer, topic, "paused").inc()
                bound.warning("circuit_open_pausing", pause_seconds=round(pause, 2), error=str(exc))
                await d.sleep(pause)
                raise  # sought back and redelivered after the pause; never dead-lettered
            reason = Reason.PERMANENT if kind is Failure.PERMANENT else Reason.TRANSIENT_EXHAUSTED
            await dead_letter(reason, exc, attempts)
            return None
        finally:
            metrics.duration.labels(consumer, topic).observe(time.monotonic() - t0)
        metrics.messages.labels(consumer, topic, "processed").inc()
        bound.info("processed", attempts=attempts)
        return result

    async def _process_once(
        self, call_next: Callable[[Any], Awaitable[Any]], msg: Any, event: CloudEvent[Any], consumer: str, record: Any
    ) -> Any:
        db = self.delivery.db
        if db is None:
            with self.context.scope(EVENT_KEY, event):
                return await call_next(msg)
        entry = inbox.InboxEntry(
            consumer=consumer,
            event_id=event.id,
            payload_hash=event.content_hash(),
            event_type=event.type,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
        async with db.transaction() as conn:
            claimed = await inbox.claim(conn, entry)
            if claimed is inbox.Claim.DUPLICATE:
                raise _Duplicate
            if claimed is inbox.Claim.CONFLICT:
                raise _Conflict(event.id)
            with self.context.scope(TX_KEY, conn), self.context.scope(EVENT_KEY, event):
                return await call_next(msg)


def _str_headers(headers: list[tuple[str, bytes]]) -> list[tuple[str, str]]:
    return [(k, v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)) for k, v in headers]
