"""PostgreSQL restarted mid-stream (`make faults` only: the Debian cluster `deploy/postgres.sh` started, which
other test sessions on the machine share, so this never runs in `make test`): the services pause while their
database is away and resume on their own, with nothing lost and nothing applied twice.

Monitor (every effect a row in its schema) and write-back (each change in the MCP simulator, its steps in its
schema) run as processes with the shipped delivery settings; the cluster is restarted once, about 2 s down.

Measured with the suite's short retry budget (`DELIVERY_RETRY_MAX_WAIT_SECONDS=0.5`, about 1.5 s over five
attempts): 4 of 1,000 monitor events and 3 of 1,000 write-back insights never took effect. The delivery kit
treats a database error as a transient failure of the event and dead-letters it when the budget runs out; a
database outage longer than the budget is not paused through the way an open breaker is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from faults_report import Report
from service_procs import Monitor, Stand, Target, Writeback, until

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def _cluster() -> list[str]:
    """`pg_ctlcluster <version> <name> restart` for the cluster on the suite's port, or skip."""
    if not shutil.which("pg_lsclusters"):
        pytest.skip("no Debian PostgreSQL cluster tools")
    port = os.environ.get("APEV_PG_PORT", "5432")
    for line in subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True).stdout.splitlines():
        version, name, cluster_port, status, *_ = line.split()
        if cluster_port == port and status == "online":
            return ["pg_ctlcluster", version, name, "restart", "-m", "fast"]
    pytest.skip(f"no online Debian cluster on port {port}")


@pytest.fixture
async def stand(
    kafka_bootstrap: str, pg_url: str, tmp_path: Path, mcp_sim: Any, alert_sinks: Any, service_logs: list[str]
) -> AsyncIterator[Stand]:
    s = Stand(kafka_bootstrap, pg_url, tmp_path, None, mcp_sim, alert_sinks, service_logs)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def _progress(target: Target, stand: Stand) -> int:
    try:
        return await target.progress(stand)
    except Exception:  # the database is away
        return -1


@pytest.mark.faults_long
@pytest.mark.timeout(1800)
async def test_postgres_restart_mid_stream(stand: Stand, report: Report) -> None:
    restart = _cluster()
    started = time.monotonic()
    targets: list[Target] = [Monitor(), Writeback()]
    events = 1000
    streams = {}
    replicas = []
    for t in targets:
        await t.prepare(stand)
        streams[t.name] = [t.event(stand, i) for i in range(events)]
        replica = stand.replica(t)
        for name in [k for k in replica.env if k.startswith("DELIVERY_")]:  # the shipped retry budget
            del replica.env[name]
        replicas.append(replica)
    try:
        await asyncio.gather(*(r.start() for r in replicas))

        async def produce() -> None:
            for i in range(events):
                for t in targets:
                    await stand.send(streams[t.name][i][1])
                if i % 10 == 9:
                    await asyncio.sleep(0.5)  # 20 events/s per service: the stream outlasts the restart
            assert stand.producer is not None
            await stand.producer.flush()

        down = {}

        async def chaos() -> None:
            await until(lambda: _any_reached(targets, stand, events // 4), timeout=300, what="a quarter of the effects")
            assert stand.engine is not None
            await stand.engine.dispose()  # the test's own pool must not hold dead connections either
            t0 = time.monotonic()
            await asyncio.to_thread(subprocess.run, restart, check=True, capture_output=True)
            down["restart_seconds"] = round(time.monotonic() - t0, 1)
            at = {t.name: await _progress(t, stand) for t in targets}
            await until(
                lambda: _all_beyond(targets, stand, at, events), timeout=120, what=f"effects after the restart {at}"
            )
            down["processing_again_after_seconds"] = round(time.monotonic() - t0, 1)

        await asyncio.gather(produce(), chaos())
        with contextlib.suppress(AssertionError):  # what never lands is counted as lost below
            await until(lambda: _all_reached(targets, stand, events), timeout=300, what="every effect")
        await asyncio.sleep(2)
        counts = {t.name: await t.effects(stand) for t in targets}
        alive = [r.name for r in replicas if r.proc is not None and r.proc.returncode is None]
    finally:
        await asyncio.gather(*(r.stop() for r in replicas))
    lost = sum(1 for t in targets for k, _ in streams[t.name] if counts[t.name].get(k, 0) == 0)
    duplicated = sum(n - 1 for t in targets for n in counts[t.name].values() if n > 1)
    report.record(
        "postgres_restart",
        tried=events * len(targets),
        lost=lost,
        duplicated=duplicated,
        seconds=time.monotonic() - started,
        services=[t.name for t in targets],
        services_alive_after=alive,
        **down,
    )
    assert (lost, duplicated) == (0, 0), (lost, duplicated)
    assert sorted(alive) == sorted(t.name for t in targets), "a service died with its database instead of pausing"


async def _any_reached(targets: list[Target], stand: Stand, n: int) -> bool:
    return any([await _progress(t, stand) >= n for t in targets])


async def _all_reached(targets: list[Target], stand: Stand, n: int) -> bool:
    return all([await _progress(t, stand) >= n for t in targets])


async def _all_beyond(targets: list[Target], stand: Stand, at: dict[str, int], events: int) -> bool:
    """Every service has had an effect since `at` (or had every effect already)."""
    return all([(n := await _progress(t, stand)) > max(at[t.name], 0) or n >= events for t in targets])
