"""Regression tests, on the real broker, for the six delivery defects an audit reproduced (issue 13).

1. a header that is not UTF-8 or has no value lost a valid event (no dead letter, offset moved on);
2. an oversize (compressed) event stalled its partition: its whole copy did not fit the DLQ;
3. two outbox relays on one database published every row twice and out of order;
4. one unsendable outbox row blocked every later row;
5. on SQLite a slow handler held the database-wide write lock and stalled other consumers;
6. dead letters rewrote the original headers, so a replay could decode differently.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from sqlalchemy import select, text

from apev_contracts import JobRequested
from apev_contracts.envelope import CloudEvent, decode, encode, new_event, traceparent_of
from apev_contracts.topics import JOB_REQUESTED, dlq_topic
from apev_runtime import outbox
from apev_runtime.broker import make_broker, subscriber
from apev_runtime.db import migrate
from apev_runtime.db.engine import Database, create_database
from apev_runtime.db.tables import outbox as outbox_table
from apev_runtime.delivery import dlq
from apev_runtime.delivery.middleware import Tx
from apev_runtime.delivery.tools import Filter, replay
from apev_runtime.errors import TransientError
from apev_runtime.outbox import EventTooLarge, OutboxRelay
from apev_runtime.settings import ServiceSettings
from apev_runtime.testing import Harness, create_topics, job_event, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

OTHER_LANE = "other.lane"  # a private topic of this test (not in the contracts' registry)


@pytest.fixture
async def harness(kafka_bootstrap: str, pg_url: str) -> AsyncIterator[Harness]:
    h = Harness(kafka_bootstrap, pg_url)
    await h.start()
    try:
        yield h
    finally:
        await h.stop()


async def _has_effect(h: Harness, event_id: str) -> bool:
    return await h.effects(event_id) >= 1


# 1 -------------------------------------------------------------------------------------------------------


async def test_headers_that_are_not_utf8_or_null_never_lose_an_event(harness: Harness) -> None:
    valid = job_event()
    record = encode(valid)
    junk = [*record.headers, ("x-junk", b"\xff\xfe\xfa"), ("x-null", None)]
    await harness.producer.send_and_wait(harness.topic, record.value, key=record.key, headers=junk)  # type: ignore[arg-type]
    # The type header itself unreadable: the event cannot be trusted, so it is dead-lettered, bytes kept.
    bad = job_event()
    bad_record = encode(bad)
    bad_headers = [(k, b"\xff\xfe" if k == "ce_type" else v) for k, v in bad_record.headers]
    partition, offset = await harness.send(raw=bad_record.value, key=bad_record.key, headers=bad_headers)
    after = job_event()
    await harness.send(after)

    await wait_for(lambda: _has_effect(harness, after.id), what="the event after the unreadable headers")
    assert await harness.effects(valid.id) == 1  # processed: the unreadable headers were ignored
    assert await harness.effects(bad.id) == 0
    (letter,) = await harness.dead_letters()
    assert (letter.letter.partition, letter.letter.offset) == (partition, offset)
    assert letter.letter.reason is dlq.Reason.PERMANENT and "ce_type" in letter.letter.error_message
    assert list(dlq.strip_dlq_headers(letter.headers)) == bad_headers  # the raw bytes, as they arrived
    assert letter.value == bad_record.value


# 2 -------------------------------------------------------------------------------------------------------


async def test_oversize_compressed_event_is_dead_lettered_bounded_and_the_partition_moves_on(
    harness: Harness,
) -> None:
    event = job_event()
    doc = json.loads(encode(event).value)
    doc["subject"] = "padding"
    doc["x_padding"] = "ab" * 750_000  # 1.5 MiB, compresses to a few KiB: the broker accepts it
    value = json.dumps(doc).encode()
    assert len(value) > 1_500_000
    producer = AIOKafkaProducer(
        bootstrap_servers=harness.bootstrap, compression_type="gzip", max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    try:
        meta = await producer.send_and_wait(harness.topic, value, key=b"acme", headers=[("ce_type", b"x")])
    finally:
        await producer.stop()
    after = job_event()
    await harness.send(after)

    await wait_for(lambda: _has_effect(harness, after.id), timeout=30, what="the event after the oversize one")
    (letter,) = await harness.dead_letters()
    assert (letter.letter.partition, letter.letter.offset) == (meta.partition, meta.offset)
    assert letter.letter.reason is dlq.Reason.OVERSIZE
    headers = dict(letter.headers)
    assert headers[dlq.H_ORIGINAL_BYTES] == str(len(value)).encode()
    assert value.startswith(letter.value) and 0 < len(letter.value) <= harness.delivery.dlq_max_bytes
    assert headers["ce_type"] == b"x"  # the original headers are kept


async def test_replay_refuses_a_cut_dead_letter(harness: Harness) -> None:
    value = json.dumps({"specversion": "1.0", "pad": "z" * 600_000}).encode()
    producer = AIOKafkaProducer(bootstrap_servers=harness.bootstrap, compression_type="gzip")
    await producer.start()
    try:
        await producer.send_and_wait(harness.topic, value, key=b"acme")
    finally:
        await producer.stop()
    await wait_for(lambda: _letters(harness, 1), what="the dead letter")
    with pytest.raises(ValueError, match="cut to fit"):
        await replay(harness.bootstrap, harness.dlq, Filter(reason="oversize"))


async def _letters(h: Harness, n: int) -> bool:
    return len(await h.dead_letters()) >= n


# 3 -------------------------------------------------------------------------------------------------------


class _Prefixed:
    def __init__(self, producer: AIOKafkaProducer, prefix: str) -> None:
        self.producer, self.prefix = producer, prefix

    async def send_and_wait(
        self, topic: str, value: bytes, key: bytes | None = None, headers: list[tuple[str, bytes]] | None = None
    ) -> object:
        return await self.producer.send_and_wait(self.prefix + topic, value=value, key=key, headers=headers)


async def _outbox_db(kind: str, pg_url: str, tmp_path: Path, prefix: str) -> Database:
    if kind == "postgres":
        db = create_database(pg_url, prefix.rstrip("."))
    else:
        db = create_database(f"sqlite+aiosqlite:///{tmp_path / 'relay.db'}")
    await migrate.upgrade(db)
    return db


async def _records(bootstrap: str, topic: str) -> list[tuple[int, str]]:
    """(partition, event id) of every record on `topic`, in partition order then offset order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: list[tuple[int, str]] = []
        while any([await consumer.position(tp) < end[tp] for tp in tps]):
            for tp, batch in (await consumer.getmany(timeout_ms=500)).items():
                out += [(tp.partition, json.loads(r.value)["id"]) for r in batch]
        return sorted(out, key=lambda x: x[0])  # stable: offsets stay in order within a partition
    finally:
        await consumer.stop()


@pytest.mark.parametrize("kind", ["postgres", "sqlite"])
async def test_two_relays_on_one_database_publish_each_row_once_in_order(
    kind: str, kafka_bootstrap: str, pg_url: str, tmp_path: Path
) -> None:
    prefix = f"r{uuid.uuid4().hex[:8]}."
    topic = prefix + JOB_REQUESTED
    await create_topics(kafka_bootstrap, [topic], partitions=3)
    db = await _outbox_db(kind, pg_url, tmp_path, prefix)
    events = [job_event(tenant=f"tenant-{i % 7}") for i in range(200)]
    async with db.transaction() as tx:
        for event in events:
            await outbox.add(tx, event)
    producers = [AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True) for _ in range(2)]
    for p in producers:
        await p.start()
    relays = [OutboxRelay(db, _Prefixed(p, prefix), batch_size=20, idle_seconds=0.05) for p in producers]
    stop = asyncio.Event()
    try:
        tasks = [asyncio.create_task(r.run(stop)) for r in relays]
        await wait_for(lambda: _all_published(db), timeout=60, what="every outbox row published")
        stop.set()
        await asyncio.gather(*tasks)
        records = await _records(kafka_bootstrap, topic)
    finally:
        for p in producers:
            await p.stop()
        await db.dispose()
    ids = [event_id for _, event_id in records]
    assert len(ids) == 200 and set(ids) == {e.id for e in events}  # each row once
    order = {e.id: i for i, e in enumerate(events)}
    for partition in {p for p, _ in records}:
        seq = [order[i] for p, i in records if p == partition]
        assert seq == sorted(seq), f"partition {partition} out of order"


async def _all_published(db: Database) -> bool:
    async with db.engine.connect() as conn:
        left = (
            await conn.execute(select(outbox_table.c.id).where(outbox_table.c.published_at.is_(None)).limit(1))
        ).first()
    return left is None


# 4 -------------------------------------------------------------------------------------------------------


def _huge_job_request(tenant: str = "acme") -> CloudEvent[Any]:
    """A contract-valid `job.requested` that encodes to about 2 MB (100 tasks of 20 large parameters)."""
    spec = {
        "tasks": [
            {
                "task_key": f"t{i}",
                "python_task": {"python_file": "/Workspace/apev/x.py", "parameters": ["p" * 1000] * 20},
            }
            for i in range(100)
        ]
    }
    data = JobRequested.model_validate({"tenant_id": tenant, "kind": "adhoc", "key": "huge", "job": spec})
    return new_event(data, tenant_id=tenant, source="tests/defects")


async def test_outbox_refuses_an_event_over_the_limit_when_it_is_written(pg_url: str) -> None:
    db = create_database(pg_url, f"big{uuid.uuid4().hex[:8]}")
    await migrate.upgrade(db)
    huge = _huge_job_request()
    assert len(encode(huge).value) > 1_900_000
    try:
        with pytest.raises(EventTooLarge, match=r"job\.requested.*over the limit of 1048576 bytes"):
            async with db.transaction() as tx:
                await outbox.add(tx, huge)
    finally:
        await db.dispose()


async def test_an_unsendable_outbox_row_is_parked_and_later_rows_go_out(kafka_bootstrap: str, pg_url: str) -> None:
    prefix = f"p{uuid.uuid4().hex[:8]}."
    topic = prefix + JOB_REQUESTED
    await create_topics(kafka_bootstrap, [topic], partitions=3)
    db = create_database(pg_url, prefix.rstrip("."))
    await migrate.upgrade(db)
    huge, after = _huge_job_request(), job_event()
    async with db.transaction() as tx:  # written by an older version, or with a larger limit configured
        await outbox.add(tx, huge, max_bytes=10_000_000)
        await outbox.add(tx, after)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        relay = OutboxRelay(db, _Prefixed(producer, prefix))
        assert await relay.publish_pending() == 1
        assert await relay.publish_pending() == 0  # the parked row is not retried at the head of the queue
        await relay.close()
        async with db.engine.connect() as conn:
            rows = {
                r.event_id: r
                for r in await conn.execute(
                    select(outbox_table.c.event_id, outbox_table.c.parked_at, outbox_table.c.last_error)
                )
            }
        records = await _records(kafka_bootstrap, topic)
    finally:
        await producer.stop()
        await db.dispose()
    assert rows[huge.id].parked_at is not None and "MessageSizeTooLarge" in rows[huge.id].last_error
    assert rows[after.id].parked_at is None
    assert [i for _, i in records] == [after.id]
    assert relay.metrics.parked.labels(JOB_REQUESTED)._value.get() >= 1


# 5 -------------------------------------------------------------------------------------------------------


async def test_on_sqlite_a_handler_waiting_outside_holds_no_lock_over_other_consumers(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = f"s{uuid.uuid4().hex[:8]}."
    await create_topics(
        kafka_bootstrap, [prefix + t for t in (JOB_REQUESTED, OTHER_LANE)] + [dlq_topic(prefix + JOB_REQUESTED)], 1
    )
    settings = ServiceSettings(
        service_name="lock-test",
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_topic_prefix=prefix,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}",
    )
    db = create_database(settings.resolved_database_url())
    await migrate.upgrade(db)
    async with db.transaction() as tx:
        await tx.execute(text("CREATE TABLE effects (event_id text, at real)"))
    broker = make_broker(settings, db=db)
    hold = 5.0
    waiting = asyncio.Event()

    @subscriber(broker, JOB_REQUESTED, group_id=f"{prefix}slow", outside_calls=True)
    async def slow(event: CloudEvent[JobRequested], tx: Tx) -> None:
        await tx.execute(text("INSERT INTO effects VALUES (:id, :at)"), {"id": event.id + ":requested", "at": 0})
        await tx.commit()  # the step is durable; no write lock is held during the outside call
        waiting.set()
        await asyncio.sleep(hold)  # e.g. Databricks run-now
        await tx.execute(text("INSERT INTO effects VALUES (:id, :at)"), {"id": event.id, "at": time.monotonic()})

    @subscriber(broker, OTHER_LANE, group_id=f"{prefix}fast")
    async def fast(event: CloudEvent[Any], tx: Tx) -> None:
        await tx.execute(text("INSERT INTO effects VALUES (:id, :at)"), {"id": event.id, "at": time.monotonic()})

    await broker.start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        slow_event = job_event()
        rec = encode(slow_event)
        await producer.send_and_wait(prefix + rec.topic, rec.value, key=rec.key, headers=rec.headers)
        await asyncio.wait_for(waiting.wait(), 30)
        sent = time.monotonic()
        other = job_event()
        rec = encode(other)
        await producer.send_and_wait(prefix + OTHER_LANE, rec.value, key=rec.key, headers=rec.headers)
        await wait_for(lambda: _sqlite_effect(db, other.id), timeout=hold + 10, what="the other consumer's event")
        flowed_after = time.monotonic() - sent
        await wait_for(lambda: _sqlite_effect(db, slow_event.id), timeout=hold + 20, what="the slow event")
    finally:
        await producer.stop()
        await broker.stop()
    async with db.engine.connect() as conn:
        ids = [r[0] for r in await conn.execute(text("SELECT event_id FROM effects"))]
    await db.dispose()
    assert flowed_after < hold / 2, f"the other consumer waited {flowed_after:.2f}s for the slow handler"
    assert sorted(ids) == sorted([slow_event.id + ":requested", slow_event.id, other.id])


async def _sqlite_effect(db: Database, event_id: str) -> bool:
    async with db.engine.connect() as conn:
        return bool(
            (await conn.execute(text("SELECT count(*) FROM effects WHERE event_id = :id"), {"id": event_id})).scalar()
        )


# 6 -------------------------------------------------------------------------------------------------------


async def test_dead_letters_keep_headers_byte_for_byte_and_a_replay_decodes_as_the_original(
    harness: Harness,
) -> None:
    event = job_event()
    harness.failures[event.id] = [TransientError(f"503 #{i}") for i in range(harness.delivery.retry_attempts)]
    record = encode(event, traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    headers = [*record.headers, ("x-tag", b"one"), ("x-tag", b"two"), ("x-bin", b"\x00\xff")]
    await harness.producer.send_and_wait(harness.topic, record.value, key=record.key, headers=headers)
    await wait_for(lambda: _letters(harness, 1), what="the exhausted event")
    (letter,) = await harness.dead_letters()
    original = [(k, v) for k, v in letter.headers if not k.startswith(dlq.PREFIX)]
    assert original == headers  # same names, repeats, bytes and order; nothing added but x-apev-dlq-*
    assert [k for k, _ in letter.headers[len(headers) :]] == [k for k, _ in letter.headers if k.startswith(dlq.PREFIX)]
    assert letter.value == record.value and letter.key == record.key

    await replay(harness.bootstrap, harness.dlq, Filter(refs=frozenset({letter.ref})))
    await wait_for(lambda: _has_effect(harness, event.id), what="the replayed event")
    replayed = await _last_record(harness)
    assert replayed.value == record.value
    assert dlq.strip_dlq_headers(list(replayed.headers)) == headers
    again = decode(replayed.value, list(replayed.headers), topic=JOB_REQUESTED)
    assert again == decode(record.value, headers, topic=JOB_REQUESTED)
    assert traceparent_of(list(replayed.headers)) == traceparent_of(headers)


async def _last_record(h: Harness) -> Any:
    key_partition = DefaultPartitioner()(b"acme", [0, 1], [0, 1])
    consumer = AIOKafkaConsumer(bootstrap_servers=h.bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(h.topic, key_partition)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, end - 1)
        (batch,) = (await consumer.getmany(tp, timeout_ms=5000)).values()
        return batch[-1]
    finally:
        await consumer.stop()


# A batch handled one at a time stays within its time budget, and still makes progress -------------------


async def test_a_slow_fallback_leaves_the_rest_of_the_batch_to_the_next_poll(kafka_bootstrap: str, pg_url: str) -> None:
    h = Harness(kafka_bootstrap, pg_url)
    h.delivery.batch_time_budget_seconds = 0.5
    events = [job_event() for _ in range(4)]
    h.failures[events[0].id] = [TransientError("503")]  # fails the batch attempt: the rest go one at a time
    for e in events:
        h.slow[e.id] = 0.3  # each handled alone takes longer than the budget allows for all four
    await create_topics(kafka_bootstrap, [h.topic, h.dlq], partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:  # a backlog before the consumer starts, so the four arrive in one batch
        for e in events:
            rec = encode(e)
            await producer.send_and_wait(h.topic, rec.value, key=rec.key, headers=rec.headers)
    finally:
        await producer.stop()
    with structlog.testing.capture_logs() as logs:
        await h.start()
        try:
            for e in events:
                await wait_for(lambda e=e: _has_effect(h, e.id), timeout=30, what="every event's effect")
            assert [await h.effects(e.id) for e in events] == [1, 1, 1, 1]
            assert await h.dead_letters() == []
        finally:
            await h.stop()
    assert any(entry["event"] == "batch_time_budget_spent" for entry in logs)
