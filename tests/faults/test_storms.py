"""API storms: the stand-in a service calls answers 429 (with Retry-After), 503, slowly, or applies the call and
loses the response, on 20 % of calls, for a while (short: ~10 s in `make test`; long: a minute in `make
faults`), with one burst of consecutive 503s in the middle to open the service's breaker. Counted where the
effects land: 0 lost, 0 duplicated (no second run, no second change); the breaker opened (consumption
paused) and closed again (everything sent during the storm landed). The storm lasts while events are sent and
until the service has worked through them.

Jobs' calls go through databricks-sdk, which retries 429/503 and lost connections itself for up to 60 s: a
burst shorter than that never reaches the jobs breaker (it opens on longer outages), so its pauses are
reported, not required.

Jobs against the workspace (job creation and run-now), write-back against the MCP simulator (updates).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from faults_client import FaultClient
from faults_report import Report
from service_procs import Ingest, JobRuns, Stand, Target, Writeback, metric, until

from apev_workspace.testing import running_workspace, upload

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with running_workspace(tmp_path_factory.mktemp("ws-storm"), executor_slots=2) as ws:
        upload(ws.client(), f"{JobRuns.tasks}/ok.py", "print('fine')")
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


def _faults(stand: Stand, target: Target) -> tuple[FaultClient, str]:
    if target.name == "jobs":
        return FaultClient(stand.workspace.host, {"Authorization": f"Bearer {stand.workspace.admin_token}"}), "/api/*"
    return FaultClient(stand.mcp.base_url, {"Authorization": f"Bearer {stand.mcp.admin_key}"}), "/api/v1/*"


STORM = [  # 4 x 5 % = 20 % of calls
    {"action": "429", "ratio": 0.05, "retry_after": 1},
    {"action": "503", "ratio": 0.05},
    {"action": "latency", "ratio": 0.05, "latency_ms": 400},
    {"action": "lost_response", "ratio": 0.05},
]


async def storm(stand: Stand, target: Target, report: Report, *, seconds: float, rate: float, name: str) -> None:
    started = time.monotonic()
    client, path = _faults(stand, target)
    await target.prepare(stand)
    env_extra = {
        f"{target.name.upper()}_BREAKER_COOL_DOWN_SECONDS": "2",
        f"{target.name.upper()}_BREAKER_FAILURES": "5",
    }
    replica = stand.replica(target)
    replica.env |= env_extra
    keys: list[str] = []
    fired: dict[str, int] = {}
    try:
        await replica.start()
        await asyncio.to_thread(client.clear)
        for rule in STORM:
            await asyncio.to_thread(client.add, path=path, **rule)
        t0 = time.monotonic()
        burst_at = t0 + seconds / 2
        burst = False
        i = 0
        while time.monotonic() - t0 < seconds:
            key, event = target.event(stand, i)
            keys.append(key)
            await stand.send(event)
            i += 1
            if not burst and time.monotonic() >= burst_at:  # consecutive failures: the breaker opens
                await asyncio.to_thread(client.add, "503", path, count=25, retry_after=1)
                burst = True
            await asyncio.sleep(1 / rate)
        assert stand.producer is not None
        await stand.producer.flush()
        # The storm goes on until the service has worked through what was sent (it may lag behind the stream).
        await until(lambda: _reached(target, stand, len(keys)), timeout=600, what=f"all {len(keys)} effects")
        for rule in await asyncio.to_thread(client.list):
            fired[rule["action"]] = fired.get(rule["action"], 0) + int(rule["fired"])
        await asyncio.to_thread(client.clear)
        storm_seconds = time.monotonic() - t0
        await asyncio.sleep(2)  # a duplicate would land now
        counts = await target.effects(stand)
        async with httpx.AsyncClient(timeout=10) as http:
            metrics = (await http.get(f"http://127.0.0.1:{replica.port}/metrics")).text
    finally:
        await asyncio.to_thread(client.clear)
        await replica.stop()
    paused = metric(metrics, "apev_delivery_messages_total", 'outcome="paused"')
    lost = sum(1 for k in keys if counts.get(k, 0) == 0)
    duplicated = sum(n - 1 for n in counts.values() if n > 1)
    report.record(
        name,
        tried=len(keys) + sum(fired.values()),
        lost=lost,
        duplicated=duplicated,
        seconds=time.monotonic() - started,
        service=target.name,
        events=len(keys),
        storm_seconds=round(storm_seconds, 1),
        faults_fired=fired,
        paused_while_breaker_open=paused,
    )
    assert (lost, duplicated) == (0, 0), (lost, duplicated)
    assert fired.get("lost_response", 0) > 0 and fired.get("429", 0) + fired.get("503", 0) > 0, fired
    if target.name != "jobs":  # jobs: the SDK retries 5xx for 60 s itself; its breaker opens on longer outages
        assert paused > 0, "the breaker never opened: consumption never paused"


async def _reached(target: Target, stand: Stand, n: int) -> bool:
    return bool(await target.progress(stand) >= n)


@pytest.mark.faults_long  # the short variant too: ~3 min of process start-ups on 2 cores, over make test's budget
@pytest.mark.timeout(600)
@pytest.mark.parametrize("target", [JobRuns, Writeback], ids=["jobs-workspace", "writeback-mcp"])
async def test_a_short_storm_loses_and_duplicates_nothing(target: type[Target], stand: Stand, report: Report) -> None:
    await storm(stand, target(), report, seconds=10, rate=8, name=f"storm_{target().name}")


@pytest.mark.faults_long
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("target", [JobRuns, Writeback], ids=["jobs-workspace", "writeback-mcp"])
async def test_a_minute_long_storm_loses_and_duplicates_nothing(
    target: type[Target], stand: Stand, report: Report
) -> None:
    await storm(
        stand, target(), report, seconds=60, name=f"storm_long_{target().name}", rate=4 if target is JobRuns else 8
    )


@pytest.mark.faults_long
@pytest.mark.timeout(1800)
async def test_a_minute_long_mcp_storm_while_ingest_provisions(stand: Stand, report: Report) -> None:
    """Ingest's MCP calls (tenant check, integration registration) under the storm while it provisions data
    sources: each gets its first run requested once; its MCP breaker opens (consumption pauses) and closes."""
    await storm(stand, Ingest(), report, seconds=60, rate=2, name="storm_long_ingest")
