"""Smoke tests of the real infrastructure: every topic carries a message, PostgreSQL answers."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from apev_contracts.topics import TOPICS, all_topics, dlq_topic
from apev_stack.kafka import topic_partitions

pytestmark = [pytest.mark.kafka]


async def test_every_topic_exists_with_its_dlq_twin(kafka_bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        described = await admin.describe_topics(list(TOPICS))
    finally:
        await admin.close()
    assert set(all_topics()) <= existing
    assert all(dlq_topic(t) in existing for t in TOPICS)
    for topic in described:
        assert len(topic["partitions"]) == topic_partitions(), topic["topic"]


async def test_produce_and_consume_on_every_topic(kafka_bootstrap: str) -> None:
    run = uuid.uuid4().hex
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        sent = {}
        for topic in all_topics():
            meta = await producer.send_and_wait(topic, key=b"tenant-a", value=f"{run}:{topic}".encode())
            sent[topic] = (meta.partition, meta.offset)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        *all_topics(),
        bootstrap_servers=kafka_bootstrap,
        group_id=f"smoke-{run}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen: dict[str, tuple[int, int]] = {}
    try:
        async with asyncio.timeout(60):
            while len(seen) < len(sent):
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    for record in records:
                        if record.value == f"{run}:{record.topic}".encode():
                            seen[record.topic] = (record.partition, record.offset)
    finally:
        await consumer.stop()
    assert seen == sent


@pytest.mark.postgres
async def test_database_opens_and_round_trips(pg_url: str) -> None:
    engine = create_async_engine(pg_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE smoke (id int primary key, note text)"))
            await conn.execute(text("INSERT INTO smoke VALUES (1, 'hello')"))
        async with engine.connect() as conn:
            row = (await conn.execute(text("SELECT note, current_database() FROM smoke"))).one()
    finally:
        await engine.dispose()
    assert row[0] == "hello"
    assert row[1].startswith("apev_test_")
