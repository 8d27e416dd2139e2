"""Insights from runs: a successful agent-insights run yields one `insight.created` per new row of
`gold.agent_insights` (the rows, read back as the admin, are the oracle), and none more on a redelivered
`run.finished`, on a copy of it under another id, or on a run that found nothing new; a row appended later is
published alone by the next run."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import select

from apev_contracts import JobRequested, RunFinished, naming
from apev_contracts.envelope import CloudEvent, decode, new_event
from apev_contracts.ids import insight_id, run_finished_id
from apev_runtime.db.tables import inbox

from .conftest import Stack, provision_reader, sql

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.e2e]

TABLE = f"{naming.catalog_name('tenant-a')}.gold.agent_insights"


class Topic:
    """Everything published on one topic since the module started (its own reader, no group)."""

    def __init__(self, stack: Stack, topic: str) -> None:
        self.stack, self.topic, self.events = stack, topic, list[CloudEvent[Any]]()
        self._stop = asyncio.Event()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(self.stack.prefix + self.topic, bootstrap_servers=self.stack.bootstrap,
                                    auto_offset_reset="earliest", group_id=None)  # fmt: skip
        await consumer.start()
        try:
            while not self._stop.is_set():
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    self.events += [decode(r.value, list(r.headers), topic=self.topic) for r in records]
        finally:
            await consumer.stop()


@pytest.fixture(scope="module")
async def topics(stack: Stack) -> AsyncIterator[dict[str, Topic]]:
    await asyncio.to_thread(provision_reader, stack.ws.client(), "tenant-a")  # serving reads the rows as the reader
    readers = {t: Topic(stack, t) for t in ("insight.created", "run.finished")}
    tasks = [asyncio.create_task(r.run()) for r in readers.values()]
    yield readers
    for r in readers.values():
        r._stop.set()
    await asyncio.gather(*tasks)


async def _consumed(stack: Stack, event_id: str, timeout: float = 60) -> None:
    group = stack.serving.settings.consumer_group
    deadline = time.monotonic() + timeout
    while True:
        async with stack.serving.db.engine.connect() as conn:
            query = select(inbox.c.event_id).where(inbox.c.event_id == event_id, inbox.c.consumer == group)
            if (await conn.execute(query)).first() is not None:
                return
        assert time.monotonic() < deadline, f"serving did not consume {event_id}"
        await asyncio.sleep(0.05)


async def _run_insights(stack: Stack) -> str:
    """One run of the demo agent's insights job (through the jobs service); its run id once it succeeded."""
    w = stack.ws.client()
    job = next(iter(w.jobs.list(name="ap:tenant-a:agent-insights:demo")))
    before = {r.run_id for r in w.jobs.list_runs(job_id=job.job_id)}
    data = JobRequested(
        tenant_id="tenant-a", kind="agent-insights", key="demo", agent_id="demo", action={"type": "run"}
    )
    await stack.send(new_event(data, tenant_id="tenant-a", source="tests/serving"))
    for _ in range(1200):
        new = [r for r in w.jobs.list_runs(job_id=job.job_id, completed_only=True) if r.run_id not in before]
        if new:
            assert new[0].state is not None and new[0].state.result_state is not None
            assert new[0].state.result_state.value == "SUCCESS", new[0].state
            return str(new[0].run_id)
        await asyncio.sleep(0.1)
    raise AssertionError("the insights run did not finish")


def _rows(stack: Stack) -> dict[str, dict[str, Any]]:
    names = ["insight_id", "agent_id", "target_system", "entity_type", "entity_id", "changes", "reason", "confidence"]
    rows = sql(stack.ws.client(), f"SELECT {', '.join(names)} FROM {TABLE} WHERE agent_id = 'demo'")
    return {r[0]: dict(zip(names, r, strict=True)) for r in rows if r[0] is not None}


async def _settle(topic: Topic, count: int, timeout: float = 30) -> list[CloudEvent[Any]]:
    """The topic's events once `count` arrived, and after a further moment in which no other may arrive."""
    deadline = time.monotonic() + timeout
    while len(topic.events) < count:
        assert time.monotonic() < deadline, f"{len(topic.events)} of {count} {topic.topic} events"
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.5)  # the relay publishes within milliseconds; anything extra would show by now
    return list(topic.events)


async def _published(topic: Topic, run_id: str, timeout: float = 30) -> CloudEvent[RunFinished]:
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in topic.events if e.data.run_id == run_id]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no run.finished for run {run_id}"
        await asyncio.sleep(0.05)


async def test_one_insight_created_per_new_row_and_none_more(
    stack: Stack, demo: dict[str, Any], topics: dict[str, Topic]
) -> None:
    created = topics["insight.created"]
    run_id = await _run_insights(stack)
    await _consumed(stack, run_finished_id(run_id, 0))
    rows = _rows(stack)
    assert len(rows) == 2  # the demo agent's two anomalies over the seeded gold
    events = await _settle(created, len(rows))
    assert len(events) == len(rows)
    for e in events:
        row = rows[e.data.insight_id]
        assert e.id == insight_id("tenant-a", "demo", row["insight_id"]) and e.tenantid == "tenant-a"
        assert (e.data.target_system, e.data.entity_type, e.data.entity_id, e.data.reason) == (
            row["target_system"], row["entity_type"], row["entity_id"], row["reason"]
        )  # fmt: skip
        assert e.data.changes == json.loads(str(row["changes"])) and e.data.confidence == float(row["confidence"])

    # The same run.finished again, and a copy under a new id (a second notification of the same run): nothing new.
    finished = await _published(topics["run.finished"], run_id)
    copy: CloudEvent[RunFinished] = new_event(finished.data, tenant_id="tenant-a", source="tests/serving")
    await stack.send(finished, copy)
    await _consumed(stack, copy.id)
    # A second run that finds nothing new.
    second = await _run_insights(stack)
    await _consumed(stack, run_finished_id(second, 0))
    assert len(await _settle(created, len(rows))) == len(rows)
    assert _rows(stack).keys() == rows.keys()

    # A row appended since (as another run of the agent would): the next run publishes it, and only it.
    sql(
        stack.ws.client(),
        f"INSERT INTO {TABLE} (insight_id, agent_id, run_id, kind, target_system, entity_type, entity_id, changes, "
        "reason, confidence, review_required, created_at) VALUES ('manual-1', 'demo', '1', 'note', 'netsuite', "
        "'accounts', 'ACC-7', '{\"MEMO\": \"check\"}', 'Planted by the test', 0.7, false, current_timestamp())",
    )
    third = await _run_insights(stack)
    await _consumed(stack, run_finished_id(third, 0))
    events = await _settle(created, len(rows) + 1)
    assert len(events) == len(rows) + 1 and len({e.id for e in events}) == len(events)
    assert events[-1].data.insight_id == "manual-1" and events[-1].data.changes == {"MEMO": "check"}
