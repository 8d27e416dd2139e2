"""Delivery on the real broker and real PostgreSQL: retries, DLQ for every kind of poison, no stalls."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from apev_contracts.envelope import encode
from apev_runtime.delivery import dlq
from apev_runtime.delivery.tools import Filter, replay
from apev_runtime.errors import PermanentError, TransientError
from apev_runtime.testing import Harness, job_event, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


@pytest.fixture
async def harness(kafka_bootstrap: str, pg_url: str) -> AsyncIterator[Harness]:
    h = Harness(kafka_bootstrap, pg_url)
    await h.start()
    try:
        yield h
    finally:
        await h.stop()


async def test_transient_twice_then_success_gives_exactly_one_effect(harness: Harness) -> None:
    event = job_event()
    harness.failures[event.id] = [TransientError("databricks 503"), TimeoutError("slow")]
    await harness.send(event)
    marker = job_event()
    await harness.send(marker)
    await wait_for(lambda: _effects_at_least(harness, marker.id, 1), what="the marker event")
    assert harness.calls.count(event.id) == 3  # two failures, one success
    assert await harness.effects(event.id) == 1  # failed attempts rolled back with their inbox row
    assert await harness.dead_letters() == []


async def _effects_at_least(h: Harness, event_id: str, n: int) -> bool:
    return await h.effects(event_id) >= n


def _poison() -> list[tuple[str, bytes, str]]:
    """(name, value, expected error class suffix)."""
    good = json.loads(encode(job_event()).value)

    def variant(**changes: object) -> bytes:
        doc = dict(good)
        for k, v in changes.items():
            if v is None:
                doc.pop(k, None)
            else:
                doc[k] = v
        return json.dumps(doc).encode()

    return [
        ("not json", b"\x00\xffnot json at all", "MalformedEnvelope"),
        ("wrong shape", json.dumps(["an", "array"]).encode(), "MalformedEnvelope"),
        ("missing specversion", variant(specversion=None), "MalformedEnvelope"),
        ("unknown type", variant(type="com.agentprovision.pizza.ordered.v1"), "UnknownEventType"),
        ("future major", variant(type="com.agentprovision.job.requested.v2"), "UnsupportedVersion"),
        ("missing tenant", variant(tenantid=None), "MalformedEnvelope"),
        ("malformed tenant", variant(tenantid="Robert'); DROP TABLE--"), "MalformedEnvelope"),
        ("bad payload", variant(data={**good["data"], "kind": "teleport"}), "InvalidPayload"),
        ("oversize", variant(subject="x" * 70_000), "ValueError"),
    ]


async def test_every_poison_goes_to_the_dlq_with_headers_and_the_partition_moves_on(harness: Harness) -> None:
    sent: dict[str, tuple[int, int]] = {}
    for name, value, _ in _poison():
        sent[name] = await harness.send(raw=value, key=b"acme")
    # Same id, different content: the first is processed, the second is a conflict.
    first = job_event(key="original")
    clash = first.model_copy(update={"data": first.data.model_copy(update={"key": "different"})})
    await harness.send(first)
    sent["conflict"] = await harness.send(clash)
    after = job_event()
    after_pos = await harness.send(after)
    assert {p for p, _ in sent.values()} == {after_pos[0]}  # all on one partition: order matters

    await wait_for(lambda: _effects_at_least(harness, after.id, 1), what="the valid event after the poison")
    letters = {(m.letter.partition, m.letter.offset): m for m in await harness.dead_letters()}
    expected = dict(_poison_expectations())
    for name, pos in sent.items():
        m = letters.get(pos)
        assert m is not None, f"{name} not dead-lettered"
        assert m.letter.topic == harness.topic
        assert m.letter.consumer == harness.group
        assert m.letter.error_class.endswith(expected[name]), (name, m.letter.error_class)
        assert m.letter.error_message
        assert m.letter.attempts >= (0 if name == "oversize" else 1)
        assert m.letter.first_seen <= m.letter.dead_lettered_at
        header_names = {k for k, _ in m.headers}
        for h in (
            dlq.H_TOPIC,
            dlq.H_PARTITION,
            dlq.H_OFFSET,
            dlq.H_CONSUMER,
            dlq.H_ERROR_CLASS,
            dlq.H_ERROR_MESSAGE,
            dlq.H_ATTEMPTS,
            dlq.H_FIRST_SEEN,
            dlq.H_REASON,
        ):
            assert h in header_names, (name, h)
    reasons = {name: letters[pos].letter.reason for name, pos in sent.items()}
    assert reasons["oversize"] is dlq.Reason.OVERSIZE
    assert reasons["conflict"] is dlq.Reason.CONFLICT
    assert reasons["not json"] is dlq.Reason.PERMANENT
    assert "tenantid" in letters[sent["malformed tenant"]].letter.error_message
    assert await harness.effects(first.id) == 1
    assert len(letters) == len(sent)


def _poison_expectations() -> list[tuple[str, str]]:
    return [(n, suffix) for n, _, suffix in _poison()] + [("conflict", "_Conflict")]


async def test_permanent_handler_error_is_not_retried(harness: Harness) -> None:
    event = job_event()
    harness.failures[event.id] = [PermanentError("job spec refused by Databricks: INVALID_PARAMETER_VALUE")]
    await harness.send(event)
    await wait_for(lambda: _dlq_count(harness, 1), what="the dead letter")
    (m,) = await harness.dead_letters()
    assert m.letter.reason is dlq.Reason.PERMANENT and m.letter.attempts == 1
    assert harness.calls.count(event.id) == 1
    assert await harness.effects(event.id) == 0


async def _dlq_count(h: Harness, n: int) -> bool:
    return len(await h.dead_letters()) >= n


async def test_exhausted_retries_dead_letter_then_replay_processes_once(harness: Harness) -> None:
    event = job_event()
    harness.failures[event.id] = [TransientError(f"MCP 503 #{i}") for i in range(harness.delivery.retry_attempts)]
    await harness.send(event)
    await wait_for(lambda: _dlq_count(harness, 1), what="the exhausted event in the DLQ")
    (m,) = await harness.dead_letters()
    assert m.letter.reason is dlq.Reason.TRANSIENT_EXHAUSTED
    assert m.letter.attempts == harness.delivery.retry_attempts
    assert await harness.effects(event.id) == 0

    dry = await replay(harness.bootstrap, harness.dlq, Filter(reason="transient_exhausted"), dry_run=True)
    assert [d.ref for d in dry] == [m.ref]
    assert await harness.effects(event.id) == 0

    # The cause is fixed (no failures left): replay once, processed once; replay again, skipped by the inbox.
    await replay(harness.bootstrap, harness.dlq, Filter(refs=frozenset({m.ref})))
    await wait_for(lambda: _effects_at_least(harness, event.id, 1), what="the replayed event")
    await replay(harness.bootstrap, harness.dlq, Filter(refs=frozenset({m.ref})))
    marker = job_event()
    await harness.send(marker)
    await wait_for(lambda: _effects_at_least(harness, marker.id, 1), what="the marker")
    assert await harness.effects(event.id) == 1
