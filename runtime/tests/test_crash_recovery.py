"""A consumer SIGKILLed after its effect and before its offset commit: redelivered, and the inbox holds."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from sqlalchemy import text

from apev_contracts.envelope import encode
from apev_runtime.testing import Harness, job_event, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

WORKER = Path(__file__).with_name("kill_worker.py")


async def _start_worker(h: Harness, kill: bool, **extra: str) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "BOOTSTRAP": h.bootstrap,
        "PREFIX": h.prefix,
        "GROUP": h.group + "-worker",
        "DB_URL": h.pg_url,
        "DB_SCHEMA": h.settings().database_schema or "",
        "KILL_AFTER_EFFECT": "1" if kill else "0",
        **extra,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL if extra else asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        while (line := await proc.stdout.readline()) != b"ready\n":
            assert line, f"worker exited early: {(await proc.stderr.read()).decode()[-2000:]}"  # type: ignore[union-attr]
    return proc


async def _committed(h: Harness, group: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=h.bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if isinstance(tp, TopicPartition)}


async def test_sigkill_between_effect_and_commit_redelivers_without_a_second_effect(
    kafka_bootstrap: str, pg_url: str
) -> None:
    h = Harness(kafka_bootstrap, pg_url)
    await h.start()  # creates topics, schema, effects table (its own in-process consumer uses another group)
    try:
        event = job_event()
        partition, offset = await h.send(event)

        first = await _start_worker(h, kill=True)
        assert await asyncio.wait_for(first.wait(), 60) == -9  # it killed itself after the effect
        out = (await first.stdout.read()).decode()  # type: ignore[union-attr]
        assert await h.effects(event.id) == 2  # the harness's own consumer (1) + the worker's one effect (1)
        assert (await _committed(h, h.group + "-worker")).get(partition, -1) <= offset  # never committed

        second = await _start_worker(h, kill=False)
        try:
            await wait_for(
                lambda: _offset_committed(h, h.group + "-worker", partition, offset + 1), what="the worker's commit"
            )
        finally:
            second.terminate()
            await asyncio.wait_for(second.wait(), 30)
        log = (await second.stderr.read()).decode()  # type: ignore[union-attr]
        assert "duplicate_skipped" in log and event.id in log  # redelivered, recognised by the inbox
        assert "effect written" in out
        assert await h.effects(event.id) == 2  # still one effect from the worker's group
    finally:
        await h.stop()


async def _offset_committed(h: Harness, group: str, partition: int, at_least: int) -> bool:
    return (await _committed(h, group)).get(partition, -1) >= at_least


async def test_sigkill_in_the_middle_of_a_batch_of_500_leaves_every_effect_exactly_once(
    kafka_bootstrap: str, pg_url: str
) -> None:
    h = Harness(kafka_bootstrap, pg_url)
    await h.start()
    try:
        events = [job_event(tenant=f"tenant-{i % 10}") for i in range(500)]
        for event in events:  # a backlog, so the worker's fetches are large batches
            record = encode(event)
            await h.producer.send(h.topic, record.value, key=record.key, headers=record.headers)
        await h.producer.flush()
        group = h.group + "-batch"

        first = await _start_worker(h, kill=False, GROUP=group, KILL_AT_CALL="250")
        assert await asyncio.wait_for(first.wait(), 60) == -9
        out = (await first.stdout.read()).decode()  # type: ignore[union-attr]
        assert "killing myself inside handler call 250" in out
        assert await _worker_effects(h) < 500  # the batch in progress was rolled back

        second = await _start_worker(h, kill=False, GROUP=group)
        try:
            await wait_for(lambda: _all_effects(h, 500), timeout=60, what="every event's effect")
            await wait_for(lambda: _total_committed(h, group, 500), timeout=30, what="the offsets")
        finally:
            second.terminate()
            await asyncio.wait_for(second.wait(), 30)
        async with h.db.engine.connect() as conn:
            counts = dict(
                (
                    await conn.execute(
                        text("SELECT event_id, count(*) FROM effects WHERE note = 'worker' GROUP BY event_id")
                    )
                ).all()
            )
        assert set(counts) == {e.id for e in events}
        assert set(counts.values()) == {1}  # exactly once each
    finally:
        await h.stop()


async def _worker_effects(h: Harness) -> int:
    async with h.db.engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM effects WHERE note = 'worker'"))).scalar_one())


async def _all_effects(h: Harness, n: int) -> bool:
    return await _worker_effects(h) >= n


async def _total_committed(h: Harness, group: str, n: int) -> bool:
    return sum(max(o, 0) for o in (await _committed(h, group)).values()) >= n


async def test_static_membership_a_sigkilled_replica_restarted_under_its_name_consumes_at_once(
    kafka_bootstrap: str, pg_url: str
) -> None:
    """`KAFKA_GROUP_INSTANCE_ID`: the restarted replica rejoins as the same static member, so its first event is
    handled well within the session timeout the dead member's partitions would otherwise wait for."""
    h = Harness(kafka_bootstrap, pg_url)
    await h.start()
    group = h.group + "-static"
    extra = {"GROUP": group, "KAFKA_GROUP_INSTANCE_ID": "replica-0", "KAFKA_SESSION_TIMEOUT_MS": "60000"}
    try:
        first = await _start_worker(h, kill=False, **extra)
        before = job_event()
        await h.send(before)
        await wait_for(lambda: _worker_effect(h, before.id), timeout=60, what="the first replica's effect")
        admin = AIOKafkaAdminClient(bootstrap_servers=h.bootstrap)
        await admin.start()
        try:
            described = await admin.describe_consumer_groups([group])
        finally:
            await admin.close()
        assert "replica-0:" in repr(described)  # the member carries its static name
        first.kill()
        assert await first.wait() == -9

        killed = time.monotonic()
        second = await _start_worker(h, kill=False, **extra)
        ready = time.monotonic()
        try:
            after = job_event()
            await h.send(after)
            await wait_for(lambda: _worker_effect(h, after.id), timeout=90, what="the restarted replica's effect")
            from_ready, from_kill = time.monotonic() - ready, time.monotonic() - killed
        finally:
            second.terminate()
            await asyncio.wait_for(second.wait(), 30)
        # Dynamic membership would wait for the dead member's 60 s session (from the kill) before a rebalance.
        assert from_ready < 15 and from_kill < 55, f"{from_ready:.1f} s after ready, {from_kill:.1f} s after the kill"
    finally:
        await h.stop()


async def _worker_effect(h: Harness, event_id: str) -> bool:
    async with h.db.engine.connect() as conn:
        n = (
            await conn.execute(
                text("SELECT count(*) FROM effects WHERE note = 'worker' AND event_id = :id"), {"id": event_id}
            )
        ).scalar_one()
    return int(n) >= 1
