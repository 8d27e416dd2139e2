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
            await producer.send_and_wait(topic, value=value, key=key)
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
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap, enable_idempotence=True, request_timeout_ms=5000, retry_backoff_ms=200
    )
    await producer.start()
    ids = [job_event(key=f"k{i % 7}") for i in range(events)]
    resent = 0
    down_seconds: list[float] = []
    try:
        points = {events * (n + 1) // (restarts + 1) for n in range(restarts)}
        for i, event in enumerate(ids):
            if i in points:
                # The consumer has work in flight: stop the broker under it, leave it down, bring it back.
                t0 = time.monotonic()
                await asyncio.to_thread(broker.stop)
                await asyncio.sleep(2)
                await asyncio.to_thread(broker.start)
                down_seconds.append(round(time.monotonic() - t0, 1))
            record = encode(event)
            resent += await _send_until_acked(producer, h.topic, record.value, record.key) - 1

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
