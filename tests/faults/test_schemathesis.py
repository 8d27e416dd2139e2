"""Schemathesis against the services' HTTP APIs, running as processes on the suite's Kafka and PostgreSQL: no
generated request gets a 5xx. Jobs publishes its own OpenAPI document (`/openapi.json`); monitor and write-back
have none, so theirs is derived from their route table (`fuzzing.py`). Authorised as an admin of a tenant; a
bounded number of examples per operation (short: 15, in `make test`; long: 150). Ingest and serving are fuzzed
in `test_isolation_ingest_serving.py`, on the processes (and provisioned tenants) the isolation property uses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from faults_report import Report
from fuzzing import derived_openapi, fuzz
from service_procs import Jobs, Monitor, Stand, Target, Writeback

from apev_workspace.testing import running_workspace

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with running_workspace(tmp_path_factory.mktemp("ws-fuzz"), executor_slots=2) as ws:
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


async def _fuzz_service(stand: Stand, target: Target, report: Report, examples: int, name: str) -> None:
    started = time.monotonic()
    await target.prepare(stand)
    replica = stand.replica(target)
    try:
        await replica.start()
        base = f"http://127.0.0.1:{replica.port}"
        if target.name == "jobs":
            async with httpx.AsyncClient(timeout=10) as http:
                document = (await http.get(f"{base}/openapi.json")).json()
        else:
            document = derived_openapi(target.name)
        statuses, errors = await asyncio.to_thread(fuzz, base, document, examples)
        alive = replica.proc is not None and replica.proc.returncode is None
    finally:
        await replica.stop()
    report.record(
        name,
        tried=sum(statuses.values()),
        lost=len(errors),
        seconds=time.monotonic() - started,
        service=target.name,
        operations=sum(len(v) for v in document["paths"].values()),
        statuses=dict(sorted(statuses.items())),
        server_errors=errors[:10],
    )
    assert alive
    assert not errors, errors[:5]


SERVICES = {"jobs": Jobs, "monitor": Monitor, "writeback": Writeback}  # ingest, serving: test_isolation_ingest_serving


@pytest.mark.faults
@pytest.mark.timeout(600)
@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_schemathesis_finds_no_5xx(service: str, stand: Stand, report: Report) -> None:
    await _fuzz_service(stand, SERVICES[service](), report, 15, f"schemathesis_{service}")


@pytest.mark.faults_long
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_schemathesis_finds_no_5xx_long(service: str, stand: Stand, report: Report) -> None:
    await _fuzz_service(stand, SERVICES[service](), report, 150, f"schemathesis_long_{service}")
