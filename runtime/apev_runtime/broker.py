"""The Kafka broker every service uses: idempotent producer, contract decoding, the delivery middleware.

    broker = make_broker(settings, db=db)
    @subscriber(broker, topics.RUN_FINISHED, group_id="monitor")
    async def on_run_finished(event: CloudEvent[RunFinished], tx: Tx) -> None: ...

Ack policy is `NACK_ON_ERROR` for the whole broker: the offset is committed only after the delivery
middleware returns (effects durable, or the message dead-lettered); when it raises, the consumer seeks
back and the message is redelivered. FastStream's default (`ACK_FIRST`, at-most-once) is never used.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.subscriber.usecase import DefaultSubscriber
from prometheus_client import REGISTRY, CollectorRegistry

from apev_contracts.envelope import CloudEvent, decode
from apev_runtime.db.engine import Database
from apev_runtime.delivery.middleware import Delivery
from apev_runtime.settings import ServiceSettings

# aiokafka's default poll interval; delivery's retry budget stays far below it (see DeliverySettings).
MAX_POLL_INTERVAL_MS = 300_000


class ApevBroker(KafkaBroker):
    """A KafkaBroker that knows its topic prefix (environments sharing one cluster, isolated test runs)."""

    topic_prefix: str = ""

    def logical_topic(self, topic: str) -> str:
        """`staging.run.finished` -> `run.finished` with prefix `staging.`."""
        return topic.removeprefix(self.topic_prefix) if self.topic_prefix else topic


def _decoder(prefix: str) -> Callable[[Any], Awaitable[CloudEvent[Any]]]:
    async def decode_event(msg: Any) -> CloudEvent[Any]:
        """The CloudEvents envelope and the registered payload model, validated by the contracts; the event's
        type must belong to the topic it arrived on."""
        record = msg.raw_message
        return decode(
            msg.body, list(record.headers or ()), topic=record.topic.removeprefix(prefix) if prefix else record.topic
        )

    return decode_event


def make_broker(
    settings: ServiceSettings,
    *,
    db: Database | None,
    extra_middlewares: Sequence[Callable[..., Any]] = (),
    registry: CollectorRegistry = REGISTRY,
    **kwargs: Any,
) -> KafkaBroker:
    """A broker wired for §4. `extra_middlewares` run outside the delivery middleware (after its commit)."""
    broker = ApevBroker(
        settings.kafka_bootstrap_servers,
        client_id=settings.kafka_client_id or settings.service_name,
        enable_idempotence=True,  # implies acks=all and per-partition order on retries
        acks="all",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decoder=_decoder(settings.kafka_topic_prefix),
        # Telemetry outermost: the span (from the message's traceparent) covers delivery and the handler, so
        # whatever the handler publishes or calls carries the same trace.
        middlewares=[
            KafkaTelemetryMiddleware(),
            *extra_middlewares,
            Delivery(db=db, settings=settings.delivery, registry=registry),
        ],
        graceful_timeout=30.0,
        # FastStream's default logger has its own plain-text handler; ours goes through the redacting pipeline.
        logger=logging.getLogger("apev.faststream"),
        **kwargs,
    )
    broker.topic_prefix = settings.kafka_topic_prefix
    return broker


def subscriber(broker: KafkaBroker, *topics: str, group_id: str, **kwargs: Any) -> DefaultSubscriber:
    """`broker.subscriber` with the settings §4 requires: an explicit group, reading from the earliest offset
    when the group is new (events published before a service first starts are not skipped)."""
    if not group_id:
        raise ValueError("a consumer needs an explicit group_id (at-least-once delivery commits per group)")
    kwargs.setdefault("auto_offset_reset", "earliest")
    kwargs.setdefault("max_poll_interval_ms", MAX_POLL_INTERVAL_MS)
    prefix = getattr(broker, "topic_prefix", "")
    sub: DefaultSubscriber = broker.subscriber(*(prefix + t for t in topics), group_id=group_id, **kwargs)
    return sub
