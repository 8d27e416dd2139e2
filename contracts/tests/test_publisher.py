from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from apev_contracts import decode, new_event, traceparent_of
from apev_contracts.examples import TENANT, example_payloads
from apev_contracts.publisher import EventPublisher
from apev_contracts.registry import spec_for_model

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_publish_needs_a_started_publisher() -> None:
    publisher = EventPublisher("127.0.0.1:1")
    event = new_event(next(iter(example_payloads().values())), tenant_id=TENANT, source="/backend")
    with pytest.raises(RuntimeError, match="not started"):
        await publisher.publish(event)


def test_the_producer_is_always_idempotent() -> None:
    with pytest.raises(ValueError, match="idempotent"):
        EventPublisher("127.0.0.1:1", enable_idempotence=False)


@pytest.mark.kafka
async def test_every_event_published_is_decoded_by_a_plain_consumer(kafka_bootstrap: str) -> None:
    events = [new_event(p, tenant_id=TENANT, source="/agentprovision/backend") for p in example_payloads().values()]
    async with EventPublisher(kafka_bootstrap, client_id="contracts-test") as publisher:
        sent = [await publisher.publish(event, traceparent=TRACEPARENT) for event in events]

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        for event, meta in zip(events, sent, strict=True):
            assert meta.topic == spec_for_model(type(event.data)).topic
            partition = TopicPartition(meta.topic, meta.partition)
            consumer.assign([partition])
            consumer.seek(partition, meta.offset)
            message = await asyncio.wait_for(consumer.getone(), timeout=30)
            assert message.key == TENANT.encode()
            decoded = decode(message.value, message.headers, topic=message.topic)
            assert decoded == event
            assert type(decoded.data) is type(event.data)
            assert traceparent_of(message.headers) == TRACEPARENT
    finally:
        await consumer.stop()


@pytest.mark.kafka
async def test_one_tenants_events_share_a_partition(kafka_bootstrap: str) -> None:
    payload = next(iter(example_payloads().values()))
    async with EventPublisher(kafka_bootstrap) as publisher:
        sent = [await publisher.publish(new_event(payload, tenant_id=TENANT, source="/b")) for _ in range(5)]
    assert len({m.partition for m in sent}) == 1
    assert [m.offset for m in sent] == sorted(m.offset for m in sent)


@pytest.mark.kafka
async def test_topic_override_for_private_topics(
    kafka_bootstrap: str, new_topic: Callable[..., Awaitable[str]]
) -> None:
    topic = await new_topic("contracts")
    event = new_event(next(iter(example_payloads().values())), tenant_id=TENANT, source="/b")
    async with EventPublisher(kafka_bootstrap) as publisher:
        meta = await publisher.publish(event, topic=topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(topic, meta.partition)
        consumer.assign([partition])
        consumer.seek(partition, meta.offset)
        message = await asyncio.wait_for(consumer.getone(), timeout=30)
    finally:
        await consumer.stop()
    assert meta.topic == topic
    assert decode(message.value, message.headers, topic=message.topic) == event


async def test_a_failed_start_leaves_the_publisher_stopped() -> None:
    publisher = EventPublisher("127.0.0.1:1", request_timeout_ms=1000, retry_backoff_ms=50)
    with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        await publisher.start()
    event = new_event(next(iter(example_payloads().values())), tenant_id=TENANT, source="/b")
    with pytest.raises(RuntimeError, match="not started"):
        await publisher.publish(event)
    await publisher.stop()  # harmless when not started
