"""Outbox: nothing published for a rolled-back transaction; exactly once for a committed one, relay crash included."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import select

from apev_contracts.topics import JOB_REQUESTED, dlq_topic
from apev_runtime import outbox
from apev_runtime.db import migrate
from apev_runtime.db.engine import Database, create_database
from apev_runtime.db.tables import outbox as outbox_table
from apev_runtime.testing import job_event
from apev_stack.kafka import create_topics

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


class PrefixedProducer:
    def __init__(self, producer: AIOKafkaProducer, prefix: str) -> None:
        self.producer, self.prefix = producer, prefix

    async def send_and_wait(
        self, topic: str, value: bytes, key: bytes | None = None, headers: list[tuple[str, bytes]] | None = None
    ) -> object:
        return await self.producer.send_and_wait(self.prefix + topic, value=value, key=key, headers=headers)


@pytest.fixture
async def env(kafka_bootstrap: str, pg_url: str) -> AsyncIterator[tuple[str, str, Database]]:
    prefix = f"o{uuid.uuid4().hex[:8]}."
    await create_topics(kafka_bootstrap, [prefix + JOB_REQUESTED, dlq_topic(prefix + JOB_REQUESTED)], partitions=3)
    db = create_database(pg_url, prefix.rstrip("."))
    await migrate.upgrade(db)
    yield kafka_bootstrap, prefix, db
    await db.dispose()


async def _ids_on_topic(bootstrap: str, topic: str) -> list[str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not tps:
            await consumer._client.force_metadata_update()
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        ids: list[str] = []
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                ids += [json.loads(r.value)["id"] for r in records]
        return ids
    finally:
        await consumer.stop()


async def test_rolled_back_transaction_publishes_nothing(env: tuple[str, str, Database]) -> None:
    bootstrap, prefix, db = env
    event = job_event()
    with pytest.raises(RuntimeError, match="state change failed"):
        async with db.transaction() as tx:
            await outbox.add(tx, event)
            raise RuntimeError("state change failed")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        assert await outbox.OutboxRelay(db, PrefixedProducer(producer, prefix)).publish_pending() == 0
    finally:
        await producer.stop()
    assert await _ids_on_topic(bootstrap, prefix + JOB_REQUESTED) == []


async def test_committed_event_is_published_once_even_if_the_relay_dies_between_send_and_mark(
    env: tuple[str, str, Database], pg_url: str
) -> None:
    bootstrap, prefix, db = env
    event, later = job_event(), job_event()
    async with db.transaction() as tx:
        await outbox.add(tx, event)
        await outbox.add(tx, later)
        await outbox.add(tx, event)  # the same event queued twice is kept once

    worker = Path(__file__).with_name("outbox_worker.py")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(worker),
        env={**os.environ, "DB_URL": pg_url, "DB_SCHEMA": prefix.rstrip("."), "BOOTSTRAP": bootstrap, "PREFIX": prefix},
    )
    assert await asyncio.wait_for(proc.wait(), 60) == -9
    async with db.engine.connect() as conn:
        rows = {r.event_id: r for r in (await conn.execute(select(outbox_table))).all()}
    assert rows[event.id].sending_at is not None and rows[event.id].published_at is None  # in doubt
    assert await _ids_on_topic(bootstrap, prefix + JOB_REQUESTED) == [event.id]

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        relay = outbox.OutboxRelay(
            db, PrefixedProducer(producer, prefix), in_doubt_check=outbox.KafkaInDoubtCheck(bootstrap, prefix)
        )
        assert await relay.publish_pending() == 2
        assert await relay.publish_pending() == 0
    finally:
        await producer.stop()
    ids = await _ids_on_topic(bootstrap, prefix + JOB_REQUESTED)
    assert sorted(ids) == sorted([event.id, later.id])  # each exactly once
    async with db.engine.connect() as conn:
        assert all(r.published_at is not None for r in (await conn.execute(select(outbox_table))).all())
