"""The Kafka broker stopped and restarted mid-stream under the delivery kit's consumer (the runtime's
Harness on real PostgreSQL): the consumer recovers without a restart, and every event has exactly one effect.

The broker is this test's own (its own ports and folder), so other tests' broker is never touched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from faults_report import Report
from sqlalchemy import text

from apev_contracts.envelope import encode
from apev_runtime.testing import Harness, job_event, wait_for
from apev_stack.kafka import KafkaBroker, free_port

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


@pytest.fixture
async def private_broker(tmp_path: Path) -> AsyncIterator[KafkaBroker]:
    broker = KafkaBroker(home=tmp_path / "kafka", port=free_port(), controller_port=free_port())
    await asyncio.to_thread(broker.start)
    try:
        yield broker
    finally:
        await asyncio.to_thread(broker.stop)


async def _send_until_acked(producer: AIOKafkaProducer, topic: str, value: bytes, key: bytes) -> int:
    """A producer that keeps an event until the broker acknowledged it; returns the attempts it took."""
    attempts = 0
    while True:
        attempts += 1
        try:
            # Bounded: while the broker is away a send can wait on metadata; a timed-out send may still land
            # later, which makes a duplicate on the topic for the inbox to absorb.
            await asyncio.wait_for(producer.send_and_wait(topic, value=value, key=key), timeout=10)
            return attempts
        except (KafkaError, TimeoutError):
            await asyncio.sleep(0.5)


async def _effect_counts(h: Harness) -> dict[str, int]:
    async with h.db.engine.connect() as conn:
        rows = await conn.execute(text("SELECT event_id, count(*) FROM effects GROUP BY event_id"))
        return {r[0]: int(r[1]) for r in rows}


async def _run(broker: KafkaBroker, pg_url: str, report: Report, events: int, restarts: int, name: str) -> None:
    started = time.monotonic()
    h = Harness(broker.bootstrap, pg_url)
    await h.start()
    # The test's producer resends at the application level until acked (aiokafka's idempotent producer does
    # not recover from batches expired while the broker is away); the resulting duplicates are the inbox's.
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap, acks="all", request_timeout_ms=5000, retry_backoff_ms=200
    )
    await producer.start()
    ids = [job_event(key=f"k{i % 7}") for i in range(events)]
    resent = 0
    sent = 0
    down_seconds: list[float] = []
    recovered_seconds: list[float] = []
    points = [events * (n + 1) // (restarts + 1) for n in range(restarts)]
    for p in points:  # the consumer is mid-batch, inside a handler, when the broker goes
        for e in ids[max(0, p - 40) : p]:
            h.slow[e.id] = 0.05

    async def produce() -> None:
        nonlocal resent, sent
        for event in ids:
            record = encode(event)
            resent += await _send_until_acked(producer, h.topic, record.value, record.key) - 1
            sent += 1
            await asyncio.sleep(0.001)

    async def chaos() -> None:
        for p in points:
            while sent < p:
                await asyncio.sleep(0.01)
            t0 = time.monotonic()
            await asyncio.to_thread(broker.stop)  # producer and consumer both mid-stream
            await asyncio.sleep(2)
            await asyncio.to_thread(broker.start)
            back = time.monotonic()
            down_seconds.append(round(back - t0, 1))
            before = sum((await _effect_counts(h)).values())
            while sum((await _effect_counts(h)).values()) == before and sent < events:
                await asyncio.sleep(0.1)
            recovered_seconds.append(round(time.monotonic() - back, 1))

    try:
        await asyncio.gather(produce(), chaos())

        async def all_done() -> bool:
            counts = await _effect_counts(h)
            return all(counts.get(e.id, 0) >= 1 for e in ids)

        await wait_for(all_done, timeout=180, what="every event's effect after the broker restarts")
        await asyncio.sleep(1)  # a duplicate would land now
        counts = await _effect_counts(h)
        lost = sum(1 for e in ids if counts.get(e.id, 0) == 0)
        duplicated = sum(counts.get(e.id, 0) - 1 for e in ids if counts.get(e.id, 0) > 1)
        report.record(
            name,
            tried=events,
            lost=lost,
            duplicated=duplicated,
            seconds=time.monotonic() - started,
            broker_restarts=restarts,
            broker_down_seconds=down_seconds,
            consuming_again_after_seconds=recovered_seconds,
            producer_resends=resent,
            dead_letters=len(await h.dead_letters()),
        )
        assert (lost, duplicated) == (0, 0)
        assert await h.dead_letters() == []
    finally:
        await producer.stop()
        await h.stop()


@pytest.mark.faults
async def test_broker_restart_mid_stream_loses_nothing(
    private_broker: KafkaBroker, pg_url: str, report: Report
) -> None:
    await _run(private_broker, pg_url, report, events=400, restarts=1, name="broker_restart")


@pytest.mark.faults_long
async def test_broker_restarts_during_a_long_stream(private_broker: KafkaBroker, pg_url: str, report: Report) -> None:
    await _run(private_broker, pg_url, report, events=5000, restarts=3, name="broker_restarts_long")
