"""Delivery edge cases on the real broker: a failing DLQ, an open circuit, trace context, the DLQ commands."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faststream import BaseMiddleware
from typer.testing import CliRunner

from apev_contracts import JobRequested
from apev_contracts.envelope import CloudEvent, encode
from apev_contracts.ids import caused_event_id
from apev_runtime.app import BrokerProducer
from apev_runtime.cli import app as cli
from apev_runtime.events import follow_up
from apev_runtime.http import CircuitOpenError
from apev_runtime.outbox import OutboxRelay
from apev_runtime.testing import Harness, job_event, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def circuit_open(seconds: float) -> CircuitOpenError:
    return CircuitOpenError("mcp.local:443", datetime.now(UTC) + timedelta(seconds=seconds), seconds)


class FailDlqPublishes(BaseMiddleware):
    """Makes the first publish to a `.dlq` topic fail, as if the DLQ were unreachable."""

    failures_left = 1
    attempts = 0

    async def publish_scope(self, call_next: Any, cmd: Any) -> Any:
        if cmd.destination.endswith(".dlq"):
            FailDlqPublishes.attempts += 1
            if FailDlqPublishes.failures_left > 0:
                FailDlqPublishes.failures_left -= 1
                raise ConnectionError("DLQ unreachable (injected)")
        return await call_next(cmd)


@pytest.fixture
async def harness(kafka_bootstrap: str, pg_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    h = Harness(kafka_bootstrap, pg_url, extra_middlewares=list(getattr(request, "param", [])))
    h.delivery.dlq_publish_backoff_seconds = 0.1
    await h.start()
    try:
        yield h
    finally:
        await h.stop()


@pytest.mark.parametrize("harness", [[FailDlqPublishes]], indirect=True)
async def test_message_is_redelivered_when_the_dlq_publish_fails(harness: Harness) -> None:
    FailDlqPublishes.failures_left, FailDlqPublishes.attempts = 1, 0
    partition, offset = await harness.send(raw=b"{not json", key=b"acme")
    after = job_event()
    await harness.send(after)
    await wait_for(lambda: _effects(harness, after.id), what="the event after the poison")
    letters = await harness.dead_letters()
    assert [(m.letter.partition, m.letter.offset) for m in letters] == [(partition, offset)]  # once, not lost
    assert FailDlqPublishes.attempts == 2  # failed, sought back, redelivered, dead-lettered


async def _effects(h: Harness, event_id: str) -> bool:
    return await h.effects(event_id) >= 1


async def test_open_circuit_pauses_instead_of_dead_lettering(harness: Harness) -> None:
    event = job_event()
    harness.failures[event.id] = [circuit_open(0.3), circuit_open(0.3)]
    started = time.monotonic()
    await harness.send(event)
    await wait_for(lambda: _effects(harness, event.id), what="the event after the circuit closed")
    assert time.monotonic() - started >= 0.3
    assert harness.calls.count(event.id) == 3
    assert await harness.effects(event.id) == 1
    assert await harness.dead_letters() == []


async def test_trace_context_flows_from_consumed_to_published_event(harness: Harness) -> None:
    def caused(event: CloudEvent[Any]) -> CloudEvent[Any]:
        data = JobRequested(tenant_id=event.tenantid, kind="adhoc", key="follow-up", action={"type": "run"})  # type: ignore[arg-type]
        return follow_up(event, data, source="tests", parts=("follow-up",))

    harness.follow_up = caused
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    event = job_event(correlation_id=f"chain-{uuid.uuid4().hex[:8]}")
    expected_id = caused_event_id("job.requested", event.id, "follow-up")
    record = encode(event, traceparent=f"00-{trace_id}-00f067aa0ba902b7-01")
    await harness.producer.send_and_wait(harness.topic, record.value, key=record.key, headers=record.headers)
    await wait_for(lambda: _effects(harness, event.id), what="the traced event")
    relay = OutboxRelay(harness.db, BrokerProducer(harness.broker, harness.prefix))
    assert await relay.publish_pending() == 1

    consumer = AIOKafkaConsumer(bootstrap_servers=harness.bootstrap, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(harness.topic, p) for p in (0, 1)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: dict[str, Any] | None = None
        deadline = time.monotonic() + 20
        while found is None and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    if json.loads(r.value)["id"] == expected_id:
                        found = {"headers": dict(r.headers), "doc": json.loads(r.value)}
    finally:
        await consumer.stop()
    assert found is not None
    traceparent = found["headers"]["traceparent"].decode()
    assert traceparent.split("-")[1] == trace_id  # same trace, new span
    assert found["doc"]["correlationid"] == event.correlationid != event.id  # the chain's id, not the cause's
    assert found["doc"]["tenantid"] == event.tenantid


async def test_dlq_commands_list_and_replay_dry_run(harness: Harness) -> None:
    partition, offset = await harness.send(raw=b"[]", key=b"acme")
    await wait_for(lambda: _has_letters(harness), what="the dead letter")
    runner = CliRunner()
    listed = await asyncio.to_thread(
        runner.invoke, cli, ["dlq", "list", harness.dlq, "-b", harness.bootstrap, "--json"]
    )
    assert listed.exit_code == 0, listed.output
    (row,) = [json.loads(line) for line in listed.output.splitlines()]
    assert row["ref"] == f"{partition}:{offset}" and row["reason"] == "permanent"
    assert row["error_class"].endswith("MalformedEnvelope")
    dry = await asyncio.to_thread(
        runner.invoke, cli, ["dlq", "replay", harness.dlq, "-b", harness.bootstrap, "--all", "--dry-run"]
    )
    assert dry.exit_code == 0 and "would replay 1 message(s)" in dry.output
    refused = await asyncio.to_thread(runner.invoke, cli, ["dlq", "replay", harness.dlq, "-b", harness.bootstrap])
    assert refused.exit_code != 0 and "choose messages" in refused.output


async def _has_letters(h: Harness) -> bool:
    return bool(await h.dead_letters())


async def test_stop_waits_for_in_flight_work_and_commits_it(kafka_bootstrap: str, pg_url: str) -> None:
    h = Harness(kafka_bootstrap, pg_url)
    await h.start()
    event = job_event()
    h.slow[event.id] = 1.5
    try:
        partition, offset = await h.send(event)
        await wait_for(lambda: _started(h, event.id), what="the handler to start")
        stopped_at = time.monotonic()
        await h.broker.stop()  # what SIGTERM does: the in-flight handler finishes, commits, then the consumer closes
        assert time.monotonic() - stopped_at >= 1.0
        assert await h.effects(event.id) == 1
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(h.group)
        finally:
            await admin.close()
        assert {tp.partition: m.offset for tp, m in offsets.items()}.get(partition, -1) >= offset + 1
    finally:
        await h.producer.stop()
        await h.db.dispose()


async def _started(h: Harness, event_id: str) -> bool:
    return event_id in h.calls
