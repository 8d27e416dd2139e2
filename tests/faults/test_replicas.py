"""Two replicas of a service side by side on one consumer group, one SIGKILLed mid-stream and not restarted: the
survivor takes its partitions over (after the session timeout, 6 s here), every event has exactly one effect,
and what the service published through its outbox keeps the order of its inputs per key.

Write-back over several tenants (a key each, spread over the partitions): changes in the MCP simulator, and
`writeback.outcome` per tenant in the order of that tenant's insights. Monitor: rows per event. Jobs: jobs in
the workspace per request. Ingest: one first-run `job.requested` per data source (and its MCP integration).
Serving: one `insight.created` per insights run (see `service_procs` for what each target counts).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from faults_report import Report
from service_procs import Ingest, Jobs, Monitor, Serving, Stand, Target, Writeback, until

from apev_contracts.envelope import decode
from apev_workspace.testing import running_workspace, upload

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

SESSION_MS = 6000


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with running_workspace(tmp_path_factory.mktemp("ws-replicas"), executor_slots=2) as ws:
        upload(ws.client(), f"{Jobs.tasks}/ok.py", "print('fine')")
        yield ws


@pytest.fixture
async def stand(
    kafka_bootstrap: str, pg_url: str, tmp_path: Path, mcp_sim: Any, alert_sinks: Any, service_logs: list[str],
    workspace: Any,
) -> AsyncIterator[Stand]:  # fmt: skip
    s = Stand(kafka_bootstrap, pg_url, tmp_path, workspace, mcp_sim, alert_sinks, service_logs)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def _outcomes(stand: Stand, want: set[str], timeout: float = 60) -> list[tuple[str, str]]:
    """(tenant, insight id) of every `writeback.outcome` in topic order per partition, until all of `want`."""
    consumer = AIOKafkaConsumer(
        stand.prefix + "writeback.outcome", bootstrap_servers=stand.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    out: list[tuple[str, str]] = []
    try:
        deadline = time.monotonic() + timeout
        while not want <= {i for _, i in out} and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    event = decode(r.value, list(r.headers), topic="writeback.outcome")
                    if event.data.outcome == "applied":
                        out.append((event.tenantid, event.data.insight_id))
    finally:
        await consumer.stop()
    return out


async def two_replicas(stand: Stand, target: Target, report: Report, *, events: int, rate: float, name: str) -> None:
    started = time.monotonic()
    rng = random.Random()
    await target.prepare(stand)
    stream = [target.event(stand, i) for i in range(events)]
    keys = [k for k, _ in stream]
    replicas = [stand.replica(target, n) for n in (0, 1)]
    for r in replicas:
        r.env["KAFKA_SESSION_TIMEOUT_MS"] = str(SESSION_MS)
    victim = rng.choice(replicas)
    point = rng.randrange(events // 5, events // 2)
    killed_at = -1
    taken_over = -1.0
    t_killed: list[float] = []
    try:
        # together, on a fresh schema: their migrations take turns on the schema's advisory lock (they raced on
        # CREATE SCHEMA before it, one replica dying at start-up: see the README)
        await asyncio.gather(*(r.start() for r in replicas))

        async def produce() -> None:
            for n, (_, event) in enumerate(stream):
                await stand.send(event)
                if n % 10 == 9:
                    await asyncio.sleep(10 / rate)
            assert stand.producer is not None
            await stand.producer.flush()

        async def chaos() -> None:
            nonlocal killed_at, taken_over
            await until(lambda: _reached(target, stand, point), timeout=300, what=f"{point} effects")
            await victim.kill()
            t_kill = time.monotonic()
            t_killed.append(t_kill)
            killed_at = await target.progress(stand)
            assert killed_at < events, "the kill came after every effect: nothing proven"
            await until(lambda: _reached(target, stand, killed_at + 1), timeout=120, what="the survivor's effects")
            taken_over = round(time.monotonic() - t_kill, 1)

        await asyncio.gather(produce(), chaos())
        await until(lambda: _reached(target, stand, events), timeout=600, what=f"all {events} effects")
        finished_after_kill = round(time.monotonic() - t_killed[0], 1)
        await asyncio.sleep(2)  # a duplicate would land now
        counts = await target.effects(stand)
        order_breaks: list[str] = []
        if isinstance(target, Writeback):
            seen = await _outcomes(stand, set(keys))
            index = {k: i for i, k in enumerate(keys)}
            last: dict[str, int] = defaultdict(lambda: -1)
            first_seen: set[str] = set()
            for tenant, insight in seen:
                if insight in first_seen:
                    continue  # an outbox re-send after the kill: the same event again, consumers' inboxes absorb it
                first_seen.add(insight)
                if index[insight] < last[tenant]:
                    order_breaks.append(f"{tenant}: {insight} after a later insight")
                last[tenant] = max(last[tenant], index[insight])
            assert first_seen == set(keys), f"{len(set(keys) - first_seen)} outcomes missing"
    finally:
        await asyncio.gather(*(r.stop() for r in replicas))
    lost = sum(1 for k in keys if counts.get(k, 0) == 0)
    duplicated = sum(n - 1 for n in counts.values() if n > 1)
    report.record(
        name,
        tried=events,
        lost=lost,
        duplicated=duplicated,
        seconds=time.monotonic() - started,
        service=target.name,
        replicas=2,
        killed=victim.env["KAFKA_GROUP_INSTANCE_ID"],
        killed_after_effects=killed_at,
        survivor_next_effect_after_kill_seconds=taken_over,
        every_effect_after_kill_seconds=finished_after_kill,
        session_timeout_ms=SESSION_MS,
        order_breaks=order_breaks[:10],
    )
    assert (lost, duplicated) == (0, 0), (lost, duplicated)
    assert not order_breaks, order_breaks


async def _reached(target: Target, stand: Stand, n: int) -> bool:
    return bool(await target.progress(stand) >= n)


@pytest.mark.faults_long  # the short variant too: ~3 min of process start-ups on 2 cores, over make test's budget
@pytest.mark.timeout(600)
async def test_two_writeback_replicas_one_killed(stand: Stand, report: Report) -> None:
    await two_replicas(stand, Writeback(tenants=6), report, events=300, rate=40, name="replicas_writeback")


@pytest.mark.faults_long
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("target", [Writeback, Monitor], ids=["writeback", "monitor"])
async def test_two_replicas_one_killed_during_5000_events(target: type[Target], stand: Stand, report: Report) -> None:
    t = Writeback(tenants=6) if target is Writeback else target()
    await two_replicas(stand, t, report, events=5000, rate=60, name=f"replicas_long_{t.name}")


@pytest.mark.faults_long
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("target", [Jobs, Ingest, Serving], ids=["jobs", "ingest", "serving"])
async def test_two_replicas_one_killed_during_1000_events(target: type[Target], stand: Stand, report: Report) -> None:
    """The services whose events each cost outside calls (jobs: a Databricks job; ingest: a data source's
    provisioning; serving: an insights read as the tenant's reader): 1,000 events over 4 keys."""
    t: Target
    if target is Serving:
        t = Serving(tenants=4, size=1000)
    elif target is Ingest:
        t = Ingest(tenants=4)
    else:
        t = Jobs()
    await two_replicas(stand, t, report, events=1000, rate=40, name=f"replicas_long_{t.name}")
