"""SIGKILL a service at random points of a stream of events, restart it under the same static member name, and
count the effects where they land: every event exactly once, and processing again within 15 s of the restarted
replica being up (static membership: it takes its partitions back without waiting for a rebalance). The time
from the kill is reported too; on a loaded machine a service's start-up alone takes 5-25 s.

Each service runs as the operator runs it (`python -m apev_<service>`) on the suite's Kafka and PostgreSQL, next
to in-process stand-ins. Short: 200 events and one kill per service, the services at once (`make test`); long:
5,000 events and three kills per service (`make faults`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from faults_report import Report
from service_procs import TARGETS, Ingest, Jobs, Serving, Stand, Target, until

from apev_workspace.testing import running_workspace, upload

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

RECOVERY_SECONDS = 15.0


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with running_workspace(tmp_path_factory.mktemp("ws-kill"), executor_slots=2) as ws:
        upload(ws.client(), f"{Jobs.tasks}/ok.py", "print('fine')")
        yield ws


@pytest.fixture
async def stand(
    kafka_bootstrap: str, pg_url: str, tmp_path: Path, workspace: Any, mcp_sim: Any, alert_sinks: Any,
    service_logs: list[str],
) -> AsyncIterator[Stand]:  # fmt: skip
    s = Stand(kafka_bootstrap, pg_url, tmp_path, workspace, mcp_sim, alert_sinks, service_logs)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def kill_stream(
    stand: Stand, target: Target, report: Report, *, events: int, kills: int, name: str, seed: int, rate: float
) -> None:
    """`rate`: events sent per second (about); the kills come when the effects reach random points of the stream."""
    started = time.monotonic()
    rng = random.Random(seed)
    await target.prepare(stand)
    stream = [target.event(stand, i) for i in range(events)]
    replica = stand.replica(target)
    keys = [k for k, _ in stream]
    points = sorted(rng.sample(range(events // 10, events * 8 // 10), kills))
    recoveries: list[float] = []
    down: list[float] = []
    restarts: list[float] = []
    killed_at: list[int] = []
    sent = 0

    async def produce() -> None:
        nonlocal sent
        for _, event in stream:
            await stand.send(event)
            sent += 1
            if sent % 10 == 0:
                await asyncio.sleep(10 / rate)  # a stream, not one backlog: kills land mid-flow
        assert stand.producer is not None
        await stand.producer.flush()

    async def chaos() -> None:
        nonlocal replica
        for point in points:
            await until(lambda p=point: _reached(target, stand, p), timeout=600, what=f"{point} effects")
            await asyncio.sleep(rng.uniform(0, 0.3))  # a random moment: mid-batch, mid-call, mid-commit
            await replica.kill()
            t_kill = time.monotonic()
            done = await target.progress(stand)
            killed_at.append(done)
            replica = stand.replica(target)  # same static member name, fresh process
            restarts.append(round(await replica.start(), 1))
            t_ready = time.monotonic()
            assert done < events, f"the kill came after every effect ({done}): nothing proven"
            await until(lambda d=done: _reached(target, stand, d + 1), timeout=120, what="processing after the restart")
            recoveries.append(round(time.monotonic() - t_ready, 1))
            down.append(round(time.monotonic() - t_kill, 1))

    try:
        await replica.start()
        await asyncio.gather(produce(), chaos())
        await until(lambda: _reached(target, stand, events), timeout=900, what=f"all {events} effects")
        await asyncio.sleep(2)  # a duplicate would land now
        counts = await target.effects(stand)
    finally:
        await replica.stop()
    lost = sum(1 for k in keys if counts.get(k, 0) == 0)
    duplicated = sum(n - 1 for n in counts.values() if n > 1)
    report.record(
        name,
        tried=events,
        lost=lost,
        duplicated=duplicated,
        seconds=time.monotonic() - started,
        service=target.name,
        topic=target.topic,
        kills=len(points),
        killed_after_effects=killed_at,
        restart_ready_seconds=restarts,
        processing_again_after_ready_seconds=recoveries,
        kill_to_processing_seconds=down,
        seed=seed,
    )
    assert (lost, duplicated) == (0, 0), (lost, duplicated)
    assert set(counts) >= set(keys)
    assert all(r <= RECOVERY_SECONDS for r in recoveries), recoveries


async def _reached(target: Target, stand: Stand, n: int) -> bool:
    return bool(await target.progress(stand) >= n)


SEED = random.SystemRandom().randrange(1 << 30)


@pytest.mark.faults
@pytest.mark.timeout(600)
async def test_sigkill_each_service_mid_stream_then_restart(stand: Stand, report: Report) -> None:
    """The services side by side (their start-ups overlap), one kill each."""
    runs = [
        kill_stream(stand, TARGETS[s](), report, events=200, kills=1, name=f"sigkill_{s}", seed=SEED, rate=40)
        for s in sorted(TARGETS)
    ]
    results = await asyncio.gather(*runs, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise failures[0]


@pytest.mark.faults_long
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("service", sorted(TARGETS))
async def test_sigkill_three_times_during_5000_events(service: str, stand: Stand, report: Report) -> None:
    target = TARGETS[service]()
    await kill_stream(stand, target, report, events=5000, kills=3, name=f"sigkill_long_{service}", seed=SEED, rate=60)


@pytest.mark.faults_long
@pytest.mark.timeout(3600)
@pytest.mark.parametrize(("service", "events", "kills", "rate"), [("ingest", 300, 2, 10), ("serving", 1000, 3, 40)])
async def test_sigkill_ingest_and_serving_mid_stream(
    service: str, events: int, kills: int, rate: float, stand: Stand, report: Report
) -> None:
    """Ingest: `datasource.created` -> provisioning (workspace and MCP calls) and the first run's `job.requested`;
    serving: an agent run's `run.finished` -> its insights read as SQL -> `insight.created`. Fewer events than the
    others: each costs several workspace calls."""
    target: Target = Ingest() if service == "ingest" else Serving(size=events)
    await kill_stream(
        stand, target, report, events=events, kills=kills, name=f"sigkill_long_{service}", seed=SEED, rate=rate
    )
