"""The Kafka broker every service uses: idempotent producer, batched at-least-once consumption, the DLQ.

    broker = make_broker(settings, db=db)
    @subscriber(broker, topics.RUN_FINISHED, group_id="monitor")
    async def on_run_finished(event: CloudEvent[RunFinished], tx: Tx) -> None: ...

Each subscriber is a FastStream batch subscriber whose one registered call hands the fetched records to
`apev_runtime.delivery.consumer.SubscriberDelivery` (inbox, retries, DLQ), which calls the service's
handler per event. Ack policy is `NACK_ON_ERROR` for the whole broker: offsets are committed once per batch,
after the delivery kit returns (effects durable, dead-lettered, or a partition sought back); when it raises,
the consumer seeks back and the batch is redelivered. FastStream's default (`ACK_FIRST`, at-most-once) is
never used.
"""

from __future__ import annotations

import gc
import inspect
import logging
import typing
from collections.abc import Awaitable, Callable, Sequence
from itertools import chain
from typing import Any

from aiokafka import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.message import KafkaAckableMessage
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.response import KafkaPublishCommand
from faststream.kafka.subscriber.usecase import BatchSubscriber
from faststream.response.publish_type import PublishType
from prometheus_client import REGISTRY, CollectorRegistry
from pydantic import BaseModel

from apev_runtime.db.engine import Database
from apev_runtime.delivery.consumer import Handler, SubscriberDelivery
from apev_runtime.delivery.middleware import Delivery
from apev_runtime.settings import ServiceSettings

# aiokafka's default poll interval; delivery's retry budget stays far below it (see DeliverySettings).
MAX_POLL_INTERVAL_MS = 300_000
FETCH_MAX_WAIT_MS = 100
# A member learns that the group is rebalancing from its next heartbeat's answer, and the coordinator waits
# for every member to rejoin: at Kafka's 3 s a service whose six subscribers share one group joined them one
# rebalance (~3 s) after another. Half a second costs two small requests a second per consumer.
HEARTBEAT_INTERVAL_MS = 500


class ApevBroker(KafkaBroker):
    """A KafkaBroker that knows its topic prefix (environments sharing one cluster, isolated test runs)."""

    topic_prefix: str = ""
    group_instance_id: str | None = None
    """This replica's static membership name (`KAFKA_GROUP_INSTANCE_ID`); None: dynamic membership."""
    session_timeout_ms: int = 10_000
    delivery: Delivery
    subscriptions: list[Subscription]
    """Every `subscriber(...)` made on this broker, in order (what the AsyncAPI document describes)."""

    def logical_topic(self, topic: str) -> str:
        """`staging.run.finished` -> `run.finished` with prefix `staging.`."""
        return topic.removeprefix(self.topic_prefix) if self.topic_prefix else topic

    async def start(self) -> None:
        await super().start()
        # What start-up built (modules, pydantic schemas, clients) lives as long as the process: moved out of
        # the collector's reach, full collections no longer rescan it while events flow. Measured in the
        # delivery bench: pauses of 100-150 ms per batch gone, 9-13k -> 13-17k events/s.
        gc.collect()
        gc.freeze()

    async def publish_raw(
        self, topic: str, value: bytes, *, key: bytes | None, headers: list[tuple[str, bytes | None]]
    ) -> Any:
        """Send bytes with exactly these headers (order, repeats and non-UTF-8 values kept), through the broker's
        publish middlewares (metrics, tests' fault injection) but not its header rewriting."""
        cmd = KafkaPublishCommand(
            value,
            topic=topic,
            key=key,
            headers={k: (v or b"").decode("utf-8", "replace") for k, v in headers},
            correlation_id=self.config.id_generator(),
            _publish_type=PublishType.PUBLISH,
        )
        return await self._basic_publish(cmd, producer=_RawProducer(self, value, key, headers))  # type: ignore[arg-type]


class _RawProducer:
    """The innermost publish step of `publish_raw`: the aiokafka producer, with the caller's own headers."""

    def __init__(self, broker: KafkaBroker, value: bytes, key: bytes | None, headers: list[tuple[str, bytes | None]]):
        self.broker, self.value, self.key, self.headers = broker, value, key, headers

    async def publish(self, cmd: KafkaPublishCommand) -> Any:
        producer = self.broker.config.producer._producer.producer  # type: ignore[attr-defined]  # FastStream's aiokafka producer
        future = await producer.send(cmd.destination, value=self.value, key=self.key, headers=self.headers)
        return await future


def make_broker(
    settings: ServiceSettings,
    *,
    db: Database | None,
    extra_middlewares: Sequence[Callable[..., Any]] = (),
    registry: CollectorRegistry = REGISTRY,
    **kwargs: Any,
) -> KafkaBroker:
    """A broker wired for §4. `extra_middlewares` run around each batch's delivery (after its database commit,
    before the offset commit)."""
    broker = ApevBroker(
        settings.kafka_bootstrap_servers,
        client_id=settings.kafka_client_id or settings.service_name,
        enable_idempotence=True,  # implies acks=all and per-partition order on retries
        acks="all",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        # Telemetry outermost: one span per batch; the delivery kit opens a child span per event from the
        # event's own traceparent, so whatever a handler publishes or calls carries the event's trace.
        middlewares=[KafkaTelemetryMiddleware(), *extra_middlewares],
        graceful_timeout=30.0,
        # FastStream's default logger has its own plain-text handler; ours goes through the redacting pipeline.
        logger=logging.getLogger("apev.faststream"),
        **kwargs,
    )
    broker.topic_prefix = settings.kafka_topic_prefix
    broker.group_instance_id = settings.kafka_group_instance_id
    broker.session_timeout_ms = settings.kafka_session_timeout_ms
    broker.subscriptions = []
    broker.delivery = Delivery(
        db=db, settings=settings.delivery, registry=registry, topic_prefix=settings.kafka_topic_prefix
    )
    return broker


class Subscription:
    """What `subscriber(...)` returns: a decorator taking the service's handler, and the FastStream subscriber."""

    def __init__(
        self,
        broker: ApevBroker,
        sub: BatchSubscriber,
        group_id: str,
        *,
        outside_calls: bool,
        topics: tuple[str, ...] = (),
    ) -> None:
        self.broker, self.subscriber, self.group_id, self.outside_calls = broker, sub, group_id, outside_calls
        self.topics = topics
        """Logical topic names (without the broker's prefix)."""
        self.delivery: SubscriberDelivery | None = None
        self.handler_name: str | None = None
        self.payload_model: type[BaseModel] | None = None
        """The handler's `CloudEvent[Model]` first parameter's `Model`, when it says so."""

    def __call__(self, handler: Handler) -> Handler:
        sub = self.subscriber
        self.handler_name = getattr(handler, "__name__", "handler")
        self.payload_model = _payload_model(handler)

        def seek(tp: Any, offset: int) -> None:
            if sub.consumer is not None:
                sub.consumer.seek(tp, offset)

        delivery = self.delivery = SubscriberDelivery(
            self.broker.delivery,
            consumer=self.group_id,
            handler=handler,
            send=self.broker.publish_raw,
            seek=seek,
            outside_calls=self.outside_calls,
        )

        async def consume(message: KafkaMessage) -> None:
            await delivery.handle(message.raw_message)

        consume.__name__ = consume.__qualname__ = getattr(handler, "__name__", "handler")
        consume.__doc__ = handler.__doc__
        sub(consume)
        return handler


def subscriber(
    broker: KafkaBroker,
    *topics: str,
    group_id: str,
    outside_calls: bool = False,
    batch_size: int | None = None,
    **kwargs: Any,
) -> Subscription:
    """A subscriber with the settings §4 requires: an explicit group, reading from the earliest offset when the
    group is new (events published before a service first starts are not skipped), batched consumption.

    `outside_calls=True` for a handler that waits on an outside system: each event handled alone in its own
    transactions, the inbox row written last, the handler free to `await tx.commit()` a step before the call
    (see `Tx`); offsets are still committed once per fetched batch (`DELIVERY_OUTSIDE_CALLS_BATCH_SIZE`).
    `batch_size` bounds a batch (default `DELIVERY_BATCH_SIZE`).
    """
    if not group_id:
        raise ValueError("a consumer needs an explicit group_id (at-least-once delivery commits per group)")
    if not isinstance(broker, ApevBroker):
        raise TypeError("subscriber() needs a broker made by make_broker()")
    kwargs.setdefault("auto_offset_reset", "earliest")
    kwargs.setdefault("max_poll_interval_ms", MAX_POLL_INTERVAL_MS)
    # aiokafka does not re-fetch a partition while its records are still buffered, and the fetch for the
    # others (at the end of their log) long-polls `fetch_max_wait_ms`: the rest of a busy partition waited up
    # to 500 ms (Kafka's default) behind idle ones, measured at the end of every backlog. New data still
    # ends a long poll at once, so this costs only a few more empty fetches per second when idle.
    kwargs.setdefault("fetch_max_wait_ms", FETCH_MAX_WAIT_MS)
    # A killed member's partitions move after `session_timeout_ms`; with static membership a restarted replica
    # rejoins under its old name and gets them back without a rebalance (one consumer per subscriber, so the
    # name carries the group and topics: unique within a group).
    kwargs.setdefault("session_timeout_ms", broker.session_timeout_ms)
    kwargs.setdefault("heartbeat_interval_ms", min(HEARTBEAT_INTERVAL_MS, broker.session_timeout_ms // 3))
    if broker.group_instance_id:
        kwargs.setdefault(
            "group_instance_id",
            static_member_name(broker.group_instance_id, group_id, [broker.topic_prefix + t for t in topics]),
        )
    settings = broker.delivery.settings
    max_records = batch_size or (settings.outside_calls_batch_size if outside_calls else settings.batch_size)
    holder: list[BatchSubscriber] = []

    async def parse(records: tuple[ConsumerRecord[Any, Any], ...]) -> KafkaAckableMessage:
        # FastStream's own parser decodes every header as UTF-8 and fails on one that is not (or is null)
        # before any code of ours runs; headers are the delivery kit's to read (leniently).
        first, last = records[0], records[-1]
        return KafkaAckableMessage(
            body=[],
            headers={},
            batch_headers=[],
            message_id=f"{first.topic}-{first.partition}-{first.offset}-{last.offset}",
            raw_message=records,
            consumer=holder[0].consumer,
        )

    async def no_decode(_: Any) -> None:
        return None

    prefix = broker.topic_prefix
    sub: BatchSubscriber = broker.subscriber(
        *(prefix + t for t in topics),
        group_id=group_id,
        batch=True,
        max_records=max_records,
        parser=parse,
        decoder=no_decode,
        **kwargs,
    )
    holder.append(sub)
    sub.get_msg = _getmany(sub, max_records)  # type: ignore[method-assign,assignment]
    subscription = Subscription(broker, sub, group_id, outside_calls=outside_calls, topics=tuple(topics))
    broker.subscriptions.append(subscription)
    return subscription


def static_member_name(instance: str, group_id: str, topics: Sequence[str]) -> str:
    """`group.instance.id` of one subscriber's consumer: stable across restarts of the replica `instance`.

    `topics` as subscribed (with the topic prefix): a group's coordinator hands a static member that rejoins
    within its session the assignment it had, so a name shared by two stacks on one broker (same group, other
    prefix) got the other stack's partitions ("Received an assignment for unsubscribed topic", the consumer dead
    at start-up)."""
    return f"{instance}:{group_id}:{'+'.join(topics)}"


def _payload_model(handler: Handler) -> type[BaseModel] | None:
    """`Model` of a handler whose first parameter is annotated `CloudEvent[Model]`; None otherwise."""
    try:
        hints = typing.get_type_hints(handler)
    except Exception:  # annotations naming what the handler's module cannot resolve
        return None
    params = [p for p in inspect.signature(handler).parameters]
    if not params or params[0] not in hints:
        return None
    args = getattr(hints[params[0]], "__pydantic_generic_metadata__", {}).get("args", ())
    model = args[0] if len(args) == 1 else None
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


Records = tuple[ConsumerRecord[Any, Any], ...]


def _getmany(sub: BatchSubscriber, max_records: int) -> Callable[[Any], Awaitable[Records]]:
    """What is available now, up to `max_records`, waiting only while nothing is (FastStream's batch loop also
    sleeps `batch_timeout_ms` after an empty fetch, which would add that wait to the next event's latency)."""

    async def get_msg(consumer: Any) -> Records:
        fetched = await consumer.getmany(timeout_ms=500, max_records=max_records)
        return tuple(chain(*fetched.values()))

    return get_msg
